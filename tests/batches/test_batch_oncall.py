"""On-call safety: a task that dies right after submitting is retried and re-attaches; nothing is sent twice.

The test DAG's operator raises right after its first batch is on record in the ledger (the state
a killed worker leaves behind). Airflow retries it (retries=1, retry_delay=0, run by
``dag.test()``); the second try must re-attach to the batch, apply its results and carry on with
the next phase, and the emulator must have applied every member upsert exactly once.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa

from batch_helpers import PUT_MEMBER_ROUTE, batch_count, emails, load_dag, run_dag, task_outcome, try_numbers

from mailchimp_provider.batches.ledger import SUBMITTING
from mailchimp_provider.warehouse.tables import WarehouseTables

DAGS = "test_batch_lifecycle_dags.py"
TAGS_ROUTE = "POST /lists/{list_id}/members/{subscriber_hash}/tags"


@pytest.mark.parametrize("mode", ["sync", "deferrable"])
def test_retried_task_reattaches_and_applies_each_operation_once(
    airflow_db: None, emulator: Any, warehouse: Any, audience: str, mode: str, capfd: pytest.CaptureFixture[str]
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
    with warehouse.engine.connect() as conn:
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


def test_worker_killed_mid_wait_is_cleared_and_reattaches(
    airflow_db: None, emulator: Any, sqlite_warehouse: Any, audience: str, tmp_path: Any,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A real SIGKILL: the task runs in a child process that is killed once its batch is on record."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from datetime import datetime, timezone
    from pathlib import Path

    emulator.admin("POST", "faults", json={"batch_ops_per_second": 2})  # the batch outlives the worker
    addresses = emails(8)
    run_after = datetime.now(timezone.utc).replace(microsecond=0)
    conf = {"list_id": audience, "addresses": addresses}
    root = Path(__file__).resolve().parents[2]
    script = (
        "import json, sys; from datetime import datetime; from batch_helpers import load_dag, run_dag; "
        f"run_dag(load_dag({DAGS!r}, 'test_batch_lifecycle_plain'), json.loads(sys.argv[1]), "
        "run_after=datetime.fromisoformat(sys.argv[2]))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        str(root / p) for p in ("plugins", "emulator", "tests", "tests/batches"))}
    log_path = tmp_path / "killed_worker.log"
    with open(log_path, "wb") as log_file:
        worker = subprocess.Popen([sys.executable, "-c", script, json.dumps(conf), run_after.isoformat()],
                                  env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            table = WarehouseTables().batch
            deadline = time.monotonic() + 120
            while True:
                assert worker.poll() is None, "worker ended before submitting:\n" + log_path.read_text()[-3000:]
                assert time.monotonic() < deadline, "worker did not submit in time"
                if sa.inspect(sqlite_warehouse.engine).has_table(table.name):
                    with sqlite_warehouse.engine.connect() as conn:
                        # The intent row committed before POST /batches is not a batch on record yet.
                        submitted = sa.select(sa.func.count()).select_from(table).where(table.c.status != SUBMITTING)
                        if conn.execute(submitted).scalar():
                            break
                time.sleep(0.05)
            os.killpg(worker.pid, signal.SIGKILL)  # the worker dies mid-wait, batch still running
        finally:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=30)
    assert batch_count(emulator, PUT_MEMBER_ROUTE) < len(addresses), "the batch should still be running"

    # The on-call engineer clears the task: dag.test() of the same run clears and re-runs it.
    dag_run = run_dag(load_dag(DAGS, "test_batch_lifecycle_plain"), conf, run_after=run_after)

    state, xcoms = task_outcome(dag_run, "upsert")
    assert state == "success" and xcoms["return_value"] == {"members": 8, "tags": 8}
    assert emulator.admin("GET", "stats")["routes"]["POST /batches"]["total"] == 2
    assert batch_count(emulator, PUT_MEMBER_ROUTE) == 8
    assert batch_count(emulator, TAGS_ROUTE) == 8
    log = "".join(capfd.readouterr())
    assert "Re-attaching to 1 batch(es) submitted by an earlier try" in log
