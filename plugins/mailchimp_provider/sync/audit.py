"""Audit before writing: read what changed in Mailchimp since the last audit, before planning.

A forward sync decides from the warehouse and from what it knows of Mailchimp. What it knows
(``sync_state``) is what *it* last wrote; since then a marketer may have archived a contact, or a
person unsubscribed or bounced. Writing blind is how archived contacts come back (a member PUT, or
an e-commerce customer with ``opt_in_status`` true, re-adds them). So every sync that can change
members' statuses reads the audience's member changes first, and the rules decide from that.

The audit *is* the engagement pull's member walk (``reverse.audiences.pull_members``), reused, not
copied: members by ``since_last_changed`` (archived ones included), upserted into
``mailchimp_member`` page by page, with the list's ``members`` watermark committed after the rows.
The two share the watermark, as they share the table: whichever runs reads only what changed since
the other. The first audit of an audience reads all of it once; later ones read the changes
(a rerun after a sync reads back the members that sync wrote). It holds whether or not the
engagement DAG ever runs. The audience rules read the audited statuses through
``AudienceRules._members``; the customer rules through :func:`member_statuses`.

A read error stops the run before any write (the exception propagates from the operator before
planning): a consent input never fails silently.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable

import sqlalchemy as sa

from mailchimp_provider.reverse import watermarks
from mailchimp_provider.reverse.config import EngagementConfig, MembersConfig
from mailchimp_provider.warehouse.tables import WarehouseTables

NEVER_SUBSCRIBE = ("archived", "unsubscribed", "cleaned")
"""Statuses a sync never moves to ``subscribed`` (archived only with ``retry_archived``)."""


@dataclass(frozen=True)
class AuditReport:
    """What one audit read: members changed since ``since`` and how many of them left marketing."""

    list_id: str
    since: datetime | None
    """Lower bound of the window (watermark minus lookback); None on the first audit (everything)."""
    changed: int
    out_of_marketing: dict[str, int] = field(default_factory=dict)
    """``{status: n}`` for archived / unsubscribed / cleaned members among those read."""
    seconds: float = 0.0

    def describe(self) -> str:
        window = f"since {self.since.isoformat()}" if self.since else "on a first audit (every member)"
        left = ", ".join(f"{n} {status}" for status, n in sorted(self.out_of_marketing.items())) or "none"
        return (f"Audit of audience {self.list_id}: {self.changed} member(s) changed {window}; "
                f"{sum(self.out_of_marketing.values())} archived/unsubscribed/cleaned ({left}); {self.seconds:.1f}s")


def audit_members(
    hook: Any,
    db: sa.Engine,
    tables: WarehouseTables,
    list_id: str,
    *,
    members: MembersConfig | None = None,
    now: datetime | None = None,
) -> AuditReport:
    """Read the members of ``list_id`` changed since the last audit (or engagement pull) into
    ``mailchimp_member``; returns what was read. Raises on any read error (nothing is written to
    Mailchimp before it returns)."""
    from mailchimp_provider.reverse.audiences import pull_members

    started = time.monotonic()
    config = EngagementConfig(members=members or MembersConfig())
    tables.create_all(db)
    with db.connect() as conn:
        mark = watermarks.get_timestamp(conn, tables, watermarks.MEMBERS, list_id)
    since = mark - config.members.lookback if mark is not None else None
    stats = pull_members(hook, db, tables, list_id, config, now=now or datetime.now(timezone.utc))
    counts = stats.tables.get(tables.table_name("member"))
    changed = counts.seen if counts is not None else 0
    report = AuditReport(list_id, since, changed, _out_of_marketing(db, tables, list_id, since),
                         time.monotonic() - started)
    return report


def member_statuses(db: sa.Engine, tables: WarehouseTables, list_id: str, hashes: Iterable[str]) -> dict[str, str]:
    """``{subscriber_hash: status}`` of the audited members among ``hashes`` (bounded ``IN`` lookups)."""
    ids = sorted(set(hashes))
    out: dict[str, str] = {}
    if not ids:
        return out
    t = tables.member
    stmt = sa.select(t.c.member_id, t.c.status).where(
        t.c.list_id == list_id, t.c.member_id.in_(sa.bindparam("ids", expanding=True)))
    with db.connect() as conn:
        for start in range(0, len(ids), 900):
            out.update((r[0], r[1]) for r in conn.execute(stmt, {"ids": ids[start:start + 900]}) if r[1])
    return out


def archived_members(db: sa.Engine, tables: WarehouseTables, list_id: str) -> set[str]:
    """Subscriber hashes of the audited members of ``list_id`` that are archived (``retry_archived``
    plans them even when their row did not change)."""
    t = tables.member
    with db.connect() as conn:
        return set(conn.execute(sa.select(t.c.member_id).where(t.c.list_id == list_id,
                                                               t.c.status == "archived")).scalars())


def _window(tables: WarehouseTables, list_id: str, since: datetime | None) -> list[Any]:
    t = tables.member
    where = [t.c.list_id == list_id]
    if since is not None:
        where.append(t.c.last_changed >= since)
    return where


def _out_of_marketing(db: sa.Engine, tables: WarehouseTables, list_id: str, since: datetime | None) -> dict[str, int]:
    t = tables.member
    stmt = (sa.select(t.c.status, sa.func.count()).where(*_window(tables, list_id, since), t.c.status.in_(NEVER_SUBSCRIBE))
            .group_by(t.c.status))
    with db.connect() as conn:
        return {str(status): int(n) for status, n in conn.execute(stmt)}
