"""A customer's email change, end to end, through the e-commerce sync DAG against the emulator, on
SQLite and PostgreSQL: a change, then a change back, each with a new order and a cart.

Mailchimp refuses an e-commerce customer's email change ("An email address may not be changed once
a customer is created.", mailchimp/mc-magento#17), so the sync moves the customer to a new
Mailchimp customer id and deletes the old one. The audience sync's part (renaming the member
through its old subscriber hash, README "Email change") is played here by the same API call it
makes, plus the bookkeeping row it writes for a confirmed member, so only the e-commerce DAG runs.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
import sqlalchemy as sa

from ecommerce_harness import T0, Shop, _line, _order, results, run_sync, states, store_doc, task_states
from test_ecommerce_carts_and_deletions import add_carts, cart, line, sent

ENTITIES = ["customer", "product", "order", "cart"]
OLD, NEW = "ann.lane@northpeak-mail.com", "ann.hill@northpeak-mail.com"


def md5(email: str) -> str:
    return hashlib.md5(email.lower().encode()).hexdigest()


def audience_sync_renames(emulator: Any, engine: sa.Engine, customer_id: str, old: str, new: str | None) -> None:
    """What the audience sync does for an email change: ``PUT`` through the old member's hash with the
    new ``email_address`` (Mailchimp renames the contact), then its confirmed ``member`` state."""
    from mailchimp_provider.warehouse.tables import WarehouseTables
    from mailchimp_provider.warehouse.upsert import upsert

    list_id = store_doc(emulator)["store"]["list_id"]
    email = old
    if new is not None:
        reply = emulator.api("PUT", f"/lists/{list_id}/members/{md5(old)}", json={"email_address": new, "status_if_new": "subscribed"})
        assert reply.status_code == 200, reply.text
        email = new
    with engine.begin() as conn:
        upsert(conn, WarehouseTables().sync_state, [{
            "entity": "member", "record_id": customer_id, "payload_hash": "0" * 12, "mailchimp_id": md5(email),
            "scope": list_id, "email": email, "last_outcome": "ok", "attempts": 0, "quarantined": False}],
            key=["entity", "record_id"])


def customer_results(engine: sa.Engine, run_id: str, record_id: str) -> set[tuple[str, str, str | None]]:
    return {(r["operation"], r["outcome"], r["reason"]) for r in results(engine, run_id)
            if r["entity"] == "customer" and r["record_id"] == record_id}


def members_with(emulator: Any, email: str) -> int:
    list_id = store_doc(emulator)["store"]["list_id"]
    reply = emulator.api("GET", f"/lists/{list_id}/members", params={"count": 1000})
    return sum(1 for m in reply.json()["members"] if m["email_address"].lower() == email and m["status"] != "archived")


def new_order(shop: Shop, oid: str, cid: str = "c1") -> None:
    shop.insert("orders", [_order(oid, cid, "50.00")])
    shop.insert("order_lines", [_line(oid, "1", "p2", None, 1, "50.00")])


@pytest.mark.slow
def test_an_email_change_and_back_moves_future_orders_and_carts_to_the_new_customer(
    emulator: Any, shop: Shop, airflow_db: Any
) -> None:
    add_carts(shop.engine, [cart("k1", "c1")], [line("k1", "1", "p1", "p1-red")])
    run_sync({"entities": ENTITIES})
    audience_sync_renames(emulator, shop.engine, "c1", OLD, None)   # the audience sync manages c1's member
    doc = store_doc(emulator)
    assert doc["customers"]["c1"]["email_address"] == OLD and doc["carts"]["k1"]["customer_id"] == "c1"

    # 1. the email changes in the warehouse; the audience sync has not renamed the member yet
    shop.update("customers", {"customer_id": "c1"}, email=NEW.upper(), updated_at=T0)
    run = run_sync({"entities": ENTITIES})
    assert set(task_states(run).values()) == {"success"}
    assert customer_results(shop.engine, run.run_id, "c1") == {("skip", "skipped", "email_change_pending")}
    assert set(store_doc(emulator)["customers"]) == {"c1", "c2"}, "no second customer, so no second contact"
    assert members_with(emulator, NEW) == 0

    # 2. the audience sync renamed the member: the customer moves to its new id, the old one is
    #    deleted, and a new order comes in
    audience_sync_renames(emulator, shop.engine, "c1", OLD, NEW)
    new_order(shop, "o20")
    run = run_sync({"entities": ENTITIES})
    assert set(task_states(run).values()) == {"success"}
    doc = store_doc(emulator)
    moved = {cid for cid, c in doc["customers"].items() if c["email_address"].lower() == NEW}
    assert len(moved) == 1
    new_id = moved.pop()
    assert new_id != "c1" and new_id.startswith("c1~") and len(new_id) <= 50
    assert set(doc["customers"]) == {new_id, "c2"}, "the old e-commerce customer is deleted"
    assert customer_results(shop.engine, run.run_id, "c1") == {("upsert", "ok", "create"), ("delete", "ok", "delete")}
    assert states(shop.engine, "customer")["c1"]["mailchimp_id"] == new_id   # the mapping
    assert doc["orders"]["o20"]["customer_id"] == new_id, "a new order lands under the new address"
    assert doc["orders"]["o1"]["customer_id"] == "c1", "past orders stay where they were (Mailchimp cannot move them)"
    assert doc["carts"]["k1"]["customer_id"] == new_id, "the open cart moved to the new customer"
    assert members_with(emulator, NEW) == 1 and members_with(emulator, OLD) == 0, "one contact, renamed"
    assert [o for o in doc["orders"] if o == "o20"] == ["o20"]

    before = sent(emulator)
    rerun = run_sync({"entities": ENTITIES})
    assert set(task_states(rerun).values()) == {"success"}
    assert sent(emulator) == before, "a no-change rerun sends no operation"

    # 3. the email changes back (and the audience renames back), with another new order
    shop.update("customers", {"customer_id": "c1"}, email=OLD)
    audience_sync_renames(emulator, shop.engine, "c1", NEW, OLD)
    new_order(shop, "o21")
    run = run_sync({"entities": ENTITIES})
    assert set(task_states(run).values()) == {"success"}
    doc = store_doc(emulator)
    assert set(doc["customers"]) == {"c1", "c2"}, "back to the original id; the second one is deleted"
    assert doc["customers"]["c1"]["email_address"].lower() == OLD
    assert states(shop.engine, "customer")["c1"]["mailchimp_id"] == "c1"
    assert doc["orders"]["o21"]["customer_id"] == "c1" and doc["orders"]["o20"]["customer_id"] == new_id
    assert doc["carts"]["k1"]["customer_id"] == "c1"
    assert members_with(emulator, OLD) == 1 and members_with(emulator, NEW) == 0
    assert sorted(doc["orders"]) == sorted({*doc["orders"]}), "each order once"
    assert len([o for o in doc["orders"] if o in ("o20", "o21")]) == 2

    before = sent(emulator)
    rerun = run_sync({"entities": ENTITIES})
    assert set(task_states(rerun).values()) == {"success"}
    assert sent(emulator) == before, "a no-change rerun sends no operation"


def test_the_new_customer_id_is_deterministic_short_and_returns_to_the_original() -> None:
    from mailchimp_provider.sync.ecommerce.customers import mailchimp_customer_id

    first = mailchimp_customer_id("c1", NEW, OLD)
    assert first == mailchimp_customer_id("c1", NEW, OLD), "retries and reruns compute the same id"
    assert first != mailchimp_customer_id("c2", NEW, OLD) and first != mailchimp_customer_id("c1", "x@y.com", OLD)
    assert mailchimp_customer_id("c1", OLD, OLD) == "c1" and mailchimp_customer_id("c1", NEW, None) == "c1"
    assert len(mailchimp_customer_id("x" * 50, NEW, OLD)) == 50   # Mailchimp's customer id maxLength
