"""Audit before writing: read who left marketing in Mailchimp since the last audit, before planning.

A forward sync decides from the warehouse and from what it knows of Mailchimp. What it knows
(``sync_state``) is what *it* last wrote; since then a marketer may have archived a contact, or a
person unsubscribed or bounced. Writing blind is how archived contacts come back (a member PUT, or
an e-commerce customer with ``opt_in_status`` true, re-adds them). So every sync that can change
members' statuses reads the audience's leavers first, and the rules decide from that.

The audit reads only what its safety needs: members who *left* marketing (archived, unsubscribed,
cleaned: :data:`NEVER_SUBSCRIBE`), one walk per status by ``since_last_changed``
(``reverse.audiences.pull_members`` with ``leavers_only``), under its own watermark per list
(``members_left``).
It does not read back the members the last sync wrote (they are subscribed, pending or
transactional), so a no-change rerun after a run that wrote a million members reads only the
members who left since. The rows go into ``mailchimp_member`` through the engagement pull's loader,
which never replaces a newer read of a member with an older one; the engagement pull's full member
walk keeps its own ``members`` watermark, still fills the table for analysts, and advances
``members_left`` too (it reads the leavers as well). An audit with no full walk on record
(``members_full_walk``: the very first audit of an audience) is that full walk: it reads every
member once, so members that exist before the first sync are known as existing.

What the leavers-only audit does not see: a member who moved *back* to subscribed in Mailchimp
(re-subscribed through a form, re-added after an archive) keeps the status they left with in
``mailchimp_member``. The sync then treats them as still gone: it does not re-add or opt them in
(the safe side), but it would not unsubscribe them again for a ``no_marketing`` row either. So the
staleness is bounded: when the last full walk (the engagement pull's, or the audit's own) started
more than ``sync.audit_full_walk_hours`` ago (24 by default), the audit is that full walk, reading
every member changed since it (``members_full_walk`` watermark). A deployment that runs the
engagement pull daily pays the full walk there, where the analysts need the rows anyway; one that
does not pays it in the first sync of each day. The sync's own writes answer with the member too,
and ``AudienceRules._known`` takes the newer of that and the audited row. A sync with writes whose
answers were lost (records ``pending``) also gets the full walk, which reads those members back,
so its next plan knows they exist.

The audience rules read the audited statuses through ``AudienceRules._members`` (and
:func:`archived_members` with ``retry_archived``); the customer rules through :func:`member_statuses`.

A read error stops the run before any write (the exception propagates from the operator before
planning): a consent input never fails silently.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

import sqlalchemy as sa

from mailchimp_provider.reverse import watermarks
from mailchimp_provider.reverse.audiences import LEFT_STATUSES, pull_members
from mailchimp_provider.reverse.config import EngagementConfig, MembersConfig
from mailchimp_provider.warehouse.tables import WarehouseTables

NEVER_SUBSCRIBE = LEFT_STATUSES
"""Statuses a sync never moves to ``subscribed`` (archived only with ``retry_archived``): the
statuses the audit reads."""


@dataclass(frozen=True)
class AuditReport:
    """What one audit read: members changed since ``since`` and how many of them left marketing."""

    list_id: str
    since: datetime | None
    """Lower bound of the window (watermark minus lookback); None when everything was read."""
    changed: int
    """Members read (every status on a full walk, else only those in :data:`NEVER_SUBSCRIBE`)."""
    out_of_marketing: dict[str, int] = field(default_factory=dict)
    """``{status: n}`` for archived / unsubscribed / cleaned members among those read."""
    seconds: float = 0.0
    full: bool = False
    """True when this audit was the full member walk (every status): no full walk on record, the
    last one started ``full_walk_after`` ago or more, or lost answers asked for a read-back."""

    def describe(self) -> str:
        window = f"since {self.since.isoformat()}" if self.since else "(every member: no earlier walk)"
        read = "member(s) changed" if self.full else "member(s) archived/unsubscribed/cleaned"
        left = ", ".join(f"{n} {status}" for status, n in sorted(self.out_of_marketing.items())) or "none"
        return (f"Audit of audience {self.list_id}: {self.changed} {read} {window}; "
                f"{sum(self.out_of_marketing.values())} archived/unsubscribed/cleaned ({left}); {self.seconds:.1f}s")


def audit_members(
    hook: Any,
    db: sa.Engine,
    tables: WarehouseTables,
    list_id: str,
    *,
    members: MembersConfig | None = None,
    now: datetime | None = None,
    full_walk_after: timedelta = timedelta(hours=24),
    read_back: bool = False,
) -> AuditReport:
    """Read the members of ``list_id`` who left marketing since the last audit into
    ``mailchimp_member`` (every member changed since the last full walk instead, when that walk
    started ``full_walk_after`` ago or more, or never ran, or ``read_back`` asks for it: the sync
    has writes whose answers were lost, and reading back the members changed since tells it which
    of them exist); returns what was read. Raises on any read error (nothing is written to
    Mailchimp before it returns)."""
    started = time.monotonic()
    config = EngagementConfig(members=members or MembersConfig())
    now = now or datetime.now(timezone.utc)
    tables.create_all(db)
    with db.connect() as conn:
        last_full = watermarks.get_timestamp(conn, tables, watermarks.MEMBERS_FULL_WALK, list_id)
    full = read_back or last_full is None or now - last_full >= full_walk_after
    stats, mark = pull_members(hook, db, tables, list_id, config, leavers_only=not full, now=now)
    since = mark - config.members.lookback if mark is not None else None
    counts = stats.tables.get(tables.table_name("member"))
    changed = counts.seen if counts is not None else 0
    return AuditReport(list_id, since, changed, _out_of_marketing(db, tables, list_id, since),
                       time.monotonic() - started, full=full)


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
