"""The emulator's Carts API (``/ecommerce/stores/{id}/carts`` and lines), driven with the official
``mailchimp_marketing`` client, as Mailchimp documents it (shared/mailchimp-api.md §12 B)."""

from __future__ import annotations

import json
from typing import Any

import mailchimp_marketing as MailchimpMarketing
import pytest
from mailchimp_marketing.api_client import ApiClientError


@pytest.fixture
def ec(mc: MailchimpMarketing.Client) -> Any:
    return mc.ecommerce


@pytest.fixture
def store(ec: Any, list_id: str) -> str:
    ec.add_store({"id": "acme", "list_id": list_id, "name": "Acme", "currency_code": "USD", "domain": "acme-carts.com"})
    ec.add_store_product("acme", {"id": "p1", "title": "Shoe", "variants": [
        {"id": "p1-red", "title": "Red", "price": 50}, {"id": "p1-blue", "title": "Blue", "price": 55}]})
    ec.add_store_customer("acme", {"id": "c1", "email_address": "ann.lane@northpeak-mail.com", "opt_in_status": False})
    return "acme"


def cart_body(cart_id: str = "cart-1", **extra: Any) -> dict[str, Any]:
    return {"id": cart_id, "customer": {"id": "c1"}, "currency_code": "usd", "order_total": 100,
            "checkout_url": "https://acme-carts.com/checkout?cart=1",
            "lines": [{"id": "1", "product_id": "p1", "product_variant_id": "p1-red", "quantity": 2, "price": 50}],
            **extra}


def failure(call: Any) -> tuple[int, dict[str, Any]]:
    with pytest.raises(ApiClientError) as caught:
        call()
    return caught.value.status_code, json.loads(caught.value.text)


def test_a_cart_is_created_read_listed_and_carries_its_customer_and_line_titles(ec: Any, store: str) -> None:
    created = ec.add_store_cart(store, cart_body())
    assert created["id"] == "cart-1" and created["currency_code"] == "USD"
    assert created["checkout_url"] == "https://acme-carts.com/checkout?cart=1"
    assert created["customer"]["email_address"] == "ann.lane@northpeak-mail.com"
    (line,) = created["lines"]
    assert (line["product_title"], line["product_variant_title"], line["quantity"]) == ("Shoe", "Red", 2)
    assert ec.get_store_cart(store, "cart-1")["order_total"] == 100
    listed = ec.get_store_carts(store)
    assert listed["total_items"] == 1 and [c["id"] for c in listed["carts"]] == ["cart-1"]
    assert ec.get_all_cart_line_items(store, "cart-1")["lines"][0]["id"] == "1"


def test_a_new_customer_on_a_cart_is_created_as_a_transactional_contact(
    ec: Any, store: str, mc: MailchimpMarketing.Client, list_id: str
) -> None:
    ec.add_store_cart(store, cart_body(customer={"id": "c9", "email_address": "new.buyer@northpeak-mail.com",
                                                 "opt_in_status": False}))
    assert ec.get_store_customer(store, "c9")["email_address"] == "new.buyer@northpeak-mail.com"
    assert mc.lists.get_list_member(list_id, "new.buyer@northpeak-mail.com")["status"] == "transactional"


def test_a_taken_cart_id_is_already_exists_and_an_unknown_product_or_missing_field_is_refused(ec: Any, store: str) -> None:
    ec.add_store_cart(store, cart_body())
    status, body = failure(lambda: ec.add_store_cart(store, cart_body()))
    assert status == 400 and "A cart with the provided ID already exists" in body["detail"]
    bad_line = {"id": "1", "product_id": "p1", "product_variant_id": "nope", "quantity": 1, "price": 1}
    status, body = failure(lambda: ec.add_store_cart(store, cart_body("cart-2", lines=[bad_line])))
    assert status == 400 and "product with the provided ID does not exist" in body["detail"]
    no_total = {k: v for k, v in cart_body("cart-3").items() if k != "order_total"}
    status, body = failure(lambda: ec.add_store_cart(store, no_total))
    assert status == 400 and "order_total" in body["errors"][0]["message"]
    status, body = failure(lambda: ec.add_store_cart(store, cart_body("cart-4", customer={"id": "c8"})))
    assert status == 400 and any(e["field"] == "customer.email_address" for e in body["errors"])


def test_patch_changes_totals_and_replaces_the_lines_but_never_swaps_the_customer(ec: Any, store: str) -> None:
    ec.add_store_cart(store, cart_body())
    updated = ec.update_store_cart(store, "cart-1", {"order_total": 55, "lines": [
        {"product_id": "p1", "product_variant_id": "p1-blue", "quantity": 1, "price": 55}]})
    assert updated["order_total"] == 55
    assert [(line["product_variant_id"], line["quantity"]) for line in updated["lines"]] == [("p1-blue", 1)]
    # the PATCH customer has no id or email_address: sent anyway, they are ignored like any unknown field
    ec.update_store_cart(store, "cart-1", {"customer": {"id": "c2", "email_address": "x.other@northpeak-mail.com",
                                                        "first_name": "Ann"}})
    customer = ec.get_store_cart(store, "cart-1")["customer"]
    assert (customer["id"], customer["email_address"], customer["first_name"]) == (
        "c1", "ann.lane@northpeak-mail.com", "Ann")
    status, _ = failure(lambda: ec.update_store_cart(store, "nope", {"order_total": 1}))
    assert status == 404


def test_lines_are_added_updated_and_deleted_one_by_one(ec: Any, store: str) -> None:
    ec.add_store_cart(store, cart_body())
    ec.add_cart_line_item(store, "cart-1", {"id": "2", "product_id": "p1", "product_variant_id": "p1-blue",
                                           "quantity": 1, "price": 55})
    assert ec.update_cart_line_item(store, "cart-1", "2", {"quantity": 3})["quantity"] == 3
    assert ec.get_cart_line_item(store, "cart-1", "2")["product_variant_title"] == "Blue"
    ec.delete_cart_line_item(store, "cart-1", "1")
    assert [line["id"] for line in ec.get_store_cart(store, "cart-1")["lines"]] == ["2"]
    status, _ = failure(lambda: ec.get_cart_line_item(store, "cart-1", "1"))
    assert status == 404


def test_a_deleted_cart_is_gone_and_deleting_it_again_is_404(ec: Any, store: str) -> None:
    ec.add_store_cart(store, cart_body())
    ec.delete_store_cart(store, "cart-1")
    status, body = failure(lambda: ec.get_store_cart(store, "cart-1"))
    assert status == 404 and body["title"] == "Resource Not Found"
    status, _ = failure(lambda: ec.delete_store_cart(store, "cart-1"))
    assert status == 404
    assert ec.get_store_carts(store)["total_items"] == 0
