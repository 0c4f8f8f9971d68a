"""mailchimp_audience_sync: warehouse customers -> Mailchimp audience members.

See ``doc_md`` below (shown in the Airflow UI) for what it does and how to run it.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import Asset, Param, dag, task

from mailchimp_provider.dag_defaults import POOL, POOL_COMMAND, default_args
from mailchimp_provider.config import audience_config_path, load_audience_config
from mailchimp_provider.operators.audience import MailchimpAudienceSyncOperator


# Parsed and validated here, so a broken config is a DAG import error naming the file and key.
# $MAILCHIMP_AUDIENCE_SYNC_CONFIG points at another file (default include/audience_sync.yaml).
CONFIG_PATH = audience_config_path()
CONFIG = load_audience_config(CONFIG_PATH)

AUDIENCE_MEMBERS = Asset(
    name="mailchimp_audience_members",
    uri="mailchimp://audience/members",
    
)

DOC = f"""
### Mailchimp audience sync

Syncs `include/sql/customers.sql` (connection `{CONFIG.warehouse_conn_id}`) into the Mailchimp
audience configured in `include/audience_sync.yaml` (or `$MAILCHIMP_AUDIENCE_SYNC_CONFIG`) (connection `{CONFIG.mailchimp_conn_id}`),
through Mailchimp batch operations.

* **Only changes are sent.** Each member's payload is hashed; `mailchimp_sync_state` keeps the hash
  Mailchimp confirmed. Run with `full_refresh` to resend everything.
* **Consent first.** New members get `status_if_new` = `subscribed` with `marketing_opt_in`
  (`pending` with double opt-in) and `transactional` otherwise; an existing member's status is
  never raised; withdrawn consent (`marketing_opt_in` true -> false, or `no_marketing`)
  unsubscribes. `no_marketing` rows are never added; guests send only their first name.
* **Audit before writing.** Each run first reads the members changed in Mailchimp since its last
  audit (`since_last_changed`, into `mailchimp_member`). Archived members are never written
  (reason `archived_in_mailchimp`) until a run with `retry_archived` re-adds them; unsubscribed and
  cleaned members are never subscribed again.
* **Email changes** rename the existing member (no duplicate); **erasure requests**
  (`marketing_erasure_requests`) permanently delete the member, who is never sent again.
* **Tags** from `customer_type` and `tags`; only tags this sync added are ever removed.
* **Customers gone from the query** are left in Mailchimp, or archived with `on_delete: archive`
  (currently `{CONFIG.on_delete}`); a run archives at most `mass_delete.max_share` of the members
  unless `allow_mass_delete` is set.
* **Every record's outcome** is in `mailchimp_sync_result` (one row per record and run:
  ok / failed / skipped with reason, HTTP status, error title and detail, batch id). A record that
  fails `{CONFIG.sync.max_attempts}` runs in a row is quarantined until its source row changes.
* **Dry run** (`dry_run`): the plan is recorded with `outcome = 'planned'`; nothing is sent.
* The task log ends with a summary table; the task fails when more than
  {CONFIG.sync.max_failure_share:.0%} of the writes failed, naming the top errors and the query
  that lists them.
* Safe to retry or clear at any point: batches already submitted are re-attached, not resent.

Needs the pool `{POOL}` (slots x the hook's `max_in_flight` <= 10): `{POOL_COMMAND}`.
"""


@dag(
    dag_id="mailchimp_audience_sync",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    doc_md=DOC,
    tags=["mailchimp", "forward-sync"],
    params={
        "full_refresh": Param(False, type="boolean", description="Resend every customer, changed or not."),
        "dry_run": Param(False, type="boolean", description="Record the plan in mailchimp_sync_result; send nothing."),
        "retry_archived": Param(False, type="boolean",
                                description="Re-add members archived in Mailchimp (otherwise they are left archived)."),
        "retry_failed": Param(False, type="boolean",
                              description="Send only the members whose last outcome was failed, plus the "
                                          "quarantined ones (their quarantine lifted for this run)."),
        "allow_mass_delete": Param(False, type="boolean",
                                   description="Archive members even when more than mass_delete.max_share of them "
                                               "left the customers query (on_delete: archive; a broken view?)."),
        "ensure_only": Param(False, type="boolean",
                             description="Only find or create the audience and its merge fields; sync no member."),
    },
    default_args=default_args(),
)
def mailchimp_audience_sync() -> None:
    @task
    def ensure_audience(params: dict | None = None) -> str:
        """Find or create the audience, create missing merge fields and check the mapping against
        it (before any member is written); create the bookkeeping tables. Returns the list id.
        In a dry run nothing is created in Mailchimp (a missing audience gets a placeholder id)."""
        from mailchimp_provider.hooks.mailchimp import MailchimpHook
        from mailchimp_provider.sync.audience import ensure_audience as ensure
        from mailchimp_provider.warehouse.connection import get_engine
        from mailchimp_provider.warehouse.tables import WarehouseTables

        WarehouseTables(CONFIG.table_prefix, CONFIG.table_schema).create_all(get_engine(CONFIG.warehouse_conn_id))
        dry_run = bool((params or {}).get("dry_run"))
        check = ensure(MailchimpHook(mailchimp_conn_id=CONFIG.mailchimp_conn_id), CONFIG, source=str(CONFIG_PATH),
                       dry_run=dry_run)
        return check.list_id

    list_id = ensure_audience()
    MailchimpAudienceSyncOperator(
        task_id="sync_members",
        list_id=list_id,
        config_path=str(CONFIG_PATH),
        outlets=[AUDIENCE_MEMBERS],
        doc_md="Plans, sends (batches) and records the member writes; the log ends with the summary table.",
    )


mailchimp_audience_sync()
