"""E-commerce carts: ``/ecommerce/stores/{store_id}/carts`` and their lines.

As Mailchimp documents them (shared/mailchimp-api.md §12 B):

* POST creates a cart (``id``, ``customer``, ``currency_code``, ``order_total``, ``lines``
  required; a taken id is the usual 400 "already exists"). There is no PUT: carts are POSTed new
  and PATCHed when they change (or deleted and re-POSTed, as mc-woocommerce does).
* The cart's customer is referenced by id when the store has it; otherwise it is created from the
  ``customer`` object (``email_address`` required), as ``transactional`` unless it opts in, the
  way an order creates one (inferred in §12 B, the same rule as orders).
* PATCH may change anything but the customer's identity: its ``customer`` object carries no ``id``
  or ``email_address`` (only ``opt_in_status``, names, company, address). ``lines`` sent on PATCH
  replace the cart's lines (inferred in §12 B).
* Every line must name a product and a variant the store has (the order rule).
* DELETE of an unknown cart or line is a 404; a deleted cart is gone (the abandoned-cart
  automation no longer sees it).

Carts live in the store document under ``carts``: ``id -> {..., "customer_id", "lines": {id: line}}``.
"""

from __future__ import annotations

from typing import Any, Mapping

from .collections import filter_fields, page
from .ecommerce import (
    CUSTOMER_PROPS,
    LINE,
    _apply_customer,
    _body_id_matches,
    _check_currency,
    _child,
    _resolve_line,
    _resolve_order_customer,
    _store_doc,
    add_line,
    already_exists,
    delete_line,
    render_customer,
    update_line,
)
from .routing import Call, Reply, no_content, ok, router
from .schema import Field, field_error, validate
from .state import now_iso

_NUM = Field("number")
CART_LINE = Field(
    "object",
    required=("id", "product_id", "product_variant_id", "quantity", "price"),
    props={k: v for k, v in (LINE.props or {}).items() if k != "discount"},
)
CART_LINE_UPDATE = Field("object", props={k: v for k, v in (CART_LINE.props or {}).items() if k != "id"})
CART = Field(
    "object",
    required=("id", "customer", "currency_code", "order_total", "lines"),
    props={
        "id": Field("string", id_like=True),
        "customer": Field("object", required=("id",), props=CUSTOMER_PROPS),
        "campaign_id": Field("string"),
        "checkout_url": Field("string"),
        "currency_code": Field("string"),
        "order_total": _NUM,
        "tax_total": _NUM,
        "lines": Field("array", items=CART_LINE),
    },
)
_PATCH_CUSTOMER = {k: v for k, v in CUSTOMER_PROPS.items() if k not in ("id", "email_address")}
CART_UPDATE = Field(
    "object",
    props={
        **{k: v for k, v in (CART.props or {}).items() if k not in ("id", "customer", "lines")},
        "customer": Field("object", props=_PATCH_CUSTOMER),
        "lines": Field("array", items=Field("object", props=CART_LINE_UPDATE.props)),
    },
)
_CART_TEXT = ("campaign_id", "checkout_url")


def _carts(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return doc.setdefault("carts", {})


def render_cart_line(line: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in line.items() if k not in ("discount", "image_url")} | {"_links": []}


def render_cart(store_id: str, doc: dict[str, Any], cart: dict[str, Any]) -> dict[str, Any]:
    customer = doc["customers"].get(cart["customer_id"])
    out: dict[str, Any] = {"tax_total": 0.0, **{k: "" for k in _CART_TEXT},
                           **{k: v for k, v in cart.items() if k not in ("customer_id", "lines")}}
    out["customer"] = render_customer(doc, customer) if customer else {"id": cart["customer_id"]}
    out["store_id"] = store_id
    out["lines"] = [render_cart_line(line) for line in cart["lines"].values()]
    out["_links"] = []
    return out


def _cart_lines(doc: dict[str, Any], lines: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {line["id"]: _resolve_line(doc, line) for line in lines}


@router.route("POST", "/ecommerce/stores/{store_id}/carts")
def add_cart(call: Call, store_id: str) -> Reply:
    doc = _store_doc(call.state, store_id)
    body = validate(call.json_body(), CART)
    _check_currency(body)
    carts = _carts(doc)
    if body["id"] in carts:
        raise already_exists("cart")
    lines = _cart_lines(doc, body.pop("lines"))
    customer_id = _resolve_order_customer(call.state, doc, body.pop("customer"))
    now = now_iso()
    cart = {**body, "customer_id": customer_id, "lines": lines, "created_at": now, "updated_at": now}
    carts[body["id"]] = cart
    return ok(filter_fields(call, render_cart(store_id, doc, cart)))


@router.route("PATCH", "/ecommerce/stores/{store_id}/carts/{cart_id}")
def update_cart(call: Call, store_id: str, cart_id: str) -> Reply:
    """Update any field but the customer's identity; ``lines`` sent replace the cart's lines (PATCH
    lines carry no id: they are numbered ``1..n`` in the order sent)."""
    doc = _store_doc(call.state, store_id)
    cart = _child(_carts(doc), cart_id)
    raw = call.json_body()
    _body_id_matches(raw, cart_id)
    body = validate({k: v for k, v in raw.items() if k != "id"}, CART_UPDATE, partial=True)
    _check_currency(body)
    if "lines" in body:
        numbered = [{"id": str(n), **line} for n, line in enumerate(body.pop("lines"), 1)]
        for line in numbered:
            missing = [k for k in ("product_id", "product_variant_id", "quantity", "price") if k not in line]
            if missing:
                raise field_error(f"lines.{missing[0]}", "This value should not be blank.")
        cart["lines"] = _cart_lines(doc, numbered)
    if "customer" in body:
        _apply_customer(call.state, doc, {**body.pop("customer"), "id": cart["customer_id"]})
    cart.update(body)
    cart["updated_at"] = now_iso()
    return ok(filter_fields(call, render_cart(store_id, doc, cart)))


@router.route("GET", "/ecommerce/stores/{store_id}/carts")
def list_carts(call: Call, store_id: str) -> Reply:
    doc = _store_doc(call.state, store_id)
    carts = [render_cart(store_id, doc, c) for c in _carts(doc).values()]
    return ok(page(call, carts, "carts", {"store_id": store_id}))


@router.route("GET", "/ecommerce/stores/{store_id}/carts/{cart_id}")
def get_cart(call: Call, store_id: str, cart_id: str) -> Reply:
    doc = _store_doc(call.state, store_id)
    return ok(filter_fields(call, render_cart(store_id, doc, _child(_carts(doc), cart_id))))


@router.route("DELETE", "/ecommerce/stores/{store_id}/carts/{cart_id}")
def delete_cart(call: Call, store_id: str, cart_id: str) -> Reply:
    doc = _store_doc(call.state, store_id)
    _child(_carts(doc), cart_id)
    del _carts(doc)[cart_id]
    return no_content()


def _cart(call: Call, store_id: str, cart_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    doc = _store_doc(call.state, store_id)
    return doc, _child(_carts(doc), cart_id)


@router.route("POST", "/ecommerce/stores/{store_id}/carts/{cart_id}/lines")
def add_cart_line(call: Call, store_id: str, cart_id: str) -> Reply:
    doc, cart = _cart(call, store_id, cart_id)
    line = add_line(call, doc, cart, CART_LINE, "cart line")
    cart["updated_at"] = now_iso()
    return ok(filter_fields(call, render_cart_line(line)))


@router.route("PATCH", "/ecommerce/stores/{store_id}/carts/{cart_id}/lines/{line_id}")
def update_cart_line(call: Call, store_id: str, cart_id: str, line_id: str) -> Reply:
    doc, cart = _cart(call, store_id, cart_id)
    line = update_line(call, doc, cart, line_id, CART_LINE_UPDATE, drop_id=True)
    cart["updated_at"] = now_iso()
    return ok(filter_fields(call, render_cart_line(line)))


@router.route("GET", "/ecommerce/stores/{store_id}/carts/{cart_id}/lines")
def list_cart_lines(call: Call, store_id: str, cart_id: str) -> Reply:
    _, cart = _cart(call, store_id, cart_id)
    items = [render_cart_line(line) for line in cart["lines"].values()]
    return ok(page(call, items, "lines", {"store_id": store_id, "cart_id": cart_id}))


@router.route("GET", "/ecommerce/stores/{store_id}/carts/{cart_id}/lines/{line_id}")
def get_cart_line(call: Call, store_id: str, cart_id: str, line_id: str) -> Reply:
    _, cart = _cart(call, store_id, cart_id)
    return ok(filter_fields(call, render_cart_line(_child(cart["lines"], line_id))))


@router.route("DELETE", "/ecommerce/stores/{store_id}/carts/{cart_id}/lines/{line_id}")
def delete_cart_line(call: Call, store_id: str, cart_id: str, line_id: str) -> Reply:
    _, cart = _cart(call, store_id, cart_id)
    delete_line(cart, line_id)
    cart["updated_at"] = now_iso()
    return no_content()
