"""The DAGs on the production-shaped stack (CeleryExecutor, 2 workers, triggerer, Redis budget),
driven through Airflow's REST API as a scheduler and on-call would: runs succeed, a worker killed
mid-batch and a triggerer killed mid-deferral send nothing twice, and two DAGs at once stay within
Mailchimp's 10 connections per API key.

Counts that other work may change (how many members the demo data yields) are never hard-coded:
"exactly once" compares the emulator's route counters with the records the run itself recorded.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest
import sqlalchemy as sa

from mailchimp_provider.batches.ledger import SUBMITTING
from airflow_api import POST_BATCHES, PUT_MEMBER, AirflowApi, Emulator

from scripts.stack import API_KEY, WORKERS, Stack, process_tree, restart

AUDIENCE = "mailchimp_audience_sync"
ECOMMERCE = "mailchimp_ecommerce_sync"
ENGAGEMENT = "mailchimp_engagement_pull"
POLLING = "stack_audience_sync_polling"
SLOW_BATCHES = 12.0  # operations per second: a batch of the demo's ~500 members stays open ~40 s


@pytest.fixture(scope="module")
def api(stack: Stack) -> AirflowApi:
    return AirflowApi(stack)


@pytest.fixture(scope="module")
def emulator(stack: Stack) -> Emulator:
    return Emulator(stack)


@pytest.fixture(scope="module")
def warehouse(stack: Stack) -> sa.Engine:
    engine = sa.create_engine(stack.warehouse_url)
    yield engine
    engine.dispose()


@pytest.fixture(autouse=True)
def _never_over_budget(emulator: Emulator) -> Any:
    """Over the emulator's whole life, never more than 10 requests in flight and never a 429."""
    yield
    stats = emulator.stats()
    assert stats["max_in_flight"] <= 10, stats
    assert stats["throttled"] == 0, stats


def member_writes(warehouse: sa.Engine, run_id: str) -> int:
    """Members the run wrote (one row per record and run, with the batch that carried it)."""
    with warehouse.connect() as conn:
        return conn.execute(sa.text(
            "SELECT count(*) FROM mailchimp_sync_result WHERE run_id = :r AND entity = 'member' "
            "AND operation = 'upsert' AND batch_id IS NOT NULL"), {"r": run_id}).scalar_one()


def ledger_batches(
    warehouse: sa.Engine, dag_id: str, run_id: str, *, submitted_only: bool = False
) -> list[tuple[str, str | None]]:
    """The run's ledger rows; ``submitted_only`` leaves out the intent row (status 'submitting')
    committed before POST /batches, which has no Mailchimp batch yet."""
    if not sa.inspect(warehouse).has_table("mailchimp_batch"):
        return []
    with warehouse.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(
            "SELECT batch_id, applied_at FROM mailchimp_batch WHERE dag_id = :d AND run_id = :r "
            + ("AND status <> :intent " if submitted_only else "") + "ORDER BY submitted_at"),
            {"d": dag_id, "r": run_id, "intent": SUBMITTING})]


def wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def worker_running(stack: Stack, pid: int) -> str:
    """The Celery worker (by name) whose process tree holds ``pid`` (the task process)."""
    for name in WORKERS:
        if pid in process_tree(stack.pids[name]):
            return name
    raise AssertionError(f"pid {pid} belongs to no worker of the stack: {stack.pids}")


def kill_worker(stack: Stack, name: str) -> int:
    """SIGKILL a whole worker at once, as when its machine dies: every process of its tree."""
    tree = process_tree(stack.pids[name])
    for pid in tree:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return len(tree)


def test_the_two_forward_dags_at_once_stay_within_ten_connections(
    api: AirflowApi, emulator: Emulator, warehouse: sa.Engine
) -> None:
    # Some latency, so that the requests of the two DAGs (and the triggerer's polls) overlap.
    puts_before = emulator.route_total(PUT_MEMBER)
    emulator.faults(latency_ms=40)
    runs: dict[str, str] = {}
    try:
        runs = {dag_id: api.trigger(dag_id, {"full_refresh": True}) for dag_id in (AUDIENCE, ECOMMERCE)}
        states = {dag_id: api.wait_run(dag_id, run_id, timeout=480) for dag_id, run_id in runs.items()}
    finally:
        emulator.faults(latency_ms=0)
        for dag_id, run_id in runs.items():
            api.fail_if_unfinished(dag_id, run_id)
    assert states == {AUDIENCE: "success", ECOMMERCE: "success"}, {d: api.task_states(d, r) for d, r in runs.items()}
    stats = emulator.stats()
    print(f"\n[stack] two forward DAGs at once: max_in_flight={stats['max_in_flight']} throttled={stats['throttled']} "
          f"requests={stats['requests']}")
    assert member_writes(warehouse, runs[AUDIENCE]) > 0
    assert emulator.route_total(PUT_MEMBER) - puts_before == member_writes(warehouse, runs[AUDIENCE])


def test_the_engagement_pull_loads_what_the_campaign_produced(
    stack: Stack, api: AirflowApi, warehouse: sa.Engine, audience_run: str
) -> None:
    import requests

    from scripts.demo_steps import send_demo_campaign

    lists = requests.get(f"{stack.emulator_url}/3.0/lists", auth=("stack", API_KEY), timeout=30).json()["lists"]
    assert lists, "the audience sync created no audience"
    send_demo_campaign(f"{stack.emulator_url}/3.0", stack.emulator_url, lists[0]["id"])
    api.unpause(ENGAGEMENT)  # hourly schedule: the scheduler may add a run of its own, which is fine
    try:
        run_id = api.trigger(ENGAGEMENT)
        assert api.wait_run(ENGAGEMENT, run_id, timeout=300) == "success", api.task_states(ENGAGEMENT, run_id)
    finally:
        # Paused again with no run left: a scheduled pull posts batches of its own (its activity
        # reads), which the exactly-once tests' POST /batches counts would take for a duplicate.
        api.pause_and_drain(ENGAGEMENT)
    with warehouse.connect() as conn:
        activity = conn.execute(sa.text("SELECT count(*) FROM mailchimp_campaign_recipient_activity")).scalar_one()
        members = conn.execute(sa.text("SELECT count(*) FROM mailchimp_member")).scalar_one()
    assert activity > 0 and members > 0


def test_a_worker_killed_mid_batch_then_cleared_writes_every_member_exactly_once(
    stack: Stack, api: AirflowApi, emulator: Emulator, warehouse: sa.Engine, audience_run: str
) -> None:
    api.unpause(POLLING)
    puts_before, batches_before = emulator.route_total(PUT_MEMBER), emulator.route_total(POST_BATCHES)
    emulator.faults(batch_ops_per_second=SLOW_BATCHES)
    killed = run_id = None
    try:
        run_id = api.trigger(POLLING, {"full_refresh": True})
        batch_id, _ = wait_for(lambda: ledger_batches(warehouse, POLLING, run_id, submitted_only=True), 180, "the batch in the ledger")[0]
        ti = api.wait_task(POLLING, run_id, "sync_members", {"running"})
        time.sleep(2)  # the task is now polling its open batch
        batch = emulator.batch(batch_id, API_KEY)
        assert batch["status"] != "finished", "the batch finished before the kill: slow the emulator down more"
        killed = worker_running(stack, ti["pid"])
        processes = kill_worker(stack, killed)
        print(f"\n[stack] SIGKILLed {killed} ({processes} processes) while batch {batch_id} was {batch['status']} "
              f"({batch['finished_operations']}/{batch['total_operations']})")

        # The scheduler notices the missing heartbeat; on-call then clears the task from the UI.
        api.wait_task(POLLING, run_id, "sync_members", {"up_for_retry", "failed"}, timeout=180, poll=2)
        api.clear(POLLING, run_id, ["sync_members"])
        retried = api.wait_task(POLLING, run_id, "sync_members", {"running", "success"}, timeout=180)
        if retried["state"] == "running" and retried.get("pid"):
            other = worker_running(stack, retried["pid"])
            assert other != killed
        assert api.wait_run(POLLING, run_id, timeout=300) == "success", api.task_states(POLLING, run_id)
    finally:
        emulator.faults(batch_ops_per_second=0)
        if run_id:
            api.fail_if_unfinished(POLLING, run_id)
        if killed:
            restart(stack, killed)

    ti = api.task_instance(POLLING, run_id, "sync_members")
    log = api.log_text(POLLING, run_id, "sync_members", ti["try_number"])
    assert "Re-attaching to 1 batch(es)" in log and batch_id in log, log[-3000:]
    written = member_writes(warehouse, run_id)
    sent = emulator.route_total(PUT_MEMBER) - puts_before
    print(f"[stack] worker kill: {written} members recorded, {sent} PUTs at the emulator, "
          f"duplicates={sent - written}, batches submitted={emulator.route_total(POST_BATCHES) - batches_before}")
    assert written > 0
    assert sent == written, "a member was written twice (or not at all)"
    assert emulator.route_total(POST_BATCHES) - batches_before == len(ledger_batches(warehouse, POLLING, run_id))
    assert all(applied for _, applied in ledger_batches(warehouse, POLLING, run_id))


def test_the_triggerer_killed_while_sync_members_is_deferred_sends_nothing_twice(
    stack: Stack, api: AirflowApi, emulator: Emulator, warehouse: sa.Engine, audience_run: str
) -> None:
    puts_before, batches_before = emulator.route_total(PUT_MEMBER), emulator.route_total(POST_BATCHES)
    emulator.faults(batch_ops_per_second=SLOW_BATCHES)
    restarted = False
    run_id = None
    try:
        run_id = api.trigger(AUDIENCE, {"full_refresh": True})
        api.wait_task(AUDIENCE, run_id, "sync_members", {"deferred"}, timeout=180)
        for pid in process_tree(stack.pids["triggerer"]):
            os.kill(pid, signal.SIGKILL)
        print(f"\n[stack] SIGKILLed the triggerer while sync_members of {run_id} was deferred")
        time.sleep(3)
        restart(stack, "triggerer")
        restarted = True
        assert api.wait_run(AUDIENCE, run_id, timeout=300) == "success", api.task_states(AUDIENCE, run_id)
    finally:
        emulator.faults(batch_ops_per_second=0)
        if run_id:
            api.fail_if_unfinished(AUDIENCE, run_id)
        if not restarted:
            restart(stack, "triggerer")
    written = member_writes(warehouse, run_id)
    sent = emulator.route_total(PUT_MEMBER) - puts_before
    print(f"[stack] triggerer kill: {written} members recorded, {sent} PUTs, duplicates={sent - written}")
    assert written > 0
    assert sent == written
    assert emulator.route_total(POST_BATCHES) - batches_before == len(ledger_batches(warehouse, AUDIENCE, run_id))
