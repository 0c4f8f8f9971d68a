"""What the shared connection budget (leases in Redis) costs per Mailchimp request.

    .venv/bin/python -m scripts.bench_limiter [--requests 2000] [--redis redis://127.0.0.1:6379/13]

Measures, on this machine's Redis and an emulator at zero latency (the worst case: the lease is a
larger share of a fast request than of a real one across the internet):
1. a lease taken and given back, alone (two Redis round trips);
2. ``MailchimpHook.get("/ping")`` one after the other, without and with the shared budget;
3. the same with 8 threads, so the process cap and the budget both see contention.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote

import requests

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
API_KEY = "0123456789abcdef0123456789abcdef-us1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def timed_requests(hook, total: int, threads: int) -> float:
    """Seconds for ``total`` GET /ping spread over ``threads`` threads."""
    per_thread = total // threads

    def work() -> None:
        for _ in range(per_thread):
            hook.get("/ping")

    workers = [threading.Thread(target=work) for _ in range(threads)]
    started = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/13")
    args = parser.parse_args()

    from mailchimp_provider.hooks import shared_limiter
    from mailchimp_provider.hooks.shared_limiter import SharedBudget

    budget = SharedBudget(args.redis, budget=10)
    shared_limiter.release(budget, "bench", shared_limiter.acquire(budget, "bench"))  # connect once
    n = args.requests
    started = time.perf_counter()
    for _ in range(n):
        shared_limiter.release(budget, "bench", shared_limiter.acquire(budget, "bench"))
    lease_us = (time.perf_counter() - started) / n * 1e6

    port = free_port()
    emulator = subprocess.Popen(
        [str(BIN / "mailchimp-emulator"), "--port", str(port), "--max-concurrent", "10"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                requests.get(f"http://127.0.0.1:{port}/_emulator/stats", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        base = f"http://127.0.0.1:{port}/3.0"
        os.environ["AIRFLOW_CONN_MAILCHIMP_DEFAULT"] = (
            f"mailchimp://:{quote(API_KEY, safe='')}@127.0.0.1:{port}/?base_url={quote(base, safe='')}"
        )
        from mailchimp_provider.hooks.mailchimp import MailchimpHook

        rows = []
        for threads in (1, 8):
            figures = {}
            for label, url in (("per-process cap only", ""), ("with the Redis budget", args.redis)):
                if url:
                    os.environ["MAILCHIMP_LIMITER_REDIS_URL"] = url
                else:
                    os.environ.pop("MAILCHIMP_LIMITER_REDIS_URL", None)
                hook = MailchimpHook(max_in_flight=8)
                hook.get("/ping")
                timed_requests(hook, 200, threads)  # warm-up
                figures[label] = timed_requests(hook, n, threads) / n * 1e6
                hook.close()
            rows.append((threads, figures))
        stats = requests.get(f"http://127.0.0.1:{port}/_emulator/stats", timeout=5).json()
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)

    print(f"lease taken and given back, alone: {lease_us:,.0f} µs ({n:,} times)")
    print(f"{'threads':>7}  {'cap only µs/req':>15}  {'Redis budget µs/req':>19}  {'cost µs/req':>11}")
    for threads, figures in rows:
        alone, shared = figures["per-process cap only"], figures["with the Redis budget"]
        print(f"{threads:>7}  {alone:>15,.0f}  {shared:>19,.0f}  {shared - alone:>11,.0f}")
    print(f"emulator: max_in_flight={stats['max_in_flight']} throttled={stats['throttled']}")


if __name__ == "__main__":
    main()
