"""MailchimpBatchOperator run by Airflow (``dag.test()``) against the emulator, synchronously and deferred.

``dag.test()`` runs a deferred task's trigger inline (``_run_inline_trigger``) and resumes the
task with the event, so the deferrable path is exercised end to end without a triggerer process.
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from batch_helpers import batch_count, emails, load_dag, post_member_ops, put_member_ops, run_dag, task_outcome

from mailchimp_provider.warehouse.tables import WarehouseTables

DAGS = "test_batch_operator_dags.py"


def ledger(warehouse: Any, dag_run: Any) -> list[dict[str, Any]]:
    table = WarehouseTables().batch
    with warehouse.engine.connect() as conn:
        rows = conn.execute(sa.select(table).where(table.c.run_id == dag_run.run_id).order_by(table.c.entity))
        return [dict(r) for r in rows.mappings()]


@pytest.mark.parametrize("dag_id", ["test_batch_operator_sync", "test_batch_operator_deferrable"])
def test_operations_are_sent_in_batches_and_summarised(
    airflow_db: None, emulator: Any, sqlite_warehouse: Any, audience: str, dag_id: str
) -> None:
    if dag_id.endswith("deferrable"):
        emulator.admin("POST", "faults", json={"batch_ops_per_second": 10})  # slow enough to really defer
    addresses = emails(10)

    dag_run = run_dag(load_dag(DAGS, dag_id), {"operations": put_member_ops(audience, addresses)})

    state, xcoms = task_outcome(dag_run, "send")
    assert state == "success"
    summary = xcoms["return_value"]
    assert summary["operations"] == 10 and summary["succeeded"] == 10 and summary["errored"] == 0
    assert summary["by_status_code"] == {"200": 10}
    rows = ledger(sqlite_warehouse, dag_run)
    assert [r["entity"] for r in rows] == ["ops:0-4", "ops:4-8", "ops:8-10"]  # max_operations_per_batch=4
    assert all(r["applied_at"] is not None and r["status"] == "finished" for r in rows)
    assert sorted(xcoms["mailchimp_batch_ids"]) == sorted(r["batch_id"] for r in rows)
    # a warehouse ledger: the link opens the sync dashboard's batch view (Mailchimp has no page for batches)
    assert xcoms["_link_MailchimpBatchLink"].endswith(f"/mailchimp/#batch/{xcoms['mailchimp_batch_ids'][-1]}")
    assert batch_count(emulator) == 10


def test_partial_failure_within_max_error_ratio_succeeds_with_the_failures_listed(
    airflow_db: None, emulator: Any, sqlite_warehouse: Any, audience: str
) -> None:
    existing = emails(2, prefix="existing")
    for email in existing:
        emulator.api("POST", f"/lists/{audience}/members", json={"email_address": email, "status": "subscribed"}).raise_for_status()
    operations = post_member_ops(audience, existing + emails(3, prefix="new"))

    dag_run = run_dag(load_dag(DAGS, "test_batch_operator_partial_failure"), {"operations": operations})

    state, xcoms = task_outcome(dag_run, "send")
    assert state == "success"
    summary = xcoms["return_value"]
    assert (summary["operations"], summary["succeeded"], summary["errored"]) == (5, 3, 2)
    assert summary["by_status_code"] == {"200": 3, "400": 2}
    assert {e["operation_id"] for e in summary["first_errors"]} == {f"post:{e}" for e in existing}
    assert {e["title"] for e in summary["first_errors"]} == {"Member Exists"}
    [row] = ledger(sqlite_warehouse, dag_run)
    assert row["errored_operations"] == 2 and row["applied_at"] is not None


def test_errors_above_max_error_ratio_fail_the_task_naming_the_operations(
    airflow_db: None, emulator: Any, sqlite_warehouse: Any, audience: str, capfd: pytest.CaptureFixture[str]
) -> None:
    operations = put_member_ops(audience, ["noreply@acme-outfitters.com"]) + put_member_ops(audience, emails(1))

    state, _ = task_outcome(run_dag(load_dag(DAGS, "test_batch_operator_strict"), {"operations": operations}), "send")

    assert state == "failed"
    log = "".join(capfd.readouterr())
    assert "1 of 2 operation(s) failed (50.0% > max_error_ratio=0.0%)" in log
    assert "noreply@acme-outfitters.com: 400 Invalid Resource" in log


@pytest.mark.parametrize("dag_id", ["test_batch_operator_stalled", "test_batch_operator_stalled_deferrable"])
def test_stalled_batch_fails_the_task_and_stays_open_for_a_retry(
    airflow_db: None, emulator: Any, sqlite_warehouse: Any, audience: str, dag_id: str, capfd: pytest.CaptureFixture[str]
) -> None:
    emulator.admin("POST", "faults", json={"stuck_finalizing": True})

    dag_run = run_dag(load_dag(DAGS, dag_id), {"operations": put_member_ops(audience, emails(3))})

    state, _ = task_outcome(dag_run, "send")
    assert state == "failed"
    log = "".join(capfd.readouterr())
    assert "MailchimpBatchStalledError" in log and "still compiling the results archive" in log
    assert "retrying or clearing the task re-attaches to it" in log
    [row] = ledger(sqlite_warehouse, dag_run)
    assert row["status"] == "finalizing" and row["applied_at"] is None  # open: a clear re-attaches


def test_without_a_warehouse_the_task_state_store_holds_the_ledger(
    airflow_db: None, emulator: Any, audience: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_WAREHOUSE_DEFAULT", raising=False)

    dag_run = run_dag(load_dag(DAGS, "test_batch_operator_no_warehouse"), {"operations": put_member_ops(audience, emails(3))})

    state, xcoms = task_outcome(dag_run, "send")
    assert state == "success"
    assert xcoms["return_value"]["succeeded"] == 3 and len(xcoms["mailchimp_batch_ids"]) == 1
    assert batch_count(emulator) == 3


def test_a_cleared_task_whose_batch_results_expired_abandons_it_and_sends_again(
    airflow_db: None, emulator: Any, sqlite_warehouse: Any, audience: str, capfd: pytest.CaptureFixture[str]
) -> None:
    """The on-call case "cleared the next day": the earlier try's batch is gone from Mailchimp."""
    import time
    from datetime import datetime, timezone

    from mailchimp_provider.batches.ledger import BatchLedger, BatchScope
    from mailchimp_provider.hooks.mailchimp import MailchimpHook

    addresses = emails(4)
    run_after = datetime.now(timezone.utc).replace(microsecond=0)
    scope = BatchScope("test_batch_lifecycle_plain", f"manual__{run_after.isoformat()}", "upsert")
    emulator.admin("POST", "faults", json={"results_ttl_seconds": 0.2})
    old = MailchimpHook().submit_batch(put_member_ops(audience, addresses[:2]))
    BatchLedger(sqlite_warehouse.engine, WarehouseTables()).record_submission(scope, "members", 0, old["id"], 2, batch=old)
    while emulator.api("GET", f"/batches/{old['id']}").status_code != 404:
        time.sleep(0.1)
    emulator.admin("POST", "faults", json={"results_ttl_seconds": 3600})  # today's batches keep their results

    dag_run = run_dag(load_dag("test_batch_lifecycle_dags.py", "test_batch_lifecycle_plain"),
                      {"list_id": audience, "addresses": addresses}, run_after=run_after)

    assert dag_run.run_id == scope.run_id
    state, xcoms = task_outcome(dag_run, "upsert")
    assert state == "success" and xcoms["return_value"] == {"members": 4, "tags": 4}
    rows = {r["batch_id"]: r for r in ledger(sqlite_warehouse, dag_run)}
    assert rows[old["id"]]["status"] == "abandoned" and "404" in rows[old["id"]]["error"]
    log = "".join(capfd.readouterr())
    assert "Re-attaching to 1 batch(es) submitted by an earlier try" in log
    assert f"Abandoned batch {old['id']}" in log and "will be re-planned: they are sent again (idempotent)" in log
    # The two upserts of the lost batch were sent again with the rest; nothing else twice.
    assert batch_count(emulator) == 2 + 4
