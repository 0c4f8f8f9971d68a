"""Classic automations through the official ``mailchimp_marketing`` client (shared/mailchimp-api.md
§12 E): workflows and their emails, start and pause, the queue, and the emails' reports, which are
campaign reports (an automation email is a campaign of type ``automation``)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from test_campaigns import add_members, api_error, make_list

from mailchimp_emulator.members import subscriber_hash


def welcome_series(emulator: Any, list_id: str, **extra: Any) -> dict[str, Any]:
    """A two-email welcome series, made the way Mailchimp's web app makes one (admin route)."""
    return emulator.admin("POST", "automations", json={
        "list_id": list_id, "workflow_type": "welcomeSeries", "title": "Welcome", "from_name": "Acme",
        "reply_to": "hello@acme-outfitters.com",
        "emails": [{"subject_line": "Welcome to Acme", "delay": {"amount": 0, "type": "now"}},
                   {"subject_line": "Our best sellers", "delay": {"amount": 2, "type": "day"}}],
        **extra,
    })


def test_workflow_and_emails_read_like_mailchimps(mc: Any, emulator: Any) -> None:
    list_id = make_list(mc)
    made = welcome_series(emulator, list_id)
    listed = mc.automations.list()
    assert listed["total_items"] == 1
    workflow = mc.automations.get(made["id"])
    assert workflow == listed["automations"][0]
    assert (workflow["status"], workflow["recipients"]["list_id"], workflow["settings"]["title"]) == (
        "save", list_id, "Welcome")
    assert workflow["trigger_settings"] == {"workflow_type": "welcomeSeries", "workflow_title": "Welcome",
                                            "runtime": {}, "workflow_emails_count": 2}

    emails = mc.automations.list_all_workflow_emails(made["id"])
    assert emails["total_items"] == 2
    first, second = emails["emails"]
    assert (first["position"], first["workflow_id"], first["status"]) == (1, made["id"], "save")
    assert second["delay"]["amount"] == 2 and second["delay"]["type"] == "day"
    assert second["delay"]["full_description"] == "2 days after previous campaign sent"
    assert mc.automations.get_workflow_email(made["id"], first["id"]) == first
    assert mc.campaigns.get(first["id"])["type"] == "automation"  # every automation email is a campaign

    status, _ = api_error(lambda: mc.automations.get("0000000000"))
    assert status == 404


def test_start_pause_and_the_queue_send_once_per_subscriber(mc: Any, emulator: Any) -> None:
    list_id = make_list(mc)
    fans = add_members(mc, list_id, 2)
    made = welcome_series(emulator, list_id)
    first, second = mc.automations.list_all_workflow_emails(made["id"])["emails"]

    status, body = api_error(lambda: mc.automations.add_workflow_email_subscriber(
        made["id"], first["id"], {"email_address": fans[0]}))
    assert status == 400 and "not sending" in body["detail"]

    mc.automations.start_all_emails(made["id"])
    workflow = mc.automations.get(made["id"])
    assert workflow["status"] == "sending" and workflow["start_time"]

    queued = mc.automations.add_workflow_email_subscriber(made["id"], first["id"], {"email_address": fans[0]})
    assert (queued["id"], queued["email_id"]) == (subscriber_hash(fans[0]), first["id"])
    assert mc.automations.get_workflow_email(made["id"], first["id"])["emails_sent"] == 1  # no delay: sent
    assert mc.automations.get_workflow_email_subscriber_queue(made["id"], first["id"])["queue"] == []

    later = mc.automations.add_workflow_email_subscriber(made["id"], second["id"], {"email_address": fans[0]})
    sends_at = datetime.fromisoformat(later["next_send"])
    assert timedelta(days=1, hours=23) < sends_at - datetime.now(timezone.utc) <= timedelta(days=2)
    queue = mc.automations.get_workflow_email_subscriber_queue(made["id"], second["id"])
    assert [q["email_address"] for q in queue["queue"]] == [fans[0]]
    assert mc.automations.get_workflow_email(made["id"], second["id"])["emails_sent"] == 0

    status, body = api_error(lambda: mc.automations.add_workflow_email_subscriber(
        made["id"], first["id"], {"email_address": fans[0]}))
    assert status == 400 and "already" in body["detail"]

    mc.automations.pause_workflow_email(made["id"], first["id"])
    assert mc.automations.get_workflow_email(made["id"], first["id"])["status"] == "paused"
    mc.automations.pause_all_emails(made["id"])
    assert mc.automations.get(made["id"])["status"] == "paused"


def test_an_automation_emails_report_is_a_campaign_report_with_deterministic_activity(mc: Any, emulator: Any) -> None:
    list_id = make_list(mc)
    fans = add_members(mc, list_id, 60)
    made = welcome_series(emulator, list_id)
    first = mc.automations.list_all_workflow_emails(made["id"])["emails"][0]
    mc.automations.start_all_emails(made["id"])
    day_ago = (datetime.now(timezone.utc) - timedelta(days=3)).replace(microsecond=0).isoformat()
    sent = emulator.admin("POST", "automation-sends", json={"email_id": first["id"], "email_addresses": fans,
                                                             "send_time": day_ago})
    assert (sent["sent"], sent["emails_sent"]) == (60, 60)

    report = mc.reports.get_campaign_report(first["id"])
    assert (report["type"], report["emails_sent"]) == ("automation", 60)
    activity = mc.reports.get_email_activity_for_campaign(first["id"], count=1000)["emails"]
    assert len(activity) == 60
    opens = sum(1 for e in activity for a in e["activity"] if a["action"] == "open")
    assert opens == report["opens"]["opens_total"] > 0  # ~40% of recipients open, deterministically
    email = mc.automations.get_workflow_email(made["id"], first["id"])
    assert email["report_summary"]["opens"] == opens
    assert mc.automations.get(made["id"])["report_summary"]["opens"] == opens
    sent_to = mc.reports.get_campaign_recipients(first["id"], count=1000)
    assert sent_to["total_items"] == 60

    again = emulator.admin("POST", "automation-sends", json={"email_id": first["id"], "email_addresses": fans[:1]})
    assert (again["sent"], again["already_sent"]) == (0, 1)


def test_the_api_creates_only_abandoned_cart_workflows_of_a_store(mc: Any) -> None:
    list_id = make_list(mc)
    status, body = api_error(lambda: mc.automations.create({
        "recipients": {"list_id": list_id, "store_id": "nostore"},
        "trigger_settings": {"workflow_type": "abandonedCart"}}))
    assert status == 400 and body["errors"][0]["field"] == "recipients.store_id"
    status, body = api_error(lambda: mc.automations.create({
        "recipients": {"list_id": list_id, "store_id": "s1"}, "trigger_settings": {"workflow_type": "welcomeSeries"}}))
    assert status == 400
    mc.ecommerce.add_store({"id": "s1", "list_id": list_id, "name": "Acme", "currency_code": "USD"})
    workflow = mc.automations.create({"recipients": {"list_id": list_id, "store_id": "s1"},
                                      "settings": {"from_name": "Acme"},
                                      "trigger_settings": {"workflow_type": "abandonedCart"}})
    assert workflow["trigger_settings"]["workflow_type"] == "abandonedCart"
    assert workflow["recipients"]["store_id"] == "s1"
    [email] = mc.automations.list_all_workflow_emails(workflow["id"])["emails"]
    assert email["delay"]["action"] == "ecomm_abandoned_cart"
