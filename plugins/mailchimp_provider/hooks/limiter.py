"""A process-wide cap on Mailchimp requests in flight, per API key.

Mailchimp answers 429 once an API key has more than 10 simultaneous connections, counting every
client of the account. Within one process we can enforce the cap exactly: every hook instance and
every thread that talks to the same account shares one gate, found in a registry keyed by a hash of
the credential (the registry never sees the key). Across processes (Celery workers, the triggerer)
the budget is shared through leases in Redis when one is configured (``hooks.shared_limiter``);
``AccountLimiter`` holds both: the process's gate first, then a lease.

The gate is a counter under a condition variable rather than a ``BoundedSemaphore`` so callers with
different limits can share it: each caller waits until fewer than *its own* limit are in flight,
hence the tightest limit in use always holds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from mailchimp_provider.errors import MailchimpConfigError
from mailchimp_provider.hooks.shared_limiter import SharedBudget, lease

DEFAULT_MAX_IN_FLIGHT = 8
MAILCHIMP_CONNECTION_LIMIT = 10


class InFlightGate:
    """Counts requests in flight for one account and blocks callers at their limit."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._in_flight = 0
        self.peak = 0

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def acquire(self, limit: int, timeout: float | None = None) -> bool:
        """Take a slot once fewer than ``limit`` are in flight; False if ``timeout`` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._in_flight >= limit:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
            self._in_flight += 1
            self.peak = max(self.peak, self._in_flight)
            return True

    def release(self) -> None:
        with self._cond:
            if self._in_flight <= 0:
                raise RuntimeError("InFlightGate released more often than acquired")
            self._in_flight -= 1
            self._cond.notify_all()

    @contextmanager
    def slot(self, limit: int) -> Iterator[None]:
        self.acquire(limit)
        try:
            yield
        finally:
            self.release()


_registry: dict[str, InFlightGate] = {}
_registry_lock = threading.Lock()


def gate_for(fingerprint: str) -> InFlightGate:
    """The process-wide gate of the account identified by ``fingerprint`` (a hash, not a key)."""
    with _registry_lock:
        gate = _registry.get(fingerprint)
        if gate is None:
            gate = _registry[fingerprint] = InFlightGate()
        return gate


class AccountLimiter:
    """What a request of one account waits for: this process's gate, then the shared budget (if any)."""

    def __init__(self, gate: InFlightGate, fingerprint: str, shared: SharedBudget | None) -> None:
        self.gate = gate
        self.fingerprint = fingerprint
        self.shared = shared

    @contextmanager
    def slot(self, limit: int) -> Iterator[None]:
        with self.gate.slot(limit), lease(self.shared, self.fingerprint):
            yield


def limiter_for(fingerprint: str, shared: SharedBudget | None = None) -> AccountLimiter:
    """The limiter of the account identified by ``fingerprint``; ``shared`` = a Redis budget, or None."""
    return AccountLimiter(gate_for(fingerprint), fingerprint, shared)


def validate_max_in_flight(value: int) -> int:
    """Reject limits that cannot work (< 1) or that Mailchimp would answer with 429s (> 10)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise MailchimpConfigError(f"max_in_flight must be an integer, got {value!r}")
    if not 1 <= value <= MAILCHIMP_CONNECTION_LIMIT:
        raise MailchimpConfigError(
            f"max_in_flight must be between 1 and {MAILCHIMP_CONNECTION_LIMIT} (Mailchimp's limit of "
            f"simultaneous connections per API key), got {value}"
        )
    return value
