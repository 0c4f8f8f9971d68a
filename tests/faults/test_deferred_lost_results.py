"""Lost batch results in deferrable mode end exactly as they do synchronously.

A deferrable sync task ends its process at every wait and resumes (``execute_complete``) with a
new engine, so what it sent cannot live in memory: before deferring it writes the writes in flight
down as ``pending`` rows, an abandoned batch makes them ``result_lost``, and a write sent
``MAX_PASSES`` times in the try is not planned again. ``dag.test()`` runs each trigger inline and
resumes the task with its event, as the triggerer does. The figures are the synchronous test's
(``test_lost_results.py``): each record sent ``MAX_PASSES`` times, every record ``pending``, the
``SyncUnconfirmed`` failure with its message; a retry of the task sends again; the next run heals.
"""

from __future__ import annotations

from typing import Any

import pytest
from fault_helpers import audience_rows

from mailchimp_provider.sync.engine import MAX_PASSES

PUT_MEMBER = "PUT /lists/{list_id}/members/{subscriber_hash}"
# Each batch is still unfinished at the operator's first look, so every one is waited for in the
# trigger: it stays ``finalizing`` for 1.5 s after its operations ran. (A rate of 50 ops/s, 0.2 s
# per chunk of 10, was not enough: under load the first look came after one chunk had finished.)
EXPIRE_AT_ONCE = {"results_ttl_seconds": 0.0, "batch_ops_per_second": 0, "batch_finalizing_seconds": 1.5}
KEEP_RESULTS = {"results_ttl_seconds": 3600.0, "batch_ops_per_second": 0, "batch_finalizing_seconds": 0.0}


def deferrable_dag(h: Any, *, retries: int = 0) -> Any:
    dag = h.load_dag(retries=retries)
    task = dag.get_task("sync_members")
    task.deferrable = True
    task.poll_interval = 0.05
    return dag


def test_deferred_sync_with_lost_results_is_bounded_and_fails_with_every_record_pending(
    make_harness: Any, warehouse: Any, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    h = make_harness(warehouse, sync={"max_operations_per_batch": 10})
    rows = audience_rows(30)
    h.insert(*rows)
    h.make_audience()
    h.emulator.admin("POST", "faults", json=EXPIRE_AT_ONCE)

    lost = h.run(dag=deferrable_dag(h))

    assert lost.state == "failed"
    log = capfd.readouterr()
    text = log.out + log.err + caplog.text
    # every batch was waited for in the trigger, and each resume found it expired
    assert text.count("[DAG TEST] running trigger in line") == 3 * MAX_PASSES
    message = next(line for line in text.splitlines() if "SyncUnconfirmed: " in line)
    assert "SyncUnconfirmed: 30 member record(s) were sent to Mailchimp but their results never arrived" in message
    assert f"{3 * MAX_PASSES} batch(es) abandoned" in message and "the batch is unknown or expired" in message
    assert "retry or clear this task" in message and "outcome = 'pending'" in message
    assert h.batch_ops(PUT_MEMBER) == 30 * MAX_PASSES  # bounded across deferrals, as synchronously
    members = h.members()
    assert len(members) == len({m["email_address"] for m in members}) == 30  # 0 lost, 0 duplicates
    results = h.results(lost.run_id)
    assert {rid for rid, _ in results} == {r["customer_id"] for r in rows}  # every record has a result row
    assert {(op, r["outcome"], r["reason"]) for (_, op), r in results.items()} == {("upsert", "pending", "result_lost")}
    assert {r["attempt"] for r in results.values()} == {MAX_PASSES}  # sends in the try
    assert {h.state(r["customer_id"])["last_outcome"] for r in rows} == {"pending"}
    assert all(h.state(r["customer_id"])["payload_hash"] is None for r in rows)  # nothing confirmed

    h.emulator.admin("POST", "faults", json=KEEP_RESULTS)
    healed = h.run(dag=deferrable_dag(h))

    assert healed.state == "success"
    results = h.results(healed.run_id)
    assert {(rid, r["outcome"], r["reason"]) for (rid, op), r in results.items() if op == "upsert"} == {
        (r["customer_id"], "ok", "update") for r in rows}  # the lost writes had happened
    assert h.batch_ops(PUT_MEMBER) == 30 * MAX_PASSES + 30  # each record once more, no more
    assert sorted(m["status"] for m in h.members()).count("subscribed") == 24


def test_a_retry_of_a_deferred_try_that_lost_its_results_sends_again(
    make_harness: Any, warehouse: Any
) -> None:
    """The bound is per try: the retry Airflow makes after ``SyncUnconfirmed`` resends the
    unconfirmed records (the message tells the on-call engineer so), up to the same bound."""
    h = make_harness(warehouse, sync={"max_operations_per_batch": 10})
    rows = audience_rows(10)
    h.insert(*rows)
    h.make_audience()
    h.emulator.admin("POST", "faults", json=EXPIRE_AT_ONCE)

    lost = h.run(dag=deferrable_dag(h, retries=1))

    assert lost.state == "failed"
    assert h.batch_ops(PUT_MEMBER) == 10 * MAX_PASSES * 2  # two tries, each bounded
    results = h.results(lost.run_id)
    assert {(r["outcome"], r["reason"], r["attempt"]) for r in results.values()} == {("pending", "result_lost", MAX_PASSES)}
    assert len(h.members()) == 10
