"""Decide, from successive batch snapshots, whether a wait is over: pure logic, no I/O.

The synchronous wait (``BatchRunner.wait``), the trigger and the sensor all feed snapshots of
``GET /batches/{id}`` into one ``BatchProgress`` and act on its ``Verdict``, so they agree on
what "stalled" and "expired" mean and tell the on-call engineer the same thing.

Why progress-based, not a fixed deadline: Mailchimp processes one batch at a time per account, so
a healthy batch can sit ``pending`` behind others for a long time, while a broken one can sit in
``finalizing`` for hours with every operation done (beabee-communityrm/monorepo#712, 7.4 h). So
the stall clock restarts whenever *any* watched batch moves (status or ``finished_operations``),
and fires when nothing has moved for ``stall_timeout`` seconds. ``max_wait`` is an optional
absolute bound on top.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, Iterable

__all__ = ["BatchProgress", "Outcome", "PollSchedule", "Verdict", "describe_batch", "split_hint"]

FINISHED_STATUS = "finished"


class Outcome(str, Enum):
    """What a wait has come to. The values are the trigger event's ``status``."""

    WORKING = "working"
    FINISHED = "finished"
    STALLED = "stalled"
    EXPIRED = "expired"
    TIMED_OUT = "error"  # max_wait exceeded: reported as an error event


@dataclass(frozen=True)
class Verdict:
    """The outcome, a message for the log or the failure, and the latest snapshot per batch."""

    outcome: Outcome
    message: str
    snapshots: dict[str, dict[str, Any]]
    expired: tuple[str, ...] = ()
    stalled: tuple[str, ...] = ()

    @property
    def done(self) -> bool:
        return self.outcome is not Outcome.WORKING


@dataclass
class PollSchedule:
    """Gentle backoff: start at ``base`` seconds, grow by ``factor`` per poll, never above ``cap``.

    The default cap is six times the base (at most 5 minutes): a wait for a multi-hour batch stays
    cheap, and a wait for a quick one answers within a few polls.
    """

    base: float
    factor: float = 1.25
    cap: float | None = None
    _current: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        if self.base <= 0:
            raise ValueError(f"poll interval must be > 0 seconds, got {self.base}")
        if self.cap is None:
            self.cap = max(self.base, min(self.base * 6, 300.0))
        self._current = self.base

    def next(self) -> float:
        value = self._current
        self._current = min(self._current * self.factor, float(self.cap or self.base))
        return value

    def reset(self) -> None:
        self._current = self.base


def describe_batch(snapshot: dict[str, Any]) -> str:
    """``"status finalizing, 10/10 operations finished, 2 errored"`` for messages."""
    total = snapshot.get("total_operations") or 0
    done = snapshot.get("finished_operations") or 0
    errored = snapshot.get("errored_operations") or 0
    return f"status {snapshot.get('status') or '?'}, {done}/{total} operations finished, {errored} errored"


class BatchProgress:
    """Tracks a group of batches being waited for together.

    Feed it with ``observe(batch_id, snapshot)`` or ``observe_expired(batch_id)`` after each poll,
    then ask ``verdict()``. ``clock`` is injectable (monotonic seconds) for tests and for the
    trigger, which must not depend on wall-clock jumps.
    """

    def __init__(
        self,
        batch_ids: Iterable[str],
        *,
        stall_timeout: float,
        max_wait: float | None = None,
        poll_interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        waited_before: float = 0.0,
    ) -> None:
        self.batch_ids = list(dict.fromkeys(batch_ids))
        if not self.batch_ids:
            raise ValueError("BatchProgress needs at least one batch id")
        if stall_timeout <= 0:
            raise ValueError(f"stall_timeout must be > 0 seconds, got {stall_timeout}")
        if max_wait is not None and max_wait <= 0:
            raise ValueError(f"max_wait must be > 0 seconds or None, got {max_wait}")
        self.stall_timeout = float(stall_timeout)
        self.max_wait = None if max_wait is None else float(max_wait)
        self.clock = clock
        self.schedule = PollSchedule(poll_interval)
        self._started = clock() - max(0.0, waited_before)
        self._last_progress = clock()
        self._marks: dict[str, tuple[Any, Any]] = {}
        self._snapshots: dict[str, dict[str, Any]] = {}
        self._expired: set[str] = set()

    # -- feeding ---------------------------------------------------------------------------------
    def pending(self) -> list[str]:
        """Batch ids that still need polling (not finished, not expired)."""
        return [b for b in self.batch_ids if b not in self._expired and not self._is_finished(b)]

    def observe(self, batch_id: str, snapshot: dict[str, Any]) -> None:
        """Record a fresh ``GET /batches/{id}`` answer."""
        mark = (snapshot.get("status"), snapshot.get("finished_operations"))
        if self._marks.get(batch_id) != mark:
            if batch_id in self._marks:  # the first sighting is not movement, but starts the clock
                self.schedule.reset()
            self._last_progress = self.clock()
            self._marks[batch_id] = mark
        self._snapshots[batch_id] = _jsonable_snapshot(snapshot)

    def observe_expired(self, batch_id: str) -> None:
        """Record that Mailchimp answered 404 for the batch (or its results are gone)."""
        self._expired.add(batch_id)

    # -- deciding --------------------------------------------------------------------------------
    def verdict(self) -> Verdict:
        now = self.clock()
        snapshots = dict(self._snapshots)
        expired = tuple(b for b in self.batch_ids if b in self._expired)
        pending = self.pending()
        if not pending:
            if expired:
                return Verdict(Outcome.EXPIRED, _expired_message(expired), snapshots, expired=expired)
            return Verdict(Outcome.FINISHED, self._finished_message(), snapshots)
        idle = now - self._last_progress
        if idle >= self.stall_timeout:
            stalled = tuple(pending)
            return Verdict(
                Outcome.STALLED, self._stalled_message(stalled, idle), snapshots, expired=expired, stalled=stalled
            )
        if self.max_wait is not None and now - self._started >= self.max_wait:
            message = self._timed_out_message(pending, now - self._started)
            return Verdict(Outcome.TIMED_OUT, message, snapshots, expired=expired)
        return Verdict(Outcome.WORKING, self._working_message(pending), snapshots, expired=expired)

    def next_interval(self) -> float:
        """Seconds until the next poll: the backoff, but never sleeping far past a deadline."""
        interval = self.schedule.next()
        now = self.clock()
        deadlines = [self._last_progress + self.stall_timeout]
        if self.max_wait is not None:
            deadlines.append(self._started + self.max_wait)
        until = min(deadlines) - now
        return max(0.05, min(interval, until + 0.05))

    def checkpoint(self) -> dict[str, Any]:
        """The stall clock as JSON, for waits that span processes (needs a wall ``clock``)."""
        return {
            "started": self._started,
            "last_progress": self._last_progress,
            "marks": {b: list(m) for b, m in self._marks.items()},
        }

    def restore(self, data: dict[str, Any]) -> None:
        """Continue from ``checkpoint()`` output written by an earlier process."""
        self._started = float(data.get("started", self._started))
        self._last_progress = float(data.get("last_progress", self._last_progress))
        self._marks = {b: tuple(m) for b, m in (data.get("marks") or {}).items()}

    @property
    def waited(self) -> float:
        """Seconds since the wait started (including ``waited_before``)."""
        return self.clock() - self._started

    # -- messages ---------------------------------------------------------------------------------
    def _is_finished(self, batch_id: str) -> bool:
        return (self._snapshots.get(batch_id) or {}).get("status") == FINISHED_STATUS

    def _finished_message(self) -> str:
        parts = [f"{b} ({describe_batch(self._snapshots[b])})" for b in self.batch_ids if b in self._snapshots]
        return "Batch(es) finished: " + "; ".join(parts) + "."

    def _working_message(self, pending: list[str]) -> str:
        parts = [f"{b} ({describe_batch(self._snapshots.get(b, {}))})" for b in pending]
        return "Waiting for batch(es): " + "; ".join(parts) + "."

    def _stalled_message(self, stalled: tuple[str, ...], idle: float) -> str:
        lines = []
        for b in stalled:
            snap = self._snapshots.get(b, {})
            total = snap.get("total_operations") or 0
            done = snap.get("finished_operations") or 0
            if snap.get("status") == "finalizing" and total and done >= total:
                why = (
                    "all operations are done but Mailchimp is still compiling the results archive "
                    "('finalizing'), which it sometimes does for hours"
                )
            elif snap.get("status") in (None, "pending", "preprocessing"):
                why = (
                    "Mailchimp has not started it (batches run one at a time per account; "
                    "another integration may be ahead)"
                )
            else:
                why = "its finished-operation count stopped moving"
            lines.append(f"{b} ({describe_batch(snap)}): {why}")
        return (
            f"No progress for {idle:.0f}s (stall_timeout={self.stall_timeout:.0f}s): " + "; ".join(lines) + ". "
            "What to do: the batch stays in the ledger, so retrying or clearing the task re-attaches to it and "
            "waits again without resubmitting anything. To give up on it instead, mark it abandoned "
            "(operator option abandon_stalled=True, or set its ledger row's status to 'abandoned') and clear the "
            "task: records without a confirmed outcome will be sent again (idempotent)."
        )

    def _timed_out_message(self, pending: list[str], waited: float) -> str:
        parts = [f"{b} ({describe_batch(self._snapshots.get(b, {}))})" for b in pending]
        return (
            f"Still running after max_wait={self.max_wait:.0f}s (waited {waited:.0f}s, and it is still moving): "
            + "; ".join(parts)
            + ". What to do: nothing is lost; the batch keeps running in Mailchimp and stays in the ledger. "
            "Retry or clear the task to re-attach and apply its results, or raise max_wait."
        )


def split_hint(message: str) -> tuple[str, str]:
    """Split a verdict message into ``MailchimpBatchError``'s (message, hint) at "What to do:"."""
    head, sep, hint = message.partition(" What to do: ")
    return (head, hint) if sep else (message, "see the task log.")


def _expired_message(expired: tuple[str, ...]) -> str:
    return (
        f"Batch(es) {', '.join(expired)}: results expired (Mailchimp answers 404 or the archive is gone). "
        "What to do: clear the task to resubmit; records without a confirmed outcome will be sent again "
        "(idempotent)."
    )


def _jsonable_snapshot(snapshot: dict[str, Any]) -> dict[str, Any]:
    """The batch fields worth keeping, without ``_links`` (noise) and with JSON-safe values."""
    keep = (
        "id", "status", "total_operations", "finished_operations", "errored_operations",
        "submitted_at", "completed_at", "response_body_url",
    )
    return {k: snapshot.get(k) for k in keep if k in snapshot}
