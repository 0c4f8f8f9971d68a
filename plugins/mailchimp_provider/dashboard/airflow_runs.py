"""What the dashboard reads from and writes to Airflow's metadata: DAG runs, through Airflow's models.

A run's kind comes from its conf (the DAG params the buttons set): a ``dry_run`` run is the
*plan*, every other run a sync. Triggering goes through ``airflow.api.common.trigger_dag``, the
function Airflow's REST trigger endpoint uses, with the user's name recorded on the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class RunInfo:
    """One DAG run as the dashboard shows it."""

    run_id: str
    state: str | None
    run_after: datetime | None
    start_date: datetime | None
    end_date: datetime | None
    conf: dict[str, Any]

    @property
    def dry_run(self) -> bool:
        from mailchimp_provider.operators.sync import flag  # the operators' reading of a run param

        return flag(self.conf.get("dry_run"))

    def entities(self) -> list[str] | None:
        """The e-commerce entities the run synced (None: every one)."""
        value = self.conf.get("entities")
        return [str(v) for v in value] if isinstance(value, list) else None

    def as_dict(self, dag_id: str, ui_base: str) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "state": self.state,
            "run_after": _iso(self.run_after),
            "start_date": _iso(self.start_date),
            "end_date": _iso(self.end_date),
            "dry_run": self.dry_run,
            "conf": self.conf,
            "url": run_url(ui_base, dag_id, self.run_id),
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def recent_runs(dag_id: str, limit: int = 60) -> list[RunInfo]:
    """The DAG's latest runs, newest first (dry runs included: callers split them)."""
    import sqlalchemy as sa
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    stmt = (
        sa.select(DagRun.run_id, DagRun._state, DagRun.run_after, DagRun.start_date, DagRun.end_date, DagRun.conf)
        .where(DagRun.dag_id == dag_id)
        .order_by(DagRun.run_after.desc(), DagRun.id.desc())
        .limit(limit)
    )
    with create_session() as session:
        return [
            RunInfo(r.run_id, r._state, r.run_after, r.start_date, r.end_date, dict(r.conf or {}))
            for r in session.execute(stmt)
        ]


def dag_paused(dag_id: str) -> bool | None:
    """Whether the DAG is paused (None: Airflow does not know the DAG)."""
    import sqlalchemy as sa
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session

    with create_session() as session:
        return session.scalar(sa.select(DagModel.is_paused).where(DagModel.dag_id == dag_id))


def trigger(dag_id: str, conf: dict[str, Any], user_name: str) -> RunInfo:
    """Create a manual run of ``dag_id`` with ``conf``, as Airflow's trigger endpoint does."""
    from airflow.api.common.trigger_dag import trigger_dag
    from airflow.utils.types import DagRunTriggeredByType

    run = trigger_dag(dag_id, triggered_by=DagRunTriggeredByType.UI, triggering_user_name=user_name, conf=conf)
    if run is None:  # pragma: no cover - trigger_dag raises when it cannot create the run
        raise RuntimeError(f"Airflow created no run of {dag_id}")
    return RunInfo(run.run_id, run.state, run.run_after, run.start_date, run.end_date, dict(run.conf or {}))


def ui_base() -> str:
    """The path the Airflow UI is served under ('' at the root), from ``[api] base_url``."""
    from urllib.parse import urlsplit

    from airflow.configuration import conf

    return urlsplit(conf.get("api", "base_url", fallback="") or "").path.rstrip("/")


def run_url(base: str, dag_id: str, run_id: str) -> str:
    from urllib.parse import quote

    return f"{base}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"


def task_log_url(base: str, dag_id: str, run_id: str, task_id: str, map_index: int | None = None) -> str:
    """The task instance's page in the Airflow UI (its log tab), mapped index included."""
    from urllib.parse import quote

    url = f"{run_url(base, dag_id, run_id)}/tasks/{quote(task_id, safe='')}"
    if map_index is not None and map_index >= 0:
        url += f"/mapped/{map_index}"
    return url
