"""What the forward audience sync needs from the engagement pull: each member's Mailchimp status.

``mailchimp_member`` is kept current by the engagement pull (incremental by ``last_changed``,
archived members included), so the forward sync can see who unsubscribed, was cleaned (hard
bounce) or was archived in Mailchimp, and must never be subscribed again by us.
"""

from __future__ import annotations

import sqlalchemy as sa

from mailchimp_provider.warehouse.tables import WarehouseTables

NEVER_RESUBSCRIBE: frozenset[str] = frozenset({"unsubscribed", "cleaned"})
"""Statuses a sync must not raise to ``subscribed`` (the person said no, or the address is dead)."""


def member_statuses(engine: sa.Engine, tables: WarehouseTables, list_id: str) -> dict[str, str]:
    """``{subscriber_hash: status}`` of every member of ``list_id`` in ``mailchimp_member``."""
    t = tables.member
    with engine.connect() as conn:
        rows = conn.execute(sa.select(t.c.member_id, t.c.status).where(t.c.list_id == list_id)).all()
        return {member_id: status for member_id, status in rows if status is not None}


def may_resubscribe(status: str | None) -> bool:
    """False for members whose Mailchimp status forbids subscribing them again."""
    return status not in NEVER_RESUBSCRIBE
