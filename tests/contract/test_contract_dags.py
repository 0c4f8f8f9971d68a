"""The three shipped DAGs, run by Airflow (``dag.test()``) on warehouses that have exactly the
contract's tables and columns (``fixtures/contract_warehouse.py``), on SQLite and PostgreSQL.

What a new user with the documented warehouse must see: orders reach Mailchimp, every erasure
request is acted on (the member is permanently deleted, or never created, by either sync), and the
engagement pull loads what Mailchimp holds.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

ROOT = Path(__file__).resolve().parents[2]
AUDIENCE_DAG = ROOT / "dags" / "mailchimp_audience_sync.py"
ECOMMERCE_DAG = ROOT / "dags" / "mailchimp_ecommerce_sync.py"
ENGAGEMENT_DAG = ROOT / "dags" / "mailchimp_engagement_pull.py"
AUDIENCE_NAME = "Warehouse customers"  # include/audience_sync.yaml


def subscriber_hash(email: str) -> str:
    return hashlib.md5(email.strip().lower().encode()).hexdigest()


@pytest.fixture
def fast_audience_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The shipped audience config, polling batches every 50 ms instead of 5 s."""
    config = yaml.safe_load((ROOT / "include" / "audience_sync.yaml").read_text())
    config["sync"]["poll_interval"] = 0.05
    path = tmp_path / "audience_sync.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    monkeypatch.setenv("MAILCHIMP_AUDIENCE_SYNC_CONFIG", str(path))
    return path


def shipped_dag(path: Path, dag_id: str) -> Any:
    """A shipped DAG as Airflow parses it, without retries and polling fast (so a failure shows at once)."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(path))
    assert not bag.import_errors, bag.import_errors
    dag = bag.get_dag(dag_id)
    for task in dag.tasks:
        task.retries = 0
        task.retry_delay = timedelta(seconds=0)
        if hasattr(task, "poll_interval"):
            task.poll_interval = 0.05
    return dag


def run(dag: Any, **conf: Any) -> tuple[Any, dict[str, str]]:
    from airflow.utils.session import create_session

    dag_run = dag.test(run_conf=conf or None)
    with create_session() as session:
        states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances(session=session)}
    return dag_run, states


def sync_results(engine: sa.Engine, run_id: str, entity: str) -> dict[str, list[dict[str, Any]]]:
    from mailchimp_provider.warehouse.tables import WarehouseTables

    t = WarehouseTables().sync_result
    out: dict[str, list[dict[str, Any]]] = {}
    with engine.connect() as conn:
        for row in conn.execute(sa.select(t).where(t.c.run_id == run_id, t.c.entity == entity)).mappings():
            out.setdefault(row["record_id"], []).append(dict(row))
    return out


def audience_id(emulator: Any) -> str:
    return next(lst["id"] for lst in emulator.state.lists.values() if lst["name"] == AUDIENCE_NAME)


def put_member(emulator: Any, list_id: str, email: str) -> None:
    """Someone who signed up in Mailchimp directly, before any sync."""
    resp = emulator.api("PUT", f"/lists/{list_id}/members/{subscriber_hash(email)}",
                        json={"email_address": email, "status_if_new": "subscribed"})
    assert resp.status_code == 200, resp.text


def test_audience_sync_acts_on_every_erasure_request(
    contract_warehouse: Any, emulator: Any, airflow_db: None, fast_audience_config: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    shop = contract_warehouse
    list_id = emulator.create_audience(AUDIENCE_NAME)
    erased_by_both = shop.erased_emails[0]
    for email in (erased_by_both, shop.erased_elsewhere, shop.marketable_emails[0]):
        put_member(emulator, list_id, email)

    with caplog.at_level(logging.INFO):
        dag_run, states = run(shipped_dag(AUDIENCE_DAG, "mailchimp_audience_sync"))

    assert states == {"ensure_audience": "success", "sync_members": "success"}, states
    members = emulator.state.members[list_id]
    forgotten = set(emulator.state.forgotten.get(list_id, []))
    # the two who were in Mailchimp are permanently deleted; the others were never created
    for email in shop.erased_emails:
        assert subscriber_hash(email) not in members, email
    assert {subscriber_hash(erased_by_both), subscriber_hash(shop.erased_elsewhere)} <= forgotten
    results = sync_results(shop.engine, dag_run.run_id, "member")
    for customer_id in shop.erased_customers:
        assert [(r["outcome"], r["reason"]) for r in results[customer_id]] in (
            [("ok", "erase")], [("ok", "erase_not_in_audience")]), results[customer_id]
    # everyone else who may be sent is in the audience; no_marketing people are not
    in_audience = {m["email_address"].lower() for m in members.values()}
    assert set(shop.marketable_emails) <= in_audience
    assert not in_audience & set(shop.no_marketing_emails)
    # the log counts the requests read and acted on
    assert "4 erasure request(s) read" in caplog.text, caplog.text[-3000:]


def test_ecommerce_sync_sends_orders_and_never_creates_erased_people(
    contract_warehouse: Any, emulator: Any, airflow_db: None, caplog: pytest.LogCaptureFixture,
) -> None:
    shop = contract_warehouse

    with caplog.at_level(logging.INFO):
        dag_run, states = run(shipped_dag(ECOMMERCE_DAG, "mailchimp_ecommerce_sync"))

    assert set(states.values()) == {"success"}, states
    [store] = emulator.state.stores.values()
    assert set(shop.good_orders) <= set(store["orders"]), sorted(set(shop.good_orders) - set(store["orders"]))[:5]
    assert len(shop.good_orders) > 60
    paid = [o for o in shop.rows["orders"] if o["order_id"] in shop.good_orders and o["financial_status"] == "paid"]
    assert {store["orders"][o["order_id"]]["financial_status"] for o in paid} == {"paid"}
    assert any(store["orders"][o]["promos"] for o in shop.good_orders if store["orders"][o].get("promos"))
    # an erasure request keeps the person out of Mailchimp through the e-commerce path too
    for customer_id in shop.erased_customers:
        assert customer_id not in store["customers"], customer_id
    list_id = store["store"]["list_id"]
    members = emulator.state.members.get(list_id, {})
    for email in shop.erased_emails + shop.no_marketing_emails:
        assert subscriber_hash(email) not in members, email
    customers = sync_results(shop.engine, dag_run.run_id, "customer")
    for customer_id in shop.erased_customers:
        assert [(r["outcome"], r["reason"]) for r in customers[customer_id]] == [("skipped", "erasure_requested")]
    # the guest order: the contract has no buyer email on orders, so it cannot create its customer
    orders = sync_results(shop.engine, dag_run.run_id, "order")
    assert [(r["outcome"], r["reason"]) for r in orders["O-GUEST"]] == [("skipped", "customer_unknown")]
    assert caplog.text.count("orders has no customer_email: guest-checkout orders") == 1, caplog.text[-3000:]


def engagement_dag() -> Any:
    from mailchimp_provider.reverse.config import ActivityConfig, EngagementConfig

    name = "mailchimp_engagement_pull_contract"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ENGAGEMENT_DAG)
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        sys.modules[name] = module
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    config = EngagementConfig(activity=ActivityConfig(batch_chunk_size=5, deferrable=False, poll_interval_seconds=0.1,
                                                      stall_timeout_seconds=5.0))
    return sys.modules[name].build_dag(config, dag_id="mailchimp_engagement_pull", retries=0)


def test_engagement_pull_loads_and_the_audience_sync_reads_it_back(
    contract_warehouse: Any, emulator: Any, airflow_db: None, fast_audience_config: Path,
) -> None:
    shop = contract_warehouse
    audience = shipped_dag(AUDIENCE_DAG, "mailchimp_audience_sync")
    _, states = run(audience)
    assert set(states.values()) == {"success"}, states
    list_id = audience_id(emulator)
    leaver = shop.marketable_emails[5]
    resp = emulator.api("PATCH", f"/lists/{list_id}/members/{subscriber_hash(leaver)}", json={"status": "unsubscribed"})
    assert resp.status_code == 200, resp.text
    campaign = emulator.api("POST", "/campaigns", json={
        "type": "regular", "recipients": {"list_id": list_id},
        "settings": {"subject_line": "Spring arrivals", "title": "Spring arrivals", "from_name": "Fernhill",
                     "reply_to": "news@fernhill-outdoor.com"}}).json()["id"]
    sent = (datetime.now(timezone.utc) - timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    opener = shop.marketable_emails[0]
    emulator.admin("POST", "activity", json={"campaign_id": campaign, "send_time": sent, "synthetic": False,
                                             "activity": [{"email_address": opener, "action": "open", "timestamp": sent}],
                                             "unsubscribes": []})

    now = datetime.now(timezone.utc)
    dag_run = engagement_dag().test(logical_date=now, run_after=now)
    assert str(dag_run.state) == "success"

    from mailchimp_provider.warehouse.tables import WarehouseTables

    t = WarehouseTables()
    with shop.engine.connect() as conn:
        pulled = {r.member_id: r.status for r in conn.execute(sa.select(t.member.c.member_id, t.member.c.status))}
        campaigns = conn.execute(sa.select(t.campaign.c.campaign_id)).scalars().all()
        opens = conn.execute(sa.select(t.activity.c.member_id).where(t.activity.c.action == "open")).scalars().all()
    assert pulled == {h: m["status"] for h, m in emulator.state.members[list_id].items()}
    assert pulled[subscriber_hash(leaver)] == "unsubscribed"
    assert campaigns == [campaign] and opens == [subscriber_hash(opener)]

    # The next audience run reads the pulled-back statuses: the leaver's row changes, it is not re-subscribed.
    leaver_row = next(c for c in shop.rows["customers"] if (c["email"] or "").lower() == leaver)
    customers = sa.table("customers", sa.column("customer_id"), sa.column("first_name"))
    with shop.engine.begin() as conn:
        conn.execute(customers.update().where(customers.c.customer_id == leaver_row["customer_id"]).values(first_name="Renamed"))
    _, states = run(audience)
    assert set(states.values()) == {"success"}, states
    assert emulator.state.members[list_id][subscriber_hash(leaver)]["status"] == "unsubscribed"
    assert emulator.state.members[list_id][subscriber_hash(leaver)]["merge_fields"]["FNAME"] == "Renamed"

    # A run with nothing changed sends nothing: every confirmed row's source digest, taken from
    # this contract-typed warehouse's extract, matches again, and every confirmed row has one.
    unchanged_run, states = run(audience)
    assert set(states.values()) == {"success"}, states
    sent_again = {rid for rid, rows in sync_results(shop.engine, unchanged_run.run_id, "member").items()
                  if any(r["batch_id"] for r in rows)}
    assert not sent_again, sent_again
    state = t.sync_state
    confirmed = sa.select(sa.func.count()).where(state.c.entity == "member", state.c.payload_hash.is_not(None))
    with shop.engine.connect() as conn:
        with_digest = conn.execute(confirmed.where(state.c.source_hash.is_not(None))).scalar_one()
        without = conn.execute(confirmed.where(state.c.source_hash.is_(None))).scalar_one()
    assert with_digest > 0 and without == 0, (with_digest, without)
