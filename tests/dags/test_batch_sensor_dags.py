"""Test-only DAGs for tests/batches: MailchimpBatchSensor in poke, reschedule and deferrable modes."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from mailchimp_provider.sensors.batch import MailchimpBatchSensor

BATCH_ID = "{{ dag_run.conf['batch_id'] }}"


def _dag(dag_id: str) -> DAG:
    return DAG(dag_id, schedule=None, start_date=datetime(2024, 1, 1), catchup=False, tags=["test"])


with _dag("test_batch_sensor_poke") as poke_dag:
    MailchimpBatchSensor(task_id="wait", batch_id=BATCH_ID, poke_interval=0.2, stall_timeout=1.5, timeout=60)

with _dag("test_batch_sensor_reschedule") as reschedule_dag:
    MailchimpBatchSensor(task_id="wait", batch_id=BATCH_ID, mode="reschedule", poke_interval=0.5, stall_timeout=1.5,
                         timeout=60)

with _dag("test_batch_sensor_deferrable") as deferrable_dag:
    MailchimpBatchSensor(task_id="wait", batch_id=BATCH_ID, deferrable=True, poke_interval=0.2, stall_timeout=1.5,
                         timeout=60)
