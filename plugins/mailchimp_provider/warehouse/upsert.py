"""Idempotent bulk upsert: every write of this project goes through here, so a retried task
leaves the same rows as a single run.

Strategies, picked by dialect and size:

* PostgreSQL (psycopg2), large inputs: ``COPY`` into a temporary staging table, then one
  ``INSERT ... SELECT ... ON CONFLICT (key) DO UPDATE``. Row-by-row parameter binding tops out
  at a few 10k rows/s; COPY keeps Python work to formatting text.
* PostgreSQL small inputs and SQLite: ``INSERT ... ON CONFLICT (key) DO UPDATE`` built with the
  dialect's ``insert`` construct, executed as an executemany. On PostgreSQL the statement carries
  ``RETURNING`` so that SQLAlchemy 2.1 sends multi-row ``VALUES`` pages ("insertmanyvalues"); it
  falls back to one round trip per row for ON CONFLICT statements without RETURNING.
* Other dialects: look up which keys exist, ``UPDATE`` those (executemany), ``INSERT`` the rest,
  inside the caller's transaction. Unlike delete+insert this keeps the columns a caller chose not
  to update, so all strategies behave the same.

Semantics shared by all strategies:

* the key must be the table's primary key or a unique constraint (what ON CONFLICT needs);
* rows may omit columns: omitted columns get their default on insert and are left alone on update,
  except columns with an ``onupdate`` (``updated_at``, ``synced_at``), which are refreshed;
* a key repeated in the input is written once, with its last row (what sequential upserts would
  leave; PostgreSQL refuses to update one row twice in one statement);
* ``update_columns`` restricts which columns an existing row gets from the input;
* an existing row whose update columns already hold the input values is not touched, so
  re-running a load writes nothing; write-time stamps (columns with an ``onupdate``:
  ``updated_at``, ``synced_at``) do not count as a change, so they mean "last changed".
"""

from __future__ import annotations

import datetime as _dt
import decimal
import io
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

import sqlalchemy as sa

from mailchimp_provider.warehouse.tables import UtcDateTime, to_utc

DEFAULT_CHUNK_SIZE = 50_000
# Below this many rows a multi-row INSERT beats creating a staging table.
COPY_THRESHOLD = 2_000

Strategy = Literal["auto", "copy", "on_conflict", "generic"]


def upsert(
    conn: sa.Connection,
    table: sa.Table,
    rows: Iterable[dict[str, Any]],
    key: Sequence[str],
    update_columns: Sequence[str] | None = None,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    strategy: Strategy = "auto",
) -> int:
    """Insert ``rows`` into ``table``, updating rows whose ``key`` already exists.

    Runs in the caller's transaction (commit is theirs). Returns the number of rows written
    (after collapsing repeated keys). ``strategy`` is for tests and benchmarks; ``auto`` picks
    as the module docstring says.
    """
    key = list(key)
    _check_key(table, key)
    if update_columns is not None:
        _check_columns(table, update_columns, what="update_columns")

    written = 0
    for columns, group in _groups(_dedupe(rows, key, table)):
        _check_columns(table, columns, what="row")
        missing = [k for k in key if k not in columns]
        if missing:
            raise ValueError(f"upsert into {table.fullname}: rows lack key column(s) {', '.join(missing)}")
        updates = [c for c in (columns if update_columns is None else update_columns) if c not in key]
        updates = [c for c in updates if c in columns]
        for start in range(0, len(group), chunk_size):
            chunk = group[start : start + chunk_size]
            how = _choose(conn, len(chunk)) if strategy == "auto" else strategy
            if how == "copy":
                _copy_merge(conn, table, chunk, list(columns), key, updates)
            elif how == "on_conflict":
                _on_conflict(conn, table, chunk, key, updates)
            else:
                _generic(conn, table, chunk, key, updates)
            written += len(chunk)
    return written


def _choose(conn: sa.Connection, n: int) -> Strategy:
    name = conn.dialect.name
    if name == "postgresql":
        return "copy" if n >= COPY_THRESHOLD and conn.dialect.driver == "psycopg2" else "on_conflict"
    return "on_conflict" if name == "sqlite" else "generic"


# -- validation and input shaping ------------------------------------------------------------


def _check_key(table: sa.Table, key: list[str]) -> None:
    if not key:
        raise ValueError(f"upsert into {table.fullname}: empty key")
    _check_columns(table, key, what="key")
    unique_sets = [{c.name for c in table.primary_key.columns}]
    unique_sets += [
        {c.name for c in con.columns} for con in table.constraints if isinstance(con, sa.UniqueConstraint)
    ]
    unique_sets += [{c.name for c in ix.columns} for ix in table.indexes if ix.unique]
    if set(key) not in unique_sets:
        pk = ", ".join(c.name for c in table.primary_key.columns)
        raise ValueError(
            f"upsert into {table.fullname}: key ({', '.join(key)}) is neither the primary key ({pk}) "
            "nor a unique constraint, so conflicts cannot be detected"
        )


def _check_columns(table: sa.Table, columns: Iterable[str], *, what: str) -> None:
    unknown = [c for c in columns if c not in table.c]
    if unknown:
        raise ValueError(
            f"upsert into {table.fullname}: {what} names unknown column(s) {', '.join(sorted(unknown))}"
        )


def _key_function(table: sa.Table, key: list[str]) -> Any:
    """row -> its key as the database compares it (a timestamp string and a datetime match)."""
    timestamps = {k for k in key if isinstance(table.c[k].type, UtcDateTime)}
    if not timestamps:
        if len(key) == 1:
            only = key[0]
            return lambda row: row[only]
        return lambda row: tuple(row[k] for k in key)
    return lambda row: tuple(to_utc(row[k]) if k in timestamps else row[k] for k in key)


def _dedupe(rows: Iterable[dict[str, Any]], key: list[str], table: sa.Table) -> list[dict[str, Any]]:
    rows = rows if isinstance(rows, list) else list(rows)
    ident = _key_function(table, key)
    try:
        by_key = {ident(row): row for row in rows}  # the last row of a repeated key wins
    except KeyError as exc:
        i = next(i for i, row in enumerate(rows) if exc.args[0] not in row)
        raise ValueError(f"upsert into {table.fullname}: row {i} lacks key column {exc.args[0]}") from None
    return rows if len(by_key) == len(rows) else list(by_key.values())


def _groups(rows: list[dict[str, Any]]) -> list[tuple[tuple[str, ...], list[dict[str, Any]]]]:
    """Split rows by the set of columns they carry (one executemany needs one column set)."""
    if not rows:
        return []
    first = rows[0].keys()
    if all(row.keys() == first for row in rows):  # the usual case, checked at C speed
        return [(tuple(first), rows)]
    groups: dict[frozenset[str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(frozenset(row), []).append(row)
    return [(tuple(sorted(cols)), group) for cols, group in groups.items()]


def _python_values(table: sa.Table, given: Iterable[str], attr: str) -> dict[str, Any]:
    """Scalar/callable ``default`` or ``onupdate`` values for columns the rows do not carry."""
    given = set(given)
    values: dict[str, Any] = {}
    for col in table.columns:
        generator = getattr(col, attr)
        if col.name in given or generator is None:
            continue
        if generator.is_scalar:
            values[col.name] = generator.arg
        elif generator.is_callable:
            values[col.name] = generator.arg(None)  # SQLAlchemy wraps callables to take a context
    return values


# -- strategies ------------------------------------------------------------------------------


def _compared(table: sa.Table, updates: list[str]) -> list[str]:
    """Columns whose change justifies an update: not the write-time stamps (``onupdate`` columns)."""
    return [c for c in updates if table.c[c].onupdate is None]


def _changed(table: sa.Table, updates: list[str], new: Callable[[str], Any]) -> Any:
    """``stored IS DISTINCT FROM new`` over the compared columns, or None to always update."""
    compared = _compared(table, updates)
    if not compared:
        return None
    return sa.or_(*(table.c[c].is_distinct_from(new(c)) for c in compared))


def _on_conflict(
    conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]], key: list[str], updates: list[str]
) -> None:
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert

    stmt = insert(table)
    if updates:
        refresh = _python_values(table, rows[0], "onupdate")
        if refresh:
            # Carried as row values and taken from EXCLUDED: a bound literal in SET breaks
            # SQLAlchemy's multi-row batching (sqlalchemy#13130).
            rows = [{**row, **refresh} for row in rows]
        stmt = stmt.on_conflict_do_update(
            index_elements=key,
            set_={c: stmt.excluded[c] for c in [*updates, *refresh]},
            where=_changed(table, updates, lambda c: stmt.excluded[c]),
        )
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=key)
    if conn.dialect.name == "postgresql" and conn.dialect.insert_executemany_returning:
        conn.execute(stmt.returning(table.c[key[0]]), rows).close()
    else:
        conn.execute(stmt, rows)


def _copy_merge(
    conn: sa.Connection,
    table: sa.Table,
    rows: list[dict[str, Any]],
    columns: list[str],
    key: list[str],
    updates: list[str],
) -> None:
    """PostgreSQL + psycopg2: COPY the rows into a temporary table, merge with ON CONFLICT."""
    defaults = _python_values(table, columns, "default")
    refresh = _python_values(table, columns, "onupdate") if updates else {}
    constants = {**defaults, **refresh}  # on insert, onupdate columns take their fresh value
    all_columns = [*columns, *(c for c in constants if c not in columns)]

    prep = conn.dialect.identifier_preparer
    target = prep.format_table(table)
    stage = prep.quote(f"_mc_stage_{uuid.uuid4().hex[:12]}")
    cols_sql = ", ".join(prep.quote(c) for c in all_columns)

    processors = [table.c[c].type._cached_bind_processor(conn.dialect) for c in columns]
    tail = "".join(
        "\t" + _copy_text(_bind(table, c, v, conn.dialect), table, c)
        for c, v in constants.items()
        if c not in columns
    )
    lines = []
    for row in rows:
        fields = []
        for col, proc in zip(columns, processors):
            value = row[col]
            if proc is not None:
                value = proc(value)
            if value is None:
                fields.append("\\N")
            elif type(value) is str:
                fields.append(value.translate(_COPY_ESCAPES) if "\\" in value or not value.isprintable() else value)
            else:
                fields.append(_copy_text(value, table, col, row, key))
        lines.append("\t".join(fields) + tail)
    buf = io.StringIO("\n".join(lines) + "\n")
    del lines

    if updates:
        assignments = [*updates, *(c for c in refresh if c not in updates)]
        conflict = "DO UPDATE SET " + ", ".join(
            f"{prep.quote(c)} = EXCLUDED.{prep.quote(c)}" for c in assignments
        )
        compared = _compared(table, updates)
        if compared:
            conflict += " WHERE " + " OR ".join(
                f"_t.{prep.quote(c)} IS DISTINCT FROM EXCLUDED.{prep.quote(c)}" for c in compared
            )
    else:
        conflict = "DO NOTHING"
    key_sql = ", ".join(prep.quote(k) for k in key)

    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(f"CREATE TEMPORARY TABLE {stage} AS SELECT {cols_sql} FROM {target} WITH NO DATA")
        cursor.copy_expert(f"COPY {stage} ({cols_sql}) FROM STDIN", buf)
        cursor.execute(
            f"INSERT INTO {target} AS _t ({cols_sql}) SELECT {cols_sql} FROM {stage} "
            f"ON CONFLICT ({key_sql}) {conflict}"
        )
        cursor.execute(f"DROP TABLE {stage}")
    finally:
        cursor.close()


def _bind(table: sa.Table, column: str, value: Any, dialect: sa.Dialect) -> Any:
    proc = table.c[column].type._cached_bind_processor(dialect)
    return proc(value) if proc is not None else value


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(
    value: Any, table: sa.Table, column: str, row: dict[str, Any] | None = None, key: list[str] | None = None
) -> str:
    """One value in PostgreSQL's COPY text format (after the column type's bind processing)."""
    if value is None:
        return "\\N"
    if isinstance(value, str):
        return value.translate(_COPY_ESCAPES)
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, (int, float, decimal.Decimal, uuid.UUID)):
        return str(value)
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    record = f" (row {', '.join(f'{k}={row[k]!r}' for k in key or [])})" if row is not None else ""
    raise TypeError(
        f"upsert into {table.fullname}{record}: column {column} got a {type(value).__name__}, "
        "which has no SQL form; convert it first (JSON columns take dicts/lists, others scalars)"
    )


def _generic(
    conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]], key: list[str], updates: list[str]
) -> None:
    ident = _key_function(table, key)
    existing = _existing_keys(conn, table, rows, key)
    to_update = [r for r in rows if ident(r) in existing]
    to_insert = [r for r in rows if ident(r) not in existing]
    if to_update and updates:
        # bind names must differ from column names in an executemany UPDATE
        where = sa.and_(*(table.c[k] == sa.bindparam(f"_key_{k}") for k in key))
        changed = _changed(table, updates, lambda c: sa.bindparam(f"_new_{c}"))
        if changed is not None:
            where = sa.and_(where, changed)
        values: dict[str, Any] = {c: sa.bindparam(f"_new_{c}") for c in updates}
        values.update(_python_values(table, rows[0], "onupdate"))
        params = [
            {**{f"_key_{k}": r[k] for k in key}, **{f"_new_{c}": r[c] for c in updates}} for r in to_update
        ]
        conn.execute(sa.update(table).where(where).values(values), params)
    if to_insert:
        conn.execute(sa.insert(table), to_insert)


def _existing_keys(
    conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]], key: list[str], page: int = 500
) -> set[Any]:
    """Which of the rows' keys are already stored (read back through the column types)."""
    ident = _key_function(table, key)
    found: set[Any] = set()
    cols = [table.c[k] for k in key]
    for start in range(0, len(rows), page):
        part = rows[start : start + page]
        if len(key) == 1:
            cond = cols[0].in_([r[key[0]] for r in part])
        else:
            cond = sa.or_(*(sa.and_(*(c == r[c.name] for c in cols)) for r in part))
        for stored in conn.execute(sa.select(*cols).where(cond)):
            found.add(ident(dict(zip(key, stored))))
    return found
