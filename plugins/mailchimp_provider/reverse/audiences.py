"""Lists and members, incrementally by ``last_changed``; list-level unsubscribes from member statuses.

Members are read per list in two walks, both sorted by ``last_changed`` ascending and bounded by
``before_last_changed`` = the second after the walk starts:

* every member except archived ones (Mailchimp's default), and
* ``status=archived``: archiving does not delete, and the forward sync must know about it.

The window starts at ``watermark - lookback``: Mailchimp's ``since_*`` bounds are exclusive and
offsets drift while the list changes, so a little is re-read on purpose and the upsert on
``(list_id, member_id)`` absorbs it. The upper bound keeps members changed *during* the walk out
of it (they would otherwise move to the end and be read stale, or twice); the next run reads them.
Rows are committed page by page; the list's watermark (the largest ``last_changed`` read) is
committed only once both walks are done, so it never covers rows that are not in the warehouse.
The first run has no watermark and reads everything.

The forward sync's audit before writing (``sync/audit.py``) reads only the members who left
marketing (:func:`pull_members` with ``leavers_only``: one walk per status in :data:`LEFT_STATUSES`) under its own
watermark, ``members_left``. The full walk reads those too, so it advances both watermarks; the
audit advances only its own. Both write ``mailchimp_member`` through one loader, which never
replaces a row with an older read of the same member (a smaller ``last_changed``).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Any, Sequence

import sqlalchemy as sa

from mailchimp_provider.errors import MailchimpConfigError
from mailchimp_provider.reverse import rejects, unsubscribes, watermarks
from mailchimp_provider.reverse.config import EngagementConfig
from mailchimp_provider.reverse.loading import LoadStats, chunks, merge_rows
from mailchimp_provider.reverse.normalise import list_row, member_row, member_unsubscribe_row
from mailchimp_provider.sync.paths import api_path
from mailchimp_provider.warehouse.tables import WarehouseTables, to_utc

log = logging.getLogger(__name__)

MEMBER_WALKS: tuple[str | None, ...] = (None, "archived")
LEFT_STATUSES: tuple[str, ...] = ("archived", "unsubscribed", "cleaned")
"""Statuses of members who left marketing: the audit's walks (Mailchimp's ``status`` takes one)."""


def mailchimp_time(value: datetime) -> str:
    """Query-parameter form Mailchimp documents: second precision, ``+00:00``."""
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def pull_lists(hook: Any, engine: sa.Engine, tables: WarehouseTables, config: EngagementConfig) -> tuple[list[str], LoadStats]:
    """Upsert the configured audiences (or all) into ``mailchimp_list``; returns their ids."""
    items = list(hook.paginate("/lists", "lists", page_size=config.campaigns.page_size, params={"exclude_fields": "lists._links"}))
    found = {item["id"] for item in items}
    if config.audiences is not None:
        missing = [a for a in config.audiences if a not in found]
        if missing:
            raise MailchimpConfigError(
                f"engagement config names audience(s) {', '.join(missing)} that this Mailchimp account does not have "
                f"(it has: {', '.join(sorted(found)) or 'none'})."
            )
        items = [i for i in items if i["id"] in set(config.audiences)]
    rejected = rejects.Rejects("list", watermarks.ALL_SCOPES)
    rows = rejected.normalise(items, list_row)
    stats = LoadStats()
    with engine.begin() as conn:
        stats.record(tables.table_name("list"), merge_rows(conn, tables.list, rows, tables.key("list")))
        stats.record(tables.table_name("rejected"), rejects.store(conn, tables, rejected))
    return [r["list_id"] for r in rows], stats


def pull_members(
    hook: Any,
    engine: sa.Engine,
    tables: WarehouseTables,
    list_id: str,
    config: EngagementConfig,
    *,
    leavers_only: bool = False,
    now: datetime | None = None,
) -> tuple[LoadStats, datetime | None]:
    """Read members of ``list_id`` changed since the watermark (minus the lookback); see the module
    doc. Returns the stats and the watermark the window started from (None: everything was read).

    The full walk reads every status under the ``members`` watermark and advances it, the audit's
    ``members_left`` (it read the leavers too) and ``members_full_walk`` (when it started).
    ``leavers_only`` (the audit) reads :data:`LEFT_STATUSES` only, since ``members_left`` (else
    ``members``, which covers them too), and advances ``members_left`` alone: a member who moves
    *back* to subscribed is not read, and ``mailchimp_member`` keeps the status they left with until
    the next full walk or the sync's next write to them."""
    stats = LoadStats()
    walk_start = (now or datetime.now(timezone.utc)).replace(microsecond=0)
    with engine.connect() as conn:
        mark = watermarks.get_timestamp(conn, tables, watermarks.MEMBERS, list_id)
        if leavers_only:
            mark = watermarks.get_timestamp(conn, tables, watermarks.MEMBERS_LEFT, list_id) or mark
    walks = LEFT_STATUSES if leavers_only else MEMBER_WALKS
    newest = _walk_members(hook, engine, tables, list_id, config, walks, mark, walk_start, stats)
    with engine.begin() as conn:
        if not leavers_only:
            if newest is not None:
                watermarks.advance_timestamps(conn, tables, watermarks.MEMBERS, {list_id: min(newest, walk_start)})
            watermarks.advance_timestamps(conn, tables, watermarks.MEMBERS_FULL_WALK, {list_id: walk_start})
        watermarks.advance_timestamps(conn, tables, watermarks.MEMBERS_LEFT, {list_id: _left_mark(newest, walk_start)})
    return stats, mark


def _left_mark(newest: datetime | None, walk_start: datetime) -> datetime:
    """The ``members_left`` watermark after a walk: the newest change read, or the walk's start when
    it read none (nothing changed in the window; the lookback still re-reads its edge). Without
    this, an audience with no leavers would be re-read from the start on every audit."""
    return walk_start if newest is None else min(newest, walk_start)


def _walk_members(
    hook: Any,
    engine: sa.Engine,
    tables: WarehouseTables,
    list_id: str,
    config: EngagementConfig,
    walks: Sequence[str | None],
    mark: datetime | None,
    walk_start: datetime,
    stats: LoadStats,
) -> datetime | None:
    """One walk per status in ``walks`` (None: Mailchimp's default, every status but archived), each
    sorted by ``last_changed`` in ``[mark - lookback, walk_start + 1 s)``; pages are committed as
    read. Returns the largest ``last_changed`` read (None if nothing was)."""
    # ``before_last_changed`` is exclusive and has second precision: bound it at the next whole
    # second, or a change made earlier in the walk's own second would wait for the next run.
    window: dict[str, str] = {"before_last_changed": mailchimp_time(walk_start + timedelta(seconds=1))}
    if mark is not None:
        window["since_last_changed"] = mailchimp_time(mark - config.members.lookback)
    log.info(
        "Members of list %s (%s): %s", list_id, ", ".join(w or "all but archived" for w in walks),
        f"changed since {window.get('since_last_changed')} (watermark {mark.isoformat()} minus lookback)"
        if mark else "first load, reading every member",
    )
    newest: datetime | None = None
    for status in walks:
        params = dict(window, exclude_fields="members._links")
        if status:
            params["status"] = status
        items = hook.paginate(
            api_path("lists", list_id, "members"), "members", params=params,
            page_size=config.members.page_size, sort_field="last_changed",
        )
        for chunk in chunks(items, config.members.page_size):
            rejected = rejects.Rejects("member", list_id)
            rows = rejected.normalise(chunk, lambda item: member_row(item, list_id))
            with engine.begin() as conn:
                _load_member_page(conn, tables, list_id, rows, stats)
                stats.record(tables.table_name("rejected"), rejects.store(conn, tables, rejected))
            for row in rows:
                if row["last_changed"] is not None and (newest is None or row["last_changed"] > newest):
                    newest = row["last_changed"]
    return newest


def _load_member_page(
    conn: sa.Connection, tables: WarehouseTables, list_id: str, rows: list[dict[str, Any]], stats: LoadStats
) -> None:
    """Upsert a page of members; a member whose status *became* ``unsubscribed`` adds an unsubscribe.

    A row older than the stored one (smaller ``last_changed``: the audit and the full walk read the
    same member at different times) is left out and counted as unchanged."""
    t = tables.member
    ids = [r["member_id"] for r in rows]
    before = {
        member_id: (status, to_utc(changed))
        for member_id, status, changed in conn.execute(
            sa.select(t.c.member_id, t.c.status, t.c.last_changed).where(t.c.list_id == list_id, t.c.member_id.in_(ids))
        )
    }
    fresh = [r for r in rows if not _older(r, before.get(r["member_id"]))]
    stale = len(rows) - len(fresh)
    counts = merge_rows(conn, t, fresh, tables.key("member"))
    counts.unchanged += stale
    stats.record(tables.table_name("member"), counts)
    left = [
        member_unsubscribe_row(r)
        for r in fresh
        if r["status"] == "unsubscribed" and before.get(r["member_id"], (None, None))[0] != "unsubscribed"
    ]
    if left:
        stats.record(tables.table_name("unsubscribe"), unsubscribes.load(conn, tables, left))


def _older(row: dict[str, Any], stored: tuple[str | None, datetime | None] | None) -> bool:
    """Whether ``row`` is an older read of a member than the stored one."""
    if stored is None or stored[1] is None or row["last_changed"] is None:
        return False
    return to_utc(row["last_changed"]) < stored[1]  # type: ignore[operator]


def pull_audiences(
    hook: Any, engine: sa.Engine, tables: WarehouseTables, config: EngagementConfig, *, now: datetime | None = None
) -> LoadStats:
    """Lists, then each list's members (with list-level unsubscribes)."""
    list_ids, stats = pull_lists(hook, engine, tables, config)
    for list_id in list_ids:
        stats.merge(pull_members(hook, engine, tables, list_id, config, now=now)[0])
    return stats
