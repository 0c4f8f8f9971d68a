"""SIGKILLs of the sync tasks at the moments that matter, each followed by a retry of the same run.

The DAG runs in a child process (``kill_runner.kill_at``) that kills itself right after the chosen
moment is reached: Mailchimp accepted a batch the ledger only has the intent of, the batch is on
record, the first poll of a running batch, one batch's bookkeeping committed but the batch not
marked applied. The retry (the same run, as when Airflow or the on-call engineer retries the
task) must end with 0 duplicates, 0 lost, and a result row for every record, read from the
emulator's state and counters and from the warehouse. Moments whose outcome depends on how the
warehouse commits run on SQLite and PostgreSQL; a poll (mid_wait) writes nothing, so SQLite proves it.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from batch_helpers import run_dag
from fault_helpers import (
    audience_outcome,
    audience_rows,
    clean_ecommerce_run,
    ecommerce_outcome,
    emulator_stats,
    ledger_rows,
    wipe_bookkeeping,
)

pytestmark = pytest.mark.slow
PUT_MEMBER = "PUT /lists/{list_id}/members/{subscriber_hash}"


@pytest.fixture(autouse=True)
def _fork_server_warming() -> None:
    """The kill runner's fork server starts importing while the test sets up its world."""
    from kill_runner import start_fork_server

    start_fork_server()


def kill_at(dag: str, moment: str, run_after: datetime, tmp_path: Path) -> None:
    """Run ``dag`` in a child process that SIGKILLs itself at ``moment``; assert it died there."""
    from kill_runner import kill_at as fork_and_kill

    fork_and_kill(dag, moment, run_after, tmp_path / f"killed-{dag}-{moment.replace(':', '-')}.log")


def run_after_now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=1)


def result_row_counts(engine: sa.Engine, run_id: str) -> dict[tuple[str, str], int]:
    """``(entity, record_id) -> result rows`` of a run (the sync writes one per record and operation)."""
    from mailchimp_provider.warehouse.tables import WarehouseTables

    t = WarehouseTables().sync_result
    with engine.connect() as conn:
        rows = conn.execute(sa.select(t.c.entity, t.c.record_id, sa.func.count())
                            .where(t.c.run_id == run_id).group_by(t.c.entity, t.c.record_id)).all()
    return {(entity, record_id): n for entity, record_id, n in rows}


def kill_and_retry_audience(make_harness: Any, warehouse: Any, moment: str, tmp_path: Path) -> None:
    h = make_harness(warehouse, sync={"max_operations_per_batch": 40})
    rows = audience_rows(200)
    h.insert(*rows)
    h.make_audience()
    if moment == "mid_wait":
        h.emulator.admin("POST", "faults", json={"batch_ops_per_second": 400})  # still running at the first poll
    run_after = run_after_now()

    kill_at("audience", moment, run_after, tmp_path)
    h.emulator.admin("POST", "faults", json={"batch_ops_per_second": 0})
    retried = run_dag(h.load_dag(retries=0), None, run_after=run_after)

    assert retried.state == "success"
    outcome = audience_outcome(h, retried.run_id)
    emails = [m[0] for m in outcome["members"]]
    assert len(emails) == len(set(emails)) == 200  # 0 lost, 0 duplicates
    assert sorted(m[1] for m in outcome["members"]).count("subscribed") == 160
    assert h.batch_ops(PUT_MEMBER) == 200  # every member written exactly once: nothing sent twice
    results = {(rid, op, outcome_, reason) for rid, op, outcome_, reason in outcome["results"]}
    # one result row per record, and every member of this first sync is a "create": members the
    # killed try's batch created (in the same second as its send, as usual) are not relabelled
    # "update" by the retry, and no extra tags write follows
    assert results == {(r["customer_id"], "upsert", "ok", "create") for r in rows}
    ledger = ledger_rows(h.db, retried.run_id)
    assert ledger and all(row["applied_at"] is not None for row in ledger)
    assert emulator_stats(h.emulator)["batches"]["total"] == len(ledger)  # every batch on record, none orphaned


@pytest.mark.parametrize("moment", ["after_post", "after_submit", "mid_apply"])
def test_audience_sync_killed_and_retried_loses_and_duplicates_nothing(
    make_harness: Any, warehouse: Any, moment: str, tmp_path: Path
) -> None:
    kill_and_retry_audience(make_harness, warehouse, moment, tmp_path)


def test_audience_sync_killed_mid_wait_reattaches_and_duplicates_nothing(
    make_harness: Any, sqlite_warehouse: Any, tmp_path: Path
) -> None:
    kill_and_retry_audience(make_harness, sqlite_warehouse, "mid_wait", tmp_path)


@pytest.mark.parametrize("moment", ["after_post:order", "mid_apply"])
def test_ecommerce_sync_killed_and_retried_ends_as_a_clean_run(
    warehouse: Any, emulator: Any, airflow_db: None, moment: str, tmp_path: Path
) -> None:
    from ecommerce_harness import ORDERS_POST, batch_ops, run_sync

    expected, expected_rows = clean_ecommerce_run(warehouse, emulator)
    emulator.admin("POST", "reset")
    wipe_bookkeeping(warehouse.engine)
    run_after = run_after_now()

    kill_at("ecommerce", moment, run_after, tmp_path)
    retried = run_sync(logical_date=run_after)

    assert retried.state == "success"
    assert ecommerce_outcome(emulator, warehouse.engine, retried.run_id) == expected
    assert result_row_counts(warehouse.engine, retried.run_id) == expected_rows  # every record, once
    assert batch_ops(emulator, ORDERS_POST) == len(expected["store"]["orders"])  # no order sent twice


def kill_and_retry_engagement(warehouse: Any, emulator: Any, moment: str, tmp_path: Path) -> None:
    from engagement_harness import EngagementHarness
    from test_storms import engagement_world

    h = EngagementHarness(warehouse, emulator)
    engagement_world(h)
    h.run()
    expected = h.snapshot()
    wipe_bookkeeping(h.db)
    run_after = run_after_now()

    kill_at("engagement", moment, run_after, tmp_path)
    h.run(run_after=run_after)

    assert h.snapshot() == expected
    assert emulator_stats(emulator)["batches"]["by_status"].keys() <= {"finished"}


def test_engagement_pull_killed_mid_load_and_retried_writes_the_rows_of_a_clean_run(
    warehouse: Any, emulator: Any, airflow_db: None, tmp_path: Path
) -> None:
    kill_and_retry_engagement(warehouse, emulator, "mid_load", tmp_path)


def test_engagement_pull_killed_mid_wait_and_retried_writes_the_rows_of_a_clean_run(
    sqlite_warehouse: Any, emulator: Any, airflow_db: None, tmp_path: Path
) -> None:
    kill_and_retry_engagement(sqlite_warehouse, emulator, "mid_wait", tmp_path)
