"""Compact stored orders for the emulator's e-commerce stores (the member counterpart is ``records.py``).

A 1,000,000-order benchmark (3 lines each) stored every order as the dict of its validated body:
about 2.6 KB an order, because each order held a 9-key dict per line, and a fresh string or float
for every value the JSON decoder produced (the same ``"paid"``, ``"USD"``, ``0.0``, product and
variant ids a million times over). An order now keeps:

* its lines as :class:`Line` slots records, read like the dicts they replace (``{**line}``,
  ``line["price"]``, ``line.get``), so the order and cart handlers are unchanged;
* the customer's, product's and variant's own id strings (one object per customer, product,
  variant), not a copy per order;
* repeated text and numbers through :func:`records.shared` / :func:`shared_number`.

:func:`plain_store` gives a store's saved (``--state``) form, its lines as plain dicts, as before;
:func:`compact_store` reads it back.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping

from .records import interned, shared

_NUMBER_LIMIT = 10_000
"""Distinct numbers remembered by :func:`shared_number` (prices and totals repeat; unique ones stop
being remembered at the limit)."""
_numbers: dict[float, float] = {}


def shared_number(value: Any) -> Any:
    """``value``, or an equal float already stored (one object instead of one per order)."""
    if value.__class__ is not float:
        return value
    return interned(_numbers, value, _NUMBER_LIMIT)


def share(field: str, value: Any) -> Any:
    """A repeated scalar as one shared object (text per ``field``, numbers by value)."""
    return shared(field, value) if value.__class__ is str else shared_number(value)


class Line:
    """One order or cart line in ``__slots__`` (about 100 bytes instead of a 272-byte dict plus
    its own copies of the ids), read like the dict it replaces. Never changed in place: the
    handlers replace a changed line with a new one."""

    __slots__ = ("id", "product_id", "product_variant_id", "quantity", "price", "discount", "product_title",
                 "product_variant_title", "image_url")

    def __init__(self, values: Mapping[str, Any]) -> None:
        for key in self.__slots__:
            if key in values:
                setattr(self, key, share(key, values[key]) if key != "id" else values[key])

    @classmethod
    def resolved(cls, line: Mapping[str, Any], product: Mapping[str, Any], variant: Mapping[str, Any]) -> "Line":
        """A validated line (``id``, ``quantity``, ``price``, maybe ``discount``) of ``variant`` of
        ``product``, holding the catalogue's own strings (ids, titles, image). One per order line
        of a backfill, so assigned directly."""
        if "quantity" not in line or "price" not in line:  # a partial line (PATCH): only what it has
            return cls({"discount": 0.0, **line, "product_id": product.get("id", line["product_id"]),
                        "product_variant_id": variant.get("id", line["product_variant_id"]),
                        "product_title": product.get("title", ""), "product_variant_title": variant.get("title", ""),
                        "image_url": variant.get("image_url") or product.get("image_url", "")})
        self = cls.__new__(cls)
        self.id, self.quantity = line["id"], line["quantity"]
        self.price, self.discount = shared_number(line["price"]), shared_number(line.get("discount", 0.0))
        self.product_id, self.product_variant_id = product.get("id", line["product_id"]), variant.get("id", line["product_variant_id"])
        self.product_title, self.product_variant_title = product.get("title", ""), variant.get("title", "")
        self.image_url = variant.get("image_url") or product.get("image_url", "")
        return self

    def __getitem__(self, key: str) -> Any:
        try:
            return getattr(self, key)
        except (AttributeError, TypeError):
            raise KeyError(key) from None

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default) if key in _LINE_KEYS else default

    def __contains__(self, key: object) -> bool:
        return key in _LINE_KEYS and hasattr(self, key)  # type: ignore[arg-type]

    def keys(self) -> Iterator[str]:
        return (key for key in self.__slots__ if hasattr(self, key))

    def items(self) -> Iterator[tuple[str, Any]]:
        return ((key, getattr(self, key)) for key in self.keys())

    def to_dict(self) -> dict[str, Any]:
        """The line as the dict it stands for (its API form less ``_links``)."""
        try:  # every field set: the usual case, spelled out (a page of orders renders thousands)
            return {"id": self.id, "product_id": self.product_id, "product_variant_id": self.product_variant_id,
                    "quantity": self.quantity, "price": self.price, "discount": self.discount,
                    "product_title": self.product_title, "product_variant_title": self.product_variant_title,
                    "image_url": self.image_url}
        except AttributeError:
            return dict(self.items())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (Line, dict)):
            return self.to_dict() == dict(other.items())
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Line({self.to_dict()!r})"


_LINE_KEYS = frozenset(Line.__slots__)


def compact_fields(body: Mapping[str, Any], skip: frozenset[str] = frozenset({"id"})) -> dict[str, Any]:
    """An order's or cart's top-level fields with repeated scalars shared (ids excepted) and the
    promos' values shared too."""
    out: dict[str, Any] = {}
    for key, value in body.items():
        if key == "promos" and value.__class__ is list:
            value = [{k: share(k, v) for k, v in promo.items()} if promo.__class__ is dict else promo for promo in value]
        elif key not in skip:
            value = share(key, value)
        out[key] = value
    return out


def plain_lines(lines: Mapping[str, Any]) -> dict[str, Any]:
    return {key: line.to_dict() if isinstance(line, Line) else line for key, line in lines.items()}


def compact_lines(lines: Mapping[str, Any]) -> dict[str, Any]:
    return {key: Line(line) if line.__class__ is dict else line for key, line in lines.items()}


def plain_store(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A store document in its saved form: orders' and carts' lines as dicts (a shallow copy)."""
    out = dict(doc)
    for collection in ("orders", "carts"):
        if collection in doc:
            out[collection] = {key: {**record, "lines": plain_lines(record["lines"])} if "lines" in record else record
                               for key, record in doc[collection].items()}
    return out


def compact_store(doc: dict[str, Any]) -> dict[str, Any]:
    """A loaded store document with its orders' and carts' lines as :class:`Line` records (in place)."""
    for collection in ("orders", "carts"):
        for record in doc.get(collection, {}).values():
            if "lines" in record:
                record["lines"] = compact_lines(record["lines"])
    return doc


__all__ = ["Line", "compact_fields", "compact_store", "plain_store", "share", "shared_number"]
