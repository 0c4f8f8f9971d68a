"""Helpers for the engagement pull specs (a module of its own, not conftest: test files import it,
and several test folders have a ``conftest``): an audience and campaigns in the emulator, and
``dag.test()`` runs of the shipped ``mailchimp_engagement_pull`` DAG into a SQLite or PostgreSQL
warehouse."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[2]
DAG_FILE = ROOT / "dags" / "mailchimp_engagement_pull.py"
DAG_ID = "mailchimp_engagement_pull"
TASKS = ("pull_campaigns", "pull_audiences", "pull_email_activity", "pull_campaign_recipients", "pull_automations",
         "pull_automation_activity", "pull_segments", "pull_segment_members")


def subscriber_hash(email: str) -> str:
    return hashlib.md5(email.strip().lower().encode()).hexdigest()


def dag_module() -> Any:
    """The shipped DAG file, imported once (it is not on sys.path)."""
    name = "mailchimp_engagement_pull_dagfile"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, DAG_FILE)
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        sys.modules[name] = module
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    return sys.modules[name]


class EngagementHarness:
    """The emulator account, the warehouse and the DAG: set up Mailchimp, run, read the tables."""

    def __init__(self, warehouse: Any, emulator: Any) -> None:
        from mailchimp_provider.reverse.config import ActivityConfig, EngagementConfig
        from mailchimp_provider.warehouse.tables import WarehouseTables

        self.warehouse = warehouse
        self.emulator = emulator
        self.db: sa.Engine = warehouse.engine
        self.tables = WarehouseTables()
        # Fast feedback: poll every 0.2 s, give up on a silent batch after 2 s, wait in the task.
        self.config = EngagementConfig(
            activity=ActivityConfig(
                batch_chunk_size=2, deferrable=False, poll_interval_seconds=0.2, stall_timeout_seconds=2.0,
            )
        )

    # -- Mailchimp side --------------------------------------------------------------------------
    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        resp = self.emulator.api(method, path, **kwargs)
        assert resp.status_code < 300, f"{method} {path} -> {resp.status_code}: {resp.text}"
        return resp.json() if resp.content else None

    def make_list(self, name: str = "Newsletter") -> str:
        return self.emulator.create_audience(name)

    def add_members(self, list_id: str, emails: list[str], status: str = "subscribed") -> None:
        for email in emails:
            self.api("POST", f"/lists/{list_id}/members", json={"email_address": email, "status": status})

    def set_status(self, list_id: str, email: str, status: str) -> None:
        self.api("PATCH", f"/lists/{list_id}/members/{subscriber_hash(email)}", json={"status": status})

    def create_campaign(self, list_id: str, title: str) -> str:
        return self.api(
            "POST", "/campaigns",
            json={
                "type": "regular",
                "recipients": {"list_id": list_id},
                "settings": {"subject_line": f"{title}!", "title": title, "from_name": "Acme",
                             "reply_to": "news@acme-outfitters.com"},
            },
        )["id"]

    def send(self, campaign_id: str) -> None:
        """Set content, then send, as Mailchimp's ordinary flow does (the emulator's synthetic
        engagement is deterministic)."""
        self.api("PUT", f"/campaigns/{campaign_id}/content", json={"html": "<p>News from Acme</p>"})
        self.api("POST", f"/campaigns/{campaign_id}/actions/send")

    def inject(self, campaign_id: str, *, activity: list[dict] = (), unsubscribes: list[dict] = (),
               send_time: str | None = None, synthetic: bool = False) -> dict:
        """Exact activity. A campaign not yet sent is delivered first (at ``send_time``), with the
        emulator's generated engagement when ``synthetic``, else with none."""
        payload: dict[str, Any] = {"campaign_id": campaign_id, "activity": list(activity),
                                   "unsubscribes": list(unsubscribes), "synthetic": synthetic}
        if send_time:
            payload["send_time"] = send_time
        return self.emulator.admin("POST", "activity", json=payload)

    def faults(self, **settings: Any) -> None:
        self.emulator.admin("POST", "faults", json=settings)

    def route_count(self, route: str) -> int:
        entry = self.emulator.admin("GET", "stats")["routes"].get(route) or {}
        return int(entry.get("total", 0))

    # -- the DAG -----------------------------------------------------------------------------------
    def dag(self, config: Any = None, **kwargs: Any) -> Any:
        kwargs.setdefault("retries", 0)
        return dag_module().build_dag(config or self.config, dag_id=DAG_ID, **kwargs)

    def run(
        self, config: Any = None, *, expect: str = "success", run_after: datetime | None = None, **dag_kwargs: Any
    ) -> dict[str, str]:
        """One ``dag.test()`` run; returns ``{task_id: state}`` and checks the run's state.

        The run id is ``manual__<run_after>``, so a test can prepare state for a run before it starts.
        """
        dag = self.dag(config, **dag_kwargs)
        run_after = run_after or datetime.now(timezone.utc)
        dr = dag.test(logical_date=run_after, run_after=run_after)
        states = {ti.task_id: str(ti.state) for ti in dr.get_task_instances()}
        assert str(dr.state) == expect, f"run ended {dr.state}, tasks: {states}"
        return states

    def with_activity(self, **changes: Any) -> Any:
        return replace(self.config, activity=replace(self.config.activity, **changes))

    # -- the warehouse -----------------------------------------------------------------------------
    def batches_sent(self, entity: str = "email_activity") -> int:
        """Batches submitted for ``entity`` (the ledger has one row per POST /batches Mailchimp
        accepted): the DAG's other batch task (sent-to) does not count."""
        return sum(1 for row in self.rows("batch") if row["entity"] == entity)

    def rows(self, kind: str, *order_by: str) -> list[dict[str, Any]]:
        table = self.tables.table(kind)
        key = order_by or tuple(self.tables.key(kind))
        with self.db.connect() as conn:
            result = conn.execute(sa.select(table).order_by(*(table.c[k] for k in key)))
            return [dict(r) for r in result.mappings()]

    def snapshot(self) -> dict[str, list[tuple]]:
        """Every engagement table without its bookkeeping columns (``synced_at``, ``_fivetran_synced``),
        for "nothing changed" checks."""
        out = {}
        for kind in ("list", "member", "unsubscribe", "campaign", "activity"):
            out[kind] = [
                tuple(sorted((k, str(v)) for k, v in row.items() if k not in ("synced_at", "_fivetran_synced")))
                for row in self.rows(kind)
            ]
        return out

    def watermark(self, stream: str, scope: str) -> str | None:
        t = self.tables.watermark
        with self.db.connect() as conn:
            return conn.execute(
                sa.select(t.c.value).where(t.c.stream == stream, t.c.scope == scope)
            ).scalar_one_or_none()
