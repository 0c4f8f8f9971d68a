"""The e-commerce sync run by Airflow (``dag.test()``) against the emulator, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from ecommerce_harness import _line as _line_row
from ecommerce_harness import _order as _order_row
from ecommerce_harness import (
    BAD_ROWS,
    CUSTOMERS,
    DEPENDENCY_SKIPS,
    ORDERS_PATCH,
    ORDERS_POST,
    SENT,
    STORE_ID,
    batch_ops,
    batches,
    forget_state,
    operations,
    presubmit_orders,
    results,
    run_sync,
    set_state,
    states,
    store_doc,
    task_spans,
    task_states,
    xcom,
)

ENTITY_ORDER = ["customer", "product", "promo_rule", "promo_code", "order"]


def test_first_run_sends_everything_in_dependency_order_and_skips_bad_rows(
    airflow_db: None, emulator: Any, shop: Any
) -> None:
    dag_run = run_sync()

    assert task_states(dag_run) == {
        "prepare_store": "success", "sync_customers": "success", "sync_products": "success",
        "sync_promo_rules": "success", "sync_promo_codes": "success", "sync_orders": "success",
        "sync_carts": "success", "release_store": "success",
    }
    doc = store_doc(emulator)
    assert set(doc["customers"]) == SENT["customer"]
    assert set(doc["products"]) == SENT["product"]
    assert set(doc["orders"]) == SENT["order"]
    rows = results(shop.engine, dag_run.run_id)
    by_record = {(r["entity"], r["record_id"]): r for r in rows}
    for key, field in BAD_ROWS.items():
        assert by_record[key]["outcome"] == "skipped", key
        assert by_record[key]["reason"] == f"invalid: {field}", (key, by_record[key])
    for key, reason in DEPENDENCY_SKIPS.items():
        assert (by_record[key]["outcome"], by_record[key]["reason"]) == ("skipped", reason), key
    counts = xcom(dag_run, "release_store")
    assert counts["order"] == {"synced": 3, "skipped": 9, "failed": 0, "planned": 0}
    assert counts["customer"] == {"synced": 2, "skipped": 3, "failed": 0, "planned": 0}


def test_dependency_order_and_create_update_choices(airflow_db: None, emulator: Any, shop: Any) -> None:
    dag_run = run_sync()

    # every entity's batches went out in its own task, each task after the one before it
    assert {row["entity"] for row in batches(shop.engine, dag_run.run_id)} == set(ENTITY_ORDER)
    spans = task_spans(dag_run)
    order = [f"sync_{e}s" for e in ENTITY_ORDER]
    assert all(spans[a][1] <= spans[b][0] for a, b in zip(order, order[1:])), spans
    ops = operations(shop.engine, dag_run.run_id)
    assert ops["customer"] == {("c1", "upsert", "ok"), ("c2", "upsert", "ok")}  # customers: PUT
    assert ops["product"] == {("p1", "create", "ok"), ("p2", "create", "ok")}
    assert ops["order"] == {("o1", "create", "ok"), ("o2", "create", "ok"), ("o3", "create", "ok")}
    doc = store_doc(emulator)
    assert set(doc["products"]["p1"]["variants"]) == {"p1-red", "p1-blue"}
    assert list(doc["products"]["p2"]["variants"]) == ["p2"]  # copy-variant of a product without variants
    p1 = doc["products"]["p1"]
    assert (p1["title"], p1["handle"], p1["type"], p1["vendor"], p1["description"]) == (
        "Trail Shoe", "trail-shoe", "Shoes", "Northpeak", "Grippy.")
    assert p1["published_at_foreign"] == "2024-05-01T10:00:00+00:00" and p1["image_url"].endswith("p1.jpg")
    assert doc["orders"]["o1"]["promos"] == [{"code": "SPRING10", "amount_discounted": 10.0, "type": "percentage"}]
    assert set(doc["promo_rules"]["r1"]["promo_codes"]) == {"k1"}
    # consent: opt-in -> subscribed, no opt-in -> transactional (new members only)
    list_id = doc["store"]["list_id"]
    members = {m["email_address"]: m["status"] for m in emulator.state.members[list_id].values()}
    assert members == {"ann.lane@northpeak-mail.com": "subscribed", "bob.lane@northpeak-mail.com": "transactional"}
    # pending and cancelled orders are sent with those statuses and do not count as revenue
    assert doc["orders"]["o2"]["financial_status"] == "pending"
    assert doc["orders"]["o3"]["financial_status"] == "cancelled" and doc["orders"]["o3"]["cancelled_at_foreign"]
    c1 = emulator.api("GET", f"/ecommerce/stores/{STORE_ID}/customers/c1").json()
    c2 = emulator.api("GET", f"/ecommerce/stores/{STORE_ID}/customers/c2").json()
    assert (c1["orders_count"], c1["total_spent"]) == (1, 90.0)
    assert (c2["orders_count"], c2["total_spent"]) == (0, 0.0)

    # the second run: everything unchanged, nothing sent; then one order status change = one PATCH
    before = dict(emulator.state.counters)
    rerun = run_sync()
    assert {k: v for k, v in emulator.state.counters.items() if k.startswith("batch:")} == {
        k: v for k, v in before.items() if k.startswith("batch:")}
    assert operations(shop.engine, rerun.run_id) == {}
    assert xcom(rerun, "prepare_store")["is_syncing"] is False  # incremental: automations stay on

    shop.update("orders", {"order_id": "o2"}, financial_status="paid", fulfillment_status="fulfilled")
    third = run_sync()
    assert operations(shop.engine, third.run_id) == {"order": {("o2", "update", "ok")}}
    assert batch_ops(emulator, ORDERS_PATCH) == 1 and batch_ops(emulator, ORDERS_POST) == 3
    order = store_doc(emulator)["orders"]["o2"]
    assert (order["financial_status"], order["fulfillment_status"]) == ("paid", "shipped")
    c2 = emulator.api("GET", f"/ecommerce/stores/{STORE_ID}/customers/c2").json()
    assert (c2["orders_count"], c2["total_spent"]) == (1, 50.0)


def test_already_exists_and_not_found_are_healed_in_the_same_run(airflow_db: None, emulator: Any, shop: Any) -> None:
    run_sync()
    # state lost for products and orders (or the records were written by someone else) ...
    forget_state(shop.engine, "product", "order")
    # ... and an order deleted in Mailchimp while the warehouse refunds it
    emulator.api("DELETE", f"/ecommerce/stores/{STORE_ID}/orders/o3").raise_for_status()
    forget_state(shop.engine, "order")
    shop.update("orders", {"order_id": "o1"}, financial_status="refunded")
    set_state(shop.engine, "order", "o3")  # sync_state believes o3 is still in Mailchimp

    dag_run = run_sync()

    ops = operations(shop.engine, dag_run.run_id)
    assert ops["product"] == {("p1", "create", "skipped"), ("p1", "update", "ok"),
                              ("p2", "create", "skipped"), ("p2", "update", "ok")}
    assert ops["order"] == {("o1", "create", "skipped"), ("o1", "update", "ok"),
                            ("o2", "create", "skipped"), ("o2", "update", "ok"),
                            ("o3", "update", "skipped"), ("o3", "create", "ok")}
    reasons = {(r["record_id"], r["operation"]): r["reason"] for r in results(shop.engine, dag_run.run_id)}
    assert reasons[("p1", "create")] == "already_exists" and reasons[("o3", "update")] == "not_found"
    assert store_doc(emulator)["orders"]["o1"]["financial_status"] == "refunded"
    assert set(store_doc(emulator)["orders"]) == {"o1", "o2", "o3"}
    assert xcom(dag_run, "release_store")["order"] == {"synced": 3, "skipped": 9, "failed": 0, "planned": 0}
    assert all(s["mailchimp_id"] and s["payload_hash"] for s in states(shop.engine, "order").values()
               if s["record_id"] in SENT["order"])
    # healed for good: the next run sends nothing
    assert operations(shop.engine, run_sync().run_id) == {}


def test_failed_run_clears_is_syncing(airflow_db: None, emulator: Any, shop: Any) -> None:
    # Mailchimp rejects these addresses as fake: 3 of 5 customer writes fail, over the 25 % threshold
    shop.insert("customers", [dict(CUSTOMERS[0], customer_id=f"f{i}", email=f"test@northpeak{i}.test") for i in range(3)])

    dag_run = run_sync()

    states_ = task_states(dag_run)
    assert states_["sync_customers"] == "failed" and states_["sync_orders"] == "upstream_failed"
    assert states_["release_store"] == "success" and str(dag_run.state) == "failed"
    assert xcom(dag_run, "prepare_store")["is_syncing"] is True  # the initial backfill flagged it...
    assert store_doc(emulator)["store"]["is_syncing"] is False   # ...and the teardown cleared it


def test_full_refresh_flags_the_store_and_resends_as_updates(airflow_db: None, emulator: Any, shop: Any) -> None:
    run_sync()
    dag_run = run_sync({"full_refresh": True})

    assert xcom(dag_run, "prepare_store")["is_syncing"] is True
    assert store_doc(emulator)["store"]["is_syncing"] is False
    ops = operations(shop.engine, dag_run.run_id)
    assert ops["order"] == {("o1", "update", "ok"), ("o2", "update", "ok"), ("o3", "update", "ok")}
    assert batch_ops(emulator, ORDERS_POST) == 3  # never a second create


def test_dry_run_sends_nothing_and_entities_limit_the_run(airflow_db: None, emulator: Any, shop: Any) -> None:
    dry = run_sync({"dry_run": True})
    assert STORE_ID not in emulator.state.stores
    counts = xcom(dry, "release_store")
    assert counts["customer"]["planned"] == 2 and counts["order"] == {"synced": 0, "skipped": 9, "failed": 0, "planned": 3}
    assert not any(k.startswith("batch:") for k in emulator.state.counters)

    partial = run_sync({"entities": ["customer", "product"]})
    assert set(operations(shop.engine, partial.run_id)) == {"customer", "product"}
    assert not store_doc(emulator)["orders"]
    rest = run_sync()  # orders go out once their dependencies have
    assert set(operations(shop.engine, rest.run_id)) == {"promo_rule", "promo_code", "order"}


def test_task_retry_reattaches_to_its_batch_and_sends_no_order_twice(airflow_db: None, emulator: Any, shop: Any) -> None:
    run_sync({"entities": ["customer", "product", "promo_rule", "promo_code"]})
    when = datetime(2025, 1, 1, tzinfo=timezone.utc)
    run_id = f"manual__{when.isoformat()}"
    # a first try of sync_orders submitted its batch, then died before applying the results
    submitted = presubmit_orders(emulator, shop.engine, run_id)

    dag_run = run_sync(logical_date=when)

    assert dag_run.run_id == run_id and task_states(dag_run)["sync_orders"] == "success"
    assert batch_ops(emulator, ORDERS_POST) == 3  # the retry applied that batch, sent nothing again
    ledger = {row["batch_id"]: row for row in batches(shop.engine, run_id)}
    assert ledger[submitted]["applied_at"] is not None
    assert {r["record_id"] for r in results(shop.engine, run_id) if r["outcome"] == "ok"} >= SENT["order"]
    # and clearing the whole run (a rerun of the same run id) sends nothing either
    again = run_sync(logical_date=when)
    assert batch_ops(emulator, ORDERS_POST) == 3 and batch_ops(emulator, ORDERS_PATCH) == 0
    assert again.run_id == run_id


def test_an_order_waits_for_its_customer_and_goes_out_once_the_customer_has(
    airflow_db: None, emulator: Any, shop: Any
) -> None:
    shop.insert("orders", [_order_row("o13", "c4")])  # c4 has no email: never sent
    shop.insert("order_lines", [{"order_id": "o13", "line_id": "1", "product_id": "p1", "variant_id": "p1-red",
                                 "quantity": 1, "price": 50, "discount": 0}])
    first = run_sync()
    skip = next(r for r in results(shop.engine, first.run_id) if r["record_id"] == "o13")
    assert (skip["outcome"], skip["reason"]) == ("skipped", "customer_not_synced")
    assert "customer c4 has not reached Mailchimp" in skip["error_detail"]

    shop.update("customers", {"customer_id": "c4"}, email="dee.lane@northpeak-mail.com")
    second = run_sync()

    assert operations(shop.engine, second.run_id) == {"customer": {("c4", "upsert", "ok")}, "order": {("o13", "create", "ok")}}
    assert store_doc(emulator)["orders"]["o13"]["customer_id"] == "c4"


def test_a_customer_found_only_on_orders_is_created_from_the_order(airflow_db: None, emulator: Any, shop: Any) -> None:
    # guest checkouts: the customer is not in customers, the order carries the buyer (shipped orders.sql)
    buyer = {"customer_email": "gus.ghost@northpeak-mail.com", "customer_first_name": "Gus",
             "customer_last_name": "Ghost"}
    shop.insert("orders", [_order_row("o14", "guest-gus", "100.00", **buyer),
                           _order_row("o15", "guest-gus", "50.00", **buyer),      # the same guest again
                           _order_row("o16", "guest-typo", "50.00", **{**buyer, "customer_email": "gus.ghost@northpeak-mail"})])
    shop.insert("order_lines", [_line_row(o, "1", "p1", "p1-red", 1, price) for o, price in
                                (("o14", "100.00"), ("o15", "50.00"), ("o16", "50.00"))])

    dag_run = run_sync()

    assert {("o14", "create", "ok"), ("o15", "create", "ok")} <= operations(shop.engine, dag_run.run_id)["order"]
    doc = store_doc(emulator)
    guest = doc["customers"]["guest-gus"]
    assert (guest["email_address"], guest["first_name"], guest["last_name"], guest["opt_in_status"]) == (
        "gus.ghost@northpeak-mail.com", "Gus", "Ghost", False)
    assert doc["orders"]["o14"]["customer_id"] == doc["orders"]["o15"]["customer_id"] == "guest-gus"
    api_guest = emulator.api("GET", f"/ecommerce/stores/{STORE_ID}/customers/guest-gus").json()
    assert (api_guest["orders_count"], api_guest["total_spent"]) == (2, 150.0)
    list_id = doc["store"]["list_id"]
    statuses = {m["email_address"]: m["status"] for m in emulator.state.members[list_id].values()}
    assert statuses["gus.ghost@northpeak-mail.com"] == "transactional"  # no consent known: never subscribed

    # neither a known customer nor a usable email: skipped, and the detail names the fields
    skips = {r["record_id"]: r for r in results(shop.engine, dag_run.run_id) if r["outcome"] == "skipped"}
    assert "guest-typo" not in doc["customers"] and "o16" not in doc["orders"]
    assert skips["o16"]["reason"] == skips["o9"]["reason"] == "customer_unknown"
    assert "customer_email 'gus.ghost@northpeak-mail' is not a valid email address" in skips["o16"]["error_detail"]
    assert "customer_id 'ghost' is not in customers" in skips["o9"]["error_detail"]
    assert "no customer_email" in skips["o9"]["error_detail"]
    assert operations(shop.engine, run_sync().run_id) == {}  # and nothing is resent afterwards


def test_a_guest_order_never_creates_a_contact_for_an_erased_or_no_marketing_person(
    airflow_db: None, emulator: Any, shop: Any
) -> None:
    erased = {"customer_email": "Erin.Erased@northpeak-mail.com", "customer_first_name": "Erin"}
    opted_out = {"customer_email": "Cy.Lane@northpeak-mail.com", "customer_first_name": "Cy"}  # c3: no_marketing
    shop.insert("marketing_erasure_requests", [
        {"customer_id": None, "email": "erin.erased@northpeak-mail.com", "requested_at": datetime(2024, 5, 1, tzinfo=timezone.utc)}])
    shop.insert("orders", [_order_row("o20", "guest-erin", "80.00", **erased),
                           _order_row("o21", "guest-cy", "80.00", **opted_out)])
    shop.insert("order_lines", [_line_row(o, "1", "p1", "p1-red", 1, "80.00") for o in ("o20", "o21")])

    dag_run = run_sync()

    skips = {r["record_id"]: r for r in results(shop.engine, dag_run.run_id) if r["outcome"] == "skipped"}
    assert skips["o20"]["reason"] == skips["o21"]["reason"] == "customer_consent_blocked"
    assert "erasure request" in skips["o20"]["error_detail"]
    assert "no_marketing customer" in skips["o21"]["error_detail"]
    doc = store_doc(emulator)
    assert not {"guest-erin", "guest-cy"} & set(doc["customers"])
    emails = {m["email_address"] for members in emulator.state.members.values() for m in members.values()}
    assert not {"erin.erased@northpeak-mail.com", "cy.lane@northpeak-mail.com"} & emails
