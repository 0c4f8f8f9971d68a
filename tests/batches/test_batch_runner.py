"""BatchRunner + BatchLedger against the live emulator and real warehouses (SQLite and PostgreSQL)."""

from __future__ import annotations

import time
from typing import Any

import pytest
import sqlalchemy as sa
from batch_helpers import batch_count, emails, post_member_ops, put_member_ops

from mailchimp_provider.batches.ledger import ABANDONED, BatchLedger, BatchScope
from mailchimp_provider.batches.runner import BatchRunner
from mailchimp_provider.errors import MailchimpBatchExpiredError, MailchimpBatchStalledError
from mailchimp_provider.hooks.mailchimp import MailchimpHook
from mailchimp_provider.warehouse.tables import WarehouseTables

SCOPE = BatchScope("sync_members", "manual__2024-05-01", "push_members")


class DictStateStore:
    """Stands in for Airflow's ``context["task_state_store"]`` accessor (same get/set signature)."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set(self, key: str, value: Any, *, retention: Any = None) -> None:
        self.data[key] = value


def make_runner(warehouse: Any, *, state_store: Any = None, **kwargs: Any) -> BatchRunner:
    ledger = BatchLedger(warehouse.engine, WarehouseTables(), state_store=state_store)
    kwargs.setdefault("poll_interval", 0.1)
    kwargs.setdefault("stall_timeout", 30)
    return BatchRunner(MailchimpHook(), ledger, **kwargs)


def ledger_rows(warehouse: Any) -> list[dict[str, Any]]:
    table = WarehouseTables().batch
    with warehouse.engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(table).order_by(table.c.chunk_no)).mappings()]


def test_submit_chunks_records_each_batch_then_waits_and_streams_results(emulator: Any, warehouse: Any, audience: str) -> None:
    runner = make_runner(warehouse, max_operations_per_batch=3)
    addresses = emails(7)

    batch_ids = runner.submit(SCOPE, "members", put_member_ops(audience, addresses))

    # Every chunk is on record, as submitted, before anyone waits.
    rows = ledger_rows(warehouse)
    assert [r["batch_id"] for r in rows] == batch_ids and len(batch_ids) == 3
    assert [(r["chunk_no"], r["operation_count"], r["entity"]) for r in rows] == [(0, 3, "members"), (1, 3, "members"), (2, 1, "members")]
    assert {(r["dag_id"], r["run_id"], r["task_id"], r["map_index"]) for r in rows} == {("sync_members", "manual__2024-05-01", "push_members", -1)}
    assert [e.batch_id for e in runner.open_batches(SCOPE)] == batch_ids

    snapshots = runner.wait(batch_ids)
    assert {s["status"] for s in snapshots.values()} == {"finished"}
    results = [r for batch_id in batch_ids for r in runner.results(batch_id)]
    assert sorted(r.operation_id for r in results) == sorted(addresses)
    assert all(r.ok and r.body["status"] == "subscribed" for r in results)

    for batch_id in batch_ids:
        runner.mark_applied(batch_id)
    assert runner.open_batches(SCOPE) == []
    rows = ledger_rows(warehouse)
    assert all(r["status"] == "finished" and r["applied_at"] is not None and r["finished_operations"] == r["operation_count"] for r in rows)
    assert batch_count(emulator) == 7


def test_partial_failure_reports_each_failed_operation(emulator: Any, sqlite_warehouse: Any, audience: str) -> None:
    runner = make_runner(sqlite_warehouse)
    existing = emails(2, prefix="existing")
    for email in existing:
        emulator.api("POST", f"/lists/{audience}/members", json={"email_address": email, "status": "subscribed"}).raise_for_status()

    [batch_id] = runner.submit(SCOPE, "members", post_member_ops(audience, existing + emails(3, prefix="new")))
    snapshot = runner.wait([batch_id])[batch_id]
    results = {r.operation_id: r for r in runner.results(batch_id)}

    assert snapshot["errored_operations"] == 2
    failed = {op_id: r for op_id, r in results.items() if not r.ok}
    assert set(failed) == {f"post:{e}" for e in existing}
    assert {r.status_code for r in failed.values()} == {400}
    assert {r.title for r in failed.values()} == {"Member Exists"}
    assert all(existing[0] in r.detail or existing[1] in r.detail for r in failed.values())
    assert sum(r.ok for r in results.values()) == 3
    assert ledger_rows(sqlite_warehouse)[0]["errored_operations"] == 2


def test_batch_stuck_in_finalizing_is_reported_as_stalled_and_stays_open(emulator: Any, sqlite_warehouse: Any, audience: str) -> None:
    emulator.admin("POST", "faults", json={"stuck_finalizing": True})
    runner = make_runner(sqlite_warehouse, poll_interval=0.1, stall_timeout=1.0)
    [batch_id] = runner.submit(SCOPE, "members", put_member_ops(audience, emails(4)))

    started = time.monotonic()
    with pytest.raises(MailchimpBatchStalledError) as info:
        runner.wait([batch_id])

    assert time.monotonic() - started < 5
    message = str(info.value)
    assert batch_id in message and "finalizing" in message and "4/4 operations finished" in message
    assert "all operations are done but Mailchimp is still compiling the results archive" in message
    assert "retrying or clearing the task re-attaches" in info.value.hint
    # Not abandoned: a retry re-attaches to it.
    assert [e.batch_id for e in runner.open_batches(SCOPE)] == [batch_id]
    assert ledger_rows(sqlite_warehouse)[0]["status"] == "finalizing"


def test_expired_results_are_reported_and_the_batch_can_be_abandoned(emulator: Any, sqlite_warehouse: Any, audience: str) -> None:
    emulator.admin("POST", "faults", json={"results_ttl_seconds": 0.5})
    runner = make_runner(sqlite_warehouse)
    [batch_id] = runner.submit(SCOPE, "members", put_member_ops(audience, emails(2)))
    runner.wait([batch_id])
    time.sleep(0.8)

    with pytest.raises(MailchimpBatchExpiredError) as info:
        list(runner.results(batch_id))
    assert "clear the task to resubmit" in info.value.hint or "re-submit" in info.value.hint
    with pytest.raises(MailchimpBatchExpiredError, match="results expired") as waited:
        runner.wait([batch_id])
    assert "records without a confirmed outcome will be sent again (idempotent)" in str(waited.value)

    runner.mark_abandoned(batch_id, str(waited.value))
    assert runner.open_batches(SCOPE) == []
    row = ledger_rows(sqlite_warehouse)[0]
    assert row["status"] == ABANDONED and "results expired" in row["error"]


def test_duplicate_operation_ids_are_refused_before_anything_is_sent(emulator: Any, sqlite_warehouse: Any, audience: str) -> None:
    runner = make_runner(sqlite_warehouse)
    ops = put_member_ops(audience, emails(2))
    ops[1]["operation_id"] = ops[0]["operation_id"]
    with pytest.raises(ValueError, match=r"operation #1 .*duplicates operation #0"):
        runner.submit(SCOPE, "members", ops)
    assert "POST /batches" not in emulator.admin("GET", "stats")["routes"]
    assert runner.open_batches(SCOPE) == []


def test_ledger_is_mirrored_into_the_task_state_store(emulator: Any, sqlite_warehouse: Any, audience: str) -> None:
    store = DictStateStore()
    runner = make_runner(sqlite_warehouse, state_store=store)
    [batch_id] = runner.submit(SCOPE, "members", put_member_ops(audience, emails(1)))
    mirrored = store.data["mailchimp_batches"][batch_id]
    assert mirrored["entity"] == "members" and mirrored["operation_count"] == 1 and mirrored["applied_at"] is None

    # Without the warehouse row (say its write failed after the POST), the mirror still re-attaches.
    table = WarehouseTables().batch
    with sqlite_warehouse.engine.begin() as conn:
        conn.execute(sa.delete(table))
    assert [e.batch_id for e in runner.open_batches(SCOPE)] == [batch_id]

    runner.wait([batch_id])
    runner.mark_applied(batch_id)
    assert store.data["mailchimp_batches"][batch_id]["applied_at"] is not None
    assert runner.open_batches(SCOPE) == []


def test_state_store_alone_can_hold_the_ledger(emulator: Any, audience: str) -> None:
    store = DictStateStore()
    runner = BatchRunner(MailchimpHook(), BatchLedger(None, None, state_store=store), poll_interval=0.1)
    first = runner.submit(SCOPE, "members", put_member_ops(audience, emails(2)))
    second = runner.submit(SCOPE, "members", put_member_ops(audience, emails(2, prefix="other")))
    assert [e.chunk_no for e in runner.open_batches(SCOPE)] == [0, 1]
    runner.wait(first + second)
    runner.mark_applied(first[0])
    assert [e.batch_id for e in runner.open_batches(SCOPE)] == second
    assert runner.open_batches(BatchScope("other_dag", "r", "t")) == []
