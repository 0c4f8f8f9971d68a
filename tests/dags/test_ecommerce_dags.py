"""Test-only DAG for tests/ecommerce: the shipped e-commerce sync's tasks, with the test config
(tests/ecommerce/ecommerce_sync_test.yaml: a test store, small chunks, fast polling) and no
retry delay, so ``dag.test()`` runs in seconds."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from airflow.sdk import DAG

from mailchimp_provider.operators.ecommerce import ecommerce_sync_params, ecommerce_sync_tasks

CONFIG = Path(__file__).resolve().parents[1] / "ecommerce" / "ecommerce_sync_test.yaml"

with DAG(
    "test_ecommerce_sync",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    tags=["test"],
    params=ecommerce_sync_params(),
    default_args={"retries": 1, "retry_delay": timedelta(seconds=0)},
) as dag:
    ecommerce_sync_tasks(CONFIG)
