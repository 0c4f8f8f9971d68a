"""Side by side with the tools users would pick instead, on the same emulator in the same run.

    python -m scripts.bench_compare --members 100000 --activity-members 7000 --campaigns 100
    make bench-compare BENCH_COMPARE_ARGS="--members 10000 --skip-tap"

**Forward: per-record upserts against the audience DAG.** The emulator runs at ``--latency-ms 50
--max-concurrent 10`` (Mailchimp's 10 connections per key). The demo generator fills a SQLite
warehouse with ``--members`` customers (plus its bad rows). Mailchimp's official client
(``mailchimp-marketing``, pinned in requirements.txt) then does what per-record reverse-ETL tools
do: creates the audience and PUTs every customer (email, status_if_new, FNAME/LNAME) on 10
threads. The emulator is reset and the ``mailchimp_audience_sync`` DAG syncs the same rows through
``dag.test()`` (as ``scripts.bench_audience``, whose harness this reuses). Printed: wall time end to
end, the DAG's ``sync_members`` task alone, HTTP requests (``/_emulator/stats``), and the ratios.

**Reverse: Singer's tap-mailchimp against the engagement pull.** A second emulator (same latency
and limit) is seeded with one audience of ``--activity-members`` members and ``--campaigns``
campaigns delivered in the past with the emulator's synthetic engagement (opens, clicks, bounces,
unsubscribes), plus three static segments. ``tap-mailchimp`` is installed from
the package registry into its own venv (``.bench/tap-mailchimp``, never vendored into this repo)
and pointed at the emulator by a wrapper that only replaces its base URL; every stream of its
catalog is selected. Then the ``mailchimp_engagement_pull`` DAG runs the tasks that read the same
things into PostgreSQL (audiences, campaigns, email activity, automations, segments, segment
members; sent-to recipients are left out: the tap has no such stream). Where the tap stops on an
endpoint, the stream is deselected, the tap is run again, and the report says which streams were
skipped and why.

Targets (issue #17): at 100k members, 20x the per-record client end to end and 100x fewer HTTP
requests; at 1M activity rows, 5x tap-mailchimp.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
TAP_VENV = ROOT / ".bench" / "tap-mailchimp"
TAP_VERSION = "1.3.3"
"""The tap-mailchimp release installed (singer-io/tap-mailchimp on PyPI)."""
API_KEY = "0123456789abcdef0123456789abcdef-us1"
LATENCY_MS = 50.0
MAX_CONCURRENT = 10
THREADS = 10
ENGAGEMENT_TASKS = ("pull_audiences", "pull_campaigns", "pull_email_activity", "pull_automations",
                    "pull_segments", "pull_segment_members")
"""The engagement pull's tasks that read what tap-mailchimp's streams read."""
BOOKKEEPING = {"mailchimp_batch", "mailchimp_watermark", "mailchimp_sync_state", "mailchimp_sync_result",
               "mailchimp_rejected_record"}
"""Tables of the pull's own bookkeeping, not data read from Mailchimp."""
TAP_WRAPPER = '''"""Run tap-mailchimp against $TAP_MAILCHIMP_BASE_URL instead of https://<dc>.api.mailchimp.com."""
import os

import tap_mailchimp
import tap_mailchimp.client as client

_init = client.MailchimpClient.__init__


def _init_at_emulator(self, config):
    _init(self, config)
    self._MailchimpClient__base_url = os.environ["TAP_MAILCHIMP_BASE_URL"]


client.MailchimpClient.__init__ = _init_at_emulator
tap_mailchimp.main()
'''


# ------------------------------------------------------------------------------------------------
# HTTP helpers
# ------------------------------------------------------------------------------------------------
def _admin(root_url: str, method: str, path: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
    req = urllib.request.Request(f"{root_url}/_emulator/{path}", method=method, data=data,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as resp:
        raw = resp.read()
    return json.loads(raw) if raw else None


def _limits(root_url: str) -> None:
    _admin(root_url, "POST", "faults", {"latency_ms": LATENCY_MS, "max_concurrent": MAX_CONCURRENT})


def _requests(root_url: str) -> int:
    return int(_admin(root_url, "GET", "stats")["requests"])


# ------------------------------------------------------------------------------------------------
# forward: the official client, one PUT per member
# ------------------------------------------------------------------------------------------------
def per_record_client(warehouse_url: str, root_url: str) -> dict[str, Any]:
    """Create the audience and PUT every customer with ``mailchimp_marketing`` on 10 threads."""
    import mailchimp_marketing as MailchimpMarketing
    import sqlalchemy as sa
    from mailchimp_marketing.api_client import ApiClientError

    engine = sa.create_engine(warehouse_url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT email, first_name, last_name, marketing_opt_in FROM customers")).all()
    engine.dispose()
    local = threading.local()

    def client() -> Any:
        if not hasattr(local, "client"):
            local.client = MailchimpMarketing.Client()
            local.client.set_config({"api_key": API_KEY, "server": "us1"})
            local.client.api_client.host = root_url + "/3.0"
        return local.client

    started = time.perf_counter()
    list_id = client().lists.create_list({
        "name": "Warehouse customers", "permission_reminder": "You bought from our shop.", "email_type_option": False,
        "contact": {"company": "Example Shop Ltd", "address1": "1 Market Street", "city": "Springfield",
                    "state": "IL", "zip": "62701", "country": "US"},
        "campaign_defaults": {"from_name": "Example Shop", "from_email": "news@shop-mail.net",
                              "subject": "News", "language": "en"},
    })["id"]

    def put(row: Any) -> bool:
        email = (row.email or "").strip()
        body = {"email_address": email, "status_if_new": "subscribed" if row.marketing_opt_in else "transactional",
                "merge_fields": {"FNAME": row.first_name or "", "LNAME": row.last_name or ""}}
        try:
            client().lists.set_list_member(list_id, hashlib.md5(email.lower().encode()).hexdigest(), body)
            return True
        except ApiClientError:
            return False

    with ThreadPoolExecutor(THREADS) as pool:
        ok = sum(pool.map(put, rows, chunksize=64))
    return {"wall": time.perf_counter() - started, "records": len(rows), "ok": ok, "failed": len(rows) - ok}


def compare_forward(members: int, workdir: Path) -> dict[str, Any]:
    from scripts.bench_audience import Bench

    bench = Bench(workdir)
    bench.child("initdb")
    bench.start_emulator()
    try:
        _limits(bench.root_url)
        url = f"sqlite:///{workdir / 'warehouse.db'}"
        seeded = bench.child("seed", url, str(members))
        print(f"forward: {seeded['customers']:,} customer rows; emulator at {LATENCY_MS:.0f} ms latency, "
              f"{MAX_CONCURRENT} connections", flush=True)
        before = _requests(bench.root_url)
        client = per_record_client(url, bench.root_url)
        client["http_requests"] = _requests(bench.root_url) - before
        print(f"  per-record client: {client['wall']:.1f} s, {client['http_requests']:,} requests "
              f"({client['ok']:,} ok, {client['failed']:,} refused)", flush=True)
        bench.admin("POST", "reset")
        _limits(bench.root_url)
        dag = bench.measure_run(url)
        print(f"  audience DAG: {dag['state']}, {dag['wall']:.1f} s (sync_members {dag['tasks'].get('sync_members', 0):.1f} s), "
              f"{dag['http_requests']:,} requests", flush=True)
    finally:
        bench.stop()
    return {"rows": seeded["customers"], "client": client, "dag": dag}


# ------------------------------------------------------------------------------------------------
# reverse: the seeded emulator (child process)
# ------------------------------------------------------------------------------------------------
def serve_seeded_emulator(port: int, members: int, campaigns: int) -> None:
    """Seed one account through the emulator's own handlers, then serve it (the child process)."""
    import uvicorn

    from scripts.bench_engagement import seeded_account

    emulator, call, list_id = seeded_account("Readers")
    state = emulator.state
    from mailchimp_emulator.campaigns import inject_activity
    for start in range(0, members, 500):
        call("POST", f"/lists/{list_id}", {"update_existing": True, "members": [
            {"email_address": f"reader{n:07d}@brightmail.co", "status": "subscribed",
             "merge_fields": {"FNAME": "Reader", "LNAME": str(n)}} for n in range(start, min(start + 500, members))]})
    for n in range(3):
        call("POST", f"/lists/{list_id}/segments", {
            "name": f"Tag {n}", "static_segment": [f"reader{m:07d}@brightmail.co" for m in range(n, min(members, 3000), 3)]})
    sent = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(days=20)
    for n in range(campaigns):
        campaign = call("POST", "/campaigns", {
            "type": "regular", "recipients": {"list_id": list_id},
            "settings": {"subject_line": f"Issue {n}", "title": f"Issue {n}", "from_name": "Acme",
                         "reply_to": "news@acme-outfitters.com"}})
        inject_activity(state, {"campaign_id": campaign["id"], "synthetic": True,
                                "send_time": (sent + timedelta(hours=n)).isoformat()})
    config = uvicorn.Config(emulator.build_app(), host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    uvicorn.Server(config).run()


def _start_seeded(members: int, campaigns: int) -> tuple[subprocess.Popen[bytes], str]:
    from scripts.bench_audience import _free_port

    port = _free_port()
    child = subprocess.Popen([sys.executable, "-m", "scripts.bench_compare", "--serve-emulator", str(port),
                              "--activity-members", str(members), "--campaigns", str(campaigns)], cwd=ROOT)
    root_url = f"http://127.0.0.1:{port}"
    while True:
        try:
            _admin(root_url, "GET", "stats")
            return child, root_url
        except OSError:
            if child.poll() is not None:
                raise SystemExit("the seeded emulator exited")
            time.sleep(0.5)


# ------------------------------------------------------------------------------------------------
# reverse: tap-mailchimp
# ------------------------------------------------------------------------------------------------
def install_tap() -> Path:
    """tap-mailchimp in its own venv under .bench/ (from the package registry, once)."""
    tap = TAP_VENV / "bin" / "tap-mailchimp"
    if not tap.exists():
        print(f"installing tap-mailchimp=={TAP_VERSION} into {TAP_VENV} ...", flush=True)
        if not (TAP_VENV / "bin" / "pip").exists():
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(TAP_VENV)], check=True)
        subprocess.run([str(TAP_VENV / "bin" / "pip"), "install", "-q", f"tap-mailchimp=={TAP_VERSION}"], check=True)
    wrapper = TAP_VENV / "run_at_emulator.py"
    wrapper.write_text(TAP_WRAPPER)
    return wrapper


def _select_all(catalog: dict[str, Any], skip: set[str]) -> dict[str, Any]:
    """Every stream and field selected but those in ``skip`` (the discovered catalog has no stream-level
    metadata entry; the tap reads ``selected`` from the one whose breadcrumb is empty)."""
    for stream in catalog["streams"]:
        entries = stream.setdefault("metadata", [])
        if not any(e["breadcrumb"] == [] for e in entries):
            entries.append({"breadcrumb": [], "metadata": {}})
        for entry in entries:
            entry.setdefault("metadata", {})["selected"] = stream["tap_stream_id"] not in skip
    return catalog


def _failed_stream(stderr: str, streams: list[str]) -> tuple[str, str]:
    """The stream the tap was syncing when it stopped, and the last request it made."""
    stream, request = "", ""
    for line in stderr.splitlines():
        if "Executing " in line:
            request = line.split("Executing ", 1)[1][:200]
        for name in streams:
            if f" {name} - " in line:  # the tap logs "<stream> - Syncing - ..." per page
                stream = name
    return stream, request


def run_tap(root_url: str, workdir: Path) -> dict[str, Any]:
    wrapper = install_tap()
    python = str(TAP_VENV / "bin" / "python")
    config = workdir / "tap_config.json"
    config.write_text(json.dumps({"api_key": API_KEY, "dc": "us1", "start_date": "2000-01-01T00:00:00Z",
                                  "page_size": "1000", "request_timeout": 300}))
    env = {**os.environ, "TAP_MAILCHIMP_BASE_URL": root_url}
    discovered = subprocess.run([python, str(wrapper), "-c", str(config), "--discover"], env=env, capture_output=True,
                                text=True, check=True)
    catalog = json.loads(discovered.stdout)
    streams = [s["tap_stream_id"] for s in catalog["streams"]]
    skipped: dict[str, str] = {}
    while True:
        catalog_file = workdir / "tap_catalog.json"
        catalog_file.write_text(json.dumps(_select_all(catalog, set(skipped))))
        out_file = workdir / "tap_output.jsonl"
        before = _requests(root_url)
        started = time.perf_counter()
        with out_file.open("w") as out:
            proc = subprocess.run([python, str(wrapper), "-c", str(config), "--catalog", str(catalog_file)], env=env,
                                  stdout=out, stderr=subprocess.PIPE, text=True)
        wall = time.perf_counter() - started
        requests_made = _requests(root_url) - before
        if proc.returncode == 0:
            break
        stream, request = _failed_stream(proc.stderr, streams)
        reason = next((line for line in reversed(proc.stderr.splitlines()) if "CRITICAL" in line), "exit code "
                      + str(proc.returncode))
        if not stream or stream in skipped:
            sys.stderr.write(proc.stderr[-4000:])
            raise SystemExit(f"tap-mailchimp failed: {reason}")
        skipped[stream] = f"{reason.strip()[:200]} (last request: {request})"
        print(f"  tap-mailchimp stopped in stream {stream}: {skipped[stream]}; running again without it", flush=True)
    counts: dict[str, int] = {}
    with out_file.open() as lines:
        for line in lines:
            if line.startswith('{"type": "RECORD"') or line.startswith('{"type":"RECORD"'):
                name = json.loads(line)["stream"]
                counts[name] = counts.get(name, 0) + 1
    return {"wall": wall, "http_requests": requests_made, "records": counts, "skipped": skipped,
            "output_mb": out_file.stat().st_size / 1e6}


# ------------------------------------------------------------------------------------------------
# reverse: the engagement pull (a dag.test() child process)
# ------------------------------------------------------------------------------------------------
def child_engagement() -> dict[str, Any]:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags" / "mailchimp_engagement_pull.py"))
    if bag.import_errors:
        raise SystemExit(f"DAG import errors: {bag.import_errors}")
    dag = bag.get_dag("mailchimp_engagement_pull")
    dag = dag.partial_subset(task_ids=[t for t in dag.task_ids if t.split(".")[0] in ENGAGEMENT_TASKS],
                             include_upstream=False, include_downstream=False)
    for task in dag.tasks:
        task.retries = 0
    from airflow.sdk.execution_time.supervisor import InProcessTestSupervisor

    InProcessTestSupervisor._api_client(dag)
    started = time.perf_counter()
    run = dag.test()
    wall = time.perf_counter() - started
    tasks = {ti.task_id: (ti.end_date - ti.start_date).total_seconds()
             for ti in run.get_task_instances() if ti.start_date and ti.end_date}
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    return {"state": str(run.state), "wall": wall, "tasks": tasks, "task_states": states}


def run_engagement(root_url: str, workdir: Path, pg_url: str) -> dict[str, Any]:
    import sqlalchemy as sa
    import yaml

    from scripts.bench_audience import Bench, _airflow_conn, _pg_database

    bench = Bench(workdir)  # its Airflow home and environment; the emulator is ours
    config = yaml.safe_load((ROOT / "include" / "engagement_pull.yaml").read_text())
    config["activity"].update(deferrable=False, poll_interval_seconds=2)  # the tap's first poll is after 2 s too
    config["campaigns"]["recent_window_days"] = 3650
    config_file = workdir / "engagement_pull.yaml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    url, drop = _pg_database(pg_url)
    env = {**bench.env, "MAILCHIMP_ENGAGEMENT_PULL_CONFIG": str(config_file),
           "AIRFLOW_CONN_WAREHOUSE_DEFAULT": json.dumps(_airflow_conn(url)),
           "AIRFLOW_CONN_MAILCHIMP_DEFAULT": (f"mailchimp://:{quote(API_KEY, safe='')}@{root_url.split('//', 1)[1]}/"
                                              f"?base_url={quote(root_url + '/3.0', safe='')}")}
    try:
        subprocess.run([sys.executable, "-m", "scripts.bench_audience", "--child", "initdb"], env=env, cwd=ROOT,
                       check=True, capture_output=True)
        before = _requests(root_url)
        out = subprocess.run([sys.executable, "-m", "scripts.bench_compare", "--child-engagement"], env=env, cwd=ROOT,
                             capture_output=True, text=True)
        lines = [line for line in out.stdout.splitlines() if line.startswith("BENCH ")]
        if out.returncode != 0 or not lines:
            sys.stderr.write(out.stdout[-3000:] + out.stderr[-6000:])
            raise SystemExit("the engagement pull failed")
        result = json.loads(lines[-1][6:])
        if result["state"] != "success":
            sys.stderr.write(out.stdout[-3000:] + out.stderr[-6000:])
        result["http_requests"] = _requests(root_url) - before
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            names = sa.inspect(conn).get_table_names()
            result["rows"] = {n: conn.execute(sa.text(f'SELECT count(*) FROM "{n}"')).scalar_one()
                              for n in sorted(names) if n.startswith("mailchimp_") and n not in BOOKKEEPING}
        engine.dispose()
    finally:
        drop()
    return result


def compare_reverse(members: int, campaigns: int, workdir: Path, pg_url: str, skip_tap: bool) -> dict[str, Any]:
    print(f"\nreverse: seeding {members:,} members x {campaigns} campaigns of synthetic engagement ...", flush=True)
    t0 = time.perf_counter()
    child, root_url = _start_seeded(members, campaigns)
    try:
        print(f"  seeded in {time.perf_counter() - t0:.0f} s", flush=True)
        _limits(root_url)
        tap = None if skip_tap else run_tap(root_url, workdir)
        if tap:
            print(f"  tap-mailchimp: {tap['wall']:.1f} s, {tap['http_requests']:,} requests, "
                  f"{sum(tap['records'].values()):,} records {tap['records']}", flush=True)
        pull = run_engagement(root_url, workdir, pg_url)
        print(f"  engagement pull: {pull['state']}, {pull['wall']:.1f} s, {pull['http_requests']:,} requests, "
              f"rows {pull['rows']}; tasks {pull['tasks']}", flush=True)
    finally:
        child.terminate()
        child.wait(timeout=60)
    return {"tap": tap, "pull": pull}


# ------------------------------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------------------------------
def report(forward: dict[str, Any] | None, reverse: dict[str, Any] | None) -> None:
    print("\n=== side by side ===")
    if forward:
        c, d = forward["client"], forward["dag"]
        task = d["tasks"].get("sync_members", 0.0)
        print(f"forward, {forward['rows']:,} customer rows, {LATENCY_MS:.0f} ms latency, {MAX_CONCURRENT} connections:")
        print(f"  {'':<28}{'wall s':>9}{'HTTP requests':>15}")
        print(f"  {'official client, 10 threads':<28}{c['wall']:>9.1f}{c['http_requests']:>15,}")
        print(f"  {'audience DAG (dag.test())':<28}{d['wall']:>9.1f}{d['http_requests']:>15,}")
        print(f"  {'  its sync_members task':<28}{task:>9.1f}")
        print(f"  ratios: {c['wall'] / d['wall']:.1f}x end to end (target >= 20x at 100k), "
              f"{c['wall'] / task:.1f}x on the task, "
              f"{c['http_requests'] / max(d['http_requests'], 1):.0f}x fewer requests (target >= 100x)")
    if reverse:
        t, p = reverse["tap"], reverse["pull"]
        activity = p["rows"].get("mailchimp_campaign_recipient_activity", 0)
        print(f"reverse, {activity:,} activity rows:")
        print(f"  {'engagement pull (dag.test())':<30}{p['wall']:>9.1f} s {p['http_requests']:>7,} requests, "
              f"{sum(p['rows'].values()):,} rows")
        if t:
            print(f"  {'tap-mailchimp (to a file)':<30}{t['wall']:>9.1f} s {t['http_requests']:>7,} requests, "
                  f"{sum(t['records'].values()):,} records")
            print(f"  ratio: {t['wall'] / p['wall']:.1f}x (target >= 5x at 1M activity rows)")
            for stream, why in t["skipped"].items():
                print(f"  tap stream skipped: {stream}: {why}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=100_000, help="customers for the forward comparison (0: skip it)")
    parser.add_argument("--activity-members", type=int, default=7_000, help="audience size for the reverse comparison")
    parser.add_argument("--campaigns", type=int, default=100, help="campaigns for the reverse comparison (0: skip it)")
    parser.add_argument("--skip-tap", action="store_true", help="run the engagement pull without tap-mailchimp")
    parser.add_argument("--pg-url", default=os.environ.get("MAILCHIMP_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--serve-emulator", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-engagement", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_emulator:
        serve_seeded_emulator(args.serve_emulator, args.activity_members, args.campaigns)
        return 0
    if args.child_engagement:
        print("BENCH " + json.dumps(child_engagement(), default=str), flush=True)
        return 0
    forward = reverse = None
    if args.members:
        forward = compare_forward(args.members, Path(tempfile.mkdtemp(prefix="bench-compare-fwd-")))
    if args.campaigns:
        reverse = compare_reverse(args.activity_members, args.campaigns, Path(tempfile.mkdtemp(prefix="bench-compare-rev-")),
                                  args.pg_url, args.skip_tap)
    report(forward, reverse)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
