"""MailchimpSyncOperator: what every forward-sync operator shares (audience, e-commerce entities).

The batch lifecycle is :class:`MailchimpBatchLifecycleOperator`'s; the planning and bookkeeping are
the sync engine's (``sync/engine.py``). This class wires the two: connection, table and batch
settings default from the sync config's ``sync:`` section; the run parameters ``full_refresh``,
``dry_run``, ``retry_archived`` and ``retry_failed`` come from the constructor or the DAG run's ``params``; one engine
is built per execution, and before it plans anything the audience its rules write to is audited
(``sync/audit.py``: member changes since the last audit, read into ``mailchimp_member``); the
failure threshold fails the task without retry (failed records are not resent within a run, so a
retry could not help), while lost results (``SyncUnconfirmed``) fail it with retries allowed: a
retry resends just the unconfirmed records. Subclasses say how to load their config and build their
engine.
"""

from __future__ import annotations

from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Iterator

from mailchimp_provider.operators.base import MailchimpBatchLifecycleOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

    from mailchimp_provider.batches.results import OperationResult
    from mailchimp_provider.sync.engine import RunContext, SyncEngine, SyncSettings
    from mailchimp_provider.warehouse.tables import WarehouseTables

__all__ = ["MailchimpSyncOperator", "flag"]


def flag(value: Any) -> bool:
    """A run parameter as a boolean (params from the UI or the CLI may arrive as strings)."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


class MailchimpSyncOperator(MailchimpBatchLifecycleOperator):
    """Base of the forward-sync operators (see the module docstring).

    :param config: the loaded sync config; its connection ids, table prefix/schema and ``sync:``
        batch settings are the defaults of the lifecycle's keyword arguments.
    :param config_path: where the config came from (reloaded at run time, so edits apply).
    :param full_refresh: resend every record; None reads ``params.full_refresh``.
    :param dry_run: plan and record, send nothing; None reads ``params.dry_run``.
    :param retry_archived: re-add members archived in Mailchimp; None reads ``params.retry_archived``
        (default false: they are skipped with reason ``archived_in_mailchimp``).
    """

    def __init__(
        self,
        *,
        config: Any,
        config_path: str | None = None,
        full_refresh: bool | None = None,
        dry_run: bool | None = None,
        retry_archived: bool | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("mailchimp_conn_id", config.mailchimp_conn_id)
        kwargs.setdefault("warehouse_conn_id", config.warehouse_conn_id)
        kwargs.setdefault("table_prefix", config.table_prefix)
        kwargs.setdefault("table_schema", config.table_schema)
        kwargs.setdefault("max_operations_per_batch", config.sync.max_operations_per_batch)
        kwargs.setdefault("poll_interval", config.sync.poll_interval)
        kwargs.setdefault("stall_timeout", config.sync.stall_timeout)
        # Rounds are bounded by the engine's passes (a few passes of batches each); the base
        # class's guard only has to catch a planner that never ends (100k records at 5,000
        # operations per batch are 20+ rounds).
        kwargs.setdefault("max_rounds", 100_000)
        super().__init__(**kwargs)
        self.config_path = str(config_path) if config_path else None
        self.full_refresh = full_refresh
        self.dry_run = dry_run
        self.retry_archived = retry_archived

    # -- what a subclass provides ------------------------------------------------------------------
    def load_config(self) -> Any:
        """The sync config, reloaded from ``config_path`` at run time."""
        raise NotImplementedError

    def build_engine(
        self, context: "Context", config: Any, db: Any, tables: "WarehouseTables", run: "RunContext",
        settings: "SyncSettings",
    ) -> "SyncEngine":
        """The engine with this operator's rules."""
        raise NotImplementedError

    # -- shared wiring ---------------------------------------------------------------------------------
    def param(self, context: "Context", name: str, explicit: Any, default: Any) -> Any:
        """A run parameter: the constructor's value wins over the DAG run's ``params``."""
        if explicit is not None:
            return explicit
        return (context.get("params") or {}).get(name, default)

    def run_context(self, context: "Context") -> "RunContext":
        from mailchimp_provider.sync.engine import RunContext

        ti = context["ti"]
        map_index = getattr(ti, "map_index", -1)
        return RunContext(
            run_id=str(ti.run_id),
            dag_id=str(ti.dag_id),
            task_id=str(ti.task_id),
            map_index=-1 if map_index is None else int(map_index),
            full_refresh=flag(self.param(context, "full_refresh", self.full_refresh, False)),
            dry_run=flag(self.param(context, "dry_run", self.dry_run, False)),
            retry_archived=flag(self.param(context, "retry_archived", self.retry_archived, False)),
            retry_failed=flag(self.param(context, "retry_failed", None, False)),
            # the mass-delete guard of both syncs (sync/deletions.py) reads it
            data={"allow_mass_delete": flag(self.param(context, "allow_mass_delete", None, False))},
        )

    def sync_engine(self, context: "Context") -> "SyncEngine":
        """The engine of this execution (built once per context: a deferral resumes with a new one)."""
        cached = getattr(self, "_engine_cache", None)
        if cached is not None and cached[0] is context:
            return cached[1]
        from mailchimp_provider.sync.engine import SyncSettings
        from mailchimp_provider.warehouse.connection import get_engine
        from mailchimp_provider.warehouse.tables import WarehouseTables

        config = self.load_config()
        run = self.run_context(context)
        tuning = config.sync
        settings = SyncSettings(
            max_operations_per_batch=self.max_operations_per_batch,
            chunk_size=tuning.chunk_size,
            max_attempts=tuning.max_attempts,
            max_failure_share=tuning.max_failure_share,
            min_failures_to_fail=tuning.min_failures_to_fail,
        )
        engine = self.build_engine(
            context,
            config,
            get_engine(self.warehouse_conn_id or config.warehouse_conn_id),
            WarehouseTables(self.table_prefix, self.table_schema),
            run,
            settings,
        )
        if run.full_refresh or run.dry_run or run.retry_archived or run.retry_failed:
            self.log.info("Run parameters: full_refresh=%s dry_run=%s retry_archived=%s retry_failed=%s",
                          run.full_refresh, run.dry_run, run.retry_archived, run.retry_failed)
        run.data["sent_since"] = self.first_submission(context)
        self.audit(engine, timedelta(hours=tuning.audit_full_walk_hours))
        self._engine_cache = (context, engine)
        return engine

    def first_submission(self, context: "Context") -> Any:
        """When this task instance first submitted a batch (earlier tries included), or None:
        Mailchimp-side facts read after it may be this run's own writes (see ``RunContext.replanning``)."""
        from mailchimp_provider.batches.ledger import BatchScope

        times = [e.submitted_at for e in self.ledger_for(context).entries(BatchScope.from_context(context))
                 if e.submitted_at is not None]
        return min(times) if times else None

    def audit(self, engine: "SyncEngine", full_walk_after: timedelta) -> None:
        """Before planning, read who left the audience the rules write to, or every changed member
        when the last full walk is ``full_walk_after`` old (``sync/audit.py``). Once per execution;
        a read error fails the task before anything is sent."""
        from mailchimp_provider.sync.audit import audit_members

        list_id = engine.rules.audited_list(self.hook)
        if list_id:
            report = audit_members(self.hook, engine.db, engine.tables, list_id, full_walk_after=full_walk_after,
                                   read_back=engine.has_unconfirmed())
            self.log.info("%s", report.describe())

    # -- entry points: safety inputs first, and fatal when unreadable -----------------------------------
    def execute(self, context: "Context") -> Any:
        """Read the safety inputs (erasure requests, consent, pulled-back statuses) before anything
        else, so an unreadable one fails the task before any write (see ``_fail_on_safety_input``)."""
        with _fail_on_safety_input():
            engine = self.sync_engine(context)
            engine.prepare()
            engine.start_try()  # a resumed deferral goes through execute_complete and keeps counting
            return super().execute(context)

    def execute_complete(self, context: "Context", event: dict[str, Any] | None = None, rounds: int = 0) -> Any:
        with _fail_on_safety_input():
            return super().execute_complete(context, event, rounds)

    # -- the lifecycle's hooks ---------------------------------------------------------------------
    def next_operations(self, context: "Context") -> tuple[str, list[dict[str, Any]]] | None:
        engine = self.sync_engine(context)
        operations = engine.next_operations()
        return None if operations is None else (engine.entity, operations)

    def next_operations_early(self, context: "Context") -> tuple[str, list[dict[str, Any]]] | None:
        """The next chunk of the current planning pass, submitted before the open batch is applied."""
        engine = self.sync_engine(context)
        operations = engine.next_operations_early()
        return None if operations is None else (engine.entity, operations)

    def on_batches_submitted(self, context: "Context", entity: str, batch_ids: list[str]) -> None:
        """While Mailchimp works on the batch, plan the next one; when deferring, write down what
        is in flight instead (the process ends at the wait: see ``SyncEngine.hold_in_flight``)."""
        super().on_batches_submitted(context, entity, batch_ids)
        if not self.deferrable:
            self.sync_engine(context).prefetch()
        else:
            self.sync_engine(context).hold_in_flight(batch_ids)

    def apply_results(
        self, context: "Context", entity: str, batch_id: str, results: Iterator["OperationResult"]
    ) -> None:
        counts = self.sync_engine(context).apply_results(batch_id, results)
        self.log.info("Batch %s: %s", batch_id, ", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "no results")

    def on_batch_failed(self, context: "Context", entity: str | None, batch_id: str, error: str) -> None:
        self.log.warning("Batch %s abandoned (%s); its records had no confirmed outcome and are planned again.",
                         batch_id, error)
        self.sync_engine(context).note_abandoned(batch_id, error)

    def finish(self, context: "Context") -> dict[str, dict[str, int]]:
        """Log the summary table, fail (without retry) past the failure threshold, return the counts."""
        from airflow.sdk.exceptions import AirflowFailException

        from mailchimp_provider.batches.ledger import ABANDONED, BatchScope
        from mailchimp_provider.sync.engine import SyncThresholdExceeded

        engine = self.sync_engine(context)
        for entry in self.ledger_for(context).entries(BatchScope.from_context(context), engine.entity):
            if entry.status == ABANDONED:  # earlier executions' too (a deferral resumes with a new engine)
                engine.remember_abandoned(entry.batch_id, entry.error)
        try:
            summary = engine.finish(self.log)
        except SyncThresholdExceeded as exc:
            raise AirflowFailException(str(exc)) from exc
        return summary.as_dict()


@contextmanager
def _fail_on_safety_input() -> Iterator[None]:
    """An unreadable safety input fails the task without retry: a missing column or permission does
    not fix itself, and a retry would only repeat the same error minutes later."""
    from airflow.sdk.exceptions import AirflowFailException

    from mailchimp_provider.errors import MailchimpSafetyInputError

    try:
        yield
    except MailchimpSafetyInputError as exc:
        raise AirflowFailException(str(exc)) from exc
