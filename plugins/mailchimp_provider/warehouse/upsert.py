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

``upsert_counts`` is the same upsert, saying what it did: rows inserted, updated and left
unchanged (the engagement pull logs these per table). PostgreSQL tells an insert from an update
per row (``RETURNING xmax = 0``); SQLite counts the stored keys first; the generic strategy counts
matched UPDATE rows where the driver reports them. ``new_keys=True`` is for loads whose keys are
known to be absent (a campaign's first activity read): PostgreSQL then COPYs straight into the
table, skipping the staging table and the conflict check; a broken promise fails on the key.
That COPY is first tried without de-duplicating the input (hashing every key costs more than
the COPY's own Python work), inside a savepoint; when a key repeats within the rows, the
savepoint is rolled back and the rows are de-duplicated and COPYed again.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import io
import operator
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import IO, Any, Literal

import sqlalchemy as sa

from mailchimp_provider.warehouse.tables import JsonText, UtcDateTime, to_utc

DEFAULT_CHUNK_SIZE = 50_000
# Below this many rows a multi-row INSERT beats creating a staging table.
COPY_THRESHOLD = 2_000
COPY_READ_SIZE = 4 * 1024 * 1024
"""Characters psycopg2 reads from the COPY buffer at a time. Each read takes the GIL back; with
the default 8 KB a COPY running in a writer thread waited on the parsing thread thousands of
times per campaign."""

Strategy = Literal["auto", "copy", "on_conflict", "generic"]


@dataclass
class UpsertCounts:
    """What an upsert did: rows inserted (new keys), updated (values changed), unchanged."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0

    def add(self, other: "UpsertCounts") -> None:
        self.inserted += other.inserted
        self.updated += other.updated
        self.unchanged += other.unchanged

    @property
    def written(self) -> int:
        """Rows of the input after collapsing repeated keys."""
        return self.inserted + self.updated + self.unchanged


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
    return _upsert(conn, table, rows, key, update_columns, chunk_size, strategy, count=False, new_keys=False).written


def upsert_counts(
    conn: sa.Connection,
    table: sa.Table,
    rows: Iterable[dict[str, Any]],
    key: Sequence[str],
    update_columns: Sequence[str] | None = None,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    strategy: Strategy = "auto",
    new_keys: bool = False,
) -> UpsertCounts:
    """``upsert`` that returns how many rows it inserted, updated and left unchanged.

    ``new_keys=True`` promises that no key of ``rows`` is stored yet (check it in the same
    transaction); see the module docstring.
    """
    return _upsert(conn, table, rows, key, update_columns, chunk_size, strategy, count=True, new_keys=new_keys)


def _upsert(
    conn: sa.Connection,
    table: sa.Table,
    rows: Iterable[dict[str, Any]],
    key: Sequence[str],
    update_columns: Sequence[str] | None,
    chunk_size: int,
    strategy: Strategy,
    *,
    count: bool,
    new_keys: bool,
    dedupe: bool = True,
) -> UpsertCounts:
    key = list(key)
    _check_key(table, key)
    if update_columns is not None:
        _check_columns(table, update_columns, what="update_columns")
    if new_keys and dedupe and strategy in ("auto", "copy") and _choose(conn, 0, new_keys) == "copy":
        rows = _as_list(rows)
        try:
            with conn.begin_nested():
                return _upsert(conn, table, rows, key, update_columns, chunk_size, strategy,
                               count=count, new_keys=True, dedupe=False)
        except conn.dialect.dbapi.IntegrityError:  # type: ignore[union-attr]
            pass  # a key repeats within the rows: de-duplicate (the last row wins) and COPY again

    counts = UpsertCounts()
    for columns, group in _groups(_dedupe(rows, key, table) if dedupe else _as_list(rows)):
        _check_columns(table, columns, what="row")
        missing = [k for k in key if k not in columns]
        if missing:
            raise ValueError(f"upsert into {table.fullname}: rows lack key column(s) {', '.join(missing)}")
        updates = [c for c in (columns if update_columns is None else update_columns) if c not in key]
        updates = [c for c in updates if c in columns]
        for start in range(0, len(group), chunk_size):
            chunk = group[start : start + chunk_size]
            how = _choose(conn, len(chunk), new_keys) if strategy == "auto" else strategy
            if how == "copy":
                done = _copy_merge(conn, table, chunk, list(columns), key, updates, count=count, new_keys=new_keys)
            elif how == "on_conflict":
                done = _on_conflict(conn, table, chunk, key, updates, count=count)
            else:
                done = _generic(conn, table, chunk, key, updates)
            counts.add(done if done is not None else UpsertCounts(updated=len(chunk)))
    return counts


def _choose(conn: sa.Connection, n: int, new_keys: bool = False) -> Strategy:
    name = conn.dialect.name
    if name == "postgresql":
        # Straight COPY into the table has no staging cost, so it wins at any size.
        big = n >= COPY_THRESHOLD or new_keys
        return "copy" if big and conn.dialect.driver == "psycopg2" else "on_conflict"
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


def _key_function(table: sa.Table, key: list[str], rows: list[dict[str, Any]] | None = None) -> Any:
    """row -> its key as the database compares it (a timestamp string and a datetime match).

    Aware datetimes already compare and hash by instant, so when every timestamp key of ``rows``
    is one (what the normalisers produce), the key is read as is.
    """
    get = operator.itemgetter(*key) if len(key) > 1 else (lambda row, _k=key[0]: row[_k])
    timestamps = [k for k in key if isinstance(table.c[k].type, UtcDateTime)]
    if not timestamps:
        return get
    if rows is not None and all(
        type(v) is _dt.datetime and v.tzinfo is not None for k in timestamps for v in [row[k] for row in rows]
    ):
        return get
    return lambda row: tuple(to_utc(row[k]) if k in timestamps else row[k] for k in key)


def _dedupe(rows: Iterable[dict[str, Any]], key: list[str], table: sa.Table) -> list[dict[str, Any]]:
    rows = _as_list(rows)
    try:
        ident = _key_function(table, key, rows)
        by_key = {ident(row): row for row in rows}  # the last row of a repeated key wins
    except KeyError as exc:
        i = next(i for i, row in enumerate(rows) if exc.args[0] not in row)
        raise ValueError(f"upsert into {table.fullname}: row {i} lacks key column {exc.args[0]}") from None
    return rows if len(by_key) == len(rows) else list(by_key.values())


def _as_list(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return rows if isinstance(rows, list) else list(rows)


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
    conn: sa.Connection,
    table: sa.Table,
    rows: list[dict[str, Any]],
    key: list[str],
    updates: list[str],
    *,
    count: bool = False,
) -> UpsertCounts | None:
    postgres = conn.dialect.name == "postgresql"
    if postgres:
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
    if count and postgres:
        # One flag per row written: xmax = 0 for an insert; unchanged rows return nothing.
        flags = conn.execute(stmt.returning(sa.literal_column("(xmax = 0)")), rows).scalars().all()
        inserted = sum(1 for f in flags if f)
        return UpsertCounts(inserted, len(flags) - inserted, len(rows) - len(flags))
    if count:
        stored = _count_stored(conn, table, rows, key)
        touched = len(conn.execute(stmt.returning(sa.literal_column("1")), rows).all())
        inserted = len(rows) - stored
        return UpsertCounts(inserted, touched - inserted, len(rows) - touched)
    if postgres and conn.dialect.insert_executemany_returning:
        conn.execute(stmt.returning(table.c[key[0]]), rows).close()
    elif not postgres:
        _executemany_positional(conn, stmt, rows)
    else:
        conn.execute(stmt, rows)
    return None


_UNSET: Any = object()


def _executemany_positional(conn: sa.Connection, stmt: Any, rows: list[dict[str, Any]]) -> None:
    """Compile once, bind each row as a tuple, and let the driver's executemany loop.

    SQLAlchemy's executemany processes every row's parameters in Python (about half the time of
    a 100k-row bookkeeping write on SQLite); here only columns whose type converts values
    (timestamps, JSON) pay a call per row.
    """
    compiled = stmt.compile(dialect=conn.dialect, column_keys=list(rows[0]))
    names = list(compiled.positiontup or [])
    if not names or any(name not in rows[0] for name in names):
        conn.execute(stmt, rows)  # a bind that is not a row value: let SQLAlchemy do it
        return
    procs = [compiled.binds[name].type._cached_bind_processor(conn.dialect) for name in names]
    get = operator.itemgetter(*names) if len(names) > 1 else (lambda row, _n=names[0]: (row[_n],))
    if any(procs):
        convert = [(i, p, [_UNSET, None]) for i, p in enumerate(procs) if p is not None]

        def bind(row: dict[str, Any]) -> tuple[Any, ...]:
            # A value that is the very object of the previous row (the slice's one timestamp,
            # the onupdate stamp) is converted once: nothing changes values while rows are bound.
            values = list(get(row))
            for i, proc, last in convert:
                value = values[i]
                if value is not last[0]:
                    last[0], last[1] = value, proc(value)
                values[i] = last[1]
            return tuple(values)

        params = [bind(row) for row in rows]
    else:
        params = [get(row) for row in rows]
    conn.exec_driver_sql(str(compiled), params)


def _count_stored(conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]], key: list[str]) -> int:
    """How many of the rows' keys are stored (pages of 200 keys).

    A composite key is matched as ``prefix = ... AND last IN (...)``, one term per distinct
    prefix (e.g. one ``list_id``), not as a row-value ``IN``: SQLite scans the whole index for a
    row-value ``IN`` list, so each page cost time in proportion to the table (reading back a
    million members took over a second per page of 1,000), where the split form is an index
    search per key."""
    found = 0
    cols = [table.c[k] for k in key]
    for start in range(0, len(rows), 200):
        part = rows[start : start + 200]
        if len(key) == 1:
            cond = cols[0].in_([r[key[0]] for r in part])
        else:
            by_prefix: dict[tuple[Any, ...], list[Any]] = {}
            for r in part:
                by_prefix.setdefault(tuple(r[k] for k in key[:-1]), []).append(r[key[-1]])
            cond = sa.or_(*(
                sa.and_(*(c == v for c, v in zip(cols[:-1], prefix)), cols[-1].in_(last))
                for prefix, last in by_prefix.items()
                if None not in prefix  # a NULL key part matches nothing, as in the row-value form
            ), sa.false())
        found += int(conn.execute(sa.select(sa.func.count()).select_from(table).where(cond)).scalar_one())
    return found


@dataclass(frozen=True)
class CopyLayout:
    """How rows of ``columns`` become COPY lines of ``table``: the columns the rows carry, then
    the columns the table fills with Python-side values (defaults, ``onupdate``) as a fixed tail."""

    table: sa.Table
    columns: tuple[str, ...]
    all_columns: tuple[str, ...]
    tail: str
    """The tail's fields (each after a tab), the same on every line."""
    dialect: sa.Dialect


def copy_layout(table: sa.Table, columns: Sequence[str], dialect: sa.Dialect, *, updates: bool = False) -> CopyLayout:
    """The COPY layout of rows carrying ``columns``; the tail's values (defaults such as
    ``synced_at``) are taken now. With ``updates`` (rows that may update stored ones, merged from a
    staging table) ``onupdate`` values are in the tail too."""
    defaults = _python_values(table, columns, "default")
    refresh = _python_values(table, columns, "onupdate") if updates else {}
    constants = {**defaults, **refresh}
    extra = [c for c in constants if c not in columns]
    tail = "".join("\t" + _copy_text(_bind(table, c, constants[c], dialect), table, c) for c in extra)
    return CopyLayout(table, tuple(columns), (*columns, *extra), tail, dialect)


def copy_lines(conn: sa.Connection, layout: CopyLayout, text: str) -> bool:
    """COPY rows already formatted for ``layout`` (one line each, tail included) straight into its
    table, keys known to be absent; inside a savepoint (PostgreSQL with psycopg2 only).

    Returns False, having written nothing, when a key is stored already or repeats within the
    text: the caller then loads those rows through ``upsert_counts``, which resolves both.
    """
    if conn.dialect.name != "postgresql" or conn.dialect.driver != "psycopg2":
        raise ValueError(f"copy_lines needs PostgreSQL with psycopg2, not {conn.dialect.name}+{conn.dialect.driver}")
    try:
        with conn.begin_nested():
            _copy_into(conn, layout, _format_table(conn, layout.table), io.StringIO(text))
    except conn.dialect.dbapi.IntegrityError:  # type: ignore[union-attr]
        return False
    return True


def _format_table(conn: sa.Connection, table: sa.Table) -> str:
    return conn.dialect.identifier_preparer.format_table(table)


def _copy_into(conn: sa.Connection, layout: CopyLayout, target: str, buf: IO[str]) -> None:
    prep = conn.dialect.identifier_preparer
    cols_sql = ", ".join(prep.quote(c) for c in layout.all_columns)
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.copy_expert(f"COPY {target} ({cols_sql}) FROM STDIN", buf, size=COPY_READ_SIZE)
    finally:
        cursor.close()


def _copy_merge(
    conn: sa.Connection,
    table: sa.Table,
    rows: list[dict[str, Any]],
    columns: list[str],
    key: list[str],
    updates: list[str],
    *,
    count: bool = False,
    new_keys: bool = False,
) -> UpsertCounts | None:
    """PostgreSQL + psycopg2: COPY the rows into a temporary table, merge with ON CONFLICT.

    With ``new_keys`` the rows are COPYed straight into ``table`` (no stage, no conflict check).
    """
    layout = copy_layout(table, columns, conn.dialect, updates=bool(updates))
    buf = CopyFormatter(layout, key).buffer(rows)
    target = _format_table(conn, table)
    if new_keys:
        _copy_into(conn, layout, target, buf)
        return UpsertCounts(inserted=len(rows))
    prep = conn.dialect.identifier_preparer
    cols_sql = ", ".join(prep.quote(c) for c in layout.all_columns)
    if updates:
        refresh = _python_values(table, columns, "onupdate")
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
    stage = prep.quote(f"_mc_stage_{uuid.uuid4().hex[:12]}")
    merge = (
        f"INSERT INTO {target} AS _t ({cols_sql}) SELECT {cols_sql} FROM {stage} "
        f"ON CONFLICT ({key_sql}) {conflict}"
    )
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(f"CREATE TEMPORARY TABLE {stage} AS SELECT {cols_sql} FROM {target} WITH NO DATA")
        _copy_into(conn, layout, stage, buf)
        counts = None
        if count:
            cursor.execute(
                f"WITH _w AS ({merge} RETURNING (_t.xmax = 0) AS _inserted) "
                "SELECT count(*) FILTER (WHERE _inserted), count(*) FROM _w"
            )
            inserted, written = cursor.fetchone()
            counts = UpsertCounts(inserted, written - inserted, len(rows) - written)
        else:
            cursor.execute(merge)
        cursor.execute(f"DROP TABLE {stage}")
        return counts
    finally:
        cursor.close()


class CopyFormatter:
    """Rows (dicts) to lines of COPY text for a layout: each value through its column's bind
    processing, then COPY escaping.

    Hot loop (a million rows per activity load): NULLs and strings that need no escaping (no
    backslash, tab or line break), of columns that bind strings unchanged, are placed without a
    function call; every other value goes through its column's formatter.
    """

    def __init__(self, layout: CopyLayout, key: Sequence[str] = ()) -> None:
        self.layout = layout
        self.key = list(key)
        table, dialect = layout.table, layout.dialect
        self._specs = [
            (_binds_text_verbatim(table.c[c], dialect), _copy_formatter(table, c, dialect)) for c in layout.columns
        ]
        columns = layout.columns
        self._get = operator.itemgetter(*columns) if len(columns) > 1 else (lambda row, _c=columns[0]: (row[_c],))
        self._end = layout.tail + "\n"

    def write(self, rows: Iterable[dict[str, Any]], write: Callable[[str], Any]) -> None:
        """Write one line per row (a TypeError names the row and column that has no SQL form)."""
        specs, get, end = self._specs, self._get, self._end
        row: dict[str, Any] = {}
        try:
            for row in rows:
                write("\t".join([
                    # copy_verbatim(v), inlined: this runs for every value of a million rows
                    v if (same and v.__class__ is str and "\\" not in v and v.isprintable())
                    else ("\\N" if v is None else fmt(v))
                    for v, (same, fmt) in zip(get(row), specs)
                ]))
                write(end)
        except TypeError:
            # Say which row: format the failing row again, the slow way, naming its key.
            table, dialect = self.layout.table, self.layout.dialect
            for column in self.layout.columns:
                _copy_text(_bind(table, column, row[column], dialect), table, column, row, self.key)
            raise

    def buffer(self, rows: Iterable[dict[str, Any]]) -> io.StringIO:
        """All rows in one buffer, positioned at its start (no per-row lists kept)."""
        buf = io.StringIO()
        self.write(rows, buf.write)
        buf.seek(0)
        return buf


def _binds_text_verbatim(column: sa.Column, dialect: sa.Dialect) -> bool:
    """True when a ``str`` value reaches the database unchanged (no bind processing, or JSON text)."""
    return column.type._cached_bind_processor(dialect) is None or isinstance(column.type, JsonText)


def _copy_formatter(table: sa.Table, column: str, dialect: sa.Dialect) -> Callable[[Any], str]:
    """``value -> COPY field`` for one column: its bind processing, then COPY escaping.

    The common values skip the generic path: plain strings need escaping only when they hold a
    backslash or a control character, and aware UTC datetimes are already what ``UtcDateTime``
    would bind.
    """
    proc = table.c[column].type._cached_bind_processor(dialect)
    utc_column = isinstance(table.c[column].type, UtcDateTime)
    utc = _dt.timezone.utc

    def fmt(value: Any) -> str:
        if value is None:
            return "\\N"
        kind = type(value)
        if kind is str and proc is None:
            return value if copy_verbatim(value) else value.translate(_COPY_ESCAPES)
        if utc_column and kind is _dt.datetime and value.tzinfo is utc:
            return value.isoformat()
        if proc is not None:
            value = proc(value)
        return _copy_text(value, table, column)

    return fmt


def _bind(table: sa.Table, column: str, value: Any, dialect: sa.Dialect) -> Any:
    proc = table.c[column].type._cached_bind_processor(dialect)
    return proc(value) if proc is not None else value


def copy_verbatim(value: str) -> bool:
    """A string COPY's text format takes as is: no backslash, tab, line break or other control
    character (the escapes are only needed for those)."""
    return "\\" not in value and value.isprintable()


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
) -> UpsertCounts:
    ident = _key_function(table, key)
    existing = _existing_keys(conn, table, rows, key)
    to_update = [r for r in rows if ident(r) in existing]
    to_insert = [r for r in rows if ident(r) not in existing]
    updated = 0
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
        result = conn.execute(sa.update(table).where(where).values(values), params)
        # Rows matched (changed) when the driver can tell for an executemany; else an upper bound.
        updated = result.rowcount if conn.dialect.supports_sane_multi_rowcount else len(to_update)
    if to_insert:
        conn.execute(sa.insert(table), to_insert)
    return UpsertCounts(len(to_insert), updated, len(to_update) - updated)


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
