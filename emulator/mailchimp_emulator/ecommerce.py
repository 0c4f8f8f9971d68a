"""E-commerce: stores, customers, products and variants, orders and their lines, promo rules and codes.

The rules follow Mailchimp's documented behaviour (facts sheet §7):

* Every resource has a client-chosen ``id``; POST with an id that exists is ``400 Bad Request`` "We were
  unable to process the request. A <thing> with the provided ID already exists in the account.", and
  PATCH of an unknown id is ``404`` (the answer sync clients "heal" into a POST).
* PUT is an add-or-update for customers, variants and (newer spec) products only.
* A customer feeds the store's audience: a new email becomes a ``subscribed`` member when
  ``opt_in_status`` is true and a ``transactional`` one when false. A pre-existing contact is never
  downgraded or touched, except that ``transactional`` is upgraded to ``subscribed`` on opt-in, and
  an ``archived`` contact is brought back as ``subscribed`` by a customer with opt-in ("a contact
  can also unarchive themselves if they [...] interact with your connected online store":
  Mailchimp's archive help page; mc-magento2 #1381). Archived contacts lost their old status, so
  the opt-in decides it, as ``status_if_new`` does for a member PUT.
* Revenue (customer ``orders_count``/``total_spent`` and campaign report e-commerce totals) counts an
  order when it is not cancelled (``cancelled_at_foreign`` unset) and its ``financial_status`` is
  unset, ``paid`` or ``partially_refunded``. ``pending``, ``refunded``, ``cancelled`` and any other
  status are excluded. A partially refunded order counts at its current ``order_total``: platforms
  lower the total by the refunded amount when they update the order, so the refund reduces revenue
  by exactly what the store reports.

State layout (``state.stores``): ``store_id -> {"store": {...}, "customers": {id: {...}},
"products": {id: {..., "variants": {id: {...}}}}, "orders": {id: {...}}, "promo_rules": {id: {...,
"promo_codes": {id: {...}}}}}``. Objects are kept in their API shape; derived fields (customer
totals, line titles) are computed when rendered. A rendered object shares nested values with the
stored one (no deep copies: they were most of the cost of an order): replies are encoded at once
and never mutated.
"""

from __future__ import annotations

import math
import re
from functools import partial
from typing import Any, Iterable, Mapping

from .commerce_records import Line, compact_fields
from .collections import filter_fields, page
from .errors import ApiError, bad_request, not_found
from .members import find_member, set_member_status, subscriber_hash, upsert_member
from .routing import Call, Reply, no_content, ok, router
from .schema import Field, field_error, parse_time, validate
from .state import EmulatorState, now_iso

# ------------------------------------------------------------------------------------------------
# Request bodies (facts §7.2-7.6)
# ------------------------------------------------------------------------------------------------


def _str(**kw: Any) -> Field:
    return Field("string", **kw)


_ID = _str(id_like=True)
_ID50 = _str(id_like=True, max_length=50)
_NUM = Field("number")

_ADDRESS_TEXT = (
    "address1", "address2", "city", "province", "province_code", "postal_code", "country", "country_code",
)
ADDRESS = Field(
    "object",
    props={
        **{k: _str() for k in _ADDRESS_TEXT},
        "longitude": _NUM,
        "latitude": _NUM,
    },
)
ORDER_ADDRESS = Field(
    "object", props={**(ADDRESS.props or {}), "name": _str(), "phone": _str(), "company": _str()}
)

STORE = Field(
    "object",
    required=("id", "list_id", "name", "currency_code"),
    props={
        "id": _ID,
        "list_id": _str(),
        "name": _str(),
        "platform": _str(),
        "domain": _str(),
        "is_syncing": Field("boolean"),
        "email_address": _str(),
        "currency_code": _str(),
        "money_format": _str(),
        "primary_locale": _str(),
        "timezone": _str(),
        "phone": _str(),
        "address": ADDRESS,
    },
)
CUSTOMER_PROPS: dict[str, Field] = {
    "id": _ID50,
    "email_address": _str(),
    "opt_in_status": Field("boolean"),
    "company": _str(),
    "first_name": _str(),
    "last_name": _str(),
    "address": ADDRESS,
}
CUSTOMER = Field("object", required=("id", "email_address", "opt_in_status"), props=CUSTOMER_PROPS)
VARIANT = Field(
    "object",
    required=("id", "title"),
    props={
        "id": _ID,
        "title": _str(),
        "url": _str(),
        "sku": _str(),
        "price": _NUM,
        "inventory_quantity": Field("integer"),
        "image_url": _str(),
        "backorders": _str(),
        "visibility": _str(),
    },
)
IMAGE = Field(
    "object",
    required=("id", "url"),
    props={"id": _ID, "url": _str(), "variant_ids": Field("array", items=_ID)},
)
PRODUCT = Field(
    "object",
    required=("id", "title", "variants"),
    props={
        "id": _ID,
        "title": _str(),
        "handle": _str(),
        "url": _str(),
        "description": _str(),
        "type": _str(),
        "vendor": _str(),
        "image_url": _str(),
        "variants": Field("array", items=VARIANT),
        "images": Field("array", items=IMAGE),
        "published_at_foreign": _str(),
    },
)
LINE = Field(
    "object",
    required=("id", "product_id", "product_variant_id", "quantity", "price"),
    props={
        "id": _ID,
        "product_id": _ID,
        "product_variant_id": _ID,
        "quantity": Field("integer"),
        "price": _NUM,
        "discount": _NUM,
    },
)
ORDER_PROMO = Field(
    "object",
    required=("code", "amount_discounted", "type"),
    props={"code": _str(), "amount_discounted": _NUM, "type": _str(enum=("fixed", "percentage"))},
)
ORDER = Field(
    "object",
    required=("id", "customer", "currency_code", "order_total", "lines"),
    props={
        "id": _ID,
        "customer": Field("object", required=("id",), props=CUSTOMER_PROPS),
        "campaign_id": _str(),
        "landing_site": _str(),
        "financial_status": _str(),
        "fulfillment_status": _str(),
        "currency_code": _str(),
        "order_total": _NUM,
        "order_url": _str(),
        "discount_total": _NUM,
        "tax_total": _NUM,
        "shipping_total": _NUM,
        "tracking_code": _str(enum=("prec",)),
        "processed_at_foreign": _str(),
        "cancelled_at_foreign": _str(),
        "updated_at_foreign": _str(),
        "shipping_address": ORDER_ADDRESS,
        "billing_address": ORDER_ADDRESS,
        "promos": Field("array", items=ORDER_PROMO),
        "lines": Field("array", items=LINE),
        "outreach": Field("object", props={"id": _str()}),
        "tracking_number": _str(),
        "tracking_carrier": _str(),
        "tracking_url": _str(),
    },
)
PROMO_RULE = Field(
    "object",
    required=("id", "description", "amount", "type", "target"),
    props={
        "id": _str(id_like=True, max_length=50),
        "title": _str(max_length=100),
        "description": _str(max_length=255),
        "starts_at": _str(),
        "ends_at": _str(),
        "amount": _NUM,
        "type": _str(enum=("fixed", "percentage")),
        "target": _str(enum=("per_item", "total", "shipping")),
        "enabled": Field("boolean"),
        "created_at_foreign": _str(),
        "updated_at_foreign": _str(),
    },
)
PROMO_CODE = Field(
    "object",
    required=("id", "code", "redemption_url"),
    props={
        "id": _str(id_like=True, max_length=50),
        "code": _str(max_length=50),
        "redemption_url": _str(max_length=2000),
        "usage_count": Field("integer"),
        "enabled": Field("boolean"),
        "created_at_foreign": _str(),
        "updated_at_foreign": _str(),
    },
)


def already_exists(thing: str) -> ApiError:
    """Mailchimp's answer to a POST whose id is taken (``thing`` is e.g. "product", "order")."""
    article = "An" if thing[0] in "aeiou" else "A"
    return bad_request(
        f"We were unable to process the request. {article} {thing} with the provided ID"
        " already exists in the account."
    )


# ------------------------------------------------------------------------------------------------
# Lookups
# ------------------------------------------------------------------------------------------------


def _store_doc(state: EmulatorState, store_id: str) -> dict[str, Any]:
    doc = state.stores.get(store_id)
    if doc is None:
        raise not_found()
    return doc


def _child(container: Mapping[str, dict[str, Any]], key: str) -> dict[str, Any]:
    found = container.get(key)
    if found is None:
        raise not_found()
    return found


def _body_id_matches(body: dict[str, Any], path_id: str) -> None:
    """A body ``id`` on PUT/PATCH must name the resource of the URL (ids cannot be changed)."""
    if "id" in body and str(body["id"]) != path_id:
        message = f"The id in the body ('{body['id']}') does not match the id in the URL ('{path_id}')."
        raise field_error("id", message)


def _defaults(fields: Iterable[str], value: Any = "") -> dict[str, Any]:
    return {name: value for name in fields}


_BLANK_ADDRESSES: dict[int, dict[str, Any]] = {}
"""id(address schema) -> its blank rendering (the schemas are module constants, built once)."""


def _render_address(address: Mapping[str, Any] | None, spec: Field) -> dict[str, Any]:
    blank = _BLANK_ADDRESSES.get(id(spec))
    if blank is None:
        blank = {name: (0 if sub.kind == "number" else "") for name, sub in (spec.props or {}).items()}
        _BLANK_ADDRESSES[id(spec)] = blank
    return {**blank, **address} if address else blank.copy()


def _merge_address(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if new is None:
        return dict(old) if old else None
    return {**(old or {}), **new}


# ------------------------------------------------------------------------------------------------
# Stores
# ------------------------------------------------------------------------------------------------

_CURRENCY = re.compile(r"^[A-Za-z]{3}$")


def _check_currency(body: dict[str, Any]) -> None:
    if "currency_code" in body and not _CURRENCY.match(body["currency_code"]):
        message = "The currency_code must be a three-letter ISO 4217 code, e.g. USD."
        raise field_error("currency_code", message)
    if "currency_code" in body:
        body["currency_code"] = body["currency_code"].upper()


def _check_domain_unique(state: EmulatorState, domain: str | None, store_id: str) -> None:
    if not domain:
        return
    wanted = domain.strip().lower()
    for other_id, doc in state.stores.items():
        if other_id != store_id and (doc["store"].get("domain") or "").strip().lower() == wanted:
            raise bad_request(
                f"We were unable to process the request. A store with the domain {domain}"
                " already exists in the account."
            )


def render_store(state: EmulatorState, doc: dict[str, Any]) -> dict[str, Any]:
    store = doc["store"]
    out = {
        **_defaults(("platform", "domain", "email_address", "money_format", "primary_locale", "timezone")),
        "phone": "",
        "is_syncing": False,
        **store,
    }
    out["address"] = _render_address(store.get("address"), ADDRESS)
    out["list_is_active"] = store["list_id"] in state.lists
    out["connected_site"] = {"site_foreign_id": "", "site_script": {"url": "", "fragment": ""}}
    automation = {"is_supported": True, "id": "", "status": ""}
    out["automations"] = {"abandoned_cart": dict(automation), "abandoned_browse": dict(automation)}
    out["_links"] = []
    return out


@router.route("POST", "/ecommerce/stores")
def add_store(call: Call) -> Reply:
    body = validate(call.json_body(), STORE)
    _check_currency(body)
    state = call.state
    if body["list_id"] not in state.lists:
        message = f"The list_id '{body['list_id']}' does not match an audience in this account."
        raise field_error("list_id", message)
    if body["id"] in state.stores:
        raise already_exists("store")
    _check_domain_unique(state, body.get("domain"), body["id"])
    now = now_iso()
    store = {**body, "created_at": now, "updated_at": now}
    doc = {"store": store, "customers": {}, "products": {}, "orders": {}, "promo_rules": {}}
    state.stores[body["id"]] = doc
    return ok(filter_fields(call, render_store(state, doc)))


@router.route("GET", "/ecommerce/stores")
def list_stores(call: Call) -> Reply:
    return ok(page(call, [render_store(call.state, doc) for doc in call.state.stores.values()], "stores"))


@router.route("GET", "/ecommerce/stores/{store_id}")
def get_store(call: Call, store_id: str) -> Reply:
    return ok(filter_fields(call, render_store(call.state, _store_doc(call.state, store_id))))


@router.route("PATCH", "/ecommerce/stores/{store_id}")
def update_store(call: Call, store_id: str) -> Reply:
    doc = _store_doc(call.state, store_id)
    body = validate(call.json_body(), STORE, partial=True)
    _body_id_matches(body, store_id)
    _check_currency(body)
    store = doc["store"]
    if "list_id" in body and body["list_id"] != store["list_id"]:
        raise field_error("list_id", "The list_id for a specific store cannot change.")
    if "domain" in body:
        _check_domain_unique(call.state, body["domain"], store_id)
    if "address" in body:
        body["address"] = _merge_address(store.get("address"), body["address"])
    store.update(body)
    store["updated_at"] = now_iso()
    return ok(filter_fields(call, render_store(call.state, doc)))


@router.route("DELETE", "/ecommerce/stores/{store_id}")
def delete_store(call: Call, store_id: str) -> Reply:
    """Deleting a store deletes its customers, products, orders and promo rules with it."""
    _store_doc(call.state, store_id)
    del call.state.stores[store_id]
    return no_content()


# ------------------------------------------------------------------------------------------------
# Customers, and how they feed the store's audience
# ------------------------------------------------------------------------------------------------

REVENUE_FINANCIAL_STATUSES = frozenset({"", "paid", "partially_refunded"})


def counts_as_revenue(order: Mapping[str, Any]) -> bool:
    """The revenue rule (module docstring): not cancelled, and unset/paid/partially refunded."""
    if order.get("cancelled_at_foreign"):
        return False
    return str(order.get("financial_status") or "").strip().lower() in REVENUE_FINANCIAL_STATUSES


def _money(amount: float) -> float:
    return round(amount + 0.0, 2)


Totals = dict[str, tuple[int, float]]


class _Revenue:
    """Per store ``orders`` dict: ``customer_id -> order ids`` and each customer's running revenue.

    Not part of the state: rebuilt in one pass whenever it may be stale (another ``orders`` dict,
    or its size changed behind the handlers' back, as after loading a saved state). The order
    handlers keep it current (:func:`_order_added`, :func:`_order_recount`,
    :func:`_order_removed`), so one order's or customer's answer costs O(1), not a pass over the
    customer's orders (a 1M-order backfill renders its customer in every answer).

    The answers must be exactly those of summing the customer's revenue orders in store order
    with floats (``_money`` of that sum). Totals are kept as integer cents when every counted
    ``order_total`` is a float that is exactly a number of cents (``64.97`` is the float nearest
    6497/100), and the float sum then provably rounds to that many cents: its rounding error is
    below ``(n + 1) * 2**-53 * sum(|cents|) / 100``, kept under half a cent (``_EXACT_BOUND``). A
    customer with any other total (more decimals, huge sums) is summed over their orders as before.
    """

    __slots__ = ("orders", "size", "ids", "totals")

    def __init__(self, orders: dict[str, Any]) -> None:
        self.orders = orders
        self.size = len(orders)
        self.ids: dict[str, list[str]] = {}
        self.totals: dict[str, list[int]] = {}
        """``customer_id -> [count, cents, sum of |cents|, orders not in whole cents]``."""
        for oid, order in orders.items():
            self.ids.setdefault(order["customer_id"], []).append(oid)
            self.count(order, 1)

    def count(self, order: Mapping[str, Any], sign: int) -> None:
        """Add (``sign`` 1) or take out (-1) a revenue order's contribution to its customer."""
        if not counts_as_revenue(order):
            return
        entry = self.totals.get(order["customer_id"])
        if entry is None:
            entry = self.totals[order["customer_id"]] = [0, 0, 0, 0]
        entry[0] += sign
        cents = _whole_cents(order["order_total"])
        if cents is None:
            entry[3] += sign
        else:
            entry[1] += sign * cents
            entry[2] += sign * abs(cents)

    def of(self, doc: dict[str, Any], customer_id: str) -> tuple[int, float]:
        """``(orders_count, total_spent before _money)`` of one customer."""
        entry = self.totals.get(customer_id)
        if entry is None or entry[0] == 0:
            return 0, 0.0
        count, cents, weight, inexact = entry
        if not inexact and (count + 1) * weight < _EXACT_BOUND:
            return count, cents / 100
        orders = doc["orders"]
        spent = 0.0
        for oid in self.ids.get(customer_id, ()):  # store order, as the totals always summed
            order = orders.get(oid)
            if order is not None and order["customer_id"] == customer_id and counts_as_revenue(order):
                spent += order["order_total"]
        return count, spent


_EXACT_BOUND = 2**52
"""``(n + 1) * sum of |cents|`` below it keeps a float sum of ``n`` whole-cent totals within half a cent."""
_REVENUE: dict[int, _Revenue] = {}


def _whole_cents(amount: Any) -> int | None:
    """``amount`` as integer cents when it is the float (or int) nearest a whole number of cents.
    Negative totals are left to the summing path: only there can a sum come out as ``-0.0``."""
    if amount.__class__ is int:
        return amount * 100 if 0 <= amount < 2**40 else None
    if amount.__class__ is not float or not math.isfinite(amount) or not 0.0 <= amount < 2**40:
        return None
    cents = round(amount * 100)
    return cents if cents / 100 == amount else None


def _revenue(doc: dict[str, Any]) -> _Revenue:
    orders = doc["orders"]
    entry = _REVENUE.get(id(orders))
    if entry is None or entry.orders is not orders or entry.size != len(orders):
        if len(_REVENUE) > 64:
            _REVENUE.clear()
        entry = _REVENUE[id(orders)] = _Revenue(orders)
    return entry


def _order_added(doc: dict[str, Any], order: dict[str, Any]) -> None:
    """After ``order`` was stored as a new order of ``doc``."""
    revenue = _revenue_if_current(doc, len(doc["orders"]) - 1)
    if revenue is not None:
        revenue.ids.setdefault(order["customer_id"], []).append(order["id"])
        revenue.count(order, 1)
        revenue.size += 1


def _order_recount(doc: dict[str, Any], order: dict[str, Any], sign: int) -> None:
    """Take a stored order out of its customer's totals (``sign`` -1) before its fields change,
    and count it in again (1) after."""
    revenue = _revenue_if_current(doc, len(doc["orders"]))
    if revenue is not None:
        revenue.count(order, sign)


def _order_removed(doc: dict[str, Any], order: dict[str, Any]) -> None:
    """After ``order`` was deleted from ``doc``."""
    revenue = _revenue_if_current(doc, len(doc["orders"]) + 1)
    if revenue is not None:
        revenue.count(order, -1)
        ids = revenue.ids.get(order["customer_id"])
        if ids is not None and order["id"] in ids:
            ids.remove(order["id"])
        revenue.size -= 1


def _revenue_if_current(doc: dict[str, Any], size: int) -> _Revenue | None:
    """The store's running totals when they were current at ``size`` orders (else they are
    dropped: the next read rebuilds them)."""
    orders = doc["orders"]
    entry = _REVENUE.get(id(orders))
    if entry is None or entry.orders is not orders:
        return None
    if entry.size != size:
        del _REVENUE[id(orders)]
        return None
    return entry


def customer_totals(doc: dict[str, Any], customer_id: str | None = None) -> Totals:
    """``customer_id -> (orders_count, total_spent)`` over the store's revenue orders (one pass, so
    listing customers or orders stays linear); ``customer_id`` restricts it to one customer (from
    the running totals, O(1))."""
    totals: dict[str, tuple[int, float]] = {}
    if customer_id is not None:
        count, spent = _revenue(doc).of(doc, customer_id)
        if count:
            totals[customer_id] = (count, spent)
        return totals
    for order in doc["orders"].values():
        cid = order["customer_id"]
        if counts_as_revenue(order):
            count, spent = totals.get(cid, (0, 0.0))
            totals[cid] = (count + 1, spent + order["order_total"])
    return totals


_CUSTOMER_DEFAULTS = _defaults(("company", "first_name", "last_name"))


def render_customer(
    doc: dict[str, Any], customer: dict[str, Any], totals: Totals | None = None
) -> dict[str, Any]:
    if totals is None:
        totals = customer_totals(doc, customer["id"])
    count, spent = totals.get(customer["id"], (0, 0.0))
    out = {**_CUSTOMER_DEFAULTS, **customer}
    out["address"] = _render_address(customer.get("address"), ADDRESS)
    out["orders_count"] = count
    out["total_spent"] = _money(spent)
    out["_links"] = []
    return out


def feed_audience(state: EmulatorState, list_id: str, email: str, opt_in: bool) -> None:
    """Apply a customer's opt-in to the store's audience (rules in the module docstring)."""
    member = find_member(state, list_id, email)
    if member is None:
        status = "subscribed" if opt_in else "transactional"
        upsert_member(state, list_id, email, status_if_new=status, source="E-Commerce")
    elif opt_in and member.get("status") == "transactional":
        set_member_status(state, list_id, subscriber_hash(email), "subscribed")
    elif opt_in and member.get("status") == "archived":
        upsert_member(state, list_id, email, status_if_new="subscribed", source="E-Commerce")


def _same_email(a: str, b: str) -> bool:
    return a.strip().lower() == b.strip().lower()


def _apply_customer(state: EmulatorState, doc: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """Create or update a customer from a validated body; the audience is fed before anything is
    stored, so a rejected member (fake or forgotten email) leaves the store unchanged."""
    customers = doc["customers"]
    existing = customers.get(body["id"])
    new_email = body.get("email_address")
    if existing and new_email is not None and not _same_email(existing["email_address"], new_email):
        raise field_error("email_address", "An email address may not be changed once a customer is created.")
    email = body.get("email_address") or (existing or {}).get("email_address")
    opt_in = body.get("opt_in_status", (existing or {}).get("opt_in_status", False))
    if existing is None or body.get("opt_in_status") is True:
        feed_audience(state, doc["store"]["list_id"], email, bool(opt_in))
    now = now_iso()
    if existing is None:
        customer = {**body, "opt_in_status": bool(opt_in), "created_at": now, "updated_at": now}
        customers[body["id"]] = customer
        return customer
    if "address" in body:
        body["address"] = _merge_address(existing.get("address"), body["address"])
    existing.update((k, v) for k, v in body.items() if k != "id")  # same id: orders keep sharing its string
    existing["updated_at"] = now
    return existing


@router.route("POST", "/ecommerce/stores/{store_id}/customers")
def add_customer(call: Call, store_id: str) -> Reply:
    doc = _store_doc(call.state, store_id)
    body = validate(call.json_body(), CUSTOMER)
    if body["id"] in doc["customers"]:
        raise already_exists("customer")
    customer = _apply_customer(call.state, doc, body)
    return ok(filter_fields(call, render_customer(doc, customer)))


@router.route("PUT", "/ecommerce/stores/{store_id}/customers/{customer_id}")
def set_customer(call: Call, store_id: str, customer_id: str) -> Reply:
    """Add or update: a new customer needs ``email_address`` and ``opt_in_status``."""
    doc = _store_doc(call.state, store_id)
    raw = call.json_body()
    _body_id_matches(raw, customer_id)
    exists = customer_id in doc["customers"]
    body = validate({**raw, "id": customer_id}, CUSTOMER, partial=exists)
    customer = _apply_customer(call.state, doc, body)
    return ok(filter_fields(call, render_customer(doc, customer)))


@router.route("PATCH", "/ecommerce/stores/{store_id}/customers/{customer_id}")
def update_customer(call: Call, store_id: str, customer_id: str) -> Reply:
    doc = _store_doc(call.state, store_id)
    _child(doc["customers"], customer_id)
    raw = call.json_body()
    _body_id_matches(raw, customer_id)
    body = validate({**raw, "id": customer_id}, CUSTOMER, partial=True)
    customer = _apply_customer(call.state, doc, body)
    return ok(filter_fields(call, render_customer(doc, customer)))


@router.route("GET", "/ecommerce/stores/{store_id}/customers")
def list_customers(call: Call, store_id: str) -> Reply:
    doc = _store_doc(call.state, store_id)
    customers: Iterable[dict[str, Any]] = doc["customers"].values()
    wanted = call.params.get("email_address")
    if wanted:
        customers = [c for c in customers if _same_email(c["email_address"], wanted)]
    render = partial(render_customer, doc, totals=customer_totals(doc))
    return ok(page(call, customers, "customers", {"store_id": store_id}, render=render))


@router.route("GET", "/ecommerce/stores/{store_id}/customers/{customer_id}")
def get_customer(call: Call, store_id: str, customer_id: str) -> Reply:
    doc = _store_doc(call.state, store_id)
    return ok(filter_fields(call, render_customer(doc, _child(doc["customers"], customer_id))))


@router.route("DELETE", "/ecommerce/stores/{store_id}/customers/{customer_id}")
def delete_customer(call: Call, store_id: str, customer_id: str) -> Reply:
    """Deletes the customer only; the audience member stays, as in Mailchimp. What a deletion does
    to the customer's orders and carts is not documented ("Delete a customer from a store"); the
    emulator keeps them, still naming the deleted id, so revenue already reported stays."""
    doc = _store_doc(call.state, store_id)
    _child(doc["customers"], customer_id)
    del doc["customers"][customer_id]
    return no_content()


# ------------------------------------------------------------------------------------------------
# Products and variants
# ------------------------------------------------------------------------------------------------

_VARIANT_TEXT = ("url", "sku", "image_url", "backorders", "visibility")
_VARIANT_DEFAULTS = {**_defaults(_VARIANT_TEXT), "price": 0.0, "inventory_quantity": 0}


def render_variant(variant: dict[str, Any]) -> dict[str, Any]:
    return {**_VARIANT_DEFAULTS, **variant, "_links": []}


_PRODUCT_DEFAULTS = _defaults(("handle", "url", "description", "type", "vendor", "image_url", "published_at_foreign"))


def render_product(doc: dict[str, Any], product: dict[str, Any]) -> dict[str, Any]:
    out = {
        **_PRODUCT_DEFAULTS,
        **{k: v for k, v in product.items() if k != "variants"},
    }
    out["currency_code"] = doc["store"]["currency_code"]
    out["variants"] = [render_variant(v) for v in product["variants"].values()]
    out.setdefault("images", [])
    out["images"] = [{"variant_ids": [], **img, "_links": []} for img in out["images"]]
    out["_links"] = []
    return out


def _upsert_variants(product: dict[str, Any], variants: list[dict[str, Any]], now: str) -> None:
    """Add or update variants by id (variants not named are kept)."""
    for variant in variants:
        existing = product["variants"].get(variant["id"])
        if existing is None:
            product["variants"][variant["id"]] = {**variant, "created_at": now, "updated_at": now}
        else:
            existing.update(variant)
            existing["updated_at"] = now


def _create_product(doc: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    if not body["variants"]:
        raise field_error("variants", "At least one variant is required for each product.")
    now = now_iso()
    product = {**{k: v for k, v in body.items() if k != "variants"}, "variants": {}}
    _upsert_variants(product, body["variants"], now)
    doc["products"][body["id"]] = product
    return product


def _update_product(product: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    if "variants" in body and not body["variants"] and not product["variants"]:
        raise field_error("variants", "At least one variant is required for each product.")
    _upsert_variants(product, body.pop("variants", []), now_iso())
    product.update(body)
    return product


@router.route("POST", "/ecommerce/stores/{store_id}/products")
def add_product(call: Call, store_id: str) -> Reply:
    doc = _store_doc(call.state, store_id)
    body = validate(call.json_body(), PRODUCT)
    if body["id"] in doc["products"]:
        raise already_exists("product")
    return ok(filter_fields(call, render_product(doc, _create_product(doc, body))))


@router.route("PUT", "/ecommerce/stores/{store_id}/products/{product_id}")
def set_product(call: Call, store_id: str, product_id: str) -> Reply:
    """Add or update a product (newer spec's ``upsertStoreProduct``); variants are upserted by id."""
    doc = _store_doc(call.state, store_id)
    raw = call.json_body()
    _body_id_matches(raw, product_id)
    existing = doc["products"].get(product_id)
    body = validate({**raw, "id": product_id}, PRODUCT, partial=existing is not None)
    product = _create_product(doc, body) if existing is None else _update_product(existing, body)
    return ok(filter_fields(call, render_product(doc, product)))


@router.route("PATCH", "/ecommerce/stores/{store_id}/products/{product_id}")
def update_product(call: Call, store_id: str, product_id: str) -> Reply:
    doc = _store_doc(call.state, store_id)
    product = _child(doc["products"], product_id)
    raw = call.json_body()
    _body_id_matches(raw, product_id)
    body = validate({**raw, "id": product_id}, PRODUCT, partial=True)
    return ok(filter_fields(call, render_product(doc, _update_product(product, body))))


@router.route("GET", "/ecommerce/stores/{store_id}/products")
def list_products(call: Call, store_id: str) -> Reply:
    doc = _store_doc(call.state, store_id)
    items = [render_product(doc, p) for p in doc["products"].values()]
    return ok(page(call, items, "products", {"store_id": store_id}))


@router.route("GET", "/ecommerce/stores/{store_id}/products/{product_id}")
def get_product(call: Call, store_id: str, product_id: str) -> Reply:
    doc = _store_doc(call.state, store_id)
    return ok(filter_fields(call, render_product(doc, _child(doc["products"], product_id))))


@router.route("DELETE", "/ecommerce/stores/{store_id}/products/{product_id}")
def delete_product(call: Call, store_id: str, product_id: str) -> Reply:
    """Order lines keep the product and variant titles they were recorded with."""
    doc = _store_doc(call.state, store_id)
    _child(doc["products"], product_id)
    del doc["products"][product_id]
    return no_content()


def _product(call: Call, store_id: str, product_id: str) -> dict[str, Any]:
    return _child(_store_doc(call.state, store_id)["products"], product_id)


@router.route("POST", "/ecommerce/stores/{store_id}/products/{product_id}/variants")
def add_variant(call: Call, store_id: str, product_id: str) -> Reply:
    product = _product(call, store_id, product_id)
    body = validate(call.json_body(), VARIANT)
    if body["id"] in product["variants"]:
        raise already_exists("product variant")
    _upsert_variants(product, [body], now_iso())
    return ok(filter_fields(call, render_variant(product["variants"][body["id"]])))


@router.route("PUT", "/ecommerce/stores/{store_id}/products/{product_id}/variants/{variant_id}")
def set_variant(call: Call, store_id: str, product_id: str, variant_id: str) -> Reply:
    product = _product(call, store_id, product_id)
    raw = call.json_body()
    _body_id_matches(raw, variant_id)
    body = validate({**raw, "id": variant_id}, VARIANT, partial=variant_id in product["variants"])
    _upsert_variants(product, [body], now_iso())
    return ok(filter_fields(call, render_variant(product["variants"][variant_id])))


@router.route("PATCH", "/ecommerce/stores/{store_id}/products/{product_id}/variants/{variant_id}")
def update_variant(call: Call, store_id: str, product_id: str, variant_id: str) -> Reply:
    product = _product(call, store_id, product_id)
    _child(product["variants"], variant_id)
    raw = call.json_body()
    _body_id_matches(raw, variant_id)
    body = validate({**raw, "id": variant_id}, VARIANT, partial=True)
    _upsert_variants(product, [body], now_iso())
    return ok(filter_fields(call, render_variant(product["variants"][variant_id])))


@router.route("GET", "/ecommerce/stores/{store_id}/products/{product_id}/variants")
def list_variants(call: Call, store_id: str, product_id: str) -> Reply:
    product = _product(call, store_id, product_id)
    items = [render_variant(v) for v in product["variants"].values()]
    return ok(page(call, items, "variants", {"store_id": store_id, "product_id": product_id}))


@router.route("GET", "/ecommerce/stores/{store_id}/products/{product_id}/variants/{variant_id}")
def get_variant(call: Call, store_id: str, product_id: str, variant_id: str) -> Reply:
    product = _product(call, store_id, product_id)
    return ok(filter_fields(call, render_variant(_child(product["variants"], variant_id))))


@router.route("DELETE", "/ecommerce/stores/{store_id}/products/{product_id}/variants/{variant_id}")
def delete_variant(call: Call, store_id: str, product_id: str, variant_id: str) -> Reply:
    product = _product(call, store_id, product_id)
    _child(product["variants"], variant_id)
    del product["variants"][variant_id]
    return no_content()


# ------------------------------------------------------------------------------------------------
# Orders and order lines
# ------------------------------------------------------------------------------------------------

UNKNOWN_PRODUCT = "A product with the provided ID does not exist in the account for this list."
_ORDER_TEXT = (
    "campaign_id", "landing_site", "financial_status", "fulfillment_status", "order_url", "tracking_code",
    "processed_at_foreign", "cancelled_at_foreign", "updated_at_foreign",
    "tracking_number", "tracking_carrier", "tracking_url",
)


def _resolve_line(doc: dict[str, Any], line: Mapping[str, Any]) -> Line:
    """Check the line's product and variant exist and record their titles and image on the line."""
    product = doc["products"].get(line["product_id"])
    variant = product["variants"].get(line["product_variant_id"]) if product else None
    if product is None or variant is None:
        raise bad_request(UNKNOWN_PRODUCT)
    return Line.resolved(line, product, variant)  # a compact record holding the catalogue's own strings


def _resolve_order_customer(state: EmulatorState, doc: dict[str, Any], customer: dict[str, Any]) -> str:
    """Reference an existing customer by id (updating any other fields sent), or create it.

    A new customer needs an ``email_address``; its ``opt_in_status`` defaults to false, so an unknown
    email joins the audience as ``transactional``.
    """
    if customer["id"] in doc["customers"]:
        _apply_customer(state, doc, customer)
    else:
        if not customer.get("email_address"):
            message = "Required fields were not provided: email_address (the customer is new)."
            raise field_error("customer.email_address", message)
        _apply_customer(state, doc, {"opt_in_status": False, **customer})
    return customer["id"]


_ORDER_DEFAULTS = {**_defaults(_ORDER_TEXT), "discount_total": 0.0, "tax_total": 0.0, "shipping_total": 0.0}


def render_line(line: Mapping[str, Any]) -> dict[str, Any]:
    out = line.to_dict() if isinstance(line, Line) else dict(line)
    out["_links"] = []
    return out


def render_order(
    store_id: str, doc: dict[str, Any], order: dict[str, Any], totals: Totals | None = None
) -> dict[str, Any]:
    customer = doc["customers"].get(order["customer_id"])
    out = {
        **_ORDER_DEFAULTS,
        "promos": [],
        "outreach": {"id": "", "name": "", "type": "", "published_time": ""},
        **{k: v for k, v in order.items() if k != "customer_id" and k != "lines"},
    }
    out["customer"] = render_customer(doc, customer, totals) if customer else {"id": order["customer_id"]}
    out["store_id"] = store_id
    out["lines"] = [render_line(line) for line in order["lines"].values()]
    for key in ("shipping_address", "billing_address"):
        out[key] = _render_address(order.get(key), ORDER_ADDRESS)
    out["_links"] = []
    return out


def _order_lines(doc: dict[str, Any], lines: list[dict[str, Any]]) -> dict[str, Line]:
    return {line["id"]: _resolve_line(doc, line) for line in lines}


@router.route("POST", "/ecommerce/stores/{store_id}/orders")
def add_order(call: Call, store_id: str) -> Reply:
    doc = _store_doc(call.state, store_id)
    body = validate(call.json_body(), ORDER)
    _check_currency(body)
    if not body["lines"]:
        raise field_error("lines", "At least one order line is required.")
    if body["id"] in doc["orders"]:
        raise already_exists("order")
    lines = _order_lines(doc, body.pop("lines"))
    customer_id = _resolve_order_customer(call.state, doc, body.pop("customer"))
    customer_id = doc["customers"].get(customer_id, {}).get("id", customer_id)  # the customer's own string
    order = {**compact_fields(body), "customer_id": customer_id, "lines": lines}
    doc["orders"][body["id"]] = order
    _order_added(doc, order)
    return ok(filter_fields(call, render_order(store_id, doc, order)))


@router.route("PATCH", "/ecommerce/stores/{store_id}/orders/{order_id}")
def update_order(call: Call, store_id: str, order_id: str) -> Reply:
    """Update any field; ``lines`` sent are added or updated by id (others are kept)."""
    doc = _store_doc(call.state, store_id)
    order = _child(doc["orders"], order_id)
    raw = call.json_body()
    _body_id_matches(raw, order_id)
    body = validate(raw, ORDER, partial=True)
    _check_currency(body)
    lines = _order_lines(doc, body.pop("lines", []))
    if "customer" in body:
        # The documented PATCH body's ``customer`` (spec: ECommerceCustomer4) has no ``id`` and no
        # ``email_address``: an order cannot be moved to another customer. Sent anyway, they are
        # ignored like any unknown field (as for carts); the other fields update the order's own
        # customer, when the store still has it.
        fields = {k: v for k, v in body.pop("customer").items() if k not in ("id", "email_address")}
        if fields and order["customer_id"] in doc["customers"]:
            _apply_customer(call.state, doc, {**fields, "id": order["customer_id"]})
    for key in ("shipping_address", "billing_address"):
        if key in body:
            body[key] = _merge_address(order.get(key), body[key])
    _order_recount(doc, order, -1)  # its total or status may change what it counts for
    order.update(compact_fields(body))
    _order_recount(doc, order, 1)
    for line_id, line in lines.items():
        order["lines"][line_id] = Line({**order["lines"].get(line_id, {}), **line})
    return ok(filter_fields(call, render_order(store_id, doc, order)))


def _order_filter(call: Call) -> Any:
    wanted = {k: call.params[k] for k in ("customer_id", "campaign_id") if call.params.get(k)}
    outreach_id = call.params.get("outreach_id")
    has_outreach = call.params.get("has_outreach")

    def keep(order: dict[str, Any]) -> bool:
        if "customer_id" in wanted and order["customer_id"] != wanted["customer_id"]:
            return False
        if "campaign_id" in wanted and order.get("campaign_id") != wanted["campaign_id"]:
            return False
        oid = (order.get("outreach") or {}).get("id", "")
        if outreach_id and oid != outreach_id:
            return False
        if has_outreach is not None and call.param_bool("has_outreach") != bool(oid):
            return False
        return True

    return keep


@router.route("GET", "/ecommerce/stores/{store_id}/orders")
def list_orders(call: Call, store_id: str) -> Reply:
    doc = _store_doc(call.state, store_id)
    keep = _order_filter(call)
    orders = [o for o in doc["orders"].values() if keep(o)]
    render = partial(render_order, store_id, doc, totals=customer_totals(doc))
    return ok(page(call, orders, "orders", {"store_id": store_id}, render=render))


@router.route("GET", "/ecommerce/orders")
def list_account_orders(call: Call) -> Reply:
    """Every store's orders, each carrying its ``store_id``."""
    keep = _order_filter(call)
    stores = call.state.stores
    totals = {store_id: customer_totals(doc) for store_id, doc in stores.items()}
    orders: list[Any] = [(sid, o) for sid, doc in stores.items() for o in doc["orders"].values() if keep(o)]

    def render(item: tuple[str, dict[str, Any]]) -> dict[str, Any]:
        store_id, order = item
        return render_order(store_id, stores[store_id], order, totals[store_id])

    return ok(page(call, orders, "orders", render=render))


@router.route("GET", "/ecommerce/stores/{store_id}/orders/{order_id}")
def get_order(call: Call, store_id: str, order_id: str) -> Reply:
    doc = _store_doc(call.state, store_id)
    return ok(filter_fields(call, render_order(store_id, doc, _child(doc["orders"], order_id))))


@router.route("DELETE", "/ecommerce/stores/{store_id}/orders/{order_id}")
def delete_order(call: Call, store_id: str, order_id: str) -> Reply:
    doc = _store_doc(call.state, store_id)
    order = _child(doc["orders"], order_id)
    del doc["orders"][order_id]
    _order_removed(doc, order)
    return no_content()


def _order(call: Call, store_id: str, order_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    doc = _store_doc(call.state, store_id)
    return doc, _child(doc["orders"], order_id)


def add_line(call: Call, doc: dict[str, Any], parent: dict[str, Any], schema: Field, what: str) -> Line:
    """POST a line to an order or cart (``parent["lines"]``): a taken id is "already exists", and
    the line must name a product and variant the store has. Returns the stored line."""
    body = validate(call.json_body(), schema)
    if body["id"] in parent["lines"]:
        raise already_exists(what)
    parent["lines"][body["id"]] = _resolve_line(doc, body)
    return parent["lines"][body["id"]]


def update_line(
    call: Call, doc: dict[str, Any], parent: dict[str, Any], line_id: str, schema: Field, *, drop_id: bool = False
) -> Line:
    """PATCH a line of an order or cart: a body ``id`` must be the URL's (``drop_id``: then it is
    not validated against ``schema``); the merged line is resolved again. Returns the stored line."""
    line = _child(parent["lines"], line_id)
    raw = call.json_body()
    _body_id_matches(raw, line_id)
    body = validate({k: v for k, v in raw.items() if k != "id"} if drop_id else raw, schema, partial=True)
    parent["lines"][line_id] = _resolve_line(doc, {**line, **body})
    return parent["lines"][line_id]


def delete_line(parent: dict[str, Any], line_id: str) -> None:
    """DELETE a line of an order or cart (an unknown line is a 404)."""
    _child(parent["lines"], line_id)
    del parent["lines"][line_id]


@router.route("POST", "/ecommerce/stores/{store_id}/orders/{order_id}/lines")
def add_order_line(call: Call, store_id: str, order_id: str) -> Reply:
    doc, order = _order(call, store_id, order_id)
    return ok(filter_fields(call, render_line(add_line(call, doc, order, LINE, "order line"))))


@router.route("PATCH", "/ecommerce/stores/{store_id}/orders/{order_id}/lines/{line_id}")
def update_order_line(call: Call, store_id: str, order_id: str, line_id: str) -> Reply:
    doc, order = _order(call, store_id, order_id)
    return ok(filter_fields(call, render_line(update_line(call, doc, order, line_id, LINE))))


@router.route("GET", "/ecommerce/stores/{store_id}/orders/{order_id}/lines")
def list_order_lines(call: Call, store_id: str, order_id: str) -> Reply:
    _, order = _order(call, store_id, order_id)
    items = [render_line(line) for line in order["lines"].values()]
    return ok(page(call, items, "lines", {"store_id": store_id, "order_id": order_id}))


@router.route("GET", "/ecommerce/stores/{store_id}/orders/{order_id}/lines/{line_id}")
def get_order_line(call: Call, store_id: str, order_id: str, line_id: str) -> Reply:
    _, order = _order(call, store_id, order_id)
    return ok(filter_fields(call, render_line(_child(order["lines"], line_id))))


@router.route("DELETE", "/ecommerce/stores/{store_id}/orders/{order_id}/lines/{line_id}")
def delete_order_line(call: Call, store_id: str, order_id: str, line_id: str) -> Reply:
    _, order = _order(call, store_id, order_id)
    delete_line(order, line_id)
    return no_content()


def campaign_revenue(state: EmulatorState, campaign_id: str) -> dict[str, Any]:
    """E-commerce totals attributed to a campaign (orders carrying its ``campaign_id``), for reports.

    ``total_orders`` counts every attributed order; spend and revenue use the revenue rule.
    """
    every_order = (o for doc in state.stores.values() for o in doc["orders"].values())
    orders = [o for o in every_order if o.get("campaign_id") == campaign_id]
    revenue = _money(sum(o["order_total"] for o in orders if counts_as_revenue(o)))
    currencies = {o.get("currency_code", "") for o in orders}
    return {
        "total_orders": len(orders),
        "total_spent": revenue,
        "total_revenue": revenue,
        "currency_code": currencies.pop() if len(currencies) == 1 else "",
    }


# ------------------------------------------------------------------------------------------------
# Promo rules and promo codes
# ------------------------------------------------------------------------------------------------


def _check_promo_rule(rule: dict[str, Any]) -> None:
    """Cross-field rules: percentage amounts are fractions, and a rule must end after it starts."""
    if rule.get("type") == "percentage" and not 0.0 <= float(rule.get("amount", 0.0)) <= 1.0:
        message = "If 'type' is 'percentage', amount must be a decimal value between 0.0 and 1.0, inclusive."
        raise field_error("amount", message)
    if rule.get("starts_at") and rule.get("ends_at"):
        if parse_time(rule["ends_at"], "ends_at") <= parse_time(rule["starts_at"], "starts_at"):
            raise field_error("ends_at", "The ends_at date must be after the starts_at date.")
    else:
        for key in ("starts_at", "ends_at"):
            if rule.get(key):
                parse_time(rule[key], key)


def render_promo_rule(rule: dict[str, Any]) -> dict[str, Any]:
    out = {
        **_defaults(("title", "starts_at", "ends_at", "created_at_foreign", "updated_at_foreign")),
        "enabled": True,
        **{k: v for k, v in rule.items() if k != "promo_codes"},
    }
    out["_links"] = []
    return out


def render_promo_code(code: dict[str, Any]) -> dict[str, Any]:
    return {
        **_defaults(("created_at_foreign", "updated_at_foreign")),
        "usage_count": 0,
        "enabled": True,
        **code,
        "_links": [],
    }


@router.route("POST", "/ecommerce/stores/{store_id}/promo-rules")
def add_promo_rule(call: Call, store_id: str) -> Reply:
    doc = _store_doc(call.state, store_id)
    body = validate(call.json_body(), PROMO_RULE)
    if body["id"] in doc["promo_rules"]:
        raise already_exists("promo rule")
    _check_promo_rule(body)
    rule = {**body, "promo_codes": {}}
    doc["promo_rules"][body["id"]] = rule
    return ok(filter_fields(call, render_promo_rule(rule)))


@router.route("PATCH", "/ecommerce/stores/{store_id}/promo-rules/{promo_rule_id}")
def update_promo_rule(call: Call, store_id: str, promo_rule_id: str) -> Reply:
    doc = _store_doc(call.state, store_id)
    rule = _child(doc["promo_rules"], promo_rule_id)
    raw = call.json_body()
    _body_id_matches(raw, promo_rule_id)
    body = validate(raw, PROMO_RULE, partial=True)
    _check_promo_rule({**rule, **body})
    rule.update(body)
    return ok(filter_fields(call, render_promo_rule(rule)))


@router.route("GET", "/ecommerce/stores/{store_id}/promo-rules")
def list_promo_rules(call: Call, store_id: str) -> Reply:
    doc = _store_doc(call.state, store_id)
    items = [render_promo_rule(r) for r in doc["promo_rules"].values()]
    return ok(page(call, items, "promo_rules", {"store_id": store_id}))


@router.route("GET", "/ecommerce/stores/{store_id}/promo-rules/{promo_rule_id}")
def get_promo_rule(call: Call, store_id: str, promo_rule_id: str) -> Reply:
    doc = _store_doc(call.state, store_id)
    return ok(filter_fields(call, render_promo_rule(_child(doc["promo_rules"], promo_rule_id))))


@router.route("DELETE", "/ecommerce/stores/{store_id}/promo-rules/{promo_rule_id}")
def delete_promo_rule(call: Call, store_id: str, promo_rule_id: str) -> Reply:
    """Deletes the rule and its promo codes."""
    doc = _store_doc(call.state, store_id)
    _child(doc["promo_rules"], promo_rule_id)
    del doc["promo_rules"][promo_rule_id]
    return no_content()


_PROMO_CODE = "/ecommerce/stores/{store_id}/promo-rules/{promo_rule_id}/promo-codes/{promo_code_id}"


def _promo_rule(call: Call, store_id: str, promo_rule_id: str) -> dict[str, Any]:
    return _child(_store_doc(call.state, store_id)["promo_rules"], promo_rule_id)


@router.route("POST", "/ecommerce/stores/{store_id}/promo-rules/{promo_rule_id}/promo-codes")
def add_promo_code(call: Call, store_id: str, promo_rule_id: str) -> Reply:
    rule = _promo_rule(call, store_id, promo_rule_id)
    body = validate(call.json_body(), PROMO_CODE)
    if body["id"] in rule["promo_codes"]:
        raise already_exists("promo code")
    rule["promo_codes"][body["id"]] = body
    return ok(filter_fields(call, render_promo_code(body)))


@router.route("PATCH", _PROMO_CODE)
def update_promo_code(call: Call, store_id: str, promo_rule_id: str, promo_code_id: str) -> Reply:
    rule = _promo_rule(call, store_id, promo_rule_id)
    code = _child(rule["promo_codes"], promo_code_id)
    raw = call.json_body()
    _body_id_matches(raw, promo_code_id)
    code.update(validate(raw, PROMO_CODE, partial=True))
    return ok(filter_fields(call, render_promo_code(code)))


@router.route("GET", "/ecommerce/stores/{store_id}/promo-rules/{promo_rule_id}/promo-codes")
def list_promo_codes(call: Call, store_id: str, promo_rule_id: str) -> Reply:
    rule = _promo_rule(call, store_id, promo_rule_id)
    items = [render_promo_code(c) for c in rule["promo_codes"].values()]
    return ok(page(call, items, "promo_codes", {"store_id": store_id}))


@router.route("GET", _PROMO_CODE)
def get_promo_code(call: Call, store_id: str, promo_rule_id: str, promo_code_id: str) -> Reply:
    rule = _promo_rule(call, store_id, promo_rule_id)
    return ok(filter_fields(call, render_promo_code(_child(rule["promo_codes"], promo_code_id))))


@router.route("DELETE", _PROMO_CODE)
def delete_promo_code(call: Call, store_id: str, promo_rule_id: str, promo_code_id: str) -> Reply:
    rule = _promo_rule(call, store_id, promo_rule_id)
    _child(rule["promo_codes"], promo_code_id)
    del rule["promo_codes"][promo_code_id]
    return no_content()

