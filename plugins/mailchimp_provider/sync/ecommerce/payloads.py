"""Warehouse rows -> Mailchimp E-commerce request bodies, validated before any request is made.

Every builder is a pure function: same rows in, same dict out (keys sorted by the hashing code,
``None`` values left out because Mailchimp answers "Schema describes string, NULL found instead").
A row that Mailchimp would reject, or that would make the store's numbers wrong, raises
``RejectedRecord`` naming the record and the field, so the sync can skip it with a readable reason
and go on with the rest of the run (never a silent drop, never a wasted request).

Limits come from the spec (v3.0.55): ids, codes and customer ids at most 50 characters, promo
rule description 255, title 100 bytes, redemption URL 2000; currency codes are ISO 4217; a
percentage promo rule's amount is a fraction between 0 and 1.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, Iterable, Mapping

from mailchimp_provider.warehouse.tables import to_utc

MAX_ID = 50
MAX_PROMO_DESCRIPTION = 255
MAX_PROMO_TITLE_BYTES = 100
MAX_REDEMPTION_URL = 2000

# Active ISO 4217 currency codes usable for money (no funds codes for metals, tests or "no currency").
ISO_4217: frozenset[str] = frozenset(
    """AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD BTN
    BWP BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUC CUP CVE CZK DJF DKK DOP DZD EGP ERN
    ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD
    JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU
    MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD
    RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY
    TTD TWD TZS UAH UGX USD USN UYI UYU UYW UZS VED VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW
    ZWG ZWL""".split()
)

PROMO_TYPES = ("fixed", "percentage")
PROMO_TARGETS = ("per_item", "total", "shipping")

# Warehouse status -> Mailchimp status. Mailchimp's values are free strings that drive order
# notifications and revenue: only ``paid`` (and the refund states) count; ``pending`` and
# ``cancelled`` must stay recognisable, so unknown financial statuses are rejected, not guessed.
DEFAULT_FINANCIAL_STATUS: dict[str, str] = {
    "paid": "paid",
    "pending": "pending",
    "authorized": "pending",
    "unpaid": "pending",
    "partially_paid": "pending",
    "refunded": "refunded",
    "partially_refunded": "partially_refunded",
    "cancelled": "cancelled",
    "canceled": "cancelled",
    "voided": "cancelled",
}
# Fulfillment statuses only drive shipping notifications; unknown values pass through normalised.
DEFAULT_FULFILLMENT_STATUS: dict[str, str] = {
    "shipped": "shipped",
    "fulfilled": "shipped",
    "partially_shipped": "partially_shipped",
    "partially_fulfilled": "partially_shipped",
    "partial": "partially_shipped",
    "pending": "pending",
    "unfulfilled": "pending",
    "cancelled": "cancelled",
    "canceled": "cancelled",
    "refunded": "refunded",
    "returned": "refunded",
}

_EMAIL = re.compile(r"^[^@\s,;<>]+@[^@\s,;<>]+\.[A-Za-z]{2,}$")


class RejectedRecord(ValueError):
    """A source row that must not be sent: ``field`` names what is wrong, ``reason`` says why."""

    def __init__(self, entity: str, record_id: str | None, field: str, reason: str) -> None:
        self.entity = entity
        self.record_id = record_id or ""
        self.field = field
        self.reason = reason
        super().__init__(f"{entity} {self.record_id!r}: {field}: {reason}")

    @property
    def message(self) -> str:
        """The human detail: ``<field>: <reason>`` (e.g. ``order_lines[3].quantity: negative quantity -2``)."""
        return f"{self.field}: {self.reason}"

    @property
    def field_kind(self) -> str:
        """The field without per-row indexes (``order_lines.quantity``): groups reasons across records."""
        return re.sub(r"\[[^\]]*\]", "", self.field)


@dataclass(frozen=True)
class StatusMaps:
    """Warehouse -> Mailchimp order status vocabularies (extended from the YAML config)."""

    financial: Mapping[str, str]
    fulfillment: Mapping[str, str]

    @classmethod
    def default(cls) -> "StatusMaps":
        return cls(dict(DEFAULT_FINANCIAL_STATUS), dict(DEFAULT_FULFILLMENT_STATUS))

    def extended(self, financial: Mapping[str, str] | None, fulfillment: Mapping[str, str] | None) -> "StatusMaps":
        return StatusMaps(
            {**self.financial, **{_status_key(k): v for k, v in (financial or {}).items()}},
            {**self.fulfillment, **{_status_key(k): v for k, v in (fulfillment or {}).items()}},
        )


# -- value helpers ------------------------------------------------------------------------------
class _Checker:
    """Field readers for one record that raise ``RejectedRecord`` with the record's id."""

    def __init__(self, entity: str, record_id: str | None) -> None:
        self.entity = entity
        self.record_id = record_id

    def reject(self, field: str, reason: str) -> RejectedRecord:
        return RejectedRecord(self.entity, self.record_id, field, reason)

    def ident(self, value: Any, field: str) -> str:
        text = text_or_none(value)
        if text is None:
            raise self.reject(field, "required id is missing")
        if len(text) > MAX_ID:
            raise self.reject(field, f"id is {len(text)} characters long; Mailchimp allows at most {MAX_ID}")
        return text

    def required_text(self, value: Any, field: str, *, max_len: int | None = None) -> str:
        text = text_or_none(value)
        if text is None:
            raise self.reject(field, "required field is missing")
        if max_len is not None and len(text) > max_len:
            raise self.reject(field, f"{len(text)} characters long; Mailchimp allows at most {max_len}")
        return text

    def money(self, value: Any, field: str, *, required: bool = False, minimum: float | None = 0.0) -> float | None:
        kind = type(value)
        if kind is float or kind is int:
            number = float(value)
            if not math.isfinite(number):
                raise self.reject(field, f"not a finite number: {value!r}")
        elif value is None or (kind is str and not value.strip()):
            if required:
                raise self.reject(field, "required amount is missing")
            return None
        else:
            try:
                decimal = value if kind is Decimal else Decimal(str(value).strip())
            except InvalidOperation:
                raise self.reject(field, f"not a number: {value!r}") from None
            if not decimal.is_finite():
                raise self.reject(field, f"not a finite number: {value!r}")
            number = float(decimal)
        if minimum is not None and number < minimum:
            raise self.reject(field, f"must not be negative, got {value}")
        return number

    def integer(self, value: Any, field: str, *, minimum: int | None = None) -> int | None:
        kind = type(value)
        if kind is int:
            result = value
        elif value is None or (kind is str and not value.strip()):
            return None
        else:
            try:
                number = Decimal(str(value).strip())
            except InvalidOperation:
                raise self.reject(field, f"not an integer: {value!r}") from None
            if not number.is_finite() or number != number.to_integral_value():
                raise self.reject(field, f"not an integer: {value!r}")
            result = int(number)
        if minimum is not None and result < minimum:
            raise self.reject(field, f"must be at least {minimum}, got {result}")
        return result

    def timestamp(self, value: Any, field: str) -> str | None:
        if value is None:
            return None
        try:
            return iso_timestamp(value)
        except (TypeError, ValueError) as exc:
            raise self.reject(field, str(exc)) from None

    def currency(self, value: Any, field: str) -> str:
        code = text_or_none(value)
        if code is None:
            raise self.reject(field, "required currency code is missing")
        if code.upper() not in ISO_4217:
            raise self.reject(field, f"unknown ISO 4217 currency code {code!r}")
        return code.upper()

    def choice(self, value: Any, field: str, allowed: Iterable[str]) -> str:
        text = (text_or_none(value) or "").lower()
        allowed = tuple(allowed)
        if text not in allowed:
            shown = repr(value) if value is not None else "missing"
            raise self.reject(field, f"{shown} is not one of {', '.join(allowed)}")
        return text


def text_or_none(value: Any) -> str | None:
    """Stripped text, or None for NULL / empty; numbers from the database become their text."""
    if type(value) is str:
        return value.strip() or None
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


def as_bool(value: Any) -> bool:
    """Booleans as SQLite (0/1) and CSV-ish sources ("true", "yes") give them."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "t", "yes", "y")
    return bool(value)


def iso(moment: datetime) -> str:
    """Mailchimp's timestamp form: UTC, second precision, explicit offset."""
    return moment.replace(microsecond=0).isoformat()


def iso_timestamp(value: Any) -> str | None:
    """A warehouse timestamp (aware or naive-UTC datetime, or ISO text as SQLite stores it) in
    Mailchimp's form; ``ValueError`` for text that is not a timestamp."""
    if type(value) is datetime and value.tzinfo is timezone.utc:
        return value.replace(microsecond=0).isoformat()
    if type(value) is str:
        text = value.strip()
        if not text:
            return None
        moment = datetime.fromisoformat(text)  # ValueError names the bad text
        if moment.tzinfo is None:
            return moment.replace(microsecond=0, tzinfo=timezone.utc).isoformat()
        return iso(moment.astimezone(timezone.utc))
    moment = to_utc(value)
    return iso(moment) if moment is not None else None


def valid_email(value: Any) -> str | None:
    """The stripped email if it looks deliverable enough for Mailchimp, else None."""
    text = text_or_none(value)
    return text if text is not None and _EMAIL.match(text) else None


_SEPARATORS = re.compile(r"[\s-]+")


@lru_cache(maxsize=256)
def _status_key_text(text: str) -> str:
    return _SEPARATORS.sub("_", text.strip().lower())


def _status_key(value: Any) -> str:
    return _status_key_text(value) if type(value) is str else _status_key_text(text_or_none(value) or "")


def compact(body: dict[str, Any]) -> dict[str, Any]:
    """Drop ``None`` values (Mailchimp rejects JSON null for typed fields) and empty sub-objects."""
    # ``v or not isinstance(v, dict)`` is ``v != {}`` for every JSON value, without building and
    # comparing an empty dict per field (a few hundred thousand calls per 100k orders)
    return {k: v for k, v in body.items() if v is not None and (v or not isinstance(v, dict))}


# -- customers ----------------------------------------------------------------------------------
def customer_address(row: Mapping[str, Any]) -> dict[str, str] | None:
    """The e-commerce address when the row has a usable one (street, city and country)."""
    address = compact(
        {
            "address1": text_or_none(row.get("address1")),
            "city": text_or_none(row.get("city")),
            "province": text_or_none(row.get("province")),
            "postal_code": text_or_none(row.get("postal_code")),
            "country_code": (text_or_none(row.get("country_code")) or "").upper() or None,
        }
    )
    if not all(address.get(k) for k in ("address1", "city", "country_code")):
        return None
    return address


def customer_payload(
    row: Mapping[str, Any], *, opt_in_status: bool, no_marketing: bool = False, guest: bool = False
) -> dict[str, Any]:
    """An e-commerce customer (PUT body) from a ``customers`` row.

    The consent flags are decided by the consent policy (see ``ecommerce.customers``), not read here:
    the same row can be sent with a different ``opt_in_status`` when the customer already exists.
    ``no_marketing`` customers are never sent; guests get only their first name, like the
    audience sync.
    """
    check = _Checker("customer", text_or_none(row.get("customer_id")))
    customer_id = check.ident(row.get("customer_id"), "customer_id")
    if no_marketing:
        raise check.reject("no_marketing", "customer asked never to be sent to Mailchimp")
    raw_email = row.get("email")
    if text_or_none(raw_email) is None:
        raise check.reject("email", "required field is missing")
    email = valid_email(raw_email)
    if email is None:
        raise check.reject("email", f"not a valid email address: {raw_email!r}")
    body: dict[str, Any] = {
        "id": customer_id,
        "email_address": email,
        "opt_in_status": bool(opt_in_status),
        "first_name": text_or_none(row.get("first_name")),
    }
    if not guest:
        body.update(
            {
                "last_name": text_or_none(row.get("last_name")),
                "company": text_or_none(row.get("company")),
                "address": customer_address(row),
            }
        )
    return compact(body)


def order_customer_payload(order: Mapping[str, Any], *, opt_in_status: bool) -> dict[str, Any] | None:
    """A full customer object built from an order's own ``customer_*`` columns, or None.

    Used for customers that appear only on orders (guest checkouts absent from ``customers``):
    the order then creates the e-commerce customer itself.
    """
    email = valid_email(order.get("customer_email"))
    if email is None:
        return None
    return compact(
        {
            "id": text_or_none(order.get("customer_id")),
            "email_address": email,
            "opt_in_status": bool(opt_in_status),
            "first_name": text_or_none(order.get("customer_first_name")),
            "last_name": text_or_none(order.get("customer_last_name")),
        }
    )


# -- products -----------------------------------------------------------------------------------
def product_payload(product: Mapping[str, Any], variants: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """A product with all its variants (POST body; also the hashed content for change detection).

    A product without variant rows gets one variant copying the product (same id and title), as
    Mailchimp requires at least one and order lines then reference ``product_variant_id = product_id``.
    A variant without a title takes the product's title.
    """
    check = _Checker("product", text_or_none(product.get("product_id")))
    product_id = check.ident(product.get("product_id"), "product_id")
    title = check.required_text(product.get("title"), "title")
    url = text_or_none(product.get("url"))
    image_url = text_or_none(product.get("image_url"))
    built: list[dict[str, Any]] = []
    seen: set[str] = set()
    for variant in variants:
        variant_id = check.ident(variant.get("variant_id"), "product_variants.variant_id")
        field = f"product_variants[{variant_id}]"
        if variant_id in seen:
            raise check.reject(f"{field}.variant_id", "duplicate variant id")
        seen.add(variant_id)
        built.append(
            compact(
                {
                    "id": variant_id,
                    "title": text_or_none(variant.get("title")) or title,
                    "url": text_or_none(variant.get("url")) or url,
                    "sku": text_or_none(variant.get("sku")),
                    "price": check.money(variant.get("price"), f"{field}.price"),
                    "inventory_quantity": check.integer(variant.get("inventory_quantity"), f"{field}.inventory_quantity"),
                    "image_url": text_or_none(variant.get("image_url")) or image_url,
                }
            )
        )
    if not built:
        built.append(compact({"id": product_id, "title": title, "url": url, "image_url": image_url}))
    built.sort(key=lambda v: v["id"])
    return compact(
        {
            "id": product_id,
            "title": title,
            "handle": text_or_none(product.get("handle")),
            "url": url,
            "description": text_or_none(product.get("description")),
            "type": text_or_none(product.get("category")),
            "vendor": text_or_none(product.get("vendor")),
            "image_url": image_url,
            "published_at_foreign": check.timestamp(product.get("published_at"), "published_at"),
            "variants": built,
        }
    )


# -- promo rules and codes ----------------------------------------------------------------------
def promo_rule_payload(row: Mapping[str, Any]) -> dict[str, Any]:
    """A promo rule (POST/PATCH body). An empty description falls back to the title (required)."""
    check = _Checker("promo_rule", text_or_none(row.get("promo_rule_id")))
    rule_id = check.ident(row.get("promo_rule_id"), "promo_rule_id")
    title = text_or_none(row.get("title"))
    if title is not None and len(title.encode("utf-8")) > MAX_PROMO_TITLE_BYTES:
        raise check.reject("title", f"{len(title.encode('utf-8'))} bytes long; Mailchimp allows {MAX_PROMO_TITLE_BYTES}")
    description = text_or_none(row.get("description")) or title
    if description is None:
        raise check.reject("description", "required field is missing (and there is no title to use)")
    if len(description) > MAX_PROMO_DESCRIPTION:
        raise check.reject("description", f"{len(description)} characters long; Mailchimp allows {MAX_PROMO_DESCRIPTION}")
    promo_type = check.choice(row.get("type"), "type", PROMO_TYPES)
    amount = check.money(row.get("amount"), "amount", required=True, minimum=None)
    assert amount is not None
    if promo_type == "percentage" and not 0.0 <= amount <= 1.0:
        raise check.reject("amount", f"a percentage rule's amount must be between 0.0 and 1.0, got {amount}")
    if promo_type == "fixed" and amount < 0:
        raise check.reject("amount", f"a fixed rule's amount must not be negative, got {amount}")
    starts_at = check.timestamp(row.get("starts_at"), "starts_at")
    ends_at = check.timestamp(row.get("ends_at"), "ends_at")
    if starts_at and ends_at and ends_at <= starts_at:
        raise check.reject("ends_at", f"must be after starts_at ({starts_at}), got {ends_at}")
    return compact(
        {
            "id": rule_id,
            "title": title,
            "description": description,
            "amount": amount,
            "type": promo_type,
            "target": check.choice(row.get("target"), "target", PROMO_TARGETS),
            "starts_at": starts_at,
            "ends_at": ends_at,
            "enabled": as_bool(row.get("enabled")) if row.get("enabled") is not None else None,
            "created_at_foreign": check.timestamp(row.get("created_at"), "created_at"),
            "updated_at_foreign": check.timestamp(row.get("updated_at"), "updated_at"),
        }
    )


def promo_code_payload(row: Mapping[str, Any]) -> dict[str, Any]:
    """A promo code (POST/PATCH body); it lives under its rule, whose id is checked too."""
    check = _Checker("promo_code", text_or_none(row.get("promo_code_id")))
    code_id = check.ident(row.get("promo_code_id"), "promo_code_id")
    check.ident(row.get("promo_rule_id"), "promo_rule_id")
    return compact(
        {
            "id": code_id,
            "code": check.required_text(row.get("code"), "code", max_len=MAX_ID),
            "redemption_url": check.required_text(row.get("redemption_url"), "redemption_url", max_len=MAX_REDEMPTION_URL),
            "usage_count": check.integer(row.get("usage_count"), "usage_count", minimum=0),
            "enabled": as_bool(row.get("enabled")) if row.get("enabled") is not None else None,
            "created_at_foreign": check.timestamp(row.get("created_at"), "created_at"),
            "updated_at_foreign": check.timestamp(row.get("updated_at"), "updated_at"),
        }
    )


# -- orders -------------------------------------------------------------------------------------
def order_statuses(order: Mapping[str, Any], maps: StatusMaps) -> tuple[str | None, str | None]:
    """(financial_status, fulfillment_status) as Mailchimp should see them.

    An order with ``cancelled_at`` is cancelled whatever its payment state says, unless it was
    refunded: a cancelled order must never count as revenue.
    """
    check = _Checker("order", text_or_none(order.get("order_id")))
    financial = None
    raw = order.get("financial_status")
    if text_or_none(raw) is not None:
        financial = maps.financial.get(_status_key(raw))
        if financial is None:
            raise check.reject(
                "financial_status",
                f"unknown status {raw!r}; known: {', '.join(sorted(maps.financial))} "
                "(extend order_status.financial in the sync config)",
            )
    if text_or_none(order.get("cancelled_at")) is not None and financial not in ("refunded", "partially_refunded"):
        financial = "cancelled"
    fulfillment = None
    raw = order.get("fulfillment_status")
    if text_or_none(raw) is not None:
        key = _status_key(raw)
        fulfillment = maps.fulfillment.get(key, key)
    return financial, fulfillment


def build_lines(
    check: "_Checker", lines: Iterable[Mapping[str, Any]], table: str, *, discount: bool = True
) -> tuple[list[dict[str, Any]], float]:
    """The lines of an order or a cart, sorted by id, and their gross value (price x quantity).

    ``table`` names the source in a rejection (``order_lines[2].quantity``). A line without a
    variant id references the product's copy-variant (``product_variant_id = product_id``).
    """
    built: list[dict[str, Any]] = []
    gross = 0.0
    seen: set[str] = set()
    for line in lines:
        item = _plain_line(line, seen, discount)
        if item is not None:
            seen.add(item["id"])
            gross += item["price"] * item["quantity"]
            built.append(item)
            continue
        line_id = check.ident(line.get("line_id"), f"{table}.line_id")
        field = f"{table}[{line_id}]"
        if line_id in seen:
            raise check.reject(f"{field}.line_id", f"duplicate line id within the {check.entity}")
        seen.add(line_id)
        product_id = check.ident(line.get("product_id"), f"{field}.product_id")
        variant_id = text_or_none(line.get("variant_id"))
        variant_id = check.ident(variant_id, f"{field}.variant_id") if variant_id else product_id
        quantity = check.integer(line.get("quantity"), f"{field}.quantity")
        if quantity is None:
            raise check.reject(f"{field}.quantity", "required field is missing")
        if quantity < 0:
            raise check.reject(f"{field}.quantity", f"negative quantity {quantity}")
        price = check.money(line.get("price"), f"{field}.price", required=True)
        assert price is not None
        gross += price * quantity
        item = {"id": line_id, "product_id": product_id, "product_variant_id": variant_id, "quantity": quantity,
                "price": price}
        if discount:  # the only value that can be None (what ``compact`` would drop)
            amount = check.money(line.get("discount"), f"{field}.discount")
            if amount is not None:
                item["discount"] = amount
        built.append(item)
    built.sort(key=lambda item: item["id"])
    return built, gross


def _plain_id(value: Any) -> str | None:
    """``_Checker.ident`` for a text id that passes it (None: let ``ident`` decide, and explain)."""
    if value.__class__ is str:
        text = value.strip()
        if text and len(text) <= MAX_ID:
            return text
    return None


def _plain_amount(value: Any) -> float | None:
    """``_Checker.money`` (minimum 0) for a non-negative finite float, int or Decimal; None otherwise."""
    kind = value.__class__
    if kind is float:
        if value >= 0.0 and value != math.inf:  # NaN fails the comparison
            return value
    elif kind is int:
        if value >= 0:
            return float(value)
    elif kind is Decimal and value.is_finite():
        number = float(value)
        if number >= 0.0:
            return number
    return None


def _plain_line(line: Mapping[str, Any], seen: set[str], discount: bool) -> dict[str, Any] | None:
    """One line of :func:`build_lines` when every value is of the usual type and valid (what the
    warehouse nearly always returns), built exactly as the checked path would build it, without
    that path's per-field labels; None sends the line through the checked path, which builds or
    rejects it with the field named."""
    line_id = _plain_id(line.get("line_id"))
    product_id = _plain_id(line.get("product_id"))
    if line_id is None or product_id is None or line_id in seen:
        return None
    variant = line.get("variant_id")
    if variant is None:
        variant_id: str | None = product_id
    else:
        variant_id = _plain_id(variant)
        if variant_id is None:
            return None
    quantity = line.get("quantity")
    if quantity.__class__ is not int or quantity < 0:
        return None
    price = _plain_amount(line.get("price"))
    if price is None:
        return None
    item = {"id": line_id, "product_id": product_id, "product_variant_id": variant_id, "quantity": quantity,
            "price": price}
    if discount:
        value = line.get("discount")
        if value is not None:
            amount = _plain_amount(value)
            if amount is None:
                return None
            item["discount"] = amount
    return item


def order_payload(
    order: Mapping[str, Any],
    lines: Iterable[Mapping[str, Any]],
    promos: Iterable[Mapping[str, Any]],
    *,
    customer: Mapping[str, Any],
    status_maps: StatusMaps | None = None,
) -> dict[str, Any]:
    """An order with its lines and promos (POST body, and PATCH body for changes).

    ``customer`` is ``{"id": ...}`` for a customer already in Mailchimp, or the full object for a
    customer that only appears on orders. A line without a variant id references the product's
    copy-variant (``product_variant_id = product_id``).
    """
    check = _Checker("order", text_or_none(order.get("order_id")))
    order_id = check.ident(order.get("order_id"), "order_id")
    check.ident(order.get("customer_id"), "customer_id")
    currency = check.currency(order.get("currency_code"), "currency_code")
    financial, fulfillment = order_statuses(order, status_maps or StatusMaps.default())

    built_lines, gross = build_lines(check, lines, "order_lines")
    if not built_lines:
        # Mailchimp answers a misleading 404 to "lines": [] (mailchimp-client-lib-codegen #127).
        raise check.reject("order_lines", "an order needs at least one line")

    shipping = check.money(order.get("shipping_total"), "shipping_total")
    ceiling = gross + (shipping or 0.0)
    built_promos: list[dict[str, Any]] = []
    for promo in promos:
        code = check.required_text(promo.get("code"), "order_promos.code", max_len=MAX_ID)
        field = f"order_promos[{code}]"
        amount = check.money(promo.get("amount_discounted"), f"{field}.amount_discounted", required=True, minimum=None)
        assert amount is not None
        if not 0.0 <= amount <= ceiling + 0.005:
            raise check.reject(
                f"{field}.amount_discounted",
                f"amount {amount} is out of range: must be between 0 and the order's gross value {ceiling:.2f}",
            )
        built_promos.append(
            {"code": code, "amount_discounted": amount, "type": check.choice(promo.get("type"), f"{field}.type", PROMO_TYPES)}
        )
    built_promos.sort(key=lambda item: item["code"])

    return compact(
        {
            "id": order_id,
            "customer": dict(customer),
            "currency_code": currency,
            "order_total": check.money(order.get("order_total"), "order_total", required=True),
            "tax_total": check.money(order.get("tax_total"), "tax_total"),
            "shipping_total": shipping,
            "discount_total": check.money(order.get("discount_total"), "discount_total"),
            "financial_status": financial,
            "fulfillment_status": fulfillment,
            "order_url": text_or_none(order.get("order_url")),
            "processed_at_foreign": check.timestamp(order.get("processed_at"), "processed_at"),
            "cancelled_at_foreign": check.timestamp(order.get("cancelled_at"), "cancelled_at"),
            "updated_at_foreign": check.timestamp(order.get("updated_at"), "updated_at"),
            "lines": built_lines,
            "promos": built_promos or None,
        }
    )


def cart_payload(cart: Mapping[str, Any], lines: Iterable[Mapping[str, Any]], *, customer: Mapping[str, Any]) -> dict[str, Any]:
    """A cart with its lines (the POST body; also the PATCH body, less ``id`` and ``customer``).

    Mailchimp requires ``id``, ``customer``, ``currency_code``, ``order_total`` and at least one
    line; ``checkout_url`` is what the abandoned-cart email links to, so a cart without one is
    refused here rather than sent to an automation that cannot use it.
    """
    check = _Checker("cart", text_or_none(cart.get("cart_id")))
    cart_id = check.ident(cart.get("cart_id"), "cart_id")
    check.ident(cart.get("customer_id"), "customer_id")
    built_lines, _ = build_lines(check, lines, "cart_lines", discount=False)
    if not built_lines:
        raise check.reject("cart_lines", "a cart needs at least one line")
    return compact(
        {
            "id": cart_id,
            "customer": dict(customer),
            "checkout_url": check.required_text(cart.get("checkout_url"), "checkout_url"),
            "currency_code": check.currency(cart.get("currency_code"), "currency_code"),
            "order_total": check.money(cart.get("order_total"), "order_total", required=True),
            "tax_total": check.money(cart.get("tax_total"), "tax_total"),
            "lines": built_lines,
        }
    )
