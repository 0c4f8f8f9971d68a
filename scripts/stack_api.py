"""What on-call does through Airflow's REST API (trigger, watch, clear, read logs), and the
emulator's admin API, as the stack tests and the stack benchmark (``bench_stack_fanout``) use them."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import quote

import requests

from scripts.stack import Stack

TERMINAL = {"success", "failed"}
ACTIVE = ("queued", "running")
PUT_MEMBER = "PUT /lists/{list_id}/members/{subscriber_hash}"
POST_BATCHES = "POST /batches"


class AirflowApi:
    """A logged-in client of the stack's ``/api/v2``."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {stack.token()}"

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        reply = self.session.request(method, f"{self.stack.api_url}/api/v2{path}", timeout=60, **kwargs)
        if not reply.ok:
            raise AssertionError(f"{method} {path} -> {reply.status_code}: {reply.text[:500]}")
        return reply.json() if reply.content else None

    def unpause(self, dag_id: str) -> None:
        self.call("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

    def pause(self, dag_id: str) -> None:
        self.call("PATCH", f"/dags/{dag_id}", json={"is_paused": True})

    def active_runs(self, dag_id: str = "~") -> list[tuple[str, str]]:
        """``(dag_id, run_id)`` of every queued or running run (``~``: of any DAG)."""
        return [(r["dag_id"], r["dag_run_id"]) for state in ACTIVE
                for r in self.call("GET", f"/dags/{dag_id}/dagRuns", params={"state": state, "limit": 100})["dag_runs"]]

    def wait_quiet(self, dag_id: str = "~", timeout: float = 300) -> None:
        """Until no run (of ``dag_id``; ``~``: of any DAG) is queued or running."""
        deadline = time.monotonic() + timeout
        busy = self.active_runs(dag_id)
        while busy and time.monotonic() < deadline:
            time.sleep(2)
            busy = self.active_runs(dag_id)
        if busy:
            raise AssertionError(f"runs still active after {timeout:.0f}s: {busy}")

    def pause_and_drain(self, dag_id: str, timeout: float = 300) -> None:
        """Pause a scheduled DAG and wait out its runs, so that no scheduled run (the engagement
        pull is hourly, and its batches count at the emulator) overlaps the tests that follow."""
        self.pause(dag_id)
        self.wait_quiet(dag_id, timeout)

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        """A manual run, as the UI's trigger button makes it; returns its run id."""
        run = self.call("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf or {}})
        return run["dag_run_id"]

    def run_state(self, dag_id: str, run_id: str) -> str:
        return self.call("GET", f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}")["state"]

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 300, poll: float = 2.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.run_state(dag_id, run_id)
            if state in TERMINAL:
                return state
            time.sleep(poll)
        raise AssertionError(f"{dag_id} {run_id} still {state!r} after {timeout:.0f}s: {self.task_states(dag_id, run_id)}")

    def task_instance(self, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
        return self.call("GET", f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """Every task instance of the run, mapped ones one per ``map_index``."""
        return self.call("GET", f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances",
                         params={"limit": 1000})["task_instances"]

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        return {ti["task_id"]: ti["state"] for ti in self.task_instances(dag_id, run_id)}

    def wait_task(self, dag_id: str, run_id: str, task_id: str, states: set[str], timeout: float = 180,
                  poll: float = 0.5) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        ti: dict[str, Any] = {}
        while time.monotonic() < deadline:
            ti = self.task_instance(dag_id, run_id, task_id)
            if ti["state"] in states:
                return ti
            time.sleep(poll)
        raise AssertionError(f"{dag_id}.{task_id} is {ti.get('state')!r}, not in {sorted(states)} after {timeout:.0f}s")

    def fail_if_unfinished(self, dag_id: str, run_id: str) -> None:
        """After a failed test: mark its run failed, so it stops sending while the next test runs."""
        if self.run_state(dag_id, run_id) not in TERMINAL:
            self.call("PATCH", f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}", json={"state": "failed"})

    def clear(self, dag_id: str, run_id: str, task_ids: list[str]) -> None:
        """What the UI's Clear button sends for one task of one run."""
        self.call("POST", f"/dags/{dag_id}/clearTaskInstances", json={
            "dry_run": False, "task_ids": task_ids, "dag_run_id": run_id,
            "only_failed": False, "reset_dag_runs": True,
        })

    def log_text(self, dag_id: str, run_id: str, task_id: str, try_number: int) -> str:
        """The task try's log as text (structured entries joined, one per line)."""
        reply = self.call(
            "GET", f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/logs/{try_number}",
            params={"full_content": "true"}, headers={"Accept": "application/json"},
        )
        lines = []
        for item in reply.get("content") or []:
            lines.append(item.get("event", "") if isinstance(item, dict) else str(item))
        return "\n".join(lines)

    def import_errors(self) -> list[dict[str, Any]]:
        return self.call("GET", "/importErrors")["import_errors"]


class Emulator:
    """The stack emulator's admin API."""

    def __init__(self, stack: Stack) -> None:
        self.url = stack.emulator_url

    def stats(self) -> dict[str, Any]:
        return requests.get(f"{self.url}/_emulator/stats", timeout=30).json()

    def route_total(self, route: str) -> int:
        return int(self.stats()["routes"].get(route, {}).get("total", 0))

    def faults(self, **changes: Any) -> None:
        requests.post(f"{self.url}/_emulator/faults", data=json.dumps(changes), timeout=30).raise_for_status()

    def batch(self, batch_id: str, api_key: str) -> dict[str, Any]:
        return requests.get(f"{self.url}/3.0/batches/{batch_id}", auth=("stack", api_key), timeout=30).json()
