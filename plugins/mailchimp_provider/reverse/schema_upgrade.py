"""Bring engagement tables written by earlier versions to today's shape, in place, rows kept.

Before the tables carried Fivetran's column names, a warehouse had ``contact_address1``,
``location_country_code``, an activity key column ``url`` holding ``''`` and so on. The first run of
this version renames those columns, adds the new ones and fills what can be derived from the rows
already there (``id`` from the contract key, ``url`` and an unsubscribe's ``campaign_id`` as NULL
where the key holds ``''``; ``_fivetran_synced`` is computed from ``synced_at`` by the database). Nothing is dropped and no row is
rewritten other than by those fills; a table already in today's shape costs one inspection.
The forward sync's ``sync_state`` is brought along the same way (``BOOKKEEPING_KINDS``: its
``source_hash`` column, added empty; the next rerun fills it).

Renames are plain ``ALTER TABLE ... RENAME COLUMN`` (PostgreSQL, SQLite 3.25+), so a renamed key
column stays the key. Two type changes are made on PostgreSQL only (``gmtoff``/``dstoff`` integer
-> double precision, ``segment_id`` text -> bigint); SQLite's column types are affinities and keep
reading the values stored.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import sqlalchemy as sa

from mailchimp_provider.warehouse.tables import WarehouseTables

log = logging.getLogger(__name__)

RENAMES: dict[str, dict[str, str]] = {
    "list": {
        "contact_address1": "contact_address_1",
        "contact_address2": "contact_address_2",
        "from_name": "default_from_name",
        "from_email": "default_from_email",
        "subject": "default_subject",
        "language": "default_language",
    },
    "member": {
        "location_latitude": "latitude",
        "location_longitude": "longitude",
        "location_gmtoff": "gmtoff",
        "location_dstoff": "dstoff",
        "location_country_code": "country_code",
        "location_timezone": "timezone",
    },
    "unsubscribe": {"campaign_id": "campaign_key"},
    "activity": {"url": "url_key"},
}
"""kind -> {column of an earlier version: today's name}. A key column renamed stays the key."""

FILLS: dict[str, dict[str, str]] = {
    "list": {"id": "list_id"},
    "member": {"id": "member_id"},
    "campaign": {"id": "campaign_id"},
    "unsubscribe": {"campaign_id": "NULLIF(campaign_key, '')"},
    "activity": {"url": "NULLIF(url_key, '')"},
}
"""kind -> {column added by the upgrade: SQL expression over the row that fills it}."""

PG_TYPE_CHANGES: dict[str, dict[str, str]] = {
    "member": {"gmtoff": "DOUBLE PRECISION", "dstoff": "DOUBLE PRECISION"},
    "campaign": {"segment_id": "BIGINT USING NULLIF(segment_id, '')::bigint"},
}
"""kind -> {column: PostgreSQL type clause} for columns whose type an earlier version chose otherwise."""

ENGAGEMENT_KINDS = ("list", "member", "unsubscribe", "campaign", "activity")
BOOKKEEPING_KINDS = ("sync_state",)
"""Forward-sync tables that gained columns since an earlier version (``sync_state.source_hash``):
the missing nullable columns are added in place, rows kept."""


@dataclass(frozen=True)
class Change:
    """One statement the upgrade ran, for the log and for tests."""

    table: str
    what: str


def upgrade_engagement_tables(engine: sa.Engine, tables: WarehouseTables) -> list[Change]:
    """Rename, add and fill columns of existing engagement tables (one transaction); returns what
    it did, empty when every table is already current. Tables that do not exist are left to
    ``create_all``."""
    changes: list[Change] = []
    with engine.begin() as conn:
        inspector = sa.inspect(conn)
        for kind in ENGAGEMENT_KINDS + BOOKKEEPING_KINDS:
            table = tables.table(kind)
            if not inspector.has_table(table.name, schema=tables.schema):
                continue
            columns = {c["name"]: c for c in inspector.get_columns(table.name, schema=tables.schema)}
            changes += _upgrade(conn, table, kind, columns)
    for change in changes:
        log.info("Upgraded %s: %s", change.table, change.what)
    return changes


def _upgrade(conn: sa.Connection, table: sa.Table, kind: str, present: dict[str, dict]) -> list[Change]:
    prep = conn.dialect.identifier_preparer
    name = prep.format_table(table)
    done: list[Change] = []

    def run(sql: str, what: str) -> None:
        conn.exec_driver_sql(sql)
        done.append(Change(table.name, what))

    have = set(present)
    for old, new in RENAMES.get(kind, {}).items():
        if old in have and new not in have and new in table.c:
            run(f"ALTER TABLE {name} RENAME COLUMN {prep.quote(old)} TO {prep.quote(new)}", f"renamed {old} -> {new}")
            have = (have - {old}) | {new}
            present[new] = present.pop(old)
    added: set[str] = set()
    for column in table.columns:
        if column.name in have:
            continue
        if column.primary_key:  # cannot be added to rows that exist: a rename must supply it
            raise RuntimeError(f"{table.name}: key column {column.name!r} is missing and cannot be added in place")
        run(f"ALTER TABLE {name} ADD COLUMN {_column_ddl(conn, column)}", f"added {column.name}")
        added.add(column.name)
    for target, expression in FILLS.get(kind, {}).items():
        if target in added:
            run(f"UPDATE {name} SET {prep.quote(target)} = {expression}", f"filled {target} from {expression}")
    if conn.dialect.name == "postgresql":
        for column, clause in PG_TYPE_CHANGES.get(kind, {}).items():
            current = present.get(column)
            wanted = clause.split(" USING ")[0]
            if current is not None and current["type"].compile(conn.dialect).upper() != wanted:
                run(f"ALTER TABLE {name} ALTER COLUMN {prep.quote(column)} TYPE {clause}", f"{column} now {wanted}")
    return done


def _column_ddl(conn: sa.Connection, column: sa.Column) -> str:
    """``name TYPE [NOT NULL DEFAULT ...]`` of ``column`` as CREATE TABLE would write it."""
    ddl = str(sa.schema.CreateColumn(column).compile(dialect=conn.dialect)).strip()
    if conn.dialect.name == "sqlite" and column.computed is not None:
        ddl = ddl.replace(" STORED", " VIRTUAL")  # SQLite adds only virtual generated columns to a table
    return ddl


__all__ = ["Change", "RENAMES", "upgrade_engagement_tables"]
