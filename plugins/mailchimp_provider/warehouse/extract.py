"""Streamed extraction: run an ``include/sql/<entity>.sql`` query and yield its rows in chunks.

Users adapt the sync to their warehouse by editing those SQL files (or pointing them at views),
so the query text is data, not code. Rows are fetched through a server-side cursor
(``stream_results``/``yield_per``): a 10-million-row customer table costs one chunk of memory.

Drivers disagree on types, so values are normalised by the contract's logical column types
(``source_tables.SOURCE_COLUMNS``): SQLite's 0/1 become ``bool``, timestamp strings and naive
datetimes become aware UTC datetimes, float money becomes ``Decimal``.

One bad value is one bad record, never a failed query: a value that cannot be read or converted
(``created_at = 'not a date'``, ``marketing_opt_in = 2``, text that is not UTF-8 on SQLite) is
left as the driver returned it and the row is yielded marked with :data:`REJECTED` (a
:class:`BadValue` naming the column and the value). The sync engine records such a row as
``skipped`` with reason ``bad_value``; the rest of the run goes on. Readers of safety inputs
(erasure requests) pass ``strict=True`` instead, and the first bad value raises.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from mailchimp_provider.errors import MailchimpConfigError
from mailchimp_provider.include_paths import SQL_DIR_ENV, sql_dir
from mailchimp_provider.warehouse.source_tables import COLUMN_TYPES, SOURCE_COLUMNS
from mailchimp_provider.warehouse.tables import to_utc

DEFAULT_CHUNK_SIZE = 5_000
REJECTED = "_rejected"
"""Reserved key of a yielded row whose value is a :class:`BadValue`: the row could not be read."""
SHOWN_VALUE_CHARS = 40
"""How much of a bad value a reason shows (values may be long, binary or personal)."""


def sql_path(name_or_path: str | os.PathLike[str]) -> Path:
    """Resolve an entity name (``customers``) or a path to a ``.sql`` file."""
    text = os.fspath(name_or_path)
    is_path = isinstance(name_or_path, os.PathLike) or text.endswith(".sql") or os.sep in text
    path = Path(text).expanduser() if is_path else sql_dir() / f"{text}.sql"
    if not path.is_file():
        raise MailchimpConfigError(
            f"SQL file {str(path)!r} not found (query {text!r}). Entity queries live in {sql_dir()} "
            f"(override with ${SQL_DIR_ENV}); pass a path to use another file."
        )
    return path


def load_sql(name_or_path: str | os.PathLike[str]) -> str:
    """The query text, without a trailing semicolon (drivers refuse two statements)."""
    sql = sql_path(name_or_path).read_text(encoding="utf-8").strip()
    return sql[:-1].rstrip() if sql.endswith(";") else sql


@dataclass(frozen=True)
class BadValue:
    """A value that could not be read: which column, the value (shortened), and what was expected."""

    column: str
    value: Any
    problem: str
    """What the value is not, e.g. ``is not a timestamp``."""

    @property
    def detail(self) -> str:
        """``column created_at: 'not a date' is not a timestamp`` (the value shortened)."""
        return f"column {self.column}: {shorten(self.value)} {self.problem}"


def shorten(value: Any, limit: int = SHOWN_VALUE_CHARS) -> str:
    """``repr`` of a value cut to ``limit`` characters, so a reason stays one readable line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


_PROBLEMS = {
    "bool": "is not a boolean (true/false, 1/0)",
    "decimal": "is not a number",
    "int": "is not an integer",
    "timestamp": "is not a timestamp",
}


def types_for(entity: str, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """Logical type per column for a query named ``entity`` (the contract's, then ``overrides``)."""
    return {**COLUMN_TYPES, **SOURCE_COLUMNS.get(entity, {}), **(overrides or {})}


def row_reader(
    keys: list[str], types: Mapping[str, str], *, convert: bool = True, bytes_are_bad: bool = False,
    convert_only: Collection[str] | None = None,
) -> Callable[[Any], dict[str, Any]]:
    """A function turning one driver row (a sequence in ``keys`` order) into a dict.

    With ``convert`` the values of typed columns are normalised (see the module docstring);
    without it they are only checked, and stay as the driver returned them (the merge-joined
    e-commerce sources, whose payload builders normalise every type). Either way a value that
    cannot be read marks the row with :data:`REJECTED` instead of raising. With ``bytes_are_bad``
    (SQLite read under :func:`tolerant_text`) a ``bytes`` value is text that could not be decoded,
    and rejects its row the same way. ``convert_only`` (with ``convert``) limits the conversion to
    those columns; the others are read as with ``convert=False`` (checked, left as they came): the
    columns a consumer never reads need not pay for conversion (a no-change rerun's timestamps).
    """

    def converts(k: str) -> bool:
        return convert and (convert_only is None or k in convert_only)

    converters = [(_CONVERTERS if converts(k) else _CHECKERS).get(types.get(k, ""), _any_value) for k in keys]
    # Text columns pass through as they are; only the others cost a call per value. Values the
    # driver already typed need no check when they are not converted.
    typed = [(i, k, types.get(k, ""), fn, converts(k)) for i, (k, fn) in enumerate(zip(keys, converters))
             if fn is not _to_text and (converts(k) or fn is not _any_value)]

    def read(row: Any) -> dict[str, Any]:
        record: dict[str, Any] = dict(zip(keys, row))
        for i, k, kind, fn, store in typed:
            value = row[i]
            if value is None or (not store and type(value) in _DRIVER_TYPED.get(kind, ())):
                continue
            try:
                result = fn(value)
            except (ValueError, TypeError, InvalidOperation, ArithmeticError):
                record[REJECTED] = BadValue(k, value, _PROBLEMS.get(kind, "cannot be read"))
                return record
            if store:
                record[k] = result
        if bytes_are_bad and bytes in map(type, row):  # C-speed scan; rare hit
            column = next(k for k, v in zip(keys, row) if type(v) is bytes)
            record[REJECTED] = BadValue(column, record[column], "is not valid UTF-8 text")
        return record

    return read


def converted(record: Mapping[str, Any], types: Mapping[str, str]) -> dict[str, Any]:
    """``record`` with every typed value converted as a full read converts it (a row read with
    ``convert_only`` made whole again, e.g. to name a row without an id exactly as before);
    values already converted stay as they are, a value that cannot be converted is left alone."""
    out = dict(record)
    for k, value in record.items():
        fn = _CONVERTERS.get(types.get(k, ""))
        if value is None or fn is None or fn is _to_text:
            continue
        try:
            out[k] = fn(value)
        except (ValueError, TypeError, InvalidOperation, ArithmeticError):
            pass
    return out


_DRIVER_TYPED: dict[str, tuple[type, ...]] = {
    "bool": (bool,),
    "decimal": (Decimal, int, float),
    "int": (int,),
    "timestamp": (datetime,),
}


def _undecodable_as_bytes(raw: bytes) -> str | bytes:
    """SQLite ``text_factory``: UTF-8 text as ``str``; anything else stays ``bytes`` so that one
    row can be rejected by name instead of the whole query failing with ``OperationalError``."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


@contextmanager
def tolerant_text(conn: sa.Connection) -> Iterator[None]:
    """While the block runs, SQLite text that is not valid UTF-8 is read as ``bytes`` on ``conn``
    (other dialects are left alone: PostgreSQL refuses invalid text when it is written)."""
    if conn.dialect.name != "sqlite":
        yield
        return
    raw = conn.connection.driver_connection
    if not isinstance(raw, sqlite3.Connection):
        yield
        return
    previous = raw.text_factory
    raw.text_factory = _undecodable_as_bytes
    try:
        yield
    finally:
        raw.text_factory = previous


def stream_sql(
    engine: sa.Engine,
    name_or_path: str | os.PathLike[str],
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    params: Mapping[str, Any] | None = None,
    column_types: Mapping[str, str] | None = None,
    strict: bool | Collection[str] = False,
    convert_only: Collection[str] | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """Yield the query's rows as lists of at most ``chunk_size`` dicts (column name -> value).

    ``params`` binds ``:name`` placeholders in the SQL. ``column_types`` (column -> ``bool``,
    ``timestamp``, ``decimal``, ``int`` or ``text``) overrides the contract's types, for queries
    with extra columns. A row with a value that cannot be read carries :data:`REJECTED`; with
    ``strict`` (safety inputs: True, or the columns that matter) it raises ``ValueError`` naming
    the query file, the record and the column instead. ``convert_only``: convert just these
    columns; the others are checked and left as the driver returned them (see :func:`row_reader`).
    """
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    label = os.fspath(name_or_path)
    from mailchimp_provider.warehouse.optional_inputs import resolve_optional_columns

    sql = resolve_optional_columns(engine, load_sql(name_or_path))
    entity = Path(label).stem if label.endswith(".sql") else label
    types = types_for(entity, column_types)

    with engine.connect() as conn, tolerant_text(conn):
        result = conn.execution_options(stream_results=True, yield_per=chunk_size).execute(
            sa.text(sql), dict(params or {})
        )
        try:
            keys = list(result.keys())
            read = row_reader(keys, types, bytes_are_bad=conn.dialect.name == "sqlite", convert_only=convert_only)
            for partition in result.partitions(chunk_size):
                chunk = [read(row) for row in partition]
                if strict:
                    for record in chunk:
                        bad = record.get(REJECTED)
                        if bad is not None and (strict is True or bad.column in strict):
                            raise ValueError(
                                f"query {label!r} ({sql_path(name_or_path)}), record {keys[0]}="
                                f"{shorten(record.get(keys[0]))}: {bad.detail}"
                            )
                yield chunk
        finally:
            result.close()


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, Decimal)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _BOOL_STRINGS:
        return _BOOL_STRINGS[value.strip().lower()]
    raise ValueError("expected a boolean (true/false, 1/0)")


_BOOL_STRINGS = {"1": True, "0": False, "t": True, "f": False, "true": True, "false": False,
                 "y": True, "n": False, "yes": True, "no": False}


def _to_decimal(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))  # 19.99 -> Decimal('19.99'), not its binary expansion
    if isinstance(value, bool):
        raise TypeError("expected a number, got a boolean")
    return Decimal(str(value).strip())


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError("expected an integer, got a boolean")
    if isinstance(value, int):
        return value
    number = _to_decimal(value)
    if number != number.to_integral_value():
        raise ValueError("expected an integer")
    return int(number)


def _to_timestamp(value: Any) -> datetime | None:
    return to_utc(value)  # '' reads as NULL


def _to_text(value: Any) -> Any:
    return value


_from_iso = datetime.fromisoformat


def _check_timestamp(value: Any) -> Any:
    """The timestamp check of an unconverted read: the common ISO text costs one C call."""
    try:
        return _from_iso(value)
    except (TypeError, ValueError):
        return to_utc(value)


def _any_value(value: Any) -> Any:
    return to_utc(value) if isinstance(value, datetime) else value


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "bool": _to_bool,
    "decimal": _to_decimal,
    "int": _to_int,
    "timestamp": _to_timestamp,
    "text": _to_text,
}
_CHECKERS: dict[str, Callable[[Any], Any]] = {**_CONVERTERS, "timestamp": _check_timestamp}
"""Checks of an unconverted read (``row_reader(convert=False)``): what is returned is ignored."""
