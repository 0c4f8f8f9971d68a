"""The running report tally agrees with a report computed from every event, at every moment.

Reports only show activity dated up to the request (future events appear when their time comes),
and the list endpoints read each campaign's counts from a running tally instead of re-reading all
of its events. These specs build one campaign's activity through the admin API (past and future
events, equal timestamps, a recipient with two bounces injected out of order, unsubscribes) and
compare the tally with ``reports.summarize`` over the same record at a series of moments, after
more activity is injected, and for a moment earlier than the last one read.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

import pytest

from mailchimp_emulator import reports, tally

EMAILS = [f"reader{n}@acme-outfitters.com" for n in range(6)]


def stamp(epoch: float) -> str:
    return datetime.fromtimestamp(int(epoch), timezone.utc).isoformat()


@pytest.fixture
def campaign(emulator: Any, list_body: dict[str, Any]) -> dict[str, Any]:
    """A campaign sent an hour ago to six members, with activity from the past into the future."""
    list_id = emulator.api("POST", "/lists", json=list_body).json()["id"]
    members = [{"email_address": e, "status": "subscribed"} for e in EMAILS]
    assert emulator.api("POST", f"/lists/{list_id}", json={"members": members}).json()["total_created"] == 6
    settings = {"subject_line": "News", "from_name": "Acme", "reply_to": "news@acme-outfitters.com"}
    campaign_id = emulator.api(
        "POST", "/campaigns", json={"type": "regular", "recipients": {"list_id": list_id}, "settings": settings}
    ).json()["id"]
    now = time.time()
    sent = now - 3600
    at = {n: stamp(sent + n * 60) for n in range(1, 10)}
    future = stamp(now + 3600)
    activity = [
        {"email_address": EMAILS[0], "action": "open", "timestamp": at[1], "ip": "203.0.113.1"},
        {"email_address": EMAILS[1], "action": "open", "timestamp": at[1]},  # same time as the first
        {"email_address": EMAILS[0], "action": "open", "timestamp": at[3]},
        {"email_address": EMAILS[0], "action": "click", "timestamp": at[4], "url": "https://acme-outfitters.com/a"},
        {"email_address": EMAILS[0], "action": "click", "timestamp": at[5], "url": "https://acme-outfitters.com/a"},
        {"email_address": EMAILS[1], "action": "click", "timestamp": at[5], "url": "https://acme-outfitters.com/b"},
        {"email_address": EMAILS[2], "action": "bounce", "timestamp": at[6], "type": "soft"},
        {"email_address": EMAILS[3], "action": "open", "timestamp": future},
        {"email_address": EMAILS[3], "action": "click", "timestamp": future, "url": "https://acme-outfitters.com/b"},
    ]
    unsubscribes = [
        {"email_address": EMAILS[4], "timestamp": at[7]},
        {"email_address": EMAILS[5], "timestamp": future, "reason": "Other"},
    ]
    emulator.admin(
        "POST",
        "activity",
        json={"campaign_id": campaign_id, "send_time": stamp(sent), "activity": activity, "unsubscribes": unsubscribes},
    )
    return {"id": campaign_id, "sent": sent, "now": now}


def reference(state: Any, campaign_id: str, now: float) -> dict[str, Any]:
    return reports.summarize(reports.Visible(state, campaign_id, now))


def test_tally_matches_a_full_recount_as_time_passes(emulator: Any, campaign: dict[str, Any]) -> None:
    state, campaign_id = emulator.state, campaign["id"]
    moments = [campaign["sent"] + n * 60 for n in range(0, 10)] + [campaign["now"], campaign["now"] + 7200]
    for now in moments:
        assert tally.campaign_summary(state, campaign_id, reports.epoch, now) == reference(state, campaign_id, now)
    final = tally.campaign_summary(state, campaign_id, reports.epoch, campaign["now"] + 7200)
    assert final is not None
    assert (final["opens_total"], final["unique_opens"], final["clicks_total"], final["unique_clicks"]) == (4, 3, 4, 3)
    assert (final["soft_bounces"], final["unsubscribed"]) == (1, 2)


def test_an_earlier_moment_is_recounted_without_disturbing_the_tally(emulator: Any, campaign: dict[str, Any]) -> None:
    state, campaign_id = emulator.state, campaign["id"]
    later, earlier = campaign["now"] + 7200, campaign["sent"] + 150
    assert tally.campaign_summary(state, campaign_id, reports.epoch, later) == reference(state, campaign_id, later)
    assert tally.campaign_summary(state, campaign_id, reports.epoch, earlier) == reference(state, campaign_id, earlier)
    assert tally.campaign_summary(state, campaign_id, reports.epoch, later) == reference(state, campaign_id, later)


def test_injected_activity_is_counted_including_an_earlier_bounce(emulator: Any, campaign: dict[str, Any]) -> None:
    state, campaign_id = emulator.state, campaign["id"]
    report = emulator.api("GET", f"/reports/{campaign_id}").json()
    assert (report["bounces"]["soft_bounces"], report["bounces"]["hard_bounces"]) == (1, 0)
    # A hard bounce dated before the soft one becomes the recipient's first bounce.
    early_bounce = {"email_address": EMAILS[2], "action": "bounce", "timestamp": stamp(campaign["sent"] + 30)}
    emulator.admin("POST", "activity", json={"campaign_id": campaign_id, "activity": [early_bounce]})
    report = emulator.api("GET", f"/reports/{campaign_id}").json()
    assert (report["bounces"]["soft_bounces"], report["bounces"]["hard_bounces"]) == (0, 1)
    extra_open = {"email_address": EMAILS[5], "action": "open", "timestamp": stamp(campaign["sent"] + 90)}
    emulator.admin("POST", "activity", json={"campaign_id": campaign_id, "activity": [extra_open]})
    now = time.time()
    assert tally.campaign_summary(state, campaign_id, reports.epoch, now) == reference(state, campaign_id, now)
    listed = emulator.api("GET", "/reports").json()["reports"][0]
    assert listed["opens"]["unique_opens"] == 3 and listed["opens"]["opens_total"] == 4
    summary = emulator.api("GET", f"/campaigns/{campaign_id}").json()["report_summary"]
    assert (summary["opens"], summary["unique_opens"], summary["clicks"]) == (4, 3, 3)
