"""Streamed extraction: run an ``include/sql/<entity>.sql`` query and yield its rows in chunks.

Users adapt the sync to their warehouse by editing those SQL files (or pointing them at views),
so the query text is data, not code. Rows are fetched through a server-side cursor
(``stream_results``/``yield_per``): a 10-million-row customer table costs one chunk of memory.

Drivers disagree on types, so values are normalised by the contract's logical column types
(``source_tables.SOURCE_COLUMNS``): SQLite's 0/1 become ``bool``, timestamp strings and naive
datetimes become aware UTC datetimes, float money becomes ``Decimal``. A value that cannot be
read raises ``ValueError`` naming the query, the record and the column.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from mailchimp_provider.errors import MailchimpConfigError
from mailchimp_provider.warehouse.source_tables import COLUMN_TYPES, SOURCE_COLUMNS
from mailchimp_provider.warehouse.tables import to_utc

SQL_DIR_ENV = "MAILCHIMP_SQL_DIR"
DEFAULT_CHUNK_SIZE = 5_000

# plugins/mailchimp_provider/warehouse/extract.py -> project root (include/ is a sibling of plugins/)
_PROJECT_ROOT = Path(__file__).resolve().parents[3]


def sql_dir() -> Path:
    """Where ``<name>.sql`` files are looked up: $MAILCHIMP_SQL_DIR, else ``<project>/include/sql``."""
    override = os.environ.get(SQL_DIR_ENV)
    if override:
        return Path(override).expanduser()
    candidates = [_PROJECT_ROOT / "include" / "sql"]
    airflow_home = os.environ.get("AIRFLOW_HOME")
    if airflow_home:
        candidates.append(Path(airflow_home) / "include" / "sql")
    candidates.append(Path.cwd() / "include" / "sql")
    return next((c for c in candidates if c.is_dir()), candidates[0])


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


def stream_sql(
    engine: sa.Engine,
    name_or_path: str | os.PathLike[str],
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    params: Mapping[str, Any] | None = None,
    column_types: Mapping[str, str] | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """Yield the query's rows as lists of at most ``chunk_size`` dicts (column name -> value).

    ``params`` binds ``:name`` placeholders in the SQL. ``column_types`` (column -> ``bool``,
    ``timestamp``, ``decimal``, ``int`` or ``text``) overrides the contract's types, for queries
    with extra columns.
    """
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    label = os.fspath(name_or_path)
    sql = load_sql(name_or_path)
    entity = Path(label).stem if label.endswith(".sql") else label
    types = {**COLUMN_TYPES, **SOURCE_COLUMNS.get(entity, {}), **(column_types or {})}

    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=chunk_size).execute(
            sa.text(sql), dict(params or {})
        )
        try:
            keys = list(result.keys())
            converters = [_CONVERTERS.get(types.get(k, ""), _any_value) for k in keys]
            # Text columns pass through as they are; only the others cost a call per value.
            converted = [(i, k, convert) for i, (k, convert) in enumerate(zip(keys, converters)) if convert is not _to_text]
            for partition in result.partitions(chunk_size):
                chunk = []
                for row in partition:
                    record: dict[str, Any] = dict(zip(keys, row))
                    for i, k, convert in converted:
                        value = row[i]
                        if value is None:
                            continue
                        try:
                            record[k] = convert(value)
                        except (ValueError, TypeError, InvalidOperation) as exc:
                            raise ValueError(
                                f"query {label!r}, record {keys[0]}={row[0]!r}: column {k!r} has "
                                f"unreadable value {value!r} ({exc})"
                            ) from None
                    chunk.append(record)
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


def _any_value(value: Any) -> Any:
    return to_utc(value) if isinstance(value, datetime) else value


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "bool": _to_bool,
    "decimal": _to_decimal,
    "int": _to_int,
    "timestamp": _to_timestamp,
    "text": _to_text,
}
