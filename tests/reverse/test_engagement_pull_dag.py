"""The ``mailchimp_engagement_pull`` DAG, run with ``dag.test()`` against the emulator, into SQLite
and PostgreSQL: first load, incremental runs, reruns, and the engagement report."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from engagement_harness import TASKS, EngagementHarness, subscriber_hash

NOW = datetime.now(timezone.utc).replace(microsecond=0)
SENT = NOW - timedelta(days=2)
CLICKED = "https://shop.acme-outfitters.com/collections/sale"


def iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S+00:00")


def at(hours: float) -> str:
    """A time ``hours`` after the campaign was sent."""
    return iso(SENT + timedelta(hours=hours))


READERS = [f"reader{i:02d}@brightmail.co" for i in range(8)]


def seed(h: EngagementHarness) -> tuple[str, str]:
    """An audience of 8 with one exactly known campaign; returns (list_id, campaign_id)."""
    list_id = h.make_list("Acme Newsletter")
    h.add_members(list_id, READERS)
    campaign_id = h.create_campaign(list_id, "Spring sale")
    h.inject(
        campaign_id,
        send_time=iso(SENT),
        activity=[
            {"email_address": READERS[0], "action": "open", "timestamp": at(1), "ip": "203.0.113.9"},
            {"email_address": READERS[0], "action": "open", "timestamp": at(5), "ip": "203.0.113.9"},
            {"email_address": READERS[0], "action": "click", "timestamp": at(1.5), "url": CLICKED, "ip": "203.0.113.9"},
            {"email_address": READERS[1], "action": "open", "timestamp": at(2), "ip": "198.51.100.7"},
            {"email_address": READERS[2], "action": "bounce", "timestamp": at(0.1), "type": "hard"},
            {"email_address": READERS[3], "action": "bounce", "timestamp": at(0.2), "type": "soft"},
        ],
        unsubscribes=[{"email_address": READERS[4], "timestamp": at(3), "reason": "I never signed up for this mailing list"}],
    )
    return list_id, campaign_id


def test_first_load_fills_every_table_and_a_rerun_changes_nothing(harness: EngagementHarness) -> None:
    h = harness
    list_id, campaign_id = seed(h)
    h.set_status(list_id, READERS[5], "unsubscribed")  # left through the list, not a campaign

    assert h.run() == {t: "success" for t in TASKS}

    [lst] = h.rows("list")
    assert (lst["list_id"], lst["name"]) == (list_id, "Acme Newsletter")
    assert lst["date_created"].tzinfo is not None
    members = {m["email_address"]: m for m in h.rows("member")}
    assert set(members) == set(READERS)
    assert members[READERS[2]]["status"] == "cleaned"  # the hard bounce
    assert members[READERS[4]]["status"] == "unsubscribed"
    assert members[READERS[4]]["unsubscribe_reason"] == "I never signed up for this mailing list"
    assert members[READERS[0]]["member_id"] == subscriber_hash(READERS[0])
    assert members[READERS[0]]["timestamp_signup"] is None  # Mailchimp's "" became NULL

    [campaign] = h.rows("campaign")
    assert (campaign["campaign_id"], campaign["title"], campaign["status"], campaign["emails_sent"]) == (
        campaign_id, "Spring sale", "sent", 8)
    assert campaign["send_time"] == SENT
    assert (campaign["hard_bounces"], campaign["soft_bounces"], campaign["unsubscribed"]) == (1, 1, 1)

    activity = {(r["member_id"], r["action"], r["timestamp"]): r for r in h.rows("activity")}
    assert len(activity) == 6
    click = activity[(subscriber_hash(READERS[0]), "click", SENT + timedelta(hours=1.5))]
    assert (click["url"], click["ip"], click["list_id"]) == (CLICKED, "203.0.113.9", list_id)
    open_ = activity[(subscriber_hash(READERS[1]), "open", SENT + timedelta(hours=2))]
    assert (open_["url_key"], open_["url"], open_["bounce_type"]) == ("", None, None)
    bounces = {r["email_address"]: r["bounce_type"] for r in activity.values() if r["action"] == "bounce"}
    assert bounces == {READERS[2]: "hard", READERS[3]: "soft"}

    # One row per unsubscribe, whichever road it came by: the campaign's report for READERS[4]
    # (its member-derived twin is folded into it), a list-level row for READERS[5].
    unsubs = {(r["email_address"], r["campaign_id"], r["source"]) for r in h.rows("unsubscribe")}
    assert unsubs == {(READERS[4], campaign_id, "report"), (READERS[5], None, "member")}

    assert h.watermark("email_activity", campaign_id) == (SENT + timedelta(hours=5)).isoformat()
    assert h.watermark("members", list_id) is not None

    before = h.snapshot()
    h.run()
    assert h.snapshot() == before


def test_incremental_run_picks_up_exactly_the_new_activity_and_status_changes(harness: EngagementHarness) -> None:
    h = harness
    list_id, campaign_id = seed(h)
    h.run()
    first = {(r["member_id"], r["action"], r["timestamp"], r["url"]) for r in h.rows("activity")}
    bookmark = h.watermark("email_activity", campaign_id)

    # New engagement after the bookmark, one event inside the lookback margin, and a status change.
    h.inject(campaign_id, activity=[
        {"email_address": READERS[6], "action": "open", "timestamp": at(6), "ip": "192.0.2.1"},
        {"email_address": READERS[6], "action": "click", "timestamp": at(6.1), "url": CLICKED, "ip": "192.0.2.1"},
        {"email_address": READERS[7], "action": "open", "timestamp": at(4.5), "ip": "192.0.2.2"},
    ])
    h.set_status(list_id, READERS[1], "unsubscribed")
    h.run()

    second = {(r["member_id"], r["action"], r["timestamp"], r["url"]) for r in h.rows("activity")}
    assert second - first == {
        (subscriber_hash(READERS[6]), "open", SENT + timedelta(hours=6), None),
        (subscriber_hash(READERS[6]), "click", SENT + timedelta(hours=6.1), CLICKED),
        (subscriber_hash(READERS[7]), "open", SENT + timedelta(hours=4.5), None),
    }
    assert h.watermark("email_activity", campaign_id) > bookmark
    member = next(m for m in h.rows("member") if m["email_address"] == READERS[1])
    assert member["status"] == "unsubscribed"
    assert (READERS[1], None, "member") in {(r["email_address"], r["campaign_id"], r["source"]) for r in h.rows("unsubscribe")}


@pytest.mark.parametrize("warehouse", ["sqlite"], indirect=True)
def test_engagement_report_counts_each_campaign_from_the_warehouse(harness: EngagementHarness) -> None:
    from mailchimp_provider.reverse.report import engagement_report

    h = harness
    _, campaign_id = seed(h)
    h.run()
    [row] = engagement_report(h.db, h.tables)
    assert row == {
        "campaign_id": campaign_id, "title": "Spring sale", "send_time": SENT, "emails_sent": 8,
        "opens": 3, "unique_opens": 2, "clicks": 1, "bounces": 2, "unsubscribes": 1,
    }


@pytest.mark.parametrize("warehouse", ["sqlite"], indirect=True)
def test_members_changing_while_being_paged_all_land_with_their_latest_status(
    harness: EngagementHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Someone unsubscribes between two page reads: the walk neither loses nor duplicates anyone, and
    the next run brings the change (it happened after the walk's upper bound)."""
    from dataclasses import replace

    from mailchimp_provider.hooks.mailchimp import MailchimpHook

    h = harness
    list_id = h.make_list()
    emails = [f"member{i:02d}@brightmail.co" for i in range(12)]
    h.add_members(list_id, emails)
    config = replace(h.config, members=replace(h.config.members, page_size=5))
    original_get = MailchimpHook.get
    changed: list[str] = []

    def get_and_meanwhile_change(self, path, params=None):  # noqa: ANN001 - same signature as the hook's
        answer = original_get(self, path, params)
        if path.endswith("/members") and not changed and (params or {}).get("offset", 0) == 0:
            changed.append(emails[0])
            h.set_status(list_id, emails[0], "unsubscribed")  # first on page 1: moves to the end
        return answer

    monkeypatch.setattr(MailchimpHook, "get", get_and_meanwhile_change)
    h.run(config)
    monkeypatch.setattr(MailchimpHook, "get", original_get)

    members = h.rows("member")
    assert sorted(m["email_address"] for m in members) == sorted(emails)
    h.run(config)
    statuses = {m["email_address"]: m["status"] for m in h.rows("member")}
    assert statuses[emails[0]] == "unsubscribed"
    assert sum(1 for s in statuses.values() if s == "subscribed") == 11


@pytest.mark.parametrize("warehouse", ["sqlite"], indirect=True)
def test_sent_campaign_with_synthetic_engagement_matches_mailchimps_own_counts(harness: EngagementHarness) -> None:
    from mailchimp_provider.reverse.report import engagement_report

    h = harness
    list_id = h.make_list()
    h.add_members(list_id, [f"shopper{i:03d}@brightmail.co" for i in range(60)])
    campaign_id = h.create_campaign(list_id, "Autumn drop")
    h.inject(campaign_id, send_time=iso(SENT), synthetic=True)  # sent two days ago: all of it visible
    h.run()
    [report] = engagement_report(h.db, h.tables)
    [campaign] = h.rows("campaign")
    assert report["opens"] == campaign["opens"] and report["clicks"] == campaign["clicks"]
    assert report["bounces"] == campaign["hard_bounces"] + campaign["soft_bounces"]
    assert report["unsubscribes"] == campaign["unsubscribed"]
    with h.db.connect() as conn:
        t = h.tables.activity
        records = conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
    assert records == report["opens"] + report["clicks"] + report["bounces"] > 0
