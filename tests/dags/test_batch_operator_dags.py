"""Test-only DAGs for tests/batches: the generic MailchimpBatchOperator in each waiting mode.

Operations arrive through ``dag_run.conf["operations"]`` (rendered with ``tojson``, which also
exercises the JSON-string form of the templated field). Timings are short for the emulator.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, task

from mailchimp_provider.operators.batch import MailchimpBatchOperator

OPERATIONS = "{{ dag_run.conf['operations'] | tojson }}"
FAST = {"poll_interval": 0.1, "stall_timeout": 10.0}


def _dag(dag_id: str) -> DAG:
    return DAG(dag_id, schedule=None, start_date=datetime(2024, 1, 1), catchup=False, tags=["test"])


with _dag("test_batch_operator_sync") as sync_dag:
    MailchimpBatchOperator(task_id="send", operations=OPERATIONS, deferrable=False, max_operations_per_batch=4, **FAST)

with _dag("test_batch_operator_deferrable") as deferrable_dag:
    MailchimpBatchOperator(task_id="send", operations=OPERATIONS, deferrable=True, max_operations_per_batch=4, **FAST)

with _dag("test_batch_operator_partial_failure") as partial_failure_dag:
    MailchimpBatchOperator(task_id="send", operations=OPERATIONS, max_error_ratio=0.5, **FAST)

with _dag("test_batch_operator_strict") as strict_dag:
    MailchimpBatchOperator(task_id="send", operations=OPERATIONS, max_error_ratio=0.0, **FAST)

with _dag("test_batch_operator_stalled") as stalled_dag:
    MailchimpBatchOperator(task_id="send", operations=OPERATIONS, poll_interval=0.1, stall_timeout=1.0)

with _dag("test_batch_operator_stalled_deferrable") as stalled_deferrable_dag:
    MailchimpBatchOperator(task_id="send", operations=OPERATIONS, poll_interval=0.1, stall_timeout=1.0, deferrable=True)

with _dag("test_batch_operator_no_warehouse") as no_warehouse_dag:

    @task
    def plan(dag_run: Any = None) -> list[dict[str, Any]]:
        return dag_run.conf["operations"]

    # operations as an XComArg (a list straight from the upstream task), and no warehouse at all.
    MailchimpBatchOperator(task_id="send", operations=plan(), warehouse_conn_id=None, **FAST)
