"""Segments of the pulled audiences (``segment``): static segments (the tags this project and
others write) and saved segments.

``GET /lists/{list_id}/segments`` is read whole for every audience in ``list`` each run: a list
has few segments, and only a whole read shows which ones were deleted (marked
``_fivetran_deleted``, their members too). Segment members are ``reverse.segment_members``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

from mailchimp_provider.errors import MailchimpNotFoundError
from mailchimp_provider.reverse import rejects
from mailchimp_provider.reverse.config import EngagementConfig
from mailchimp_provider.reverse.loading import LoadCounts, LoadStats, merge_rows
from mailchimp_provider.reverse.normalise import (
    ColumnSpec, NormalisationError, Row, project, to_int, to_json, to_text, to_timestamp,
)
from mailchimp_provider.sync.paths import api_path
from mailchimp_provider.warehouse.tables import FIVETRAN_DELETED, WarehouseTables

log = logging.getLogger(__name__)

SEGMENT_COLUMNS: ColumnSpec = {
    "id": (("id",), to_int),
    "name": (("name",), to_text),
    "type": (("type",), to_text),
    "member_count": (("member_count",), to_int),
    "created_at": (("created_at",), to_timestamp),
    "updated_at": (("updated_at",), to_timestamp),
    "match": (("options", "match"), to_text),
    "conditions": (("options", "conditions"), to_json),
}


def segment_row(obj: Any, list_id: str) -> Row:
    """A ``GET /lists/{id}/segments`` item as a ``segment`` row (``""`` stored as NULL)."""
    record = f"segment {obj.get('id') if isinstance(obj, Mapping) else None!r} of list {list_id!r}"
    if not isinstance(obj, Mapping):
        raise NormalisationError(record, "segments[]", obj, "an object")
    row = {k: (None if v == "" else v) for k, v in project(obj, SEGMENT_COLUMNS, record).items()}
    if row["id"] is None:
        raise NormalisationError(record, "id", obj.get("id"), "an integer id (the key)")
    extra = {k: v for k, v in (row["extra"] or {}).items() if k != "list_id"}
    return {**row, "list_id": list_id, "extra": extra or None, FIVETRAN_DELETED: False}


def audiences(conn: sa.Connection, tables: WarehouseTables, config: EngagementConfig) -> list[str]:
    """The pulled audiences (``list``) the configuration selects."""
    lists = tables.list
    query = sa.select(lists.c.list_id).where(lists.c._fivetran_deleted.is_(sa.false()))
    if config.audiences is not None:
        query = query.where(lists.c.list_id.in_(config.audiences))
    return list(conn.execute(query.order_by(lists.c.list_id)).scalars())


def pull_segments(
    hook: Any, engine: sa.Engine, tables: WarehouseTables, config: EngagementConfig, *, now: datetime | None = None
) -> LoadStats:
    """Every segment of every pulled audience; one transaction per audience."""
    now = now or datetime.now(timezone.utc)
    stats = LoadStats()
    with engine.connect() as conn:
        list_ids = audiences(conn, tables, config)
    for list_id in list_ids:
        try:
            items = list(hook.paginate(api_path("lists", list_id, "segments"), "segments",
                                       params={"exclude_fields": "segments._links"}, sort_field=""))
        except MailchimpNotFoundError:
            # The audience was deleted in Mailchimp since it was pulled: so were its segments.
            log.warning("List %s is no longer in Mailchimp (404): its segments are marked %s.", list_id,
                        FIVETRAN_DELETED)
            items = []
        rejected = rejects.Rejects("segment", list_id)
        rows = rejected.normalise(items, lambda item: segment_row(item, list_id))
        with engine.begin() as conn:
            done = merge_rows(conn, tables.segment, rows, tables.key("segment"))
            gone = _gone(conn, tables, list_id, {r["id"] for r in rows}, now)
            done.changed += gone.changed
            stats.record(tables.table_name("segment"), done)
            stats.record(tables.table_name("segment_member"), gone)
            stats.record(tables.table_name("rejected"), rejects.store(conn, tables, rejected))
    log.info("Segments of %d audience(s) read.", len(list_ids))
    return stats


def _gone(conn: sa.Connection, tables: WarehouseTables, list_id: str, kept: set[int], now: datetime) -> LoadCounts:
    """Mark the audience's segments no longer listed, and their members, ``_fivetran_deleted``.
    Returns the segments marked as ``changed``; ``unchanged`` holds nothing."""
    s, m = tables.segment, tables.segment_member
    flag = {FIVETRAN_DELETED: True, "synced_at": now}
    where = [s.c.list_id == list_id, s.c._fivetran_deleted.is_(sa.false())]
    if kept:
        where.append(~s.c.id.in_(kept))
    doomed = list(conn.execute(sa.select(s.c.id).where(*where)).scalars())
    if not doomed:
        return LoadCounts()
    conn.execute(sa.update(s).where(s.c.list_id == list_id, s.c.id.in_(doomed)).values(flag))
    conn.execute(sa.update(m).where(m.c.list_id == list_id, m.c.segment_id.in_(doomed),
                                    m.c._fivetran_deleted.is_(sa.false())).values(flag))
    log.info("List %s: %d segment(s) no longer in Mailchimp, marked %s with their members.",
             list_id, len(doomed), FIVETRAN_DELETED)
    return LoadCounts(changed=len(doomed))


__all__ = ["audiences", "pull_segments", "segment_row"]
