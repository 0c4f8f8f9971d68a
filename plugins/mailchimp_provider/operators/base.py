"""MailchimpBatchLifecycleOperator: the reusable driver behind every operator that sends batches.

A subclass says *what* to send and *what to record*; the driver owns the lifecycle::

    execute ─┬─ re-attach: for each open batch of this task instance in the ledger
             │     finished → apply_results + mark applied
             │     expired  → mark abandoned, on_batch_failed (its records get re-planned)
             │     running  → wait (defer to MailchimpBatchTrigger, or poll synchronously)
             └─ loop: next_operations → submit (ledger row per batch) → wait → apply → ...
                until next_operations returns None, then finish() → XCom

Retry safety comes from the ordering: a batch's ledger row is committed before anyone waits for
it, results are applied (and committed by the subclass) before the batch is marked applied, and
``next_operations`` is only asked again once every open batch is settled, so it plans from
confirmed bookkeeping. A retried or cleared task therefore re-attaches to what it already sent
instead of sending it twice.

Pipelining (synchronous waits only): while batches are open, ``next_operations_early`` may hand
over operations that do not depend on their results (the next chunk of the same planning pass);
they are submitted at once, up to ``max_open_batches`` batches in flight, so Mailchimp works on
one batch while this task applies the previous one. The ledger holds every open batch, so a
retried task re-attaches to all of them exactly as before. Deferrable operators wait for all.

Subclass contract:

* ``next_operations(context) -> (entity, operations) | None`` — what to send now; called again
  after each round's results are applied (so phases and rounds are natural); None when done.
* ``apply_results(context, entity, batch_id, results)`` — consume the ``OperationResult``
  iterator and commit the bookkeeping before returning.
* ``finish(context)`` — the summary; its return value becomes the task's XCom.
* optionally ``on_batch_failed(context, entity, batch_id, error)`` — a batch was abandoned.
* optionally ``next_operations_early(context)`` — like ``next_operations`` but asked while
  batches are still open; None (the default) means "wait for them first".
"""

from __future__ import annotations

import time
from functools import cached_property
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from airflow.sdk import BaseOperator, conf
from airflow.sdk.exceptions import AirflowException

from mailchimp_provider.batches.progress import split_hint
from mailchimp_provider.errors import MailchimpBatchError, MailchimpBatchExpiredError, MailchimpBatchStalledError
from mailchimp_provider.links import XCOM_BATCH_IDS, MailchimpBatchLink

if TYPE_CHECKING:
    from airflow.sdk import Context

    from mailchimp_provider.batches.ledger import BatchLedger, BatchScope, LedgerEntry
    from mailchimp_provider.batches.results import OperationResult
    from mailchimp_provider.batches.runner import BatchRunner
    from mailchimp_provider.hooks.mailchimp import MailchimpHook

__all__ = ["MailchimpBatchLifecycleOperator"]

FINISHED = "finished"
ROUNDS_KEY = "mailchimp_rounds"


class MailchimpBatchLifecycleOperator(BaseOperator):
    """Base class for operators that send Mailchimp batch operations (see the module docstring).

    :param mailchimp_conn_id: Airflow connection of type ``mailchimp``.
    :param warehouse_conn_id: connection of the warehouse holding the batch ledger
        (``<table_prefix>batch``); None keeps the ledger in Airflow's task_state_store only.
    :param table_prefix: prefix of the warehouse tables.
    :param table_schema: schema of the warehouse tables (None: the default schema).
    :param deferrable: wait in the triggerer (frees the worker slot) instead of polling here.
    :param poll_interval: first delay between status polls, seconds (grows gently).
    :param stall_timeout: fail when no batch has moved for this many seconds (default 30 min).
    :param max_operations_per_batch: chunk size; larger lists become several batches.
    :param max_wait: optional bound on one wait, seconds; the batch is not abandoned when hit.
    :param max_rounds: most ``next_operations`` rounds per execution: a guard against a subclass
        that never returns None.
    :param abandon_stalled: on a stall, abandon the stalled batches and re-plan their records
        (sent again, idempotently) instead of failing the task with the batches kept open.
    :param max_open_batches: most batches in flight when the subclass offers operations early
        (synchronous waits only; see the module docstring).
    """

    operator_extra_links = (MailchimpBatchLink(),)
    ui_color = "#ffe01b"

    def __init__(
        self,
        *,
        mailchimp_conn_id: str = "mailchimp_default",
        warehouse_conn_id: str | None = "warehouse_default",
        table_prefix: str = "mailchimp_",
        table_schema: str | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = 10.0,
        stall_timeout: float = 1800.0,
        max_operations_per_batch: int = 5000,
        max_wait: float | None = None,
        max_rounds: int = 20,
        abandon_stalled: bool = False,
        max_open_batches: int = 2,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if poll_interval <= 0:
            raise ValueError(f"{self.task_id}: poll_interval must be > 0 seconds, got {poll_interval}")
        if stall_timeout <= 0:
            raise ValueError(f"{self.task_id}: stall_timeout must be > 0 seconds, got {stall_timeout}")
        if max_operations_per_batch < 1:
            raise ValueError(f"{self.task_id}: max_operations_per_batch must be >= 1, got {max_operations_per_batch}")
        if max_rounds < 1:
            raise ValueError(f"{self.task_id}: max_rounds must be >= 1, got {max_rounds}")
        if max_open_batches < 1:
            raise ValueError(f"{self.task_id}: max_open_batches must be >= 1, got {max_open_batches}")
        self.mailchimp_conn_id = mailchimp_conn_id
        self.warehouse_conn_id = warehouse_conn_id
        self.table_prefix = table_prefix
        self.table_schema = table_schema
        self.deferrable = deferrable
        self.poll_interval = float(poll_interval)
        self.stall_timeout = float(stall_timeout)
        self.max_operations_per_batch = int(max_operations_per_batch)
        self.max_wait = max_wait
        self.max_rounds = int(max_rounds)
        self.abandon_stalled = abandon_stalled
        self.max_open_batches = int(max_open_batches)

    # -- subclass contract -------------------------------------------------------------------------
    def next_operations(self, context: "Context") -> tuple[str, list[dict[str, Any]]] | None:
        """The entity and the operations to send now, or None when nothing is left."""
        raise NotImplementedError(f"{type(self).__name__} must implement next_operations()")

    def apply_results(
        self, context: "Context", entity: str, batch_id: str, results: Iterator["OperationResult"]
    ) -> None:
        """Record the outcome of a finished batch; must commit before returning."""
        raise NotImplementedError(f"{type(self).__name__} must implement apply_results()")

    def finish(self, context: "Context") -> Any:
        """The task's result (pushed to XCom) once ``next_operations`` returned None."""
        raise NotImplementedError(f"{type(self).__name__} must implement finish()")

    def on_batch_failed(self, context: "Context", entity: str | None, batch_id: str, error: str) -> None:
        """A batch was abandoned (results expired, or stalled and given up). Default: nothing."""

    def on_batches_submitted(self, context: "Context", entity: str, batch_ids: list[str]) -> None:
        """Called right after the ledger rows of a round are committed, before waiting. Default: nothing."""

    def next_operations_early(self, context: "Context") -> tuple[str, list[dict[str, Any]]] | None:
        """Operations that may go out while earlier batches are still open (their results not yet
        applied), or None to wait for those first. Default: None (no pipelining)."""
        return None

    # -- collaborators -----------------------------------------------------------------------------
    @cached_property
    def hook(self) -> "MailchimpHook":
        from mailchimp_provider.hooks.mailchimp import MailchimpHook

        return MailchimpHook(mailchimp_conn_id=self.mailchimp_conn_id)

    def get_ledger(self, context: "Context") -> "BatchLedger":
        """The warehouse ledger (with the task_state_store mirror), or the task_state_store alone."""
        from mailchimp_provider.batches.ledger import BatchLedger

        state_store = context.get("task_state_store")
        if self.warehouse_conn_id is None:
            if state_store is None:
                raise AirflowException(
                    f"{self.task_id}: warehouse_conn_id=None keeps the batch ledger in Airflow's task_state_store, "
                    "which this Airflow does not provide (it needs Airflow >= 3.3). Set warehouse_conn_id."
                )
            return BatchLedger(None, None, state_store=state_store)
        from mailchimp_provider.warehouse.connection import get_engine
        from mailchimp_provider.warehouse.tables import WarehouseTables

        engine = get_engine(self.warehouse_conn_id)
        return BatchLedger(engine, WarehouseTables(self.table_prefix, self.table_schema), state_store=state_store)

    def ledger_for(self, context: "Context") -> "BatchLedger":
        """``get_ledger(context)``, built once per task execution (keyed on the context object)."""
        cached = getattr(self, "_ledger_cache", None)
        if cached is None or cached[0] is not context:
            cached = (context, self.get_ledger(context))
            self._ledger_cache = cached
        return cached[1]

    def get_runner(self, context: "Context") -> "BatchRunner":
        from mailchimp_provider.batches.runner import BatchRunner

        return BatchRunner(
            self.hook,
            self.ledger_for(context),
            max_operations_per_batch=self.max_operations_per_batch,
            poll_interval=self.poll_interval,
            stall_timeout=self.stall_timeout,
            max_wait=self.max_wait,
        )

    # -- entry points --------------------------------------------------------------------------------
    def execute(self, context: "Context") -> Any:
        from mailchimp_provider.batches.ledger import BatchScope

        runner = self.get_runner(context)
        scope = BatchScope.from_context(context)
        earlier = runner.open_batches(scope)
        if earlier:
            self.log.warning(
                "Re-attaching to %d batch(es) submitted by an earlier try of %s and not yet applied: %s. "
                "They are not resubmitted; their results are applied first, then the remaining work is planned.",
                len(earlier),
                scope,
                ", ".join(f"{e.batch_id} ({e.entity} chunk {e.chunk_no}, {e.status})" for e in earlier),
            )
        return self._drive(context, runner, scope, rounds=0)

    def execute_complete(self, context: "Context", event: dict[str, Any] | None = None, rounds: int = 0) -> Any:
        """Resume after the trigger fired: settle the ledger's open batches, then keep looping.

        The event is informative only; the ledger and fresh ``GET /batches/{id}`` calls decide what
        is applied, so a stale or duplicated event cannot cause double bookkeeping.
        """
        from mailchimp_provider.batches.ledger import BatchScope

        event = event or {}
        rounds = max(rounds, self._rounds_so_far(context))
        status = event.get("status")
        message = str(event.get("message") or "")
        runner = self.get_runner(context)
        scope = BatchScope.from_context(context)
        self.log.info("Batch trigger reported %r: %s", status, message)
        if status in ("stalled", "error"):
            waiting = self._settle(context, runner, runner.open_batches(scope))
            if waiting:
                ids = [e.batch_id for e in waiting]
                if status == "stalled":
                    if not self.abandon_stalled:
                        raise MailchimpBatchStalledError(ids[0], *split_hint(message))
                    self._give_up(context, runner, waiting, message)
                else:
                    raise MailchimpBatchError(ids[0], *split_hint(message))
        return self._drive(context, runner, scope, rounds=rounds)

    # -- the loop ----------------------------------------------------------------------------------
    def _drive(self, context: "Context", runner: "BatchRunner", scope: "BatchScope", *, rounds: int) -> Any:
        while True:
            waiting = self._settle(context, runner, runner.open_batches(scope))
            planned = None
            if waiting:
                if not self.deferrable and len(waiting) < self.max_open_batches:
                    planned = self.next_operations_early(context)
                if planned is None:
                    self._wait(context, runner, waiting, rounds)
                    continue
            else:
                planned = self.next_operations(context)
            if planned is None:
                self._publish_batch_ids(context, runner, scope)
                return self.finish(context)
            if rounds >= self.max_rounds:
                raise AirflowException(
                    f"{self.task_id}: next_operations() still returned work after {rounds} rounds (max_rounds="
                    f"{self.max_rounds}). Everything sent so far is applied and recorded; raise max_rounds if this "
                    f"much work is expected, otherwise {type(self).__name__}.next_operations() never returns None."
                )
            entity, operations = planned
            rounds += 1
            self._remember_rounds(context, rounds)
            if not operations:
                self.log.info("Round %d: nothing to send for %s.", rounds, entity)
                continue
            batch_ids = runner.submit(scope, entity, operations)
            self.log.info("Round %d: submitted %d operation(s) for %s as batch(es) %s.",
                          rounds, len(operations), entity, ", ".join(batch_ids))
            self._publish_batch_ids(context, runner, scope)
            self.on_batches_submitted(context, entity, batch_ids)

    def _settle(
        self, context: "Context", runner: "BatchRunner", entries: Sequence["LedgerEntry"]
    ) -> list["LedgerEntry"]:
        """Apply finished batches, abandon expired ones; return those still running."""
        waiting: list["LedgerEntry"] = []
        for entry in entries:
            try:
                batch = runner.refresh(entry.batch_id)
            except MailchimpBatchExpiredError as exc:
                self._abandon(context, runner, entry, str(exc))
                continue
            if batch.get("status") == FINISHED:
                self._apply(context, runner, entry)
            else:
                waiting.append(entry)
        return waiting

    def _apply(self, context: "Context", runner: "BatchRunner", entry: "LedgerEntry") -> None:
        try:
            self.apply_results(context, entry.entity or "", entry.batch_id, runner.results(entry.batch_id))
        except MailchimpBatchExpiredError as exc:
            self._abandon(context, runner, entry, str(exc))
            return
        runner.mark_applied(entry.batch_id)
        self.log.info("Applied the results of batch %s (%s chunk %s).", entry.batch_id, entry.entity, entry.chunk_no)

    def _abandon(self, context: "Context", runner: "BatchRunner", entry: "LedgerEntry", error: str) -> None:
        runner.mark_abandoned(entry.batch_id, error)
        self.log.warning(
            "Abandoned batch %s (%s chunk %s, %s operations): %s Its records have no confirmed outcome and "
            "will be re-planned: they are sent again (idempotent).",
            entry.batch_id, entry.entity, entry.chunk_no, entry.operation_count, error,
        )
        self.on_batch_failed(context, entry.entity, entry.batch_id, error)

    def _give_up(
        self, context: "Context", runner: "BatchRunner", entries: Sequence["LedgerEntry"], message: str
    ) -> None:
        for entry in entries:
            self._abandon(context, runner, entry, f"stalled and given up (abandon_stalled=True). {message}")

    def _wait(self, context: "Context", runner: "BatchRunner", waiting: Sequence["LedgerEntry"], rounds: int) -> None:
        batch_ids = [e.batch_id for e in waiting]
        if self.deferrable:
            from mailchimp_provider.triggers.batch import MailchimpBatchTrigger

            self.log.info("Deferring until batch(es) %s finish (the worker slot is released).",
                          ", ".join(batch_ids))
            self.defer(
                trigger=MailchimpBatchTrigger(
                    batch_ids=batch_ids,
                    mailchimp_conn_id=self.mailchimp_conn_id,
                    poll_interval=self.poll_interval,
                    stall_timeout=self.stall_timeout,
                    max_wait=self.max_wait,
                    wait_started_at=time.time(),
                ),
                method_name="execute_complete",
                kwargs={"rounds": rounds},
            )
        try:
            # Return as soon as one batch is done: it is applied while the others keep running.
            runner.wait(batch_ids, any_finished=True)
        except MailchimpBatchExpiredError:
            return  # the next _settle abandons it and applies the others
        except MailchimpBatchStalledError as exc:
            if not self.abandon_stalled:
                raise
            still = self._settle(context, runner, waiting)
            self._give_up(context, runner, still, str(exc))

    def _rounds_so_far(self, context: "Context") -> int:
        """Rounds of this try recorded before a deferral (the task_state_store survives resumes even
        where the resume kwargs do not, e.g. under ``dag.test()``)."""
        store = context.get("task_state_store")
        if store is None:
            return 0
        saved = store.get(ROUNDS_KEY) or {}
        try_number = getattr(context["ti"], "try_number", None)
        return int(saved.get("rounds", 0)) if isinstance(saved, dict) and saved.get("try") == try_number else 0

    def _remember_rounds(self, context: "Context", rounds: int) -> None:
        store = context.get("task_state_store")
        if store is not None:
            store.set(ROUNDS_KEY, {"try": getattr(context["ti"], "try_number", None), "rounds": rounds})

    def _publish_batch_ids(self, context: "Context", runner: "BatchRunner", scope: "BatchScope") -> None:
        """Every batch id of this task instance, for the extra link and for people reading XCom."""
        from mailchimp_provider.batches.ledger import NOT_SENT, SUBMITTING

        batch_ids = [e.batch_id for e in runner.ledger.entries(scope) if e.status not in (SUBMITTING, NOT_SENT)]
        if batch_ids:
            context["ti"].xcom_push(key=XCOM_BATCH_IDS, value=batch_ids)
