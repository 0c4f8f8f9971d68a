"""Unsubscribes from two sources, kept as one event each.

An unsubscribe reaches the warehouse by two roads:

* ``GET /reports/{campaign_id}/unsubscribed`` (``source='report'``): the campaign that caused it,
  the exact time and the reason; but only for campaigns we still re-read, and never for people
  who left through the list's hosted form, the API or an admin;
* a member whose status *became* ``unsubscribed`` (``source='member'``, ``campaign_key=''``): every
  unsubscribe, dated by ``last_changed`` because Mailchimp exposes nothing better.

An unsubscribe caused by a campaign therefore arrives twice, in either order (the campaign and
member tasks are independent, and a report may only be read a run later). ``reconcile`` pairs a
member-derived row with the campaign row of the same person next to it in time and deletes the
member-derived one, so counting rows counts unsubscribes. A member-derived row no campaign row
explains stays: it is a list-level unsubscribe.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa

from mailchimp_provider.reverse.loading import LoadCounts, merge_rows
from mailchimp_provider.warehouse.tables import WarehouseTables

Pair = tuple[str, str]  # (list_id, member_id)


def load(conn: sa.Connection, tables: WarehouseTables, rows: list[dict]) -> LoadCounts:
    """Upsert unsubscribe rows on the contract key, then de-duplicate the people they concern."""
    if not rows:
        return LoadCounts()
    counts = merge_rows(conn, tables.unsubscribe, rows, tables.key("unsubscribe"))
    counts.removed += reconcile(conn, tables, {(r["list_id"], r["member_id"]) for r in rows})
    return counts


def reconcile(conn: sa.Connection, tables: WarehouseTables, pairs: Iterable[Pair]) -> int:
    """Delete member-derived rows that repeat a campaign-caused unsubscribe; returns rows deleted.

    Per person, rows are walked in time order (campaign rows first on a tie) and each
    member-derived row is paired with an adjacent unpaired campaign row, before or after it (the
    member's ``last_changed`` can be later than the report's time, and is earlier in the emulator,
    which applies status changes at send time).
    """
    t = tables.unsubscribe
    pairs = sorted(set(pairs))
    doomed: list[dict] = []
    for start in range(0, len(pairs), 500):
        part = pairs[start : start + 500]
        rows = conn.execute(
            sa.select(t.c.list_id, t.c.member_id, t.c.campaign_key, t.c.timestamp)
            .where(sa.tuple_(t.c.list_id, t.c.member_id).in_(part))
            .order_by(t.c.list_id, t.c.member_id, t.c.timestamp, t.c.campaign_key.desc())
        ).mappings().all()
        person: Pair | None = None
        pending_campaign = pending_member = None
        for row in rows:
            if (row["list_id"], row["member_id"]) != person:
                person = (row["list_id"], row["member_id"])
                pending_campaign = pending_member = None
            if row["campaign_key"]:
                if pending_member is not None:
                    doomed.append(dict(pending_member))
                    pending_member = None
                else:
                    pending_campaign = row
            else:
                if pending_campaign is not None:
                    doomed.append(dict(row))
                    pending_campaign = None
                else:
                    pending_member = row
    if doomed:  # one statement, executed for every row (a statement each cost 37 % of a member walk)
        conn.execute(
            sa.delete(t).where(
                t.c.list_id == sa.bindparam("d_list"),
                t.c.member_id == sa.bindparam("d_member"),
                t.c.campaign_key == "",
                t.c.timestamp == sa.bindparam("d_time"),
            ),
            [{"d_list": r["list_id"], "d_member": r["member_id"], "d_time": r["timestamp"]} for r in doomed],
        )
    return len(doomed)
