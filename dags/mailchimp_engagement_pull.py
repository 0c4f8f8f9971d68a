"""mailchimp_engagement_pull: Mailchimp lists, members, unsubscribes, campaigns, email activity,
classic automations and segments into the warehouse, with Fivetran's column names.

See ``DOC`` below (shown in the Airflow UI) for what it does and how to run it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Asset

from mailchimp_provider.dag_defaults import POOL_COMMAND, default_args
from mailchimp_provider.operators.engagement import (
    MailchimpAudiencePullOperator,
    MailchimpAutomationActivityPullOperator,
    MailchimpAutomationPullOperator,
    MailchimpCampaignPullOperator,
    MailchimpCampaignRecipientPullOperator,
    MailchimpEmailActivityPullOperator,
    MailchimpSegmentMemberPullOperator,
    MailchimpSegmentPullOperator,
)
from mailchimp_provider.reverse.config import EngagementConfig, config_path, load_config
from mailchimp_provider.warehouse.tables import WarehouseTables

DAG_ID = "mailchimp_engagement_pull"

DOC = f"""
### Mailchimp engagement pull

Reads Mailchimp into the warehouse tables analysts query next to orders (columns follow the
Fivetran Mailchimp schema, so `fivetran/dbt_mailchimp`-style models work):

| task | tables |
|---|---|
| `pull_audiences` | `mailchimp_list`, `mailchimp_member` (incremental on `last_changed`), list-level rows of `mailchimp_unsubscribe` |
| `pull_campaigns` | `mailchimp_campaign` (settings + report summary; recently sent campaigns refreshed every run), campaign rows of `mailchimp_unsubscribe` |
| `pull_email_activity` | `mailchimp_campaign_recipient_activity` (open / click / bounce), via batch operations, waiting deferrably; with `activity.shards` > 1, one mapped task instance per shard of the campaigns |
| `pull_campaign_recipients` | `mailchimp_campaign_recipient` (who each campaign was sent to: sent-to, each page read once), via batch operations |
| `pull_automations` | `mailchimp_automation`, `mailchimp_automation_email` (classic automations, read whole; gone ones marked `_fivetran_deleted`), the emails' rows of `mailchimp_unsubscribe` |
| `pull_automation_activity` | `mailchimp_automation_recipient` (sent-to of each automation email, re-read when it sent more), `mailchimp_automation_recipient_activity` (incremental), via batch operations |
| `pull_segments` | `mailchimp_segment` (static segments, i.e. tags, and saved segments of the pulled audiences) |
| `pull_segment_members` | `mailchimp_segment_member` (re-read when a segment changed, at least daily; who left is marked `_fivetran_deleted`), via batch operations |

* **Incremental and idempotent.** Bookmarks live in `mailchimp_watermark` and move only in the
  transaction that commits the rows they cover. Every write is an upsert on the contract key, so
  a rerun, a retry or an overlapping window leaves the same rows; each window starts a lookback
  before its bookmark because Mailchimp's `since` bounds are exclusive.
* **Stalled or expired batches** are abandoned and re-sent; if that keeps happening the task fails
  with every bookmark intact and the next run goes on from them.
* **Consent.** `mailchimp_member.status` is what the audience sync reads so that people who
  unsubscribed or were cleaned in Mailchimp are never subscribed again.
* **Bad records** (a value that cannot be stored, named with its field in the log) are kept whole
  in `mailchimp_rejected_record` and the run goes on; nothing is dropped.
* The log of each task says how many rows each table gained and changed; each table is an Asset
  (`warehouse://<conn>/<table>`) that downstream DAGs can be scheduled on.

Configuration: `include/engagement_pull.yaml` (or `$MAILCHIMP_ENGAGEMENT_PULL_CONFIG`): which
audiences, the recent-campaign window, lookbacks, batch chunk size.
Needs the pool `mailchimp_api` (slots x the hook's `max_in_flight` <= 10): `{POOL_COMMAND}`.
"""


def table_assets(config: EngagementConfig) -> dict[str, Asset]:
    """One Asset per table the DAG writes, keyed by table kind (``list``, ``member``, ...)."""
    tables = WarehouseTables(config.table_prefix, config.schema)
    assets = {}
    for kind in ("list", "member", "unsubscribe", "campaign", "activity", "recipient", "automation",
                 "automation_email", "automation_recipient", "automation_activity", "segment", "segment_member"):
        name = tables.table_name(kind)
        assets[kind] = Asset(
            name=name,
            uri=f"warehouse://{config.warehouse_conn_id}/{name}",
            group="mailchimp",
            extra={"source": "mailchimp", "dag_id": DAG_ID},
        )
    return assets


def email_activity_task(config: EngagementConfig, outlets: list[Asset]) -> Any:
    """``pull_email_activity``: one task, or with ``activity.shards`` > 1 one mapped task instance
    per shard (each reads the campaigns whose id hashes to it; every instance takes its own pool
    slot, and all of them share the API key's connection budget)."""
    shards = config.activity.shards
    if shards == 1:
        return MailchimpEmailActivityPullOperator(task_id="pull_email_activity", config=config, outlets=outlets)
    return MailchimpEmailActivityPullOperator.partial(
        task_id="pull_email_activity", config=config, outlets=outlets,
    ).expand(shard=list(range(shards)))


def build_dag(
    config: EngagementConfig,
    *,
    dag_id: str = DAG_ID,
    schedule: str | None = "@hourly",
    retries: int = 2,
    retry_delay: timedelta = timedelta(minutes=2),
) -> DAG:
    """The engagement pull DAG for ``config`` (tests build it with their own config and retries)."""
    assets = table_assets(config)
    with DAG(
        dag_id=dag_id,
        schedule=schedule,
        start_date=datetime(2024, 1, 1),
        catchup=False,
        max_active_runs=1,
        doc_md=DOC,
        tags=["mailchimp", "engagement", "reverse"],
        default_args=default_args(retries=retries, retry_delay=retry_delay),
    ) as dag:
        audiences = MailchimpAudiencePullOperator(
            task_id="pull_audiences",
            config=config,
            outlets=[assets["list"], assets["member"], assets["unsubscribe"]],
        )
        campaigns = MailchimpCampaignPullOperator(
            task_id="pull_campaigns",
            config=config,
            outlets=[assets["campaign"], assets["unsubscribe"]],
        )
        activity = email_activity_task(config, [assets["activity"]])
        recipients = MailchimpCampaignRecipientPullOperator(
            task_id="pull_campaign_recipients",
            config=config,
            outlets=[assets["recipient"]],
        )
        automations = MailchimpAutomationPullOperator(
            task_id="pull_automations",
            config=config,
            outlets=[assets["automation"], assets["automation_email"], assets["unsubscribe"]],
        )
        automation_activity = MailchimpAutomationActivityPullOperator(
            task_id="pull_automation_activity",
            config=config,
            outlets=[assets["automation_recipient"], assets["automation_activity"]],
        )
        segments = MailchimpSegmentPullOperator(
            task_id="pull_segments",
            config=config,
            outlets=[assets["segment"], assets["segment_member"]],
        )
        segment_members = MailchimpSegmentMemberPullOperator(
            task_id="pull_segment_members",
            config=config,
            outlets=[assets["segment_member"]],
        )
        # Activity and sent-to are planned from mailchimp_campaign; the member pull runs after the
        # campaign pull only to keep one writer at a time on an embedded (SQLite) warehouse.
        campaigns >> [activity, audiences, recipients]
        # Automation reports are planned from mailchimp_automation_email, segments from
        # mailchimp_list and segment members from mailchimp_segment.
        campaigns >> automations >> automation_activity
        audiences >> segments >> segment_members
    return dag


dag = build_dag(load_config(config_path()))
