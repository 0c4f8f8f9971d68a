"""MailchimpAudienceSyncOperator: warehouse customers -> audience members, through batches.

The batch lifecycle (submit, wait or defer, re-attach on retry, stall and expiry handling) is the
base class's; this operator only wires the sync engine (``sync/engine.py``) with the audience rules
(``sync/audience.py``) into its three hooks. Everything it plans comes from the warehouse, so a
deferral, a killed worker or a retry from the UI simply plans again and finds less to do.

Run parameters (``params`` of the DAG run, or the constructor arguments, which win):
``full_refresh`` resends every record; ``dry_run`` records the plan in ``mailchimp_sync_result``
(``outcome='planned'``) and sends nothing; ``retry_archived`` re-adds members archived in Mailchimp
(otherwise skipped with reason ``archived_in_mailchimp``). Before planning, the audience is audited
(``sync/audit.py``): member changes since the last audit are read into ``mailchimp_member``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from mailchimp_provider.operators.sync import MailchimpSyncOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

    from mailchimp_provider.config import AudienceSyncConfig
    from mailchimp_provider.sync.engine import RunContext, SyncEngine, SyncSettings
    from mailchimp_provider.warehouse.tables import WarehouseTables

__all__ = ["MailchimpAudienceSyncOperator"]

log = logging.getLogger(__name__)


class MailchimpAudienceSyncOperator(MailchimpSyncOperator):
    """Sync the customers of the warehouse into one Mailchimp audience (see the module docstring).

    :param list_id: the audience id (templated: usually the XCom of the task that ensured the
        audience); None resolves it from the config (id, or name) at run time.
    :param config_path: the audience sync config (default ``include/audience_sync.yaml``).
    :param full_refresh: resend every record; None reads ``params.full_refresh``.
    :param dry_run: plan and record, send nothing; None reads ``params.dry_run``.
    :param retry_archived: re-add archived members; None reads ``params.retry_archived``.
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
        retry_archived: bool | None = None,
        **kwargs: Any,
    ) -> None:
        from mailchimp_provider.config import load_audience_config

        super().__init__(
            config=load_audience_config(config_path),
            config_path=config_path,
            full_refresh=full_refresh,
            dry_run=dry_run,
            retry_archived=retry_archived,
            **kwargs,
        )
        self.list_id = list_id

    def execute(self, context: "Context") -> Any:
        """A run with the parameter ``ensure_only`` (the dashboard's *Create audience*) ends once the
        audience exists: this task is skipped, nothing is planned or sent."""
        from mailchimp_provider.operators.sync import flag

        if flag((context.get("params") or {}).get("ensure_only")):
            from airflow.sdk.exceptions import AirflowSkipException

            raise AirflowSkipException("ensure_only: the audience exists; no member is synced in this run")
        return super().execute(context)

    # -- the engine, once per execution ----------------------------------------------------------
    def load_config(self) -> "AudienceSyncConfig":
        from mailchimp_provider.config import load_audience_config

        return load_audience_config(Path(self.config_path) if self.config_path else None)

    def build_engine(
        self, context: "Context", config: "AudienceSyncConfig", db: Any, tables: "WarehouseTables",
        run: "RunContext", settings: "SyncSettings",
    ) -> "SyncEngine":
        from mailchimp_provider.sync.audience import AudienceRules, ensure_audience
        from mailchimp_provider.sync.engine import SyncEngine

        list_id = self.list_id or ensure_audience(self.hook, config, source=self.config_path or "audience config").list_id
        return SyncEngine(db, tables, AudienceRules(config=config, list_id=list_id), run, settings)

    def finish(self, context: "Context") -> dict[str, dict[str, int]]:
        """Say what became of the erasure requests (also when the failure threshold then fails the task)."""
        engine = self.sync_engine(context)
        report = engine.rules.erasure_report(engine, engine.ctx)
        if report:
            log.info("%s", report)
        return super().finish(context)

