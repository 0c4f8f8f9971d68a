"""Reading the commerce tables as whole records, with memory flat in the size of the tables.

A product comes with its variants and an order with its lines and promos. Loading every line to
group them would hold 300k rows for 100k orders, so the child queries are sorted like the parent
query and merged in one pass (a merge join): at any time only one parent's children are held.

The merge compares keys in Python, so the database must sort them the same way. SQLite's default
(BINARY) collation already does; on PostgreSQL a locale collation (``en_US``) orders ``a-2`` and
``a1`` differently, so the extraction query is wrapped in an outer ``ORDER BY ... COLLATE "C"``.
Any remaining disagreement (another dialect, a custom collation) is detected and raised as a
configuration error rather than silently mis-grouping rows.

A value that cannot be read (``price = 'abc'``, ``quantity = 'two'``, text that is not UTF-8 on
SQLite) never stops the stream: the row is marked (``extract.REJECTED``), and a marked child
marks its parent, so the one product or order is skipped with reason ``bad_value`` naming the
child row, the column and the value.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterable, Iterator, Sequence

from mailchimp_provider.errors import MailchimpConfigError
from mailchimp_provider.warehouse.extract import REJECTED, BadValue, row_reader, tolerant_text, types_for

log = logging.getLogger(__name__)

Row = dict[str, Any]

# Query name -> the columns it is merged on, in order.
SORT_KEYS: dict[str, tuple[str, ...]] = {
    "customers": ("customer_id",),
    "products": ("product_id",),
    "product_variants": ("product_id", "variant_id"),
    "orders": ("order_id",),
    "order_lines": ("order_id", "line_id"),
    "order_promos": ("order_id", "code"),
    "promo_rules": ("promo_rule_id",),
    "promo_codes": ("promo_code_id",),
    "carts": ("cart_id",),
    "cart_lines": ("cart_id", "line_id"),
}


def _key(value: Any) -> str:
    """Merge keys compare as text: ids may come back as ints from one table and text from another."""
    if type(value) is str:
        return value.strip()
    return "" if value is None else str(value).strip()


class _Children:
    """One sorted child stream, consumed group by group as the parent stream advances."""

    def __init__(self, rows: Iterable[Row], column: str, query: str) -> None:
        self._rows = iter(rows)
        self._column = column
        self.query = query
        self._head: Row | None = None
        self._head_key = ""
        self._done = False
        self.orphans = 0
        self._advance()

    def _advance(self) -> None:
        previous = self._head_key if self._head is not None else None
        column = self._column
        for row in self._rows:
            key = _key(row.get(column))
            if key:
                if previous is not None and key < previous:
                    self._head, self._head_key = row, key
                    raise _unsorted(self.query, column, previous, key)
                self._head, self._head_key = row, key
                return
            # no parent id: an orphan wherever the database sorts NULL (first or last)
            self.orphans += 1
        self._head = None
        self._done = True

    def take(self, parent_key: str) -> list[Row]:
        """The children of ``parent_key``; children of keys below it have no parent (orphans)."""
        group: list[Row] = []
        while self._head is not None:
            key = self._head_key
            if key == parent_key:
                group.append(self._head)
            elif key < parent_key:
                self.orphans += 1
                if self.orphans <= 5:
                    log.warning("%s row for %s=%r has no parent row; it is not sent", self.query, self._column, key)
            else:
                break
            self._advance()
        return group

    def drain(self) -> None:
        while not self._done:
            self.orphans += 1
            self._advance()


def _unsorted(query: str, column: str, previous: str, current: str) -> MailchimpConfigError:
    return MailchimpConfigError(
        f"Query {query!r} does not return rows sorted by {column} in byte order "
        f"({previous!r} came before {current!r}). Keep its ORDER BY {column} and use a binary "
        "collation (PostgreSQL: COLLATE \"C\") so lines, promos and variants can be merged with "
        "their parent without holding them in memory."
    )


def merge_children(
    parents: Iterable[Row],
    parent_column: str,
    children: Sequence[tuple[Iterable[Row], str, str]],
    *,
    parent_query: str = "parent",
    on_orphans: Callable[[str, int], None] | None = None,
) -> Iterator[tuple[Row, list[list[Row]]]]:
    """Yield ``(parent, [children of stream 1, children of stream 2, ...])`` in parent order.

    ``children`` holds ``(rows, column, query_name)`` per child stream, each sorted by ``column``
    like the parents. Children without a parent are counted and reported through ``on_orphans``
    (query name, count) at the end, never attached to a wrong parent. Every stream's order is
    checked as it goes (``MailchimpConfigError`` if a key goes backwards).
    """
    streams = [_Children(rows, column, query) for rows, column, query in children]
    previous: str | None = None
    for parent in parents:
        key = _key(parent.get(parent_column))
        if not key:  # a parent without an id (skipped as missing_id) has no children
            yield parent, [[] for _ in streams]
            continue
        if previous is not None and key < previous:
            raise _unsorted(parent_query, parent_column, previous, key)
        previous = key
        yield parent, [stream.take(key) for stream in streams]
    for stream in streams:
        stream.drain()
        if stream.orphans:
            log.warning("%d %s row(s) had no parent row and were not sent", stream.orphans, stream.query)
            if on_orphans is not None:
                on_orphans(stream.query, stream.orphans)


def binary_sorted_sql(sql: str, keys: Sequence[str], dialect: str) -> str:
    """Wrap an extraction query so its rows come back sorted in byte order on ``keys``.

    SQLite sorts text in byte order already, so its query is left alone (the planner would sort
    twice otherwise). On PostgreSQL the outer query re-sorts with ``COLLATE "C"``.
    """
    body = sql.strip().rstrip(";").strip()
    if dialect != "postgresql":
        return body
    order = ", ".join(f'src.{key}::text COLLATE "C"' for key in keys)
    return f"SELECT src.* FROM (\n{body}\n) AS src\nORDER BY {order}"


# ------------------------------------------------------------------------------------------------
# running the queries
# ------------------------------------------------------------------------------------------------
def stream_sorted(db: Any, name: str, chunk_size: int) -> Iterator[Row]:
    """Rows of ``include/sql/<name>.sql`` sorted in byte order on its merge keys, streamed.

    Read through the DBAPI cursor (a server-side cursor on PostgreSQL): at 400k rows per order
    pass, SQLAlchemy's row objects cost more than the query itself. Values stay as the driver
    returns them (the payload builders normalise every type); values the driver left untyped are
    checked, and a row with one that cannot be read is marked with ``extract.REJECTED``.
    """
    import uuid

    from mailchimp_provider.sync.engine import source_sql

    sql = binary_sorted_sql(source_sql(name, db), SORT_KEYS[name], db.dialect.name)
    types = types_for(name)
    with db.connect() as conn, tolerant_text(conn):
        raw = conn.connection.driver_connection
        if db.dialect.name == "postgresql":
            cursor = raw.cursor(name=f"mc_{name}_{uuid.uuid4().hex[:12]}")
            cursor.itersize = chunk_size
        else:
            cursor = raw.cursor()
        try:
            cursor.execute(sql)
            read = None
            while True:
                rows = cursor.fetchmany(chunk_size)
                if not rows:
                    break
                if read is None:
                    read = row_reader([d[0] for d in cursor.description], types, convert=False,
                                      bytes_are_bad=db.dialect.name == "sqlite")
                yield from map(read, rows)
        finally:
            cursor.close()


def merged_chunks(
    db: Any, parent: str, key: str, children: Sequence[tuple[str, str]], chunk_size: int
) -> Iterator[list[Row]]:
    """Chunks of parent rows, each carrying its children under the given attribute names.

    ``children`` is ``[(query name, attribute)]``, e.g. ``[("order_lines", "_lines"), ("order_promos",
    "_promos")]``. Memory holds one chunk of parents and their children, whatever the table sizes.
    """
    streams = [(stream_sorted(db, name, chunk_size), key, name) for name, _ in children]
    chunk: list[Row] = []
    for row, groups in merge_children(stream_sorted(db, parent, chunk_size), key, streams, parent_query=parent):
        for (name, attribute), group in zip(children, groups):
            row[attribute] = group
            _reject_for_children(row, name, group)
        chunk.append(row)
        if len(chunk) >= chunk_size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def attach_children(db: Any, rows: list[Row], key: str, children: Sequence[tuple[str, str]]) -> list[Row]:
    """Attach children to some parent rows fetched by id (used when re-planning a few records)."""
    import sqlalchemy as sa

    from mailchimp_provider.sync.engine import source_sql

    ids = sorted({_key(r.get(key)) for r in rows})
    by_parent: dict[str, dict[str, list[Row]]] = {}
    with db.connect() as conn, tolerant_text(conn):
        for name, attribute in children:
            stmt = sa.text(f"SELECT * FROM ({source_sql(name, db)}) src WHERE src.{key} IN :ids").bindparams(
                sa.bindparam("ids", expanding=True))
            for start in range(0, len(ids), 900):
                result = conn.execute(stmt, {"ids": ids[start:start + 900]})
                read = row_reader(list(result.keys()), types_for(name), convert=False,
                                  bytes_are_bad=db.dialect.name == "sqlite")
                for child in map(read, result):
                    by_parent.setdefault(_key(child[key]), {}).setdefault(attribute, []).append(child)
    for row in rows:
        groups = by_parent.get(_key(row.get(key)), {})
        for name, attribute in children:
            row[attribute] = groups.get(attribute, [])
            _reject_for_children(row, name, row[attribute])
    return rows


def _reject_for_children(parent: Row, query: str, group: list[Row]) -> None:
    """Mark ``parent`` rejected when one of its child rows is (its own bad value comes first):
    a product with an unreadable variant, or an order with an unreadable line, is not sent."""
    if REJECTED in parent:
        return
    for child in group:
        bad = child.get(REJECTED)
        if bad is not None:
            child_key = SORT_KEYS.get(query, ("",))[-1]
            where = f"{query} row {child_key}={child.get(child_key)!r}" if child_key else f"{query} row"
            parent[REJECTED] = BadValue(f"{query}.{bad.column}", bad.value, f"{bad.problem} ({where})")
            return
