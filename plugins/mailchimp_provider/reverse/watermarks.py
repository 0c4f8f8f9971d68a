"""Bookmarks of the engagement pull, kept in the warehouse's ``<prefix>watermark`` table.

A watermark is ``(stream, scope) -> value`` (text: an ISO timestamp or a marker). It is written on
the *same connection and transaction* as the rows it covers, so it can never run ahead of them: if
the transaction rolls back (a killed task, a database error), the rows and the bookmark go together.

Streams used:

* ``members``           scope = list id,     value = max ``last_changed`` committed
* ``members_left``      scope = list id,     value = the same, for members who left marketing
  (archived / unsubscribed / cleaned): the forward sync's audit reads only those; the full member
  walk reads them too and advances both
* ``members_full_walk`` scope = list id,   value = when the last full member walk started (the
  audit falls back to a full walk when it is older than ``sync.audit_full_walk_hours``)
* ``campaigns``         scope = ``*``,       value = max ``send_time`` committed
* ``email_activity``    scope = campaign id, value = max activity ``timestamp`` committed
* ``email_activity_pass`` scope = campaign id, value = the pass (``run_id#clear_number``) that last
  fetched it: lets a retried task skip campaigns it already finished, without any task state
* ``email_activity_abandoned`` scope = ``<pass>#try<n>`` (``...#shard<i>of<n>`` when sharded), value = batches that stalled or expired in
  that try (the task stops re-sending after a configured number)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timezone

import sqlalchemy as sa

from mailchimp_provider.warehouse.tables import WarehouseTables, to_utc
from mailchimp_provider.warehouse.upsert import upsert

MEMBERS = "members"
MEMBERS_LEFT = "members_left"
MEMBERS_FULL_WALK = "members_full_walk"
CAMPAIGNS = "campaigns"
EMAIL_ACTIVITY = "email_activity"
EMAIL_ACTIVITY_PASS = "email_activity_pass"
EMAIL_ACTIVITY_ABANDONED = "email_activity_abandoned"
CAMPAIGN_RECIPIENT_PAGES = "campaign_recipient_page"
"""Pages of a campaign's sent-to list read (scope ``<campaign_id>@<offset>``): read once, like Fivetran."""
ALL_SCOPES = "*"


def format_ts(value: datetime) -> str:
    """Watermark text for a timestamp: ISO-8601 in UTC, second precision kept as stored."""
    return to_utc(value).isoformat()  # type: ignore[union-attr]


def get_value(conn: sa.Connection, tables: WarehouseTables, stream: str, scope: str) -> str | None:
    t = tables.watermark
    return conn.execute(
        sa.select(t.c.value).where(t.c.stream == stream, t.c.scope == scope)
    ).scalar_one_or_none()


def get_timestamp(conn: sa.Connection, tables: WarehouseTables, stream: str, scope: str) -> datetime | None:
    value = get_value(conn, tables, stream, scope)
    return to_utc(value) if value else None


def get_values(conn: sa.Connection, tables: WarehouseTables, stream: str) -> dict[str, str]:
    """Every scope's value of ``stream`` (e.g. the activity bookmark of every campaign)."""
    t = tables.watermark
    return dict(conn.execute(sa.select(t.c.scope, t.c.value).where(t.c.stream == stream)).all())


def set_values(conn: sa.Connection, tables: WarehouseTables, stream: str, values: Mapping[str, str]) -> None:
    """Upsert ``scope -> value`` for ``stream``; call inside the transaction that wrote the rows."""
    if not values:
        return
    now = datetime.now(timezone.utc)
    rows = [{"stream": stream, "scope": scope, "value": value, "updated_at": now} for scope, value in values.items()]
    upsert(conn, tables.watermark, rows, key=["stream", "scope"])


def advance_timestamps(
    conn: sa.Connection, tables: WarehouseTables, stream: str, candidates: Mapping[str, datetime]
) -> dict[str, datetime]:
    """Move each scope's timestamp watermark forward to its candidate, never backward.

    Returns the watermarks after the call. A rerun over an older window (or a lookback overlap)
    therefore cannot rewind a bookmark.
    """
    current = {k: to_utc(v) for k, v in get_values(conn, tables, stream).items() if k in candidates}
    changed: dict[str, str] = {}
    result: dict[str, datetime] = {}
    for scope, candidate in candidates.items():
        old = current.get(scope)
        new = candidate if old is None or candidate > old else old
        result[scope] = new  # type: ignore[assignment]
        if old is None or candidate > old:
            changed[scope] = format_ts(candidate)
    set_values(conn, tables, stream, changed)
    return result


def scopes_with_value(
    conn: sa.Connection, tables: WarehouseTables, stream: str, value: str, scopes: Iterable[str] | None = None
) -> set[str]:
    t = tables.watermark
    query = sa.select(t.c.scope).where(t.c.stream == stream, t.c.value == value)
    found = set(conn.execute(query).scalars())
    return found if scopes is None else found & set(scopes)
