"""The payload builders' output, byte for byte, against a record of what they produced before.

``payload_bytes.json`` holds, per case, a digest of the JSON text (keys in the builder's order, as
the batch sends them) of the order, cart and product payloads, or of the ``RejectedRecord`` message,
for the contract warehouse (``tests/fixtures/contract_warehouse.py``) read the way the sync reads it
(SQLite, merge-joined, values as the driver returns them), for the same rows as Python values
(``Decimal``, ``datetime``), and for messy variants of one order (text numbers, bad quantities,
unknown statuses, odd timestamps, duplicate lines, out-of-range promos...). A speed-up of the
builders must not change any of it: the file was written by the builders before the e-commerce
planning work of issue #17, and is only rewritten (``python tests/ecommerce/test_ecommerce_payload_bytes.py
--write``) when a payload is meant to change (bump ``rules.RULES_VERSION`` then too).
"""

from __future__ import annotations

import copy
import hashlib
import json
import sys
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterator

import sqlalchemy as sa

GOLDEN = Path(__file__).with_name("payload_bytes.json")


def _text(fn: Callable[[], dict[str, Any]]) -> str:
    from mailchimp_provider.sync.ecommerce.payloads import RejectedRecord

    try:
        return json.dumps(fn(), separators=(",", ":"), ensure_ascii=False)
    except RejectedRecord as error:
        return f"rejected {error}"


def _order_cases(prefix: str, orders: list[dict[str, Any]]) -> Iterator[tuple[str, str]]:
    from mailchimp_provider.sync.ecommerce.payloads import StatusMaps, cart_payload, order_payload

    maps = StatusMaps.default().extended({"On Hold": "pending"}, {"In Transit": "shipped"})
    for row in orders:
        oid = str(row.get("order_id"))
        lines, promos = row.get("_lines") or [], row.get("_promos") or []
        yield f"{prefix}:order:{oid}", _text(lambda: order_payload(
            row, lines, promos, customer={"id": str(row.get("customer_id"))}, status_maps=maps))
        yield f"{prefix}:order-default-maps:{oid}", _text(lambda: order_payload(
            row, lines, promos, customer={"id": "c", "email_address": "a@b.org"}))
        cart = {**row, "cart_id": row.get("order_id"), "checkout_url": row.get("order_url")}
        yield f"{prefix}:cart:{oid}", _text(lambda: cart_payload(cart, lines, customer={"id": "c"}))


def _product_cases(prefix: str, products: list[dict[str, Any]]) -> Iterator[tuple[str, str]]:
    from mailchimp_provider.sync.ecommerce.payloads import product_payload

    for row in products:
        yield f"{prefix}:product:{row.get('product_id')}", _text(lambda: product_payload(row, row.get("_variants") or []))


def _messy_orders(order: dict[str, Any]) -> list[dict[str, Any]]:
    """Variants of one order (with ``_lines``/``_promos``) covering every branch of the builders."""
    line = order["_lines"][0]
    promo = {"order_id": order["order_id"], "code": "SPRING10", "amount_discounted": Decimal("1.50"), "type": "fixed"}
    t = datetime(2024, 5, 1, 10, 0, 0, 123456)
    cases: list[tuple[dict[str, Any], list[dict[str, Any]] | None, list[dict[str, Any]] | None]] = [
        ({}, None, None),
        ({}, [], None),
        ({"order_id": " O-ws "}, None, None),
        ({"order_id": None}, None, None),
        ({"order_id": 12345}, None, None),
        ({"order_id": 5.0}, None, None),
        ({"order_id": "x" * 51}, None, None),
        ({"customer_id": None}, None, None),
        ({"customer_id": 77}, None, None),
        ({"customer_id": "  "}, None, None),
        ({"currency_code": "usd"}, None, None),
        ({"currency_code": " eur "}, None, None),
        ({"currency_code": "XXX"}, None, None),
        ({"currency_code": None}, None, None),
        ({"order_total": "95.5"}, None, None),
        ({"order_total": " 12 "}, None, None),
        ({"order_total": 12}, None, None),
        ({"order_total": 12.345}, None, None),
        ({"order_total": None}, None, None),
        ({"order_total": ""}, None, None),
        ({"order_total": "abc"}, None, None),
        ({"order_total": Decimal("NaN")}, None, None),
        ({"order_total": float("inf")}, None, None),
        ({"order_total": "-1"}, None, None),
        ({"order_total": True}, None, None),
        ({"tax_total": None, "shipping_total": "", "discount_total": "  "}, None, None),
        ({"shipping_total": "3.25", "discount_total": 0}, None, None),
        ({"financial_status": "Paid"}, None, None),
        ({"financial_status": "partially-refunded"}, None, None),
        ({"financial_status": "Partially Refunded", "cancelled_at": t}, None, None),
        ({"financial_status": "refunded", "cancelled_at": "2024-05-02 10:00:00"}, None, None),
        ({"financial_status": "paid", "cancelled_at": "2024-05-02T10:00:00+02:00"}, None, None),
        ({"financial_status": "paid", "cancelled_at": "  "}, None, None),
        ({"financial_status": None, "cancelled_at": t}, None, None),
        ({"financial_status": "On Hold"}, None, None),
        ({"financial_status": "weird"}, None, None),
        ({"financial_status": ""}, None, None),
        ({"financial_status": 3}, None, None),
        ({"fulfillment_status": "Partially Fulfilled"}, None, None),
        ({"fulfillment_status": "In Transit"}, None, None),
        ({"fulfillment_status": "custom  status-x"}, None, None),
        ({"fulfillment_status": ""}, None, None),
        ({"order_url": "  https://x.org/o  "}, None, None),
        ({"order_url": "   "}, None, None),
        ({"processed_at": t}, None, None),
        ({"processed_at": t.replace(tzinfo=timezone.utc)}, None, None),
        ({"processed_at": t.replace(tzinfo=timezone(timedelta(hours=-5)))}, None, None),
        ({"processed_at": "2024-05-01T10:00:00.999999"}, None, None),
        ({"processed_at": "2024-05-01 10:00:00+05:30"}, None, None),
        ({"processed_at": "2024-05-01"}, None, None),
        ({"processed_at": "not a date"}, None, None),
        ({"processed_at": ""}, None, None),
        ({"processed_at": 1714557600}, None, None),
        ({"updated_at": None}, None, None),
        ({}, [{**line, "quantity": "2"}], None),
        ({}, [{**line, "quantity": "2.0"}], None),
        ({}, [{**line, "quantity": " 3 "}], None),
        ({}, [{**line, "quantity": 2.5}], None),
        ({}, [{**line, "quantity": 2.0}], None),
        ({}, [{**line, "quantity": "two"}], None),
        ({}, [{**line, "quantity": -1}], None),
        ({}, [{**line, "quantity": 0}], None),
        ({}, [{**line, "quantity": None}], None),
        ({}, [{**line, "quantity": ""}], None),
        ({}, [{**line, "quantity": True}], None),
        ({}, [{**line, "quantity": Decimal("4")}], None),
        ({}, [{**line, "price": "49.90"}], None),
        ({}, [{**line, "price": " 49.9 "}], None),
        ({}, [{**line, "price": 49.9}], None),
        ({}, [{**line, "price": 50}], None),
        ({}, [{**line, "price": Decimal("NaN")}], None),
        ({}, [{**line, "price": "inf"}], None),
        ({}, [{**line, "price": None}], None),
        ({}, [{**line, "price": ""}], None),
        ({}, [{**line, "price": -1}], None),
        ({}, [{**line, "price": "1e2"}], None),
        ({}, [{**line, "discount": None}], None),
        ({}, [{**line, "discount": ""}], None),
        ({}, [{**line, "discount": "0.5"}], None),
        ({}, [{**line, "discount": -0.1}], None),
        ({}, [{**line, "discount": 1}], None),
        ({}, [{k: v for k, v in line.items() if k != "discount"}], None),
        ({}, [{**line, "line_id": " 1 "}], None),
        ({}, [{**line, "line_id": 7}], None),
        ({}, [{**line, "line_id": 7.0}], None),
        ({}, [{**line, "line_id": None}], None),
        ({}, [{**line, "line_id": "y" * 51}], None),
        ({}, [line, {**line}], None),
        ({}, [{**line, "line_id": "b"}, {**line, "line_id": "a"}, {**line, "line_id": "10"}, {**line, "line_id": "9"}], None),
        ({}, [{**line, "variant_id": None}], None),
        ({}, [{**line, "variant_id": "  "}], None),
        ({}, [{**line, "variant_id": 42}], None),
        ({}, [{**line, "variant_id": "v" * 51}], None),
        ({}, [{**line, "product_id": None}], None),
        ({}, [{**line, "product_id": " P001 "}], None),
        ({}, [{**line, "product_id": 9}], None),
        ({}, None, [promo]),
        ({}, None, [{**promo, "code": "B"}, {**promo, "code": "A", "type": "Percentage"}]),
        ({}, None, [{**promo, "code": None}]),
        ({}, None, [{**promo, "code": "c" * 51}]),
        ({}, None, [{**promo, "amount_discounted": None}]),
        ({}, None, [{**promo, "amount_discounted": "2"}]),
        ({}, None, [{**promo, "amount_discounted": -1}]),
        ({}, None, [{**promo, "amount_discounted": 10_000}]),
        ({"shipping_total": None}, None, [{**promo, "amount_discounted": 10_000}]),
        ({}, None, [{**promo, "type": "bogus"}]),
        ({}, None, [{**promo, "type": None}]),
    ]
    out = []
    for n, (fields, lines, promos) in enumerate(cases):
        row = {**copy.deepcopy(order), **fields}
        if lines is not None:
            row["_lines"] = lines
        if promos is not None:
            row["_promos"] = promos
        row["order_id_case"] = n
        out.append(row)
    return out


def _messy_products(product: dict[str, Any]) -> list[dict[str, Any]]:
    variant = product["_variants"][0]
    cases: list[tuple[dict[str, Any], list[dict[str, Any]] | None]] = [
        ({}, None),
        ({}, []),
        ({"product_id": None}, None),
        ({"title": None}, None),
        ({"title": "  "}, None),
        ({"url": None, "image_url": " https://i.org/x.jpg "}, None),
        ({"published_at": "2024-01-01 00:00:00"}, None),
        ({"published_at": "garbage"}, None),
        ({}, [{**variant, "title": None, "url": None}]),
        ({}, [{**variant, "price": "abc"}]),
        ({}, [{**variant, "price": "12.5", "inventory_quantity": "3"}]),
        ({}, [{**variant, "inventory_quantity": "3.5"}]),
        ({}, [variant, {**variant}]),
        ({}, [{**variant, "variant_id": "b"}, {**variant, "variant_id": "a"}]),
        ({}, [{**variant, "variant_id": None}]),
        ({}, [{**variant, "sku": None, "image_url": None}]),
    ]
    out = []
    for fields, variants in cases:
        row = {**copy.deepcopy(product), **fields}
        if variants is not None:
            row["_variants"] = variants
        out.append(row)
    return out


def payload_texts(tmp: Path) -> dict[str, str]:
    """Every case's JSON text (or rejection), in a fixed order."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from fixtures.contract_warehouse import build_contract_shop

    from mailchimp_provider.sync.ecommerce.source import merged_chunks

    engine = sa.create_engine(f"sqlite:///{tmp / 'contract.db'}")
    try:
        shop = build_contract_shop(engine, "sqlite")
        orders = [r for chunk in merged_chunks(engine, "orders", "order_id",
                                               (("order_lines", "_lines"), ("order_promos", "_promos")), 50)
                  for r in chunk]
        products = [r for chunk in merged_chunks(engine, "products", "product_id",
                                                 (("product_variants", "_variants"),), 50) for r in chunk]
    finally:
        engine.dispose()

    def attached(parents: list[dict[str, Any]], key: str, children: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
        return [{**p, **{attr: [c for c in rows if c[key] == p[key]] for attr, rows in children.items()}}
                for p in parents]

    py_orders = attached(shop.rows["orders"], "order_id",
                         {"_lines": shop.rows["order_lines"], "_promos": shop.rows["order_promos"]})
    py_products = attached(shop.rows["products"], "product_id", {"_variants": shop.rows["product_variants"]})
    texts: dict[str, str] = {}
    sources = [
        _order_cases("sqlite", orders), _order_cases("python", py_orders),
        _order_cases("messy-sqlite", _messy_orders(next(o for o in orders if o["_promos"]))),
        _order_cases("messy-python", _messy_orders(next(o for o in py_orders if o["_promos"]))),
        _product_cases("sqlite", products), _product_cases("python", py_products),
        _product_cases("messy-sqlite", _messy_products(products[0])),
        _product_cases("messy-python", _messy_products(py_products[0])),
    ]
    for source in sources:
        for n, (case, text) in enumerate(source):
            texts[f"{n:04d}:{case}"] = text
    return texts


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def test_payload_bytes_are_as_recorded(tmp_path: Path) -> None:
    expected = json.loads(GOLDEN.read_text(encoding="utf-8"))
    texts = payload_texts(tmp_path)
    assert len(texts) > 900 and sum(t.startswith("rejected") for t in texts.values()) > 40  # the cases ran
    assert sorted(texts) == sorted(expected)
    changed = {case: text for case, text in texts.items() if _digest(text) != expected[case]}
    assert not changed, f"{len(changed)} payload(s) changed, e.g. {dict(list(changed.items())[:3])}"


if __name__ == "__main__" and "--write" in sys.argv:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        result = {case: _digest(text) for case, text in payload_texts(Path(tmp)).items()}
    GOLDEN.write_text(json.dumps(result, indent=0, sort_keys=True) + "\n", encoding="utf-8")
    print(f"{len(result)} cases written to {GOLDEN}")
