"""The emulator's e-commerce API, driven with the official ``mailchimp_marketing`` client.

Each test states one rule of Mailchimp's e-commerce resources (facts sheet §7): what is created,
what each update does, and the exact error a client sees when a rule is broken.
"""

from __future__ import annotations

import json
from typing import Any, Callable

import mailchimp_marketing as MailchimpMarketing
import pytest
from mailchimp_marketing.api_client import ApiClientError
from fixtures.emulator import AUDIENCE_BODY

def already_exists(thing: str) -> str:
    article = "An" if thing[0] in "aeiou" else "A"
    return (
        f"We were unable to process the request. {article} {thing} with the provided ID"
        " already exists in the account."
    )


UNKNOWN_PRODUCT = "A product with the provided ID does not exist in the account for this list."


@pytest.fixture
def ec(mc: MailchimpMarketing.Client) -> Any:
    """The client's e-commerce API."""
    return mc.ecommerce


def make_list(mc: MailchimpMarketing.Client, name: str = "Shop audience") -> str:
    return mc.lists.create_list({**AUDIENCE_BODY, "name": name})["id"]


@pytest.fixture
def store(ec: Any, list_id: str) -> dict[str, Any]:
    return ec.add_store(
        {
            "id": "acme",
            "list_id": list_id,
            "name": "Acme Outfitters",
            "currency_code": "usd",
            "domain": "acme-outfitters.com",
        }
    )


def api_error(call: Callable[[], Any]) -> tuple[int, dict[str, Any]]:
    """Run a client call that must fail; its HTTP status and problem-detail body."""
    with pytest.raises(ApiClientError) as caught:
        call()
    return caught.value.status_code, json.loads(caught.value.text)


def member_status(mc: MailchimpMarketing.Client, list_id: str, email: str) -> str:
    return mc.lists.get_list_member(list_id, email)["status"]


def add_product(ec: Any, product_id: str = "boot", price: float = 50.0) -> dict[str, Any]:
    return ec.add_store_product(
        "acme",
        {
            "id": product_id,
            "title": f"Trail {product_id}",
            "image_url": f"https://cdn.acme-outfitters.com/{product_id}.jpg",
            "variants": [
                {"id": f"{product_id}-9", "title": "Size 9", "price": price, "inventory_quantity": 4},
                {"id": f"{product_id}-10", "title": "Size 10", "price": price},
            ],
        },
    )


def new_customer(customer_id: str, email: str, opt_in: Any = False) -> dict[str, Any]:
    return {"id": customer_id, "email_address": email, "opt_in_status": opt_in}


def missing(*names: str) -> list[dict[str, str]]:
    """The ``errors`` of a body that lacks required top-level fields."""
    return [{"field": "", "message": "Required fields were not provided: " + ", ".join(names)}]


def line(line_id: str, product_id: str, variant_id: str, *, price: float, quantity: int = 1) -> dict:
    return {
        "id": line_id,
        "product_id": product_id,
        "product_variant_id": variant_id,
        "quantity": quantity,
        "price": price,
    }


def order_body(order_id: str, total: float, customer: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "id": order_id,
        "customer": customer,
        "currency_code": "USD",
        "order_total": total,
        "lines": [line(f"{order_id}-1", "boot", "boot-9", price=total)],
        **extra,
    }


# ------------------------------------------------------------------------------------------------
# stores
# ------------------------------------------------------------------------------------------------


def test_store_is_created_read_listed_updated_and_deleted(ec, list_id, store):
    assert store["id"] == "acme"
    assert store["list_id"] == list_id
    assert store["currency_code"] == "USD"
    assert store["domain"] == "acme-outfitters.com"
    assert store["is_syncing"] is False
    assert store["list_is_active"] is True
    assert store["created_at"] and store["updated_at"]
    assert set(store["address"]) >= {"address1", "city", "postal_code", "country_code"}

    assert ec.get_store("acme")["name"] == "Acme Outfitters"
    listing = ec.stores()
    assert listing["total_items"] == 1 and [s["id"] for s in listing["stores"]] == ["acme"]

    change = {"name": "Acme Outdoor", "is_syncing": True, "address": {"city": "Paris"}}
    patched = ec.update_store("acme", change)
    assert patched["name"] == "Acme Outdoor"
    assert patched["is_syncing"] is True
    assert patched["address"]["city"] == "Paris"
    assert patched["list_id"] == list_id

    ec.delete_store("acme")
    status, body = api_error(lambda: ec.get_store("acme"))
    assert (status, body["title"]) == (404, "Resource Not Found")


def test_store_requires_id_list_name_and_currency(ec, list_id):
    status, body = api_error(lambda: ec.add_store({"id": "s1"}))
    assert (status, body["title"]) == (400, "Invalid Resource")
    assert body["errors"] == missing("list_id", "name", "currency_code")


def test_store_list_must_exist(ec):
    status, body = api_error(
        lambda: ec.add_store({"id": "s1", "list_id": "0000000000", "name": "S", "currency_code": "USD"})
    )
    assert (status, body["title"]) == (400, "Invalid Resource")
    assert body["errors"][0]["field"] == "list_id"


def test_duplicate_store_id_or_domain_is_refused(ec, list_id, store):
    again = {"id": "acme", "list_id": list_id, "name": "Again", "currency_code": "USD"}
    status, body = api_error(lambda: ec.add_store(again))
    assert (status, body["title"], body["detail"]) == (400, "Bad Request", already_exists("store"))

    status, body = api_error(
        lambda: ec.add_store(
            {**again, "id": "b", "domain": "ACME-outfitters.com"}
        )
    )
    assert (status, body["title"]) == (400, "Bad Request")
    assert body["detail"] == (
        "We were unable to process the request."
        " A store with the domain ACME-outfitters.com already exists in the account."
    )


def test_store_list_id_cannot_change(mc, ec, store):
    other_list = make_list(mc, "Another audience")
    status, body = api_error(lambda: ec.update_store("acme", {"list_id": other_list}))
    assert (status, body["title"]) == (400, "Invalid Resource")
    assert body["errors"][0]["field"] == "list_id"
    assert ec.get_store("acme")["list_id"] == store["list_id"]


def test_deleting_a_store_deletes_everything_in_it(mc, ec, list_id, store):
    add_product(ec)
    ec.add_store_order("acme", order_body("o1", 50, {"id": "c1", "email_address": "ann.lee@brightmail.co"}))
    ec.delete_store("acme")
    ec.add_store({"id": "acme", "list_id": list_id, "name": "Acme again", "currency_code": "USD"})
    assert ec.get_all_store_customers("acme")["total_items"] == 0
    assert ec.get_all_store_products("acme")["total_items"] == 0
    assert ec.get_store_orders("acme")["total_items"] == 0
    # the audience member made from the customer is not part of the store and stays
    assert member_status(mc, list_id, "ann.lee@brightmail.co") == "transactional"


# ------------------------------------------------------------------------------------------------
# customers and the audience
# ------------------------------------------------------------------------------------------------


def test_customer_crud_and_email_filter(ec, store):
    created = ec.add_store_customer(
        "acme",
        {
            "id": "c1",
            "email_address": "ann.lee@brightmail.co",
            "opt_in_status": True,
            "first_name": "Ann",
            "last_name": "Lee",
            "company": "Lee & Co",
            "address": {"city": "Lyon", "country_code": "FR"},
        },
    )
    assert created["id"] == "c1"
    assert (created["first_name"], created["last_name"], created["company"]) == ("Ann", "Lee", "Lee & Co")
    assert created["address"]["city"] == "Lyon" and created["address"]["postal_code"] == ""
    assert (created["orders_count"], created["total_spent"]) == (0, 0.0)
    assert created["created_at"] and created["updated_at"]
    ec.add_store_customer("acme", new_customer("c2", "bo.kim@brightmail.co", False))

    assert ec.get_all_store_customers("acme")["total_items"] == 2
    found = ec.get_all_store_customers("acme", email_address="Ann.Lee@brightmail.co")
    assert [c["id"] for c in found["customers"]] == ["c1"]

    change = {"last_name": "Lee-Smith", "address": {"postal_code": "69001"}}
    patched = ec.update_store_customer("acme", "c1", change)
    assert patched["last_name"] == "Lee-Smith" and patched["first_name"] == "Ann"
    assert patched["address"] == {**created["address"], "postal_code": "69001"}

    upserted = ec.set_store_customer("acme", "c3", new_customer("c3", "cy.ng@brightmail.co", False))
    assert upserted["email_address"] == "cy.ng@brightmail.co"
    updated = ec.set_store_customer("acme", "c3", {"first_name": "Cy"})
    assert updated["first_name"] == "Cy" and updated["email_address"] == "cy.ng@brightmail.co"

    ec.delete_store_customer("acme", "c2")
    status, _ = api_error(lambda: ec.get_store_customer("acme", "c2"))
    assert status == 404


def test_customer_create_and_update_errors(ec, store):
    ec.add_store_customer("acme", new_customer("c1", "ann.lee@brightmail.co", False))

    status, body = api_error(
        lambda: ec.add_store_customer("acme", new_customer("c1", "x.y@brightmail.co", False))
    )
    assert (status, body["title"], body["detail"]) == (400, "Bad Request", already_exists("customer"))

    status, body = api_error(lambda: ec.add_store_customer("acme", {"id": "c9"}))
    assert body["errors"] == missing("email_address", "opt_in_status")

    status, body = api_error(
        lambda: ec.add_store_customer("acme", new_customer("x" * 51, "z.q@brightmail.co", True))
    )
    assert (status, body["title"], body["errors"][0]["field"]) == (400, "Invalid Resource", "id")

    not_a_bool = new_customer("c8", "z.q@brightmail.co", "yes")
    status, body = api_error(lambda: ec.add_store_customer("acme", not_a_bool))
    message = "Schema describes boolean, string found instead"
    assert body["errors"] == [{"field": "opt_in_status", "message": message}]

    status, body = api_error(lambda: ec.update_store_customer("acme", "nobody", {"first_name": "N"}))
    assert (status, body["title"]) == (404, "Resource Not Found")

    new_email = {"email_address": "new.ann@brightmail.co"}
    status, body = api_error(lambda: ec.update_store_customer("acme", "c1", new_email))
    assert (status, body["errors"][0]["field"]) == (400, "email_address")

    status, body = api_error(lambda: ec.set_store_customer("acme", "c7", {"first_name": "No email"}))
    assert body["errors"][0]["message"] == "Required fields were not provided: email_address, opt_in_status"


def test_customer_with_a_fake_email_is_refused_and_not_stored(ec, store):
    status, body = api_error(
        lambda: ec.add_store_customer("acme", new_customer("c1", "test@example.com", True))
    )
    assert (status, body["title"]) == (400, "Invalid Resource")
    assert "looks fake" in body["detail"]
    assert ec.get_all_store_customers("acme")["total_items"] == 0


def test_new_customer_joins_the_audience_as_subscribed_or_transactional(mc, ec, list_id, store):
    ec.add_store_customer("acme", new_customer("in", "opted.in@brightmail.co", True))
    ec.add_store_customer("acme", new_customer("out", "opted.out@brightmail.co", False))
    assert member_status(mc, list_id, "opted.in@brightmail.co") == "subscribed"
    assert member_status(mc, list_id, "opted.out@brightmail.co") == "transactional"


def test_opt_in_upgrades_transactional_but_never_downgrades(mc, ec, list_id, store):
    ec.add_store_customer("acme", new_customer("c1", "dee.fox@brightmail.co", False))
    assert member_status(mc, list_id, "dee.fox@brightmail.co") == "transactional"

    ec.set_store_customer("acme", "c1", {"opt_in_status": True})
    assert member_status(mc, list_id, "dee.fox@brightmail.co") == "subscribed"

    customer = ec.update_store_customer("acme", "c1", {"opt_in_status": False})
    assert customer["opt_in_status"] is False
    assert member_status(mc, list_id, "dee.fox@brightmail.co") == "subscribed"


def test_existing_contacts_keep_their_status(mc, ec, list_id, store):
    mc.lists.add_list_member(list_id, {"email_address": "gone.away@brightmail.co", "status": "unsubscribed"})
    mc.lists.add_list_member(list_id, {"email_address": "loyal.fan@brightmail.co", "status": "subscribed"})
    mc.lists.add_list_member(list_id, {"email_address": "maybe.later@brightmail.co", "status": "pending"})

    ec.add_store_customer("acme", new_customer("a", "gone.away@brightmail.co", True))
    ec.add_store_customer("acme", new_customer("b", "loyal.fan@brightmail.co", False))
    ec.add_store_customer("acme", new_customer("c", "maybe.later@brightmail.co", True))

    assert member_status(mc, list_id, "gone.away@brightmail.co") == "unsubscribed"
    assert member_status(mc, list_id, "loyal.fan@brightmail.co") == "subscribed"
    assert member_status(mc, list_id, "maybe.later@brightmail.co") == "pending"


# ------------------------------------------------------------------------------------------------
# products and variants
# ------------------------------------------------------------------------------------------------


def test_product_crud(ec, store):
    created = ec.add_store_product(
        "acme",
        {
            "id": "boot",
            "title": "Trail boot",
            "handle": "trail-boot",
            "url": "https://acme-outfitters.com/boot",
            "description": "Waterproof",
            "type": "Footwear",
            "vendor": "Acme",
            "image_url": "https://cdn.acme-outfitters.com/boot.jpg",
            "images": [
                {"id": "img1", "url": "https://cdn.acme-outfitters.com/side.jpg", "variant_ids": ["boot-9"]}
            ],
            "published_at_foreign": "2024-03-01T10:00:00+00:00",
            "variants": [
                {"id": "boot-9", "title": "Size 9", "sku": "B9", "price": "79.90", "inventory_quantity": 3}
            ],
        },
    )
    assert created["currency_code"] == "USD"
    for key, value in {
        "title": "Trail boot",
        "handle": "trail-boot",
        "url": "https://acme-outfitters.com/boot",
        "description": "Waterproof",
        "type": "Footwear",
        "vendor": "Acme",
        "published_at_foreign": "2024-03-01T10:00:00+00:00",
    }.items():
        assert created[key] == value
    assert created["images"][0]["variant_ids"] == ["boot-9"]
    (variant,) = created["variants"]
    assert (variant["id"], variant["sku"], variant["price"]) == ("boot-9", "B9", 79.9)
    assert variant["inventory_quantity"] == 3
    assert variant["created_at"] and variant["updated_at"]

    change = {"title": "Trail boot II", "variants": [{"id": "boot-10", "title": "Size 10"}]}
    patched = ec.update_store_product("acme", "boot", change)
    assert patched["title"] == "Trail boot II" and patched["vendor"] == "Acme"
    assert [v["id"] for v in patched["variants"]] == ["boot-9", "boot-10"]

    assert ec.get_store_product("acme", "boot")["title"] == "Trail boot II"
    assert ec.get_all_store_products("acme")["total_items"] == 1
    ec.delete_store_product("acme", "boot")
    status, _ = api_error(lambda: ec.get_store_product("acme", "boot"))
    assert status == 404


def test_product_create_errors(ec, store):
    add_product(ec)
    status, body = api_error(lambda: add_product(ec))
    assert (status, body["title"], body["detail"]) == (400, "Bad Request", already_exists("product"))

    status, body = api_error(lambda: ec.add_store_product("acme", {"id": "hat"}))
    assert body["errors"] == missing("title", "variants")

    hat = {"id": "hat", "title": "Hat"}
    status, body = api_error(lambda: ec.add_store_product("acme", {**hat, "variants": []}))
    assert (status, body["title"], body["errors"][0]["field"]) == (400, "Invalid Resource", "variants")

    status, body = api_error(lambda: ec.add_store_product("acme", {**hat, "variants": [{"id": "h"}]}))
    (error,) = body["errors"]
    assert error == {"field": "variants.item:0", "message": "Required fields were not provided: title"}

    status, body = api_error(lambda: ec.update_store_product("acme", "nope", {"title": "N"}))
    assert (status, body["title"]) == (404, "Resource Not Found")


def test_product_put_adds_or_updates(emulator, store):
    # PUT products is only in the newer SDKs, so it is called directly.
    cap = {"title": "Cap", "variants": [{"id": "cap", "title": "Cap"}]}
    created = emulator.api("PUT", "/ecommerce/stores/acme/products/cap", json=cap)
    assert created.status_code == 200 and created.json()["id"] == "cap"
    updated = emulator.api("PUT", "/ecommerce/stores/acme/products/cap", json={"vendor": "Acme"})
    assert updated.status_code == 200
    assert (updated.json()["title"], updated.json()["vendor"]) == ("Cap", "Acme")
    missing = emulator.api("PUT", "/ecommerce/stores/acme/products/bag", json={"vendor": "Acme"})
    assert missing.status_code == 400
    assert missing.json()["errors"][0]["message"] == "Required fields were not provided: title, variants"


def test_variant_crud_and_errors(ec, store):
    add_product(ec)
    added = ec.add_product_variants("acme", "boot", {"id": "boot-11", "title": "Size 11", "price": 55})
    assert (added["id"], added["price"]) == ("boot-11", 55.0)
    again = {"id": "boot-11", "title": "Again"}
    status, body = api_error(lambda: ec.add_product_variants("acme", "boot", again))
    assert (status, body["detail"]) == (400, already_exists("product variant"))

    upserted = ec.add_product_variant("acme", "boot", "boot-12", {"id": "boot-12", "title": "Size 12"})
    assert upserted["title"] == "Size 12"
    upserted = ec.add_product_variant("acme", "boot", "boot-12", {"inventory_quantity": 7})
    assert (upserted["title"], upserted["inventory_quantity"]) == ("Size 12", 7)

    patched = ec.update_product_variant("acme", "boot", "boot-9", {"sku": "B-9"})
    assert patched["sku"] == "B-9" and patched["title"] == "Size 9"
    status, _ = api_error(lambda: ec.update_product_variant("acme", "boot", "boot-99", {"sku": "x"}))
    assert status == 404

    assert ec.get_product_variants("acme", "boot")["total_items"] == 4
    assert ec.get_product_variant("acme", "boot", "boot-11")["title"] == "Size 11"
    ec.delete_product_variant("acme", "boot", "boot-11")
    assert ec.get_product_variants("acme", "boot")["total_items"] == 3


# ------------------------------------------------------------------------------------------------
# orders
# ------------------------------------------------------------------------------------------------


def test_order_creates_an_unknown_customer_as_transactional(mc, ec, list_id, store):
    add_product(ec)
    order = ec.add_store_order(
        "acme",
        order_body(
            "o1",
            50,
            {"id": "c1", "email_address": "eve.park@brightmail.co", "first_name": "Eve"},
            financial_status="paid",
            fulfillment_status="shipped",
            campaign_id="abc123def0",
            processed_at_foreign="2024-05-01T12:00:00+00:00",
            promos=[{"code": "SPRING", "amount_discounted": 5, "type": "fixed"}],
            shipping_address={"name": "Eve Park", "city": "Oslo"},
        ),
    )
    assert order["store_id"] == "acme"
    assert (order["financial_status"], order["fulfillment_status"]) == ("paid", "shipped")
    assert order["campaign_id"] == "abc123def0"
    assert order["promos"] == [{"code": "SPRING", "amount_discounted": 5.0, "type": "fixed"}]
    assert order["shipping_address"]["city"] == "Oslo"
    (line,) = order["lines"]
    assert (line["product_title"], line["product_variant_title"]) == ("Trail boot", "Size 9")
    assert line["image_url"] == "https://cdn.acme-outfitters.com/boot.jpg"
    assert order["customer"]["id"] == "c1"
    assert (order["customer"]["orders_count"], order["customer"]["total_spent"]) == (1, 50.0)
    customer = ec.get_store_customer("acme", "c1")
    assert (customer["opt_in_status"], customer["first_name"]) == (False, "Eve")
    assert member_status(mc, list_id, "eve.park@brightmail.co") == "transactional"


def test_order_references_an_existing_customer_by_id(ec, store):
    add_product(ec)
    ec.add_store_customer("acme", new_customer("c1", "eve.park@brightmail.co", True))
    order = ec.add_store_order("acme", order_body("o1", 20, {"id": "c1"}))
    assert order["customer"]["email_address"] == "eve.park@brightmail.co"
    assert ec.get_all_store_customers("acme")["total_items"] == 1


def test_order_errors(ec, store):
    add_product(ec)
    customer = {"id": "c1", "email_address": "eve.park@brightmail.co"}

    status, body = api_error(lambda: ec.add_store_order("acme", {"id": "o1"}))
    assert body["errors"] == missing("customer", "currency_code", "order_total", "lines")

    good = order_body("o1", 5, customer)
    status, body = api_error(lambda: ec.add_store_order("acme", {**good, "lines": []}))
    assert (status, body["title"], body["errors"][0]["field"]) == (400, "Invalid Resource", "lines")

    status, body = api_error(lambda: ec.add_store_order("acme", {**good, "lines": [{}]}))
    assert body["errors"] == [
        {
            "field": "lines.item:0",
            "message": "Required fields were not provided: "
            "id, product_id, product_variant_id, quantity, price",
        }
    ]

    for product_id, variant_id in (("ghost", "boot-9"), ("boot", "ghost")):
        bad = {**good, "lines": [line("o1-1", product_id, variant_id, price=5)]}
        status, body = api_error(lambda: ec.add_store_order("acme", bad))
        assert (status, body["title"], body["detail"]) == (400, "Bad Request", UNKNOWN_PRODUCT)

    status, body = api_error(lambda: ec.add_store_order("acme", order_body("o1", 5, {"id": "new-person"})))
    assert body["errors"][0]["field"] == "customer.email_address"

    long_id = {"id": "c" * 51, "email_address": "a.b@brightmail.co"}
    status, body = api_error(lambda: ec.add_store_order("acme", order_body("o1", 5, long_id)))
    assert body["errors"][0]["field"] == "customer.id"

    # nothing above was stored, not even the customer of a refused order
    assert ec.get_store_orders("acme")["total_items"] == 0
    assert ec.get_all_store_customers("acme")["total_items"] == 0

    ec.add_store_order("acme", order_body("o1", 5, customer))
    status, body = api_error(lambda: ec.add_store_order("acme", order_body("o1", 5, customer)))
    assert (status, body["title"], body["detail"]) == (400, "Bad Request", already_exists("order"))

    status, body = api_error(lambda: ec.update_order("acme", "o404", {"financial_status": "paid"}))
    assert (status, body["title"]) == (404, "Resource Not Found")

    bad_promo = {"promos": [{"code": "X", "amount_discounted": 1, "type": "bogo"}]}
    status, body = api_error(lambda: ec.update_order("acme", "o1", bad_promo))
    assert body["errors"][0]["field"] == "promos.item:0.type"


def test_order_update_get_list_delete(ec, store):
    add_product(ec)
    add_product(ec, "cap", 15)
    ec.add_store_order("acme", order_body("o1", 50, {"id": "c1", "email_address": "eve.park@brightmail.co"}))
    patched = ec.update_order(
        "acme",
        "o1",
        {
            "financial_status": "refunded",
            "cancelled_at_foreign": "2024-05-02T08:00:00+00:00",
            "lines": [line("o1-2", "cap", "cap-9", price=15, quantity=2)],
        },
    )
    assert patched["financial_status"] == "refunded"
    assert patched["cancelled_at_foreign"] == "2024-05-02T08:00:00+00:00"
    assert [line["id"] for line in patched["lines"]] == ["o1-1", "o1-2"]
    assert ec.get_order("acme", "o1")["lines"][1]["product_title"] == "Trail cap"
    assert ec.get_store_orders("acme")["total_items"] == 1
    ec.delete_order("acme", "o1")
    status, _ = api_error(lambda: ec.get_order("acme", "o1"))
    assert status == 404


def test_order_lines(ec, store):
    add_product(ec)
    add_product(ec, "cap", 15)
    ec.add_store_order("acme", order_body("o1", 50, {"id": "c1", "email_address": "eve.park@brightmail.co"}))
    added = ec.add_order_line_item("acme", "o1", {**line("o1-2", "cap", "cap-10", price=15), "discount": 2})
    assert (added["product_variant_title"], added["discount"]) == ("Size 10", 2.0)
    status, body = api_error(
        lambda: ec.add_order_line_item("acme", "o1", line("o1-2", "cap", "cap-10", price=15))
    )
    assert (status, body["detail"]) == (400, already_exists("order line"))
    unknown_variant = {"product_variant_id": "nope"}
    status, body = api_error(lambda: ec.update_order_line_item("acme", "o1", "o1-2", unknown_variant))
    assert (status, body["detail"]) == (400, UNKNOWN_PRODUCT)

    assert ec.update_order_line_item("acme", "o1", "o1-2", {"quantity": 3})["quantity"] == 3
    assert ec.get_order_line_item("acme", "o1", "o1-2")["quantity"] == 3
    assert ec.get_all_order_line_items("acme", "o1")["total_items"] == 2
    ec.delete_order_line_item("acme", "o1", "o1-1")
    assert [x["id"] for x in ec.get_all_order_line_items("acme", "o1")["lines"]] == ["o1-2"]
    status, _ = api_error(lambda: ec.update_order_line_item("acme", "o1", "o1-1", {"quantity": 1}))
    assert status == 404


def test_revenue_counts_only_paid_and_partially_refunded_orders(ec, store):
    """Rule: not cancelled, and financial_status unset, paid or partially_refunded."""
    add_product(ec)
    ec.add_store_customer("acme", new_customer("c1", "eve.park@brightmail.co", True))
    c1 = {"id": "c1"}
    ec.add_store_order("acme", order_body("paid", 100, c1, financial_status="paid"))
    ec.add_store_order("acme", order_body("unset", 10, c1))
    ec.add_store_order("acme", order_body("partial", 40, c1, financial_status="partially_refunded"))
    ec.add_store_order("acme", order_body("pending", 50, c1, financial_status="pending"))
    ec.add_store_order("acme", order_body("refunded", 30, c1, financial_status="refunded"))
    ec.add_store_order("acme", order_body("cancelled", 25, c1, financial_status="cancelled"))
    ec.add_store_order(
        "acme", order_body("voided", 20, c1, financial_status="paid", cancelled_at_foreign="2024-05-01")
    )
    customer = ec.get_store_customer("acme", "c1")
    assert (customer["orders_count"], customer["total_spent"]) == (3, 150.0)

    ec.update_order("acme", "pending", {"financial_status": "paid"})
    ec.update_order("acme", "paid", {"financial_status": "partially_refunded", "order_total": 60})
    customer = ec.get_store_customer("acme", "c1")
    assert (customer["orders_count"], customer["total_spent"]) == (4, 160.0)


def test_account_wide_orders_and_filters(ec, list_id, store):
    add_product(ec)
    ec.add_store({"id": "outlet", "list_id": list_id, "name": "Outlet", "currency_code": "USD"})
    ec.add_store_product("outlet", {"id": "boot", "title": "B", "variants": [{"id": "boot-9", "title": "9"}]})
    eve = {"id": "c1", "email_address": "eve.park@brightmail.co"}
    ec.add_store_order("acme", order_body("a1", 10, eve, campaign_id="camp000001"))
    ec.add_store_order("acme", order_body("a2", 10, {"id": "c2", "email_address": "fay.wu@brightmail.co"}))
    ec.add_store_order("outlet", order_body("b1", 10, eve))

    everything = ec.orders()
    assert everything["total_items"] == 3
    listed = sorted((o["store_id"], o["id"]) for o in everything["orders"])
    assert listed == [("acme", "a1"), ("acme", "a2"), ("outlet", "b1")]
    assert [o["id"] for o in ec.orders(campaign_id="camp000001")["orders"]] == ["a1"]
    assert sorted(o["id"] for o in ec.orders(customer_id="c1")["orders"]) == ["a1", "b1"]
    assert [o["id"] for o in ec.get_store_orders("acme", customer_id="c2")["orders"]] == ["a2"]
    page = ec.get_store_orders("acme", count=1, offset=1, fields=["orders.id", "total_items"])
    assert page == {"orders": [{"id": "a2"}], "total_items": 2}


# ------------------------------------------------------------------------------------------------
# promo rules and codes
# ------------------------------------------------------------------------------------------------

RULE = {"id": "spring", "description": "Spring sale", "amount": 0.2, "type": "percentage", "target": "total"}


def test_promo_rule_crud(ec, store):
    created = ec.add_promo_rules(
        "acme",
        {**RULE, "title": "Spring", "starts_at": "2024-03-01T00:00:00Z", "ends_at": "2024-04-01T00:00:00Z"},
    )
    assert (created["amount"], created["type"], created["target"]) == (0.2, "percentage", "total")
    assert created["enabled"] is True
    assert created["title"] == "Spring"
    patched = ec.update_promo_rule("acme", "spring", {"type": "fixed", "amount": 10, "enabled": False})
    assert (patched["type"], patched["amount"], patched["enabled"]) == ("fixed", 10.0, False)
    assert patched["description"] == "Spring sale"
    assert ec.list_promo_rules("acme")["total_items"] == 1
    assert ec.get_promo_rule("acme", "spring")["amount"] == 10.0
    ec.delete_promo_rule("acme", "spring")
    status, _ = api_error(lambda: ec.get_promo_rule("acme", "spring"))
    assert status == 404


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"id": "r" * 51}, "id"),
        ({"description": "d" * 256}, "description"),
        ({"title": "t" * 101}, "title"),
        ({"type": "bogo"}, "type"),
        ({"target": "cart"}, "target"),
        ({"amount": 1.5}, "amount"),
        ({"amount": "a lot"}, "amount"),
        ({"starts_at": "2024-04-01T00:00:00+00:00", "ends_at": "2024-03-01T00:00:00+00:00"}, "ends_at"),
        ({"starts_at": "next tuesday"}, "starts_at"),
    ],
)
def test_promo_rule_validation_names_the_field(ec, store, change, field):
    status, body = api_error(lambda: ec.add_promo_rules("acme", {**RULE, **change}))
    assert (status, body["title"]) == (400, "Invalid Resource")
    assert body["errors"][0]["field"] == field


def test_promo_rule_duplicates_and_unknown(ec, store):
    ec.add_promo_rules("acme", RULE)
    status, body = api_error(lambda: ec.add_promo_rules("acme", RULE))
    assert (status, body["title"], body["detail"]) == (400, "Bad Request", already_exists("promo rule"))
    status, _ = api_error(lambda: ec.update_promo_rule("acme", "autumn", {"amount": 0.1}))
    assert status == 404
    # a PATCH is checked against the rule it produces
    status, body = api_error(lambda: ec.update_promo_rule("acme", "spring", {"amount": 3}))
    assert body["errors"][0]["field"] == "amount"


def test_promo_codes(ec, store):
    ec.add_promo_rules("acme", RULE)
    code = {"id": "spring20", "code": "SPRING20", "redemption_url": "https://acme-outfitters.com/sale"}
    created = ec.add_promo_code("acme", "spring", code)
    assert (created["code"], created["usage_count"], created["enabled"]) == ("SPRING20", 0, True)
    status, body = api_error(lambda: ec.add_promo_code("acme", "spring", code))
    assert (status, body["detail"]) == (400, already_exists("promo code"))

    assert ec.update_promo_code("acme", "spring", "spring20", {"usage_count": 12})["usage_count"] == 12
    status, _ = api_error(lambda: ec.update_promo_code("acme", "spring", "nope", {"usage_count": 1}))
    assert status == 404
    assert ec.get_promo_codes("spring", "acme")["total_items"] == 1
    assert ec.get_promo_code("acme", "spring", "spring20")["usage_count"] == 12

    for change, field in (
        ({"code": "C" * 51}, "code"),
        ({"redemption_url": "https://x.co/" + "u" * 2000}, "redemption_url"),
        ({"usage_count": 1.5}, "usage_count"),
    ):
        bad = {**code, "id": "other", **change}
        status, body = api_error(lambda: ec.add_promo_code("acme", "spring", bad))
        assert (status, body["errors"][0]["field"]) == (400, field)
    status, body = api_error(lambda: ec.add_promo_code("acme", "spring", {"id": "x", "code": "X"}))
    assert body["errors"][0]["message"] == "Required fields were not provided: redemption_url"

    ec.delete_promo_code("acme", "spring", "spring20")
    assert ec.get_promo_codes("spring", "acme")["total_items"] == 0


def test_orders_are_stored_compactly_and_read_the_same_after_a_state_file_round_trip(ec, store, emulator):
    """A million-order store must fit in memory (commerce_records): lines are slots records that
    hold the catalogue's own id and title strings, not a copy per order, and repeated values are
    one object. The API form is unchanged, and so is the order after the --state file's JSON round
    trip (lines saved as dicts, read back as records)."""
    from mailchimp_emulator.commerce_records import Line
    from mailchimp_emulator.ecommerce import render_order
    from mailchimp_emulator.state import EmulatorState

    add_product(ec)
    add_product(ec, "cap", 15)
    customer = {"id": "c1", "email_address": "eve.park@brightmail.co"}
    promos = [{"code": "SPRING", "amount_discounted": 5, "type": "fixed"}]
    for order_id in ("o1", "o2"):
        ec.add_store_order("acme", order_body(order_id, 50, customer, financial_status="paid", promos=promos))
    ec.update_order("acme", "o1", {"lines": [line("o1-2", "cap", "cap-10", price=15, quantity=2)]})
    ec.update_order_line_item("acme", "o1", "o1-1", {"quantity": 3})
    before = ec.get_order("acme", "o1")
    assert [(x["id"], x["quantity"], x["product_title"], x["discount"]) for x in before["lines"]] == [
        ("o1-1", 3, "Trail boot", 0.0), ("o1-2", 2, "Trail cap", 0.0)]

    state = emulator.emulator.state
    doc = state.stores["acme"]
    o1, o2 = doc["orders"]["o1"], doc["orders"]["o2"]
    assert all(isinstance(x, Line) for o in (o1, o2) for x in o["lines"].values())
    boot = doc["products"]["boot"]
    assert o1["lines"]["o1-1"]["product_id"] is boot["id"]  # the catalogue's string, not a copy
    assert o2["lines"]["o2-1"]["product_variant_id"] is boot["variants"]["boot-9"]["id"]
    assert o1["customer_id"] is o2["customer_id"] is doc["customers"]["c1"]["id"]
    assert o1["financial_status"] is o2["financial_status"] and o1["order_total"] is o2["order_total"]
    assert o1["lines"]["o1-1"] == {**o1["lines"]["o1-1"]} and o1["lines"]["o1-1"].get("nope") is None

    saved = json.loads(json.dumps(state.to_json()))
    assert saved["stores"]["acme"]["orders"]["o1"]["lines"]["o1-2"]["product_variant_id"] == "cap-10"
    loaded = EmulatorState.from_json(saved).stores["acme"]
    assert isinstance(loaded["orders"]["o1"]["lines"]["o1-2"], Line)
    after = render_order("acme", loaded, loaded["orders"]["o1"])
    assert json.loads(json.dumps(after)) == before
