"""Variants and order lines removed in the warehouse, through the e-commerce sync DAG against the
emulator, on SQLite and PostgreSQL.

A product that loses a variant row, and an order that loses a line row, stay in Mailchimp: the
product or order is sent without the child, and the child is deleted on its own
(``DELETE /ecommerce/stores/{store_id}/products/{product_id}/variants/{variant_id}``,
``DELETE /ecommerce/stores/{store_id}/orders/{order_id}/lines/{line_id}``: Mailchimp's API
reference, E-commerce Stores > Product Variants / Order Lines). Ids with a ``/`` go into the path
percent-encoded.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from ecommerce_harness import T0, Shop, results, run_sync, store_doc

pytestmark = pytest.mark.slow

VARIANT_ROUTE = "batch:DELETE /ecommerce/stores/{store_id}/products/{product_id}/variants/{variant_id}"
LINE_ROUTE = "batch:DELETE /ecommerce/stores/{store_id}/orders/{order_id}/lines/{line_id}"


def sent(emulator: Any) -> dict[str, int]:
    return {k: v for k, v in emulator.state.counters.items() if k.startswith("batch:")}


def rows(engine: Any, run_id: str, entity: str, record_id: str) -> set[tuple[str, str, str | None]]:
    """``(operation, outcome, reason)`` of one record in one run; child deletes as ``delete_<child>``."""
    return {(r["operation"].split(":")[0], r["outcome"], r["reason"]) for r in results(engine, run_id)
            if r["entity"] == entity and r["record_id"] == record_id}


def test_a_removed_variant_and_order_line_are_deleted_and_a_dry_run_lists_them(
    emulator: Any, shop: Shop, airflow_db: Any
) -> None:
    shop.insert("product_variants", [{"variant_id": "p1/green", "product_id": "p1", "title": "Green", "sku": "TS-G",
                                      "price": Decimal("50.00"), "inventory_quantity": 2, "url": None,
                                      "image_url": None, "updated_at": T0}])
    shop.insert("order_lines", [{"order_id": "o1", "line_id": "3/x", "product_id": "p1", "variant_id": "p1-blue",
                                 "quantity": 1, "price": Decimal("50.00"), "discount": Decimal("0")}])
    run_sync()
    doc = store_doc(emulator)
    assert set(doc["products"]["p1"]["variants"]) == {"p1-red", "p1-blue", "p1/green"}
    assert set(doc["orders"]["o1"]["lines"]) == {"1", "2", "3/x"}

    with shop.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM product_variants WHERE variant_id = 'p1/green'")
        conn.exec_driver_sql("DELETE FROM order_lines WHERE order_id = 'o1' AND line_id = '3/x'")

    before = sent(emulator)
    dry = run_sync({"dry_run": True})
    assert rows(shop.engine, dry.run_id, "product", "p1") == {("update", "planned", "update"),
                                                               ("delete_variant", "planned", "delete")}
    assert rows(shop.engine, dry.run_id, "order", "o1") == {("update", "planned", "update"),
                                                            ("delete_line", "planned", "delete")}
    details = {r["error_detail"] for r in results(shop.engine, dry.run_id) if r["operation"].startswith("delete_")}
    assert details == {"variant p1/green of product p1: its row is no longer in product_variants",
                       "line 3/x of order o1: its row is no longer in order_lines"}
    assert sent(emulator) == before, "a dry run sends nothing"

    run = run_sync()
    doc = store_doc(emulator)
    assert set(doc["products"]["p1"]["variants"]) == {"p1-red", "p1-blue"}
    assert set(doc["orders"]["o1"]["lines"]) == {"1", "2"}
    assert rows(shop.engine, run.run_id, "product", "p1") == {("update", "ok", "update"), ("delete_variant", "ok", "delete")}
    assert rows(shop.engine, run.run_id, "order", "o1") == {("update", "ok", "update"), ("delete_line", "ok", "delete")}
    delta = {k: v - before.get(k, 0) for k, v in sent(emulator).items() if v != before.get(k, 0)}
    assert delta[VARIANT_ROUTE] == 1 and delta[LINE_ROUTE] == 1

    before = sent(emulator)
    run_sync()
    assert sent(emulator) == before, "a no-change rerun sends no operation (nothing is deleted twice)"


def test_a_line_mailchimp_holds_that_the_bookkeeping_never_knew_is_deleted_from_the_update_answer(
    emulator: Any, shop: Shop, airflow_db: Any
) -> None:
    """A line added to the order in Mailchimp by someone else (or before bookkeeping kept line ids)
    is in the PATCH answer's ``lines``: the order keeps it after the PATCH, so it is deleted too."""
    run_sync()
    resp = emulator.api("POST", "/ecommerce/stores/test-shop/orders/o1/lines",
                        json={"id": "extra", "product_id": "p1", "product_variant_id": "p1-red", "quantity": 1, "price": 5})
    assert resp.status_code == 200, resp.text
    shop.update("orders", {"order_id": "o1"}, financial_status="refunded")

    run = run_sync()
    assert set(store_doc(emulator)["orders"]["o1"]["lines"]) == {"1", "2"}
    assert rows(shop.engine, run.run_id, "order", "o1") == {("update", "ok", "update"), ("delete_line", "ok", "delete")}
