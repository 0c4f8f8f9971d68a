"""MailchimpEcommerceSyncOperator: one e-commerce entity (customers, products, promo rules, promo
codes or orders) from the warehouse into the Mailchimp store, through batches.

The batch lifecycle (submit, wait or defer, re-attach on retry, stall and expiry handling) is the
base class's; the change detection, bookkeeping and summary are the sync engine's
(``sync/engine.py``); the entity rules (create vs update, healing, dependencies) are in
``sync/ecommerce_plan.py``. One task per entity, chained in dependency order by the DAG, so the
Airflow grid shows where a run stopped and a retry redoes one entity only.

Run parameters (``params`` of the DAG run, or the constructor arguments, which win):
``full_refresh`` resends every record; ``dry_run`` records the plan in ``mailchimp_sync_result``
(``outcome='planned'``) and sends nothing; ``entities`` limits the run to some entities (the
others return at once; the dependency checks still apply).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from mailchimp_provider.operators.base import MailchimpBatchLifecycleOperator
from mailchimp_provider.sync.ecommerce_config import ENTITIES

if TYPE_CHECKING:
    from airflow.sdk import Context

    from mailchimp_provider.batches.results import OperationResult
    from mailchimp_provider.sync.ecommerce_config import EcommerceSyncConfig
    from mailchimp_provider.sync.engine import SyncEngine

__all__ = ["MailchimpEcommerceSyncOperator", "selected_entities"]


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def selected_entities(value: Any) -> tuple[str, ...]:
    """The ``entities`` run parameter as a tuple in dependency order (empty or None means all).

    Accepts a list or a comma-separated string; unknown names are an error naming the valid ones.
    """
    if value in (None, "", [], ()):
        return ENTITIES
    names = [v.strip() for v in value.split(",")] if isinstance(value, str) else [str(v).strip() for v in value]
    aliases = {f"{e}s": e for e in ENTITIES}
    wanted = {aliases.get(n, n) for n in names if n}
    unknown = sorted(wanted - set(ENTITIES))
    if unknown:
        raise ValueError(f"unknown e-commerce entit{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)}; "
                         f"choose from {', '.join(ENTITIES)}")
    return tuple(e for e in ENTITIES if e in wanted)


class MailchimpEcommerceSyncOperator(MailchimpBatchLifecycleOperator):
    """Sync one e-commerce entity into the configured store (see the module docstring).

    :param entity: ``customer``, ``product``, ``promo_rule``, ``promo_code`` or ``order``.
    :param config_path: the e-commerce sync config (default ``include/ecommerce_sync.yaml``).
    :param full_refresh: resend every record; None reads ``params.full_refresh``.
    :param dry_run: plan and record, send nothing; None reads ``params.dry_run``.
    :param entities: the entities this run syncs; None reads ``params.entities`` (empty: all).
    Other keyword arguments go to :class:`MailchimpBatchLifecycleOperator`; unset ones come from
    the config's ``sync:`` section.
    """

    template_fields: Sequence[str] = ("config_path",)

    def __init__(
        self,
        *,
        entity: str,
        config_path: str | None = None,
        full_refresh: bool | None = None,
        dry_run: bool | None = None,
        entities: Sequence[str] | str | None = None,
        **kwargs: Any,
    ) -> None:
        from mailchimp_provider.sync.ecommerce_config import load_ecommerce_config

        if entity not in ENTITIES:
            raise ValueError(f"entity must be one of {', '.join(ENTITIES)}, got {entity!r}")
        config = load_ecommerce_config(config_path)
        kwargs.setdefault("mailchimp_conn_id", config.mailchimp_conn_id)
        kwargs.setdefault("warehouse_conn_id", config.warehouse_conn_id)
        kwargs.setdefault("table_prefix", config.table_prefix)
        kwargs.setdefault("table_schema", config.table_schema)
        kwargs.setdefault("max_operations_per_batch", config.sync.max_operations_per_batch)
        kwargs.setdefault("poll_interval", config.sync.poll_interval)
        kwargs.setdefault("stall_timeout", config.sync.stall_timeout)
        # Rounds are bounded by the engine's passes; the base class's guard only catches a planner
        # that never ends (100k orders at 10k operations per batch are 10+ rounds).
        kwargs.setdefault("max_rounds", 100_000)
        super().__init__(**kwargs)
        self.entity = entity
        self.config_path = str(config_path) if config_path else None
        self.full_refresh = full_refresh
        self.dry_run = dry_run
        self.entities = entities

    # -- the engine, once per execution ----------------------------------------------------------
    def _config(self) -> "EcommerceSyncConfig":
        from mailchimp_provider.sync.ecommerce_config import load_ecommerce_config

        return load_ecommerce_config(Path(self.config_path) if self.config_path else None)

    def _param(self, context: "Context", name: str, explicit: Any, default: Any) -> Any:
        if explicit is not None:
            return explicit
        return (context.get("params") or {}).get(name, default)

    def is_selected(self, context: "Context") -> bool:
        return self.entity in selected_entities(self._param(context, "entities", self.entities, None))

    def sync_engine(self, context: "Context") -> "SyncEngine":
        cached = getattr(self, "_engine_cache", None)
        if cached is not None and cached[0] is context:
            return cached[1]
        from mailchimp_provider.sync.ecommerce_plan import RULES, CommerceScope, EcommerceSyncEngine
        from mailchimp_provider.sync.engine import RunContext, SyncSettings
        from mailchimp_provider.warehouse.connection import get_engine
        from mailchimp_provider.warehouse.tables import WarehouseTables

        config = self._config()
        ti = context["ti"]
        map_index = getattr(ti, "map_index", -1)
        run = RunContext(
            run_id=str(ti.run_id),
            dag_id=str(ti.dag_id),
            task_id=str(ti.task_id),
            map_index=-1 if map_index is None else int(map_index),
            full_refresh=_flag(self._param(context, "full_refresh", self.full_refresh, False)),
            dry_run=_flag(self._param(context, "dry_run", self.dry_run, False)),
        )
        tuning = config.sync
        settings = SyncSettings(
            max_operations_per_batch=self.max_operations_per_batch,
            chunk_size=tuning.chunk_size,
            max_attempts=tuning.max_attempts,
            max_failure_share=tuning.max_failure_share,
            min_failures_to_fail=tuning.min_failures_to_fail,
        )
        rules = RULES[self.entity](CommerceScope(config.store.id, config, config.consent()))
        engine = EcommerceSyncEngine(
            get_engine(self.warehouse_conn_id or config.warehouse_conn_id),
            WarehouseTables(self.table_prefix, self.table_schema),
            rules,
            run,
            settings,
        )
        if run.full_refresh or run.dry_run:
            self.log.info("Run parameters: full_refresh=%s dry_run=%s", run.full_refresh, run.dry_run)
        self._engine_cache = (context, engine)
        return engine

    # -- the lifecycle's hooks -----------------------------------------------------------------------
    def next_operations(self, context: "Context") -> tuple[str, list[dict[str, Any]]] | None:
        if not self.is_selected(context):
            return None
        engine = self.sync_engine(context)
        operations = engine.next_operations()
        return None if operations is None else (engine.entity, operations)

    def apply_results(
        self, context: "Context", entity: str, batch_id: str, results: Iterator["OperationResult"]
    ) -> None:
        counts = self.sync_engine(context).apply_results(batch_id, results)
        self.log.info("Batch %s: %s", batch_id, ", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "no results")

    def on_batch_failed(self, context: "Context", entity: str | None, batch_id: str, error: str) -> None:
        self.log.warning("Batch %s abandoned (%s); its records had no confirmed outcome and are planned again.",
                         batch_id, error)

    def finish(self, context: "Context") -> dict[str, dict[str, int]]:
        """Log the summary table, fail (without retry) past the failure threshold, return the counts."""
        from airflow.sdk.exceptions import AirflowFailException

        from mailchimp_provider.sync.engine import SyncThresholdExceeded

        if not self.is_selected(context):
            self.log.info("%s is not among this run's entities; nothing to do.", self.entity)
            return {"not_selected": {self.entity: 1}}
        engine = self.sync_engine(context)
        try:
            summary = engine.finish()
        except SyncThresholdExceeded as exc:
            # Retrying cannot help (failed records are not resent within a run): fail for good.
            raise AirflowFailException(str(exc)) from exc
        return summary.as_dict()


# ------------------------------------------------------------------------------------------------
# the DAG's tasks (shared by dags/mailchimp_ecommerce_sync.py and the test DAGs)
# ------------------------------------------------------------------------------------------------
PLURAL = {"customer": "customers", "product": "products", "promo_rule": "promo_rules",
          "promo_code": "promo_codes", "order": "orders"}


def ecommerce_sync_params() -> dict[str, Any]:
    """The run parameters of an e-commerce sync DAG (``full_refresh``, ``dry_run``, ``entities``)."""
    from airflow.sdk import Param

    return {
        "full_refresh": Param(False, type="boolean",
                              description="Resend every record, changed or not (flags the store is_syncing)."),
        "dry_run": Param(False, type="boolean", description="Record the plan in mailchimp_sync_result; send nothing."),
        "entities": Param(list(ENTITIES), type="array", items={"type": "string", "enum": list(ENTITIES)},
                          description="The entities to sync this run (dependency order is kept)."),
    }


def ecommerce_sync_tasks(
    config_path: str | Path | None = None, *, outlets: dict[str, list[Any]] | None = None, **operator_kwargs: Any
) -> tuple[Any, list[MailchimpEcommerceSyncOperator], Any]:
    """Create, in the current DAG, ``prepare_store`` (setup) >> one sync task per entity in
    dependency order >> ``release_store`` (teardown), and return them.

    ``prepare_store`` ensures the store and flags it ``is_syncing`` for a backfill; the teardown
    clears the flag whether the syncs succeeded or not, and logs the run's per-entity counts.
    """
    from airflow.sdk import chain, task

    from mailchimp_provider.sync.ecommerce_config import load_ecommerce_config

    path = str(config_path) if config_path else None
    config = load_ecommerce_config(path)

    @task(task_id="prepare_store")
    def prepare_store(params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Create the bookkeeping tables, ensure the store (and its audience) and, for an initial
        backfill or a full refresh, flag it ``is_syncing``."""
        from mailchimp_provider.hooks.mailchimp import MailchimpHook
        from mailchimp_provider.sync.ecommerce_store import prepare_store as prepare
        from mailchimp_provider.warehouse.connection import get_engine
        from mailchimp_provider.warehouse.tables import WarehouseTables

        cfg = load_ecommerce_config(path)
        params = params or {}
        return prepare(
            MailchimpHook(mailchimp_conn_id=cfg.mailchimp_conn_id),
            get_engine(cfg.warehouse_conn_id),
            WarehouseTables(cfg.table_prefix, cfg.table_schema),
            cfg,
            full_refresh=_flag(params.get("full_refresh", False)),
            dry_run=_flag(params.get("dry_run", False)),
        )

    @task(task_id="release_store")
    def release_store(params: dict[str, Any] | None = None, run_id: str | None = None) -> dict[str, dict[str, int]]:
        """Clear ``is_syncing`` (a teardown: runs even when a sync task failed) and log the run's
        synced / skipped / failed counts per entity."""
        from mailchimp_provider.hooks.mailchimp import MailchimpHook
        from mailchimp_provider.sync.ecommerce_report import ecommerce_run_counts, format_run_counts
        from mailchimp_provider.sync.ecommerce_store import release_store as release
        from mailchimp_provider.warehouse.connection import get_engine
        from mailchimp_provider.warehouse.tables import WarehouseTables

        cfg = load_ecommerce_config(path)
        release(MailchimpHook(mailchimp_conn_id=cfg.mailchimp_conn_id), cfg.store.id,
                dry_run=_flag((params or {}).get("dry_run", False)))
        tables = WarehouseTables(cfg.table_prefix, cfg.table_schema)
        counts = ecommerce_run_counts(get_engine(cfg.warehouse_conn_id), tables, str(run_id))
        print(format_run_counts(counts, title=f"E-commerce sync into store {cfg.store.id}, run {run_id}"))
        return counts

    setup = prepare_store()
    syncs = [
        MailchimpEcommerceSyncOperator(
            task_id=f"sync_{PLURAL[entity]}",
            entity=entity,
            config_path=path,
            outlets=(outlets or {}).get(entity, []),
            doc_md=f"Plans, sends (batches) and records the {entity} writes of store {config.store.id}; "
                   "the log ends with the summary table.",
            **operator_kwargs,
        )
        for entity in ENTITIES
    ]
    teardown = release_store().as_teardown(setups=setup)
    chain(setup, *syncs, teardown)
    return setup, syncs, teardown
