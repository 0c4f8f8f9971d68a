"""Running report counters of a sent campaign, so listing reports and campaigns is O(1) per campaign.

A report shows only the activity dated up to the moment of the request (see :mod:`reports`), so a
report is a function of ``(activity record, now)``. Recomputing it from every event on every GET
costs O(events) per campaign, which made ``GET /reports`` and ``GET /campaigns`` take about a
minute with a million events. A :class:`CampaignTally` instead holds the campaign's events sorted
by time, the counters of those already visible and a cursor: a later request only folds in the
events that became visible since (time only moves forward), and one at an earlier moment
(a clock that stepped back) gets a fresh, uncached tally.

A tally also keeps each recipient's latest event time, so email activity with ``since`` skips the
recipients with nothing newer without reading their events.

Tallies live in ``state.derived`` (never saved) and are dropped by :func:`forget` when
:mod:`campaigns` changes a campaign's activity; a record replaced wholesale, or one whose number of
recipients or unsubscribes changed, is noticed and re-tallied as well.

The counters match :func:`reports.summarize` exactly, ties included: the delivery status is the
type of the recipient's first visible bounce *in list order*, and ``last_open``/``last_click`` are
the latest timestamps, the first one in recipient-then-list order on equal times.
"""

from __future__ import annotations

import bisect
import math
import time
from typing import Any, Callable

from .state import EmulatorState

_KEY = "report-tallies"
"""Key in ``state.derived``: campaign_id -> :class:`CampaignTally`."""
_LATEST_KEY = "activity-latest"
"""Key in ``state.derived``: campaign_id -> ``(record, shape, latest time)`` (see :func:`latest_time`)."""


class CampaignTally:
    """The visible counts of one activity record at ``self.now`` (see the module docstring)."""

    def __init__(self, record: dict[str, Any], epoch: Callable[[str], float], now: float) -> None:
        self.record = record
        self.shape = _shape(record)
        recipients = record["emails"]
        self.emails_sent = len(recipients)
        self.opens_total = 0
        self.openers: set[str] = set()
        self.last_open: tuple[float, int, int, str] | None = None
        self.clicks_total = 0
        self.clicked_urls: set[tuple[str, Any]] = set()
        self.clickers: set[str] = set()
        self.last_click: tuple[float, int, int, str] | None = None
        self.first_bounce: dict[str, tuple[int, str]] = {}
        """email_id -> (list index, delivery status) of the recipient's first visible bounce."""
        self.deliveries: dict[str, int] = {}
        self.recipient_latest: list[float] = []
        """Per recipient, in ``emails`` order, the time of their latest event (-inf without any)."""
        # One pass: what is visible now is counted at once; only future events are kept, by time.
        pending: list[tuple[float, int, int, str, dict[str, Any]]] = []
        latest = -math.inf
        apply = self._apply
        add_latest = self.recipient_latest.append
        for position, (email_id, rec) in enumerate(recipients.items()):
            own = -math.inf
            for index, event in enumerate(rec["activity"]):
                at = epoch(event["timestamp"])
                if at > own:
                    own = at
                if at <= now:
                    apply(at, position, index, email_id, event)
                else:
                    pending.append((at, position, index, email_id, event))
            add_latest(own)
            if own > latest:
                latest = own
        pending.sort()  # by time, then recipient, then list position: those three are unique
        self._pending = pending
        self._cursor = 0
        self._unsubscribe_times = sorted(epoch(u["timestamp"]) for u in record["unsubscribes"])
        if self._unsubscribe_times and self._unsubscribe_times[-1] > latest:
            latest = self._unsubscribe_times[-1]
        self.latest = latest
        """The time of the record's latest event or unsubscribe: from then on everything is visible."""
        self.now = now

    def advance(self, now: float) -> None:
        """Fold in the events dated after the previous ``now`` and up to this one."""
        pending, cursor = self._pending, self._cursor
        end = len(pending)
        while cursor < end and pending[cursor][0] <= now:
            self._apply(*pending[cursor])
            cursor += 1
        self._cursor = cursor
        self.now = now

    def _apply(self, at: float, position: int, index: int, email_id: str, event: dict[str, Any]) -> None:
        """Count one visible event (``position``: its recipient's place, ``index``: its place in
        the recipient's list, for the tie rules in the module docstring)."""
        action = event["action"]
        if action == "open":
            self.opens_total += 1
            self.openers.add(email_id)
            last = self.last_open
            if last is None or at > last[0] or (at == last[0] and (position, index) < last[1:3]):
                self.last_open = (at, position, index, event["timestamp"])
        elif action == "click":
            self.clicks_total += 1
            self.clicked_urls.add((email_id, event["url"]))
            self.clickers.add(email_id)
            last = self.last_click
            if last is None or at > last[0] or (at == last[0] and (position, index) < last[1:3]):
                self.last_click = (at, position, index, event["timestamp"])
        elif action == "bounce":
            self._bounce(email_id, index, str(event.get("type") or "hard"))

    def _bounce(self, email_id: str, index: int, kind: str) -> None:
        current = self.first_bounce.get(email_id)
        if current is not None and current[0] < index:
            return
        if current is not None:
            self.deliveries[current[1]] -= 1
        self.first_bounce[email_id] = (index, kind)
        self.deliveries[kind] = self.deliveries.get(kind, 0) + 1

    def summary(self) -> dict[str, Any]:
        """The same dict as :func:`reports.summarize` for the moment ``self.now``."""
        hard, soft = self.deliveries.get("hard", 0), self.deliveries.get("soft", 0)
        delivered = self.emails_sent - hard - soft
        unique_opens = len(self.openers)
        subscriber_clicks = len(self.clickers)
        return {
            "emails_sent": self.emails_sent,
            "hard_bounces": hard,
            "soft_bounces": soft,
            "opens_total": self.opens_total,
            "unique_opens": unique_opens,
            "open_rate": _rate(unique_opens, delivered),
            "last_open": self.last_open[3] if self.last_open else "",
            "clicks_total": self.clicks_total,
            "unique_clicks": len(self.clicked_urls),
            "unique_subscriber_clicks": subscriber_clicks,
            "click_rate": _rate(subscriber_clicks, delivered),
            "last_click": self.last_click[3] if self.last_click else "",
            "unsubscribed": bisect.bisect_right(self._unsubscribe_times, self.now),
        }


def campaign_summary(
    state: EmulatorState, campaign_id: str, epoch: Callable[[str], float], now: float | None = None
) -> dict[str, Any] | None:
    """The summary of a sent campaign's activity at ``now`` (default: the current time); None if the
    campaign has no activity record."""
    now = time.time() if now is None else now
    tally = current_tally(state, campaign_id, epoch, now)
    if tally is None:
        return None
    if now >= tally.now:
        tally.advance(now)
        return tally.summary()
    return CampaignTally(tally.record, epoch, now).summary()  # an earlier moment: not cached


def current_tally(state: EmulatorState, campaign_id: str, epoch: Callable[[str], float], now: float) -> CampaignTally | None:
    """The campaign's cached tally (built at ``now`` if missing or stale); None without activity."""
    record = state.activity.get(campaign_id)
    if record is None:
        return None
    tally = cached_tally(state, campaign_id)
    if tally is None:
        tally = state.derived.setdefault(_KEY, {})[campaign_id] = CampaignTally(record, epoch, now)
    return tally


def cached_tally(state: EmulatorState, campaign_id: str) -> CampaignTally | None:
    """The campaign's tally if one is cached and still matches its activity record, else None."""
    tally = state.derived.get(_KEY, {}).get(campaign_id)
    record = state.activity.get(campaign_id)
    if tally is None or tally.record is not record or record is None or tally.shape != _shape(record):
        return None
    return tally


def recipient_latest(state: EmulatorState, campaign_id: str) -> list[float] | None:
    """Per recipient of the campaign, in ``emails`` order, the time of their latest event, from the
    cached tally; None without one (then look at the events: building a tally costs more)."""
    tally = cached_tally(state, campaign_id)
    return tally.recipient_latest if tally is not None else None


def latest_time(state: EmulatorState, campaign_id: str, epoch: Callable[[str], float]) -> float:
    """The time of the campaign's latest event or unsubscribe (-inf without any; the record must exist).

    Reports use it to know that everything has happened already and nothing needs filtering. It
    comes from the cached tally when there is one, else from one pass over the timestamps (a
    fraction of a tally's cost), cached with the same invalidation as a tally.
    """
    tally = cached_tally(state, campaign_id)
    if tally is not None:
        return tally.latest
    record = state.activity[campaign_id]
    cached = state.derived.get(_LATEST_KEY, {}).get(campaign_id)
    if cached is not None and cached[0] is record and cached[1] == _shape(record):
        return cached[2]
    stamps = [e["timestamp"] for rec in record["emails"].values() for e in rec["activity"]]
    stamps += [u["timestamp"] for u in record["unsubscribes"]]
    latest = max(map(epoch, stamps), default=-math.inf)
    state.derived.setdefault(_LATEST_KEY, {})[campaign_id] = (record, _shape(record), latest)
    return latest


def forget(state: EmulatorState, campaign_id: str) -> None:
    """Drop a campaign's tally: call after changing its activity record (rebuilt on the next read)."""
    state.derived.get(_KEY, {}).pop(campaign_id, None)
    state.derived.get(_LATEST_KEY, {}).pop(campaign_id, None)


def _shape(record: dict[str, Any]) -> tuple[int, int]:
    return len(record["emails"]), len(record["unsubscribes"])


def _rate(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0
