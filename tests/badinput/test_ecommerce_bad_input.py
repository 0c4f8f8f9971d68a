"""One bad value is one bad record, and ids are checked and escaped, in the e-commerce sync run by
Airflow: customers are read by the shared extraction, products and orders by the merge join, where
an unreadable child row (a variant's price, a line's quantity) rejects its parent record."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ecommerce"))

from bad_tables import break_utf8, insert_raw, loosen  # noqa: E402
from ecommerce_harness import SENT, STORE_ID, Shop, results, run_sync, seed_shop, store_doc, task_states  # noqa: E402

pytestmark = pytest.mark.faults

T = "2024-05-01 10:00:00"


@pytest.fixture
def shop(warehouse: Any) -> Shop:
    return seed_shop(warehouse)


def _customer(cid: str, email: str, false: Any, **extra: Any) -> dict[str, Any]:
    return {"customer_id": cid, "email": email, "first_name": "Raw", "marketing_opt_in": false,
            "no_marketing": false, "is_guest": false, "created_at": T, "updated_at": T, **extra}


def _order(oid: Any, **extra: Any) -> dict[str, Any]:
    return {"order_id": oid, "customer_id": "c1", "currency_code": "USD", "order_total": "50.00",
            "financial_status": "paid", "processed_at": T, "updated_at": T, **extra}


def _line(oid: str, quantity: Any = 1) -> dict[str, Any]:
    return {"order_id": oid, "line_id": "1", "product_id": "p1", "variant_id": "p1-red", "quantity": quantity,
            "price": "50.00"}


def test_bad_values_reject_their_record_and_bad_ids_are_named(airflow_db: None, emulator: Any, shop: Shop,
                                                               warehouse: Any) -> None:
    db = shop.engine
    pg = warehouse.kind == "postgres"
    false = "false" if pg else 0
    loosen(db, "customers", ("created_at", "updated_at", "marketing_opt_in", "no_marketing", "is_guest"))
    loosen(db, "products")
    loosen(db, "product_variants", ("price",))
    loosen(db, "orders", ("processed_at", "order_total", "updated_at"))
    loosen(db, "order_lines", ("quantity",))
    insert_raw(db, "customers", [
        _customer("cb_date", "cara.date@northpeak-mail.com", false, created_at="not a date"),
        _customer("cb_optin", "cole.optin@northpeak-mail.com", false, marketing_opt_in=2),
    ])
    if not pg:
        insert_raw(db, "customers", [_customer("cb_utf8", "uma.utf@northpeak-mail.com", false)])
        break_utf8(db, "customers", "first_name", "customer_id", "cb_utf8")
    insert_raw(db, "products", [{"product_id": "pb", "title": "Bad Price"}, {"product_id": None, "title": "No Id"}])
    insert_raw(db, "product_variants", [{"variant_id": "pb-v", "product_id": "pb", "title": "V", "price": "abc"}])
    insert_raw(db, "orders", [
        _order("ob_when", processed_at="yesterday"), _order("ob_total", order_total="12,50 EUR"), _order("ob_qty"),
        _order("od"), _order("od", order_total="60.00"), _order(None), _order("og"),
    ])
    insert_raw(db, "order_lines", [_line("ob_when"), _line("ob_total"), _line("ob_qty", "two"), _line("od"),
                                   _line("og")])

    dag_run = run_sync()

    assert set(task_states(dag_run).values()) == {"success"}
    by = {(r["entity"], r["record_id"]): r for r in results(db, dag_run.run_id) if r["outcome"] == "skipped"}

    def skip(entity: str, record: str) -> tuple[str, str]:
        row = by[(entity, record)]
        return row["reason"], row["error_detail"]

    assert skip("customer", "cb_date") == ("bad_value", "column created_at: 'not a date' is not a timestamp")
    reason, detail = skip("customer", "cb_optin")
    assert reason == "bad_value" and detail.startswith("column marketing_opt_in: ") and "not a boolean" in detail
    if not pg:
        assert skip("customer", "cb_utf8") == ("bad_value", "column first_name: b'An\\xc3(\\xff' is not valid UTF-8 text")
    assert skip("product", "pb") == (
        "bad_value", "column product_variants.price: 'abc' is not a number (product_variants row variant_id='pb-v')")
    assert skip("order", "ob_when") == ("bad_value", "column processed_at: 'yesterday' is not a timestamp")
    assert skip("order", "ob_total") == ("bad_value", "column order_total: '12,50 EUR' is not a number")
    reason, detail = skip("order", "ob_qty")
    assert reason == "bad_value" and detail.startswith("column order_lines.quantity: 'two' is not an integer")
    reason, detail = skip("order", "od")
    assert reason == "duplicate_id" and "2 rows of query 'orders'" in detail and "order_total" in detail
    for entity in ("product", "order"):
        missing = [rid for (e, rid), r in by.items() if e == entity and r["reason"] == "missing_id"]
        assert len(missing) == 1 and missing[0].startswith(f"<missing {entity}_id: "), (entity, missing)
    # the good records are in Mailchimp, the bad ones are not
    doc = store_doc(emulator)
    assert set(doc["orders"]) == SENT["order"] | {"og"}
    assert set(doc["products"]) == SENT["product"]
    assert set(doc["customers"]) == SENT["customer"]


HOSTILE = "../../../lists/{list_id}/members/x"


def test_ids_are_percent_encoded_so_a_hostile_id_is_a_literal_record(airflow_db: None, emulator: Any,
                                                                     shop: Shop) -> None:
    run_sync()
    list_id = store_doc(emulator)["store"]["list_id"]
    members_before = {h: dict(m) for h, m in emulator.state.members[list_id].items()}
    hostile = HOSTILE.format(list_id=list_id)
    shop.insert("customers", [{"customer_id": hostile, "email": "hal.hostile@northpeak-mail.com", "first_name": "Hal",
                               "marketing_opt_in": False, "no_marketing": False, "is_guest": False}])
    shop.insert("products", [{"product_id": hostile, "title": "Hostile"}])

    second = run_sync()
    shop.update("products", {"product_id": hostile}, title="Hostile, renamed")
    third = run_sync()  # the update goes to PATCH .../products/<the id, encoded>

    doc = store_doc(emulator)
    assert doc["customers"][hostile]["email_address"] == "hal.hostile@northpeak-mail.com"
    assert doc["products"][hostile]["title"] == "Hostile, renamed"
    oks = {(r["entity"], r["operation"]) for run in (second, third) for r in results(shop.engine, run.run_id)
           if r["record_id"] == hostile and r["outcome"] == "ok"}
    assert oks == {("customer", "upsert"), ("product", "create"), ("product", "update")}
    # no other resource was touched: the members are the ones before plus the customer's own contact
    members = emulator.state.members[list_id]
    assert "x" not in members
    added = set(members) - set(members_before)
    assert {members[h]["email_address"] for h in added} == {"hal.hostile@northpeak-mail.com"}
    assert all(members[h]["merge_fields"] == m["merge_fields"] for h, m in members_before.items())
    # a direct call with the encoded id reads the same record
    from urllib.parse import quote

    got = emulator.api("GET", f"/ecommerce/stores/{STORE_ID}/customers/{quote(hostile, safe='')}")
    assert got.status_code == 200 and got.json()["id"] == hostile
