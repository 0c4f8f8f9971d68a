"""Helpers for the batch lifecycle tests (and their test DAGs): audiences and member operations."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def subscriber_hash(email: str) -> str:
    return hashlib.md5(email.strip().lower().encode()).hexdigest()


def make_audience(emulator: Any, name: str = "Batch tests") -> str:
    return emulator.create_audience(name)


def emails(n: int, prefix: str = "shopper") -> list[str]:
    return [f"{prefix}.{i}@acme-outfitters.com" for i in range(n)]


def put_member_ops(list_id: str, addresses: list[str]) -> list[dict[str, Any]]:
    """Idempotent upserts, one per address, with the address as the operation id."""
    return [
        {
            "method": "PUT",
            "path": f"/lists/{list_id}/members/{subscriber_hash(email)}",
            "operation_id": email,
            "body": json.dumps({"email_address": email, "status_if_new": "subscribed"}),
        }
        for email in addresses
    ]


def post_member_ops(list_id: str, addresses: list[str]) -> list[dict[str, Any]]:
    """Creates: a second POST of the same address fails with 400 Member Exists."""
    return [
        {
            "method": "POST",
            "path": f"/lists/{list_id}/members",
            "operation_id": f"post:{email}",
            "body": json.dumps({"email_address": email, "status": "subscribed"}),
        }
        for email in addresses
    ]


PUT_MEMBER_ROUTE = "PUT /lists/{list_id}/members/{subscriber_hash}"


def batch_count(emulator: Any, route: str = PUT_MEMBER_ROUTE) -> int:
    """How many operations of ``route`` the emulator ran inside batches."""
    return emulator.admin("GET", "stats")["routes"].get(route, {}).get("batch", 0)


def run_dag(dag: Any, conf: dict[str, Any] | None = None, *, run_after: Any = None) -> Any:
    """Run ``dag`` once through Airflow with ``dag.test()``; returns the DagRun.

    With ``run_after`` (an aware datetime) the run id is predictable: ``manual__<run_after ISO>``.
    """
    if run_after is None:
        return dag.test(run_conf=conf or {})
    return dag.test(run_conf=conf or {}, run_after=run_after, logical_date=run_after)


def task_outcome(dag_run: Any, task_id: str) -> tuple[str, dict[str, Any]]:
    """The task instance's final state and its XComs (key -> value) in ``dag_run``."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        ti = next(t for t in dag_run.get_task_instances(session=session) if t.task_id == task_id)
        rows = session.scalars(XComModel.get_many(run_id=dag_run.run_id, dag_ids=dag_run.dag_id, task_ids=task_id)).all()
        xcoms = {row.key: XComModel.deserialize_value(row) for row in rows}
        return str(ti.state), xcoms


def try_numbers(dag_run: Any, task_id: str) -> int:
    from airflow.utils.session import create_session

    with create_session() as session:
        ti = next(t for t in dag_run.get_task_instances(session=session) if t.task_id == task_id)
        return int(ti.try_number)


_DAG_MODULES: dict[str, Any] = {}
TEST_DAGS = Path(__file__).resolve().parents[1] / "dags"


def load_dag(file_name: str, dag_id: str) -> Any:
    """A DAG object from tests/dags/<file_name> (the same file the test-dags bundle parses)."""
    import importlib.util

    module = _DAG_MODULES.get(file_name)
    if module is None:
        spec = importlib.util.spec_from_file_location(f"mc_test_dags_{file_name[:-3]}", TEST_DAGS / file_name)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _DAG_MODULES[file_name] = module
    from airflow.sdk import DAG

    for value in vars(module).values():
        if isinstance(value, DAG) and value.dag_id == dag_id:
            return value
    raise LookupError(f"no DAG {dag_id!r} in tests/dags/{file_name}")
