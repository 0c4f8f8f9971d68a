"""Classic automations (``automation``, ``automation_email``, ``automation_recipient``,
``automation_recipient_activity``) and segments (``segment``, ``segment_member``) through the
``mailchimp_engagement_pull`` DAG, into SQLite and PostgreSQL, checked against Mailchimp's own
reports; rejected records kept."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from engagement_harness import TASKS, EngagementHarness, subscriber_hash
from test_engagement_pull_dag import READERS, seed

from mailchimp_provider.batches.results import OperationResult
from mailchimp_provider.reverse import automation_activity, segment_members
from mailchimp_provider.warehouse.tables import WarehouseTables

THREE_DAYS_AGO = (datetime.now(timezone.utc) - timedelta(days=3)).replace(microsecond=0).isoformat()


def welcome_series(h: EngagementHarness, list_id: str) -> tuple[str, list[str]]:
    made = h.emulator.admin("POST", "automations", json={
        "list_id": list_id, "workflow_type": "welcomeSeries", "title": "Welcome", "from_name": "Acme",
        "reply_to": "hello@acme-outfitters.com",
        "emails": [{"subject_line": "Welcome", "delay": {"amount": 0, "type": "now"}},
                   {"subject_line": "Best sellers", "delay": {"amount": 2, "type": "day"}}]})
    h.api("POST", f"/automations/{made['id']}/actions/start-all-emails")
    return made["id"], [e["id"] for e in made["emails"]]


def send(h: EngagementHarness, email_id: str, emails: list[str]) -> None:
    h.emulator.admin("POST", "automation-sends", json={"email_id": email_id, "email_addresses": emails,
                                                        "send_time": THREE_DAYS_AGO})


def activity_of(h: EngagementHarness, email_id: str) -> set[tuple]:
    """Mailchimp's own email-activity report of an automation email, as key tuples."""
    body = h.api("GET", f"/reports/{email_id}/email-activity", params={"count": 1000})
    return {(e["email_id"], a["action"], datetime.fromisoformat(a["timestamp"]), a.get("url"))
            for e in body["emails"] for a in e["activity"]}


def test_automations_and_segments_match_mailchimp_and_follow_changes(harness: EngagementHarness) -> None:
    h = harness
    list_id, _ = seed(h)
    stay, leave = subscriber_hash(READERS[0]), subscriber_hash(READERS[1])
    vip = h.api("POST", f"/lists/{list_id}/segments", json={"name": "VIP", "static_segment": READERS[:2]})
    saved = h.api("POST", f"/lists/{list_id}/segments", json={"name": "Reader 5", "options": {"conditions": [
        {"condition_type": "EmailAddress", "field": "EMAIL", "op": "starts", "value": "reader05"}]}})
    workflow_id, (first, second) = welcome_series(h, list_id)
    send(h, first, READERS[5:])  # READERS[0..4] changed status in ``seed``'s campaign

    assert h.run() == {t: "success" for t in TASKS}

    [automation] = h.rows("automation")
    assert (automation["id"], automation["status"], automation["list_id"], automation["workflow_type"]) == (
        workflow_id, "sending", list_id, "welcomeSeries")
    assert json.loads(automation["trigger_settings"])["workflow_type"] == "welcomeSeries"
    emails = {e["id"]: e for e in h.rows("automation_email")}
    assert set(emails) == {first, second}
    assert (emails[second]["position"], emails[second]["delay_amount"], emails[second]["delay_type"]) == (2, 2, "day")
    assert emails[first]["automation_id"] == workflow_id and emails[first]["_fivetran_deleted"] is False

    report = h.api("GET", f"/reports/{first}")
    recipients = h.rows("automation_recipient")
    assert len(recipients) == report["emails_sent"] == 3
    assert {r["member_id"] for r in recipients} == {subscriber_hash(e) for e in READERS[5:]}
    stored = {(r["member_id"], r["action"], r["timestamp"], r["url"]) for r in h.rows("automation_activity")}
    assert stored == activity_of(h, first)
    opens = sum(1 for r in h.rows("automation_activity") if r["action"] == "open")
    assert opens == report["opens"]["opens_total"]
    unsubscribed = {u["email_id"] for u in h.api("GET", f"/reports/{first}/unsubscribed")["unsubscribes"]}
    assert {u["member_id"] for u in h.rows("unsubscribe") if u["campaign_id"] == first} == unsubscribed

    segments = {s["name"]: s for s in h.rows("segment")}
    assert (segments["VIP"]["id"], segments["VIP"]["type"]) == (vip["id"], "static")
    assert (segments["Reader 5"]["type"], segments["Reader 5"]["_fivetran_deleted"]) == ("saved", False)
    members = {(m["segment_id"], m["member_id"]) for m in h.rows("segment_member")}
    assert members == {(vip["id"], stay), (vip["id"], leave), (saved["id"], subscriber_hash(READERS[5]))}

    h.run()  # incremental: segments unchanged, sent-to read whole already: neither is read again
    assert h.batches_sent(segment_members.ENTITY) == 1
    assert sum(1 for r in h.rows("automation_recipient")) == 3

    h.api("DELETE", f"/lists/{list_id}/segments/{vip['id']}/members/{leave}")
    h.api("DELETE", f"/lists/{list_id}/segments/{saved['id']}")
    send(h, second, READERS[6:])
    h.run()
    gone = {(m["segment_id"], m["member_id"]): m["_fivetran_deleted"] for m in h.rows("segment_member")}
    assert gone == {(vip["id"], stay): False, (vip["id"], leave): True, (saved["id"], subscriber_hash(READERS[5])): True}
    assert {s["name"]: s["_fivetran_deleted"] for s in h.rows("segment")} == {"VIP": False, "Reader 5": True}
    assert sum(1 for r in h.rows("automation_recipient") if r["automation_email_id"] == second) == 2
    stored = {(r["member_id"], r["action"], r["timestamp"], r["url"]) for r in h.rows("automation_activity")}
    assert stored == activity_of(h, first) | activity_of(h, second)


def test_records_that_cannot_be_stored_are_kept_and_the_rest_is_loaded(warehouse) -> None:
    tables = WarehouseTables()
    tables.create_all(warehouse.engine)
    activity = {"emails": [
        {"email_id": "a" * 32, "email_address": "a@shop.com", "list_id": "L1",
         "activity": [{"action": "open", "timestamp": "2024-05-01T10:00:00+00:00", "ip": "203.0.113.9"}]},
        {"email_id": "b" * 32, "email_address": "b@shop.com", "list_id": "L1",
         "activity": [{"action": "open", "timestamp": "yesterday"}]},
    ]}
    members = {"members": [{"id": "a" * 32, "email_address": "a@shop.com", "status": "subscribed"}, ["odd"]],
               "total_items": 2}
    results = [OperationResult.from_response("activity:E1", 200, json.dumps(activity)),
               OperationResult.from_response("sent-to:E1", 404, json.dumps({"title": "Resource Not Found"}))]
    outcome = automation_activity.apply_results(warehouse.engine, tables, iter(results), current_pass="p1",
                                                submitted_at=None)
    assert outcome.emails == 1 and "HTTP 404" in outcome.failures[0]
    loaded = segment_members.apply_results(
        warehouse.engine, tables, iter([OperationResult.from_response("L1:7", 200, json.dumps(members))]),
        current_pass="p1")
    assert loaded.segments == 1
    with warehouse.engine.connect() as conn:
        [row] = conn.execute(sa.select(tables.automation_activity)).mappings().all()
        assert (row["automation_email_id"], row["member_id"], row["url"]) == ("E1", "a" * 32, None)
        [member] = conn.execute(sa.select(tables.segment_member)).mappings().all()
        assert (member["segment_id"], member["member_id"], member["status"]) == (7, "a" * 32, "subscribed")
        kept = {(r["stream"], r["scope"], r["field"]) for r in conn.execute(sa.select(tables.rejected)).mappings()}
    assert kept == {("automation_activity", "E1", "activity.timestamp"), ("segment_member", "L1:7", "members[]")}
