"""The e-commerce sync over the demo warehouse: every bad-row kind it rejects is skipped with a
reason naming the field, and guest checkouts (customers only on orders) reach Mailchimp."""

from __future__ import annotations

from typing import Any

from ecommerce_harness import STORE_ID, results, run_sync, store_doc

from mailchimp_provider.demo.data import BAD_ROW_KINDS, find_bad_rows, guest_checkout_orders, seed_demo_warehouse

# demo bad-row kind -> (entity, skip reason, text the skip's detail must contain)
SKIPPED = {
    "customer_missing_email": ("customer", "invalid: email", "email: required field is missing"),
    "customer_malformed_email": ("customer", "invalid: email", "email: not a valid email address"),
    "customer_no_marketing": ("customer", "invalid: no_marketing", "no_marketing:"),
    "customer_long_id": ("customer", "invalid: customer_id", "customer_id: id is"),
    "product_missing_title": ("product", "invalid: title", "title: required field is missing"),
    "product_long_id": ("product", "invalid: product_id", "product_id: id is"),
    "promo_rule_percentage_out_of_range": ("promo_rule", "invalid: amount", "amount: a percentage rule's amount"),
    "promo_code_too_long": ("promo_code", "invalid: code", "code:"),
    "promo_code_missing_redemption_url": ("promo_code", "invalid: redemption_url", "redemption_url: required field"),
    "order_negative_quantity": ("order", "invalid: order_lines.quantity", "quantity: negative quantity -1"),
    "order_unknown_currency": ("order", "invalid: currency_code", "unknown ISO 4217 currency code 'XYZ'"),
    "order_missing_product": ("order", "product_not_synced", "product P-DISCONTINUED-0042"),
    "order_unknown_customer": ("order", "customer_unknown", "no customer_email"),
    "order_without_lines": ("order", "invalid: order_lines", "order_lines: an order needs at least one line"),
    "order_promo_amount_out_of_range": ("order", "invalid: order_promos.amount_discounted", "is out of range"),
    "order_unknown_financial_status": ("order", "invalid: financial_status", "unknown status 'disputed'"),
    "order_long_id": ("order", "invalid: order_id", "order_id: id is 54 characters long"),
}
# kinds the e-commerce sync sends (they matter to the audience sync, or Mailchimp decides)
NOT_ECOMMERCE_BAD = {
    "customer_fake_email", "customer_duplicate_email", "customer_guest", "customer_incomplete_address",
    "customer_not_opted_in", "erasure_request", "product_without_variants", "variant_negative_inventory",
}


def test_every_bad_row_kind_is_skipped_with_its_field_and_guest_checkouts_are_sent(
    airflow_db: None, emulator: Any, warehouse: Any
) -> None:
    assert set(SKIPPED) | NOT_ECOMMERCE_BAD == set(BAD_ROW_KINDS)  # a new kind needs a decision here
    seed_demo_warehouse(warehouse.engine, customers=20, products=5, orders=40)
    bad = find_bad_rows(warehouse.engine)
    guests = guest_checkout_orders(warehouse.engine)

    dag_run = run_sync()

    rows = results(warehouse.engine, dag_run.run_id)
    skips = {(r["entity"], r["record_id"]): r for r in rows if r["outcome"] == "skipped"}
    for kind, (entity, reason, detail) in SKIPPED.items():
        assert bad[kind], kind
        for record_id in bad[kind]:
            row = skips.get((entity, record_id))
            assert row is not None, (kind, record_id)
            assert row["reason"] == reason, (kind, row)
            assert detail in row["error_detail"], (kind, row["error_detail"])

    # guest checkouts: each order is accepted and creates its customer from the order's columns
    assert len(guests) >= 2 and len(set(guests.values())) < len(guests)  # one guest bought twice
    sent = {r["record_id"] for r in rows if r["entity"] == "order" and r["outcome"] == "ok"}
    assert set(guests) <= sent
    doc = store_doc(emulator)
    for order_id, customer_id in guests.items():
        assert doc["orders"][order_id]["customer_id"] == customer_id
        customer = doc["customers"][customer_id]
        assert customer["opt_in_status"] is False and customer["first_name"]
        assert not customer["email_address"].endswith(("example.com", "test.com"))
    assert STORE_ID in emulator.state.stores
