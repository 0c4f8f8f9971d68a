"""Campaigns: create, list, update, delete and send, with deterministic synthetic engagement.

Sending (``POST /campaigns/{id}/actions/send`` -> 204) needs what Mailchimp's send checklist
checks, content included (:mod:`campaign_content`), and delivers to the members of the campaign's
list whose status is ``subscribed`` at that moment, marks the campaign ``sent`` and records activity
for each recipient. The activity is synthetic but deterministic: it depends only on the campaign id
and the recipient's subscriber hash (seeded ``random.Random``), and campaign ids are themselves
derived from how many campaigns the account has created, so replaying a scenario on a fresh
emulator produces the same campaigns and the same engagement. The rule, per recipient:

* 2% bounce (half ``hard``, half ``soft``) within 10 minutes of sending, and nothing else happens.
  A hard bounce cleans the member (status ``cleaned``), as Mailchimp does.
* Otherwise 40% open, 1-3 times; a quarter of openers (10% of recipients) also click 1-2 times,
  minutes after their first open, on a link from :data:`CAMPAIGN_LINKS`.
* Independently, 1% of delivered recipients unsubscribe (reason from :data:`UNSUBSCRIBE_REASONS`)
  after their last event; the member becomes ``unsubscribed`` with that reason and the unsubscribe
  shows in the campaign's unsubscribe report.
* Timing is front-loaded like real engagement: the first open comes an exponentially distributed
  delay (mean 30 minutes) after ``send_time``, re-opens follow (mean 2 hours), and nothing is later
  than 24 hours after the send. Each recipient has one IP from 198.51.100.0/24.

Events are dated after the send, so reports reveal them as their time comes (see :mod:`reports`):
right after a send only the earliest activity shows. Member status changes (hard bounce, unsubscribe)
are applied at send time. To get a campaign whose whole engagement is already visible, use the
admin API: :func:`inject_activity` with a past ``send_time`` and ``"synthetic": true`` delivers an
unsent campaign as if sent then, with the same generated activity; without ``synthetic`` it delivers
it silently so a test can inject exact activity. Reports are in :mod:`reports`.
"""

from __future__ import annotations

import copy
import hashlib
import random
from typing import Any

from . import campaign_content, reports, tally
from .collections import filter_fields, page
from .errors import bad_request, not_found
from .members import find_member, set_member_status
from .routing import Call, Reply, no_content, ok, router
from .schema import Field, field_error, validate
from .state import EmulatorState, iso, now_iso, parse_iso

CAMPAIGN_TYPES = ("regular", "plaintext")
CAMPAIGN_STATUSES = ("save", "paused", "schedule", "sending", "sent")
CAMPAIGN_LINKS = (
    "https://shop.emulator-store.com/",
    "https://shop.emulator-store.com/collections/new-arrivals",
    "https://shop.emulator-store.com/collections/sale",
    "https://shop.emulator-store.com/blog/seasonal-guide",
    "https://shop.emulator-store.com/account/preferences",
)
UNSUBSCRIBE_REASONS = (
    "Unspecified",
    "I no longer want to receive these emails",
    "I never signed up for this mailing list",
    "The emails are inappropriate",
    "The emails are spam and should be reported",
    "Other",
)
ACTIVITY_WINDOW_SECONDS = 24 * 3600
FIRST_OPEN_MEAN_SECONDS, REOPEN_MEAN_SECONDS = 1800, 7200
BOUNCE_RATE, OPEN_RATE, CLICK_RATE_OF_OPENERS, UNSUBSCRIBE_RATE = 0.02, 0.40, 0.25, 0.01
NOT_READY = "Your Campaign is not ready to send."
ALREADY_SENT = "Cannot send a campaign that has already been sent."

_TEXT = Field("string")
_TRACKING_FLAGS = ("opens", "html_clicks", "text_clicks", "goal_tracking", "ecomm360")
SETTINGS = Field(
    "object",
    props={
        "subject_line": Field("string", max_length=150),
        "preview_text": Field("string", max_length=150),
        "title": Field("string", max_length=100),
        "from_name": Field("string", max_length=100),
        "reply_to": _TEXT,
        "use_conversation": Field("boolean"),
        "to_name": _TEXT,
        "folder_id": _TEXT,
        "authenticate": Field("boolean"),
        "auto_footer": Field("boolean"),
        "inline_css": Field("boolean"),
        "auto_tweet": Field("boolean"),
        "fb_comments": Field("boolean"),
        "template_id": Field("integer"),
    },
)
CAMPAIGN = Field(
    "object",
    required=("type",),
    props={
        "type": Field("string", enum=CAMPAIGN_TYPES),
        "recipients": Field("object", props={"list_id": _TEXT, "segment_opts": Field("object", props={})}),
        "settings": SETTINGS,
        "tracking": Field(
            "object",
            props={k: Field("boolean") for k in _TRACKING_FLAGS},
        ),
    },
)
_DEFAULT_SETTINGS: dict[str, Any] = {
    "subject_line": "",
    "preview_text": "",
    "title": "",
    "from_name": "",
    "reply_to": "",
    "use_conversation": False,
    "to_name": "",
    "folder_id": "",
    "authenticate": True,
    "auto_footer": False,
    "inline_css": False,
    "auto_tweet": False,
    "fb_comments": True,
    "timewarp": False,
    "template_id": 0,
    "drag_and_drop": False,
}
_DEFAULT_TRACKING: dict[str, Any] = {
    "opens": True,
    "html_clicks": True,
    "text_clicks": False,
    "goal_tracking": False,
    "ecomm360": False,
    "google_analytics": "",
    "clicktale": "",
}


# ------------------------------------------------------------------------------------------------
# Campaign objects
# ------------------------------------------------------------------------------------------------


CREATED_COUNTER = "campaigns created"
"""Key in ``state.counters`` of how many campaigns the account ever created (ids derive from it)."""


def _new_campaign_id(state: EmulatorState) -> str:
    """10 hex chars derived from how many campaigns were created before: the same sequence of
    calls on a fresh emulator gives the same ids, and a deleted campaign's id is never reused."""
    while True:
        n = state.counters.get(CREATED_COUNTER, 0)
        state.count(CREATED_COUNTER)
        campaign_id = hashlib.sha1(f"campaign-{n}".encode()).hexdigest()[:10]
        if campaign_id not in state.campaigns:
            return campaign_id


def _check_list(state: EmulatorState, body: dict[str, Any]) -> None:
    list_id = (body.get("recipients") or {}).get("list_id")
    if list_id and list_id not in state.lists:
        message = f"The list_id '{list_id}' does not match an audience in this account."
        raise field_error("recipients.list_id", message)


def _subscribed(state: EmulatorState, list_id: str) -> list[dict[str, Any]]:
    return [m for m in state.members.get(list_id, {}).values() if m["status"] == "subscribed"]


def subscribed_count(state: EmulatorState, list_id: str) -> int:
    """How many members of the list a send would reach now."""
    return len(_subscribed(state, list_id))


def render_campaign(state: EmulatorState, campaign: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy({k: v for k, v in campaign.items() if not k.startswith("_")})
    list_id = campaign["recipients"].get("list_id", "")
    sent = campaign["status"] == "sent"
    out["recipients"] = {
        "list_id": list_id,
        "list_is_active": list_id in state.lists,
        "list_name": str((state.lists.get(list_id) or {}).get("name", "")),
        "segment_text": "",
        "recipient_count": campaign["emails_sent"] if sent else len(_subscribed(state, list_id)),
        "segment_opts": {},
    }
    if sent:
        out["report_summary"] = reports.report_summary(state, campaign)
    out["_links"] = []
    return out


@router.route("POST", "/campaigns")
def create_campaign(call: Call) -> Reply:
    """Create a draft (status ``save``); ``regular`` and ``plaintext`` campaigns are supported."""
    state = call.state
    body = validate(call.json_body(), CAMPAIGN)
    _check_list(state, body)
    campaign_id = _new_campaign_id(state)
    campaign = {
        "id": campaign_id,
        "web_id": int(campaign_id, 16) % 1_000_000_000,
        "parent_campaign_id": "",
        "type": body["type"],
        "create_time": now_iso(),
        "archive_url": f"https://eepurl.com/{campaign_id}",
        "long_archive_url": f"https://us1.campaign-archive.com/?u=emulator&id={campaign_id}",
        "status": "save",
        "emails_sent": 0,
        "send_time": "",
        "content_type": "template",
        "needs_block_refresh": False,
        "resendable": False,
        "recipients": {"list_id": (body.get("recipients") or {}).get("list_id", "")},
        "settings": {**_DEFAULT_SETTINGS, **body.get("settings", {})},
        "tracking": {**_DEFAULT_TRACKING, **body.get("tracking", {})},
        "delivery_status": {"enabled": False},
    }
    state.campaigns[campaign_id] = campaign
    return ok(filter_fields(call, render_campaign(state, campaign)))


_SORT_FIELDS = ("create_time", "send_time")


@router.route("GET", "/campaigns")
def list_campaigns(call: Call) -> Reply:
    """Filters: type, status, list_id and the since/before send and create times; sort by
    ``create_time`` (default) or ``send_time``."""
    state = call.state
    p = call.params
    if p.get("status") and p["status"] not in CAMPAIGN_STATUSES:
        raise field_error("status", "Value is not one of the allowed values: " + ", ".join(CAMPAIGN_STATUSES))
    sort_field = p.get("sort_field") or "create_time"
    if sort_field not in _SORT_FIELDS:
        raise field_error("sort_field", "Value is not one of the allowed values: " + ", ".join(_SORT_FIELDS))
    sent_inside = reports.time_window(call, "since_send_time", "before_send_time")
    created_inside = reports.time_window(call, "since_create_time", "before_create_time")
    campaigns = [
        c
        for c in state.campaigns.values()
        if (not p.get("type") or c["type"] == p["type"])
        and (not p.get("status") or c["status"] == p["status"])
        and (not p.get("list_id") or c["recipients"].get("list_id") == p["list_id"])
        and sent_inside(c["send_time"])
        and created_inside(c["create_time"])
    ]
    descending = (p.get("sort_dir") or "ASC").upper() == "DESC"
    campaigns.sort(key=lambda c: parse_iso(c[sort_field] or "") or 0.0, reverse=descending)
    return ok(page(call, campaigns, "campaigns", render=lambda c: render_campaign(state, c)))


def _campaign(state: EmulatorState, campaign_id: str) -> dict[str, Any]:
    campaign = state.campaigns.get(campaign_id)
    if campaign is None:
        raise not_found()
    return campaign


@router.route("GET", "/campaigns/{campaign_id}")
def get_campaign(call: Call, campaign_id: str) -> Reply:
    return ok(filter_fields(call, render_campaign(call.state, _campaign(call.state, campaign_id))))


@router.route("PATCH", "/campaigns/{campaign_id}")
def update_campaign(call: Call, campaign_id: str) -> Reply:
    """Change a draft's recipients, settings or tracking; a sent campaign cannot be changed."""
    campaign = _campaign(call.state, campaign_id)
    body = validate(call.json_body(), CAMPAIGN, partial=True)
    if campaign["status"] == "sent":
        raise bad_request("This campaign has already been sent and cannot be changed.")
    _check_list(call.state, body)
    if "type" in body:
        campaign["type"] = body["type"]
    if "list_id" in body.get("recipients", {}):
        campaign["recipients"]["list_id"] = body["recipients"]["list_id"]
    campaign["settings"].update(body.get("settings", {}))
    campaign["tracking"].update(body.get("tracking", {}))
    return ok(filter_fields(call, render_campaign(call.state, campaign)))


@router.route("DELETE", "/campaigns/{campaign_id}")
def delete_campaign(call: Call, campaign_id: str) -> Reply:
    """Deletes the campaign and its report."""
    _campaign(call.state, campaign_id)
    del call.state.campaigns[campaign_id]
    call.state.activity.pop(campaign_id, None)
    tally.forget(call.state, campaign_id)
    return no_content()


# ------------------------------------------------------------------------------------------------
# Sending and synthetic activity
# ------------------------------------------------------------------------------------------------


def _recipient(email: str) -> dict[str, Any]:
    return {"email_address": email, "activity": []}


def _deliver(state: EmulatorState, campaign: dict[str, Any], send_time: str) -> dict[str, Any]:
    """Mark the campaign sent to the list's subscribed members; returns the new activity record."""
    list_id = campaign["recipients"]["list_id"]
    record: dict[str, Any] = {
        "list_id": list_id,
        "emails": {m["id"]: _recipient(m["email_address"]) for m in _subscribed(state, list_id)},
        "unsubscribes": [],
    }
    state.activity[campaign["id"]] = record
    tally.forget(state, campaign["id"])
    campaign.update(status="sent", send_time=send_time, emails_sent=len(record["emails"]))
    return record


def _check_ready(state: EmulatorState, campaign: dict[str, Any]) -> None:
    if campaign["status"] == "sent":
        raise bad_request(ALREADY_SENT)
    campaign_content.require_ready(state, campaign)  # list with recipients, subject, from, content


TimedEvent = tuple[int, dict[str, Any]]


def synthetic_activity(campaign_id: str, email_id: str) -> tuple[list[TimedEvent], tuple[int, str] | None]:
    """The generated events of one recipient as ``(seconds after send, event)`` sorted by time, and
    ``(seconds after send, reason)`` if they unsubscribe. Depends only on the two ids."""
    rng = random.Random(hashlib.sha256(f"{campaign_id}:{email_id}".encode()).digest())

    def within_window(seconds: float) -> int:
        return min(int(seconds), ACTIVITY_WINDOW_SECONDS)

    ip = f"198.51.100.{rng.randint(1, 254)}"
    if rng.random() < BOUNCE_RATE:
        kind = "hard" if rng.random() < 0.5 else "soft"
        return [(rng.randint(5, 600), {"action": "bounce", "type": kind})], None
    events: list[TimedEvent] = []
    if rng.random() < OPEN_RATE:
        opens = [within_window(5 + rng.expovariate(1 / FIRST_OPEN_MEAN_SECONDS))]
        for _ in range(rng.randint(1, 3) - 1):
            opens.append(within_window(opens[-1] + 1 + rng.expovariate(1 / REOPEN_MEAN_SECONDS)))
        events += [(t, {"action": "open", "ip": ip}) for t in opens]
        if rng.random() < CLICK_RATE_OF_OPENERS:
            for _ in range(rng.randint(1, 2)):
                at = within_window(opens[0] + rng.randint(2, 300))
                events.append((at, {"action": "click", "url": rng.choice(CAMPAIGN_LINKS), "ip": ip}))
    unsubscribe = None
    if rng.random() < UNSUBSCRIBE_RATE:
        after = max((t for t, _ in events), default=rng.randint(60, 3600))
        unsubscribe = (within_window(after + rng.randint(10, 600)), rng.choice(UNSUBSCRIBE_REASONS))
    events.sort(key=lambda pair: pair[0])
    return events, unsubscribe


def _event(action: str, timestamp: str, *, ip: str = "", url: str = "", kind: str = "") -> dict[str, Any]:
    """An email-activity item: clicks carry ``url``, bounces ``type`` (hard|soft)."""
    event: dict[str, Any] = {"action": action, "timestamp": timestamp}
    if action == "click":
        event["url"] = url
    if action == "bounce":
        event["type"] = kind
    else:
        event["ip"] = ip
    return event


def _record_bounce(state: EmulatorState, record: dict[str, Any], email_id: str, kind: str) -> None:
    """A hard bounce cleans the member."""
    member = find_member(state, record["list_id"], email_id)
    if kind == "hard" and member is not None and member["status"] not in ("cleaned", "archived"):
        set_member_status(state, record["list_id"], email_id, "cleaned")


def _record_unsubscribe(
    state: EmulatorState, record: dict[str, Any], email_id: str, timestamp: str, reason: str
) -> None:
    rec = record["emails"][email_id]
    unsubscribe = {"email_id": email_id, "email_address": rec["email_address"], "timestamp": timestamp}
    record["unsubscribes"].append({**unsubscribe, "reason": reason})
    member = find_member(state, record["list_id"], email_id)
    if member is not None and member["status"] not in ("unsubscribed", "cleaned", "archived"):
        set_member_status(state, record["list_id"], email_id, "unsubscribed", reason=reason)


def _sort_activity(rec: dict[str, Any]) -> None:
    """Order a recipient's events by time (stable: equal times keep the order they were added)."""
    rec["activity"].sort(key=lambda e: reports.epoch(e["timestamp"]))


@router.route("POST", "/campaigns/{campaign_id}/actions/send")
def send_campaign(call: Call, campaign_id: str) -> Reply:
    state = call.state
    campaign = _campaign(state, campaign_id)
    _check_ready(state, campaign)
    record = _deliver(state, campaign, now_iso())
    _generate(state, campaign, record)
    return no_content()


def _generate(state: EmulatorState, campaign: dict[str, Any], record: dict[str, Any]) -> None:
    """Record the synthetic activity of every recipient, dated from the campaign's ``send_time``."""
    sent_at = parse_iso(campaign["send_time"]) or 0.0
    for email_id in record["emails"]:
        record_synthetic_activity(state, campaign["id"], record, email_id, sent_at)


def record_synthetic_activity(
    state: EmulatorState, campaign_id: str, record: dict[str, Any], email_id: str, sent_at: float
) -> None:
    """Record one recipient's synthetic activity (:func:`synthetic_activity`), dated from
    ``sent_at``, with its effects on the member (hard bounce, unsubscribe). Automation emails
    (:mod:`automations`) send to one recipient at a time and use it per send."""
    rec = record["emails"][email_id]
    events, unsubscribe = synthetic_activity(campaign_id, email_id)
    for offset, event in events:
        stamp = iso(sent_at + offset)
        ip, url, kind = event.get("ip", ""), event.get("url", ""), event.get("type", "")
        rec["activity"].append(_event(event["action"], stamp, ip=ip, url=url, kind=kind))
        if event["action"] == "bounce":
            _record_bounce(state, record, email_id, event["type"])
    if unsubscribe is not None:
        _record_unsubscribe(state, record, email_id, iso(sent_at + unsubscribe[0]), unsubscribe[1])


# ------------------------------------------------------------------------------------------------
# Injected activity (admin API)
# ------------------------------------------------------------------------------------------------

_INJECT_EVENT = Field(
    "object",
    required=("email_address", "action", "timestamp"),
    props={
        "email_address": _TEXT,
        "action": Field("string", enum=("open", "click", "bounce")),
        "timestamp": _TEXT,
        "url": _TEXT,
        "ip": _TEXT,
        "type": Field("string", enum=("hard", "soft")),
    },
)
_INJECT_UNSUBSCRIBE = Field(
    "object",
    required=("email_address", "timestamp"),
    props={"email_address": _TEXT, "timestamp": _TEXT, "reason": _TEXT},
)
INJECT_PAYLOAD = Field(
    "object",
    required=("campaign_id",),
    props={
        "campaign_id": _TEXT,
        "send_time": _TEXT,
        "synthetic": Field("boolean"),
        "activity": Field("array", items=_INJECT_EVENT),
        "unsubscribes": Field("array", items=_INJECT_UNSUBSCRIBE),
    },
)


def inject_activity(state: EmulatorState, payload: dict[str, Any]) -> dict[str, Any]:
    """Add exact campaign activity (``POST /_emulator/activity``). Payload::

        {"campaign_id": "a1b2c3d4e5",
         "send_time": "2024-05-01T09:00:00+00:00",          # optional, see below
         "synthetic": false,                                # optional, see below
         "activity": [{"email_address": "ann@shop.com", "action": "open" | "click" | "bounce",
                       "timestamp": "2024-05-01T10:00:00+00:00",
                       "url": "https://...",                # required for clicks
                       "ip": "203.0.113.9",                 # optional, opens and clicks
                       "type": "hard" | "soft"}],           # bounces; default hard
         "unsubscribes": [{"email_address": "bob@shop.com", "timestamp": "...",
                           "reason": "Unspecified"}]}       # reason optional

    A campaign that was not sent yet is delivered first to its list's subscribed members, dated
    ``send_time`` (default now): without synthetic activity, so a test can start from an empty
    report, or with it when ``synthetic`` is true (a past ``send_time`` then gives a campaign whose
    whole engagement is already visible). Timestamps may lie in the future; reports show such
    activity once its time has come.
    An email that was not a recipient but is on the list becomes one. Hard bounces clean the member
    and unsubscribes unsubscribe it with the reason, as generated activity does. Everything is
    validated before anything changes. Returns ``{"campaign_id", "emails_sent", "activity_added",
    "unsubscribes_added"}``; errors are ``ApiError`` (404 unknown campaign, 400 naming the field).
    """
    body = validate(payload, INJECT_PAYLOAD)
    campaign = _campaign(state, body["campaign_id"])
    list_id = campaign["recipients"].get("list_id", "")
    if campaign["status"] != "sent" and list_id not in state.lists:
        raise bad_request(NOT_READY)
    record = state.activity.get(campaign["id"])
    record_list = record["list_id"] if record else list_id
    if "send_time" in body and parse_iso(body["send_time"]) is None:
        raise field_error("send_time", "send_time must be an ISO 8601 date-time.")
    if body.get("synthetic") and record is not None:
        message = "Synthetic activity is generated when a campaign is delivered; this one was already sent."
        raise field_error("synthetic", message)
    items = [("activity", i, e) for i, e in enumerate(body.get("activity", []))]
    items += [("unsubscribes", i, u) for i, u in enumerate(body.get("unsubscribes", []))]
    resolved: list[tuple[str, dict[str, Any], str, str]] = []
    for key, index, item in items:
        where = f"{key}.item:{index}"
        stamp = parse_iso(item["timestamp"])
        if stamp is None:
            raise field_error(f"{where}.timestamp", "timestamp must be an ISO 8601 date-time.")
        if key == "activity" and item["action"] == "click" and not item.get("url"):
            raise field_error(f"{where}.url", "A click needs the url that was clicked.")
        member = find_member(state, record_list, item["email_address"])
        if member is None:
            message = f"{item['email_address']} is not a member of list {record_list}."
            raise field_error(f"{where}.email_address", message)
        resolved.append((key, item, member["id"], iso(stamp)))
    if record is None:
        send_time = iso(parse_iso(body["send_time"]) or 0.0) if "send_time" in body else now_iso()
        record = _deliver(state, campaign, send_time)
        if body.get("synthetic"):
            _generate(state, campaign, record)
    touched: dict[str, dict[str, Any]] = {}
    for key, item, email_id, stamp in resolved:
        if email_id not in record["emails"]:
            member = find_member(state, record_list, email_id) or {}
            record["emails"][email_id] = _recipient(member.get("email_address", item["email_address"]))
            campaign["emails_sent"] = len(record["emails"])
        if key == "unsubscribes":
            _record_unsubscribe(state, record, email_id, stamp, item.get("reason") or "Unspecified")
            continue
        kind = item.get("type") or "hard"
        rec = record["emails"][email_id]
        event = _event(item["action"], stamp, ip=item.get("ip", ""), url=item.get("url", ""), kind=kind)
        rec["activity"].append(event)
        touched[email_id] = rec
        if item["action"] == "bounce":
            _record_bounce(state, record, email_id, kind)
    for rec in touched.values():
        _sort_activity(rec)  # once per recipient: the same order as sorting after every append
    tally.forget(state, campaign["id"])  # the report's running counts start again from the record
    return {
        "campaign_id": campaign["id"],
        "emails_sent": campaign["emails_sent"],
        "activity_added": sum(1 for r in resolved if r[0] == "activity"),
        "unsubscribes_added": sum(1 for r in resolved if r[0] == "unsubscribes"),
    }

