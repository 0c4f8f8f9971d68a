"""The three DAGs on the stack (CeleryExecutor, two workers, deferrable operators, the Redis budget)
give exactly what ``dag.test()`` gives on the same data.

Both sides start from scratch with the same inputs: a fresh emulator, a fresh warehouse seeded with
the demo data (deterministic), then the audience sync, the e-commerce sync, the demo campaign
delivered, and the engagement pull. The ``dag.test()`` side runs in a subprocess
(``dag_test_reference.py``: its own AIRFLOW_HOME and SQLite metadata DB) while the stack runs, so
the test costs about one side's time. What is compared, and the few fields left out because they
legitimately differ (random ids, run and batch ids, timestamps), is in ``outcomes.py``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from airflow_api import AirflowApi, Emulator
from outcomes import differences, emulator_outcome, warehouse_outcome

from scripts.stack import API_KEY, BIN, SHIPPED_DAGS, Stack, drop_databases, free_port, recreate_databases

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def start_emulator(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "mailchimp-emulator"), "--host", "127.0.0.1", "--port", str(port), "--max-concurrent", "10",
         "--state", str(home / "reference-emulator.json")],
        stdout=subprocess.DEVNULL, stderr=(home / "reference-emulator.log").open("wb"), start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            requests.get(f"{url}/3.0/ping", auth=("ref", API_KEY), timeout=1)
            return proc, url
        except requests.ConnectionError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("the reference emulator did not start")


def seed(url: str, *, wipe: bool) -> None:
    """The demo data in a warehouse; ``wipe`` drops everything first (the bookkeeping tables too)."""
    from mailchimp_provider.demo.data import seed_demo_warehouse

    engine = sa.create_engine(url)
    try:
        if wipe:
            with engine.begin() as conn:
                conn.execute(sa.text("DROP SCHEMA public CASCADE"))
                conn.execute(sa.text("CREATE SCHEMA public"))
        seed_demo_warehouse(engine)
    finally:
        engine.dispose()


def outcome(engine_url: str, state: dict[str, Any]) -> dict[str, Any]:
    from mailchimp_provider.warehouse.tables import WarehouseTables

    engine = sa.create_engine(engine_url)
    try:
        return {"emulator": emulator_outcome(state), "warehouse": warehouse_outcome(engine, WarehouseTables())}
    finally:
        engine.dispose()


def test_the_three_dags_on_the_stack_give_what_dag_test_gives(stack: Stack, tmp_path: Path) -> None:
    from scripts.demo_steps import send_demo_campaign

    api, emulator = AirflowApi(stack), Emulator(stack)
    started = time.monotonic()

    # The dag.test() side, in the background: its own emulator and warehouse, the same demo data.
    ref_db = f"{stack.config.name}_reference"
    ref_url = f"{stack.config.pg_url}/{ref_db}"
    recreate_databases(stack.config.pg_url, [ref_db])
    seed(ref_url, wipe=False)
    ref_emulator, ref_emulator_url = start_emulator(tmp_path)
    spec = tmp_path / "reference.json"
    spec.write_text(json.dumps({"airflow_home": str(tmp_path / "reference-airflow"),
                                "emulator_url": ref_emulator_url, "warehouse_url": ref_url}))
    ref_log = tmp_path / "reference.log"
    reference = subprocess.Popen([sys.executable, str(HERE / "dag_test_reference.py"), str(spec)], cwd=ROOT,
                                 stdout=subprocess.PIPE, stderr=ref_log.open("wb"), start_new_session=True,
                                 env={k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")})
    try:
        # The stack side, from scratch: no run left over, the emulator and the warehouse fresh.
        api.wait_quiet()
        stats = emulator.stats()  # what the emulator saw so far (the reset starts its counters again)
        assert stats["max_in_flight"] <= 10 and stats["throttled"] == 0, stats
        requests.post(f"{stack.emulator_url}/_emulator/reset", timeout=30).raise_for_status()
        seed(stack.warehouse_url, wipe=True)

        runs: dict[str, str] = {}
        for dag_id in SHIPPED_DAGS:
            if dag_id == "mailchimp_engagement_pull":
                lists = requests.get(f"{stack.emulator_url}/3.0/lists", auth=("stack", API_KEY), timeout=30).json()["lists"]
                send_demo_campaign(f"{stack.emulator_url}/3.0", stack.emulator_url, lists[0]["id"])
                api.unpause(dag_id)  # hourly: a scheduled run may come too; a pull is idempotent
            runs[dag_id] = api.trigger(dag_id)
            state = api.wait_run(dag_id, runs[dag_id], timeout=420)
            assert state == "success", (dag_id, api.task_states(dag_id, runs[dag_id]))
        api.pause_and_drain("mailchimp_engagement_pull")  # its scheduled runs would post batches later
        api.wait_quiet()
        stack_side = outcome(stack.warehouse_url, requests.get(f"{stack.emulator_url}/_emulator/state", timeout=60).json())
        stack_seconds = time.monotonic() - started

        out, _ = reference.communicate(timeout=600)
        assert reference.returncode == 0, ref_log.read_text(errors="replace")[-4000:]
        ref_runs = json.loads(out.decode().strip().splitlines()[-1])["runs"]
        assert {d: r["state"] for d, r in ref_runs.items()} == dict.fromkeys(SHIPPED_DAGS, "success"), ref_runs
        ref_side = outcome(ref_url, requests.get(f"{ref_emulator_url}/_emulator/state", timeout=60).json())
    finally:
        api.pause("mailchimp_engagement_pull")
        if reference.poll() is None:
            os.killpg(reference.pid, signal.SIGKILL)
        ref_emulator.terminate()
        ref_emulator.wait(timeout=20)
        drop_databases(stack.config.pg_url, [ref_db])

    wh, members = stack_side["warehouse"], stack_side["emulator"]["members"]
    print(f"\n[stack] equal to dag.test(): {sum(len(m) for m in members.values())} members, "
          f"{sum(wh['sync_result_counts'].values())} sync_result rows, "
          f"{sum(v['rows'] for k, v in wh.items() if isinstance(v, dict) and 'rows' in v)} engagement rows; "
          f"stack side {stack_seconds:.0f}s, whole test {time.monotonic() - started:.0f}s")
    assert sum(len(m) for m in members.values()) > 0 and wh["sync_result_counts"], "nothing was synced"
    assert wh["activity"]["rows"] > 0, "the engagement pull loaded no activity"
    problems = differences(stack_side, ref_side)
    assert not problems, "the stack and dag.test() differ:\n" + "\n".join(problems)
