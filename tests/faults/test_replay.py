"""``POST /batches`` is never blindly replayed.

The emulator accepts a batch and then loses the answer (``after_processing`` faults: a 504, or an
answer held past the client's timeout). The hook must find that batch instead of sending it again,
so the account holds exactly one batch and every operation runs once. When the POST certainly did
not reach the server (refused before any work), it is sent again exactly once.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from batch_helpers import PUT_MEMBER_ROUTE, emails, make_audience, put_member_ops
from fault_helpers import emulator_stats, route_total

from mailchimp_provider.errors import MailchimpBatchError
from mailchimp_provider.hooks.batch_lookup import BatchLookup
from mailchimp_provider.hooks.mailchimp import MailchimpHook
from mailchimp_provider.hooks.retry import RetryPolicy

FAST_RETRY = RetryPolicy(max_attempts=4, base_delay=0.05, max_delay=0.2, max_elapsed=30.0)
FAST_LOOKUP = BatchLookup(server_timeout=1.5, first_poll=0.05, poll_interval=0.2, max_wait=20.0)


def make_hook(**kwargs: Any) -> MailchimpHook:
    return MailchimpHook(retry=FAST_RETRY, batch_lookup=FAST_LOOKUP, **kwargs)


def wait_finished(hook: MailchimpHook, batch_id: str, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        batch = hook.get_batch(batch_id)
        if batch["status"] == "finished":
            return batch
        assert time.monotonic() < deadline, f"batch {batch_id} did not finish: {batch}"
        time.sleep(0.05)


def account_batches(emulator: Any) -> list[str]:
    return sorted(emulator.state.batches)


def assert_one_batch_applied_once(emulator: Any, hook: MailchimpHook, batch: dict[str, Any], ops: list[dict]) -> None:
    assert account_batches(emulator) == [batch["id"]], "a second batch was created"
    finished = wait_finished(hook, batch["id"])
    assert finished["total_operations"] == len(ops) and finished["errored_operations"] == 0
    assert route_total(emulator, PUT_MEMBER_ROUTE, "batch") == len(ops)  # every operation exactly once
    results = list(hook.iter_batch_results(finished))
    assert sorted(r.operation_id for r in results) == sorted(op["operation_id"] for op in ops)


@pytest.mark.parametrize("status", [500, 503, 504])
def test_a_batch_accepted_then_answered_5xx_is_found_and_not_sent_again(
    emulator: Any, status: int, capfd: pytest.CaptureFixture[str]
) -> None:
    list_id = make_audience(emulator)
    ops = put_member_ops(list_id, emails(7))
    emulator.admin("POST", "faults", json={"inject": [
        {"status": status, "method": "POST", "path_prefix": "/batches", "after_processing": True},
    ]})
    hook = make_hook()

    batch = hook.submit_batch(ops)

    stats = emulator_stats(emulator)
    assert stats["injected_after_processing"] == 1
    assert route_total(emulator, "POST /batches") == 1  # the lost POST, and no second one
    assert route_total(emulator, "GET /batches") >= 1  # it looked before deciding
    assert_one_batch_applied_once(emulator, hook, batch, ops)
    assert f"but Mailchimp had accepted it: batch {batch['id']}" in "".join(capfd.readouterr())


def test_a_batch_accepted_whose_answer_never_comes_is_found_after_the_client_timeout(emulator: Any) -> None:
    list_id = make_audience(emulator)
    ops = put_member_ops(list_id, emails(5))
    # The server creates the batch, then holds the answer longer than the client waits.
    emulator.admin("POST", "faults", json={"inject": [
        {"timeout_seconds": 3, "method": "POST", "path_prefix": "/batches", "after_processing": True},
    ]})
    hook = make_hook(timeout=0.5)

    batch = hook.submit_batch(ops)

    assert route_total(emulator, "POST /batches") == 1
    assert_one_batch_applied_once(emulator, hook, batch, ops)


def test_a_post_refused_before_reaching_the_server_is_sent_again_exactly_once(
    emulator: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    list_id = make_audience(emulator)
    ops = put_member_ops(list_id, emails(4))
    # A 503 from the gateway: nothing was created, but the client cannot know that without looking.
    emulator.admin("POST", "faults", json={"inject": [{"status": 503, "method": "POST", "path_prefix": "/batches"}]})
    hook = make_hook()

    batch = hook.submit_batch(ops)

    assert emulator_stats(emulator)["injected"] == 1
    assert route_total(emulator, "POST /batches") == 1  # the second POST is the only one that arrived
    assert route_total(emulator, "GET /batches") >= 1
    assert_one_batch_applied_once(emulator, hook, batch, ops)
    assert "Mailchimp has no such batch (looked it up): submitting again" in "".join(capfd.readouterr())


def test_a_request_lost_in_flight_is_sent_again_only_after_the_server_timeout(emulator: Any) -> None:
    list_id = make_audience(emulator)
    ops = put_member_ops(list_id, emails(3))
    # Held and never processed: absent, but only certain once the server would have given up.
    emulator.admin("POST", "faults", json={"inject": [{"timeout_seconds": 2, "method": "POST", "path_prefix": "/batches"}]})
    hook = make_hook(timeout=0.3)

    started = time.monotonic()
    batch = hook.submit_batch(ops)

    assert time.monotonic() - started >= FAST_LOOKUP.server_timeout
    assert_one_batch_applied_once(emulator, hook, batch, ops)


def test_refusals_are_retried_in_place_without_a_lookup(emulator: Any) -> None:
    list_id = make_audience(emulator)
    emulator.admin("POST", "faults", json={"inject": [
        {"status": 429, "count": 2, "method": "POST", "path_prefix": "/batches", "retry_after": 0},
    ]})
    hook = make_hook()

    ops = put_member_ops(list_id, emails(2))
    batch = hook.submit_batch(ops)

    assert emulator_stats(emulator)["injected"] == 2
    assert route_total(emulator, "GET /batches") == 0  # a 429 is a refusal: nothing to look for
    assert_one_batch_applied_once(emulator, hook, batch, ops)


def test_a_same_size_batch_of_another_client_is_told_apart_by_its_operation_ids(emulator: Any) -> None:
    list_id = make_audience(emulator)
    # Another client of the account submits a batch of the same size just before ours.
    other = put_member_ops(list_id, emails(3, prefix="other"))
    other_id = emulator.api("POST", "/batches", json={"operations": other}).json()["id"]
    ops = put_member_ops(list_id, emails(3))
    emulator.admin("POST", "faults", json={"inject": [
        {"status": 502, "method": "POST", "path_prefix": "/batches", "after_processing": True},
    ]})
    hook = make_hook()

    batch = hook.submit_batch(ops)

    assert batch["id"] != other_id
    assert sorted(emulator.state.batches) == sorted([other_id, batch["id"]])  # ours was not sent twice
    results = list(hook.iter_batch_results(wait_finished(hook, batch["id"])))
    assert sorted(r.operation_id for r in results) == sorted(op["operation_id"] for op in ops)


def test_an_earlier_chunk_of_the_same_size_is_never_taken_for_the_lost_one(emulator: Any) -> None:
    list_id = make_audience(emulator)
    hook = make_hook()
    first = hook.submit_batch(put_member_ops(list_id, emails(3, prefix="first")))
    emulator.admin("POST", "faults", json={"inject": [{"status": 500, "method": "POST", "path_prefix": "/batches"}]})

    second = hook.submit_batch(put_member_ops(list_id, emails(3, prefix="second")))

    assert second["id"] != first["id"]
    assert len(emulator.state.batches) == 2
    wait_finished(hook, second["id"])
    assert route_total(emulator, PUT_MEMBER_ROUTE, "batch") == 6


def test_no_verdict_in_time_fails_without_sending_again(emulator: Any) -> None:
    list_id = make_audience(emulator)
    ops = put_member_ops(list_id, emails(2))
    # Two same-size batches that never finish: neither can be verified, neither may be adopted.
    emulator.admin("POST", "faults", json={"stuck_finalizing": True})
    emulator.api("POST", "/batches", json={"operations": put_member_ops(list_id, emails(2, prefix="x"))})
    emulator.admin("POST", "faults", json={"inject": [
        {"status": 504, "method": "POST", "path_prefix": "/batches", "after_processing": True},
    ]})
    hook = MailchimpHook(retry=FAST_RETRY, batch_lookup=BatchLookup(first_poll=0.05, poll_interval=0.1, max_wait=1.0))

    with pytest.raises(MailchimpBatchError, match="Nothing was sent again"):
        hook.submit_batch(ops)

    assert len(emulator.state.batches) == 2
    assert route_total(emulator, "POST /batches") == 2


@pytest.mark.parametrize("chunks_lost", [1, 3])
def test_the_audience_sync_with_lost_post_answers_sends_each_record_once(
    make_harness: Any, warehouse: Any, chunks_lost: int
) -> None:
    from sync.conftest import PUT_MEMBER, customer

    h = make_harness(warehouse, sync={"max_operations_per_batch": 10})
    h.insert(*(customer(f"c{i}", f"replay.{i}@shop-example.com", marketing_opt_in=True) for i in range(30)))
    h.make_audience()
    h.emulator.admin("POST", "faults", json={"inject": [
        {"status": 504, "count": chunks_lost, "method": "POST", "path_prefix": "/batches", "after_processing": True},
    ]})

    run = h.run()

    assert run.state == "success"
    stats = emulator_stats(h.emulator)
    assert stats["injected_after_processing"] == chunks_lost
    assert stats["batches"]["total"] == 3 == route_total(h.emulator, "POST /batches")  # one per chunk
    assert h.batch_ops(PUT_MEMBER) == 30
    assert len(h.members()) == 30
    res = h.results(run.run_id)
    assert {rid for rid, _ in res} == {f"c{i}" for i in range(30)}
    assert {r["outcome"] for r in res.values()} == {"ok"}


def _intent_runner(warehouse: Any) -> tuple[Any, Any, Any]:
    from mailchimp_provider.batches.ledger import BatchLedger, BatchScope
    from mailchimp_provider.batches.runner import BatchRunner
    from mailchimp_provider.warehouse.tables import WarehouseTables

    ledger = BatchLedger(warehouse.engine, WarehouseTables())
    return BatchRunner(make_hook(), ledger), ledger, BatchScope("faults", "run-1", "sync")


def test_a_batch_sent_by_a_try_that_died_before_recording_it_is_adopted_not_sent_again(
    emulator: Any, warehouse: Any
) -> None:
    list_id = make_audience(emulator)
    ops = put_member_ops(list_id, emails(6))
    runner, ledger, scope = _intent_runner(warehouse)
    # The dead try: its intent is on record, its POST reached Mailchimp, then it was killed.
    intent = ledger.record_intent(scope, "member", 0, ops)
    sent = emulator.api("POST", "/batches", json={"operations": ops}).json()["id"]

    adopted = runner.open_batches(scope)

    assert [e.batch_id for e in adopted] == [sent]
    assert [(e.batch_id, e.chunk_no, e.operation_count) for e in ledger.entries(scope)] == [(sent, 0, 6)]
    assert intent.batch_id not in {e.batch_id for e in ledger.entries(scope)}
    assert route_total(emulator, "POST /batches") == 1 and account_batches(emulator) == [sent]
    assert route_total(emulator, PUT_MEMBER_ROUTE, "batch") == 6  # each operation once


def test_a_same_size_batch_is_adopted_only_with_the_intents_operation_ids(emulator: Any, warehouse: Any) -> None:
    list_id = make_audience(emulator)
    runner, ledger, scope = _intent_runner(warehouse)
    ours = put_member_ops(list_id, emails(3))
    ledger.record_intent(scope, "member", 0, ours)
    other = emulator.api("POST", "/batches", json={"operations": put_member_ops(list_id, emails(3, prefix="o"))}).json()
    wait_finished(runner.hook, other["id"])
    runner.hook.known_batch_ids.discard(other["id"])  # seen only by the test, not by the sync
    mine = emulator.api("POST", "/batches", json={"operations": ours}).json()["id"]

    adopted = runner.open_batches(scope)

    assert [e.batch_id for e in adopted] == [mine]


def test_an_intent_whose_post_never_arrived_is_closed_and_nothing_is_applied(emulator: Any, warehouse: Any) -> None:
    from mailchimp_provider.batches.ledger import NOT_SENT

    list_id = make_audience(emulator)
    runner, ledger, scope = _intent_runner(warehouse)
    ledger.record_intent(scope, "member", 0, put_member_ops(list_id, emails(2)))

    started = time.monotonic()
    assert runner.open_batches(scope) == []

    assert time.monotonic() - started >= FAST_LOOKUP.server_timeout - 0.5  # certain only once the server gave up
    assert [(e.status, e.is_open) for e in ledger.entries(scope)] == [(NOT_SENT, False)]
    assert route_total(emulator, "POST /batches") == 0
