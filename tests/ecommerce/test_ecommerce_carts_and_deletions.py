"""Carts (optional tables) and deletions, through the e-commerce sync DAG against the emulator, on
SQLite and PostgreSQL.

The cart tables are built from the columns the README's contract extension names
(``carts(cart_id, customer_id, checkout_url, currency_code, order_total, tax_total, created_at,
updated_at)``, ``cart_lines(cart_id, line_id, product_id, variant_id, quantity, price)``).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from ecommerce_harness import ENTITY_ORDER, T0, Shop, results, run_sync, states, store_doc, task_states

ALL = [*ENTITY_ORDER, "cart"]
CART_TABLES_SQL = (
    "CREATE TABLE carts (cart_id VARCHAR(255) PRIMARY KEY, customer_id VARCHAR(255), checkout_url TEXT, "
    "currency_code VARCHAR(3), order_total NUMERIC(14, 2), tax_total NUMERIC(14, 2), created_at TIMESTAMP, "
    "updated_at TIMESTAMP)",
    "CREATE TABLE cart_lines (cart_id VARCHAR(255), line_id VARCHAR(255), product_id VARCHAR(255), "
    "variant_id VARCHAR(255), quantity INTEGER, price NUMERIC(14, 2), PRIMARY KEY (cart_id, line_id))",
)


def cart(cid: str, customer: str, total: str = "100.00", url: str | None = "https://shop.northpeak-test-shop.com/c") -> dict[str, Any]:
    return {"cart_id": cid, "customer_id": customer, "checkout_url": url, "currency_code": "USD",
            "order_total": Decimal(total), "tax_total": Decimal("0"), "created_at": T0, "updated_at": T0}


def line(cid: str, lid: str, pid: str, vid: str | None, qty: int = 2, price: str = "50.00") -> dict[str, Any]:
    return {"cart_id": cid, "line_id": lid, "product_id": pid, "variant_id": vid, "quantity": qty, "price": Decimal(price)}


def add_carts(engine: sa.Engine, carts: list[dict[str, Any]], lines: list[dict[str, Any]]) -> None:
    md = sa.MetaData()
    with engine.begin() as conn:
        if not sa.inspect(conn).has_table("carts"):
            for statement in CART_TABLES_SQL:
                conn.execute(sa.text(statement))
        md.reflect(conn, only=["carts", "cart_lines"])
        if carts:
            conn.execute(md.tables["carts"].insert(), carts)
        if lines:
            conn.execute(md.tables["cart_lines"].insert(), lines)


def execute(engine: sa.Engine, sql: str, **params: Any) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(sql), params)


def sent(emulator: Any) -> dict[str, int]:
    """Operations the emulator ran in batches so far, per route."""
    return {k: v for k, v in emulator.state.counters.items() if k.startswith("batch:")}


def outcomes(engine: sa.Engine, run_id: str, entity: str) -> dict[str, tuple[str, str, str | None]]:
    return {r["record_id"]: (r["operation"], r["outcome"], r["reason"])
            for r in results(engine, run_id) if r["entity"] == entity}


def test_without_cart_tables_the_sync_runs_whole_and_sends_no_cart(emulator: Any, shop: Shop, airflow_db: Any, caplog: Any) -> None:
    run = run_sync({"entities": ALL})
    assert set(task_states(run).values()) == {"success"}
    assert not store_doc(emulator).get("carts")
    assert not any("/carts" in k for k in sent(emulator))
    assert "table carts does not exist" in caplog.text and "carts are not synced" in caplog.text
    assert store_doc(emulator)["orders"], "the rest of the sync went on"


def test_carts_go_out_after_their_customer_and_products_with_named_skips(emulator: Any, shop: Shop, airflow_db: Any) -> None:
    add_carts(shop.engine, [
        cart("k1", "c1"), cart("a/b", "c2", "50.00"),      # an id that needs percent-encoding
        cart("k3", "c3"),                                  # customer never sent (no_marketing)
        cart("k4", "c1", url=None),                        # no checkout_url: useless to the automation
        cart("k5", "c1"),                                  # its product p3 is a bad row
        cart("k6", "c1"),                                  # no lines
    ], [
        line("k1", "1", "p1", "p1-red"), line("a/b", "1", "p2", None, 1),
        line("k3", "1", "p1", "p1-red"), line("k4", "1", "p1", "p1-red"), line("k5", "1", "p3", None),
    ])
    run = run_sync({"entities": ALL})
    assert task_states(run)["sync_carts"] == "success"
    carts = store_doc(emulator)["carts"]
    assert set(carts) == {"k1", "a/b"}
    assert carts["k1"]["customer_id"] == "c1" and carts["k1"]["checkout_url"] == "https://shop.northpeak-test-shop.com/c"
    assert [(i, l["product_variant_id"], l["quantity"]) for i, l in carts["k1"]["lines"].items()] == [("1", "p1-red", 2)]
    got = outcomes(shop.engine, run.run_id, "cart")
    assert got["k1"] == ("create", "ok", "create") and got["a/b"] == ("create", "ok", "create")
    assert got["k3"][1:] == ("skipped", "customer_not_synced")
    assert got["k4"][1:] == ("skipped", "invalid: checkout_url")
    assert got["k5"][1:] == ("skipped", "product_not_synced")
    assert got["k6"][1:] == ("skipped", "invalid: cart_lines")

    before = sent(emulator)
    rerun = run_sync({"entities": ALL})
    assert set(task_states(rerun).values()) == {"success"}
    assert sent(emulator) == before, "a no-change rerun sends no operation"


def test_a_changed_cart_is_patched_and_a_bought_or_removed_cart_is_deleted(emulator: Any, shop: Shop, airflow_db: Any) -> None:
    add_carts(shop.engine, [cart("k1", "c1"), cart("a/b", "c2", "50.00"), cart("k7", "c1")],
              [line("k1", "1", "p1", "p1-red"), line("a/b", "1", "p2", None, 1), line("k7", "1", "p2", None, 1)])
    run_sync({"entities": ALL})
    assert set(store_doc(emulator)["carts"]) == {"k1", "a/b", "k7"}

    # k1 changes (one line becomes blue x1); a/b is bought (orders.cart_id); k7's row is removed
    execute(shop.engine, "UPDATE carts SET order_total = 55 WHERE cart_id = 'k1'")
    execute(shop.engine, "UPDATE cart_lines SET variant_id = 'p1-blue', quantity = 1 WHERE cart_id = 'k1'")
    execute(shop.engine, "ALTER TABLE orders ADD COLUMN cart_id VARCHAR(255)")
    execute(shop.engine, "UPDATE orders SET cart_id = 'a/b' WHERE order_id = 'o2'")
    execute(shop.engine, "DELETE FROM cart_lines WHERE cart_id = 'k7'")
    execute(shop.engine, "DELETE FROM carts WHERE cart_id = 'k7'")
    before = sent(emulator)
    run = run_sync({"entities": ALL})
    carts = store_doc(emulator)["carts"]
    assert set(carts) == {"k1"}
    assert carts["k1"]["order_total"] == 55
    assert [(l["product_variant_id"], l["quantity"]) for l in carts["k1"]["lines"].values()] == [("p1-blue", 1)]
    got = outcomes(shop.engine, run.run_id, "cart")
    assert got == {"k1": ("update", "ok", "update"), "a/b": ("delete", "ok", "delete"), "k7": ("delete", "ok", "delete")}
    delta = {k: v - before.get(k, 0) for k, v in sent(emulator).items() if v != before.get(k, 0)}
    assert delta == {"batch:PATCH /ecommerce/stores/{store_id}/carts/{cart_id}": 1,
                     "batch:DELETE /ecommerce/stores/{store_id}/carts/{cart_id}": 2}
    assert states(shop.engine, "cart")["a/b"]["mailchimp_id"] is None

    before = sent(emulator)
    run_sync({"entities": ALL})
    assert sent(emulator) == before, "a no-change rerun sends no operation (bought carts are not deleted twice)"


def test_records_removed_from_the_source_are_deleted_by_policy_and_a_dry_run_lists_them(
    emulator: Any, shop: Shop, airflow_db: Any
) -> None:
    run_sync()
    assert set(store_doc(emulator)["products"]) == {"p1", "p2"}
    execute(shop.engine, "DELETE FROM products WHERE product_id = 'p2'")  # 1 of 2: under mass_delete.min_records
    execute(shop.engine, "DELETE FROM customers WHERE customer_id = 'c2'")   # customers: ignore by default

    dry = run_sync({"dry_run": True})
    assert outcomes(shop.engine, dry.run_id, "product")["p2"] == ("delete", "planned", "delete")
    assert "c2" not in outcomes(shop.engine, dry.run_id, "customer")
    assert "p2" in store_doc(emulator)["products"], "a dry run sends nothing"

    run = run_sync()
    assert outcomes(shop.engine, run.run_id, "product")["p2"] == ("delete", "ok", "delete")
    assert set(store_doc(emulator)["products"]) == {"p1"}
    assert "c2" in store_doc(emulator)["customers"]
    assert states(shop.engine, "product")["p2"]["mailchimp_id"] is None
    before = sent(emulator)
    run_sync()
    assert sent(emulator) == before, "a no-change rerun sends no operation (nothing is deleted twice)"


def test_the_mass_delete_guard_refuses_to_empty_an_entity_unless_the_run_allows_it(
    emulator: Any, shop: Shop, airflow_db: Any
) -> None:
    run_sync()
    assert set(store_doc(emulator)["products"]) == {"p1", "p2"}
    execute(shop.engine, "DELETE FROM product_variants")
    execute(shop.engine, "DELETE FROM products")   # as if the products view broke and returned nothing

    run = run_sync()
    got = outcomes(shop.engine, run.run_id, "product")
    assert {got["p1"][1:], got["p2"][1:]} == {("skipped", "mass_delete_refused")}
    assert set(store_doc(emulator)["products"]) == {"p1", "p2"}

    execute(shop.engine, "DELETE FROM promo_codes WHERE promo_code_id = 'k1'")   # the only code in Mailchimp
    run = run_sync({"allow_mass_delete": True})
    assert outcomes(shop.engine, run.run_id, "product")["p1"] == ("delete", "ok", "delete")
    assert outcomes(shop.engine, run.run_id, "promo_code")["k1"] == ("delete", "ok", "delete")
    assert not store_doc(emulator)["products"]
    assert not store_doc(emulator)["promo_rules"]["r1"]["promo_codes"], "a promo code is deleted under its rule"
