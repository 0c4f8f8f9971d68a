"""Benchmark of the email-activity pull: N campaigns x M recipients of activity into PostgreSQL.

    python -m scripts.bench_engagement                                  # 200 campaigns x 5,000 recipients
    python -m scripts.bench_engagement --campaigns 50 --recipients 2000
    python -m scripts.bench_engagement --campaigns 1420 --recipients 5000         # 10.0M activity rows
    python -m scripts.bench_engagement --pg-url postgresql+psycopg2://postgres@127.0.0.1:5432/test
    MAILCHIMP_BENCH_EMULATOR_SRC=/tmp/emulator-copy python -m scripts.bench_engagement   # another emulator

The emulator runs in a child process (zero latency) and is seeded in-process by direct state
manipulation: every recipient opens once, 30% open again, 12% click, 2% bounce instead. This
process then runs what ``pull_email_activity`` runs, minus Airflow: ``activity.plan`` ->
``BatchRunner.submit`` (chunks of ``batch_chunk_size`` campaigns) -> ``BatchRunner.wait`` until one
batch finishes -> ``activity.apply_results`` on it while the emulator works on the next (the
results archive streamed and normalised in this thread while a writer thread COPYs the previous
campaign; one transaction per campaign with its bookmark). It does it twice: the first run loads
everything, the incremental rerun (a new pass) asks each campaign only for what came after its
bookmark minus the lookback.

Printed per run: wall time (planning to the last commit, emulator batch processing included),
the apply phase alone (download + parse + insert, summed over batches), activity rows per second
for both, HTTP requests the emulator received, and this process's peak memory (``ru_maxrss``; the emulator's
memory is its own process's), and the CPU seconds spent by this process, the emulator and
PostgreSQL (the backends connected to the benchmark's database, read from /proc) during the run.
Targets: over 50,000 activity rows per second into the warehouse (issue #6), over 100,000 at 10M
rows (issue #17: ``--campaigns 1420 --recipients 5000`` is 10.0M rows), memory flat in the
number of rows.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import random
import resource
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from urllib.parse import quote
from datetime import datetime, timedelta, timezone
from pathlib import Path
from collections.abc import Callable
from typing import Any

from scripts.procmem import load_average, process_cpu_seconds, process_memory_mb

ROOT = Path(__file__).resolve().parents[1]
EMULATOR_SRC_ENV = "MAILCHIMP_BENCH_EMULATOR_SRC"
"""Folder to import the emulator from instead of emulator/ (a pinned copy while it is being edited)."""
for extra in (ROOT / "plugins", Path(os.environ.get(EMULATOR_SRC_ENV) or ROOT / "emulator")):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

API_KEY = "0123456789abcdef0123456789abcdef-us1"
LINKS = ("https://shop.acme-outfitters.com/", "https://shop.acme-outfitters.com/sale")


# ------------------------------------------------------------------------------------------------
# the emulator (child process)
# ------------------------------------------------------------------------------------------------
def seeded_account(list_name: str) -> tuple[Any, Callable[..., Any], str]:
    """An in-process emulator with one audience, and ``call(method, path, body)`` that goes through
    its own handlers (seeding a million rows over HTTP would take longer than the benchmark)."""
    from mailchimp_emulator.app import Emulator
    from mailchimp_emulator.routing import Call, router

    emulator = Emulator([API_KEY])

    def call(method: str, path: str, body: Any = None) -> Any:
        return router.dispatch(Call(method=method, path=path, params={}, body=body, state=emulator.state)).body

    list_id = call("POST", "/lists", {
        "name": list_name, "permission_reminder": "You signed up.", "email_type_option": False,
        "contact": {"company": "Acme", "address1": "1 Main St", "city": "Springfield", "state": "IL",
                    "zip": "62701", "country": "US"},
        "campaign_defaults": {"from_name": "Acme", "from_email": "news@acme-outfitters.com",
                              "subject": "News", "language": "en"},
    })["id"]
    return emulator, call, list_id


def seed_activity(state: Any, call: Callable[..., Any], list_id: str, campaigns: int, recipients: int) -> None:
    """Send ``campaigns`` campaigns to the same ``recipients`` readers and record their activity.

    As in Mailchimp, a reader's ``email_id`` is their subscriber hash, the same in every campaign.
    Strings that repeat (addresses, ids, IPs, timestamps) are one object each, shared by every
    campaign: that keeps the emulator near 0.6 KB per recipient (10M activity rows are 7M
    recipients) instead of 0.9 KB.
    """
    from mailchimp_emulator.members import subscriber_hash

    rng = random.Random(6)
    sent_at = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(days=3)
    stamps: dict[int, str] = {}

    def stamp(seconds: int) -> str:
        text = stamps.get(seconds)
        if text is None:
            text = stamps[seconds] = (sent_at + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S+00:00")
        return text

    addresses = [f"reader{r:06d}@brightmail.co" for r in range(recipients)]
    email_ids = [subscriber_hash(address) for address in addresses]
    ips = [f"198.51.100.{n % 254 + 1}" for n in range(min(recipients, 254))]
    for n in range(campaigns):
        campaign = call("POST", "/campaigns", {
            "type": "regular", "recipients": {"list_id": list_id},
            "settings": {"subject_line": f"Issue {n}", "title": f"Issue {n}", "from_name": "Acme",
                         "reply_to": "news@acme-outfitters.com"},
        })
        emails = {}
        for r in range(recipients):
            ip = ips[r % 254]
            if rng.random() < 0.02:
                events = [{"action": "bounce", "timestamp": stamp(rng.randint(30, 600)), "type": "hard"}]
            else:
                first = rng.randint(60, 20_000)
                events = [{"action": "open", "timestamp": stamp(first), "ip": ip}]
                if rng.random() < 0.3:
                    events.append({"action": "open", "timestamp": stamp(first + rng.randint(60, 40_000)), "ip": ip})
                if rng.random() < 0.12:
                    events.append({"action": "click", "timestamp": stamp(first + rng.randint(5, 600)), "ip": ip,
                                   "url": rng.choice(LINKS)})
            emails[email_ids[r]] = {"email_address": addresses[r], "activity": events}
        state.activity[campaign["id"]] = {"list_id": list_id, "emails": emails, "unsubscribes": []}
        state.campaigns[campaign["id"]].update(status="sent", send_time=stamp(0), emails_sent=recipients)


def serve_emulator(port: int, campaigns: int, recipients: int) -> None:
    """Seed an emulator account in-process, then serve it (runs in the child process)."""
    import gc

    import uvicorn

    emulator, call, list_id = seeded_account("Bench")
    gc.disable()  # millions of long-lived containers: the collector would rescan them all, over and over
    seed_activity(emulator.state, call, list_id, campaigns, recipients)
    gc.freeze()  # what was seeded is never garbage: later collections skip it
    gc.enable()
    config = uvicorn.Config(emulator.build_app(), host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    uvicorn.Server(config).run()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _admin(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_emulator/{path}", timeout=60) as resp:
        return json.loads(resp.read())


def serve_seeded_emulator(campaigns: int, recipients: int) -> tuple[subprocess.Popen, int]:
    """Start the seeded emulator (``--serve-emulator``) in a child process; return once it answers."""
    port = _free_port()
    child = subprocess.Popen([sys.executable, "-m", "scripts.bench_engagement", "--serve-emulator", str(port),
                              "--campaigns", str(campaigns), "--recipients", str(recipients)], cwd=ROOT)
    while True:
        try:
            _admin(port, "stats")
            return child, port
        except OSError:
            if child.poll() is not None:
                raise SystemExit("the emulator process exited")
            time.sleep(0.2)


# ------------------------------------------------------------------------------------------------
# the pull (this process)
# ------------------------------------------------------------------------------------------------
def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _postgres_cpu(admin: Any, database: str) -> dict[int, float]:
    """CPU seconds of each PostgreSQL backend connected to ``database``, by PID (read from /proc).

    Only the benchmark database's backends: other work on the same server (other benchmarks, the
    tests) is left out, and so are the server's shared background processes (WAL writer,
    checkpointer), which the figure therefore does not include."""
    import sqlalchemy as sa

    with admin.connect() as conn:
        pids = conn.execute(sa.text("SELECT pid FROM pg_stat_activity WHERE datname = :d"), {"d": database}).scalars()
        return {pid: process_cpu_seconds(pid) for pid in pids}


def _cpu_snapshot(emulator_pid: int, admin: Any, database: str) -> tuple[float, float, dict[int, float]]:
    """(this process, the emulator, PostgreSQL backends by PID) CPU seconds so far."""
    return process_cpu_seconds(os.getpid()), process_cpu_seconds(emulator_pid), _postgres_cpu(admin, database)


def run_pull(
    engine: Any, tables: Any, config: Any, port: int, pass_name: str, emulator_pid: int, admin: Any
) -> dict[str, Any]:
    from mailchimp_provider.batches.ledger import BatchLedger, BatchScope
    from mailchimp_provider.batches.runner import BatchRunner
    from mailchimp_provider.hooks.mailchimp import MailchimpHook
    from mailchimp_provider.reverse import activity

    requests_before = _admin(port, "stats")["requests"]
    hook = MailchimpHook()
    ledger = BatchLedger(engine, tables)
    runner = BatchRunner(hook, ledger, max_operations_per_batch=config.activity.batch_chunk_size, poll_interval=0.2)
    scope = BatchScope("mailchimp_engagement_pull", pass_name, "pull_email_activity")
    database = engine.url.database
    cpu_before = _cpu_snapshot(emulator_pid, admin, database)
    started = time.perf_counter()
    with engine.connect() as conn:
        planned = activity.plan(conn, tables, config, f"{pass_name}#0")
    batch_ids = runner.submit(scope, activity.ENTITY, [f.operation() for f in planned])
    rows = gained = changed = 0
    applying = 0.0
    pending = list(batch_ids)
    while pending:  # as the operator's synchronous wait: apply each batch as soon as it finishes
        snapshots = runner.wait(pending, any_finished=True)
        for batch_id in [b for b in pending if snapshots.get(b, {}).get("status") == "finished"]:
            pending.remove(batch_id)
            entry = ledger.get(batch_id)
            t_apply = time.perf_counter()
            outcome = activity.apply_results(
                engine, tables, config, runner.results(batch_id),
                current_pass=f"{pass_name}#0", submitted_at=entry.submitted_at if entry else None,
            )
            runner.mark_applied(batch_id)
            applying += time.perf_counter() - t_apply
            c = outcome.counts
            rows += c.gained + c.changed + c.unchanged
            gained += c.gained
            changed += c.changed
            if outcome.failures:
                raise SystemExit(f"operations failed: {outcome.failures[:3]}")
    finished = time.perf_counter()
    cpu_after = _cpu_snapshot(emulator_pid, admin, database)
    backends = sum(cpu - cpu_before[2].get(pid, 0.0) for pid, cpu in cpu_after[2].items())
    return {
        "cpu_self": cpu_after[0] - cpu_before[0], "cpu_emulator": cpu_after[1] - cpu_before[1], "cpu_postgres": backends,
        "campaigns": len(planned), "batches": len(batch_ids), "rows": rows, "gained": gained, "changed": changed,
        "wall": finished - started, "apply": applying,
        "requests": _admin(port, "stats")["requests"] - requests_before, "peak_mb": _peak_mb(),
        "emulator_mb": process_memory_mb(emulator_pid)["peak_mb"], "load": load_average(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--campaigns", type=int, default=200)
    parser.add_argument("--recipients", type=int, default=5000)
    parser.add_argument("--chunk", type=int, default=25, help="campaigns per batch (activity.batch_chunk_size)")
    parser.add_argument("--pg-url", default=os.environ.get("MAILCHIMP_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--profile", metavar="DIR", help="write a cProfile of each run (this thread only) into DIR")
    parser.add_argument("--serve-emulator", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_emulator:
        serve_emulator(args.serve_emulator, args.campaigns, args.recipients)
        return 0

    import sqlalchemy as sa

    from mailchimp_provider.reverse.campaigns import pull_campaigns
    from mailchimp_provider.reverse.config import ActivityConfig, EngagementConfig
    from mailchimp_provider.warehouse.tables import WarehouseTables

    print(f"Seeding the emulator: {args.campaigns} campaigns x {args.recipients} recipients ...", flush=True)
    seeding = time.perf_counter()
    child, port = serve_seeded_emulator(args.campaigns, args.recipients)
    db_name = f"mc_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(args.pg_url, isolation_level="AUTOCOMMIT")
    try:
        print(f"  seeded and serving in {time.perf_counter() - seeding:.1f} s", flush=True)
        base = f"http://127.0.0.1:{port}/3.0"
        os.environ["AIRFLOW_CONN_MAILCHIMP_DEFAULT"] = (
            f"mailchimp://:{quote(API_KEY, safe='')}@127.0.0.1:{port}/?base_url={quote(base, safe='')}")
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{db_name}"'))
        engine = sa.create_engine(args.pg_url.rsplit("/", 1)[0] + "/" + db_name)
        tables = WarehouseTables()
        tables.create_all(engine)
        config = EngagementConfig(activity=ActivityConfig(batch_chunk_size=args.chunk))

        from mailchimp_provider.hooks.mailchimp import MailchimpHook

        t0 = time.perf_counter()
        pull_campaigns(MailchimpHook(), engine, tables, config)
        print(f"  campaigns pulled in {time.perf_counter() - t0:.1f} s (their rows plan the activity pull)\n", flush=True)

        print(f"{'run':<12}{'campaigns':>10}{'batches':>8}{'rows':>11}{'gained':>10}{'wall s':>9}"
              f"{'rows/s':>10}{'apply s':>9}{'apply rows/s':>14}{'HTTP req':>10}{'peak MB':>9}"
              f"{'CPU s: pull':>13}{'emulator':>9}{'postgres':>9}{'emu peak MB':>12}{'load':>8}")
        for name in ("first", "incremental"):
            profiler = cProfile.Profile() if args.profile else None
            if profiler:
                profiler.enable()
            r = run_pull(engine, tables, config, port, f"bench-{name}", child.pid, admin)
            if profiler:
                profiler.disable()
                Path(args.profile).mkdir(parents=True, exist_ok=True)
                profiler.dump_stats(Path(args.profile) / f"engagement-{name}.prof")
            print(f"{name:<12}{r['campaigns']:>10}{r['batches']:>8}{r['rows']:>11,}{r['gained']:>10,}{r['wall']:>9.1f}"
                  f"{r['rows'] / r['wall']:>10,.0f}{r['apply']:>9.1f}{r['rows'] / max(r['apply'], 1e-9):>14,.0f}"
                  f"{r['requests']:>10}{r['peak_mb']:>9.0f}"
                  f"{r['cpu_self']:>13.1f}{r['cpu_emulator']:>9.1f}{r['cpu_postgres']:>9.1f}"
                  f"{r['emulator_mb']:>12.0f}{r['load']:>8}", flush=True)
        with engine.connect() as conn:
            total = conn.execute(sa.select(sa.func.count()).select_from(tables.activity)).scalar_one()
        print(f"\n{total:,} rows in {tables.table_name('activity')}")
        engine.dispose()
    finally:
        child.terminate()
        child.wait(timeout=30)
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'))
        admin.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
