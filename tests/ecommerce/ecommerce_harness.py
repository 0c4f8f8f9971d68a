"""A small shop for the warehouse (good rows plus one row per bad-row kind), and helpers to run the
e-commerce sync DAG against the emulator and read back what happened.

A module of its own, not conftest: test files import it, and several test folders have a
``conftest`` (``from conftest import`` picks whichever was loaded last)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from mailchimp_provider.warehouse.source_tables import create_source_tables

STORE_ID = "test-shop"
ENTITY_ORDER = ("customer", "product", "promo_rule", "promo_code", "order")
T0 = datetime(2024, 5, 1, 10, 0, tzinfo=timezone.utc)
LONG_ID = "x" * 60


def _customer(cid: str, email: str | None, *, opt_in: bool = True, **extra: Any) -> dict[str, Any]:
    return {"customer_id": cid, "email": email, "first_name": cid.upper(), "last_name": "Lane", "company": None,
            "phone": None, "customer_type": None, "tags": None, "address1": "1 Main St", "city": "Leeds",
            "province": None, "postal_code": "LS1", "country_code": "GB", "marketing_opt_in": opt_in,
            "no_marketing": False, "is_guest": False, "created_at": T0, "updated_at": T0, **extra}


def _order(oid: str, cid: str, total: str = "100.00", status: str = "paid", **extra: Any) -> dict[str, Any]:
    return {"order_id": oid, "customer_id": cid, "currency_code": "USD", "order_total": Decimal(total) if total is not None else None,
            "tax_total": Decimal("0"), "shipping_total": Decimal("0"), "discount_total": Decimal("0"),
            "financial_status": status, "fulfillment_status": "unfulfilled", "order_url": None,
            "processed_at": T0, "cancelled_at": None, "updated_at": T0, **extra}


def _line(oid: str, lid: str, pid: str, vid: str | None, qty: int = 1, price: str = "50.00") -> dict[str, Any]:
    return {"order_id": oid, "line_id": lid, "product_id": pid, "variant_id": vid, "quantity": qty,
            "price": Decimal(price), "discount": Decimal("0")}


CUSTOMERS = [
    _customer("c1", "ann.lane@northpeak-mail.com", opt_in=True),
    _customer("c2", "bob.lane@northpeak-mail.com", opt_in=False),
    _customer("c3", "cy.lane@northpeak-mail.com", no_marketing=True),
    _customer("c4", None),                                           # bad: missing email
    _customer(LONG_ID, "long.lane@northpeak-mail.com"),              # bad: id over 50 characters
]
PRODUCTS = [
    {"product_id": "p1", "title": "Trail Shoe", "handle": "trail-shoe", "url": "https://shop.northpeak-test-shop.com/p1",
     "description": "Grippy.", "category": "Shoes", "vendor": "Northpeak", "image_url": "https://cdn.northpeak-test-shop.com/p1.jpg",
     "published_at": T0, "created_at": T0, "updated_at": T0},
    {"product_id": "p2", "title": "Gift Card", "handle": "gift-card", "url": None, "description": None, "category": None,
     "vendor": None, "image_url": None, "published_at": None, "created_at": T0, "updated_at": T0},
    {"product_id": "p3", "title": None, "handle": "nameless", "url": None, "description": None, "category": None,   # bad
     "vendor": None, "image_url": None, "published_at": None, "created_at": T0, "updated_at": T0},
]
VARIANTS = [
    {"variant_id": "p1-red", "product_id": "p1", "title": "Red", "sku": "TS-R", "price": Decimal("50.00"),
     "inventory_quantity": 4, "url": None, "image_url": None, "updated_at": T0},
    {"variant_id": "p1-blue", "product_id": "p1", "title": "Blue", "sku": "TS-B", "price": Decimal("50.00"),
     "inventory_quantity": -1, "url": None, "image_url": None, "updated_at": T0},
]
PROMO_RULES = [
    {"promo_rule_id": "r1", "title": "Spring", "description": "10% off", "amount": Decimal("0.1"), "type": "percentage",
     "target": "total", "starts_at": T0, "ends_at": None, "enabled": True, "created_at": T0, "updated_at": T0},
    {"promo_rule_id": "r2", "title": "Summer", "description": "15% off", "amount": Decimal("15"), "type": "percentage",  # bad
     "target": "total", "starts_at": T0, "ends_at": None, "enabled": True, "created_at": T0, "updated_at": T0},
]
PROMO_CODES = [
    {"promo_code_id": "k1", "promo_rule_id": "r1", "code": "SPRING10", "redemption_url": "https://shop.northpeak-test-shop.com/s",
     "usage_count": 3, "enabled": True, "created_at": T0, "updated_at": T0},
    {"promo_code_id": "k2", "promo_rule_id": "r2", "code": "SUMMER15", "redemption_url": "https://shop.northpeak-test-shop.com/u",
     "usage_count": 0, "enabled": True, "created_at": T0, "updated_at": T0},                                  # its rule is bad
    {"promo_code_id": "k3", "promo_rule_id": "r1", "code": "C" * 60, "redemption_url": "https://shop.northpeak-test-shop.com/c",
     "usage_count": 0, "enabled": True, "created_at": T0, "updated_at": T0},                                  # bad: code too long
]
ORDERS = [
    _order("o1", "c1", "90.00", "paid"),
    _order("o2", "c2", "50.00", "pending"),
    _order("o3", "c1", "50.00", "cancelled", cancelled_at=T0),
    _order("o4", "c3", "50.00"),                       # customer never sent (no_marketing)
    _order("o5", "c1", "50.00"),                       # its product p3 is a bad row
    _order("o6", "c1", "50.00"),                       # bad: negative quantity
    _order("o7", "c1", "50.00", currency_code="XYZ"),  # bad: unknown currency
    _order("o8", "c1", "50.00"),                       # bad: promo amount out of range
    _order("o9", "ghost", "50.00"),                    # customer only on the order, no email to create it
    _order(LONG_ID, "c1", "50.00"),                    # bad: id over 50 characters
    _order("o11", "c1", "50.00"),                      # bad: no lines
    _order("o12", "c2", None),                         # bad: missing order_total
]
ORDER_LINES = [
    _line("o1", "1", "p1", "p1-red", 2, "50.00"), _line("o1", "2", "p2", None, 1, "0.00"),
    _line("o2", "1", "p2", None, 1, "50.00"),
    _line("o3", "1", "p1", "p1-blue", 1, "50.00"),
    _line("o4", "1", "p1", "p1-red"),
    _line("o5", "1", "p3", None),
    _line("o6", "1", "p1", "p1-red", -2),
    _line("o7", "1", "p1", "p1-red"),
    _line("o8", "1", "p1", "p1-red"),
    _line("o9", "1", "p1", "p1-red"),
    _line(LONG_ID, "1", "p1", "p1-red"),
    _line("o12", "1", "p1", "p1-red"),
    _line("orphan", "1", "p1", "p1-red"),              # a line whose order does not exist
]
ORDER_PROMOS = [
    {"order_id": "o1", "code": "SPRING10", "amount_discounted": Decimal("10.00"), "type": "percentage"},
    {"order_id": "o8", "code": "SPRING10", "amount_discounted": Decimal("-5.00"), "type": "fixed"},
]

# record -> the field its skip reason must name
BAD_ROWS = {
    ("customer", "c4"): "email",
    ("customer", LONG_ID): "customer_id",
    ("customer", "c3"): "no_marketing",
    ("product", "p3"): "title",
    ("promo_rule", "r2"): "amount",
    ("promo_code", "k3"): "code",
    ("order", "o6"): "order_lines.quantity",
    ("order", "o7"): "currency_code",
    ("order", "o8"): "order_promos.amount_discounted",
    ("order", LONG_ID): "order_id",
    ("order", "o11"): "order_lines",
    ("order", "o12"): "order_total",
}
DEPENDENCY_SKIPS = {
    ("promo_code", "k2"): "promo_rule_not_synced",
    ("order", "o4"): "customer_not_synced",
    ("order", "o5"): "product_not_synced",
    ("order", "o9"): "customer_unknown",
}
SENT = {"customer": {"c1", "c2"}, "product": {"p1", "p2"}, "promo_rule": {"r1"}, "promo_code": {"k1"},
        "order": {"o1", "o2", "o3"}}


@dataclass
class Shop:
    """The seeded warehouse, with helpers to change it between runs."""

    engine: sa.Engine
    tables: dict[str, sa.Table]

    def update(self, table: str, key: dict[str, Any], **values: Any) -> None:
        t = self.tables[table]
        with self.engine.begin() as conn:
            conn.execute(t.update().where(*(t.c[k] == v for k, v in key.items())).values(**values))

    def insert(self, table: str, rows: list[dict[str, Any]]) -> None:
        with self.engine.begin() as conn:
            conn.execute(self.tables[table].insert(), rows)


def seed_shop(warehouse: Any) -> Shop:
    """Create the source tables in the warehouse fixture's database and fill them with the shop."""
    md = create_source_tables(warehouse.engine)
    tables = {name.split(".")[-1]: table for name, table in md.tables.items()}
    with warehouse.engine.begin() as conn:
        for name, rows in (("customers", CUSTOMERS), ("products", PRODUCTS), ("product_variants", VARIANTS),
                           ("promo_rules", PROMO_RULES), ("promo_codes", PROMO_CODES), ("orders", ORDERS),
                           ("order_lines", ORDER_LINES), ("order_promos", ORDER_PROMOS)):
            conn.execute(tables[name].insert(), rows)
    return Shop(warehouse.engine, tables)


# ------------------------------------------------------------------------------------------------
# running the DAG and reading back
# ------------------------------------------------------------------------------------------------
_DAGS: dict[str, Any] = {}


def load_test_dag() -> Any:
    """``test_ecommerce_sync`` from tests/dags/test_ecommerce_dags.py (the file the bundle parses)."""
    import importlib.util
    from pathlib import Path

    if "dag" not in _DAGS:
        path = Path(__file__).resolve().parents[1] / "dags" / "test_ecommerce_dags.py"
        spec = importlib.util.spec_from_file_location("mc_test_dags_ecommerce", path)
        module = importlib.util.module_from_spec(spec)
        assert spec.loader is not None
        spec.loader.exec_module(module)
        _DAGS["dag"] = module.dag if hasattr(module, "dag") else next(
            v for v in vars(module).values() if getattr(v, "dag_id", None) == "test_ecommerce_sync")
    return _DAGS["dag"]


def run_sync(conf: dict[str, Any] | None = None, *, logical_date: datetime | None = None) -> Any:
    """One run of the e-commerce sync through Airflow (``dag.test()``); returns the DagRun."""
    from mailchimp_provider.operators.ecommerce import ecommerce_sync_params

    dag = load_test_dag()
    # every declared parameter explicitly, at its default unless ``conf`` says otherwise: dag.test()
    # runs every run on this one DAG object, and Airflow resolves a run's conf onto the DAG's shared
    # Param objects, so a parameter left out would keep the previous run's value (a production task
    # parses the DAG afresh and gets the default)
    defaults = {name: param.value for name, param in ecommerce_sync_params().items()}
    conf = {**defaults, "entities": list(ENTITY_ORDER), **(conf or {})}
    if logical_date is not None:
        return dag.test(run_conf=conf, logical_date=logical_date, run_after=logical_date)
    return dag.test(run_conf=conf)


def task_states(dag_run: Any) -> dict[str, str]:
    from airflow.utils.session import create_session

    with create_session() as session:
        return {t.task_id: str(t.state) for t in dag_run.get_task_instances(session=session)}


def task_spans(dag_run: Any) -> dict[str, tuple[datetime, datetime]]:
    """``task_id -> (start_date, end_date)`` of the run's task instances."""
    from airflow.utils.session import create_session

    with create_session() as session:
        return {t.task_id: (t.start_date, t.end_date) for t in dag_run.get_task_instances(session=session)}


def xcom(dag_run: Any, task_id: str, key: str = "return_value") -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.scalars(XComModel.get_many(run_id=dag_run.run_id, dag_ids=dag_run.dag_id, task_ids=task_id,
                                                  key=key)).all()
        return XComModel.deserialize_value(rows[0]) if rows else None


def results(engine: sa.Engine, run_id: str) -> list[dict[str, Any]]:
    """This run's ``mailchimp_sync_result`` rows."""
    from mailchimp_provider.warehouse.tables import WarehouseTables

    t = WarehouseTables().sync_result
    with engine.connect() as conn:
        rows = conn.execute(sa.select(t).where(t.c.run_id == run_id).order_by(t.c.entity, t.c.record_id, t.c.operation))
        return [dict(r) for r in rows.mappings()]


def states(engine: sa.Engine, entity: str) -> dict[str, dict[str, Any]]:
    from mailchimp_provider.warehouse.tables import WarehouseTables

    t = WarehouseTables().sync_state
    with engine.connect() as conn:
        return {r["record_id"]: dict(r) for r in conn.execute(sa.select(t).where(t.c.entity == entity)).mappings()}


def store_doc(emulator: Any) -> dict[str, Any]:
    """The emulator's state for the test store (customers, products, orders, promo_rules)."""
    return emulator.state.stores[STORE_ID]


def batch_ops(emulator: Any, route: str) -> int:
    """How many operations of ``route`` (e.g. ``"POST /ecommerce/stores/{store_id}/orders"``) ran in batches."""
    return int(emulator.state.counters.get("batch:" + route, 0))


ORDERS_POST = "POST /ecommerce/stores/{store_id}/orders"
ORDERS_PATCH = "PATCH /ecommerce/stores/{store_id}/orders/{order_id}"


def batches(engine: sa.Engine, run_id: str) -> list[dict[str, Any]]:
    """The run's ``mailchimp_batch`` ledger rows in submission order."""
    from mailchimp_provider.warehouse.tables import WarehouseTables

    t = WarehouseTables().batch
    with engine.connect() as conn:
        rows = conn.execute(sa.select(t).where(t.c.run_id == run_id).order_by(t.c.submitted_at, t.c.batch_id))
        return [dict(r) for r in rows.mappings()]


def operations(engine: sa.Engine, run_id: str) -> dict[str, set[tuple[str, str, str]]]:
    """``{entity: {(record_id, operation, outcome)}}`` of the writes sent in a run (skips left out)."""
    out: dict[str, set[tuple[str, str, str]]] = {}
    for row in results(engine, run_id):
        if row["operation"] != "skip":
            out.setdefault(row["entity"], set()).add((row["record_id"], row["operation"], row["outcome"]))
    return out


def forget_state(engine: sa.Engine, *entities: str) -> None:
    """Lose the bookkeeping of some entities (as after a restore, or a store written by someone else)."""
    from mailchimp_provider.warehouse.tables import WarehouseTables

    t = WarehouseTables().sync_state
    with engine.begin() as conn:
        conn.execute(t.delete().where(t.c.entity.in_(entities)))


def set_state(engine: sa.Engine, entity: str, record_id: str) -> None:
    """Make ``sync_state`` believe Mailchimp holds a record (with a payload hash that never matches)."""
    from mailchimp_provider.warehouse.tables import WarehouseTables
    from mailchimp_provider.warehouse.upsert import upsert

    t = WarehouseTables().sync_state
    with engine.begin() as conn:
        upsert(conn, t, [{"entity": entity, "record_id": record_id, "payload_hash": "0" * 12, "mailchimp_id": record_id,
                          "scope": STORE_ID, "last_outcome": "ok", "attempts": 0, "quarantined": False}],
               key=["entity", "record_id"])


def presubmit_orders(emulator: Any, engine: sa.Engine, run_id: str) -> str:
    """Submit sync_orders' first batch for ``run_id`` the way a first try would, and 'crash' before
    applying it: the batch is in the ledger, its results are not in the bookkeeping."""
    from pathlib import Path

    from mailchimp_provider.batches.ledger import BatchLedger, BatchScope
    from mailchimp_provider.batches.runner import BatchRunner
    from mailchimp_provider.hooks.mailchimp import MailchimpHook
    from mailchimp_provider.sync.ecommerce.config import load_ecommerce_config
    from mailchimp_provider.sync.ecommerce import CommerceScope, EcommerceSyncEngine
    from mailchimp_provider.sync.ecommerce.orders import OrderRules
    from mailchimp_provider.sync.engine import RunContext, SyncSettings
    from mailchimp_provider.warehouse.tables import WarehouseTables

    config = load_ecommerce_config(Path(__file__).with_name("ecommerce_sync_test.yaml"))
    tables = WarehouseTables()
    ctx = RunContext(run_id=run_id, dag_id="test_ecommerce_sync", task_id="sync_orders")
    sync = EcommerceSyncEngine(engine, tables, OrderRules(CommerceScope(STORE_ID, config, config.consent())), ctx,
                               SyncSettings(max_operations_per_batch=100, chunk_size=4))
    ops = sync.next_operations()
    assert ops
    runner = BatchRunner(MailchimpHook(), BatchLedger(engine, tables), max_operations_per_batch=100,
                         poll_interval=0.05, stall_timeout=30)
    scope = BatchScope("test_ecommerce_sync", run_id, "sync_orders")
    (batch_id,) = runner.submit(scope, "order", ops)
    runner.wait([batch_id])
    return batch_id
