"""When to retry a Mailchimp call and how long to wait: one policy for the sync hook and the async client.

The policy is pure arithmetic (no sleeping, no I/O) so the blocking hook can ``time.sleep`` on it
and the triggerer's client can ``asyncio.sleep`` on it. What it encodes:

* 429 (over 10 simultaneous connections), 500, 502, 503 and 504 are transient; so are timeouts and
  connection errors. At high volume Mailchimp may answer 429 *or 403 without a JSON body*; a 403
  with a problem document is a real permission error and is not retried.
* Exponential backoff with jitter, so that the workers hitting one account do not retry in lockstep.
* ``Retry-After`` (delta-seconds or an HTTP date) is honoured, capped at ``max_retry_after``.
* The budget is bounded twice: by attempts and by total elapsed time.
* A write that must not be replayed (``POST /batches``) is retried in place only after a *refusal*
  (``is_refusal``: 429, or 403 without a body), which Mailchimp sends before doing anything. After a
  5xx or a timeout the write may have happened; the hook then looks for it before sending it again
  (see ``hooks.batch_lookup``).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

RETRIABLE_STATUSES: frozenset[int] = frozenset({429, 500, 502, 503, 504})


def is_retriable_status(status: int, *, has_json_body: bool = True) -> bool:
    """Whether an HTTP answer is a transient failure worth another attempt."""
    if status in RETRIABLE_STATUSES:
        return True
    # "At exceptionally high volumes, you may receive an HTTP 429 or 403 without a JSON body."
    return status == 403 and not has_json_body


def is_refusal(status: int, *, has_json_body: bool = True) -> bool:
    """Whether a retriable answer says the request was turned away before any work was done.

    429 is the connection limit (and the 500-pending-batches limit), checked at the door; so is
    the bare 403 of high-volume throttling. A 5xx may come after the work was done.
    """
    return status == 429 or (status == 403 and not has_json_body)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait according to a ``Retry-After`` header, or None if absent or unparseable."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff with jitter that honours ``Retry-After``.

    ``max_attempts`` counts every attempt including the first; ``max_elapsed`` bounds the time from
    the first attempt to the start of the last one. ``next_delay`` returns None when either budget
    would be exceeded, which is the caller's cue to give up.
    """

    max_attempts: int = 6
    max_elapsed: float = 300.0
    base_delay: float = 1.0
    max_delay: float = 30.0
    max_retry_after: float = 60.0
    jitter: float = 0.5
    rng: random.Random = field(default_factory=random.Random, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"RetryPolicy.max_attempts must be >= 1, got {self.max_attempts}")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError(f"RetryPolicy.jitter must be within [0, 1], got {self.jitter}")
        if self.base_delay < 0 or self.max_delay < 0 or self.max_elapsed < 0 or self.max_retry_after < 0:
            raise ValueError("RetryPolicy delays and budgets must not be negative")

    def backoff(self, attempt: int) -> float:
        """The jittered exponential delay after failed attempt number ``attempt`` (1-based)."""
        ceiling = min(self.max_delay, self.base_delay * (2 ** max(0, attempt - 1)))
        return ceiling * (1.0 - self.jitter * self.rng.random())

    def next_delay(
        self, attempt: int, retry_after_header: str | None = None, *, elapsed: float = 0.0
    ) -> float | None:
        """Seconds to sleep before attempt ``attempt + 1``, or None when the budget is spent.

        :param attempt: how many attempts have been made so far (1 after the first failure).
        :param retry_after_header: the raw ``Retry-After`` value of the failed answer, if any.
        :param elapsed: seconds since the first attempt started.
        """
        if attempt >= self.max_attempts:
            return None
        retry_after = parse_retry_after(retry_after_header)
        if retry_after is not None:
            delay = min(retry_after, self.max_retry_after)
        else:
            delay = self.backoff(attempt)
        if elapsed + delay > self.max_elapsed:
            return None
        return delay

    def delay_or_give_up(
        self,
        method: str,
        path: str,
        *,
        attempt: int,
        started: float,
        reason: str,
        status: int | None,
        retry_after_header: str | None,
        failure: BaseException | None,
    ) -> float:
        """The pause before the next attempt of a failed request; when the budget is spent, the
        ``MailchimpRetriableError`` that says how many attempts were made and what failed last.
        Shared by the synchronous hook and the async client so both give up alike."""
        from mailchimp_provider.errors import MailchimpRetriableError

        elapsed = time.monotonic() - started
        delay = self.next_delay(attempt, retry_after_header, elapsed=elapsed)
        if delay is None:
            raise MailchimpRetriableError(
                f"{method} {path}: gave up after {attempt} attempt(s) in {elapsed:.1f}s; last failure: {reason}",
                status=status,
                attempts=attempt,
            ) from failure
        return delay
