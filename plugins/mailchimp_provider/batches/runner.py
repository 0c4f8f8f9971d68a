"""BatchRunner: submit operations as batches, wait for them, read their results, close them.

It glues the hook (HTTP), the ledger (durable record) and ``BatchProgress`` (when to stop
waiting) so operators only decide *what* to send and *what to do with the outcome*. The ordering
rules that make retries safe live here:

1. a batch's ledger row is committed right after ``POST /batches`` answers, before the next chunk
   is sent and before anyone waits; a POST whose answer was lost is not simply sent again: the hook
   looks the batch up first (``hooks.batch_lookup``) and the ledger records the one Mailchimp has;
   an intent row is committed before each POST, so a try that died between the POST and its
   ledger row leaves a trace: the next try looks that batch up and adopts it (``open_batches``);
2. results are always read through a fresh ``GET /batches/{id}``, because the archive URL is
   presigned and expires within minutes;
3. a batch is marked applied only by the caller, after its own bookkeeping is committed.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

from datetime import timedelta

from mailchimp_provider.batches.ledger import BatchLedger, BatchScope, LedgerEntry
from mailchimp_provider.batches.progress import BatchProgress, Outcome, split_hint
from mailchimp_provider.batches.results import OperationResult, iter_results
from mailchimp_provider.errors import (
    MailchimpBatchError,
    MailchimpBatchExpiredError,
    MailchimpBatchStalledError,
    MailchimpError,
    MailchimpRetriableError,
)

if TYPE_CHECKING:
    from mailchimp_provider.hooks.mailchimp import MailchimpHook, ValidatedOperations

__all__ = ["BatchRunner", "validate_operations"]

log = logging.getLogger(__name__)

OPERATION_KEYS = frozenset({"method", "path", "operation_id", "body", "params"})
DEFAULT_MAX_OPERATIONS_PER_BATCH = 5000


def validate_operations(operations: Sequence[Any]) -> "ValidatedOperations":
    """Check and normalise batch operations before anything is sent; errors name the operation.

    On top of the hook's shape checks (method, path, params, ``body`` serialised to the JSON string
    Mailchimp requires), operation ids must be unique, because results are matched back to records
    by them, and unknown keys are refused instead of being dropped silently.
    """
    seen: dict[str, int] = {}
    for index, op in enumerate(operations):
        if not isinstance(op, Mapping):
            continue  # the hook's validation names the bad operation
        label = f"Batch operation #{index}"
        unknown = set(op) - OPERATION_KEYS
        if unknown:
            raise ValueError(
                f"{label}: unknown field(s) {sorted(unknown)}; Mailchimp accepts {sorted(OPERATION_KEYS)}"
            )
        op_id = op.get("operation_id")
        if op_id is None:
            continue
        if not isinstance(op_id, str) or not op_id:
            raise ValueError(f"{label}: field 'operation_id' must be a non-empty string, got {op_id!r}")
        if op_id in seen:
            raise ValueError(
                f"{label} (operation_id {op_id!r}) duplicates operation #{seen[op_id]}: operation ids must be "
                "unique per batch so that each result can be matched to its record"
            )
        seen[op_id] = index
    # Imported here: the hook pulls in requests/aiohttp, too heavy for DAG parsing of operator modules.
    from mailchimp_provider.hooks.mailchimp import validate_operations as hook_validate_operations

    return hook_validate_operations(operations)


class BatchRunner:
    """Batch lifecycle for one hook and one ledger. See the module docstring for the guarantees."""

    def __init__(
        self,
        hook: "MailchimpHook",
        ledger: BatchLedger,
        *,
        max_operations_per_batch: int = DEFAULT_MAX_OPERATIONS_PER_BATCH,
        poll_interval: float = 10.0,
        stall_timeout: float = 1800.0,
        max_wait: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_operations_per_batch < 1:
            raise ValueError(f"max_operations_per_batch must be >= 1, got {max_operations_per_batch}")
        self.hook = hook
        self.ledger = ledger
        self.max_operations_per_batch = int(max_operations_per_batch)
        self.poll_interval = float(poll_interval)
        self.stall_timeout = float(stall_timeout)
        self.max_wait = max_wait
        self._clock = clock
        self._sleep = sleep

    # -- ledger views -----------------------------------------------------------------------------
    def open_batches(self, scope: BatchScope, entity: str | None = None) -> list[LedgerEntry]:
        """Batches of ``scope`` submitted earlier whose results are not applied yet; an intent left
        by a try that died during its POST is first resolved (adopted, or closed as not sent)."""
        entries = self.ledger.open_batches(scope, entity)
        if not any(e.is_intent for e in entries):
            return entries
        resolved = [self.resolve_intent(scope, e) if e.is_intent else e for e in entries]
        return [e for e in resolved if e is not None]

    def resolve_intent(self, scope: BatchScope, intent: LedgerEntry) -> LedgerEntry | None:
        """Find the batch a dead try sent for ``intent`` and record it in the intent's place (its
        operations are then applied, not sent again), or close the intent when Mailchimp certainly
        has no such batch (its records are planned again). Returns the batch's entry, or None."""
        from mailchimp_provider.hooks.batch_lookup import BatchLookup, find_intent_batch

        lookup = getattr(self.hook, "batch_lookup", None) or BatchLookup()
        sent = intent.submitted_at
        assert sent is not None and intent.intent_digest is not None
        margin = timedelta(seconds=lookup.clock_skew + 1)
        known = self.ledger.recorded_between(sent - margin, sent + timedelta(seconds=lookup.server_timeout) + margin)
        known |= set(getattr(self.hook, "known_batch_ids", ()))
        log.warning("An earlier try died while sending chunk %s of %s (%s operations, intent %s): looking for "
                    "its batch in Mailchimp before anything is sent again.",
                    intent.chunk_no, intent.entity, intent.operation_count, intent.batch_id)
        batch = find_intent_batch(self.hook, size=int(intent.operation_count or 0), digest=intent.intent_digest,
                                  sent_at=sent.timestamp(), known=known, lookup=lookup)
        if batch is None:
            self.ledger.mark_not_sent(intent, "the try that sent this chunk died during POST /batches, and "
                                              "Mailchimp has no such batch (looked it up): nothing to apply")
            log.warning("Mailchimp never created the batch of intent %s: its records are planned again.", intent.batch_id)
            return None
        entry = self.ledger.record_submission(
            scope, intent.entity or "", int(intent.chunk_no or 0), str(batch["id"]),
            int(intent.operation_count or 0), batch=batch, intent=intent,
        )
        log.warning("Adopted batch %s (%s operations, submitted at %s) for intent %s: it is re-attached, "
                    "not sent again.", batch["id"], batch.get("total_operations"), batch.get("submitted_at"),
                    intent.batch_id)
        return entry

    def mark_applied(self, batch_id: str) -> None:
        """Close a batch once the caller's bookkeeping for its results is committed."""
        self.ledger.mark_applied(batch_id)

    def mark_abandoned(self, batch_id: str, error: str) -> None:
        self.ledger.mark_abandoned(batch_id, error)

    # -- submit -----------------------------------------------------------------------------------
    def submit(self, scope: BatchScope, entity: str, operations: Sequence[dict[str, Any]]) -> list[str]:
        """Send ``operations`` in chunks of ``max_operations_per_batch``; return the batch ids.

        Each chunk's ledger row is committed as soon as Mailchimp accepts it, so a crash between
        chunks leaves exactly the sent chunks on record.
        """
        if not operations:
            return []
        ops = validate_operations(operations)
        chunk_no = self.ledger.next_chunk_no(scope, entity)
        batch_ids: list[str] = []
        for chunk in ops.chunks(self.max_operations_per_batch):  # still validated: the hook does not check them again
            intent = self.ledger.record_intent(scope, entity, chunk_no, chunk)
            try:
                batch = self.hook.submit_batch(chunk)
            except MailchimpBatchError:
                raise  # the hook could not tell whether Mailchimp has it: the next try resolves the intent
            except Exception as exc:  # refused, or looked up and certainly absent: nothing was created
                self.ledger.mark_not_sent(intent, f"POST /batches failed and created no batch: {exc}"[:1000])
                raise
            batch_id = str(batch["id"])
            self.ledger.record_submission(scope, entity, chunk_no, batch_id, len(chunk), batch=batch, intent=intent)
            log.info(
                "Submitted Mailchimp batch %s (%s, chunk %d, %d operations) for %s; recorded in %s. "
                "Inspect it with GET %s/batches/%s.",
                batch_id, entity, chunk_no, len(chunk), scope, self.ledger.describe(),
                getattr(self.hook, "base_url", ""), batch_id,
            )
            batch_ids.append(batch_id)
            chunk_no += 1
        return batch_ids

    # -- observe ----------------------------------------------------------------------------------
    def refresh(self, batch_id: str) -> dict[str, Any]:
        """``GET /batches/{id}``, recorded in the ledger. Raises MailchimpBatchExpiredError on 404."""
        batch = self.hook.get_batch(batch_id)
        self.ledger.update_status(batch)
        return batch

    def wait(self, batch_ids: Sequence[str], *, any_finished: bool = False) -> dict[str, dict[str, Any]]:
        """Block until every batch is finished (or, with ``any_finished``, until one is); return the
        last snapshots.

        Raises MailchimpBatchExpiredError (first expired batch), MailchimpBatchStalledError (no
        progress for ``stall_timeout``) or MailchimpBatchError (``max_wait`` exceeded).
        """
        progress = self.new_progress(batch_ids)
        while True:
            for batch_id in progress.pending():
                try:
                    progress.observe(batch_id, self.refresh(batch_id))
                except MailchimpBatchExpiredError:
                    progress.observe_expired(batch_id)
            verdict = progress.verdict()
            if verdict.outcome is Outcome.FINISHED:
                log.info(verdict.message)
                return verdict.snapshots
            if any_finished and len(progress.pending()) < len(batch_ids) and not verdict.expired:
                log.info("%s The finished batch(es) are applied while the others run.", verdict.message)
                return verdict.snapshots
            if verdict.outcome is Outcome.EXPIRED or verdict.expired:
                raise MailchimpBatchExpiredError(verdict.expired[0], *split_hint(verdict.message))
            if verdict.outcome is Outcome.STALLED:
                raise MailchimpBatchStalledError(verdict.stalled[0], *split_hint(verdict.message))
            if verdict.outcome is Outcome.TIMED_OUT:
                raise MailchimpBatchError(progress.pending()[0], *split_hint(verdict.message))
            delay = progress.next_interval()
            log.info("%s Next check in %.0fs.", verdict.message, delay)
            self._sleep(delay)

    def new_progress(self, batch_ids: Sequence[str], *, waited_before: float = 0.0) -> BatchProgress:
        return BatchProgress(
            batch_ids,
            stall_timeout=self.stall_timeout,
            max_wait=self.max_wait,
            poll_interval=self.poll_interval,
            clock=self._clock,
            waited_before=waited_before,
        )

    # -- results ----------------------------------------------------------------------------------
    def results(self, batch_id: str) -> Iterator[OperationResult]:
        """Stream the results of a finished batch (fresh archive URL; nothing held in memory).

        Raises MailchimpBatchExpiredError when Mailchimp no longer has the batch or its archive.
        """
        batch = self.refresh(batch_id)
        if batch.get("status") != "finished":
            raise MailchimpBatchError(
                batch_id,
                f"results requested while the batch is {batch.get('status')!r}.",
                "wait for the batch to finish before reading its results.",
            )
        url = batch.get("response_body_url") or ""
        if not url:
            raise MailchimpBatchExpiredError(
                batch_id,
                "the batch is finished but Mailchimp gives no results URL (results purged).",
                "clear the task to resubmit; records without a confirmed outcome will be sent again (idempotent).",
            )
        return self._stream(batch_id, url)

    def _stream(self, batch_id: str, url: str) -> Iterator[OperationResult]:
        try:
            stream = self.hook.download(url)
        except MailchimpRetriableError:
            raise
        except MailchimpError as exc:
            # The URL was fresh, so a refused download means the archive itself is gone.
            raise MailchimpBatchExpiredError(
                batch_id,
                f"the results archive could not be downloaded ({exc}).",
                "clear the task to resubmit; records without a confirmed outcome will be sent again (idempotent).",
            ) from exc
        try:
            yield from iter_results(stream)
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
