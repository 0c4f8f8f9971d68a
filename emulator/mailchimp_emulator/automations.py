"""Classic automations (``/automations``): workflows, their emails, the email queue and sending.

A workflow (``state.automations``) holds its settings and the ids of its emails. Each email is a
campaign of type ``automation`` in ``state.campaigns`` (as in Mailchimp, where every email a
classic automation sends is a campaign object), so its report is an ordinary campaign report:
``/reports/{email_id}``, ``/email-activity``, ``/sent-to`` and ``/unsubscribed`` read the same
activity record as any campaign's (``reports.py``). Workflow-only data lives under private keys
of the email: ``_workflow_id``, ``_position``, ``_delay``, ``_start_time``, ``_queue``.

Sending: an email sends each subscriber once. A subscriber added to a sending email's queue
(``POST .../queue``) is sent the email when its delay has passed (``next_send``); due queue items
are delivered whenever an automations route is called, dated at their ``next_send``. Every
delivery records the recipient's activity with the same deterministic synthetic engagement as a
campaign send (``campaigns.record_synthetic_activity``), dated from that recipient's send, so
reports show it as its time comes.

``POST /automations`` creates what Mailchimp lets the API create: an ``abandonedCart`` workflow of
a connected store (one email). Other workflow types are made in Mailchimp's web app; the admin
route ``POST /_emulator/automations`` stands in for that, and ``POST /_emulator/automation-sends``
delivers an email to given members at a given (past) time, like ``/_emulator/activity`` does for
campaigns. See docs/emulator.md.
"""

from __future__ import annotations

import copy
import hashlib
import time
from typing import Any

from . import reports, tally
from .admin import admin_route
from .campaigns import _DEFAULT_SETTINGS, _DEFAULT_TRACKING, record_synthetic_activity
from .collections import filter_fields, page
from .errors import bad_request, not_found
from .members import find_member, require_list, subscriber_hash
from .routing import Call, Reply, no_content, ok, router
from .schema import Field, field_error, validate
from .state import EmulatorState, iso, now_iso, parse_iso

WORKFLOW_STATUSES = ("save", "paused", "sending")
WORKFLOW_TYPES = (
    "abandonedBrowse", "abandonedCart", "api", "bestCustomers", "categoryFollowup", "dateAdded", "emailFollowup",
    "emailSeries", "groupAdd", "groupRemove", "mandrill", "productFollowup", "purchaseFollowup", "recurringEvent",
    "specialEvent", "visitUrl", "welcomeSeries",
)
DELAY_TYPES = ("now", "day", "hour", "week")
_DELAY_SECONDS = {"now": 0, "hour": 3600, "day": 86400, "week": 7 * 86400}
CREATED_COUNTER = "automations created"
NOT_SENDING = "This automation email is not sending: start it before adding subscribers to its queue."
ALREADY_SENT = "This subscriber has already received this automation email."

_TEXT = Field("string")
_DELAY = Field("object", props={"amount": Field("integer"), "type": Field("string", enum=DELAY_TYPES),
                                "direction": Field("string", enum=("before", "after")), "action": _TEXT})
_EMAIL = Field("object", props={"subject_line": Field("string", max_length=150), "title": _TEXT,
                                "preview_text": _TEXT, "delay": _DELAY})
CREATE_BODY = Field(
    "object",
    required=("recipients", "trigger_settings"),
    props={
        "recipients": Field("object", required=("list_id", "store_id"), props={"list_id": _TEXT, "store_id": _TEXT}),
        "settings": Field("object", props={"from_name": _TEXT, "reply_to": _TEXT}),
        "trigger_settings": Field("object", required=("workflow_type",),
                                  props={"workflow_type": Field("string", enum=("abandonedCart",))}),
    },
)
ADMIN_BODY = Field(
    "object",
    required=("list_id", "emails"),
    props={
        "list_id": _TEXT,
        "workflow_type": Field("string", enum=WORKFLOW_TYPES),
        "title": _TEXT,
        "from_name": _TEXT,
        "reply_to": _TEXT,
        "saved_segment_id": Field("integer"),
        "emails": Field("array", items=_EMAIL),
    },
)
SEND_BODY = Field(
    "object",
    required=("email_id", "email_addresses"),
    props={"email_id": _TEXT, "email_addresses": Field("array", items=_TEXT), "send_time": _TEXT},
)


# ------------------------------------------------------------------------------------------------
# creation
# ------------------------------------------------------------------------------------------------
def _new_id(state: EmulatorState, kind: str) -> str:
    """10 hex chars from a counter: the same calls on a fresh emulator give the same ids."""
    while True:
        n = state.counters.get(CREATED_COUNTER, 0)
        state.count(CREATED_COUNTER)
        new_id = hashlib.sha1(f"automation-{kind}-{n}".encode()).hexdigest()[:10]
        if new_id not in state.automations and new_id not in state.campaigns:
            return new_id


def _delay(spec: dict[str, Any], position: int) -> dict[str, Any]:
    amount = int(spec.get("amount", 0 if position == 1 else 1))
    kind = spec.get("type") or ("now" if amount == 0 else "day")
    action = spec.get("action") or ("signup" if position == 1 else "previous_campaign_sent")
    when = "Immediately" if kind == "now" else f"{amount} {kind}{'s' if amount != 1 else ''}"
    return {
        "amount": amount,
        "type": kind,
        "direction": spec.get("direction") or "after",
        "action": action,
        "action_description": action.replace("_", " "),
        "full_description": f"{when} after {action.replace('_', ' ')}",
    }


def create_workflow(
    state: EmulatorState,
    *,
    list_id: str,
    workflow_type: str,
    title: str,
    from_name: str,
    reply_to: str,
    emails: list[dict[str, Any]],
    store_id: str = "",
    saved_segment_id: int | None = None,
) -> dict[str, Any]:
    """A workflow in status ``save`` with its emails (campaigns of type ``automation``)."""
    require_list(state, list_id)
    workflow_id = _new_id(state, "workflow")
    created = now_iso()
    segment_opts = {"saved_segment_id": saved_segment_id, "match": "all", "conditions": []} if saved_segment_id else {}
    workflow = {
        "id": workflow_id,
        "create_time": created,
        "start_time": "",
        "status": "save",
        "recipients": {"list_id": list_id, "store_id": store_id, "segment_opts": segment_opts},
        "settings": {"title": title, "from_name": from_name, "reply_to": reply_to, "use_conversation": False,
                     "to_name": "", "authenticate": True, "auto_footer": False, "inline_css": False},
        "tracking": {k: v for k, v in _DEFAULT_TRACKING.items()},
        "trigger_settings": {"workflow_type": workflow_type, "workflow_title": title, "runtime": {}},
        "_emails": [],
    }
    state.automations[workflow_id] = workflow
    for position, spec in enumerate(emails, start=1):
        email_id = _new_id(state, "email")
        subject = spec.get("subject_line") or f"{title} #{position}"
        state.campaigns[email_id] = {
            "id": email_id,
            "web_id": int(email_id, 16) % 1_000_000_000,
            "parent_campaign_id": "",
            "type": "automation",
            "create_time": created,
            "archive_url": f"https://eepurl.com/{email_id}",
            "long_archive_url": f"https://us1.campaign-archive.com/?u=emulator&id={email_id}",
            "status": "save",
            "emails_sent": 0,
            "send_time": "",
            "content_type": "template",
            "needs_block_refresh": False,
            "resendable": False,
            "recipients": {"list_id": list_id},
            "settings": {**_DEFAULT_SETTINGS, "subject_line": subject, "title": spec.get("title") or subject,
                         "preview_text": spec.get("preview_text", ""), "from_name": from_name, "reply_to": reply_to},
            "tracking": dict(_DEFAULT_TRACKING),
            "delivery_status": {"enabled": False},
            "_workflow_id": workflow_id,
            "_position": position,
            "_delay": _delay(spec.get("delay") or {}, position),
            "_start_time": "",
            "_queue": [],
        }
        workflow["_emails"].append(email_id)
    return workflow


# ------------------------------------------------------------------------------------------------
# sending
# ------------------------------------------------------------------------------------------------
def deliver(state: EmulatorState, email: dict[str, Any], member: dict[str, Any], sent_at: float) -> bool:
    """Send ``email`` to ``member`` at ``sent_at`` with its synthetic activity; False if the member
    had it already (an automation email goes to each subscriber once)."""
    record = state.activity.setdefault(email["id"], {"list_id": member["list_id"], "emails": {}, "unsubscribes": []})
    if member["id"] in record["emails"]:
        return False
    record["emails"][member["id"]] = {"email_address": member["email_address"], "activity": []}
    record_synthetic_activity(state, email["id"], record, member["id"], sent_at)
    email["emails_sent"] = len(record["emails"])
    stamp = iso(sent_at)
    if not email["send_time"] or parse_iso(email["send_time"]) < sent_at:  # type: ignore[operator]
        email["send_time"] = stamp
    tally.forget(state, email["id"])
    return True


def deliver_due(state: EmulatorState, now: float | None = None) -> int:
    """Deliver every queued subscriber whose ``next_send`` has come (of sending emails); returns how many."""
    now = time.time() if now is None else now
    sent = 0
    for workflow in state.automations.values():
        for email_id in workflow["_emails"]:
            email = state.campaigns.get(email_id)
            if email is None or email["status"] != "sending" or not email["_queue"]:
                continue
            due = [q for q in email["_queue"] if (parse_iso(q["next_send"]) or 0.0) <= now]
            for item in due:
                member = find_member(state, workflow["recipients"]["list_id"], item["id"])
                if member is not None and member["status"] == "subscribed":
                    sent += deliver(state, email, member, parse_iso(item["next_send"]) or now)
            email["_queue"] = [q for q in email["_queue"] if q not in due]
    return sent


# ------------------------------------------------------------------------------------------------
# rendering
# ------------------------------------------------------------------------------------------------
def _summary(state: EmulatorState, email_ids: list[str]) -> dict[str, Any]:
    """Opens and clicks over the emails (one email's report summary, or a workflow's total)."""
    totals = {"opens": 0, "unique_opens": 0, "clicks": 0, "subscriber_clicks": 0, "delivered": 0}
    for email_id in email_ids:
        if email_id not in state.activity:
            continue
        s = reports.visible_summary(state, email_id)
        totals["opens"] += s["opens_total"]
        totals["unique_opens"] += s["unique_opens"]
        totals["clicks"] += s["clicks_total"]
        totals["subscriber_clicks"] += s["unique_subscriber_clicks"]
        totals["delivered"] += s["emails_sent"] - s["hard_bounces"] - s["soft_bounces"]
    delivered = totals.pop("delivered")
    totals["open_rate"] = round(totals["unique_opens"] / delivered, 4) if delivered else 0.0
    totals["click_rate"] = round(totals["subscriber_clicks"] / delivered, 4) if delivered else 0.0
    return totals


def _recipients(state: EmulatorState, workflow: dict[str, Any]) -> dict[str, Any]:
    list_id = workflow["recipients"]["list_id"]
    return {
        "list_id": list_id,
        "list_is_active": list_id in state.lists,
        "list_name": str((state.lists.get(list_id) or {}).get("name", "")),
        "segment_opts": copy.deepcopy(workflow["recipients"]["segment_opts"]),
        "store_id": workflow["recipients"]["store_id"],
    }


def render_workflow(state: EmulatorState, workflow: dict[str, Any]) -> dict[str, Any]:
    emails = [state.campaigns[e] for e in workflow["_emails"] if e in state.campaigns]
    out = copy.deepcopy({k: v for k, v in workflow.items() if not k.startswith("_")})
    out["emails_sent"] = sum(e["emails_sent"] for e in emails)
    out["recipients"] = _recipients(state, workflow)
    out["trigger_settings"]["workflow_emails_count"] = len(emails)
    out["report_summary"] = _summary(state, workflow["_emails"])
    out["_links"] = [{"rel": "self", "href": f"/3.0/automations/{workflow['id']}", "method": "GET"}]
    return out


def render_email(state: EmulatorState, email: dict[str, Any]) -> dict[str, Any]:
    workflow = state.automations[email["_workflow_id"]]
    settings = email["settings"]
    return {
        "id": email["id"],
        "web_id": email["web_id"],
        "workflow_id": workflow["id"],
        "position": email["_position"],
        "delay": dict(email["_delay"]),
        "create_time": email["create_time"],
        "start_time": email["_start_time"],
        "archive_url": email["archive_url"],
        "status": email["status"],
        "emails_sent": email["emails_sent"],
        "send_time": email["send_time"],
        "content_type": email["content_type"],
        "needs_block_refresh": False,
        "has_logo_merge_tag": False,
        "recipients": _recipients(state, workflow),
        "settings": {k: settings.get(k) for k in (
            "title", "subject_line", "preview_text", "from_name", "reply_to", "authenticate", "auto_footer",
            "inline_css", "auto_tweet", "fb_comments", "template_id", "drag_and_drop", "to_name", "use_conversation",
            "timewarp", "folder_id")},
        "tracking": dict(email["tracking"]),
        "social_card": {},
        "trigger_settings": copy.deepcopy(workflow["trigger_settings"]),
        "report_summary": _summary(state, [email["id"]]),
        "_links": [{"rel": "self", "href": f"/3.0/automations/{workflow['id']}/emails/{email['id']}",
                    "method": "GET"}],
    }


# ------------------------------------------------------------------------------------------------
# routes
# ------------------------------------------------------------------------------------------------
def _workflow(state: EmulatorState, workflow_id: str) -> dict[str, Any]:
    deliver_due(state)
    workflow = state.automations.get(workflow_id)
    if workflow is None:
        raise not_found()
    return workflow


def _email(state: EmulatorState, workflow_id: str, email_id: str) -> dict[str, Any]:
    workflow = _workflow(state, workflow_id)
    if email_id not in workflow["_emails"] or email_id not in state.campaigns:
        raise not_found()
    return state.campaigns[email_id]


@router.route("GET", "/automations")
def list_automations(call: Call) -> Reply:
    """Filters: ``status`` and the since/before create and start times."""
    state = call.state
    deliver_due(state)
    status = call.params.get("status")
    if status and status not in WORKFLOW_STATUSES:
        raise field_error("status", "Value is not one of the allowed values: " + ", ".join(WORKFLOW_STATUSES))
    created = reports.time_window(call, "since_create_time", "before_create_time")
    started = reports.time_window(call, "since_start_time", "before_start_time")
    workflows = [
        w for w in state.automations.values()
        if (not status or w["status"] == status) and created(w["create_time"]) and started(w["start_time"])
    ]
    workflows.sort(key=lambda w: reports.epoch(w["create_time"]))
    return ok(page(call, workflows, "automations", render=lambda w: render_workflow(state, w)))


@router.route("POST", "/automations")
def create_automation(call: Call) -> Reply:
    """Only ``abandonedCart`` workflows of a connected store can be created through the API."""
    state = call.state
    body = validate(call.json_body(), CREATE_BODY)
    list_id, store_id = body["recipients"]["list_id"], body["recipients"]["store_id"]
    if list_id not in state.lists:
        raise field_error("recipients.list_id", f"The list_id '{list_id}' does not match an audience in this account.")
    store = state.stores.get(store_id)
    if store is None:
        raise field_error("recipients.store_id", f"The store_id '{store_id}' does not match a store in this account.")
    settings = body.get("settings", {})
    workflow = create_workflow(
        state, list_id=list_id, workflow_type="abandonedCart", title="Abandoned Cart",
        from_name=settings.get("from_name", ""), reply_to=settings.get("reply_to", ""), store_id=store_id,
        emails=[{"subject_line": "You left something behind", "delay": {"amount": 1, "type": "hour",
                                                                         "action": "ecomm_abandoned_cart"}}],
    )
    return ok(filter_fields(call, render_workflow(state, workflow)))


@router.route("GET", "/automations/{workflow_id}")
def get_automation(call: Call, workflow_id: str) -> Reply:
    return ok(filter_fields(call, render_workflow(call.state, _workflow(call.state, workflow_id))))


def _set_status(state: EmulatorState, workflow: dict[str, Any], emails: list[dict[str, Any]], status: str) -> None:
    stamp = now_iso()
    for email in emails:
        email["status"] = status
        if status == "sending" and not email["_start_time"]:
            email["_start_time"] = stamp
    workflow["status"] = "sending" if any(
        state.campaigns[e]["status"] == "sending" for e in workflow["_emails"]) else status
    if workflow["status"] == "sending" and not workflow["start_time"]:
        workflow["start_time"] = stamp


@router.route("POST", "/automations/{workflow_id}/actions/start-all-emails")
def start_all_emails(call: Call, workflow_id: str) -> Reply:
    workflow = _workflow(call.state, workflow_id)
    _set_status(call.state, workflow, [call.state.campaigns[e] for e in workflow["_emails"]], "sending")
    return no_content()


@router.route("POST", "/automations/{workflow_id}/actions/pause-all-emails")
def pause_all_emails(call: Call, workflow_id: str) -> Reply:
    workflow = _workflow(call.state, workflow_id)
    _set_status(call.state, workflow, [call.state.campaigns[e] for e in workflow["_emails"]], "paused")
    return no_content()


@router.route("GET", "/automations/{workflow_id}/emails")
def list_emails(call: Call, workflow_id: str) -> Reply:
    """Every email of the workflow, by position (the endpoint takes no paging parameters)."""
    state = call.state
    workflow = _workflow(state, workflow_id)
    emails = [render_email(state, state.campaigns[e]) for e in workflow["_emails"] if e in state.campaigns]
    return ok(filter_fields(call, {"emails": emails, "total_items": len(emails), "_links": []}))


@router.route("GET", "/automations/{workflow_id}/emails/{workflow_email_id}")
def get_email(call: Call, workflow_id: str, workflow_email_id: str) -> Reply:
    return ok(filter_fields(call, render_email(call.state, _email(call.state, workflow_id, workflow_email_id))))


@router.route("POST", "/automations/{workflow_id}/emails/{workflow_email_id}/actions/start")
def start_email(call: Call, workflow_id: str, workflow_email_id: str) -> Reply:
    email = _email(call.state, workflow_id, workflow_email_id)
    _set_status(call.state, call.state.automations[workflow_id], [email], "sending")
    return no_content()


@router.route("POST", "/automations/{workflow_id}/emails/{workflow_email_id}/actions/pause")
def pause_email(call: Call, workflow_id: str, workflow_email_id: str) -> Reply:
    email = _email(call.state, workflow_id, workflow_email_id)
    _set_status(call.state, call.state.automations[workflow_id], [email], "paused")
    return no_content()


def _queue_item(email: dict[str, Any], item: dict[str, Any], list_id: str) -> dict[str, Any]:
    return {"id": item["id"], "workflow_id": email["_workflow_id"], "email_id": email["id"], "list_id": list_id,
            "list_is_active": True, "email_address": item["email_address"], "next_send": item["next_send"],
            "_links": []}


@router.route("GET", "/automations/{workflow_id}/emails/{workflow_email_id}/queue")
def list_queue(call: Call, workflow_id: str, workflow_email_id: str) -> Reply:
    email = _email(call.state, workflow_id, workflow_email_id)
    list_id = call.state.automations[workflow_id]["recipients"]["list_id"]
    queue = [_queue_item(email, q, list_id) for q in email["_queue"]]
    body = {"workflow_id": workflow_id, "email_id": email["id"], "queue": queue, "total_items": len(queue),
            "_links": []}
    return ok(filter_fields(call, body))


@router.route("POST", "/automations/{workflow_id}/emails/{workflow_email_id}/queue")
def add_to_queue(call: Call, workflow_id: str, workflow_email_id: str) -> Reply:
    """Queue a subscribed list member for the email; it is sent once its delay has passed."""
    state = call.state
    email = _email(state, workflow_id, workflow_email_id)
    address = call.json_body().get("email_address")
    if not isinstance(address, str) or not address.strip():
        raise field_error("email_address", "Required fields were not provided: email_address")
    if email["status"] != "sending":
        raise bad_request(NOT_SENDING)
    list_id = state.automations[workflow_id]["recipients"]["list_id"]
    member = find_member(state, list_id, subscriber_hash(address))
    if member is None or member["status"] != "subscribed":
        raise bad_request(f"{address} is not a subscribed member of list {list_id}.")
    sent = member["id"] in state.activity.get(email["id"], {}).get("emails", {})
    if sent or any(q["id"] == member["id"] for q in email["_queue"]):
        raise bad_request(ALREADY_SENT)
    next_send = iso(time.time() + email["_delay"]["amount"] * _DELAY_SECONDS[email["_delay"]["type"]])
    item = {"id": member["id"], "email_address": member["email_address"], "next_send": next_send}
    email["_queue"].append(item)
    rendered = _queue_item(email, item, list_id)
    deliver_due(state)  # an email without delay goes out at once
    return ok(filter_fields(call, rendered))


@router.route("GET", "/automations/{workflow_id}/emails/{workflow_email_id}/queue/{subscriber_hash}")
def get_queue_item(call: Call, workflow_id: str, workflow_email_id: str, subscriber_hash: str) -> Reply:
    email = _email(call.state, workflow_id, workflow_email_id)
    key = subscriber_hash.strip().lower()
    for item in email["_queue"]:
        if item["id"] == key:
            list_id = call.state.automations[workflow_id]["recipients"]["list_id"]
            return ok(filter_fields(call, _queue_item(email, item, list_id)))
    raise not_found()


# ------------------------------------------------------------------------------------------------
# admin: what Mailchimp's web app does
# ------------------------------------------------------------------------------------------------
@admin_route("POST", "/automations")
def admin_create(state: EmulatorState, body: Any, params: dict[str, str]) -> tuple[int, Any]:
    """Create a classic workflow of any type (Mailchimp's web app does; the API only abandonedCart):
    ``{"list_id", "workflow_type": "welcomeSeries", "title", "from_name", "reply_to",
    "saved_segment_id"?, "emails": [{"subject_line", "delay": {"amount", "type", "action"}}]}``."""
    body = validate(body, ADMIN_BODY)
    workflow = create_workflow(
        state, list_id=body["list_id"], workflow_type=body.get("workflow_type", "welcomeSeries"),
        title=body.get("title") or "Welcome series", from_name=body.get("from_name", ""),
        reply_to=body.get("reply_to", ""), emails=body["emails"], saved_segment_id=body.get("saved_segment_id"),
    )
    return 200, render_workflow(state, workflow) | {"emails": [
        render_email(state, state.campaigns[e]) for e in workflow["_emails"]]}


@admin_route("POST", "/automation-sends")
def admin_send(state: EmulatorState, body: Any, params: dict[str, str]) -> tuple[int, Any]:
    """Send an automation email to list members at ``send_time`` (default now; a past time gives
    activity that is all visible already): ``{"email_id", "email_addresses": [...], "send_time"?}``.
    The email must be sending; members must be subscribed. Returns ``{"email_id", "sent",
    "already_sent", "emails_sent"}``."""
    body = validate(body, SEND_BODY)
    email = state.campaigns.get(body["email_id"])
    if email is None or email.get("type") != "automation":
        raise not_found()
    if email["status"] != "sending":
        raise bad_request(NOT_SENDING)
    sent_at = parse_iso(body["send_time"]) if body.get("send_time") else time.time()
    if sent_at is None:
        raise field_error("send_time", "send_time must be an ISO 8601 date-time.")
    list_id = state.automations[email["_workflow_id"]]["recipients"]["list_id"]
    members = []
    for index, address in enumerate(body["email_addresses"]):
        member = find_member(state, list_id, subscriber_hash(address))
        if member is None or member["status"] != "subscribed":
            raise field_error(f"email_addresses.item:{index}", f"{address} is not a subscribed member of list {list_id}.")
        members.append(member)
    sent = sum(deliver(state, email, member, sent_at) for member in members)
    return 200, {"email_id": email["id"], "sent": sent, "already_sent": len(members) - sent,
                 "emails_sent": email["emails_sent"]}
