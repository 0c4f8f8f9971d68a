"""Chunked upserts that also say what they did: rows gained (new keys) and rows changed.

The engagement pull logs, per table, how many rows a run *gained* and *changed*, so a rerun that
finds nothing new visibly reports ``+0 ~0``. ``warehouse.upsert.upsert`` returns only the number of
rows written, so this module issues the same ``INSERT ... ON CONFLICT (contract key) DO UPDATE``
with one addition: the update only fires when a non-key column differs. That keeps unchanged rows
untouched (no dead tuples on PostgreSQL, ``synced_at`` stays the time the row last changed) and
makes the affected-row count mean "gained + changed":

* PostgreSQL: ``RETURNING (xmax = 0)`` tells an insert from an update, per row;
* SQLite: rows affected come back through ``RETURNING``; gained is the change in ``count(*)`` over
  ``scope`` (a WHERE clause covering the chunk, e.g. ``campaign_id IN (...)``), or over the
  chunk's own keys when no scope is given;
* other dialects: the portable ``warehouse.upsert.upsert``; gained from the key lookup, changed is
  reported as rows re-written (an upper bound).

Keys repeated in one chunk are collapsed to their last row first (PostgreSQL refuses to update a
row twice in one statement).
"""

from __future__ import annotations

import io
import logging
from datetime import datetime, timezone
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from mailchimp_provider.warehouse.upsert import upsert

log = logging.getLogger(__name__)

# Columns that record *when* we wrote, not *what* Mailchimp said: never a reason to update a row.
_BOOKKEEPING_COLUMNS = frozenset({"synced_at", "updated_at"})


@dataclass
class LoadCounts:
    """What loading did to one table."""

    gained: int = 0
    changed: int = 0
    unchanged: int = 0
    removed: int = 0
    """Rows deleted as duplicates of another row (unsubscribes known from two sources)."""

    def add(self, other: "LoadCounts") -> None:
        self.gained += other.gained
        self.changed += other.changed
        self.unchanged += other.unchanged
        self.removed += other.removed

    @property
    def seen(self) -> int:
        return self.gained + self.changed + self.unchanged


@dataclass
class LoadStats:
    """Per-table counts of one task; ``log()`` prints the line the issue asks for."""

    tables: dict[str, LoadCounts] = field(default_factory=dict)

    def record(self, table: str, counts: LoadCounts) -> None:
        self.tables.setdefault(table, LoadCounts()).add(counts)

    def merge(self, other: "LoadStats") -> None:
        for name, counts in other.tables.items():
            self.record(name, counts)

    def to_dict(self) -> dict[str, dict[str, int]]:
        return {
            name: {"gained": c.gained, "changed": c.changed, "unchanged": c.unchanged, "removed": c.removed}
            for name, c in sorted(self.tables.items())
        }

    @classmethod
    def from_dict(cls, data: dict[str, dict[str, int]]) -> "LoadStats":
        return cls({name: LoadCounts(**counts) for name, counts in data.items()})

    def log(self, logger: logging.Logger | logging.LoggerAdapter = log, prefix: str = "") -> None:
        for name, c in sorted(self.tables.items()):
            removed = f", {c.removed} removed as duplicates" if c.removed else ""
            logger.info(
                "%s%s: %d rows gained, %d changed, %d unchanged%s",
                prefix, name, c.gained, c.changed, c.unchanged, removed,
            )


def merge_rows(
    conn: sa.Connection,
    table: sa.Table,
    rows: Iterable[dict[str, Any]],
    key: Sequence[str],
    *,
    scope: sa.ColumnElement[bool] | None = None,
    chunk_size: int = 10_000,
    fresh: bool = False,
) -> LoadCounts:
    """Upsert ``rows`` on ``key`` in the caller's transaction and count gained / changed rows.

    ``rows`` may be a generator: it is consumed ``chunk_size`` rows at a time, so memory does not
    grow with the number of rows. ``scope`` (SQLite only) must cover every key of the rows.
    ``fresh=True`` promises that no row of ``scope`` exists yet (checked by the caller in the same
    transaction): PostgreSQL then COPYs straight into the table, the fastest load there is.
    """
    key = list(key)
    counts = LoadCounts()
    if fresh and conn.dialect.name == "postgresql":
        return _pg_copy_fresh(conn, table, rows, key, chunk_size)
    chunk: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        chunk[tuple([row[k] for k in key])] = row  # a repeated key keeps its last row
        if len(chunk) >= chunk_size:
            counts.add(_merge_chunk(conn, table, list(chunk.values()), key, scope))
            chunk = {}
    if chunk:
        counts.add(_merge_chunk(conn, table, list(chunk.values()), key, scope))
    return counts


def _merge_chunk(
    conn: sa.Connection,
    table: sa.Table,
    rows: list[dict[str, Any]],
    key: list[str],
    scope: sa.ColumnElement[bool] | None,
) -> LoadCounts:
    dialect = conn.dialect.name
    columns = list(rows[0])
    updates = [c for c in columns if c not in key and c not in _BOOKKEEPING_COLUMNS]
    if dialect not in ("postgresql", "sqlite"):
        before = _count_keys(conn, table, rows, key)
        upsert(conn, table, rows, key)
        return LoadCounts(gained=len(rows) - before, changed=before, unchanged=0)

    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert

    stmt = insert(table)
    if updates:
        set_: dict[str, Any] = {c: stmt.excluded[c] for c in updates}
        now = datetime.now(timezone.utc)
        for name in _BOOKKEEPING_COLUMNS:
            if name in table.c:
                set_[name] = stmt.excluded[name] if name in columns else now
        differs = sa.or_(*(table.c[c].is_distinct_from(stmt.excluded[c]) for c in updates))
        stmt = stmt.on_conflict_do_update(index_elements=key, set_=set_, where=differs)
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=key)

    if dialect == "postgresql":
        flags = _pg_copy_merge(conn, table, rows, columns, stmt)
        gained = sum(1 for f in flags if f)
        changed = len(flags) - gained
        return LoadCounts(gained=gained, changed=changed, unchanged=len(rows) - gained - changed)

    returning = stmt.returning(sa.literal_column("1"))
    if scope is not None:
        before = _count(conn, table, scope)
        touched = len(conn.execute(returning, rows).all())
        after = _count(conn, table, scope)
    else:
        before = _count_keys(conn, table, rows, key)
        touched = len(conn.execute(returning, rows).all())
        after = _count_keys(conn, table, rows, key)
    gained = after - before
    changed = touched - gained
    return LoadCounts(gained=gained, changed=changed, unchanged=len(rows) - touched)


def _pg_copy_merge(
    conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]], columns: list[str], stmt: Any
) -> list[bool]:
    """PostgreSQL: COPY the chunk into a temporary stage, then one INSERT ... SELECT ... ON CONFLICT.

    COPY is several times faster than multi-row VALUES for large chunks (the activity benchmark
    loads a million rows per run); values go through the columns' own bind processing first, so
    timestamps and JSON are stored exactly as the ordinary upsert would store them. Returns, per
    row written, whether it was an insert (``xmax = 0``) or an update.
    """
    stage = _pg_stage(conn, table)
    dialect = conn.dialect
    formatters = [_copy_formatter(table.c[c], dialect) for c in columns]
    pairs = list(zip(columns, formatters))
    buf = io.StringIO()
    write = buf.write
    for row in rows:
        write("\t".join([fmt(row[c]) for c, fmt in pairs]))
        write("\n")
    buf.seek(0)
    quoted = ", ".join(dialect.identifier_preparer.quote(c) for c in columns)
    dbapi = conn.connection.dbapi_connection
    with dbapi.cursor() as cur:  # type: ignore[union-attr]
        cur.execute(f"TRUNCATE {stage}")
        cur.copy_expert(f"COPY {stage} ({quoted}) FROM STDIN", buf)
    source = sa.select(*(sa.column(c) for c in columns)).select_from(sa.text(stage))
    from_select = sa.dialects.postgresql.insert(table).from_select(columns, source)
    # Re-apply the ON CONFLICT clause built for the VALUES form to the INSERT ... SELECT form.
    conflict = stmt._post_values_clause
    if conflict is not None:
        from_select._post_values_clause = conflict
    return list(conn.execute(from_select.returning(sa.literal_column("(xmax = 0)"))).scalars())


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(value: Any) -> str:
    """One field in PostgreSQL's COPY text format (``\\N`` is NULL; backslash escapes)."""
    if value is None:
        return "\\N"
    if isinstance(value, str):
        if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
            return value.translate(_COPY_ESCAPES)
        return value
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _copy_formatter(column: sa.Column, dialect: sa.Dialect) -> Callable[[Any], str]:
    """``value -> COPY field`` for one column: its bind processing (UTC, JSON text), then escaping."""
    processor = column.type.bind_processor(dialect)
    if processor is None:
        return _copy_text

    def fmt(value: Any) -> str:
        return "\\N" if value is None else _copy_text(processor(value))

    return fmt


def _pg_copy_fresh(
    conn: sa.Connection, table: sa.Table, rows: Iterable[dict[str, Any]], key: list[str], chunk_size: int
) -> LoadCounts:
    """COPY rows into an empty scope; keys repeated in the input are written once (the first row)."""
    seen: set[tuple[Any, ...]] = set()
    columns: list[str] | None = None
    pairs: list[tuple[str, Callable[[Any], str]]] = []
    suffix = ""
    buf = io.StringIO()
    pending = gained = 0
    dbapi = conn.connection.dbapi_connection
    prep = conn.dialect.identifier_preparer

    def flush() -> None:
        buf.seek(0)
        quoted = ", ".join(prep.quote(c) for c in columns or [])
        with dbapi.cursor() as cur:  # type: ignore[union-attr]
            cur.copy_expert(f"COPY {prep.format_table(table)} ({quoted}) FROM STDIN", buf)
        buf.seek(0)
        buf.truncate()

    for row in rows:
        ident = tuple([row[k] for k in key])
        if ident in seen:
            continue
        seen.add(ident)
        if columns is None:
            columns = list(row)
            pairs = [(c, _copy_formatter(table.c[c], conn.dialect)) for c in columns]
            # COPY bypasses SQLAlchemy's Python-side defaults: add the bookkeeping columns' own.
            stamped = [c for c in _BOOKKEEPING_COLUMNS if c in table.c and c not in row]
            suffix = "".join("\t" + _copy_text(datetime.now(timezone.utc)) for _ in stamped)
            columns += stamped
        buf.write("\t".join([fmt(row[c]) for c, fmt in pairs]))
        buf.write(suffix)
        buf.write("\n")
        pending += 1
        gained += 1
        if pending >= chunk_size:
            flush()
            pending = 0
    if pending:
        flush()
    return LoadCounts(gained=gained)


def _pg_stage(conn: sa.Connection, table: sa.Table) -> str:
    """A session-temporary copy of ``table``'s columns (no keys), created once per transaction."""
    prep = conn.dialect.identifier_preparer
    stage = prep.quote(f"_stage_{table.name}"[:63])
    conn.exec_driver_sql(
        f"CREATE TEMP TABLE IF NOT EXISTS {stage} ON COMMIT DROP AS "
        f"SELECT * FROM {prep.format_table(table)} WITH NO DATA"
    )
    return stage


def _count(conn: sa.Connection, table: sa.Table, scope: sa.ColumnElement[bool]) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(table).where(scope)).scalar_one())


def _count_keys(conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]], key: list[str]) -> int:
    """How many of the rows' keys are stored (pages of 200 keys per query)."""
    found = 0
    cols = [table.c[k] for k in key]
    for start in range(0, len(rows), 200):
        part = rows[start : start + 200]
        if len(key) == 1:
            cond = cols[0].in_([r[key[0]] for r in part])
        else:
            cond = sa.tuple_(*cols).in_([tuple(r[k] for k in key) for r in part])
        found += int(conn.execute(sa.select(sa.func.count()).select_from(table).where(cond)).scalar_one())
    return found
