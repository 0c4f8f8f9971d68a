"""SIGKILLs of the sync tasks at the moments that matter, each followed by a retry of the same run.

The DAG runs in a child process (``kill_runner.py``) that kills itself right after the chosen
moment is reached: Mailchimp accepted a batch the ledger does not know yet, the batch is on
record, the first poll of a running batch, one batch's bookkeeping committed but the batch not
marked applied. The retry (the same run, as when Airflow or the on-call engineer retries the
task) must end with 0 duplicates, 0 lost, and a result row for every record, read from the
emulator's state and counters and from the warehouse.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from batch_helpers import run_dag
from fault_helpers import audience_outcome, audience_rows, emulator_stats, ledger_rows, wipe_bookkeeping

from mailchimp_provider.warehouse.connection import dispose_engines

pytestmark = pytest.mark.slow
RUNNER = Path(__file__).with_name("kill_runner.py")
PUT_MEMBER = "PUT /lists/{list_id}/members/{subscriber_hash}"


def kill_at(dag: str, moment: str, run_after: datetime, tmp_path: Path) -> None:
    """Run ``dag`` in a child process that SIGKILLs itself at ``moment``; assert it died there."""
    dispose_engines()  # no pooled connection shared across the fork of the child's interpreter
    log = tmp_path / f"killed-{dag}-{moment}.log"
    with open(log, "wb") as out:
        proc = subprocess.run([sys.executable, str(RUNNER), dag, moment, run_after.isoformat()],
                              env=dict(os.environ), stdout=out, stderr=subprocess.STDOUT, timeout=240)
    assert proc.returncode == -signal.SIGKILL, f"not killed at {moment} (rc {proc.returncode}):\n" + log.read_text()[-4000:]


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


@pytest.mark.parametrize("moment", ["after_post", "after_submit", "mid_wait", "mid_apply"])
def test_audience_sync_killed_and_retried_loses_and_duplicates_nothing(
    make_harness: Any, warehouse: Any, moment: str, tmp_path: Path
) -> None:
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
    counts = result_row_counts(h.db, retried.run_id)
    assert {rid for _, rid in counts} == {r["customer_id"] for r in rows}  # every record has a result row
    assert set(counts.values()) == {1}
    assert {r[2] for r in outcome["results"]} == {"ok"}
    applied = h.batch_ops(PUT_MEMBER)
    if moment == "after_post":
        # The accepted batch the ledger never heard of ran; the retry sends its records once more
        # (idempotent PUTs): at most one chunk is sent twice.
        assert 200 < applied <= 240
    else:
        assert applied == 200  # the retry re-attached to recorded batches: nothing sent twice
    ledger = ledger_rows(h.db, retried.run_id)
    assert ledger and all(row["applied_at"] is not None for row in ledger)


@pytest.mark.parametrize("moment", ["mid_apply"])
def test_ecommerce_sync_killed_and_retried_ends_as_a_clean_run(
    warehouse: Any, emulator: Any, airflow_db: None, moment: str, tmp_path: Path
) -> None:
    from ecommerce_harness import results, run_sync, seed_shop, store_doc

    seed_shop(warehouse)
    clean = run_sync()
    assert clean.state == "success"

    def outcome(run_id: str) -> dict[str, Any]:
        doc = store_doc(emulator)
        return {
            "store": {kind: sorted(doc[kind]) for kind in ("customers", "products", "orders", "promo_rules")},
            "lines": sorted((oid, len(o.get("lines") or [])) for oid, o in doc["orders"].items()),
            "results": sorted((r["entity"], r["record_id"], r["outcome"], r["reason"] or "") for r in results(warehouse.engine, run_id)),
        }

    expected, expected_rows = outcome(clean.run_id), result_row_counts(warehouse.engine, clean.run_id)
    assert expected_rows, "the clean run wrote no result rows"
    emulator.admin("POST", "reset")
    wipe_bookkeeping(warehouse.engine)
    run_after = run_after_now()

    kill_at("ecommerce", moment, run_after, tmp_path)
    retried = run_sync(logical_date=run_after)

    assert retried.state == "success"
    assert outcome(retried.run_id) == expected
    assert result_row_counts(warehouse.engine, retried.run_id) == expected_rows  # every record, once


@pytest.mark.parametrize("moment", ["mid_wait", "mid_load"])
def test_engagement_pull_killed_and_retried_writes_the_rows_of_a_clean_run(
    warehouse: Any, emulator: Any, airflow_db: None, moment: str, tmp_path: Path
) -> None:
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
