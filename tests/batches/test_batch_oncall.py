"""On-call safety: a task that dies right after submitting is retried and re-attaches; nothing is sent twice.

The test DAG's operator raises right after its first batch is on record in the ledger (the state
a killed worker leaves behind). Airflow retries it (retries=1, retry_delay=0, run by
``dag.test()``); the second try must re-attach to the batch, apply its results and carry on with
the next phase, and the emulator must have applied every member upsert exactly once.
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from batch_helpers import PUT_MEMBER_ROUTE, batch_count, emails, load_dag, run_dag, task_outcome, try_numbers

from mailchimp_provider.warehouse.tables import WarehouseTables

DAGS = "test_batch_lifecycle_dags.py"
TAGS_ROUTE = "POST /lists/{list_id}/members/{subscriber_hash}/tags"


@pytest.mark.parametrize("mode", ["sync", "deferrable"])
def test_retried_task_reattaches_and_applies_each_operation_once(
    airflow_db: None, emulator: Any, sqlite_warehouse: Any, audience: str, mode: str, capfd: pytest.CaptureFixture[str]
) -> None:
    # Slow enough that the batch is still running when the retry starts: it must wait, not resend.
    emulator.admin("POST", "faults", json={"batch_ops_per_second": 8})
    addresses = emails(6)

    dag_run = run_dag(load_dag(DAGS, f"test_batch_lifecycle_oncall_{mode}"), {"list_id": audience, "addresses": addresses})

    state, xcoms = task_outcome(dag_run, "upsert")
    assert state == "success"
    assert try_numbers(dag_run, "upsert") == 2
    assert xcoms["return_value"] == {"members": 6, "tags": 6}

    stats = emulator.admin("GET", "stats")["routes"]
    assert stats["POST /batches"]["total"] == 2  # one batch per phase, none resent
    assert batch_count(emulator, PUT_MEMBER_ROUTE) == 6  # every upsert applied exactly once
    assert batch_count(emulator, TAGS_ROUTE) == 6

    table = WarehouseTables().batch
    with sqlite_warehouse.engine.connect() as conn:
        rows = conn.execute(sa.select(table.c.entity, table.c.applied_at, table.c.status)
                            .where(table.c.run_id == dag_run.run_id).order_by(table.c.submitted_at)).all()
    assert [(entity, status) for entity, _, status in rows] == [("members", "finished"), ("tags", "finished")]
    assert all(applied_at is not None for _, applied_at, _ in rows)

    output = capfd.readouterr()
    log = output.out + output.err
    assert "simulated worker crash right after submitting" in log
    assert "Re-attaching to 1 batch(es) submitted by an earlier try" in log


def test_a_subclass_that_never_stops_planning_is_stopped_by_max_rounds(
    airflow_db: None, emulator: Any, sqlite_warehouse: Any, audience: str, capfd: pytest.CaptureFixture[str]
) -> None:
    # "test@..." looks fake to Mailchimp: every upsert fails, and this buggy subclass re-plans failures.
    dag_run = run_dag(load_dag(DAGS, "test_batch_lifecycle_runaway"), {"list_id": audience, "addresses": ["test@acme-outfitters.com"]})

    state, _ = task_outcome(dag_run, "upsert")
    assert state == "failed"
    assert emulator.admin("GET", "stats")["routes"]["POST /batches"]["total"] == 3
    log = "".join(capfd.readouterr())
    assert "next_operations() still returned work after 3 rounds (max_rounds=3)" in log
