"""Helpers for the audience sync specs: a purpose-built customer table, a config per test, and
``dag.test()`` runs of the shipped ``mailchimp_audience_sync`` DAG against the emulator."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import pytest
import sqlalchemy as sa
import yaml

ROOT = Path(__file__).resolve().parents[2]
DAG_FILE = ROOT / "dags" / "mailchimp_audience_sync.py"
DAG_ID = "mailchimp_audience_sync"
PUT_MEMBER = "PUT /lists/{list_id}/members/{subscriber_hash}"
PATCH_MEMBER = "PATCH /lists/{list_id}/members/{subscriber_hash}"
POST_TAGS = "POST /lists/{list_id}/members/{subscriber_hash}/tags"
DELETE_PERMANENT = "POST /lists/{list_id}/members/{subscriber_hash}/actions/delete-permanent"
POST_BATCHES = "POST /batches"
BASE_TIME = datetime(2024, 3, 1, 9, 0, tzinfo=timezone.utc)


def subscriber_hash(email: str) -> str:
    return hashlib.md5(email.strip().lower().encode()).hexdigest()


def customer(customer_id: str, email: str | None, *, minutes: int = 0, **columns: Any) -> dict[str, Any]:
    """A customers row with sensible defaults; ``minutes`` orders ``created_at``."""
    row = {
        "customer_id": customer_id,
        "email": email,
        "first_name": f"First{customer_id}",
        "last_name": f"Last{customer_id}",
        "company": None,
        "phone": None,
        "customer_type": None,
        "tags": None,
        "address1": None,
        "city": None,
        "province": None,
        "postal_code": None,
        "country_code": None,
        "marketing_opt_in": False,
        "no_marketing": False,
        "is_guest": False,
        "created_at": BASE_TIME + timedelta(minutes=minutes),
        "updated_at": BASE_TIME + timedelta(minutes=minutes),
    }
    row.update(columns)
    return row


class SyncHarness:
    """One warehouse + the emulator + a config file: seed rows, run the DAG, read what happened."""

    def __init__(self, warehouse: Any, emulator: Any, config_path: Path) -> None:
        from mailchimp_provider.warehouse.source_tables import create_source_tables, source_metadata
        from mailchimp_provider.warehouse.tables import WarehouseTables

        self.warehouse = warehouse
        self.emulator = emulator
        self.config_path = config_path
        self.db: sa.Engine = warehouse.engine
        create_source_tables(self.db)
        self.source = source_metadata()
        self.tables = WarehouseTables()
        self.tables.create_all(self.db)

    def configure(self, **overrides: Any) -> None:
        """Rewrite this test's config: the shipped one plus ``overrides`` (read at the next run)."""
        overrides = dict(overrides)
        overrides["sync"] = {"poll_interval": 0.05, **overrides.get("sync", {})}
        write_config(self.config_path, **overrides)

    def make_audience(self, name: str = "Warehouse customers") -> str:
        """Create the audience up front (the DAG then finds it by name instead of creating it)."""
        return self.emulator.create_audience(name)

    def put_member(self, email: str, **body: Any) -> dict[str, Any]:
        """A member that exists in Mailchimp before the sync (signed up elsewhere)."""
        resp = self.emulator.api("PUT", f"/lists/{self.list_id()}/members/{subscriber_hash(email)}",
                                 json={"email_address": email, **body})
        resp.raise_for_status()
        return resp.json()

    def add_reverse_pulled_member(self, email: str, status: str) -> None:
        """A mailchimp_member row, as the engagement pull would have written it."""
        from mailchimp_provider.warehouse.upsert import upsert

        with self.db.begin() as conn:
            upsert(conn, self.tables.member, [{
                "list_id": self.list_id(), "member_id": subscriber_hash(email), "email_address": email,
                "status": status, "synced_at": datetime.now(timezone.utc),
            }], key=["list_id", "member_id"])

    # -- source data -------------------------------------------------------------------------
    def insert(self, *rows: dict[str, Any]) -> None:
        with self.db.begin() as conn:
            conn.execute(self.source.tables["customers"].insert(), list(rows))

    def update(self, customer_id: str, **columns: Any) -> None:
        t = self.source.tables["customers"]
        with self.db.begin() as conn:
            conn.execute(t.update().where(t.c.customer_id == customer_id).values(**columns))

    def request_erasure(self, customer_id: str | None, email: str | None) -> None:
        with self.db.begin() as conn:
            conn.execute(self.source.tables["marketing_erasure_requests"].insert(),
                         [{"customer_id": customer_id, "email": email, "requested_at": BASE_TIME}])

    # -- running -------------------------------------------------------------------------------
    def load_dag(self, *, retries: int = 0) -> Any:
        """The shipped DAG, parsed as Airflow parses it; retries without delay (or none) so a
        failing test fails fast instead of waiting out the production back-off."""
        from airflow.dag_processing.dagbag import DagBag

        bag = DagBag(dag_folder=str(DAG_FILE))
        assert not bag.import_errors, bag.import_errors
        dag = bag.get_dag(DAG_ID)
        for task in dag.tasks:
            task.retries = retries
            task.retry_delay = timedelta(seconds=0)
            task.retry_exponential_backoff = False
        return dag

    def run(self, *, dag: Any = None, **params: Any) -> Any:
        """One ``dag.test()`` run; returns the DagRun (``.state``, ``.run_id``)."""
        dag = dag or self.load_dag()
        return dag.test(run_conf=params or None)

    def list_id(self) -> str:
        lists = self.emulator.api("GET", "/lists").json()["lists"]
        assert len(lists) == 1, lists
        return lists[0]["id"]

    # -- reading -------------------------------------------------------------------------------
    def results(self, run_id: str) -> dict[tuple[str, str], dict[str, Any]]:
        t = self.tables.sync_result
        with self.db.connect() as conn:
            rows = conn.execute(sa.select(t).where(t.c.run_id == run_id)).mappings().all()
        return {(r["record_id"], r["operation"]): dict(r) for r in rows}

    def outcome(self, run_id: str, record_id: str) -> list[tuple[str, str, str]]:
        """``(operation, outcome, reason)`` of one record in one run, sorted."""
        return sorted((op, r["outcome"], r["reason"]) for (rid, op), r in self.results(run_id).items() if rid == record_id)

    def state(self, record_id: str) -> dict[str, Any] | None:
        t = self.tables.sync_state
        with self.db.connect() as conn:
            row = conn.execute(sa.select(t).where(t.c.entity == "member", t.c.record_id == record_id)).mappings().first()
        return dict(row) if row else None

    def member(self, email: str) -> dict[str, Any] | None:
        resp = self.emulator.api("GET", f"/lists/{self.list_id()}/members/{subscriber_hash(email)}")
        return resp.json() if resp.status_code == 200 else None

    def members(self) -> list[dict[str, Any]]:
        return self.emulator.api("GET", f"/lists/{self.list_id()}/members", params={"count": 1000}).json()["members"]

    def batch_ops(self, route: str) -> int:
        """Operations of ``route`` the emulator ran inside batches so far."""
        return self.emulator.admin("GET", "stats")["routes"].get(route, {}).get("batch", 0)

    def total_batch_ops(self) -> int:
        return self.emulator.admin("GET", "stats")["operations_applied"]


def write_config(path: Path, **overrides: Any) -> Path:
    """The shipped config with ``overrides`` merged in (nested dicts merge key by key)."""
    config = yaml.safe_load((ROOT / "include" / "audience_sync.yaml").read_text())

    def merge(base: dict[str, Any], extra: dict[str, Any]) -> None:
        for key, value in extra.items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                merge(base[key], value)
            else:
                base[key] = value

    merge(config, overrides)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture
def make_harness(
    emulator: Any, airflow_db: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., SyncHarness]:
    """``make_harness(warehouse, **config_overrides)``: the DAG then reads that config."""
    from mailchimp_provider.warehouse.connection import dispose_engines

    _ensure_pool()

    def make(warehouse: Any, **overrides: Any) -> SyncHarness:
        path = tmp_path / "audience_sync.yaml"
        monkeypatch.setenv("MAILCHIMP_AUDIENCE_SYNC_CONFIG", str(path))
        dispose_engines()
        harness = SyncHarness(warehouse, emulator, path)
        harness.configure(**overrides)
        return harness

    yield make
    dispose_engines()


def _ensure_pool() -> None:
    """The DAG's tasks run in the ``mailchimp_api`` pool; create it as the README tells users to."""
    from airflow.models.pool import Pool

    Pool.create_or_update_pool("mailchimp_api", 8, "Mailchimp API: 10 connections per key", include_deferred=False)


def assert_unchanged_check_agrees_with_the_plan(h: SyncHarness, *, vouched: int | None = None) -> int:
    """For every source row, the rules' cheap no-change check (a digest per record, used by the
    engine to skip full planning) must clear exactly the rows the full plan finds unchanged, with
    no operation and no skip, the long way and, where the stored source digest matches the row,
    the short way. ``vouched``: how many rows the short way must clear. Returns how many rows
    the check cleared."""
    from mailchimp_provider.config import load_audience_config
    from mailchimp_provider.sync.audience import AudienceRules
    from mailchimp_provider.sync.engine import RunContext, SyncEngine

    rules = AudienceRules(config=load_audience_config(h.config_path), list_id=h.list_id())
    engine = SyncEngine(h.db, h.tables, rules, RunContext(run_id="unchanged-check"))
    engine.prepare()
    cleared = short = 0
    for rows in engine.source_chunks():
        ids = [str(r[rules.key_column]) for r in rows]
        states, digests = engine.load_states(ids), engine.load_digests(ids)
        assert set(states) == set(digests)
        for plan, row in zip(rules.plan(engine, rows, states, engine.ctx), rows):
            planned_unchanged = plan.unchanged and not plan.ops and not plan.skips
            digest = digests.get(plan.record_id)
            fast = digest is not None and rules.is_unchanged(plan.record_id, row, digest, engine.ctx)
            assert fast == planned_unchanged, (plan.record_id, plan, digest)
            # the short way (stored source digest matches): the same answer without rebuilding the content
            if digest is not None and digest.source_hash is not None and digest.source_hash == rules.source_digest(row):
                assert rules.is_unchanged(plan.record_id, row, digest, engine.ctx, True) == planned_unchanged, (
                    "source digest", plan.record_id, plan, digest)
                short += planned_unchanged
            cleared += fast
    if vouched is not None:
        assert short == vouched, f"{short} rows cleared the short way (by their source digest), expected {vouched}"
    return cleared
