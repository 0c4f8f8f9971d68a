"""Operators of the engagement pull (Mailchimp -> warehouse); the DAG is ``mailchimp_engagement_pull``.

* ``MailchimpAudiencePullOperator``      lists, members (incremental), list-level unsubscribes
* ``MailchimpCampaignPullOperator``      sent campaigns + report summary, campaign unsubscribes
* ``MailchimpEmailActivityPullOperator`` opens / clicks / bounces of many campaigns per batch
* ``MailchimpCampaignRecipientPullOperator`` who each campaign was sent to (sent-to), per batch
* ``MailchimpAutomationPullOperator``    classic automations and their emails (+ their unsubscribes)
* ``MailchimpAutomationActivityPullOperator`` automation emails' recipients and activity, per batch
* ``MailchimpSegmentPullOperator``       segments (tags are static segments) of the pulled audiences
* ``MailchimpSegmentMemberPullOperator`` who is in each segment, per batch

Each logs, per table, how many rows it gained and changed, and returns those counts (XCom). The
configuration is ``EngagementConfig`` (``include/engagement_pull.yaml``), kept on the operator as
its JSON form so the operator serialises like any other.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any, Iterator

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException

from mailchimp_provider.operators.base import MailchimpBatchLifecycleOperator
from mailchimp_provider.reverse.config import EngagementConfig, config_from_dict

if TYPE_CHECKING:
    import sqlalchemy as sa
    from airflow.sdk import Context

    from mailchimp_provider.batches.results import OperationResult
    from mailchimp_provider.hooks.mailchimp import MailchimpHook
    from mailchimp_provider.reverse.loading import LoadStats
    from mailchimp_provider.sharding import Shard
    from mailchimp_provider.warehouse.tables import WarehouseTables

__all__ = [
    "MailchimpAudiencePullOperator",
    "MailchimpCampaignPullOperator",
    "MailchimpEmailActivityPullOperator",
    "MailchimpCampaignRecipientPullOperator",
    "MailchimpAutomationPullOperator",
    "MailchimpAutomationActivityPullOperator",
    "MailchimpSegmentPullOperator",
    "MailchimpSegmentMemberPullOperator",
]

# Tables each operator writes: every one of them appears in the log line, zero or not.
_WRITES = {
    "audiences": ("list", "member", "unsubscribe", "rejected"),
    "campaigns": ("campaign", "unsubscribe", "rejected"),
    "activity": ("activity", "rejected"),
    "recipients": ("recipient", "rejected"),
    "automations": ("automation", "automation_email", "unsubscribe", "rejected"),
    "automation_activity": ("automation_recipient", "automation_activity", "rejected"),
    "segments": ("segment", "segment_member", "rejected"),
    "segment_members": ("segment_member", "rejected"),
}


class _EngagementMixin:
    """Config, warehouse and hook shared by the three operators."""

    engagement_config: dict[str, Any]
    log: Any

    @cached_property
    def config(self) -> EngagementConfig:
        return config_from_dict(self.engagement_config, source=f"task {getattr(self, 'task_id', '?')} config")

    @cached_property
    def tables(self) -> "WarehouseTables":
        from mailchimp_provider.warehouse.tables import WarehouseTables

        return WarehouseTables(self.config.table_prefix, self.config.schema)

    @cached_property
    def engine(self) -> "sa.Engine":
        from mailchimp_provider.warehouse.connection import get_engine

        engine = get_engine(self.config.warehouse_conn_id)
        self.tables.create_all(engine)
        return engine

    def pull_hook(self) -> "MailchimpHook":
        from mailchimp_provider.hooks.mailchimp import MailchimpHook

        return MailchimpHook(mailchimp_conn_id=self.config.mailchimp_conn_id)

    def report(self, stats: "LoadStats", what: str) -> dict[str, dict[str, int]]:
        """Log the per-table counts (every table this operator writes) and return them for XCom;
        fail when more than ``max_rejected_fraction`` of the records read were rejected."""
        from mailchimp_provider.reverse.loading import LoadCounts

        for kind in _WRITES[what]:
            stats.tables.setdefault(self.tables.table_name(kind), LoadCounts())
        stats.log(self.log)
        self._check_rejected(stats)
        return stats.to_dict()

    def _check_rejected(self, stats: "LoadStats") -> None:
        table = self.tables.table_name("rejected")
        rejected = stats.tables[table].seen
        read = rejected + sum(c.seen for name, c in stats.tables.items() if name != table)
        if not rejected or rejected <= self.config.max_rejected_fraction * read:
            return
        raise AirflowException(
            f"{rejected} of the {read} records read could not be stored ({rejected / read:.1%}, more than "
            f"max_rejected_fraction {self.config.max_rejected_fraction:.1%}): Mailchimp's data has likely "
            f"changed shape. Everything else is committed and the bookmarks moved on, so retrying this task "
            f"does not read them again. They are kept whole in {table} (SELECT record, field, error, raw FROM "
            f"{table} ORDER BY first_seen_at DESC); fix the cause, then re-read them by resetting the "
            f"stream's row in {self.tables.table_name('watermark')}."
        )


def _config_dict(config: EngagementConfig | dict[str, Any] | None) -> dict[str, Any]:
    if config is None:
        return EngagementConfig().to_dict()
    if isinstance(config, EngagementConfig):
        return config.to_dict()
    return config_from_dict(config).to_dict()  # validate now: a bad config fails at DAG parse time


class _EngagementPullOperator(_EngagementMixin, BaseOperator):
    """A pull that reads Mailchimp page by page and upserts as it goes (no batches to wait for)."""

    template_fields = ()
    ui_color = "#ffe01b"
    stream: str = ""

    def __init__(self, *, config: EngagementConfig | dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.engagement_config = _config_dict(config)

    def pull(self) -> Any:
        """Run the pull; returns the per-table load statistics that ``report`` logs."""
        raise NotImplementedError

    def execute(self, context: "Context") -> dict[str, dict[str, int]]:
        return self.report(self.pull(), self.stream)


class MailchimpAudiencePullOperator(_EngagementPullOperator):
    """Lists and members of the configured audiences into ``mailchimp_list`` / ``mailchimp_member``.

    Members are read incrementally by ``last_changed`` (inclusive lookback, de-duplicated on
    ``(list_id, member_id)``); a member whose status became ``unsubscribed`` also adds a list-level
    row to ``mailchimp_unsubscribe``. See ``mailchimp_provider.reverse.audiences``.
    """

    stream = "audiences"

    def pull(self) -> Any:
        from mailchimp_provider.reverse.audiences import pull_audiences

        return pull_audiences(self.pull_hook(), self.engine, self.tables, self.config)


class MailchimpCampaignPullOperator(_EngagementPullOperator):
    """Sent campaigns (settings + report summary) into ``mailchimp_campaign``, and their unsubscribe
    reports into ``mailchimp_unsubscribe``. Campaigns sent within ``campaigns.recent_window_days``
    are refreshed every run. See ``mailchimp_provider.reverse.campaigns``."""

    stream = "campaigns"

    def pull(self) -> Any:
        from mailchimp_provider.reverse.campaigns import pull_campaigns

        return pull_campaigns(self.pull_hook(), self.engine, self.tables, self.config)


class _EngagementBatchOperator(_EngagementMixin, MailchimpBatchLifecycleOperator):
    """A pull through batch operations with the email activity's batch settings
    (``activity.batch_chunk_size``, polling, stall timeout, deferrable), unless the task sets them."""

    template_fields = ()

    def __init__(self, *, config: EngagementConfig | dict[str, Any] | None = None, **kwargs: Any) -> None:
        engagement = config_from_dict(_config_dict(config))
        activity = engagement.activity
        kwargs.setdefault("deferrable", activity.deferrable)
        kwargs.setdefault("poll_interval", activity.poll_interval_seconds)
        kwargs.setdefault("stall_timeout", activity.stall_timeout_seconds)
        super().__init__(
            mailchimp_conn_id=engagement.mailchimp_conn_id,
            warehouse_conn_id=engagement.warehouse_conn_id,
            table_prefix=engagement.table_prefix,
            table_schema=engagement.schema,
            max_operations_per_batch=activity.batch_chunk_size,
            **kwargs,
        )
        self.engagement_config = engagement.to_dict()

    def _pass(self, context: "Context") -> str:
        from mailchimp_provider.reverse.activity import pass_id

        return pass_id(context)


class MailchimpEmailActivityPullOperator(_EngagementBatchOperator):
    """Email activity of the campaigns in ``mailchimp_campaign`` through batch operations.

    One ``GET /reports/{id}/email-activity`` per campaign with its own ``since`` bookmark, chunked
    into batches of ``activity.batch_chunk_size``; waits deferrably; results are streamed from the
    archive and inserted in chunks. Bookmarks move only with the rows they cover. A stalled or
    expired batch is abandoned and its campaigns re-sent; after ``activity.max_abandoned_batches``
    the task fails with every bookmark where the committed rows put it, so the next run (or a
    retry) goes on from there. See ``mailchimp_provider.reverse.activity``.

    :param shard: with ``activity.shards`` > 1, the shard this task instance reads (map the task:
        ``.partial(...).expand(shard=range(shards))``): only the campaigns whose id hashes to it
        (``mailchimp_provider.sharding``). None (the default) reads every campaign.
    """

    def __init__(
        self, *, config: EngagementConfig | dict[str, Any] | None = None, shard: int | None = None, **kwargs: Any
    ) -> None:
        kwargs.setdefault("abandon_stalled", True)  # reads are idempotent: re-send rather than wait forever
        super().__init__(config=config, **kwargs)
        shards = self.config.activity.shards
        if shard is None and shards > 1:
            raise ValueError(
                f"{self.task_id}: activity.shards is {shards}, so this task reads one shard: map it with "
                f".partial(...).expand(shard=list(range({shards}))) (see dags/mailchimp_engagement_pull.py)"
            )
        if shard is not None and not 0 <= shard < shards:
            raise ValueError(f"{self.task_id}: shard must be in 0..{shards - 1} (activity.shards {shards}), got {shard}")
        self.shard = shard

    @property
    def owned(self) -> "Shard":
        """The campaigns this task instance reads: its shard, or all of them."""
        from mailchimp_provider.sharding import Shard

        return Shard() if self.shard is None else Shard(self.shard, self.config.activity.shards)

    # -- planning ------------------------------------------------------------------------------
    def _try_scope(self, context: "Context") -> str:
        """Scope of the abandoned-batch count: one per try of this task instance (each shard its own)."""
        suffix = f"#shard{self.shard}of{self.config.activity.shards}" if self.shard is not None else ""
        return f"{self._pass(context)}#try{context['ti'].try_number}{suffix}"

    def _abandoned(self, context: "Context") -> int:
        from mailchimp_provider.reverse import watermarks

        with self.engine.connect() as conn:
            value = watermarks.get_value(conn, self.tables, watermarks.EMAIL_ACTIVITY_ABANDONED, self._try_scope(context))
        return int(value or 0)

    def next_operations(self, context: "Context") -> tuple[str, list[dict[str, Any]]] | None:
        from mailchimp_provider.reverse import activity

        abandoned = self._abandoned(context)
        if abandoned >= self.config.activity.max_abandoned_batches:
            self.log.error(
                "%d batch(es) stalled or expired in this try; not sending more. Every bookmark stays where the "
                "committed rows put it.", abandoned,
            )
            return None
        with self.engine.connect() as conn:
            fetches = activity.plan(conn, self.tables, self.config, self._pass(context), shard=self.owned)
        if not fetches:
            return None
        first = sum(1 for f in fetches if f.since is None)
        self.log.info(
            "Email activity to read for %d campaign(s)%s (%d from the start, %d from their bookmark minus %s), "
            "in batches of up to %d.",
            len(fetches), f" of {self.owned.label()}" if self.shard is not None else "", first, len(fetches) - first,
            self.config.activity.lookback, self.max_operations_per_batch,
        )
        return activity.ENTITY, [f.operation() for f in fetches]

    # -- results -------------------------------------------------------------------------------
    def apply_results(
        self, context: "Context", entity: str, batch_id: str, results: Iterator["OperationResult"]
    ) -> None:
        from mailchimp_provider.reverse import activity

        entry = self.ledger_for(context).get(batch_id)
        outcome = activity.apply_results(
            self.engine, self.tables, self.config, results,
            current_pass=self._pass(context), submitted_at=entry.submitted_at if entry else None,
        )
        c, r = outcome.counts, outcome.rejected
        self.log.info(
            "Batch %s: activity of %d campaign(s) committed: %d rows gained, %d changed, %d unchanged; "
            "%d record(s) rejected; %d operation(s) failed.",
            batch_id, outcome.campaigns, c.gained, c.changed, c.unchanged, r.seen, len(outcome.failures),
        )
        context["ti"].xcom_push(
            key=f"loaded_{batch_id}",
            value={"gained": c.gained, "changed": c.changed, "unchanged": c.unchanged, "campaigns": outcome.campaigns,
                   "rejected": {"gained": r.gained, "changed": r.changed, "unchanged": r.unchanged}},
        )

    def on_batch_failed(self, context: "Context", entity: str | None, batch_id: str, error: str) -> None:
        from mailchimp_provider.reverse import watermarks

        scope = self._try_scope(context)
        with self.engine.begin() as conn:
            count = int(watermarks.get_value(conn, self.tables, watermarks.EMAIL_ACTIVITY_ABANDONED, scope) or 0) + 1
            watermarks.set_values(conn, self.tables, watermarks.EMAIL_ACTIVITY_ABANDONED, {scope: str(count)})
        self.log.warning(
            "Batch %s gave no results (%s). Its campaigns keep their bookmarks and are planned again.", batch_id, error
        )

    def finish(self, context: "Context") -> dict[str, Any]:
        from mailchimp_provider.batches.ledger import BatchScope
        from mailchimp_provider.reverse import activity
        from mailchimp_provider.reverse.loading import LoadCounts, LoadStats

        counts, rejected = LoadCounts(), LoadCounts()
        campaigns = 0
        ti = context["ti"]
        for entry in self.ledger_for(context).entries(BatchScope.from_context(context)):
            loaded = ti.xcom_pull(task_ids=self.task_id, key=f"loaded_{entry.batch_id}", map_indexes=ti.map_index)
            if loaded:
                counts.add(LoadCounts(loaded["gained"], loaded["changed"], loaded["unchanged"]))
                rejected.add(LoadCounts(**loaded.get("rejected", {})))
                campaigns += int(loaded.get("campaigns", 0))
        stats = LoadStats({self.tables.table_name("activity"): counts, self.tables.table_name("rejected"): rejected})
        summary: dict[str, Any] = {"tables": self.report(stats, "activity"), "campaigns_read": campaigns}
        if self.shard is not None:
            summary["shard"] = {"index": self.shard, "count": self.config.activity.shards}
        current_pass = self._pass(context)
        with self.engine.connect() as conn:
            failed = activity.failed_in_pass(conn, self.tables, current_pass, self.owned)
            unread = activity.plan(conn, self.tables, self.config, current_pass, shard=self.owned)
        if failed:
            summary["failed_campaigns"] = sorted(failed)
            self.log.warning(
                "Email activity of %d campaign(s) could not be read in this run: %s. Their bookmarks are unchanged; "
                "the next run reads them again.", len(failed), ", ".join(sorted(failed)),
            )
        if unread:
            raise AirflowException(
                f"Email activity of {len(unread)} campaign(s) was not read because "
                f"{self._abandoned(context)} batch(es) stalled or expired (see the warnings above). Everything "
                "read before is committed and every bookmark is where those rows put it: retry the task or let "
                "the next run go on from there. If batches keep stalling, check Mailchimp's batch status "
                "(GET /batches) and raise activity.stall_timeout_seconds."
            )
        return summary


class MailchimpCampaignRecipientPullOperator(_EngagementBatchOperator):
    """Who each sent campaign went to (``GET /reports/{id}/sent-to``) into ``campaign_recipient``,
    through batch operations: one operation per page of 1000, each page read once and marked in
    the transaction of its rows (see ``mailchimp_provider.reverse.recipients``). Batch settings are
    the email activity's (``activity.batch_chunk_size``, polling, stall timeout, deferrable); a
    stalled batch fails the task, and a retry re-attaches to it."""

    def next_operations(self, context: "Context") -> tuple[str, list[dict[str, Any]]] | None:
        from mailchimp_provider.reverse import recipients

        with self.engine.connect() as conn:
            pages = recipients.plan(conn, self.tables, self.config, self._pass(context))
        if not pages:
            return None
        self.log.info("Sent-to pages to read: %d, of %d campaign(s).", len(pages), len({p.campaign_id for p in pages}))
        return recipients.ENTITY, [p.operation() for p in pages]

    def apply_results(
        self, context: "Context", entity: str, batch_id: str, results: Iterator["OperationResult"]
    ) -> None:
        from mailchimp_provider.reverse import recipients

        outcome = recipients.apply_results(self.engine, self.tables, results, current_pass=self._pass(context))
        c, r = outcome.counts, outcome.rejected
        self.log.info(
            "Batch %s: %d sent-to page(s) committed: %d rows gained, %d changed, %d unchanged; %d record(s) "
            "rejected; %d operation(s) failed.",
            batch_id, outcome.pages, c.gained, c.changed, c.unchanged, r.seen, len(outcome.failures),
        )
        context["ti"].xcom_push(key=f"loaded_{batch_id}", value={
            "recipient": [c.gained, c.changed, c.unchanged], "rejected": [r.gained, r.changed, r.unchanged]})

    def finish(self, context: "Context") -> dict[str, Any]:
        from mailchimp_provider.batches.ledger import BatchScope
        from mailchimp_provider.reverse.loading import LoadCounts, LoadStats

        stats = LoadStats()
        for entry in self.ledger_for(context).entries(BatchScope.from_context(context)):
            loaded = context["ti"].xcom_pull(task_ids=self.task_id, key=f"loaded_{entry.batch_id}")
            if loaded:
                stats.record(self.tables.table_name("recipient"), LoadCounts(*loaded["recipient"]))
                stats.record(self.tables.table_name("rejected"), LoadCounts(*loaded["rejected"]))
        return {"tables": self.report(stats, "recipients")}


class MailchimpAutomationPullOperator(_EngagementPullOperator):
    """Classic automations and their emails into ``automation`` / ``automation_email`` (read whole
    each run; what Mailchimp no longer lists is marked ``_fivetran_deleted``), and the sending
    emails' unsubscribe reports into ``unsubscribe``. See ``mailchimp_provider.reverse.automations``."""

    stream = "automations"

    def pull(self) -> Any:
        from mailchimp_provider.reverse.automations import pull_automations

        return pull_automations(self.pull_hook(), self.engine, self.tables, self.config)


class MailchimpSegmentPullOperator(_EngagementPullOperator):
    """Segments of the pulled audiences into ``segment`` (static segments are tags; read whole each
    run, deleted ones marked ``_fivetran_deleted`` with their members). See
    ``mailchimp_provider.reverse.segments``."""

    stream = "segments"

    def pull(self) -> Any:
        from mailchimp_provider.reverse.segments import pull_segments

        return pull_segments(self.pull_hook(), self.engine, self.tables, self.config)


class _EngagementBatchPullOperator(_EngagementBatchOperator):
    """A pull through batch operations with the email activity's batch settings
    (``activity.batch_chunk_size``, polling, stall timeout, deferrable). A subclass plans with
    ``plan_operations`` and loads with ``load``; the per-table counts of every batch are kept in
    XCom and summed by ``finish``."""

    stream: str = ""
    entity: str = ""

    def plan_operations(self, context: "Context") -> list[dict[str, Any]]:
        """The operations still owed in this pass (empty: done)."""
        raise NotImplementedError

    def load(self, context: "Context", batch_id: str, results: Iterator["OperationResult"]) -> "LoadStats":
        """Commit one batch's results; returns its per-table counts."""
        raise NotImplementedError

    def next_operations(self, context: "Context") -> tuple[str, list[dict[str, Any]]] | None:
        operations = self.plan_operations(context)
        if not operations:
            return None
        self.log.info("%s: %d operation(s) to send.", self.entity, len(operations))
        return self.entity, operations

    def apply_results(
        self, context: "Context", entity: str, batch_id: str, results: Iterator["OperationResult"]
    ) -> None:
        stats = self.load(context, batch_id, results)
        stats.log(self.log, prefix=f"Batch {batch_id}: ")
        context["ti"].xcom_push(key=f"loaded_{batch_id}", value=stats.to_dict())

    def finish(self, context: "Context") -> dict[str, Any]:
        from mailchimp_provider.batches.ledger import BatchScope
        from mailchimp_provider.reverse.loading import LoadStats

        stats = LoadStats()
        for entry in self.ledger_for(context).entries(BatchScope.from_context(context)):
            loaded = context["ti"].xcom_pull(task_ids=self.task_id, key=f"loaded_{entry.batch_id}")
            if loaded:
                stats.merge(LoadStats.from_dict(loaded))
        return {"tables": self.report(stats, self.stream)}


class MailchimpAutomationActivityPullOperator(_EngagementBatchPullOperator):
    """Who each automation email went to (``automation_recipient``, sent-to read whole when the
    email sent more) and what they did (``automation_recipient_activity``, incremental by
    ``since``), one operation per email and report. See
    ``mailchimp_provider.reverse.automation_activity``."""

    stream = "automation_activity"
    entity = "automation_activity"

    def plan_operations(self, context: "Context") -> list[dict[str, Any]]:
        from mailchimp_provider.reverse import automation_activity

        with self.engine.connect() as conn:
            fetches = automation_activity.plan(conn, self.tables, self.config, self._pass(context))
        return [f.operation() for f in fetches]

    def load(self, context: "Context", batch_id: str, results: Iterator["OperationResult"]) -> "LoadStats":
        from mailchimp_provider.reverse import automation_activity

        entry = self.ledger_for(context).get(batch_id)
        outcome = automation_activity.apply_results(
            self.engine, self.tables, results, current_pass=self._pass(context),
            submitted_at=entry.submitted_at if entry else None,
        )
        return outcome.stats


class MailchimpSegmentMemberPullOperator(_EngagementBatchPullOperator):
    """Who is in each segment (``segment_member``), one operation per segment that is due (changed
    or not read for ``segments.members_refresh_hours``); members who left are marked
    ``_fivetran_deleted``. See ``mailchimp_provider.reverse.segment_members``."""

    stream = "segment_members"
    entity = "segment_member"

    def plan_operations(self, context: "Context") -> list[dict[str, Any]]:
        from mailchimp_provider.reverse import segment_members

        with self.engine.connect() as conn:
            fetches = segment_members.plan(conn, self.tables, self.config, self._pass(context))
        return [f.operation() for f in fetches]

    def load(self, context: "Context", batch_id: str, results: Iterator["OperationResult"]) -> "LoadStats":
        from mailchimp_provider.reverse import segment_members

        return segment_members.apply_results(self.engine, self.tables, results, current_pass=self._pass(context)).stats
