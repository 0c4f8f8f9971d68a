"""The shipped audience sync's ``sync_members`` waiting *synchronously* (``deferrable=False``).

In the stack every operator defers by default, so a worker holds ``sync_members`` only while it
plans and applies; the kill-a-worker-mid-batch test needs the deployment where the worker itself
waits for the open batch. Same operator, same config, same pool and retries as the shipped DAG;
the audience is resolved from the config (the shipped DAG's run created it).
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import Param, dag

from mailchimp_provider.dag_defaults import default_args
from mailchimp_provider.operators.audience import MailchimpAudienceSyncOperator


@dag(
    dag_id="stack_audience_sync_polling",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["stack-test"],
    params={
        "full_refresh": Param(False, type="boolean"),
        "dry_run": Param(False, type="boolean"),
    },
    default_args=default_args(),
)
def stack_audience_sync_polling() -> None:
    MailchimpAudienceSyncOperator(task_id="sync_members", deferrable=False, poll_interval=1.0)


stack_audience_sync_polling()
