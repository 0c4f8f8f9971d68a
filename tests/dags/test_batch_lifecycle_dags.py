"""Test-only DAGs for tests/batches: a two-phase subclass of the batch lifecycle driver.

``AudienceUpsertOperator`` is what a real sync operator looks like in miniature: it plans from its
own bookkeeping table (``test_batch_confirmed``: operation ids with a known outcome), sends member
upserts, then tags for those members, and commits each batch's outcomes in ``apply_results``.

``crash_on_try`` simulates a worker dying right after a submission is on record (the exception is
raised from ``on_batches_submitted``, i.e. after the ledger commit and before any waiting), which
leaves exactly the durable state a SIGKILL at that point would. ``replan_failures`` makes it
re-plan failed operations forever: a buggy subclass, for the ``max_rounds`` guard.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import Any, Iterator

import sqlalchemy as sa
from airflow.sdk import DAG

from mailchimp_provider.operators.base import MailchimpBatchLifecycleOperator

CONFIRMED = sa.Table(
    "test_batch_confirmed",
    sa.MetaData(),
    sa.Column("operation_id", sa.String(255), primary_key=True),
    sa.Column("entity", sa.String(32)),
    sa.Column("status_code", sa.Integer),
    sa.Column("batch_id", sa.String(64)),
)
PHASES = ("members", "tags")


class AudienceUpsertOperator(MailchimpBatchLifecycleOperator):
    template_fields = ("list_id", "addresses")

    def __init__(self, *, list_id: str, addresses: Any, crash_on_try: int | None = None,
                 replan_failures: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.list_id = list_id
        self.addresses = addresses
        self.crash_on_try = crash_on_try
        self.replan_failures = replan_failures

    def _engine(self) -> sa.Engine:
        from mailchimp_provider.warehouse.connection import get_engine

        engine = get_engine(self.warehouse_conn_id)
        CONFIRMED.create(engine, checkfirst=True)
        return engine

    def _addresses(self) -> list[str]:
        return json.loads(self.addresses) if isinstance(self.addresses, str) else list(self.addresses)

    def _operations(self, phase: str) -> list[dict[str, Any]]:
        ops = []
        for email in self._addresses():
            member = f"/lists/{self.list_id}/members/{hashlib.md5(email.lower().encode()).hexdigest()}"
            if phase == "members":
                ops.append({"method": "PUT", "path": member, "operation_id": f"members:{email}",
                            "body": {"email_address": email, "status_if_new": "subscribed"}})
            else:
                ops.append({"method": "POST", "path": f"{member}/tags", "operation_id": f"tags:{email}",
                            "body": {"tags": [{"name": "Batch tested", "status": "active"}]}})
        return ops

    def next_operations(self, context: Any) -> tuple[str, list[dict[str, Any]]] | None:
        with self._engine().connect() as conn:
            rows = conn.execute(sa.select(CONFIRMED.c.operation_id, CONFIRMED.c.status_code)).all()
        done = {op_id for op_id, code in rows if not self.replan_failures or 200 <= code < 300}
        for phase in PHASES:
            todo = [op for op in self._operations(phase) if op["operation_id"] not in done]
            if todo:
                return phase, todo
        return None

    def apply_results(self, context: Any, entity: str, batch_id: str, results: Iterator[Any]) -> None:
        rows = [{"operation_id": r.operation_id, "entity": entity, "status_code": r.status_code, "batch_id": batch_id}
                for r in results]
        with self._engine().begin() as conn:
            ids = [r["operation_id"] for r in rows]
            conn.execute(sa.delete(CONFIRMED).where(CONFIRMED.c.operation_id.in_(ids)))
            if rows:
                conn.execute(sa.insert(CONFIRMED), rows)

    def on_batches_submitted(self, context: Any, entity: str, batch_ids: list[str]) -> None:
        if self.crash_on_try is not None and context["ti"].try_number == self.crash_on_try:
            raise RuntimeError(f"simulated worker crash right after submitting {batch_ids} (try {self.crash_on_try})")

    def finish(self, context: Any) -> dict[str, int]:
        with self._engine().connect() as conn:
            rows = conn.execute(sa.select(CONFIRMED.c.entity, sa.func.count()).group_by(CONFIRMED.c.entity)).all()
        return {entity: n for entity, n in rows}


def _dag(dag_id: str) -> DAG:
    return DAG(dag_id, schedule=None, start_date=datetime(2024, 1, 1), catchup=False, tags=["test"],
               default_args={"retries": 1, "retry_delay": timedelta(seconds=0)})


COMMON = {
    "list_id": "{{ dag_run.conf['list_id'] }}",
    "addresses": "{{ dag_run.conf['addresses'] | tojson }}",
    "poll_interval": 0.1,
    "stall_timeout": 20.0,
}

with _dag("test_batch_lifecycle_oncall_sync") as oncall_sync_dag:
    AudienceUpsertOperator(task_id="upsert", crash_on_try=1, deferrable=False, **COMMON)

with _dag("test_batch_lifecycle_oncall_deferrable") as oncall_deferrable_dag:
    AudienceUpsertOperator(task_id="upsert", crash_on_try=1, deferrable=True, **COMMON)

with _dag("test_batch_lifecycle_runaway") as runaway_dag:
    AudienceUpsertOperator(task_id="upsert", replan_failures=True, max_rounds=3, retries=0, **COMMON)

with _dag("test_batch_lifecycle_plain") as plain_dag:
    AudienceUpsertOperator(task_id="upsert", retries=0, **COMMON)
