"""Benchmark of the sharded email-activity pull: ``pull_email_activity`` unmapped vs mapped over
``activity.shards`` task instances, through Airflow's ``dag.test()``, into PostgreSQL.

    python -m scripts.bench_shards                                   # 100 campaigns x 2,000 recipients; shards 1, 2, 4
    python -m scripts.bench_shards --campaigns 40 --recipients 1000 --shards 1 3

The emulator (zero latency) is seeded once by ``scripts.bench_engagement``'s seeder (every recipient
opens once, 30% open again, 12% click, 2% bounce). For each shard count a fresh PostgreSQL
database is loaded by ``pull_campaigns >> pull_email_activity`` of the shipped DAG, in a child
process of its own (``dag.test()``, Airflow metadata in SQLite). ``dag.test()`` runs mapped task
instances one after the other, so this measures what sharding costs (more batches, more task
starts), not what it gains: the gain needs several workers (the stack, ``make stack``). The rows
loaded must be the same for every shard count; the script checks it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DAG_ID = "mailchimp_engagement_pull"


def child_initdb() -> dict[str, Any]:
    from airflow.models.pool import Pool
    from airflow.utils import db

    db.initdb()
    Pool.create_or_update_pool("mailchimp_api", 4, "Mailchimp API", include_deferred=False)
    return {}


def child_run() -> dict[str, Any]:
    """One ``dag.test()`` of the activity part of the DAG, with the config of the environment."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("engagement_dag", ROOT / "dags" / f"{DAG_ID}.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    from mailchimp_provider.reverse.config import load_config

    config = load_config()
    dag = module.build_dag(config, retries=0).partial_subset(["pull_email_activity"], include_upstream=True)
    from airflow.sdk.execution_time.supervisor import InProcessTestSupervisor

    InProcessTestSupervisor._api_client(dag)  # the in-process API's imports, outside the timing
    started = time.perf_counter()
    run = dag.test()
    wall = time.perf_counter() - started
    activity = [ti for ti in run.get_task_instances() if ti.task_id == "pull_email_activity"]
    durations = [(ti.end_date - ti.start_date).total_seconds() for ti in activity if ti.start_date and ti.end_date]
    from mailchimp_provider.warehouse.connection import get_engine
    from mailchimp_provider.warehouse.tables import WarehouseTables

    with get_engine("warehouse_default").connect() as conn:
        loaded = activity_fingerprint(conn, WarehouseTables())
    return {"state": str(run.state), "wall": wall, "instances": len(activity), "task_sum": sum(durations),
            "task_max": max(durations, default=0.0), **loaded}


def activity_fingerprint(conn: Any, tables: Any) -> dict[str, Any]:
    """``rows``, ``digest`` (MD5 over every activity row's key, in key order: equal digests, equal
    rows) and ``batches`` (email-activity batches in the ledger) of a PostgreSQL warehouse."""
    import sqlalchemy as sa

    rows = conn.execute(sa.select(sa.func.count()).select_from(tables.activity)).scalar_one()
    digest = conn.execute(sa.text(
        f"SELECT md5(string_agg(campaign_id || member_id || action || timestamp::text || url_key, ',' "
        f"ORDER BY campaign_id, member_id, action, timestamp, url_key)) FROM {tables.table_name('activity')}"
    )).scalar_one()
    batches = conn.execute(sa.select(sa.func.count()).select_from(tables.batch)
                           .where(tables.batch.c.entity == "email_activity")).scalar_one()
    return {"rows": rows, "digest": digest, "batches": batches}


def _admin(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_emulator/{path}", timeout=60) as resp:
        return json.loads(resp.read())


def _child(env: dict[str, str], what: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "scripts.bench_shards", "--child", what],
                         env=env, cwd=ROOT, capture_output=True, text=True)
    lines = [line for line in out.stdout.splitlines() if line.startswith("BENCH ")]
    if out.returncode != 0 or not lines:
        sys.stderr.write(out.stdout[-4000:] + out.stderr[-8000:])
        raise SystemExit(f"child {what} failed with exit code {out.returncode}")
    return json.loads(lines[-1][6:])


def orchestrate(args: argparse.Namespace) -> int:
    import yaml

    from scripts.bench_audience import _airflow_conn, _pg_database, airflow_child_env
    from scripts.bench_engagement import serve_seeded_emulator

    print(f"Seeding the emulator: {args.campaigns} campaigns x {args.recipients} recipients ...", flush=True)
    emulator, port = serve_seeded_emulator(args.campaigns, args.recipients)
    work = Path(tempfile.mkdtemp(prefix="bench-shards-"))
    (work / "airflow").mkdir()
    (work / "no-plugins").mkdir()
    env = airflow_child_env(work / "airflow", work / "no-plugins", port)
    try:
        _child(env, "initdb")
        print(f"\n{'shards':>6}{'instances':>10}{'batches':>8}{'rows':>11}{'dag s':>8}{'activity task s (sum)':>23}"
              f"{'(longest)':>10}{'HTTP req':>9}{'load':>6}", flush=True)
        digests = set()
        for shards in args.shards:
            url, drop = _pg_database(args.pg_url)
            config = work / f"engagement-{shards}.yaml"
            config.write_text(yaml.safe_dump({"activity": {
                "shards": shards, "batch_chunk_size": args.chunk, "deferrable": False, "poll_interval_seconds": 0.2}}))
            run_env = {**env, "MAILCHIMP_ENGAGEMENT_PULL_CONFIG": str(config),
                       "AIRFLOW_CONN_WAREHOUSE_DEFAULT": json.dumps(_airflow_conn(url))}
            try:
                before = _admin(port, "stats")["requests"]
                r = _child(run_env, "run")
                requests = _admin(port, "stats")["requests"] - before
            finally:
                drop()
            if r["state"] != "success":
                raise SystemExit(f"the run with {shards} shard(s) ended {r['state']}")
            digests.add(r["digest"])
            print(f"{shards:>6}{r['instances']:>10}{r['batches']:>8}{r['rows']:>11,}{r['wall']:>8.1f}"
                  f"{r['task_sum']:>23.1f}{r['task_max']:>10.1f}{requests:>9}{os.getloadavg()[0]:>6.1f}", flush=True)
        print("\nrows identical across shard counts:", "yes" if len(digests) == 1 else f"NO ({len(digests)} versions)")
        return 0 if len(digests) == 1 else 1
    finally:
        emulator.terminate()
        emulator.wait(timeout=30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--campaigns", type=int, default=100)
    parser.add_argument("--recipients", type=int, default=2000)
    parser.add_argument("--chunk", type=int, default=25, help="campaigns per batch (activity.batch_chunk_size)")
    parser.add_argument("--shards", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--pg-url", default=os.environ.get("MAILCHIMP_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--child", choices=("initdb", "run"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        result = child_initdb() if args.child == "initdb" else child_run()
        print("BENCH " + json.dumps(result), flush=True)
        return 0
    return orchestrate(args)


if __name__ == "__main__":
    raise SystemExit(main())
