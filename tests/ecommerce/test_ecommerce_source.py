"""Reading orders with their lines and promos (and products with variants) as whole records, in one
streamed pass: the merge join and its guards."""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from mailchimp_provider.errors import MailchimpConfigError
from mailchimp_provider.sync.ecommerce.source import binary_sorted_sql, merge_children, merged_chunks
from mailchimp_provider.warehouse.source_tables import create_source_tables


def rows(column: str, *keys: str) -> list[dict[str, Any]]:
    return [{column: k, "n": i} for i, k in enumerate(keys)]


def test_children_are_grouped_with_their_parent_and_orphans_are_counted():
    parents = rows("id", "a", "c", "d")
    lines = rows("id", "a", "a", "b", "c", "e")  # b and e have no parent
    promos = rows("id", "d")
    orphans: dict[str, int] = {}

    merged = list(merge_children(parents, "id", [(lines, "id", "lines"), (promos, "id", "promos")],
                                 on_orphans=lambda q, n: orphans.__setitem__(q, n)))

    assert [(p["id"], [len(g) for g in groups]) for p, groups in merged] == [("a", [2, 0]), ("c", [1, 0]), ("d", [0, 1])]
    assert orphans == {"lines": 2}


def test_the_merge_holds_one_parent_s_children_at_a_time():
    consumed = {"lines": 0}

    def lines() -> Iterator[dict[str, Any]]:
        for i in range(10_000):
            consumed["lines"] += 1
            yield {"id": f"o{i // 3:05d}", "line": i % 3}

    merged = merge_children(({"id": f"o{i:05d}"} for i in range(3334)), "id", [(lines(), "id", "lines")])
    parent, (group,) = next(merged)
    assert parent["id"] == "o00000" and len(group) == 3
    assert consumed["lines"] == 4  # the group plus one row of look-ahead, not the table


@pytest.mark.parametrize(("stream", "query"), [("parents", "parent"), ("children", "lines")])
def test_rows_out_of_order_are_a_configuration_error(stream: str, query: str):
    parents = rows("id", "b", "a") if stream == "parents" else rows("id", "a", "b")
    lines = rows("id", "b", "a") if stream == "children" else rows("id", "a", "b")
    with pytest.raises(MailchimpConfigError, match=f"{query}.*not return rows sorted by id"):
        list(merge_children(parents, "id", [(lines, "id", "lines")]))


def test_postgresql_queries_are_re_sorted_in_byte_order():
    assert binary_sorted_sql("SELECT * FROM order_lines ORDER BY order_id;", ["order_id", "line_id"], "sqlite") == (
        "SELECT * FROM order_lines ORDER BY order_id")
    wrapped = binary_sorted_sql("SELECT * FROM order_lines", ["order_id", "line_id"], "postgresql")
    assert wrapped.endswith('ORDER BY src.order_id::text COLLATE "C", src.line_id::text COLLATE "C"')


def test_orders_are_read_with_their_lines_and_promos_on_both_dialects(warehouse: Any):
    md = create_source_tables(warehouse.engine)
    t = {name.split(".")[-1]: table for name, table in md.tables.items()}
    # ids whose order differs between byte order and a locale collation (case, punctuation)
    ids = ["a-2", "a1", "B", "a", "b-1", "A_3"]
    with warehouse.engine.begin() as conn:
        if warehouse.kind == "postgres":  # a locale collation, as many production databases have
            for table in ("orders", "order_lines", "order_promos"):
                conn.exec_driver_sql(f'ALTER TABLE {table} ALTER COLUMN order_id TYPE text COLLATE "und-x-icu"')
        conn.execute(t["orders"].insert(), [{"order_id": i, "customer_id": "c", "currency_code": "USD"} for i in ids])
        conn.execute(t["order_lines"].insert(), [{"order_id": i, "line_id": str(n), "product_id": "p", "quantity": n}
                                                 for i in ids for n in range(1, 3)] + [
                                                {"order_id": "zz-orphan", "line_id": "1", "product_id": "p", "quantity": 1}])
        conn.execute(t["order_promos"].insert(), [{"order_id": "a1", "code": "SAVE", "amount_discounted": 1, "type": "fixed"}])

    chunks = list(merged_chunks(warehouse.engine, "orders", "order_id",
                                (("order_lines", "_lines"), ("order_promos", "_promos")), chunk_size=4))

    assert [len(c) for c in chunks] == [4, 2]
    records = {r["order_id"]: r for c in chunks for r in c}
    assert set(records) == set(ids)
    assert all([line["line_id"] for line in r["_lines"]] == ["1", "2"] for r in records.values())
    assert all(line["order_id"] == oid for oid, r in records.items() for line in r["_lines"])
    assert [p["code"] for p in records["a1"]["_promos"]] == ["SAVE"] and records["B"]["_promos"] == []
