"""MailchimpEcommerceSyncOperator: one e-commerce entity (customers, products, promo rules, promo
codes, orders or carts) from the warehouse into the Mailchimp store, through batches.

The batch lifecycle (submit, wait or defer, re-attach on retry, stall and expiry handling) is the
base class's; the change detection, bookkeeping and summary are the sync engine's
(``sync/engine.py``); the entity rules (create vs update, healing, dependencies) are in
``sync/ecommerce/``. One task per entity, chained in dependency order by the DAG, so the
Airflow grid shows where a run stopped and a retry redoes one entity only.

Run parameters (``params`` of the DAG run, or the constructor arguments, which win):
``full_refresh`` resends every record; ``dry_run`` records the plan in ``mailchimp_sync_result``
(``outcome='planned'``) and sends nothing; ``entities`` limits the run to some entities (the
others return at once; the dependency checks still apply).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from mailchimp_provider.operators.sync import MailchimpSyncOperator, flag
from mailchimp_provider.sync.ecommerce.config import ENTITIES

if TYPE_CHECKING:
    from airflow.sdk import Context

    from mailchimp_provider.sync.ecommerce.config import EcommerceSyncConfig
    from mailchimp_provider.sync.engine import RunContext, SyncEngine, SyncSettings
    from mailchimp_provider.warehouse.tables import WarehouseTables

__all__ = ["MailchimpEcommerceSyncOperator", "selected_entities"]


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


class MailchimpEcommerceSyncOperator(MailchimpSyncOperator):
    """Sync one e-commerce entity into the configured store (see the module docstring).

    :param entity: ``customer``, ``product``, ``promo_rule``, ``promo_code``, ``order`` or ``cart``.
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
        from mailchimp_provider.sync.ecommerce.config import load_ecommerce_config

        if entity not in ENTITIES:
            raise ValueError(f"entity must be one of {', '.join(ENTITIES)}, got {entity!r}")
        super().__init__(
            config=load_ecommerce_config(config_path),
            config_path=config_path,
            full_refresh=full_refresh,
            dry_run=dry_run,
            **kwargs,
        )
        self.entity = entity
        self.entities = entities

    # -- the engine, once per execution ----------------------------------------------------------
    def load_config(self) -> "EcommerceSyncConfig":
        from mailchimp_provider.sync.ecommerce.config import load_ecommerce_config

        return load_ecommerce_config(Path(self.config_path) if self.config_path else None)

    def is_selected(self, context: "Context") -> bool:
        return self.entity in selected_entities(self.param(context, "entities", self.entities, None))

    def build_engine(
        self, context: "Context", config: "EcommerceSyncConfig", db: Any, tables: "WarehouseTables",
        run: "RunContext", settings: "SyncSettings",
    ) -> "SyncEngine":
        from mailchimp_provider.sync.ecommerce import RULES, CommerceScope, EcommerceSyncEngine

        rules = RULES[self.entity](CommerceScope(config.store.id, config, config.consent()))
        return EcommerceSyncEngine(db, tables, rules, run, settings)

    # -- the lifecycle's hooks -----------------------------------------------------------------------
    def next_operations(self, context: "Context") -> tuple[str, list[dict[str, Any]]] | None:
        if not self.is_selected(context):
            return None
        return super().next_operations(context)

    def finish(self, context: "Context") -> dict[str, dict[str, int]]:
        if not self.is_selected(context):
            self.log.info("%s is not among this run's entities; nothing to do.", self.entity)
            return {"not_selected": {self.entity: 1}}
        return super().finish(context)


# ------------------------------------------------------------------------------------------------
# the DAG's tasks (shared by dags/mailchimp_ecommerce_sync.py and the test DAGs)
# ------------------------------------------------------------------------------------------------
PLURAL = {"customer": "customers", "product": "products", "promo_rule": "promo_rules",
          "promo_code": "promo_codes", "order": "orders", "cart": "carts"}


def ecommerce_sync_params() -> dict[str, Any]:
    """The run parameters of an e-commerce sync DAG (``full_refresh``, ``dry_run``,
    ``retry_archived``, ``entities``)."""
    from airflow.sdk import Param

    return {
        "full_refresh": Param(False, type="boolean",
                              description="Resend every record, changed or not (flags the store is_syncing)."),
        "dry_run": Param(False, type="boolean", description="Record the plan in mailchimp_sync_result; send nothing."),
        "retry_archived": Param(False, type="boolean",
                                description="Send opt-in for customers whose member is archived in Mailchimp "
                                            "(re-adds them); otherwise their opt-in is withheld."),
        "retry_failed": Param(False, type="boolean",
                              description="Send only the records whose last outcome was failed, plus the "
                                          "quarantined ones (their quarantine lifted for this run)."),
        "allow_mass_delete": Param(False, type="boolean",
                                   description="Delete in Mailchimp even when more than mass_delete.max_share of "
                                               "an entity's records left the source queries (a broken view?)."),
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

    from mailchimp_provider.sync.ecommerce.config import load_ecommerce_config

    path = str(config_path) if config_path else None
    config = load_ecommerce_config(path)

    @task(task_id="prepare_store")
    def prepare_store(params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Create the bookkeeping tables, ensure the store (and its audience) and, for an initial
        backfill or a full refresh, flag it ``is_syncing``."""
        from mailchimp_provider.hooks.mailchimp import MailchimpHook
        from mailchimp_provider.sync.ecommerce.store import prepare_store as prepare
        from mailchimp_provider.warehouse.connection import get_engine
        from mailchimp_provider.warehouse.tables import WarehouseTables

        cfg = load_ecommerce_config(path)
        params = params or {}
        return prepare(
            MailchimpHook(mailchimp_conn_id=cfg.mailchimp_conn_id),
            get_engine(cfg.warehouse_conn_id),
            WarehouseTables(cfg.table_prefix, cfg.table_schema),
            cfg,
            full_refresh=flag(params.get("full_refresh", False)),
            dry_run=flag(params.get("dry_run", False)),
        )

    @task(task_id="release_store")
    def release_store(params: dict[str, Any] | None = None, run_id: str | None = None) -> dict[str, dict[str, int]]:
        """Clear ``is_syncing`` (a teardown: runs even when a sync task failed) and log the run's
        synced / skipped / failed counts per entity."""
        from mailchimp_provider.hooks.mailchimp import MailchimpHook
        from mailchimp_provider.sync.ecommerce.report import ecommerce_run_counts, format_run_counts
        from mailchimp_provider.sync.ecommerce.store import release_store as release
        from mailchimp_provider.warehouse.connection import get_engine
        from mailchimp_provider.warehouse.tables import WarehouseTables

        cfg = load_ecommerce_config(path)
        release(MailchimpHook(mailchimp_conn_id=cfg.mailchimp_conn_id), cfg.store.id,
                dry_run=flag((params or {}).get("dry_run", False)))
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
