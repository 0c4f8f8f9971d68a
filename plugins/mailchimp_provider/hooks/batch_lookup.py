"""Finding a batch whose ``POST /batches`` answer was lost, so that it is never submitted twice.

Why: when ``POST /batches`` answers 5xx, or no answer arrives in time, Mailchimp may have accepted
the batch anyway. Sending it again would run every operation twice: harmless for a member ``PUT``,
but a second ``POST`` of an order or a second tag event is not. So the hook looks first, and sends
again only when the batch is certainly absent.

What Mailchimp offers to look with (Marketing API v3, see /work/shared/mailchimp-api.md §5): no
idempotency key, no filter on ``GET /batches`` (only ``count``/``offset``/``fields``), and a batch
object without its operations: ``id``, ``status``, ``total_operations`` (0 until preprocessing has
counted them), ``submitted_at`` (second precision) and, once finished, the results archive, whose
entries carry each operation's ``operation_id``. Hence:

1. **Candidates**: every batch from ``GET /batches`` submitted within ``[sent - clock_skew,
   now + clock_skew]`` that this hook did not submit or read itself (``hook.known_batch_ids``, so
   an earlier chunk of the same size is never taken for the lost one).
2. **Counted match**: a candidate still at ``total_operations == 0`` (pending, not yet counted) is
   waited for; one whose count differs from ours is not ours.
3. **Verdict**:

   * exactly one candidate with our operation count, and no uncounted one: it is ours, adopted;
   * several with our count: each is verified once finished by the ``operation_id`` of its first
     result (operation ids are unique per record and payload); the one carrying ours is adopted;
   * none, and the server is certainly done with our request: absent, send again. "Done" means it
     answered (a 5xx), or ``server_timeout`` seconds (Mailchimp cuts every call at 120 s) have
     passed since we sent it, so a request still being worked on cannot create a batch later;
   * no verdict within ``max_wait``: ``MailchimpBatchError`` naming the candidates; nothing is
     sent again (the task's retry re-plans only what is still unconfirmed).

The same search serves a try that died during the POST (``find_intent_batch``): the ledger wrote
an *intent* row before sending (``batches.ledger``: time sent, operation count, a digest of the
operation ids), so the retry looks for that batch the same way, verifies a finished candidate by
the digest of all its results' operation ids (exact, order-free), and adopts it instead of sending
its operations a second time.

Limits, stated plainly: another client of the same account submitting a batch of exactly our size
within the window, while our own POST really failed, is taken for ours when it is the only match
(our records then get no result and stay pending for the sync to plan again: not lost, not
duplicated). Operations without ``operation_id`` cannot be verified, so several same-size
candidates then end in the error. Clocks further apart than ``clock_skew`` can hide our batch.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable, Collection, Sequence

from mailchimp_provider.errors import MailchimpBatchError, MailchimpError

if TYPE_CHECKING:
    from mailchimp_provider.hooks.mailchimp import MailchimpHook

log = logging.getLogger(__name__)

UNCOUNTED_STATUSES = frozenset({"pending", "preprocessing"})


@dataclass(frozen=True)
class BatchLookup:
    """How hard to look for a batch whose POST answer was lost (see the module docstring)."""

    server_timeout: float = 120.0
    """After this long past sending, Mailchimp has given up on a request that created nothing."""
    clock_skew: float = 60.0
    """Tolerated difference between our clock and Mailchimp's ``submitted_at``."""
    first_poll: float = 0.2
    """First pause between two listings; doubled up to ``poll_interval``."""
    poll_interval: float = 10.0
    max_wait: float = 900.0
    """Give up (without resending) when no verdict is reached in this many seconds."""


def _epoch(value: Any) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _in_window(batch: dict[str, Any], sent_at: float, now: float, skew: float) -> bool:
    submitted = _epoch(batch.get("submitted_at"))
    # Unreadable times cannot exclude a batch; second precision: the batch may show second `sent_at` floored.
    return submitted is None or sent_at - skew - 1 <= submitted <= now + skew


def _first_operation_id(hook: "MailchimpHook", batch_id: str) -> str | None:
    """The ``operation_id`` of the first result of a finished batch (fresh results URL)."""
    batch = hook.get(f"/batches/{batch_id}")  # not get_batch: that marks the batch as the hook's own
    for result in hook.iter_batch_results(batch):
        return result.operation_id
    return None


def _results_digest(hook: "MailchimpHook", batch_id: str) -> str:
    """:func:`batches.ledger.operations_digest` of every result's ``operation_id`` of a finished batch."""
    from mailchimp_provider.batches.ledger import operations_digest

    batch = hook.get(f"/batches/{batch_id}")
    return operations_digest(str(r.operation_id or "") for r in hook.iter_batch_results(batch))


def find_intent_batch(
    hook: "MailchimpHook",
    *,
    size: int,
    digest: str,
    sent_at: float,
    known: Collection[str] = (),
    lookup: BatchLookup = BatchLookup(),
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any] | None:
    """The batch a dead try sent (ledger intent: ``size`` operations whose ids digest to ``digest``,
    sent at ``sent_at``), or None when Mailchimp certainly has none. A finished candidate of that
    size is adopted only when its results carry exactly those operation ids; a single candidate
    still running is adopted by its count (as in :func:`find_submitted_batch`)."""
    return _search(hook, size, lambda batch_id: _results_digest(hook, batch_id) == digest, always_verify=True,
                   sent_at=sent_at, answered=False, known=known, lookup=lookup, clock=clock, sleep=sleep)


def find_submitted_batch(
    hook: "MailchimpHook",
    operations: Sequence[dict[str, Any]],
    *,
    sent_at: float,
    answered: bool,
    known: Collection[str] = (),
    lookup: BatchLookup = BatchLookup(),
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any] | None:
    """The batch Mailchimp created from ``operations`` sent at ``sent_at`` (epoch), or None when it
    is certainly absent. Raises ``MailchimpBatchError`` when it cannot tell within ``lookup.max_wait``.

    :param answered: the POST got an answer (5xx): the server is done with it. False for a timeout
        or dropped connection: absence is believed only ``lookup.server_timeout`` after sending.
    """
    ours = {str(op["operation_id"]) for op in operations if op.get("operation_id") is not None}
    verify = (lambda batch_id: _first_operation_id(hook, batch_id) in ours) if ours else None
    return _search(hook, len(operations), verify, always_verify=False, sent_at=sent_at, answered=answered,
                   known=known, lookup=lookup, clock=clock, sleep=sleep)


def _search(
    hook: "MailchimpHook",
    size: int,
    verify: Callable[[str], bool] | None,
    *,
    always_verify: bool,
    sent_at: float,
    answered: bool,
    known: Collection[str],
    lookup: BatchLookup,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> dict[str, Any] | None:
    """The verdict loop of the module docstring; ``verify(batch_id)`` tells whether a finished
    candidate is ours (``always_verify``: even a single finished candidate is checked)."""
    absent_from = sent_at if answered else sent_at + lookup.server_timeout
    give_up = clock() + lookup.max_wait
    foreign: set[str] = set()
    pause = lookup.first_poll
    while True:
        now = clock()
        candidates = [
            b for b in hook.list_batches()
            if str(b.get("id")) not in known and str(b.get("id")) not in foreign
            and _in_window(b, sent_at, min(now, sent_at + lookup.server_timeout), lookup.clock_skew)
        ]
        uncounted = [b for b in candidates if not b.get("total_operations") and b.get("status") in UNCOUNTED_STATUSES]
        matching = [b for b in candidates if b.get("total_operations") == size]
        if not matching and not uncounted and now >= absent_from:
            log.info("POST /batches: no batch of %d operations submitted since %s: certainly absent.", size, sent_at)
            return None
        if len(matching) == 1 and not uncounted and not (always_verify and matching[0].get("status") == "finished"):
            return matching[0]
        if (len(matching) > 1 or always_verify) and verify is not None:
            for batch in matching:
                if batch.get("status") != "finished":
                    continue
                batch_id = str(batch["id"])
                try:
                    ours = verify(batch_id)
                except MailchimpError as err:
                    log.warning("Could not read the results of candidate batch %s (%s); asking again.", batch_id, err)
                    continue
                if ours:
                    return batch
                foreign.add(batch_id)
        if now >= give_up:
            names = ", ".join(f"{b.get('id')} ({b.get('status')}, {b.get('total_operations')} ops)"
                              for b in matching + uncounted) or "none"
            raise MailchimpBatchError(
                "unknown",
                f"POST /batches of {size} operations got no usable answer, and after {lookup.max_wait:g}s "
                f"it is still unclear whether Mailchimp accepted it (candidates: {names}). Nothing was sent again.",
                "check GET /batches; retry the task: it re-attaches to recorded batches and plans only "
                "records without a confirmed result.",
            )
        wait = min(pause, give_up - now)
        if not matching and not uncounted:
            wait = min(wait, absent_from - now)  # nothing to wait for but the server's own timeout
        sleep(max(0.0, wait))
        pause = min(pause * 2, lookup.poll_interval)
