"""One connection budget per API key across processes: leases in Redis (hooks/shared_limiter.py).

Real Redis, real emulator (``max_concurrent`` 10, as Mailchimp), real hooks in separate processes.
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import sys
import textwrap
import threading
import uuid
import time
from pathlib import Path

import pytest
import redis

from mailchimp_provider.hooks.credentials import MailchimpCredentials
from mailchimp_provider.hooks.shared_limiter import (
    SharedBudget,
    aacquire,
    account_key,
    acquire,
    alease,
    leases_held,
    release,
    shared_budget_from_connection,
)

ROOT = Path(__file__).resolve().parents[2]

# A process with one hook and 8 threads, all calling the API at once (max_in_flight 8 each).
LOAD = textwrap.dedent(
    """
    import sys, threading
    from mailchimp_provider.hooks.mailchimp import MailchimpHook
    hook = MailchimpHook(max_in_flight=8)
    hook.get("/ping")
    print("ready", flush=True)
    sys.stdin.readline()  # every process starts at once
    start = threading.Barrier(8)
    def work():
        start.wait()
        for _ in range(int(sys.argv[1])):
            hook.get("/ping")
    threads = [threading.Thread(target=work) for _ in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    print("done")
    """
)


def _lease_report(redis_url: str | None, fingerprint: str) -> str:
    """Who holds the account's leases right now (for a failure message)."""
    if not redis_url:
        return "no shared budget in use"
    client = redis.Redis.from_url(redis_url, socket_connect_timeout=2)
    now_ms = int(client.time()[0] * 1000)
    held = client.zrange(account_key(fingerprint), 0, -1, withscores=True)
    return f"{len(held)} lease(s) in {redis_url}: " + ", ".join(
        f"{m.decode()[:8]} expires in {int(score) - now_ms} ms" for m, score in held)


def _readline(proc: subprocess.Popen, timeout: float) -> str | None:
    """The process's next stdout line, or None when none came within ``timeout`` seconds."""
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return line[0] if line else None


def run_load(processes: int, requests_per_thread: int, env: dict[str, str], fingerprint: str) -> None:
    """``processes`` processes of 8 threads each, started together; every wait is bounded, and a
    process that hangs is killed and reported with its stderr and the account's lease holders."""
    procs = [
        subprocess.Popen([sys.executable, "-c", LOAD, str(requests_per_thread)], env=env, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(processes)
    ]
    redis_url = env.get("MAILCHIMP_LIMITER_REDIS_URL")
    try:
        for proc in procs:
            line = _readline(proc, 120)
            if line is None or line.strip() != "ready":
                report = _lease_report(redis_url, fingerprint)
                proc.kill()
                pytest.fail(f"a load process was not ready after 120 s ({report}):\n{proc.stderr.read()[-3000:]}")
        for proc in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        for proc in procs:
            try:
                out, err = proc.communicate(timeout=240)
            except subprocess.TimeoutExpired:
                report = _lease_report(redis_url, fingerprint)
                proc.kill()
                pytest.fail(f"a load process did not finish within 240 s ({report}):\n{proc.communicate()[1][-3000:]}")
            assert proc.returncode == 0 and "done" in out, err[-3000:]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()


@pytest.fixture()
def limiter_redis_url(redis_url: str, emulator) -> str:
    """A Redis database apart from the stack's (its Celery broker and the leases of its workers,
    which talk to their own emulator with the same test API key), emptied of this account's leases:
    the test measures its own processes only."""
    base, db = redis_url.rsplit("/", 1)
    url = f"{base}/{int(db) - 8 if int(db) >= 8 else int(db) + 8}"
    redis.Redis.from_url(url).delete(account_key(emulator_fingerprint(emulator.api_key)))
    return url


def emulator_fingerprint(api_key: str) -> str:
    """The account fingerprint the hook derives from an API key (``hooks.credentials``)."""
    authorization = "Basic " + base64.b64encode(f"anystring:{api_key}".encode()).decode()
    return MailchimpCredentials("", authorization, None).fingerprint


def test_three_processes_of_eight_threads_share_ten_connections(emulator, limiter_redis_url: str) -> None:
    fingerprint = emulator_fingerprint(emulator.api_key)
    emulator.admin("POST", "/faults", json={"latency_ms": 30, "max_concurrent": 10})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "plugins"), str(ROOT / "emulator")])}
    env.pop("MAILCHIMP_LIMITER_REDIS_URL", None)

    # Without the shared budget, 3 x 8 requests at once: the emulator answers 429s, as Mailchimp would.
    run_load(3, 10, env, fingerprint)
    alone = emulator.admin("GET", "/stats")
    assert alone["max_in_flight"] > 10 and alone["throttled"] > 0, alone

    emulator.admin("POST", "/reset")
    emulator.admin("POST", "/faults", json={"latency_ms": 30, "max_concurrent": 10})
    run_load(3, 10, {**env, "MAILCHIMP_LIMITER_REDIS_URL": limiter_redis_url}, fingerprint)
    shared = emulator.admin("GET", "/stats")
    print(f"\n[limiter] 3 processes x 8 threads: alone max_in_flight={alone['max_in_flight']} "
          f"throttled={alone['throttled']}; shared max_in_flight={shared['max_in_flight']} throttled={shared['throttled']}")
    assert shared["max_in_flight"] <= 10 and shared["throttled"] == 0, shared
    assert shared["max_in_flight"] >= 8, "the budget should still be used, not serialised"
    assert leases_held(SharedBudget(limiter_redis_url), fingerprint) == 0, "every lease was given back"


HOLDER = textwrap.dedent(
    """
    import sys, time
    from mailchimp_provider.hooks.shared_limiter import SharedBudget, acquire
    budget = SharedBudget(sys.argv[1], budget=10, lease_seconds=1.5)
    for _ in range(10):
        assert acquire(budget, sys.argv[2])
    print("held", flush=True)
    time.sleep(600)
    """
)


def test_a_live_holder_keeps_its_leases_and_a_killed_one_loses_them_within_the_lease(redis_url: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "plugins")}
    account = f"holder-{uuid.uuid4().hex[:8]}"  # a fingerprint of this test alone
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, redis_url, account], env=env, stdout=subprocess.PIPE,
                              text=True)
    budget = SharedBudget(redis_url, budget=10, lease_seconds=1.5)
    try:
        assert holder.stdout.readline().strip() == "held"
        time.sleep(3.5)  # more than two lease lengths: only renewal keeps them
        assert leases_held(budget, account) == 10
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        started = time.monotonic()
        lease = acquire(budget, account)  # blocks until the dead holder's leases lapse
        waited = time.monotonic() - started
        release(budget, account, lease)
    finally:
        holder.kill()
    assert 0 < waited < 3.0, waited


def test_the_redis_key_is_a_hash_of_the_credential_never_the_key(redis_url: str) -> None:
    api_key = "0123456789abcdef0123456789abcdef-us1"

    credentials = MailchimpCredentials(
        "https://us1.api.mailchimp.com/3.0", "Basic " + base64.b64encode(f"x:{api_key}".encode()).decode(), "us1"
    )
    budget = SharedBudget(redis_url, budget=2)
    lease = acquire(budget, credentials.fingerprint)
    try:
        client = redis.Redis.from_url(redis_url)
        keys = [k.decode() for k in client.keys("*")]
        assert account_key(credentials.fingerprint) in keys
        for key in keys:
            assert api_key[:32] not in key and "0123456789abcdef" not in key
        members = client.zrange(account_key(credentials.fingerprint), 0, -1)
        assert all(api_key[:32].encode() not in m for m in members)
    finally:
        release(budget, credentials.fingerprint, lease)


def test_event_loop_callers_share_the_same_budget(redis_url: str) -> None:
    budget = SharedBudget(redis_url, budget=3)
    account = f"async-{uuid.uuid4().hex[:8]}"
    in_flight = peak = 0

    async def call() -> None:
        nonlocal in_flight, peak
        async with alease(budget, account):
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0.02)
            in_flight -= 1

    async def main() -> None:
        # A thread holding one lease too: sync and async callers count against one budget.
        lease = await asyncio.to_thread(acquire, budget, account)
        await asyncio.gather(*(call() for _ in range(30)))
        release(budget, account, lease)

    asyncio.run(main())
    assert peak == 2


def test_without_a_reachable_redis_the_request_goes_ahead_under_the_process_cap(caplog) -> None:
    budget = SharedBudget("redis://127.0.0.1:9/0", budget=10)  # nothing listens on port 9
    assert acquire(budget, "unreachable-test") is None
    assert asyncio.run(aacquire(budget, "unreachable-test")) is None
    assert "unreachable" in caplog.text


class _Conn:
    conn_id = "mailchimp_default"

    def __init__(self, extra: dict) -> None:
        self.extra_dejson = extra


def test_configuration_comes_from_the_extra_then_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from mailchimp_provider.errors import MailchimpConfigError

    monkeypatch.delenv("MAILCHIMP_LIMITER_REDIS_URL", raising=False)
    monkeypatch.delenv("MAILCHIMP_LIMITER_BUDGET", raising=False)
    assert shared_budget_from_connection(_Conn({})) is None
    monkeypatch.setenv("MAILCHIMP_LIMITER_REDIS_URL", "redis://127.0.0.1:6379/3")
    assert shared_budget_from_connection(_Conn({})) == SharedBudget("redis://127.0.0.1:6379/3", 10)
    assert shared_budget_from_connection(_Conn({"limiter_redis_url": "none"})) is None
    assert shared_budget_from_connection(_Conn({"limiter_budget": "6"})).budget == 6
    with pytest.raises(MailchimpConfigError, match="between 1 and 10"):
        shared_budget_from_connection(_Conn({"limiter_budget": 11}))
    with pytest.raises(MailchimpConfigError, match="must be an integer"):
        shared_budget_from_connection(_Conn({"limiter_budget": "ten"}))
