"""Who is in each segment (``segment_member``), through batch operations.

One operation per segment: ``GET /lists/{list_id}/segments/{segment_id}/members`` with
unsubscribed, cleaned and transactional members included (a tag stays on a member who
unsubscribed), and no ``count``, so Mailchimp answers with every member. The endpoint has no
``since``, so a segment is read again only when it is due (see ``plan``): its ``updated_at`` or
``member_count`` changed since it was last read, or it was last read longer ago than
``segments.members_refresh_hours`` (a saved segment's members follow its conditions without the
segment changing; Fivetran refreshes this table daily).

A segment's rows are written as its answer is read; once every answer of the segment in the
batch was read, one transaction marks members no longer in it ``_fivetran_deleted`` and sets its
bookmark (stream ``segment_members``, scope ``<list_id>:<segment_id>``, value ``<updated_at>|<
member_count>@<read at>``). A failed answer leaves the bookmark, so the next run reads the segment
again; the pass marker (stream ``segment_members_pass``) keeps a retried task from re-reading what
it finished.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

from mailchimp_provider.batches.results import OperationResult
from mailchimp_provider.reverse import rejects, watermarks
from mailchimp_provider.reverse.config import EngagementConfig
from mailchimp_provider.reverse.loading import LoadCounts, LoadStats, merge_rows
from mailchimp_provider.reverse.normalise import NormalisationError, Row, subscriber_hash
from mailchimp_provider.reverse.rejects import Rejects
from mailchimp_provider.sync.paths import api_path
from mailchimp_provider.warehouse.tables import FIVETRAN_DELETED, WarehouseTables, to_utc

log = logging.getLogger(__name__)

ENTITY = "segment_member"
BOOKMARK = "segment_members"
PASS = "segment_members_pass"
_FAILED = "#failed"
FIELDS = "members.id,members.email_address,members.status,total_items"


@dataclass(frozen=True)
class SegmentFetch:
    list_id: str
    segment_id: int

    @property
    def scope(self) -> str:
        return f"{self.list_id}:{self.segment_id}"

    def operation(self) -> dict[str, Any]:
        return {
            "method": "GET",
            "path": api_path("lists", self.list_id, "segments", str(self.segment_id), "members"),
            "operation_id": self.scope,
            "params": {"include_cleaned": "true", "include_unsubscribed": "true", "include_transactional": "true",
                       "fields": FIELDS},
        }


def parse_scope(operation_id: str) -> SegmentFetch | None:
    list_id, _, segment_id = (operation_id or "").rpartition(":")
    if not list_id or not segment_id.isdigit():
        return None
    return SegmentFetch(list_id, int(segment_id))


def signature(updated_at: datetime | None, member_count: int | None) -> str:
    """What, in the segment row, says its members may have changed."""
    return f"{updated_at.isoformat() if updated_at else ''}|{member_count if member_count is not None else ''}"


def plan(
    conn: sa.Connection, tables: WarehouseTables, config: EngagementConfig, current_pass: str,
    *, now: datetime | None = None,
) -> list[SegmentFetch]:
    """Segments whose members are due: never read, changed since read, or read too long ago."""
    now = now or datetime.now(timezone.utc)
    s = tables.segment
    query = sa.select(s.c.list_id, s.c.id, s.c.updated_at, s.c.member_count).where(s.c._fivetran_deleted.is_(sa.false()))
    if config.audiences is not None:
        query = query.where(s.c.list_id.in_(config.audiences))
    marks = watermarks.get_values(conn, tables, BOOKMARK)
    passes = watermarks.get_values(conn, tables, PASS)
    planned = []
    for list_id, segment_id, updated_at, member_count in conn.execute(query.order_by(s.c.list_id, s.c.id)):
        fetch = SegmentFetch(list_id, segment_id)
        if passes.get(fetch.scope) in (current_pass, current_pass + _FAILED):
            continue
        mark = marks.get(fetch.scope)
        if mark is not None:
            read_signature, _, read_at = mark.rpartition("@")
            fresh = read_at and now - to_utc(read_at) < config.segments.members_refresh  # type: ignore[operator]
            if read_signature == signature(updated_at, member_count) and fresh:
                continue
        planned.append(fetch)
    return planned


def member_row(obj: Any, fetch: SegmentFetch) -> Row:
    """A segment-members item as a ``segment_member`` row."""
    email = obj.get("email_address") if isinstance(obj, dict) else None
    record = f"member {email!r} of segment {fetch.segment_id} of list {fetch.list_id!r}"
    if not isinstance(obj, dict):
        raise NormalisationError(record, "members[]", obj, "an object")
    member_id = obj.get("id") or (subscriber_hash(email) if isinstance(email, str) and email else None)
    if not isinstance(member_id, str) or not member_id:
        raise NormalisationError(record, "id", obj.get("id"), "a subscriber hash or email_address")
    status = obj.get("status")
    return {"list_id": fetch.list_id, "segment_id": fetch.segment_id, "member_id": member_id,
            "email_address": email if isinstance(email, str) else None,
            "status": status if isinstance(status, str) and status else None, FIVETRAN_DELETED: False}


@dataclass
class ApplyOutcome:
    stats: LoadStats = field(default_factory=LoadStats)
    segments: int = 0
    failures: list[str] = field(default_factory=list)


def apply_results(
    engine: sa.Engine, tables: WarehouseTables, results: Iterator[OperationResult], *, current_pass: str,
    now: datetime | None = None,
) -> ApplyOutcome:
    """Write each answer's members; then, per segment read without failure, mark who left and set
    its bookmark (see the module docstring)."""
    now = now or datetime.now(timezone.utc)
    outcome = ApplyOutcome()
    seen: dict[SegmentFetch, set[str]] = {}
    failed: set[SegmentFetch] = set()
    members_table = tables.table_name("segment_member")
    for result in results:
        fetch = parse_scope(result.operation_id)
        if fetch is None:
            outcome.failures.append(f"an operation with id {result.operation_id!r} (HTTP {result.status_code}); skipped")
            log.error("Segment members result whose operation id %r names no segment: skipped", result.operation_id)
            continue
        body = result.body if result.ok else None
        items = body.get("members") if isinstance(body, dict) else None
        if not isinstance(items, list):
            failed.add(fetch)
            message = f"members of segment {fetch.segment_id} of list {fetch.list_id}: HTTP {result.status_code} " \
                      f"{result.title}: {result.detail or 'no members list'}"
            outcome.failures.append(message)
            log.warning("%s; read again by the next run.", message)
            continue
        rejected = Rejects(ENTITY, fetch.scope)
        rows = rejected.normalise(items, lambda item: member_row(item, fetch))
        seen.setdefault(fetch, set()).update(r["member_id"] for r in rows)
        with engine.begin() as conn:
            outcome.stats.record(members_table, merge_rows(conn, tables.segment_member, rows, tables.key("segment_member")))
            outcome.stats.record(tables.table_name("rejected"), rejects.store(conn, tables, rejected))
    for fetch in failed:
        with engine.begin() as conn:
            watermarks.set_values(conn, tables, PASS, {fetch.scope: current_pass + _FAILED})
    for fetch, members in seen.items():
        if fetch in failed:
            continue
        with engine.begin() as conn:
            outcome.stats.record(members_table, _left(conn, tables, fetch, members, now))
            s = tables.segment
            updated_at, member_count = conn.execute(
                sa.select(s.c.updated_at, s.c.member_count).where(s.c.list_id == fetch.list_id, s.c.id == fetch.segment_id)
            ).one_or_none() or (None, None)
            watermarks.set_values(conn, tables, BOOKMARK,
                                  {fetch.scope: f"{signature(updated_at, member_count)}@{watermarks.format_ts(now)}"})
            watermarks.set_values(conn, tables, PASS, {fetch.scope: current_pass})
        outcome.segments += 1
    return outcome


def _left(
    conn: sa.Connection, tables: WarehouseTables, fetch: SegmentFetch, members: set[str], now: datetime
) -> LoadCounts:
    """Mark stored members of the segment that were not in its answer ``_fivetran_deleted``."""
    m = tables.segment_member
    scope = (m.c.list_id == fetch.list_id, m.c.segment_id == fetch.segment_id, m.c._fivetran_deleted.is_(sa.false()))
    stored = set(conn.execute(sa.select(m.c.member_id).where(*scope)).scalars())
    gone = sorted(stored - members)
    for start in range(0, len(gone), 500):
        conn.execute(sa.update(m).where(*scope, m.c.member_id.in_(gone[start:start + 500]))
                     .values({FIVETRAN_DELETED: True, "synced_at": now}))
    return LoadCounts(changed=len(gone))


__all__ = ["ENTITY", "SegmentFetch", "apply_results", "member_row", "parse_scope", "plan"]
