"""The sharded email-activity pull on the stack: ``pull_email_activity`` mapped over two shards,
run by the Celery workers and deferred in the triggerer, loads exactly the rows that the one
unsharded task loads from the same campaigns (``scripts/stack_dags/activity_fanout.py``, each DAG
into tables of its own in the stack's warehouse; the configs are written by conftest.py).
"""

from __future__ import annotations

import pytest
import requests
import sqlalchemy as sa
from airflow_api import AirflowApi

from mailchimp_provider.sharding import shard_of
from mailchimp_provider.warehouse.tables import WarehouseTables
from scripts.bench_stack_fanout import DAG_PREFIX, wait_dags
from scripts.demo_steps import send_demo_campaign
from scripts.stack import API_KEY, Stack

pytestmark = pytest.mark.slow
ONE, TWO = f"{DAG_PREFIX}shards_1", f"{DAG_PREFIX}shards_2"
WRITE_TIME = {"synced_at", "_fivetran_synced"}


def activity_rows(engine: sa.Engine, prefix: str) -> list[tuple]:
    """Every activity row in key order, every column but the write time (``synced_at``,
    ``_fivetran_synced``), which legitimately differs between the two runs."""
    table = WarehouseTables(prefix).activity
    columns = [c for c in table.columns if c.name not in WRITE_TIME]
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(*columns).order_by(*table.primary_key.columns))]


def activity_requests(engine: sa.Engine, prefix: str) -> dict[int, int]:
    """Email-activity operations sent in batches, by the map index of the task instance that sent them."""
    batch = WarehouseTables(prefix).batch
    with engine.connect() as conn:
        return dict(conn.execute(
            sa.select(batch.c.map_index, sa.func.sum(batch.c.operation_count))
            .where(batch.c.entity == "email_activity").group_by(batch.c.map_index)).all())


def test_two_mapped_shards_load_exactly_the_rows_of_one_task(stack: Stack, audience_run: str) -> None:
    api = AirflowApi(stack)
    lists = requests.get(f"{stack.emulator_url}/3.0/lists", auth=("stack", API_KEY), timeout=30).json()["lists"]
    assert lists, "the audience sync created no audience"
    owners: set[int] = set()
    for _ in range(8):  # campaigns until each of the two shards owns one (ids are random)
        owners.add(shard_of(send_demo_campaign(f"{stack.emulator_url}/3.0", stack.emulator_url, lists[0]["id"]), 2))
        if owners == {0, 1}:
            break
    assert owners == {0, 1}
    wait_dags(api, [ONE, TWO])
    runs = {}
    try:
        runs = {dag_id: api.trigger(dag_id) for dag_id in (ONE, TWO)}
        states = {dag_id: api.wait_run(dag_id, run_id, timeout=600) for dag_id, run_id in runs.items()}
    finally:
        for dag_id, run_id in runs.items():
            api.fail_if_unfinished(dag_id, run_id)
    assert states == {ONE: "success", TWO: "success"}, {d: api.task_instances(d, r) for d, r in runs.items()}
    mapped = [ti for ti in api.task_instances(TWO, runs[TWO]) if ti["task_id"] == "pull_email_activity"]
    assert sorted((ti["map_index"], ti["state"]) for ti in mapped) == [(0, "success"), (1, "success")]

    engine = sa.create_engine(stack.warehouse_url)
    try:
        one, two = activity_rows(engine, "fan1_"), activity_rows(engine, "fan2_")
        sent_one, sent_two = activity_requests(engine, "fan1_"), activity_requests(engine, "fan2_")
    finally:
        engine.dispose()
    print(f"\n[stack] activity: {len(one)} rows unsharded, {len(two)} rows from 2 mapped shards")
    assert one, "the campaigns produced no activity"
    assert two == one
    # Each shard sent its own batches, and together they asked for each campaign once, as the one task did.
    assert set(sent_two) == {0, 1}, sent_two
    assert sum(sent_two.values()) == sum(sent_one.values()) > 0, (sent_one, sent_two)
