"""Make contract tables look like a user's warehouse or view: no primary key, and some columns
plain text, so the bad values the campaign found (``'not a date'``, ``2``, ``'abc'``...) and
missing or repeated ids can be stored at all. A module of its own: several folders have a conftest."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa


def loosen(engine: sa.Engine, table: str, text_columns: tuple[str, ...] = ()) -> None:
    """Drop ``table``'s primary key and NOT NULLs; on PostgreSQL make ``text_columns`` text.

    SQLite keeps any value in any column (type affinity) but refuses NULL in the key, so the table
    is copied without constraints. PostgreSQL's typed columns cannot hold ``'abc'``: they become
    text, as a view over a raw staging table would return them.
    """
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.execute(sa.text(f"CREATE TABLE {table}_loose AS SELECT * FROM {table}"))
            conn.execute(sa.text(f"DROP TABLE {table}"))
            conn.execute(sa.text(f"ALTER TABLE {table}_loose RENAME TO {table}"))
            return
        conn.execute(sa.text(f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {table}_pkey"))
        columns = [c["name"] for c in sa.inspect(conn).get_columns(table)]
        for column in columns:
            conn.execute(sa.text(f"ALTER TABLE {table} ALTER COLUMN {column} DROP NOT NULL"))
        for column in text_columns:
            conn.execute(sa.text(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE text USING {column}::text"))


def insert_raw(engine: sa.Engine, table: str, rows: list[dict[str, Any]]) -> None:
    """Insert rows as given (no SQLAlchemy type processing, which would refuse the bad values)."""
    with engine.begin() as conn:
        for row in rows:
            names = ", ".join(row)
            marks = ", ".join(f":{k}" for k in row)
            conn.execute(sa.text(f"INSERT INTO {table} ({names}) VALUES ({marks})"), row)


def break_utf8(engine: sa.Engine, table: str, column: str, key: str, value: str) -> None:
    """SQLite only: store bytes that are not UTF-8 as a text value (as a bad import would)."""
    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {table} SET {column} = CAST(X'416EC328FF' AS TEXT) WHERE {key} = :v"), {"v": value})
