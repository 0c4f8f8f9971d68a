"""The emulator's campaigns and reports, driven with the official ``mailchimp_marketing`` client.

Covers campaign CRUD and filters, sending (recipients, deterministic synthetic engagement and its
effects on members), the report endpoints (summary, email activity and ``since``, unsubscribes,
sent-to), activity injected through the admin API, and batched GETs of reports.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import mailchimp_marketing as MailchimpMarketing
import pytest
import requests
from mailchimp_marketing.api_client import ApiClientError
from fixtures.emulator import AUDIENCE_BODY

SEND_TIME = "2024-05-01T09:00:00+00:00"
NOT_READY = "Your Campaign is not ready to send."
NO_LONGER = "I no longer want to receive these emails"


@pytest.fixture
def rp(mc: MailchimpMarketing.Client) -> Any:
    """The client's reports API."""
    return mc.reports


def make_list(mc: MailchimpMarketing.Client, name: str = "Newsletter") -> str:
    return mc.lists.create_list({**AUDIENCE_BODY, "name": name})["id"]


def add_members(mc: Any, list_id: str, count: int, status: str = "subscribed", prefix: str = "fan") -> list:
    emails = [f"{prefix}.{i:03d}@brightmail.co" for i in range(count)]
    for email in emails:
        mc.lists.add_list_member(list_id, {"email_address": email, "status": status})
    return emails


def create_campaign(
    mc: Any, list_id: str, title: str = "May news", *, html: str | None = "<p>Fresh for May</p>", **settings: Any
) -> dict[str, Any]:
    """A draft campaign with its content set (``html=None``: no content), the client's usual flow."""
    campaign = mc.campaigns.create(
        {
            "type": "regular",
            "recipients": {"list_id": list_id},
            "settings": {
                "subject_line": "Fresh for May",
                "title": title,
                "from_name": "Acme",
                "reply_to": "news@acme-outfitters.com",
                **settings,
            },
        }
    )
    if html is not None:
        mc.campaigns.set_content(campaign["id"], {"html": html})
    return campaign


def api_error(call: Callable[[], Any]) -> tuple[int, dict[str, Any]]:
    """Run a client call that must fail; its HTTP status and problem-detail body."""
    with pytest.raises(ApiClientError) as caught:
        call()
    return caught.value.status_code, json.loads(caught.value.text)


def inject(emulator: Any, payload: dict[str, Any]) -> requests.Response:
    return requests.post(f"{emulator.root_url}/_emulator/activity", json=payload, timeout=30)


def at(minutes: int) -> str:
    """A timestamp ``minutes`` after :data:`SEND_TIME`."""
    return (datetime.fromisoformat(SEND_TIME) + timedelta(minutes=minutes)).isoformat()


def event(name: str, action: str, minutes: int, **extra: str) -> dict[str, str]:
    """An injected activity item for ``<name>@brightmail.co``, ``minutes`` after the send."""
    return {"email_address": f"{name}@brightmail.co", "action": action, "timestamp": at(minutes), **extra}


def all_activity(rp: Any, campaign_id: str, **params: Any) -> list[dict[str, Any]]:
    return rp.get_email_activity_for_campaign(campaign_id, count=1000, **params)["emails"]


def ids(items: list[dict[str, Any]]) -> list[str]:
    return [item["id"] for item in items]


# ------------------------------------------------------------------------------------------------
# campaigns
# ------------------------------------------------------------------------------------------------


def test_created_campaign_is_a_draft_of_its_list(mc):
    list_id = make_list(mc)
    add_members(mc, list_id, 3)
    add_members(mc, list_id, 1, status="unsubscribed", prefix="gone")
    campaign = create_campaign(mc, list_id, preview_text="Our picks")
    assert len(campaign["id"]) == 10
    assert (campaign["type"], campaign["status"]) == ("regular", "save")
    assert (campaign["emails_sent"], campaign["send_time"]) == (0, "")
    assert campaign["create_time"].endswith("+00:00")
    recipients = campaign["recipients"]
    assert (recipients["list_id"], recipients["list_name"]) == (list_id, "Newsletter")
    assert recipients["recipient_count"] == 3
    settings = campaign["settings"]
    assert (settings["subject_line"], settings["title"]) == ("Fresh for May", "May news")
    assert (settings["preview_text"], settings["from_name"]) == ("Our picks", "Acme")
    assert settings["reply_to"] == "news@acme-outfitters.com"
    assert "report_summary" not in campaign
    assert mc.campaigns.get(campaign["id"])["settings"]["title"] == "May news"


def test_campaign_create_errors_name_the_field(mc):
    list_id = make_list(mc)
    status, body = api_error(lambda: mc.campaigns.create({"recipients": {"list_id": list_id}}))
    assert (status, body["title"]) == (400, "Invalid Resource")
    assert body["errors"] == [{"field": "", "message": "Required fields were not provided: type"}]
    status, body = api_error(lambda: mc.campaigns.create({"type": "carrier-pigeon"}))
    assert body["errors"][0]["field"] == "type"
    unknown_list = {"type": "regular", "recipients": {"list_id": "0000000000"}}
    status, body = api_error(lambda: mc.campaigns.create(unknown_list))
    assert body["errors"][0]["field"] == "recipients.list_id"
    not_text = {"type": "regular", "settings": {"subject_line": 5}}
    status, body = api_error(lambda: mc.campaigns.create(not_text))
    message = "Schema describes string, integer found instead"
    assert body["errors"] == [{"field": "settings.subject_line", "message": message}]


def test_campaign_update_and_delete(mc):
    list_id = make_list(mc)
    campaign = create_campaign(mc, list_id)
    updated = mc.campaigns.update(campaign["id"], {"settings": {"subject_line": "Even fresher"}})
    assert updated["settings"]["subject_line"] == "Even fresher"
    assert updated["settings"]["title"] == "May news"
    mc.campaigns.remove(campaign["id"])
    status, body = api_error(lambda: mc.campaigns.get(campaign["id"]))
    assert (status, body["title"]) == (404, "Resource Not Found")
    status, _ = api_error(lambda: mc.campaigns.update("0000000000", {"settings": {"title": "x"}}))
    assert status == 404
    # ids are never reused, even after a delete
    assert create_campaign(mc, list_id)["id"] != campaign["id"]


def test_campaign_listing_filters_sorts_and_pages(mc):
    news, offers = make_list(mc, "News"), make_list(mc, "Offers")
    add_members(mc, news, 2)
    first = create_campaign(mc, news, "first")
    second = create_campaign(mc, offers, "second")
    third = create_campaign(mc, news, "third")
    mc.campaigns.send(third["id"])

    listing = mc.campaigns.list()
    assert listing["total_items"] == 3
    assert ids(listing["campaigns"]) == [first["id"], second["id"], third["id"]]
    assert ids(mc.campaigns.list(status="sent")["campaigns"]) == [third["id"]]
    assert ids(mc.campaigns.list(status="save", list_id=news)["campaigns"]) == [first["id"]]
    assert mc.campaigns.list(sort_field="send_time", sort_dir="DESC")["campaigns"][0]["id"] == third["id"]
    paged = mc.campaigns.list(count=1, offset=1, fields=["campaigns.id", "total_items"])
    assert paged == {"campaigns": [{"id": second["id"]}], "total_items": 3}

    hour_ago = (datetime.now(timezone.utc) - timedelta(hours=1)).isoformat()
    in_an_hour = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
    assert mc.campaigns.list(since_send_time=hour_ago)["total_items"] == 1
    assert mc.campaigns.list(before_send_time=hour_ago)["total_items"] == 0
    assert mc.campaigns.list(since_create_time=in_an_hour)["total_items"] == 0
    assert mc.campaigns.list(before_create_time=in_an_hour)["total_items"] == 3
    status, body = api_error(lambda: mc.campaigns.list(sort_field="title"))
    assert (status, body["errors"][0]["field"]) == (400, "sort_field")


# ------------------------------------------------------------------------------------------------
# sending
# ------------------------------------------------------------------------------------------------


def test_send_delivers_to_subscribed_members_only_and_only_once(mc, rp):
    list_id = make_list(mc)
    readers = add_members(mc, list_id, 5)
    add_members(mc, list_id, 2, status="unsubscribed", prefix="gone")
    add_members(mc, list_id, 2, status="transactional", prefix="buyer")
    campaign = create_campaign(mc, list_id)

    response = mc.campaigns.send(campaign["id"])
    assert response.status_code == 204

    sent = mc.campaigns.get(campaign["id"])
    assert (sent["status"], sent["emails_sent"], sent["recipients"]["recipient_count"]) == ("sent", 5, 5)
    assert sent["send_time"].endswith("+00:00")
    assert set(sent["report_summary"]) >= {"opens", "unique_opens", "open_rate", "clicks", "click_rate"}
    sent_to = rp.get_campaign_recipients(campaign["id"], count=100)["sent_to"]
    assert sorted(r["email_address"] for r in sent_to) == readers

    status, body = api_error(lambda: mc.campaigns.send(campaign["id"]))
    assert (status, body["title"]) == (400, "Bad Request")
    status, body = api_error(lambda: mc.campaigns.update(campaign["id"], {"settings": {"title": "late"}}))
    assert (status, body["title"]) == (400, "Bad Request")


def test_a_campaign_that_is_not_ready_is_not_sent(mc):
    list_id = make_list(mc)
    empty = create_campaign(mc, list_id)
    status, body = api_error(lambda: mc.campaigns.send(empty["id"]))
    assert (status, body["title"], body["detail"]) == (400, "Bad Request", NOT_READY)
    add_members(mc, list_id, 1)
    no_subject = create_campaign(mc, list_id, subject_line="")
    status, body = api_error(lambda: mc.campaigns.send(no_subject["id"]))
    assert body["detail"] == NOT_READY
    assert mc.campaigns.get(no_subject["id"])["status"] == "save"


def send_in_the_past(emulator: Any, mc: Any, list_id: str) -> str:
    """A campaign delivered at :data:`SEND_TIME` with its synthetic engagement, all visible by now."""
    campaign = create_campaign(mc, list_id)
    response = inject(emulator, {"campaign_id": campaign["id"], "send_time": SEND_TIME, "synthetic": True})
    assert response.status_code == 200, response.text
    return campaign["id"]


def engagement_on_a_fresh_emulator(emulator: Any, mc: Any) -> tuple[str, list[tuple], list[tuple]]:
    """Reset, build the same audience, send one campaign: its id, activity and unsubscribes."""
    emulator.admin("POST", "reset")
    list_id = make_list(mc)
    add_members(mc, list_id, 150)
    campaign_id = send_in_the_past(emulator, mc, list_id)
    activity = [
        (e["email_address"], a["action"], a["timestamp"], a.get("url"), a.get("type"), a.get("ip"))
        for e in all_activity(mc.reports, campaign_id)
        for a in e["activity"]
    ]
    unsubscribes = [
        (u["email_address"], u["reason"], u["timestamp"])
        for u in mc.reports.get_unsubscribed_list_for_campaign(campaign_id, count=1000)["unsubscribes"]
    ]
    return campaign_id, activity, unsubscribes


def test_synthetic_activity_is_deterministic_and_plausible(emulator, mc, rp):
    first = engagement_on_a_fresh_emulator(emulator, mc)
    second = engagement_on_a_fresh_emulator(emulator, mc)
    assert first == second

    campaign_id, activity, unsubscribes = first
    actions = [a[1] for a in activity]
    openers = {a[0] for a in activity if a[1] == "open"}
    assert 35 <= len(openers) <= 85  # about 40% of 150
    assert 0 < actions.count("click") < actions.count("open")
    sent_at = datetime.fromisoformat(SEND_TIME)
    assert all(timedelta(0) < datetime.fromisoformat(a[2]) - sent_at <= timedelta(hours=24) for a in activity)
    assert all(a[3].startswith("https://") for a in activity if a[1] == "click")
    assert all(a[4] in ("hard", "soft") for a in activity if a[1] == "bounce")
    assert all(a[5].startswith("198.51.100.") for a in activity if a[1] in ("open", "click"))
    assert unsubscribes, "this audience has at least one synthetic unsubscribe"

    report = rp.get_campaign_report(campaign_id)
    assert (report["emails_sent"], report["send_time"]) == (150, SEND_TIME)
    assert report["opens"]["opens_total"] == actions.count("open")
    assert report["opens"]["unique_opens"] == len(openers)
    assert report["clicks"]["clicks_total"] == actions.count("click")
    assert report["bounces"]["hard_bounces"] + report["bounces"]["soft_bounces"] == actions.count("bounce")
    delivered = 150 - actions.count("bounce")
    assert report["opens"]["open_rate"] == pytest.approx(len(openers) / delivered, abs=1e-4)
    assert report["unsubscribed"] == len(unsubscribes)


def test_synthetic_unsubscribes_and_hard_bounces_change_members(emulator, mc, rp):
    list_id = make_list(mc)
    add_members(mc, list_id, 150)
    campaign_id = send_in_the_past(emulator, mc, list_id)

    unsubscribes = rp.get_unsubscribed_list_for_campaign(campaign_id, count=1000)["unsubscribes"]
    assert unsubscribes
    for unsub in unsubscribes:
        member = mc.lists.get_list_member(list_id, unsub["email_address"])
        assert (member["status"], member["unsubscribe_reason"]) == ("unsubscribed", unsub["reason"])
    bounced = 0
    for recipient in rp.get_campaign_recipients(campaign_id, count=1000)["sent_to"]:
        expected = {"hard": "cleaned", "soft": "subscribed"}.get(recipient["status"])
        if expected:
            bounced += 1
            assert mc.lists.get_list_member(list_id, recipient["email_address"])["status"] == expected
    assert bounced


def test_a_fresh_send_never_reports_activity_from_the_future(mc, rp):
    list_id = make_list(mc)
    add_members(mc, list_id, 150)
    campaign = create_campaign(mc, list_id)
    mc.campaigns.send(campaign["id"])
    now = datetime.now(timezone.utc) + timedelta(seconds=1)
    emails = all_activity(rp, campaign["id"])
    assert len(emails) == 150
    assert all(datetime.fromisoformat(a["timestamp"]) <= now for e in emails for a in e["activity"])
    report = rp.get_campaign_report(campaign["id"])
    assert report["opens"]["last_open"] == "" or datetime.fromisoformat(report["opens"]["last_open"]) <= now


def test_activity_shows_once_its_time_has_come(emulator, rp, quiet_campaign):
    soon = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
    just_now = (datetime.now(timezone.utc) - timedelta(minutes=1)).replace(microsecond=0).isoformat()
    future_open = {"email_address": "cy@brightmail.co", "action": "open", "timestamp": soon}
    past_open = {"email_address": "cy@brightmail.co", "action": "open", "timestamp": just_now}
    late_unsub = {"email_address": "cy@brightmail.co", "timestamp": soon}
    payload = {"activity": [future_open, past_open], "unsubscribes": [late_unsub]}
    assert inject(emulator, {"campaign_id": quiet_campaign["id"], **payload}).status_code == 200

    cy = rp.get_email_activity_for_subscriber(quiet_campaign["id"], "cy@brightmail.co")
    assert [a["timestamp"] for a in cy["activity"]] == [just_now]
    report = rp.get_campaign_report(quiet_campaign["id"])
    assert (report["opens"]["opens_total"], report["unsubscribed"]) == (4, 1)


def test_synthetic_activity_is_only_generated_on_delivery(emulator, quiet_campaign):
    response = inject(emulator, {"campaign_id": quiet_campaign["id"], "synthetic": True})
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "synthetic"


# ------------------------------------------------------------------------------------------------
# injected activity and the report endpoints
# ------------------------------------------------------------------------------------------------


@pytest.fixture
def quiet_campaign(emulator, mc) -> dict[str, Any]:
    """A campaign delivered by injection (no synthetic activity) to ann, bob, cy and dee."""
    list_id = make_list(mc)
    for name in ("ann", "bob", "cy", "dee"):
        email = f"{name}@brightmail.co"
        member = {"email_address": email, "status": "subscribed", "merge_fields": {"FNAME": name}}
        mc.lists.add_list_member(list_id, member)
    campaign = create_campaign(mc, list_id)
    response = inject(
        emulator,
        {
            "campaign_id": campaign["id"],
            "send_time": SEND_TIME,
            "activity": [
                event("ann", "open", 10, ip="203.0.113.5"),
                event("ann", "click", 12, url="https://acme-outfitters.com/sale"),
                event("ann", "open", 60),
                event("bob", "open", 30),
                event("dee", "bounce", 1, type="hard"),
            ],
            "unsubscribes": [
                {"email_address": "bob@brightmail.co", "timestamp": at(31), "reason": NO_LONGER},
            ],
        },
    )
    assert response.status_code == 200, response.text
    counts = {"emails_sent": 4, "activity_added": 5, "unsubscribes_added": 1}
    assert response.json() == {"campaign_id": campaign["id"], **counts}
    return {**campaign, "list_id": list_id}


def test_injected_activity_makes_an_exact_report(mc, rp, quiet_campaign):
    campaign_id = quiet_campaign["id"]
    report = rp.get_campaign_report(campaign_id)
    assert (report["id"], report["list_id"]) == (campaign_id, quiet_campaign["list_id"])
    assert (report["list_name"], report["campaign_title"]) == ("Newsletter", "May news")
    assert (report["subject_line"], report["type"]) == ("Fresh for May", "regular")
    assert (report["send_time"], report["emails_sent"], report["unsubscribed"]) == (SEND_TIME, 4, 1)
    assert report["bounces"] == {"hard_bounces": 1, "soft_bounces": 0, "syntax_errors": 0}
    assert report["opens"] == {
        "opens_total": 3,
        "unique_opens": 2,
        "open_rate": pytest.approx(2 / 3, abs=1e-4),
        "last_open": at(60),
    }
    assert report["clicks"] == {
        "clicks_total": 1,
        "unique_clicks": 1,
        "unique_subscriber_clicks": 1,
        "click_rate": pytest.approx(1 / 3, abs=1e-4),
        "last_click": at(12),
    }
    summary = mc.campaigns.get(campaign_id)["report_summary"]
    counts = (summary["opens"], summary["unique_opens"], summary["clicks"], summary["subscriber_clicks"])
    assert counts == (3, 2, 1, 1)


def test_email_activity_lists_every_recipient_in_send_order(rp, quiet_campaign):
    body = rp.get_email_activity_for_campaign(quiet_campaign["id"])
    assert body["campaign_id"] == quiet_campaign["id"] and body["total_items"] == 4
    by_email = {e["email_address"].split("@")[0]: e for e in body["emails"]}
    assert list(by_email) == ["ann", "bob", "cy", "dee"]
    assert by_email["ann"]["activity"] == [
        {"action": "open", "timestamp": at(10), "ip": "203.0.113.5"},
        {"action": "click", "timestamp": at(12), "url": "https://acme-outfitters.com/sale", "ip": ""},
        {"action": "open", "timestamp": at(60), "ip": ""},
    ]
    assert by_email["cy"]["activity"] == []  # received it and did nothing
    assert by_email["dee"]["activity"] == [{"action": "bounce", "timestamp": at(1), "type": "hard"}]
    ann = by_email["ann"]
    assert (ann["list_id"], ann["list_is_active"]) == (quiet_campaign["list_id"], True)
    assert len(ann["email_id"]) == 32

    one = rp.get_email_activity_for_subscriber(quiet_campaign["id"], ann["email_id"])
    assert one["activity"] == ann["activity"]
    status, _ = api_error(lambda: rp.get_email_activity_for_subscriber(quiet_campaign["id"], "0" * 32))
    assert status == 404


def test_email_activity_since_keeps_only_later_events(rp, quiet_campaign):
    campaign_id = quiet_campaign["id"]
    later = all_activity(rp, campaign_id, since=at(10))
    assert [(e["email_address"], [a["timestamp"] for a in e["activity"]]) for e in later] == [
        ("ann@brightmail.co", [at(12), at(60)]),  # strictly after: the open at +10 is excluded
        ("bob@brightmail.co", [at(30)]),
    ]
    zulu = datetime.fromisoformat(at(30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert [e["email_address"] for e in all_activity(rp, campaign_id, since=zulu)] == ["ann@brightmail.co"]
    assert all_activity(rp, campaign_id, since=at(600)) == []
    one = rp.get_email_activity_for_subscriber(campaign_id, "ann@brightmail.co", since=at(12))
    assert [a["timestamp"] for a in one["activity"]] == [at(60)]
    status, body = api_error(lambda: rp.get_email_activity_for_campaign(campaign_id, since="yesterday"))
    assert (status, body["errors"][0]["field"]) == (400, "since")


def test_unsubscribes_are_reported_and_unsubscribe_the_member(mc, rp, quiet_campaign):
    body = rp.get_unsubscribed_list_for_campaign(quiet_campaign["id"])
    assert body["total_items"] == 1
    (unsub,) = body["unsubscribes"]
    assert (unsub["email_address"], unsub["timestamp"]) == ("bob@brightmail.co", at(31))
    assert unsub["reason"] == NO_LONGER
    assert (unsub["campaign_id"], unsub["list_id"]) == (quiet_campaign["id"], quiet_campaign["list_id"])
    assert unsub["merge_fields"]["FNAME"] == "bob"
    member = mc.lists.get_list_member(quiet_campaign["list_id"], "bob@brightmail.co")
    assert (member["status"], member["unsubscribe_reason"]) == ("unsubscribed", NO_LONGER)
    assert rp.get_unsubscribed_list_member(quiet_campaign["id"], unsub["email_id"])["reason"] == NO_LONGER


def test_sent_to_reports_delivery_and_opens(mc, rp, quiet_campaign):
    sent_to = rp.get_campaign_recipients(quiet_campaign["id"])["sent_to"]
    by_name = {
        r["email_address"].split("@")[0]: (r["status"], r["open_count"], r["last_open"]) for r in sent_to
    }
    assert by_name == {
        "ann": ("sent", 2, at(60)),
        "bob": ("sent", 1, at(30)),
        "cy": ("sent", 0, ""),
        "dee": ("hard", 0, ""),
    }
    assert mc.lists.get_list_member(quiet_campaign["list_id"], "dee@brightmail.co")["status"] == "cleaned"
    assert rp.get_campaign_recipient(quiet_campaign["id"], "cy@brightmail.co")["status"] == "sent"


def test_open_details_list_openers_with_each_open(rp, quiet_campaign):
    body = rp.get_campaign_open_details(quiet_campaign["id"])
    assert (body["total_items"], body["total_opens"]) == (2, 3)
    opens = {m["email_address"]: [o["timestamp"] for o in m["opens"]] for m in body["members"]}
    assert opens == {"ann@brightmail.co": [at(10), at(60)], "bob@brightmail.co": [at(30)]}
    statuses = {m["email_address"]: m["contact_status"] for m in body["members"]}
    assert statuses["bob@brightmail.co"] == "unsubscribed"
    later = rp.get_campaign_open_details(quiet_campaign["id"], since=at(10))
    assert [(m["email_address"], m["opens_count"]) for m in later["members"]] == [
        ("ann@brightmail.co", 1),
        ("bob@brightmail.co", 1),
    ]


def test_click_details_count_clicks_per_link(rp, quiet_campaign):
    body = rp.get_campaign_click_details(quiet_campaign["id"])
    (link,) = body["urls_clicked"]
    assert link["url"] == "https://acme-outfitters.com/sale"
    assert (link["total_clicks"], link["unique_clicks"]) == (1, 1)
    assert (link["click_percentage"], link["last_click"]) == (1.0, at(12))
    members = rp.get_subscribers_info(quiet_campaign["id"], link["id"])["members"]
    assert [(m["email_address"], m["clicks"]) for m in members] == [("ann@brightmail.co", 1)]
    status, _ = api_error(lambda: rp.get_subscribers_info(quiet_campaign["id"], "0" * 10))
    assert status == 404


def test_report_listing_filters_by_send_time_and_type(emulator, mc, rp, quiet_campaign):
    later = create_campaign(mc, quiet_campaign["list_id"], "June news")
    inject(emulator, {"campaign_id": later["id"], "send_time": "2024-06-01T09:00:00+00:00"})
    never_sent = create_campaign(mc, quiet_campaign["list_id"], "never sent")

    reports = rp.get_all_campaign_reports()
    assert reports["total_items"] == 2
    assert ids(reports["reports"]) == [quiet_campaign["id"], later["id"]]
    since = rp.get_all_campaign_reports(since_send_time="2024-05-15T00:00:00Z")
    assert ids(since["reports"]) == [later["id"]]
    before = rp.get_all_campaign_reports(before_send_time="2024-05-15T00:00:00Z")
    assert ids(before["reports"]) == [quiet_campaign["id"]]
    assert rp.get_all_campaign_reports(type="plaintext")["total_items"] == 0
    status, _ = api_error(lambda: rp.get_campaign_report(never_sent["id"]))
    assert status == 404


def test_report_ecommerce_counts_orders_of_the_campaign(mc, rp, quiet_campaign):
    store = {"id": "acme", "list_id": quiet_campaign["list_id"], "name": "Acme", "currency_code": "USD"}
    mc.ecommerce.add_store(store)
    mc.ecommerce.add_store_product("acme", {"id": "p", "title": "P", "variants": [{"id": "p", "title": "P"}]})
    for order_id, total, status in (("o1", 40, "paid"), ("o2", 25, "refunded")):
        mc.ecommerce.add_store_order(
            "acme",
            {
                "id": order_id,
                "customer": {"id": "ann", "email_address": "ann@brightmail.co"},
                "campaign_id": quiet_campaign["id"],
                "financial_status": status,
                "currency_code": "USD",
                "order_total": total,
                "lines": [
                    {"id": "1", "product_id": "p", "product_variant_id": "p", "quantity": 1, "price": total},
                ],
            },
        )
    report = rp.get_campaign_report(quiet_campaign["id"])
    assert report["ecommerce"] == {
        "total_orders": 2,
        "total_spent": 40.0,
        "total_revenue": 40.0,
        "currency_code": "USD",
    }


def test_injection_errors_change_nothing(emulator, rp, quiet_campaign):
    campaign_id = quiet_campaign["id"]
    assert inject(emulator, {"campaign_id": "0000000000", "activity": []}).status_code == 404

    activity = [event("cy", "open", 5), event("cy", "click", 6)]
    click_without_url = inject(emulator, {"campaign_id": campaign_id, "activity": activity})
    assert click_without_url.status_code == 400
    assert click_without_url.json()["errors"][0]["field"] == "activity.item:1.url"

    stranger = {"email_address": "stranger@brightmail.co", "timestamp": at(5)}
    response = inject(emulator, {"campaign_id": campaign_id, "unsubscribes": [stranger]})
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "unsubscribes.item:0.email_address"

    response = inject(emulator, {"campaign_id": campaign_id, "activity": [event("cy", "forward", 5)]})
    assert response.json()["errors"][0]["field"] == "activity.item:0.action"

    assert rp.get_email_activity_for_subscriber(campaign_id, "cy@brightmail.co")["activity"] == []


def test_injecting_for_a_later_member_adds_a_recipient(emulator, mc, rp, quiet_campaign):
    eli = {"email_address": "eli@brightmail.co", "status": "subscribed"}
    mc.lists.add_list_member(quiet_campaign["list_id"], eli)
    response = inject(emulator, {"campaign_id": quiet_campaign["id"], "activity": [event("eli", "open", 90)]})
    assert response.json()["emails_sent"] == 5
    assert rp.get_campaign_report(quiet_campaign["id"])["emails_sent"] == 5


# ------------------------------------------------------------------------------------------------
# batched reads
# ------------------------------------------------------------------------------------------------


def batch_results(mc: MailchimpMarketing.Client, operations: list[dict[str, Any]]) -> dict[str, Any]:
    """Run ``operations`` as a batch; the parsed response of each, by operation id."""
    return {op_id: json.loads(response) for op_id, response in raw_batch_results(mc, operations).items()}


def raw_batch_results(mc: MailchimpMarketing.Client, operations: list[dict[str, Any]]) -> dict[str, str]:
    """Run ``operations`` as a batch; the response string of each, by operation id."""
    batch = mc.batches.start({"operations": operations})
    deadline = time.monotonic() + 20
    while batch["status"] != "finished":
        assert time.monotonic() < deadline, "batch did not finish"
        time.sleep(0.05)
        batch = mc.batches.status(batch["id"])
    archive = requests.get(batch["response_body_url"], timeout=30).content
    results = {}
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        for member in tar:
            if member.isfile():
                for result in json.loads(tar.extractfile(member).read() or b"[]"):
                    results[result["operation_id"]] = result["response"]
    return results


def test_batched_email_activity_without_count_returns_every_recipient(mc):
    list_id = make_list(mc)
    add_members(mc, list_id, 15)
    campaign = create_campaign(mc, list_id)
    mc.campaigns.send(campaign["id"])
    reports = f"/reports/{campaign['id']}"
    results = batch_results(
        mc,
        [
            {"method": "GET", "path": f"{reports}/email-activity", "operation_id": "activity"},
            {"method": "GET", "path": f"{reports}/sent-to", "operation_id": "sent", "params": {"count": 5}},
        ],
    )
    assert len(results["activity"]["emails"]) == 15 and results["activity"]["total_items"] == 15
    assert len(results["sent"]["sent_to"]) == 5 and results["sent"]["total_items"] == 15


def test_batched_email_activity_answers_like_the_direct_call(emulator, mc, quiet_campaign):
    """The engagement pull's operation (``exclude_fields``, ``since``) and other filters, before and
    after the report's tally is built (``since`` then skips recipients by it), with non-ASCII text:
    the batched response is the direct call's, escaped like ``json.dumps`` and Mailchimp (``\\/``)."""
    campaign_id = quiet_campaign["id"]
    url = "https://acme-outfitters.com/caf\u00e9"
    assert inject(emulator, {"campaign_id": campaign_id, "activity": [event("cy", "click", 20, url=url)]}).ok
    pull = {"exclude_fields": "emails._links,_links"}
    params = [pull, {**pull, "since": at(11)}, {**pull, "since": at(600)}, {"since": at(11)},
              {"fields": "emails.email_address,emails._links,total_items", "exclude_fields": "emails._links"}]
    path = f"/reports/{campaign_id}/email-activity"
    operations = [
        {"method": "GET", "path": path, "params": p, "operation_id": str(n)} for n, p in enumerate(params)
    ]
    for read_report_first in (False, True):
        if read_report_first:
            mc.reports.get_campaign_report(campaign_id)  # builds the campaign's tally
        raw = raw_batch_results(mc, operations)
        for n, p in enumerate(params):
            assert json.loads(raw[str(n)]) == emulator.api("GET", path, params=p).json(), p
        later = [e["email_address"].split("@")[0] for e in json.loads(raw["1"])["emails"]]
        assert later == ["ann", "bob", "cy"]
        assert "caf\\u00e9" in raw["0"] and "https:\\/\\/acme-outfitters.com" in raw["0"]
