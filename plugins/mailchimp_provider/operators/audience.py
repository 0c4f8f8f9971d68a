"""MailchimpAudienceSyncOperator: warehouse customers -> audience members, through batches.

The batch lifecycle (submit, wait or defer, re-attach on retry, stall and expiry handling) is the
base class's; this operator only wires the sync engine (``sync/engine.py``) with the audience rules
(``sync/audience.py``) into its three hooks. Everything it plans comes from the warehouse, so a
deferral, a killed worker or a retry from the UI simply plans again and finds less to do.

Run parameters (``params`` of the DAG run, or the constructor arguments, which win):
``full_refresh`` resends every record; ``dry_run`` records the plan in ``mailchimp_sync_result``
(``outcome='planned'``) and sends nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from mailchimp_provider.operators.base import MailchimpBatchLifecycleOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

    from mailchimp_provider.batches.results import OperationResult
    from mailchimp_provider.config import AudienceSyncConfig
    from mailchimp_provider.sync.engine import SyncEngine

__all__ = ["MailchimpAudienceSyncOperator"]


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


class MailchimpAudienceSyncOperator(MailchimpBatchLifecycleOperator):
    """Sync the customers of the warehouse into one Mailchimp audience (see the module docstring).

    :param list_id: the audience id (templated: usually the XCom of the task that ensured the
        audience); None resolves it from the config (id, or name) at run time.
    :param config_path: the audience sync config (default ``include/audience_sync.yaml``).
    :param full_refresh: resend every record; None reads ``params.full_refresh``.
    :param dry_run: plan and record, send nothing; None reads ``params.dry_run``.
    Other keyword arguments go to :class:`MailchimpBatchLifecycleOperator` (``deferrable``,
    ``poll_interval``, ``stall_timeout``...); unset ones come from the config's ``sync:`` section.
    """

    template_fields: Sequence[str] = ("list_id", "config_path")

    def __init__(
        self,
        *,
        list_id: str | None = None,
        config_path: str | None = None,
        full_refresh: bool | None = None,
        dry_run: bool | None = None,
        **kwargs: Any,
    ) -> None:
        from mailchimp_provider.config import load_audience_config

        config = load_audience_config(config_path)
        kwargs.setdefault("mailchimp_conn_id", config.mailchimp_conn_id)
        kwargs.setdefault("warehouse_conn_id", config.warehouse_conn_id)
        kwargs.setdefault("table_prefix", config.table_prefix)
        kwargs.setdefault("table_schema", config.table_schema)
        kwargs.setdefault("max_operations_per_batch", config.sync.max_operations_per_batch)
        kwargs.setdefault("poll_interval", config.sync.poll_interval)
        kwargs.setdefault("stall_timeout", config.sync.stall_timeout)
        # Rounds are bounded by the engine's passes (3 x batches per pass); the base class's guard
        # only has to catch a planner that never ends.
        kwargs.setdefault("max_rounds", 100_000)
        super().__init__(**kwargs)
        self.list_id = list_id
        self.config_path = str(config_path) if config_path else None
        self.full_refresh = full_refresh
        self.dry_run = dry_run

    # -- the engine, once per execution ----------------------------------------------------------
    def _config(self) -> "AudienceSyncConfig":
        from mailchimp_provider.config import load_audience_config

        return load_audience_config(Path(self.config_path) if self.config_path else None)

    def sync_engine(self, context: "Context") -> "SyncEngine":
        cached = getattr(self, "_engine_cache", None)
        if cached is not None and cached[0] is context:
            return cached[1]
        from mailchimp_provider.sync.audience import AudienceRules, ensure_audience
        from mailchimp_provider.sync.engine import RunContext, SyncEngine, SyncSettings
        from mailchimp_provider.warehouse.connection import get_engine
        from mailchimp_provider.warehouse.tables import WarehouseTables

        config = self._config()
        list_id = self.list_id or ensure_audience(self.hook, config, source=self.config_path or "audience config").list_id
        params = context.get("params") or {}
        ti = context["ti"]
        map_index = getattr(ti, "map_index", -1)
        run = RunContext(
            run_id=str(ti.run_id),
            dag_id=str(ti.dag_id),
            task_id=str(ti.task_id),
            map_index=-1 if map_index is None else int(map_index),
            full_refresh=_flag(self.full_refresh if self.full_refresh is not None else params.get("full_refresh", False)),
            dry_run=_flag(self.dry_run if self.dry_run is not None else params.get("dry_run", False)),
        )
        tuning = config.sync
        settings = SyncSettings(
            max_operations_per_batch=self.max_operations_per_batch,
            chunk_size=tuning.chunk_size,
            max_attempts=tuning.max_attempts,
            max_failure_share=tuning.max_failure_share,
            min_failures_to_fail=tuning.min_failures_to_fail,
        )
        engine = SyncEngine(
            get_engine(self.warehouse_conn_id or config.warehouse_conn_id),
            WarehouseTables(self.table_prefix, self.table_schema),
            AudienceRules(config=config, list_id=list_id),
            run,
            settings,
        )
        if run.full_refresh or run.dry_run:
            self.log.info("Run parameters: full_refresh=%s dry_run=%s", run.full_refresh, run.dry_run)
        self._engine_cache = (context, engine)
        return engine

    # -- the lifecycle's hooks -----------------------------------------------------------------------
    def next_operations(self, context: "Context") -> tuple[str, list[dict[str, Any]]] | None:
        engine = self.sync_engine(context)
        operations = engine.next_operations()
        return None if operations is None else (engine.entity, operations)

    def apply_results(
        self, context: "Context", entity: str, batch_id: str, results: Iterator["OperationResult"]
    ) -> None:
        counts = self.sync_engine(context).apply_results(batch_id, results)
        self.log.info("Batch %s: %s", batch_id, ", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "no results")

    def on_batches_submitted(self, context: "Context", entity: str, batch_ids: list[str]) -> None:
        """While Mailchimp works on the batch, plan the next one (not when deferring: the plan
        would be lost with the process)."""
        super().on_batches_submitted(context, entity, batch_ids)
        if not self.deferrable:
            self.sync_engine(context).prefetch()

    def on_batch_failed(self, context: "Context", entity: str | None, batch_id: str, error: str) -> None:
        self.log.warning("Batch %s abandoned (%s); its records had no confirmed outcome and are planned again.",
                         batch_id, error)

    def finish(self, context: "Context") -> dict[str, dict[str, int]]:
        """Log the summary table, fail (without retry) past the failure threshold, return the counts."""
        from airflow.sdk.exceptions import AirflowFailException

        from mailchimp_provider.sync.engine import SyncThresholdExceeded

        engine = self.sync_engine(context)
        try:
            summary = engine.finish(self.log)
        except SyncThresholdExceeded as exc:
            # Retrying cannot help (failed records are not resent within a run): fail for good.
            raise AirflowFailException(str(exc)) from exc
        return summary.as_dict()
