"""Payload builders: what Mailchimp receives for each warehouse row, and which rows are refused."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest

from mailchimp_provider.sync.ecommerce.payloads import (
    RejectedRecord,
    StatusMaps,
    customer_payload,
    order_customer_payload,
    order_payload,
    product_payload,
    promo_code_payload,
    promo_rule_payload,
)

PRODUCT = {
    "product_id": "p1",
    "title": "Trail Shoe",
    "handle": "trail-shoe",
    "url": "https://shop.example.org/p/trail-shoe",
    "description": "Grippy.",
    "category": "Shoes",
    "vendor": "Acme",
    "image_url": "https://cdn.example.org/trail.jpg",
    "published_at": datetime(2024, 3, 1, 9, 30, tzinfo=timezone.utc),
}
ORDER = {
    "order_id": "o1",
    "customer_id": "c1",
    "currency_code": "eur",
    "order_total": Decimal("95.00"),
    "tax_total": Decimal("15.20"),
    "shipping_total": Decimal("5.00"),
    "discount_total": Decimal("10.00"),
    "financial_status": "paid",
    "fulfillment_status": "fulfilled",
    "order_url": None,
    "processed_at": "2024-05-01 10:00:00",
    "cancelled_at": None,
    "updated_at": "2024-05-01 10:00:00",
}
LINE = {"order_id": "o1", "line_id": "1", "product_id": "p1", "variant_id": "v1", "quantity": 2, "price": Decimal("50"), "discount": 0}
PROMO = {"order_id": "o1", "code": "SPRING10", "amount_discounted": Decimal("10"), "type": "fixed"}


def rejected(fn, *args, **kwargs) -> RejectedRecord:
    with pytest.raises(RejectedRecord) as info:
        fn(*args, **kwargs)
    return info.value


def test_product_carries_every_contract_field_and_its_variants():
    body = product_payload(PRODUCT, [{"variant_id": "v2", "title": "Red", "sku": "TS-R", "price": "59.90", "inventory_quantity": 3},
                                     {"variant_id": "v1", "title": None, "price": 49, "inventory_quantity": -2}])
    assert body["title"] == "Trail Shoe" and body["handle"] == "trail-shoe" and body["url"].endswith("trail-shoe")
    assert body["description"] == "Grippy." and body["type"] == "Shoes" and body["vendor"] == "Acme"
    assert body["image_url"].endswith("trail.jpg") and body["published_at_foreign"] == "2024-03-01T09:30:00+00:00"
    assert [v["id"] for v in body["variants"]] == ["v1", "v2"]  # sorted: stable hash
    v1 = body["variants"][0]
    assert v1["title"] == "Trail Shoe" and v1["price"] == 49.0 and v1["inventory_quantity"] == -2  # backorders allowed
    assert v1["url"] == PRODUCT["url"] and v1["image_url"] == PRODUCT["image_url"]


def test_product_without_variants_gets_one_copying_the_product():
    body = product_payload({"product_id": "p9", "title": "Gift card", "url": "https://x.example.org/g"}, [])
    assert body["variants"] == [{"id": "p9", "title": "Gift card", "url": "https://x.example.org/g"}]
    assert "handle" not in body  # nulls are left out, not sent as JSON null


@pytest.mark.parametrize(
    ("product", "variants", "field"),
    [
        ({**PRODUCT, "product_id": "p" * 51}, [], "product_id"),
        ({**PRODUCT, "title": "  "}, [], "title"),
        (PRODUCT, [{"variant_id": "v" * 60}], "product_variants.variant_id"),
        (PRODUCT, [{"variant_id": "v1", "price": "-1"}], "product_variants[v1].price"),
        (PRODUCT, [{"variant_id": "v1"}, {"variant_id": "v1"}], "product_variants[v1].variant_id"),
    ],
)
def test_bad_product_rows_name_the_field(product, variants, field):
    error = rejected(product_payload, product, variants)
    assert error.field == field and error.entity == "product"


def test_customer_payload_follows_consent_and_guest_rules():
    row = {"customer_id": "c1", "email": " Ann@Example.org ", "first_name": "Ann", "last_name": "Lee", "company": "Lee Ltd",
           "address1": "1 Main St", "city": "Leeds", "postal_code": "LS1", "country_code": "gb", "marketing_opt_in": 1}
    body = customer_payload(row, opt_in_status=True)
    assert body == {"id": "c1", "email_address": "Ann@Example.org", "opt_in_status": True, "first_name": "Ann",
                    "last_name": "Lee", "company": "Lee Ltd",
                    "address": {"address1": "1 Main St", "city": "Leeds", "postal_code": "LS1", "country_code": "GB"}}
    guest = customer_payload(row, opt_in_status=False, guest=True)
    assert guest == {"id": "c1", "email_address": "Ann@Example.org", "opt_in_status": False, "first_name": "Ann"}


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ({"customer_id": "c" * 51, "email": "a@example.org"}, "customer_id"),
        ({"customer_id": "c1", "email": None}, "email"),
        ({"customer_id": "c1", "email": "not-an-email"}, "email"),
    ],
)
def test_bad_customer_rows_name_the_field(row, field):
    assert rejected(customer_payload, row, opt_in_status=False).field == field


def test_no_marketing_customers_are_never_sent():
    error = rejected(customer_payload, {"customer_id": "c1", "email": "a@example.org"}, opt_in_status=False, no_marketing=True)
    assert error.field == "no_marketing"


def test_order_only_customer_is_built_from_the_order_columns():
    order = {**ORDER, "customer_id": "guest-7", "customer_email": "g7@example.org", "customer_first_name": "Gus"}
    assert order_customer_payload(order, opt_in_status=False) == {
        "id": "guest-7", "email_address": "g7@example.org", "opt_in_status": False, "first_name": "Gus"}
    assert order_customer_payload(ORDER, opt_in_status=False) is None


def test_order_payload_maps_totals_statuses_lines_and_promos():
    body = order_payload(ORDER, [LINE], [PROMO], customer={"id": "c1"})
    assert body["customer"] == {"id": "c1"} and body["currency_code"] == "EUR"
    assert (body["order_total"], body["tax_total"], body["shipping_total"], body["discount_total"]) == (95.0, 15.2, 5.0, 10.0)
    assert body["financial_status"] == "paid" and body["fulfillment_status"] == "shipped"
    assert body["processed_at_foreign"] == "2024-05-01T10:00:00+00:00" and "cancelled_at_foreign" not in body
    assert body["lines"] == [{"id": "1", "product_id": "p1", "product_variant_id": "v1", "quantity": 2, "price": 50.0, "discount": 0.0}]
    assert body["promos"] == [{"code": "SPRING10", "amount_discounted": 10.0, "type": "fixed"}]


def test_line_without_variant_points_at_the_copy_variant():
    body = order_payload(ORDER, [{**LINE, "variant_id": None}], [], customer={"id": "c1"})
    assert body["lines"][0]["product_variant_id"] == "p1" and "promos" not in body


@pytest.mark.parametrize(
    ("raw", "cancelled_at", "expected"),
    [("paid", None, "paid"), ("Pending", None, "pending"), ("authorized", None, "pending"), ("canceled", None, "cancelled"),
     ("paid", "2024-05-02 00:00:00", "cancelled"), ("refunded", "2024-05-02 00:00:00", "refunded"),
     ("Partially Refunded", None, "partially_refunded")],
)
def test_financial_status_is_mapped_so_pending_and_cancelled_never_look_paid(raw, cancelled_at, expected):
    body = order_payload({**ORDER, "financial_status": raw, "cancelled_at": cancelled_at}, [LINE], [], customer={"id": "c1"})
    assert body["financial_status"] == expected
    if cancelled_at:
        assert body["cancelled_at_foreign"] == "2024-05-02T00:00:00+00:00"


def test_status_vocabulary_can_be_extended_from_config():
    maps = StatusMaps.default().extended({"settled": "paid"}, {"in transit": "shipped"})
    body = order_payload({**ORDER, "financial_status": "SETTLED", "fulfillment_status": "in transit"}, [LINE], [],
                         customer={"id": "c1"}, status_maps=maps)
    assert (body["financial_status"], body["fulfillment_status"]) == ("paid", "shipped")


@pytest.mark.parametrize(
    ("order", "lines", "promos", "field"),
    [
        ({**ORDER, "currency_code": "XYZ"}, [LINE], [], "currency_code"),
        ({**ORDER, "currency_code": None}, [LINE], [], "currency_code"),
        ({**ORDER, "order_id": "o" * 51}, [LINE], [], "order_id"),
        ({**ORDER, "order_total": None}, [LINE], [], "order_total"),
        ({**ORDER, "financial_status": "lost in space"}, [LINE], [], "financial_status"),
        (ORDER, [{**LINE, "quantity": -1}], [], "order_lines[1].quantity"),
        (ORDER, [{**LINE, "product_id": None}], [], "order_lines[1].product_id"),
        (ORDER, [{**LINE, "variant_id": "v" * 51}], [], "order_lines[1].variant_id"),
        (ORDER, [], [], "order_lines"),
        (ORDER, [LINE], [{**PROMO, "amount_discounted": -5}], "order_promos[SPRING10].amount_discounted"),
        (ORDER, [LINE], [{**PROMO, "amount_discounted": 500}], "order_promos[SPRING10].amount_discounted"),
        (ORDER, [LINE], [{**PROMO, "type": "bogus"}], "order_promos[SPRING10].type"),
    ],
)
def test_bad_order_rows_name_the_field(order, lines, promos, field):
    error = rejected(order_payload, order, lines, promos, customer={"id": "c1"})
    assert error.field == field and error.record_id == (order["order_id"] or "")
    assert field in str(error)


RULE = {"promo_rule_id": "r1", "title": "Spring", "description": "10% off", "amount": 0.1, "type": "percentage",
        "target": "total", "starts_at": "2024-03-01 00:00:00", "ends_at": "2024-04-01 00:00:00", "enabled": 1}


def test_promo_rule_and_code_payloads():
    assert promo_rule_payload(RULE) == {
        "id": "r1", "title": "Spring", "description": "10% off", "amount": 0.1, "type": "percentage", "target": "total",
        "starts_at": "2024-03-01T00:00:00+00:00", "ends_at": "2024-04-01T00:00:00+00:00", "enabled": True}
    assert promo_rule_payload({**RULE, "description": None})["description"] == "Spring"
    code = promo_code_payload({"promo_code_id": "k1", "promo_rule_id": "r1", "code": "SPRING10",
                               "redemption_url": "https://shop.example.org/spring", "usage_count": 4, "enabled": 0})
    assert code == {"id": "k1", "code": "SPRING10", "redemption_url": "https://shop.example.org/spring", "usage_count": 4, "enabled": False}


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ({**RULE, "amount": 10}, "amount"),  # percentage must be a fraction
        ({**RULE, "type": "fixed", "amount": -3}, "amount"),
        ({**RULE, "target": "everything"}, "target"),
        ({**RULE, "promo_rule_id": "r" * 51}, "promo_rule_id"),
        ({**RULE, "description": None, "title": None}, "description"),
        ({**RULE, "ends_at": "2024-02-01 00:00:00"}, "ends_at"),
    ],
)
def test_bad_promo_rules_name_the_field(row, field):
    assert rejected(promo_rule_payload, row).field == field


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ({"promo_code_id": "k1", "promo_rule_id": "r1", "code": "C" * 51, "redemption_url": "https://x.example.org"}, "code"),
        ({"promo_code_id": "k1", "promo_rule_id": "r1", "code": "C", "redemption_url": None}, "redemption_url"),
        ({"promo_code_id": "k1", "promo_rule_id": None, "code": "C", "redemption_url": "https://x.example.org"}, "promo_rule_id"),
    ],
)
def test_bad_promo_codes_name_the_field(row, field):
    assert rejected(promo_code_payload, row).field == field
