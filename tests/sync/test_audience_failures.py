"""Failure handling of the audience sync through ``dag.test()``: partial batch failures, the
failure threshold, quarantine, full refresh, injected 429/5xx faults, and a task killed between
submitting a batch and applying its results (then retried by Airflow)."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from sync.conftest import POST_BATCHES, PUT_MEMBER, customer


def good_customers(n: int) -> list[dict[str, Any]]:
    return [customer(f"g{i:02d}", f"shopper.{i}@shop-mail.net", minutes=i, marketing_opt_in=i % 2 == 0) for i in range(n)]


def test_partial_failures_threshold_quarantine_and_full_refresh(make_harness: Any, warehouse: Any) -> None:
    h = make_harness(warehouse, sync={"max_attempts": 2, "max_failure_share": 0.05, "min_failures_to_fail": 1})
    # "test@" passes our email check but Mailchimp refuses it as fake: one bad record in the batch
    h.insert(*good_customers(10), customer("bad", "test@shop-mail.net", minutes=99))

    first = h.run()
    assert first.state == "failed"  # 1 of 11 writes failed: above the 5 % threshold
    res = h.results(first.run_id)
    assert sum(r["outcome"] == "ok" for r in res.values()) == 10  # the rest of the batch went through
    bad = res[("bad", "upsert")]
    assert (bad["outcome"], bad["reason"], bad["http_status"], bad["error_title"]) == (
        "failed", "email_rejected", 400, "Invalid Resource")
    assert "looks fake or invalid" in bad["error_detail"]
    assert bad["batch_id"] and bad["attempt"] == 1
    assert h.state("bad")["payload_hash"] is None and h.state("bad")["attempts"] == 1
    assert h.state("g00")["last_outcome"] == "ok"

    h.configure(sync={"max_attempts": 2, "max_failure_share": 1.0, "min_failures_to_fail": 1})
    second = h.run()  # the failure is retried (and only it), then quarantined
    assert second.state == "success"
    assert [k for k, r in h.results(second.run_id).items() if r["outcome"] != "skipped"] == [("bad", "upsert")]
    assert h.state("bad")["quarantined"] and h.state("bad")["attempts"] == 2

    ops = h.total_batch_ops()
    third = h.run()  # quarantined: not sent again until the row changes
    assert h.total_batch_ops() == ops
    assert h.outcome(third.run_id, "bad") == [("upsert", "skipped", "quarantined")]

    h.update("bad", email="now.fixed@shop-mail.net")
    fourth = h.run()
    assert h.total_batch_ops() == ops + 1
    assert h.outcome(fourth.run_id, "bad") == [("upsert", "ok", "create")]
    assert not h.state("bad")["quarantined"]

    puts = h.batch_ops(PUT_MEMBER)
    refresh = h.run(full_refresh=True)  # the "sync all" button
    assert refresh.state == "success"
    assert h.batch_ops(PUT_MEMBER) == puts + 11
    assert len(h.members()) == 11


def test_injected_429_and_5xx_faults_are_retried_and_the_sync_completes(make_harness: Any, sqlite_warehouse: Any) -> None:
    h = make_harness(sqlite_warehouse)
    h.insert(*good_customers(6))
    h.make_audience()
    h.emulator.admin("POST", "faults", json={"inject": [
        {"status": 429, "count": 2, "method": "POST", "path_prefix": "/batches", "retry_after": 0},
        {"status": 503, "count": 1, "method": "POST", "path_prefix": "/batches"},
        {"status": 500, "count": 2, "method": "GET", "path_prefix": "/batches"},
    ]})
    run = h.run()
    assert run.state == "success"
    stats = h.emulator.admin("GET", "stats")
    assert stats["injected"] == 5
    assert stats["batches"]["total"] == 1  # retried POSTs did not create duplicate batches
    assert h.batch_ops(PUT_MEMBER) == 6
    assert {r["outcome"] for r in h.results(run.run_id).values()} == {"ok"}


def test_a_task_killed_mid_batch_is_retried_without_sending_anything_twice(
    make_harness: Any, warehouse: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mailchimp_provider.operators.audience import MailchimpAudienceSyncOperator

    h = make_harness(warehouse, sync={"max_operations_per_batch": 3})
    h.insert(*good_customers(8))
    rounds = {"n": 0}
    original = MailchimpAudienceSyncOperator.on_batches_submitted

    def die_after_second_submission(self: Any, context: Any, entity: str, batch_ids: list[str]) -> None:
        rounds["n"] += 1
        if rounds["n"] == 2:  # the batch is submitted and in the ledger; its results are not applied
            raise RuntimeError("worker killed (simulated)")
        original(self, context, entity, batch_ids)

    monkeypatch.setattr(MailchimpAudienceSyncOperator, "on_batches_submitted", die_after_second_submission)
    run = h.run(dag=h.load_dag(retries=1))
    assert run.state == "success"
    assert rounds["n"] == 3  # try 1: two submissions (then died); try 2: the last one
    assert h.batch_ops(PUT_MEMBER) == 8  # nothing sent twice
    res = h.results(run.run_id)
    assert len(res) == 8 and {r["outcome"] for r in res.values()} == {"ok"}
    batch = h.tables.batch
    with h.db.connect() as conn:
        rows = conn.execute(sa.select(batch.c.batch_id, batch.c.applied_at, batch.c.operation_count)).all()
    assert len(rows) == 3 and all(r.applied_at is not None for r in rows)
    assert sorted(r.operation_count for r in rows) == [2, 3, 3]
    assert h.emulator.admin("GET", "stats")["routes"][POST_BATCHES]["total"] == 3


def test_the_next_chunk_goes_out_while_the_previous_batch_is_processed(
    make_harness: Any, warehouse: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pipelining: chunk k+1 is submitted before chunk k's results are applied, at most two batches
    are open at once, and every member is still written exactly once."""
    from mailchimp_provider.operators.audience import MailchimpAudienceSyncOperator

    h = make_harness(warehouse, sync={"max_operations_per_batch": 3})
    h.insert(*good_customers(8))
    h.emulator.admin("POST", "faults", json={"batch_ops_per_second": 10})  # each batch takes ~0.3 s
    events: list[str] = []
    submitted, applied = MailchimpAudienceSyncOperator.on_batches_submitted, MailchimpAudienceSyncOperator.apply_results

    def on_submitted(self: Any, context: Any, entity: str, batch_ids: list[str]) -> None:
        events.extend("submit" for _ in batch_ids)
        submitted(self, context, entity, batch_ids)

    def on_apply(self: Any, context: Any, entity: str, batch_id: str, results: Any) -> None:
        applied(self, context, entity, batch_id, results)
        events.append("apply")

    monkeypatch.setattr(MailchimpAudienceSyncOperator, "on_batches_submitted", on_submitted)
    monkeypatch.setattr(MailchimpAudienceSyncOperator, "apply_results", on_apply)
    run = h.run()
    assert run.state == "success"
    assert h.batch_ops(PUT_MEMBER) == 8
    res = h.results(run.run_id)
    assert len(res) == 8 and {r["outcome"] for r in res.values()} == {"ok"}
    in_flight = [events[: i + 1].count("submit") - events[: i + 1].count("apply") for i in range(len(events))]
    assert events.count("submit") == events.count("apply") == 3, events
    assert max(in_flight) == 2, events  # the next chunk went out before the previous was applied, never more
