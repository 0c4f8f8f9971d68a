"""Campaign reports: summary, email activity, open and click details, unsubscribes and sent-to.

Reports are computed on every read from the recorded activity of a sent campaign
(``state.activity[campaign_id]``, written by :mod:`campaigns`), so generated and injected activity
always agree with the counts. Layout of one activity record::

    {"list_id": str,
     "emails": {subscriber_hash: {"email_address": str, "status": "sent" | "hard" | "soft",
                                  "activity": [{"action", "timestamp", "ip", "url"?, "type"?}, ...]}},
     "unsubscribes": [{"email_id", "email_address", "timestamp", "reason"}, ...]}

``emails`` holds every recipient in send order; ``activity`` is kept sorted by time.

Email activity and ``since`` (facts §11.9 leaves it open; the emulator's choice): without ``since``
every recipient is listed, and a recipient who did nothing has ``"activity": []``. With ``since``,
only events strictly after ``since`` are returned and recipients left with none are omitted, so an
incremental reader gets just what is new. ``since_send_time`` (campaigns, reports) is inclusive and
``before_send_time`` exclusive. Reports are listed by ``send_time`` ascending, so new reports land on
the last page and offset paging stays stable while campaigns are being sent.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable, Iterable

from .collections import filter_fields, page
from .ecommerce import campaign_revenue
from .errors import not_found
from .members import find_member, subscriber_hash
from .routing import Call, Reply, ok, router
from .schema import field_error
from .state import EmulatorState, parse_iso


def parse_param_time(call: Call, name: str) -> float | None:
    """Epoch seconds of an ISO 8601 query parameter, None if absent, 400 naming it if invalid."""
    raw = call.params.get(name)
    if raw in (None, ""):
        return None
    value = parse_iso(raw)
    if value is None:
        message = f"The value for '{name}' must be an ISO 8601 date-time, e.g. 2015-10-21T15:41:36+00:00."
        raise field_error(name, message)
    return value


def time_window(call: Call, since_name: str, before_name: str) -> Callable[[str], bool]:
    """A predicate on ISO timestamps: ``since`` inclusive, ``before`` exclusive; "" never matches a bound."""
    since, before = parse_param_time(call, since_name), parse_param_time(call, before_name)

    def inside(stamp: str) -> bool:
        if since is None and before is None:
            return True
        at = parse_iso(stamp) if stamp else None
        if at is None:
            return False
        return (since is None or at >= since) and (before is None or at < before)

    return inside


def sent_campaign(state: EmulatorState, campaign_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The campaign and its activity record; 404 if the campaign is unknown or was never sent."""
    campaign = state.campaigns.get(campaign_id)
    record = state.activity.get(campaign_id)
    if campaign is None or record is None:
        raise not_found()
    return campaign, record


def _rate(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def _last(stamps: Iterable[str]) -> str:
    stamps = list(stamps)
    return max(stamps, key=lambda s: parse_iso(s) or 0.0) if stamps else ""


def summarize(state: EmulatorState, campaign: dict[str, Any]) -> dict[str, Any]:
    """Counts and rates of a sent campaign. Rates divide by delivered emails (sent minus bounced)."""
    record = state.activity[campaign["id"]]
    emails = record["emails"]
    events = [(h, e) for h, rec in emails.items() for e in rec["activity"]]
    opens = [(h, e) for h, e in events if e["action"] == "open"]
    clicks = [(h, e) for h, e in events if e["action"] == "click"]
    hard = sum(1 for rec in emails.values() if rec["status"] == "hard")
    soft = sum(1 for rec in emails.values() if rec["status"] == "soft")
    sent = len(emails)
    delivered = sent - hard - soft
    unique_opens = len({h for h, _ in opens})
    subscriber_clicks = len({h for h, _ in clicks})
    return {
        "emails_sent": sent,
        "delivered": delivered,
        "hard_bounces": hard,
        "soft_bounces": soft,
        "opens_total": len(opens),
        "unique_opens": unique_opens,
        "open_rate": _rate(unique_opens, delivered),
        "last_open": _last(e["timestamp"] for _, e in opens),
        "clicks_total": len(clicks),
        "unique_clicks": len({(h, e["url"]) for h, e in clicks}),
        "unique_subscriber_clicks": subscriber_clicks,
        "click_rate": _rate(subscriber_clicks, delivered),
        "last_click": _last(e["timestamp"] for _, e in clicks),
        "unsubscribed": len(record["unsubscribes"]),
    }


def report_summary(state: EmulatorState, campaign: dict[str, Any]) -> dict[str, Any]:
    """The ``report_summary`` object embedded in a sent campaign."""
    s = summarize(state, campaign)
    revenue = campaign_revenue(state, campaign["id"])
    return {
        "opens": s["opens_total"],
        "unique_opens": s["unique_opens"],
        "open_rate": s["open_rate"],
        "clicks": s["clicks_total"],
        "subscriber_clicks": s["unique_subscriber_clicks"],
        "click_rate": s["click_rate"],
        "ecommerce": {k: revenue[k] for k in ("total_orders", "total_spent", "total_revenue")},
    }


def _list_name(state: EmulatorState, list_id: str) -> str:
    return str((state.lists.get(list_id) or {}).get("name", ""))


_CLICK_KEYS = ("clicks_total", "unique_clicks", "unique_subscriber_clicks", "click_rate", "last_click")


def render_report(state: EmulatorState, campaign: dict[str, Any]) -> dict[str, Any]:
    s = summarize(state, campaign)
    list_id = campaign["recipients"]["list_id"]
    settings = campaign["settings"]
    return {
        "id": campaign["id"],
        "campaign_title": settings.get("title", ""),
        "type": campaign["type"],
        "list_id": list_id,
        "list_is_active": list_id in state.lists,
        "list_name": _list_name(state, list_id),
        "subject_line": settings.get("subject_line", ""),
        "preview_text": settings.get("preview_text", ""),
        "emails_sent": s["emails_sent"],
        "abuse_reports": 0,
        "unsubscribed": s["unsubscribed"],
        "send_time": campaign["send_time"],
        "rss_last_send": "",
        "bounces": {"hard_bounces": s["hard_bounces"], "soft_bounces": s["soft_bounces"], "syntax_errors": 0},
        "forwards": {"forwards_count": 0, "forwards_opens": 0},
        "opens": {k: s[k] for k in ("opens_total", "unique_opens", "open_rate", "last_open")},
        "clicks": {k: s[k] for k in _CLICK_KEYS},
        "facebook_likes": {"recipient_likes": 0, "unique_likes": 0, "facebook_likes": 0},
        "list_stats": {
            "sub_rate": 0.0,
            "unsub_rate": _rate(s["unsubscribed"], s["emails_sent"]),
            "open_rate": s["open_rate"],
            "click_rate": s["click_rate"],
        },
        "ab_split": {},
        "timewarp": [],
        "timeseries": [],
        "share_report": {"share_url": "", "share_password": ""},
        "ecommerce": campaign_revenue(state, campaign["id"]),
        "delivery_status": {"enabled": False},
        "_links": [],
    }


@router.route("GET", "/reports")
def list_reports(call: Call) -> Reply:
    state = call.state
    inside = time_window(call, "since_send_time", "before_send_time")
    wanted_type = call.params.get("type")
    campaigns = [
        state.campaigns[cid]
        for cid in state.activity
        if cid in state.campaigns
        and inside(state.campaigns[cid]["send_time"])
        and (not wanted_type or state.campaigns[cid]["type"] == wanted_type)
    ]
    campaigns.sort(key=lambda c: parse_iso(c["send_time"]) or 0.0)
    return ok(page(call, campaigns, "reports", render=lambda c: render_report(state, c)))


@router.route("GET", "/reports/{campaign_id}")
def get_report(call: Call, campaign_id: str) -> Reply:
    campaign, _ = sent_campaign(call.state, campaign_id)
    return ok(filter_fields(call, render_report(call.state, campaign)))


def _email_item(
    campaign_id: str,
    list_id: str,
    list_active: bool,
    email_id: str,
    rec: dict[str, Any],
    events: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "campaign_id": campaign_id,
        "list_id": list_id,
        "list_is_active": list_active,
        "email_id": email_id,
        "email_address": rec["email_address"],
        "activity": [dict(e) for e in events],
        "_links": [],
    }


def _events_after(rec: dict[str, Any], since: float | None) -> list[dict[str, Any]]:
    if since is None:
        return rec["activity"]
    return [e for e in rec["activity"] if (parse_iso(e["timestamp"]) or 0.0) > since]


@router.route("GET", "/reports/{campaign_id}/email-activity")
def list_email_activity(call: Call, campaign_id: str) -> Reply:
    """Recipients with their activity; ``since`` keeps only later events (module docstring)."""
    _, record = sent_campaign(call.state, campaign_id)
    since = parse_param_time(call, "since")
    list_id = record["list_id"]
    active = list_id in call.state.lists
    items: list[Any] = []
    for email_id, rec in record["emails"].items():
        events = _events_after(rec, since)
        if since is not None and not events:
            continue
        items.append((email_id, rec, events))
    return ok(
        page(
            call,
            items,
            "emails",
            {"campaign_id": campaign_id},
            render=lambda item: _email_item(campaign_id, list_id, active, *item),
        )
    )


def _recipient(record: dict[str, Any], key: str) -> tuple[str, dict[str, Any]]:
    """A recipient by subscriber hash or email address; 404 if the campaign was not sent to them."""
    email_id = subscriber_hash(key) if "@" in key else key.strip().lower()
    rec = record["emails"].get(email_id)
    if rec is None:
        raise not_found()
    return email_id, rec


@router.route("GET", "/reports/{campaign_id}/email-activity/{subscriber_hash}")
def get_email_activity(call: Call, campaign_id: str, subscriber_hash: str) -> Reply:
    _, record = sent_campaign(call.state, campaign_id)
    email_id, rec = _recipient(record, subscriber_hash)
    events = _events_after(rec, parse_param_time(call, "since"))
    list_id = record["list_id"]
    item = _email_item(campaign_id, list_id, list_id in call.state.lists, email_id, rec, events)
    return ok(filter_fields(call, item))


def _member_fields(state: EmulatorState, list_id: str, email_id: str) -> dict[str, Any]:
    member = find_member(state, list_id, email_id)
    return {
        "merge_fields": dict(member.get("merge_fields", {})) if member else {},
        "vip": bool(member.get("vip")) if member else False,
    }


def _unsubscribe_item(
    state: EmulatorState, campaign_id: str, list_id: str, unsub: dict[str, Any]
) -> dict[str, Any]:
    return {
        "email_id": unsub["email_id"],
        "email_address": unsub["email_address"],
        **_member_fields(state, list_id, unsub["email_id"]),
        "timestamp": unsub["timestamp"],
        "reason": unsub["reason"],
        "campaign_id": campaign_id,
        "list_id": list_id,
        "list_is_active": list_id in state.lists,
        "_links": [],
    }


@router.route("GET", "/reports/{campaign_id}/unsubscribed")
def list_unsubscribed(call: Call, campaign_id: str) -> Reply:
    """Members who unsubscribed from this campaign; like Mailchimp there is no ``since`` filter."""
    _, record = sent_campaign(call.state, campaign_id)
    list_id = record["list_id"]
    return ok(
        page(
            call,
            record["unsubscribes"],
            "unsubscribes",
            {"campaign_id": campaign_id},
            render=lambda u: _unsubscribe_item(call.state, campaign_id, list_id, u),
        )
    )


@router.route("GET", "/reports/{campaign_id}/unsubscribed/{subscriber_hash}")
def get_unsubscribed(call: Call, campaign_id: str, subscriber_hash: str) -> Reply:
    _, record = sent_campaign(call.state, campaign_id)
    email_id, _ = _recipient(record, subscriber_hash)
    for unsub in record["unsubscribes"]:
        if unsub["email_id"] == email_id:
            item = _unsubscribe_item(call.state, campaign_id, record["list_id"], unsub)
            return ok(filter_fields(call, item))
    raise not_found()


def _sent_to_item(
    state: EmulatorState, campaign_id: str, list_id: str, email_id: str, rec: dict[str, Any]
) -> dict[str, Any]:
    opens = [e["timestamp"] for e in rec["activity"] if e["action"] == "open"]
    return {
        "email_id": email_id,
        "email_address": rec["email_address"],
        **_member_fields(state, list_id, email_id),
        "status": rec["status"],
        "open_count": len(opens),
        "last_open": _last(opens),
        "absplit_group": "",
        "gmt_offset": 0,
        "campaign_id": campaign_id,
        "list_id": list_id,
        "list_is_active": list_id in state.lists,
        "_links": [],
    }


@router.route("GET", "/reports/{campaign_id}/sent-to")
def list_sent_to(call: Call, campaign_id: str) -> Reply:
    _, record = sent_campaign(call.state, campaign_id)
    list_id = record["list_id"]
    recipients: list[Any] = list(record["emails"].items())
    return ok(
        page(
            call,
            recipients,
            "sent_to",
            {"campaign_id": campaign_id},
            render=lambda item: _sent_to_item(call.state, campaign_id, list_id, *item),
        )
    )


@router.route("GET", "/reports/{campaign_id}/sent-to/{subscriber_hash}")
def get_sent_to(call: Call, campaign_id: str, subscriber_hash: str) -> Reply:
    _, record = sent_campaign(call.state, campaign_id)
    email_id, rec = _recipient(record, subscriber_hash)
    return ok(filter_fields(call, _sent_to_item(call.state, campaign_id, record["list_id"], email_id, rec)))


@router.route("GET", "/reports/{campaign_id}/open-details")
def list_open_details(call: Call, campaign_id: str) -> Reply:
    """Recipients who opened, with each open; ``since`` keeps only opens strictly after it."""
    _, record = sent_campaign(call.state, campaign_id)
    since = parse_param_time(call, "since")
    list_id = record["list_id"]
    openers: list[Any] = []
    for email_id, rec in record["emails"].items():
        opens = [e for e in _events_after(rec, since) if e["action"] == "open"]
        if opens:
            openers.append((email_id, rec, opens))
    if call.params.get("sort_field") == "opens_count":
        descending = (call.params.get("sort_dir") or "ASC").upper() == "DESC"
        openers.sort(key=lambda item: len(item[2]), reverse=descending)

    def render(item: tuple[str, dict[str, Any], list[dict[str, Any]]]) -> dict[str, Any]:
        email_id, rec, opens = item
        return {
            "campaign_id": campaign_id,
            "list_id": list_id,
            "list_is_active": list_id in call.state.lists,
            "contact_status": _contact_status(call.state, list_id, email_id),
            "email_id": email_id,
            "email_address": rec["email_address"],
            **_member_fields(call.state, list_id, email_id),
            "opens_count": len(opens),
            "opens": [{"timestamp": e["timestamp"]} for e in opens],
            "_links": [],
        }

    extra = {"campaign_id": campaign_id, "total_opens": sum(len(item[2]) for item in openers)}
    return ok(page(call, openers, "members", extra, render=render))


def _contact_status(state: EmulatorState, list_id: str, email_id: str) -> str:
    member = find_member(state, list_id, email_id)
    return str(member["status"]) if member else ""


def url_id(url: str) -> str:
    """A stable 10-hex id per clicked URL (Mailchimp's ``urls_clicked[].id``)."""
    return hashlib.md5(url.encode()).hexdigest()[:10]


def _clicks_by_url(record: dict[str, Any]) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    by_url: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for email_id, rec in record["emails"].items():
        for e in rec["activity"]:
            if e["action"] == "click":
                by_url.setdefault(e["url"], []).append((email_id, e))
    return by_url


@router.route("GET", "/reports/{campaign_id}/click-details")
def list_click_details(call: Call, campaign_id: str) -> Reply:
    """Clicked links with total and unique clicks (percentages of all clicks / unique clickers)."""
    _, record = sent_campaign(call.state, campaign_id)
    by_url = _clicks_by_url(record)
    total = sum(len(clicks) for clicks in by_url.values())
    unique_total = sum(len({email_id for email_id, _ in clicks}) for clicks in by_url.values())

    def render(url: str) -> dict[str, Any]:
        clicks = by_url[url]
        unique = len({email_id for email_id, _ in clicks})
        return {
            "id": url_id(url),
            "url": url,
            "total_clicks": len(clicks),
            "click_percentage": _rate(len(clicks), total),
            "unique_clicks": unique,
            "unique_click_percentage": _rate(unique, unique_total),
            "last_click": _last(e["timestamp"] for _, e in clicks),
            "ab_split": {},
            "campaign_id": campaign_id,
            "_links": [],
        }

    urls: list[Any] = sorted(by_url)
    return ok(page(call, urls, "urls_clicked", {"campaign_id": campaign_id}, render=render))


@router.route("GET", "/reports/{campaign_id}/click-details/{link_id}/members")
def list_click_members(call: Call, campaign_id: str, link_id: str) -> Reply:
    """The recipients who clicked one link, with how many times."""
    _, record = sent_campaign(call.state, campaign_id)
    matches = [clicks for url, clicks in _clicks_by_url(record).items() if url_id(url) == link_id]
    if not matches:
        raise not_found()
    counts: dict[str, int] = {}
    for email_id, _ in matches[0]:
        counts[email_id] = counts.get(email_id, 0) + 1
    list_id = record["list_id"]

    def render(email_id: str) -> dict[str, Any]:
        return {
            "email_id": email_id,
            "email_address": record["emails"][email_id]["email_address"],
            **_member_fields(call.state, list_id, email_id),
            "clicks": counts[email_id],
            "campaign_id": campaign_id,
            "url_id": link_id,
            "list_id": list_id,
            "list_is_active": list_id in call.state.lists,
            "contact_status": _contact_status(call.state, list_id, email_id),
            "_links": [],
        }

    clickers: list[Any] = list(counts)
    return ok(page(call, clickers, "members", {"campaign_id": campaign_id}, render=render))
