"""A customer's ``orders_count`` / ``total_spent``, kept as running totals by the emulator (issue
#17), answer exactly what summing the customer's revenue orders in store order gives, through
random creates, updates (total, status, cancellation) and deletes, driven with the official
``mailchimp_marketing`` client. Totals that are not whole cents, negative totals (a sum can then
come out as ``-0.0``) and float-rounding sums such as 0.1 + 0.2 are part of the mix."""

from __future__ import annotations

import random
from typing import Any

import mailchimp_marketing as MailchimpMarketing
import pytest

from fixtures.emulator import AUDIENCE_BODY

TOTALS = [64.97, 0.1, 0.2, 0.3, 19.99, 1.005, 0.125, 0.001, 123456.789, 0.0, 5.0, -0.3, -0.0, 1e15 + 0.25, 33.33]
STATUSES = ["paid", "paid", "pending", "refunded", "partially_refunded", "cancelled", "", "Paid"]
CUSTOMERS = ["c1", "c2", "c3"]


def counts(order: dict[str, Any]) -> bool:
    """The emulator's revenue rule (its module docstring), restated."""
    return not order.get("cancelled_at_foreign") and str(order.get("financial_status") or "").strip().lower() in (
        "", "paid", "partially_refunded")


def expected(orders: dict[str, dict[str, Any]], customer_id: str) -> tuple[int, str]:
    """(orders_count, repr of total_spent) by summing in store order, as the emulator always did."""
    count, spent = 0, 0.0
    for order in orders.values():
        if order["customer"] == customer_id and counts(order):
            count, spent = count + 1, spent + order["order_total"]
    return count, repr(round(spent + 0.0, 2))


@pytest.fixture
def ec(mc: MailchimpMarketing.Client) -> Any:
    ec = mc.ecommerce
    list_id = mc.lists.create_list(AUDIENCE_BODY)["id"]
    ec.add_store({"id": "tot", "list_id": list_id, "name": "Totals", "currency_code": "USD"})
    ec.add_store_product("tot", {"id": "p", "title": "P", "variants": [{"id": "p-1", "title": "One", "price": 1.0}]})
    for n, cid in enumerate(CUSTOMERS):
        ec.add_store_customer("tot", {"id": cid, "email_address": f"total.{n}@brightmail.co", "opt_in_status": False})
    return ec


def test_running_totals_answer_as_the_sum_over_the_orders(ec: Any) -> None:
    rng = random.Random(17)
    orders: dict[str, dict[str, Any]] = {}  # insertion order = the store's order
    checked = 0
    for step in range(160):
        roll = rng.random()
        if roll < 0.55 or not orders:
            oid = f"o{step}"
            order = {"customer": rng.choice(CUSTOMERS), "order_total": rng.choice(TOTALS),
                     "financial_status": rng.choice(STATUSES)}
            if rng.random() < 0.1:
                order["cancelled_at_foreign"] = "2024-05-01T00:00:00+00:00"
            body = {"id": oid, "customer": {"id": order["customer"]}, "currency_code": "USD",
                    "order_total": order["order_total"], "financial_status": order["financial_status"],
                    "lines": [{"id": "1", "product_id": "p", "product_variant_id": "p-1", "quantity": 1, "price": 1.0}]}
            if "cancelled_at_foreign" in order:
                body["cancelled_at_foreign"] = order["cancelled_at_foreign"]
            answer = ec.add_store_order("tot", body)
            orders[oid] = order
        elif roll < 0.85:
            oid = rng.choice(list(orders))
            change: dict[str, Any] = {}
            if rng.random() < 0.6:
                change["order_total"] = rng.choice(TOTALS)
            if rng.random() < 0.6:
                change["financial_status"] = rng.choice(STATUSES)
            if rng.random() < 0.15:
                change["cancelled_at_foreign"] = "2024-06-01T00:00:00+00:00"
            answer = ec.update_order("tot", oid, change)
            orders[oid].update(change)
        else:
            oid = rng.choice(list(orders))
            ec.delete_order("tot", oid)
            del orders[oid]
            answer = None
        if answer is not None:  # the order's answer renders its customer
            customer = answer["customer"]
            assert (customer["orders_count"], repr(customer["total_spent"])) == expected(orders, customer["id"]), step
            checked += 1
        if step % 10 == 0:
            for cid in CUSTOMERS:
                got = ec.get_store_customer("tot", cid)
                assert (got["orders_count"], repr(got["total_spent"])) == expected(orders, cid), (step, cid)
    listed = {c["id"]: c for c in ec.get_all_store_customers("tot", count=10)["customers"]}
    for cid in CUSTOMERS:
        assert (listed[cid]["orders_count"], repr(listed[cid]["total_spent"])) == expected(orders, cid)
        got = ec.get_store_customer("tot", cid)
        assert (got["orders_count"], repr(got["total_spent"])) == expected(orders, cid)
    assert checked > 100
