"""Benchmark of the audience sync: the real DAG (``dag.test()``) against the emulator.

    python -m scripts.bench_audience                          # 10k and 100k, SQLite and PostgreSQL
    python -m scripts.bench_audience --sizes 10000 --databases sqlite
    python -m scripts.bench_audience --pg-url postgresql+psycopg2://postgres@127.0.0.1:5432/test

For every (database, size): the demo generator fills ``customers`` (with its bad rows), then the
``mailchimp_audience_sync`` DAG runs twice through Airflow's ``dag.test()``: a first run (every
customer is new) and a no-change rerun (which must send nothing). Each run is its own process, so
its peak memory (``ru_maxrss``) is its own; the emulator is another process (``mailchimp-emulator``,
zero latency), so its memory and CPU are not counted against the sync (it shares the machine's
cores, though).

Printed per run: wall time of ``dag.test()`` (the whole DAG: both tasks, Airflow's overhead
included) and of the ``sync_members`` task alone, records per second, HTTP requests the emulator
received and batch operations it applied, and peak memory. Targets (issue #4): 100k customers in
under 60 s end to end, peak memory under 500 MB and flat from 10k to 100k, and a no-change rerun of
100k rows in under 10 s with zero operations sent.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import quote
from typing import Any

from scripts.procmem import load_average, process_memory_mb
from scripts.worktime import BatchWaitClock, cpu_seconds, paced, split

ROOT = Path(__file__).resolve().parents[1]
API_KEY = "0123456789abcdef0123456789abcdef-us1"
DAG_ID = "mailchimp_audience_sync"
PROFILE_ENV = "MAILCHIMP_BENCH_PROFILE_DIR"
"""Set by ``--profile DIR``: each run's dag.test() is profiled (cProfile) into DIR."""
TRACEMALLOC_ENV = "MAILCHIMP_BENCH_TRACEMALLOC_DIR"
"""Set by ``--tracemalloc DIR``: each run's allocations at its peak are written into DIR."""


def _trace_peak(out: Path, stop: Any) -> None:
    """Keep a tracemalloc snapshot of the largest heap seen (sampled every 2 s), written at the end.

    Memory that grows with the audience is held at the run's peak, not at its end (the task has
    returned by then), so the snapshot is taken whenever the traced heap reaches a new high."""
    import tracemalloc

    best, snap = 0, None
    while not stop.wait(2.0):
        current, _ = tracemalloc.get_traced_memory()
        if current > best * 1.03:
            best, snap = current, tracemalloc.take_snapshot()
    if snap is not None:
        snap.dump(str(out))


# ------------------------------------------------------------------------------------------------
# child processes
# ------------------------------------------------------------------------------------------------
def child_initdb() -> dict[str, Any]:
    from airflow.models.pool import Pool
    from airflow.utils import db

    db.initdb()
    Pool.create_or_update_pool("mailchimp_api", 8, "Mailchimp API: 10 connections per key", include_deferred=False)
    return {}


def child_seed(url: str, customers: int) -> dict[str, Any]:
    import sqlalchemy as sa

    from mailchimp_provider.demo.data import seed_demo_warehouse

    started = time.perf_counter()
    counts = seed_demo_warehouse(sa.create_engine(url), customers=customers, products=1, orders=0)
    return {"seconds": time.perf_counter() - started, "customers": counts["customers"]}


def child_run() -> dict[str, Any]:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags" / f"{DAG_ID}.py"))
    if bag.import_errors:
        raise SystemExit(f"DAG import errors: {bag.import_errors}")
    dag = bag.get_dag(DAG_ID)
    for task in dag.tasks:
        task.retries = 0
    # dag.test() runs tasks in-process behind an in-process Execution API server whose first use
    # imports FastAPI and friends (~10 s on a small machine); a scheduler-run worker pays this once
    # per process too. Warm it up first and report it separately, so 'dag s' measures the DAG.
    warm = time.perf_counter()
    from airflow.sdk.execution_time.supervisor import InProcessTestSupervisor

    InProcessTestSupervisor._api_client(dag)
    warmup = time.perf_counter() - warm
    profile_dir = os.environ.get(PROFILE_ENV)
    profiler = cProfile.Profile() if profile_dir else None
    trace_dir = os.environ.get(TRACEMALLOC_ENV)
    if trace_dir:
        import threading
        import tracemalloc

        tracemalloc.start(4)
        stop_tracing = threading.Event()
        tracer = threading.Thread(target=_trace_peak, daemon=True,
                                  args=(Path(trace_dir) / f"audience-{os.getpid()}.snap", stop_tracing))
        tracer.start()
    waits = BatchWaitClock().install()
    cpu_before = cpu_seconds()
    started = time.perf_counter()
    if profiler:
        profiler.enable()
    run = dag.test()
    wall = time.perf_counter() - started
    cpu = cpu_seconds() - cpu_before
    if trace_dir:
        stop_tracing.set()
        tracer.join()
    if profiler:
        profiler.disable()
        profiler.dump_stats(Path(profile_dir) / f"audience-{run.run_id.replace(':', '_')}.prof")
    tasks = {}
    for ti in run.get_task_instances():
        if ti.start_date and ti.end_date:
            tasks[ti.task_id] = (ti.end_date - ti.start_date).total_seconds()
    from mailchimp_provider.sync.engine import run_summary
    from mailchimp_provider.warehouse.connection import get_engine
    from mailchimp_provider.warehouse.tables import WarehouseTables

    summary = run_summary(get_engine("warehouse_default"), WarehouseTables(), run.run_id, "member")
    return {
        "state": str(run.state),
        "wall": wall,
        "warmup": warmup,
        "tasks": tasks,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "work": split(wall, cpu, waits.seconds),
        "results": summary.as_dict(),
    }


# ------------------------------------------------------------------------------------------------
# orchestration
# ------------------------------------------------------------------------------------------------
def airflow_child_env(home: Path, plugins_dir: Path, port: int) -> dict[str, str]:
    """The environment of a benchmark's Airflow process: its own home and SQLite metadata DB, the
    shipped DAGs, no plugins (the UI plugin is not benchmarked), the emulator on ``port`` as
    ``mailchimp_default``."""
    bundles = json.dumps([{"name": "dags-folder", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                           "kwargs": {"path": str(ROOT / "dags")}}])
    base = f"http://127.0.0.1:{port}/3.0"
    return {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": bundles,
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(plugins_dir),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins"), str(ROOT / "emulator")]),
        "AIRFLOW_CONN_MAILCHIMP_DEFAULT": f"mailchimp://:{quote(API_KEY, safe='')}@127.0.0.1:{port}/?base_url={quote(base, safe='')}",
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Bench:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = _free_port()
        self.root_url = f"http://127.0.0.1:{self.port}"
        self.config = workdir / "audience_sync.yaml"
        self._write_config()
        home = workdir / "airflow"
        home.mkdir()
        self.env = {
            **airflow_child_env(home, workdir / "no-plugins", self.port),
            "MAILCHIMP_AUDIENCE_SYNC_CONFIG": str(self.config),
        }
        self.emulator: subprocess.Popen[bytes] | None = None

    def _write_config(self) -> None:
        import yaml

        config = yaml.safe_load((ROOT / "include" / "audience_sync.yaml").read_text())
        if not paced(os.environ.get("MAILCHIMP_BENCH_EMULATOR_ARGS", "")):
            config["sync"]["poll_interval"] = 0.2  # the shipped 5 s suits Mailchimp, not a zero-latency emulator
        self.config.write_text(yaml.safe_dump(config, sort_keys=False))

    def start_emulator(self) -> None:
        self.emulator = subprocess.Popen(
            [sys.executable, "-m", "mailchimp_emulator.cli", "--port", str(self.port), "--api-key", API_KEY,
             *os.environ.get("MAILCHIMP_BENCH_EMULATOR_ARGS", "").split()],  # e.g. "--pace mailchimp"
            env=self.env, cwd=ROOT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                self.admin("GET", "stats")
                return
            except OSError:
                time.sleep(0.2)
        raise SystemExit("the emulator did not start")

    def stop(self) -> None:
        if self.emulator is not None:
            self.emulator.terminate()
            self.emulator.wait(timeout=30)

    def admin(self, method: str, path: str) -> Any:
        req = urllib.request.Request(f"{self.root_url}/_emulator/{path}", method=method, data=b"" if method == "POST" else None)
        with urllib.request.urlopen(req, timeout=60) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def child(self, *args: str, warehouse_url: str | None = None, extra_env: dict[str, str] | None = None) -> dict[str, Any]:
        env = {**self.env, **(extra_env or {})}
        if warehouse_url:
            env["AIRFLOW_CONN_WAREHOUSE_DEFAULT"] = json.dumps(_airflow_conn(warehouse_url))
        out = subprocess.run([sys.executable, "-m", "scripts.bench_audience", "--child", *args],
                             env=env, cwd=ROOT, capture_output=True, text=True)
        lines = [line for line in out.stdout.splitlines() if line.startswith("BENCH ")]
        if out.returncode != 0 or not lines:
            sys.stderr.write(out.stdout[-4000:] + out.stderr[-8000:])
            raise SystemExit(f"child {args} failed with exit code {out.returncode}")
        return json.loads(lines[-1][6:])

    def measure_run(self, warehouse_url: str, profile_dir: str | None = None) -> dict[str, Any]:
        before = self.admin("GET", "stats")
        extra = {PROFILE_ENV: profile_dir} if profile_dir else {}
        result = self.child("run", warehouse_url=warehouse_url, extra_env=extra)
        after = self.admin("GET", "stats")
        result["http_requests"] = after["requests"] - before["requests"]
        result["batch_operations"] = after["operations_applied"] - before["operations_applied"]
        assert self.emulator is not None
        result["emulator"] = process_memory_mb(self.emulator.pid)
        result["load"] = load_average()
        return result


def _airflow_conn(url: str) -> dict[str, Any]:
    if url.startswith("sqlite:///"):
        return {"conn_type": "sqlite", "host": url.removeprefix("sqlite:///")}
    from sqlalchemy.engine import make_url

    u = make_url(url)
    return {"conn_type": "postgres", "host": u.host, "port": u.port, "login": u.username,
            "password": u.password, "schema": u.database}


def _pg_database(admin_url: str) -> tuple[str, Any]:
    import sqlalchemy as sa

    name = f"mc_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return admin_url.rsplit("/", 1)[0] + "/" + name, drop


def _row(db: str, size: int, phase: str, r: dict[str, Any]) -> str:
    task = r["tasks"].get("sync_members", 0.0)
    ensure = r["tasks"].get("ensure_audience", 0.0)
    rate = size / r["wall"] if r["wall"] else 0.0
    counts = r["results"]
    ok = sum(counts.get("ok", {}).values())
    skipped = sum(counts.get("skipped", {}).values())
    failed = sum(counts.get("failed", {}).values())
    return (f"{db:<10} {size:>7} {phase:<7} {r['state']:<8} {r['wall']:>8.1f} {task:>8.1f} {rate:>9.0f} "
            f"{r['http_requests']:>8} {r['batch_operations']:>8} {r['peak_rss_mb']:>8.0f} {r['warmup']:>7.1f} {ensure:>6.1f}"
            f" {r['emulator']['rss_mb']:>7.0f} {r['emulator']['peak_mb']:>7.0f} {r['load']:>7}"
            f"   ok={ok} skipped={skipped} failed={failed}"
            f"   cpu={r['work']['cpu_seconds']:.1f}s ({r['work']['cpu_share']:.1%}) "
            f"batch-wait={r['work']['batch_wait_seconds']:.1f}s ({r['work']['batch_wait_share']:.1%})")


def orchestrate(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="bench-audience-"))
    bench = Bench(workdir)
    print("Audience sync benchmark: the real DAG through Airflow's dag.test(), emulator at zero latency "
          f"(separate process, flags: {os.environ.get('MAILCHIMP_BENCH_EMULATOR_ARGS', '') or 'none'}), poll interval "
          f"{'5 s (shipped)' if paced(os.environ.get('MAILCHIMP_BENCH_EMULATOR_ARGS', '')) else '0.2 s'}; "
          f"work dir {workdir}", flush=True)
    bench.child("initdb")
    bench.start_emulator()
    assert bench.emulator is not None
    print(f"emulator at start: {process_memory_mb(bench.emulator.pid)['rss_mb']:.0f} MB resident; "
          f"load {load_average()}", flush=True)
    header = (f"{'database':<10} {'records':>7} {'run':<7} {'state':<8} {'dag s':>8} {'task s':>8} {'rec/s':>9} "
              f"{'http req':>8} {'batch op':>8} {'peak MB':>8} {'warm-up':>7} {'ens s':>6} {'emu MB':>7} {'emu pk':>7} {'load':>7}   results")
    print(header + "\n" + "-" * len(header), flush=True)
    try:
        for db in args.databases:
            for size in args.sizes:
                drop = None
                if db == "sqlite":
                    url = f"sqlite:///{workdir / f'warehouse-{size}.db'}"
                else:
                    url, drop = _pg_database(args.pg_url)
                try:
                    bench.admin("POST", "reset")
                    seeded = bench.child("seed", url, str(size))
                    first = bench.measure_run(url)
                    print(_row(db, seeded["customers"], "first", first), flush=True)
                    rerun = bench.measure_run(url)
                    print(_row(db, seeded["customers"], "rerun", rerun), flush=True)
                    if args.profile_rerun:  # a third run, profiled: the unprofiled figures stay as they are
                        again = bench.measure_run(url, profile_dir=str(Path(args.profile_rerun).resolve()))
                        print(_row(db, seeded["customers"], "rerun2p", again), flush=True)
                finally:
                    if drop:
                        drop()
    finally:
        bench.stop()
    print("\n'dag s' is the whole dag.test() (both tasks, DAG bundle sync, scheduling loop); 'warm-up' is "
          "Airflow's one-time import of its in-process Execution API in the fresh process, done before "
          "and not included in 'dag s'; 'task s' is sync_members alone, 'ens s' the ensure_audience task. rec/s = customer rows / dag s. 'http req' and 'batch op' come "
          "from the emulator's /_emulator/stats. 'peak MB' is ru_maxrss of the process running dag.test(). "
          "'emu MB' / 'emu pk' are the emulator's resident memory after the run and its peak so far "
          "(VmRSS / VmHWM), 'load' the 1-minute load average over the machine's cores after the run. "
          "'cpu' is the CPU time (user + system) of the process running dag.test() during it, and its share "
          "of 'dag s' (the product's own work, Airflow and SQLite included); 'batch-wait' the time spent in "
          "BatchRunner.wait (blocked on Mailchimp's batches) and its share of 'dag s'. "
          f"Emulator flags: {os.environ.get('MAILCHIMP_BENCH_EMULATOR_ARGS', '') or 'none'} (with --pace the shipped "
          "5 s poll interval is kept).")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--databases", nargs="+", choices=["sqlite", "postgres"], default=["sqlite", "postgres"])
    parser.add_argument("--pg-url", default=os.environ.get("MAILCHIMP_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--profile", metavar="DIR", help="write a cProfile of each run's dag.test() into DIR "
                        "(times are then inflated; read them with python -m pstats)")
    parser.add_argument("--profile-rerun", metavar="DIR", help="after the rerun, run a second no-change rerun "
                        "under cProfile into DIR (row 'rerun2p'; the first two runs stay unprofiled)")
    parser.add_argument("--tracemalloc", metavar="DIR", help="write a tracemalloc snapshot of each run's peak "
                        "heap into DIR (tracemalloc.Snapshot.load; compare two sizes with Snapshot.compare_to; times are then inflated)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
        os.environ[PROFILE_ENV] = str(Path(args.profile).resolve())
    if args.profile_rerun:
        Path(args.profile_rerun).mkdir(parents=True, exist_ok=True)
    if args.tracemalloc:
        Path(args.tracemalloc).mkdir(parents=True, exist_ok=True)
        os.environ[TRACEMALLOC_ENV] = str(Path(args.tracemalloc).resolve())
    if args.child:
        kind, *rest = args.child
        if kind == "initdb":
            result = child_initdb()
        elif kind == "seed":
            result = child_seed(rest[0], int(rest[1]))
        else:
            result = child_run()
        print("BENCH " + json.dumps(result, default=str), flush=True)
        return 0
    return orchestrate(args)


if __name__ == "__main__":
    raise SystemExit(main())
