"""Campaign reports: summary, email activity, open and click details, unsubscribes and sent-to.

Reports are computed from the recorded activity of a sent campaign (``state.activity[campaign_id]``,
written by :mod:`campaigns`), so generated and injected activity always agree with the counts; the
summary counters come from a running tally (:mod:`tally`) that only folds in what became visible
since the last read. Layout of one activity record::

    {"list_id": str,
     "emails": {subscriber_hash: {"email_address": str,
                                  "activity": [{"action", "timestamp", "ip"?, "url"?, "type"?}, ...]}},
     "unsubscribes": [{"email_id", "email_address", "timestamp", "reason"}, ...]}

``emails`` holds every recipient in send order; ``activity`` is kept sorted by time.

Activity becomes visible when its time comes: events and unsubscribes dated after the moment of
the request are left out of every report, as Mailchimp cannot report the future. Incremental
readers that bookmark the latest ``timestamp`` they saw therefore never skip events that arrive
later. A recipient's sent-to ``status`` is ``hard``/``soft`` once a bounce is visible, else ``sent``.

Email activity and ``since`` (facts §11.9 leaves it open; the emulator's choice): without ``since``
every recipient is listed, and a recipient who did nothing has ``"activity": []``. With ``since``,
only events strictly after ``since`` are returned and recipients left with none are omitted, so an
incremental reader gets just what is new. ``since_send_time`` (campaigns, reports) is inclusive and
``before_send_time`` exclusive. Reports are listed by ``send_time`` ascending, so new reports land on
the last page and offset paging stays stable while campaigns are being sent.
"""

from __future__ import annotations

import hashlib
import time
from functools import cached_property, lru_cache, partial
from typing import Any, Callable, Iterable

from . import tally
from .collections import excluded, filter_fields, page
from .ecommerce import campaign_revenue
from .errors import not_found
from .members import find_member, subscriber_hash
from .records import merge_view
from .routing import Call, Reply, ok, router
from .schema import field_error
from .state import EmulatorState, parse_iso

Event = dict[str, Any]


@lru_cache(maxsize=65536)
def epoch(stamp: str) -> float:
    """Epoch seconds of a stored timestamp (cached: reports re-read the same ones on every page)."""
    return (parse_iso(stamp) or 0.0) if stamp else 0.0


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
        if not stamp:
            return False
        at = epoch(stamp)
        return (since is None or at >= since) and (before is None or at < before)

    return inside


class Visible:
    """What a sent campaign's report shows at one moment: per recipient, the events dated up to
    ``now``, and the unsubscribes dated up to ``now``."""

    def __init__(self, state: EmulatorState, campaign_id: str, now: float | None = None) -> None:
        campaign = state.campaigns.get(campaign_id)
        record = state.activity.get(campaign_id)
        if campaign is None or record is None:
            raise not_found()
        now = time.time() if now is None else now
        self.state = state
        self.campaign = campaign
        self.campaign_id = campaign_id
        self.list_id: str = record["list_id"]
        self.list_is_active = self.list_id in state.lists
        self.recipients: dict[str, dict[str, Any]] = record["emails"]
        self.now = now
        self.complete = tally.latest_time(state, campaign_id, epoch) <= now
        """Everything has happened already (the usual case): the stored lists are shown as they are."""
        if self.complete:
            self.unsubscribes: list[Any] = record["unsubscribes"]
        else:
            self.unsubscribes = [u for u in record["unsubscribes"] if epoch(u["timestamp"]) <= now]

    @cached_property
    def events(self) -> dict[str, list[Event]]:
        """Every recipient's visible events (built on first use: email activity reads them per
        recipient with :meth:`visible_events` instead)."""
        if self.complete:
            return {email_id: rec["activity"] for email_id, rec in self.recipients.items()}
        now = self.now
        return {
            email_id: [e for e in rec["activity"] if epoch(e["timestamp"]) <= now]
            for email_id, rec in self.recipients.items()
        }

    def visible_events(self, recipient: dict[str, Any]) -> list[Event]:
        """One recipient's events dated up to ``now`` (their stored list when everything is visible)."""
        if self.complete:
            return recipient["activity"]
        return [e for e in recipient["activity"] if epoch(e["timestamp"]) <= self.now]

    def email_id(self, key: str) -> str:
        """A recipient by subscriber hash or email address; 404 if the campaign was not sent to them."""
        email_id = subscriber_hash(key) if "@" in key else key.strip().lower()
        if email_id not in self.recipients:
            raise not_found()
        return email_id

    def delivery(self, email_id: str) -> str:
        """``sent``, or the type of the recipient's first visible bounce (``hard``/``soft``)."""
        bounces = [e for e in self.events[email_id] if e["action"] == "bounce"]
        return str(bounces[0].get("type") or "hard") if bounces else "sent"

    def member_fields(self, email_id: str) -> dict[str, Any]:
        member = find_member(self.state, self.list_id, email_id)
        return {
            "merge_fields": merge_view(member["merge_fields"]) if member else {},
            "vip": bool(member.get("vip")) if member else False,
        }

    def contact_status(self, email_id: str) -> str:
        member = find_member(self.state, self.list_id, email_id)
        return str(member["status"]) if member else ""


def events_after(events: list[Event], since: float | None) -> list[Event]:
    return events if since is None else [e for e in events if epoch(e["timestamp"]) > since]


EmailItem = tuple[str, dict[str, Any], list[Event]]
"""An email-activity item before rendering: ``(email_id, recipient record, events to show)``."""


def email_items(view: Visible, since: float | None) -> list[EmailItem]:
    """Every recipient with their visible events, in send order; with ``since``, only those who have
    events strictly after it, with just those events (see the module docstring)."""
    visible = view.visible_events
    if since is None:
        return [(email_id, rec, visible(rec)) for email_id, rec in view.recipients.items()]
    pairs = view.recipients.items()
    latest = tally.recipient_latest(view.state, view.campaign_id)
    if latest is None:
        return [
            (email_id, rec, later) for email_id, rec in pairs if (later := events_after(visible(rec), since))
        ]
    # An incremental reader's ``since`` is recent, so most recipients have nothing after it: the
    # cached tally's latest time per recipient skips them without looking at their events.
    return [
        (email_id, rec, later)
        for (email_id, rec), last in zip(pairs, latest)
        if last > since and (later := events_after(visible(rec), since))
    ]


def _rate(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def _last(stamps: Iterable[str]) -> str:
    stamps = list(stamps)
    return max(stamps, key=epoch) if stamps else ""


def summarize(view: Visible) -> dict[str, Any]:
    """Counts and rates of a sent campaign. Rates divide by delivered emails (sent minus bounced)."""
    events = [(h, e) for h, evs in view.events.items() for e in evs]
    opens = [(h, e) for h, e in events if e["action"] == "open"]
    clicks = [(h, e) for h, e in events if e["action"] == "click"]
    deliveries = [view.delivery(h) for h in view.recipients]
    hard, soft = deliveries.count("hard"), deliveries.count("soft")
    sent = len(view.recipients)
    delivered = sent - hard - soft
    unique_opens = len({h for h, _ in opens})
    subscriber_clicks = len({h for h, _ in clicks})
    return {
        "emails_sent": sent,
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
        "unsubscribed": len(view.unsubscribes),
    }


def visible_summary(state: EmulatorState, campaign_id: str) -> dict[str, Any]:
    """:func:`summarize` of a sent campaign now, from its running tally (O(new events), not
    O(all events): see :mod:`tally`); 404 for an unknown or unsent campaign."""
    if campaign_id not in state.campaigns:
        raise not_found()
    summary = tally.campaign_summary(state, campaign_id, epoch)
    if summary is None:
        raise not_found()
    return summary


def report_summary(state: EmulatorState, campaign: dict[str, Any]) -> dict[str, Any]:
    """The ``report_summary`` object embedded in a sent campaign."""
    s = visible_summary(state, campaign["id"])
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


_CLICK_KEYS = ("clicks_total", "unique_clicks", "unique_subscriber_clicks", "click_rate", "last_click")


def render_report(state: EmulatorState, campaign_id: str) -> dict[str, Any]:
    """The report of a sent campaign (404 if unknown or unsent)."""
    s = visible_summary(state, campaign_id)
    campaign = state.campaigns[campaign_id]
    list_id: str = state.activity[campaign_id]["list_id"]
    settings = campaign["settings"]
    return {
        "id": campaign["id"],
        "campaign_title": settings.get("title", ""),
        "type": campaign["type"],
        "list_id": list_id,
        "list_is_active": list_id in state.lists,
        "list_name": str((state.lists.get(list_id) or {}).get("name", "")),
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
    campaigns: list[Any] = [
        state.campaigns[cid]
        for cid in state.activity
        if cid in state.campaigns
        and inside(state.campaigns[cid]["send_time"])
        and (not wanted_type or state.campaigns[cid]["type"] == wanted_type)
    ]
    campaigns.sort(key=lambda c: epoch(c["send_time"]))
    return ok(page(call, campaigns, "reports", render=lambda c: render_report(state, c["id"])))


@router.route("GET", "/reports/{campaign_id}")
def get_report(call: Call, campaign_id: str) -> Reply:
    return ok(filter_fields(call, render_report(call.state, campaign_id)))


def _email_items(view: Visible, links: bool = True) -> Callable[[EmailItem], dict[str, Any]]:
    """The renderer of :data:`EmailItem` as email-activity items, with the per-campaign values bound
    once (a page holds every recipient of the campaign, thousands of them). An item holds the event
    list itself, uncopied: replies are encoded at once and never mutated. ``links=False`` leaves
    ``_links`` out, for callers that exclude it anyway."""
    campaign_id, list_id, active = view.campaign_id, view.list_id, view.list_is_active

    def render(item: EmailItem) -> dict[str, Any]:
        email_id, recipient, events = item
        rendered = {
            "campaign_id": campaign_id,
            "list_id": list_id,
            "list_is_active": active,
            "email_id": email_id,
            "email_address": recipient["email_address"],
            "activity": events,
        }
        if links:
            rendered["_links"] = []
        return rendered

    return render


@router.route("GET", "/reports/{campaign_id}/email-activity")
def list_email_activity(call: Call, campaign_id: str) -> Reply:
    """Recipients with their activity; ``since`` keeps only later events (module docstring)."""
    view = Visible(call.state, campaign_id)
    since = parse_param_time(call, "since")
    items: list[Any] = email_items(view, since)
    extra = {"campaign_id": campaign_id}
    links = not excluded(call, "emails._links")
    done = () if links else ("emails._links",)
    body = page(call, items, "emails", extra, render=_email_items(view, links), done=done)
    return ok(body, float_free=True)  # str, bool and int only (events hold validated strings)


@router.route("GET", "/reports/{campaign_id}/email-activity/{subscriber_hash}")
def get_email_activity(call: Call, campaign_id: str, subscriber_hash: str) -> Reply:
    view = Visible(call.state, campaign_id)
    email_id = view.email_id(subscriber_hash)
    recipient = view.recipients[email_id]
    events = events_after(view.visible_events(recipient), parse_param_time(call, "since"))
    return ok(filter_fields(call, _email_items(view)((email_id, recipient, events))))


def _unsubscribe_item(view: Visible, unsub: dict[str, Any]) -> dict[str, Any]:
    return {
        "email_id": unsub["email_id"],
        "email_address": unsub["email_address"],
        **view.member_fields(unsub["email_id"]),
        "timestamp": unsub["timestamp"],
        "reason": unsub["reason"],
        "campaign_id": view.campaign_id,
        "list_id": view.list_id,
        "list_is_active": view.list_is_active,
        "_links": [],
    }


@router.route("GET", "/reports/{campaign_id}/unsubscribed")
def list_unsubscribed(call: Call, campaign_id: str) -> Reply:
    """Members who unsubscribed from this campaign; like Mailchimp there is no ``since`` filter."""
    view = Visible(call.state, campaign_id)
    render = partial(_unsubscribe_item, view)
    return ok(page(call, view.unsubscribes, "unsubscribes", {"campaign_id": campaign_id}, render=render))


@router.route("GET", "/reports/{campaign_id}/unsubscribed/{subscriber_hash}")
def get_unsubscribed(call: Call, campaign_id: str, subscriber_hash: str) -> Reply:
    view = Visible(call.state, campaign_id)
    email_id = view.email_id(subscriber_hash)
    for unsub in view.unsubscribes:
        if unsub["email_id"] == email_id:
            return ok(filter_fields(call, _unsubscribe_item(view, unsub)))
    raise not_found()


def _sent_to_item(view: Visible, email_id: str) -> dict[str, Any]:
    opens = [e["timestamp"] for e in view.events[email_id] if e["action"] == "open"]
    return {
        "email_id": email_id,
        "email_address": view.recipients[email_id]["email_address"],
        **view.member_fields(email_id),
        "status": view.delivery(email_id),
        "open_count": len(opens),
        "last_open": _last(opens),
        "absplit_group": "",
        "gmt_offset": 0,
        "campaign_id": view.campaign_id,
        "list_id": view.list_id,
        "list_is_active": view.list_is_active,
        "_links": [],
    }


@router.route("GET", "/reports/{campaign_id}/sent-to")
def list_sent_to(call: Call, campaign_id: str) -> Reply:
    view = Visible(call.state, campaign_id)
    recipients: list[Any] = list(view.recipients)
    extra = {"campaign_id": campaign_id}
    return ok(page(call, recipients, "sent_to", extra, render=lambda email_id: _sent_to_item(view, email_id)))


@router.route("GET", "/reports/{campaign_id}/sent-to/{subscriber_hash}")
def get_sent_to(call: Call, campaign_id: str, subscriber_hash: str) -> Reply:
    view = Visible(call.state, campaign_id)
    return ok(filter_fields(call, _sent_to_item(view, view.email_id(subscriber_hash))))


@router.route("GET", "/reports/{campaign_id}/open-details")
def list_open_details(call: Call, campaign_id: str) -> Reply:
    """Recipients who opened, with each open; ``since`` keeps only opens strictly after it."""
    view = Visible(call.state, campaign_id)
    since = parse_param_time(call, "since")
    openers: list[Any] = []
    for email_id, events in view.events.items():
        opens = [e for e in events_after(events, since) if e["action"] == "open"]
        if opens:
            openers.append((email_id, opens))
    if call.params.get("sort_field") == "opens_count":
        descending = (call.params.get("sort_dir") or "ASC").upper() == "DESC"
        openers.sort(key=lambda item: len(item[1]), reverse=descending)

    def render(item: tuple[str, list[Event]]) -> dict[str, Any]:
        email_id, opens = item
        return {
            "campaign_id": campaign_id,
            "list_id": view.list_id,
            "list_is_active": view.list_is_active,
            "contact_status": view.contact_status(email_id),
            "email_id": email_id,
            "email_address": view.recipients[email_id]["email_address"],
            **view.member_fields(email_id),
            "opens_count": len(opens),
            "opens": [{"timestamp": e["timestamp"]} for e in opens],
            "_links": [],
        }

    extra = {"campaign_id": campaign_id, "total_opens": sum(len(item[1]) for item in openers)}
    return ok(page(call, openers, "members", extra, render=render))


def url_id(url: str) -> str:
    """A stable 10-hex id per clicked URL (Mailchimp's ``urls_clicked[].id``)."""
    return hashlib.md5(url.encode()).hexdigest()[:10]


def _clicks_by_url(view: Visible) -> dict[str, list[tuple[str, Event]]]:
    by_url: dict[str, list[tuple[str, Event]]] = {}
    for email_id, events in view.events.items():
        for e in events:
            if e["action"] == "click":
                by_url.setdefault(e["url"], []).append((email_id, e))
    return by_url


@router.route("GET", "/reports/{campaign_id}/click-details")
def list_click_details(call: Call, campaign_id: str) -> Reply:
    """Clicked links with total and unique clicks (percentages of all clicks / unique clickers)."""
    view = Visible(call.state, campaign_id)
    by_url = _clicks_by_url(view)
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
    view = Visible(call.state, campaign_id)
    matches = [clicks for url, clicks in _clicks_by_url(view).items() if url_id(url) == link_id]
    if not matches:
        raise not_found()
    counts: dict[str, int] = {}
    for email_id, _ in matches[0]:
        counts[email_id] = counts.get(email_id, 0) + 1

    def render(email_id: str) -> dict[str, Any]:
        return {
            "email_id": email_id,
            "email_address": view.recipients[email_id]["email_address"],
            **view.member_fields(email_id),
            "clicks": counts[email_id],
            "campaign_id": campaign_id,
            "url_id": link_id,
            "list_id": view.list_id,
            "list_is_active": view.list_is_active,
            "contact_status": view.contact_status(email_id),
            "_links": [],
        }

    clickers: list[Any] = list(counts)
    return ok(page(call, clickers, "members", {"campaign_id": campaign_id}, render=render))
