"""Inputs beyond the warehouse contract: detected for real, NULL when absent, said once per run.

The contract fixes the source tables' columns; the project reads a few more when a warehouse has
them (``OPTIONAL_COLUMNS``). A warehouse with exactly the contract's columns must work unchanged,
so the shipped queries name an optional column *qualified by its table*
(``orders.customer_email AS customer_email``) and :func:`resolve_optional_columns` replaces such a
reference with ``NULL`` when SQLAlchemy's inspector says the table has no such column. A user who
edits a query (other expressions, a view) keeps full control: only the qualified references of
this list are ever rewritten, and :func:`absent_optional_columns` probes what the query actually
returns (``SELECT * FROM (<query>) WHERE 1=0``, any dialect), so a query that does not select an
optional column simply turns its feature off.

Safety inputs are the other kind: :func:`read_safety_input` runs a query whose rows stop someone
from being contacted (erasure requests, consent). Its absence is never silent: a missing *table*
of an optional safety input means "not configured" (the caller logs it every run); any other
error is :class:`~mailchimp_provider.errors.MailchimpSafetyInputError` naming the SQL file, the
table and the column, raised before any write. A lost connection stays a retriable error.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from mailchimp_provider.errors import MailchimpSafetyInputError

log = logging.getLogger(__name__)

OPTIONAL_COLUMNS: dict[str, dict[str, str]] = {
    # table -> column -> what its absence turns off
    "orders": {
        "customer_email": "guest-checkout orders whose customer is not in customers are skipped (reason customer_unknown)",
        "customer_first_name": "customers created from guest-checkout orders get no first name",
        "customer_last_name": "customers created from guest-checkout orders get no last name",
        "cart_id": "a cart that became an order is deleted in Mailchimp only once its row leaves carts",
    },
}
"""Columns the project reads beyond the contract, per table (the query of the same name reads it)."""

OPTIONAL_TABLES: dict[str, str] = {
    # table -> what its absence turns off
    "carts": "carts are not synced (abandoned-cart emails get no carts)",
    "cart_lines": "carts are not synced (a Mailchimp cart needs its lines)",
}
"""Tables beyond the contract whose absence turns a feature off, never fails a run."""

_QUALIFIED = re.compile(
    r'(?<![\w."])(' + "|".join(re.escape(t) for t in OPTIONAL_COLUMNS) + r")\.(\w+)\b"
)


def table_columns(db: sa.Engine, table: str) -> set[str] | None:
    """Lower-cased column names of a table or view (default schema), or None when there is none."""
    inspector = sa.inspect(db)
    if not (inspector.has_table(table) or table in inspector.get_view_names()):
        return None
    return {str(c["name"]).lower() for c in inspector.get_columns(table)}


def resolve_optional_columns(db: sa.Engine, sql: str) -> str:
    """``sql`` with each ``<table>.<optional column>`` the table lacks replaced by ``NULL``.

    A table the inspector cannot see (another schema on the search path, a synonym) is left alone:
    the database then resolves the reference itself, and fails loudly if it cannot.
    """
    refs = {(t, c) for t, c in _QUALIFIED.findall(sql) if c.lower() in OPTIONAL_COLUMNS[t]}
    if not refs:
        return sql
    present = {t: table_columns(db, t) for t in {t for t, _ in refs}}

    def swap(match: re.Match[str]) -> str:
        table, column = match.group(1), match.group(2)
        columns = present.get(table)
        if columns is None or column.lower() not in OPTIONAL_COLUMNS[table] or column.lower() in columns:
            return match.group(0)
        return "NULL"

    return _QUALIFIED.sub(swap, sql)


@dataclass(frozen=True)
class AbsentInput:
    """An optional column a query does not deliver (or an optional table that does not exist;
    ``column`` is then empty), and what that turns off."""

    table: str
    column: str
    turns_off: str
    sql_file: str
    in_table: bool
    """True: the table has no such column; False: the table has it but the query does not select it."""

    def message(self) -> str:
        if not self.column:  # an optional table
            return f"table {self.table} does not exist ({self.sql_file} reads it): {self.turns_off}"
        where = f"{self.table} has no {self.column}" if not self.in_table else f"{self.sql_file} selects no {self.column}"
        return f"{where}: {self.turns_off}"


def absent_optional_columns(db: sa.Engine, name: str) -> list[AbsentInput]:
    """The optional columns of query ``name`` (``include/sql/<name>.sql``) that arrive as nothing:
    missing from the table (so resolved to NULL), or not selected by the query at all."""
    from mailchimp_provider.sync.engine import source_sql
    from mailchimp_provider.warehouse.extract import sql_path

    optional = OPTIONAL_COLUMNS.get(name)
    if not optional:
        return []
    raw = source_sql(name)
    returned = query_columns(db, resolve_optional_columns(db, raw))
    columns = table_columns(db, name)
    referenced = {c.lower() for t, c in _QUALIFIED.findall(raw) if t == name}
    absent = []
    for column, turns_off in optional.items():
        missing_in_table = columns is not None and column not in columns and column in referenced
        if missing_in_table or column not in returned:
            absent.append(AbsentInput(name, column, turns_off, str(sql_path(name)), not missing_in_table))
    return absent


def absent_optional_tables(db: sa.Engine, names: Collection[str]) -> list[AbsentInput]:
    """The optional tables the queries ``names`` read (``include/sql/<name>.sql``) that do not exist.

    Only a table the query names is checked: a query edited to read a view or another table takes
    its chances with the database, which then fails loudly if that does not exist either.
    """
    from mailchimp_provider.warehouse.extract import sql_path

    absent = []
    for name in names:
        text = _text(name)
        for table, turns_off in OPTIONAL_TABLES.items():
            if re.search(rf"\b{re.escape(table)}\b", text) and table_columns(db, table) is None:
                absent.append(AbsentInput(table, "", turns_off, str(sql_path(name)), in_table=False))
    return absent


def log_absent_optional_columns(db: sa.Engine, name: str, logger: logging.Logger | Any = log) -> list[AbsentInput]:
    """Say, once, which optional inputs of query ``name`` are absent and what that turns off."""
    absent = absent_optional_columns(db, name)
    for item in absent:
        logger.info("%s", item.message())
    return absent


def query_columns(db: sa.Engine, sql: str) -> set[str]:
    """The (lower-cased) column names a query returns, without reading a row."""
    with db.connect() as conn:
        result = conn.execute(sa.text(f"SELECT * FROM ({sql}) probe WHERE 1 = 0"))
        try:
            return {str(k).lower() for k in result.keys()}
        finally:
            result.close()


# ------------------------------------------------------------------------------------------------
# safety inputs
# ------------------------------------------------------------------------------------------------
class SafetyInputMissing(Exception):
    """The table of an optional safety input does not exist: the feature is not configured."""


def read_safety_input(
    db: sa.Engine, name: str, *, table: str, what: str, optional_table: bool = False, chunk_size: int = 5000,
    columns: Collection[str] | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """Stream the rows of safety query ``name`` (e.g. ``erasure_requests``, reading ``table``).

    Raises :class:`SafetyInputMissing` when ``optional_table`` and ``table`` does not exist (and the
    query reads it), :class:`MailchimpSafetyInputError` for any other failure to read it. ``what``
    says in the error what the input is for. Rows are read in full before the caller acts on any.
    A value that cannot be read in ``columns`` (default: any column) stops the run, naming the
    file, the record and the column; elsewhere it only marks its row (``extract.REJECTED``).
    """
    from mailchimp_provider.warehouse.extract import sql_path, stream_sql

    try:
        yield from stream_sql(db, name, chunk_size=chunk_size, strict=True if columns is None else columns)
    except sa.exc.DBAPIError as exc:
        if exc.connection_invalidated:
            raise  # a lost connection: retriable
        sql_file = str(sql_path(name))
        if optional_table and table_columns(db, table) is None and re.search(rf"\b{re.escape(table)}\b", _text(name)):
            raise SafetyInputMissing(f"{table} does not exist ({sql_file})") from None
        first_line = str(exc.orig if exc.orig is not None else exc).strip().splitlines()[0]
        column = _column_in(first_line)
        raise MailchimpSafetyInputError(
            f"Cannot read {what}: {sql_file} failed on table {table}"
            + (f", column {column}" if column else "")
            + f": {first_line}. Nothing was sent. Fix the query (it must return the contract's columns) "
            "or the table, then clear the task."
        ) from exc


def _text(name: str) -> str:
    from mailchimp_provider.sync.engine import source_sql

    return source_sql(name)  # without comments: a comment naming the table is not a reference


_COLUMN_PATTERNS = (
    re.compile(r'no such column: ([\w."]+)', re.I),                 # SQLite
    re.compile(r'column "?([\w.]+)"? does not exist', re.I),        # PostgreSQL
    re.compile(r"unknown column '([\w.]+)'", re.I),                 # MySQL
    re.compile(r'invalid (?:column|identifier) (?:name )?"?([\w.]+)"?', re.I),  # SQL Server, Snowflake
)


def _column_in(message: str) -> str | None:
    """The column a database error names, when it names one."""
    for pattern in _COLUMN_PATTERNS:
        if match := pattern.search(message):
            return match.group(1).strip('"')
    return None
