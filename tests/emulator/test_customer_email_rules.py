"""The emulator's rules behind an e-commerce customer's email change, driven with the official
``mailchimp_marketing`` client, as Mailchimp documents them:

* a customer's email cannot change: "An email address may not be changed once a customer is
  created." (mailchimp/mc-magento#17, mc-magento2#230); the PATCH body has no ``email_address``;
* an order cannot change customer: the order PATCH body's ``customer`` has no ``id``
  (spec ``ECommerceOrder2`` -> ``ECommerceCustomer4``), so an ``id`` sent anyway is ignored;
* DELETE of a customer is "Delete a customer from a store." (204); what it does to the orders is
  not documented, and the emulator keeps them; the id can be used again.
"""

from __future__ import annotations

from typing import Any

import pytest
from mailchimp_marketing.api_client import ApiClientError

OLD, NEW = "ann.lane@northpeak-mail.com", "ann.hill@northpeak-mail.com"


@pytest.fixture
def shop(mc: Any, list_id: str) -> Any:
    ec = mc.ecommerce
    ec.add_store({"id": "shop", "list_id": list_id, "name": "Northpeak", "currency_code": "USD"})
    ec.add_store_product("shop", {"id": "p", "title": "Trail Shoe", "variants": [{"id": "p", "title": "Trail Shoe"}]})
    for cid, email in (("a", OLD), ("b", NEW)):
        ec.set_store_customer("shop", cid, {"id": cid, "email_address": email, "opt_in_status": False})
    ec.add_store_order("shop", {"id": "o", "customer": {"id": "a"}, "currency_code": "USD", "order_total": 5,
                                "lines": [{"id": "1", "product_id": "p", "product_variant_id": "p", "quantity": 1, "price": 5}]})
    return ec


def test_a_put_naming_another_email_for_an_existing_customer_is_refused(shop: Any) -> None:
    with pytest.raises(ApiClientError) as caught:
        shop.set_store_customer("shop", "a", {"id": "a", "email_address": NEW, "opt_in_status": False})
    assert caught.value.status_code == 400
    assert "An email address may not be changed once a customer is created." in caught.value.text
    assert shop.get_store_customer("shop", "a")["email_address"] == OLD


def test_an_order_patch_never_moves_the_order_to_another_customer(shop: Any) -> None:
    patched = shop.update_order("shop", "o", {"customer": {"id": "b"}, "order_total": 6})
    assert patched["customer"]["id"] == "a" and patched["order_total"] == 6
    assert shop.get_store_customer("shop", "b")["orders_count"] == 0


def test_a_deleted_customer_keeps_its_orders_and_its_id_can_be_used_again(shop: Any) -> None:
    shop.delete_store_customer("shop", "a")
    assert shop.get_order("shop", "o")["customer"]["id"] == "a"
    again = shop.set_store_customer("shop", "a", {"id": "a", "email_address": "ann.kay@northpeak-mail.com",
                                                  "opt_in_status": False})
    assert again["email_address"] == "ann.kay@northpeak-mail.com"
