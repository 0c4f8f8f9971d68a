"""Benchmark of the sharded email-activity pull on the production-shaped stack: one Celery worker
against two, in one run, on the same data and the same emulator.

    .venv/bin/python -m scripts.bench_stack_fanout                          # 100 x 3,000; shards 1, 2, 4; 2 repeats
    .venv/bin/python -m scripts.bench_stack_fanout --campaigns 40 --recipients 1000 --shards 2 --repeats 1

What runs: a stack of its own (``scripts/stack.py``: api-server, scheduler, dag-processor,
triggerer, two Celery workers on Redis, metadata and Celery results in PostgreSQL) in
``.bench/stack-fanout``, with database names ``mc_fanout_*`` and Celery queue ``mc_fanout``, so it
never touches a stack ``make stack`` started. Its ``mailchimp_default`` points at an emulator
seeded once by ``scripts.bench_engagement`` (zero latency; every recipient opens once, 30% open
again, 12% click, 2% bounce). For each shard count a DAG ``activity_fanout_shards_<n>``
(``scripts/stack_dags/activity_fanout.py``: the shipped ``pull_campaigns >> pull_email_activity``,
mapped over ``activity.shards``) loads the warehouse, which is recreated empty before every run.

"One worker" stops ``worker-2`` (by PID), "two workers" starts it again; each worker is its own
``airflow celery worker`` process with ``--concurrency`` task slots (default 1, so that one worker
really runs one shard at a time and two workers two). The order of the worker counts alternates
between repeats, so that a drift of the machine's load does not favour one side.

Printed per run: trigger to success (this process, polling every 0.25 s), the run's own
start-to-end from the metadata DB, each task's duration from its task instances, the span of the
mapped instances (first start to last end), which workers ran them (the run id in each worker's
log), rows loaded (with a digest: rows must be identical across every run) and the load average.
Then, per shard count, the median speed-up of two workers over one. A first run (repeat 0) warms
the fresh stack up and is not counted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from scripts.procmem import load_average

ROOT = Path(__file__).resolve().parents[1]
FANOUT_DAGS = ROOT / "scripts" / "stack_dags"
CONFIG_DIR_ENV = "MAILCHIMP_FANOUT_CONFIG_DIR"
"""Read by ``stack_dags/activity_fanout.py`` (which cannot import this module in the stack's processes)."""
DAG_PREFIX = "activity_fanout_"


def write_fanout_configs(folder: Path, shards: list[int], *, chunk: int = 25, deferrable: bool = False,
                         poll: float = 0.2, own_tables: bool = False) -> dict[int, str]:
    """One engagement config per shard count in ``folder``; returns the DAG id of each. With
    ``own_tables`` each writes tables of its own (prefix ``fan<n>_``), so the DAGs can load one
    warehouse side by side."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    dag_ids = {}
    for count in shards:
        config: dict[str, Any] = {"activity": {"shards": count, "batch_chunk_size": chunk, "deferrable": deferrable,
                                               "poll_interval_seconds": poll}}
        if own_tables:
            config["table_prefix"] = f"fan{count}_"
        (folder / f"shards_{count}.yaml").write_text(yaml.safe_dump(config))
        dag_ids[count] = f"{DAG_PREFIX}shards_{count}"
    return dag_ids


def wait_dags(api: Any, dag_ids: list[str], timeout: float = 240) -> None:
    """Until the dag-processor has parsed every DAG; then unpause them (they have no schedule)."""
    deadline = time.monotonic() + timeout
    while True:
        found = {d["dag_id"] for d in api.call("GET", "/dags", params={"dag_id_pattern": f"{DAG_PREFIX}%"})["dags"]}
        if set(dag_ids) <= found:
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"the fan-out DAGs were not parsed: {sorted(found)}; import errors: {api.import_errors()}")
        time.sleep(1)
    for dag_id in dag_ids:
        api.unpause(dag_id)


def _seconds(start: str | None, end: str | None) -> float:
    if not start or not end:
        return 0.0
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def workers_of_run(stack: Any, run_id: str, offsets: dict[str, int]) -> list[str]:
    """The workers whose log (since ``offsets``) names ``run_id``: which of them ran the run's tasks."""
    from scripts.stack import WORKERS

    used = []
    for name in WORKERS:
        log = stack.config.home / "logs" / f"{name}.log"
        if not log.exists():
            continue
        with log.open("rb") as handle:
            handle.seek(offsets.get(name, 0))
            if run_id.encode() in handle.read():
                used.append(name)
    return used


def log_offsets(stack: Any) -> dict[str, int]:
    from scripts.stack import WORKERS

    logs = {name: stack.config.home / "logs" / f"{name}.log" for name in WORKERS}
    return {name: log.stat().st_size if log.exists() else 0 for name, log in logs.items()}


def run_once(stack: Any, api: Any, dag_id: str) -> dict[str, Any]:
    """Trigger ``dag_id`` on an empty warehouse; wall time, task durations and rows loaded."""
    import sqlalchemy as sa

    from mailchimp_provider.warehouse.tables import WarehouseTables
    from scripts.bench_shards import activity_fingerprint
    from scripts.stack import database_names, recreate_databases

    recreate_databases(stack.config.pg_url, [database_names(stack.config)["warehouse"]])
    offsets = log_offsets(stack)
    load = load_average()
    started = time.monotonic()
    run_id = api.trigger(dag_id)
    state = api.wait_run(dag_id, run_id, timeout=1800, poll=0.25)
    wall = time.monotonic() - started
    if state != "success":
        raise SystemExit(f"{dag_id} {run_id} ended {state}: {api.task_instances(dag_id, run_id)}")
    run = api.call("GET", f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}")
    tis = api.task_instances(dag_id, run_id)
    activity = [ti for ti in tis if ti["task_id"] == "pull_email_activity"]
    campaigns = next(ti for ti in tis if ti["task_id"] == "pull_campaigns")
    engine = sa.create_engine(stack.warehouse_url)
    try:
        with engine.connect() as conn:
            loaded = activity_fingerprint(conn, WarehouseTables())
    finally:
        engine.dispose()
    return {
        "wall": wall, "run": _seconds(run["start_date"], run["end_date"]), "load": load, "load_after": load_average(),
        "campaigns_task": campaigns["duration"] or 0.0, "instances": len(activity),
        "activity_sum": sum(ti["duration"] or 0.0 for ti in activity),
        "activity_max": max((ti["duration"] or 0.0 for ti in activity), default=0.0),
        "activity_span": _seconds(min(ti["start_date"] for ti in activity), max(ti["end_date"] for ti in activity)),
        "workers_used": workers_of_run(stack, run_id, offsets), **loaded,
    }


def set_workers(stack: Any, count: int) -> None:
    """One worker: ``worker-2`` stopped; two: started again (and consuming) if it was stopped."""
    from scripts.stack import restart_worker, stop_service

    if count == 1:
        stop_service(stack, "worker-2")
    elif "worker-2" not in stack.pids:
        restart_worker(stack, "worker-2")


def point_at_emulator(api: Any, port: int) -> None:
    """``mailchimp_default`` to the seeded emulator (host and key as the stack created them)."""
    api.call("PATCH", "/connections/mailchimp_default", params={"update_mask": "port"},
             json={"connection_id": "mailchimp_default", "conn_type": "mailchimp", "port": port})


def _row(shards: int, workers: int, repeat: int, r: dict[str, Any]) -> str:
    return (f"{shards:>6}{workers:>8}{repeat:>4}{r['wall']:>9.1f}{r['run']:>8.1f}{r['campaigns_task']:>10.1f}"
            f"{r['instances']:>6}{r['activity_sum']:>9.1f}{r['activity_max']:>9.1f}{r['activity_span']:>9.1f}"
            f"  {','.join(w.removeprefix('worker-') for w in r['workers_used']) or '?':<5}{r['rows']:>9,}"
            f"{r['batches']:>5}  {r['load']:>9} {r['load_after']:>9}")


def orchestrate(args: argparse.Namespace) -> int:
    from scripts.bench_engagement import serve_seeded_emulator
    from scripts.stack import StackConfig, down, up
    from scripts.stack_api import AirflowApi

    home = ROOT / ".bench" / "stack-fanout"
    dag_ids = write_fanout_configs(home / "fanout-configs", args.shards, chunk=args.chunk)
    print(f"Machine: {os.cpu_count()} cores, load {load_average()}. Seeding the emulator: "
          f"{args.campaigns} campaigns x {args.recipients} recipients ...", flush=True)
    emulator, port = serve_seeded_emulator(args.campaigns, args.recipients)
    config = StackConfig(home=home, name="mc_fanout", redis_url=args.redis_url,
                         worker_concurrency=args.concurrency, pool_slots=max(args.shards),
                         extra_dag_folders=[FANOUT_DAGS], extra_env={CONFIG_DIR_ENV: str(home / "fanout-configs")})
    results: dict[tuple[int, int], list[dict[str, Any]]] = {}
    try:
        print(f"Starting the stack in {home} (2 Celery workers, --concurrency {args.concurrency} each) ...", flush=True)
        stack = up(config, quiet=True)
        api = AirflowApi(stack)
        point_at_emulator(api, port)
        wait_dags(api, list(dag_ids.values()))
        print(f"\n{'shards':>6}{'workers':>8}{'rep':>4}{'trig->ok':>9}{'run s':>8}{'campaigns':>10}{'inst':>6}"
              f"{'act sum':>9}{'act max':>9}{'act span':>9}  {'ran':<5}{'rows':>9}{'btch':>5}  {'load':>9} {'after':>9}",
              flush=True)
        # Not counted: the first task processes of a fresh stack compile and warm caches.
        warmup = run_once(stack, api, dag_ids[args.shards[0]])
        print(_row(args.shards[0], 2, 0, warmup) + "  (warm-up)", flush=True)
        for repeat in range(1, args.repeats + 1):
            order = args.workers if repeat % 2 else list(reversed(args.workers))
            for workers in order:
                set_workers(stack, workers)
                for shards in args.shards:
                    r = run_once(stack, api, dag_ids[shards])
                    results.setdefault((shards, workers), []).append(r)
                    print(_row(shards, workers, repeat, r), flush=True)
    finally:
        down(home, keep_databases=False, quiet=True)
        emulator.terminate()
        emulator.wait(timeout=30)
    return summarize(results, args, warmup)


def summarize(results: dict[tuple[int, int], list[dict[str, Any]]], args: argparse.Namespace,
              warmup: dict[str, Any]) -> int:
    """Median per configuration, the speed-up of the most workers over one, and the row check
    (over every run, the warm-up included)."""
    every = [warmup, *(r for runs in results.values() for r in runs)]
    digests = {r["digest"] for r in every}
    rows = {r["rows"] for r in every}
    print(f"\nmedians ({args.repeats} run(s) each; worker --concurrency {args.concurrency}):")
    most = max(args.workers)
    for shards in args.shards:
        one = results.get((shards, 1), [])
        many = results.get((shards, most), [])
        if not one or not many:
            continue
        wall_1, wall_n = (statistics.median(r["wall"] for r in x) for x in (one, many))
        span_1, span_n = (statistics.median(r["activity_span"] for r in x) for x in (one, many))
        print(f"  shards {shards}: trigger->success {wall_1:.1f} s (1 worker) vs {wall_n:.1f} s ({most} workers): "
              f"x{wall_1 / wall_n:.2f}; activity span {span_1:.1f} s vs {span_n:.1f} s: x{span_1 / span_n:.2f}")
    same = len(digests) == 1
    print(f"rows identical in every run: {'yes' if same else 'NO'} ({', '.join(f'{n:,}' for n in sorted(rows))} rows, "
          f"{len(digests)} digest(s)); load now {load_average()}")
    return 0 if same else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--campaigns", type=int, default=100)
    parser.add_argument("--recipients", type=int, default=3000)
    parser.add_argument("--chunk", type=int, default=25, help="campaigns per batch (activity.batch_chunk_size)")
    parser.add_argument("--shards", type=int, nargs="+", default=[1, 2, 4],
                        help="1 is the control: nothing to run in parallel, so its two-worker gain is noise")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], choices=(1, 2))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=1, help="task slots of each Celery worker")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/3",
                        help="broker and connection budget (a database of its own beside `make stack`'s 0)")
    return orchestrate(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
