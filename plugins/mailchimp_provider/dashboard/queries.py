"""The dashboard's warehouse queries: counts per run, the rows of each tab, the campaign figures.

Every value from a request reaches the database as a bound parameter; column and table names come
from ``warehouse/tables.py`` (never from the request), so a prefix, a schema or a renamed column
follows the table definitions.

Tabs page by key (``WHERE (reason, record_id, ...) > (:cursor...) ORDER BY ... LIMIT n``), never by
``OFFSET``: each page is one range scan of an index, as fast on page 2,000 as on page 1
(``ix_<prefix>sync_result_tab`` serves the ``sync_result`` tabs, counts by reason included).
Rows with no reason are listed under the filter :data:`NO_REASON` (row-value comparisons and
``NULL`` do not mix, and PostgreSQL and SQLite sort ``NULL`` at opposite ends).

A row's email (:func:`record_emails`) is read for the page's records only: from the entity's source
query (what the warehouse holds now), else the last email Mailchimp confirmed (``sync_state``).
``sync_result`` keeps no email, so a record that was never sent (skipped: invalid email) still
shows the address that made it so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Literal, Sequence

import sqlalchemy as sa

from mailchimp_provider.warehouse.tables import WarehouseTables

Tab = Literal["failed", "pending", "quarantined", "skipped", "archived", "unsubscribed", "plan"]
TABS: tuple[Tab, ...] = ("failed", "pending", "quarantined", "skipped", "archived", "unsubscribed", "plan")
NO_REASON = "(none)"
MAX_PAGE = 200
MEMBER_STATUS_TABS: dict[str, tuple[str, ...]] = {"archived": ("archived", "cleaned"), "unsubscribed": ("unsubscribed",)}
RESULT_TABS: dict[str, str] = {"failed": "failed", "pending": "pending", "skipped": "skipped", "plan": "planned"}
"""Tabs listing one run's ``sync_result`` rows, and the outcome each lists (``plan``: the dry run's)."""
PULLED_BACK = ("archived", "cleaned", "unsubscribed")


@dataclass(frozen=True)
class EmailSource:
    """Where a record's email is read: ``include/sql/<sql_name>.sql``, its key and email columns."""

    sql_name: str
    key_column: str
    email_column: str


class BadCursor(ValueError):
    """A paging cursor the dashboard did not hand out."""


# ------------------------------------------------------------------------------------------------
# overview
# ------------------------------------------------------------------------------------------------
def outcome_counts(conn: sa.Connection, t: WarehouseTables, entity: str, run_ids: Sequence[str]) -> dict[str, dict[str, dict[str, int]]]:
    """``{run_id: {outcome: {reason: count}}}`` of ``entity`` for the given runs (one grouped scan)."""
    if not run_ids:
        return {}
    r = t.sync_result.c
    stmt = (
        sa.select(r.run_id, r.outcome, r.reason, sa.func.count().label("n"))
        .where(r.entity == entity, r.run_id.in_(sa.bindparam("run_ids", expanding=True)))
        .group_by(r.run_id, r.outcome, r.reason)
    )
    out: dict[str, dict[str, dict[str, int]]] = {}
    for row in conn.execute(stmt, {"run_ids": list(run_ids)}):
        out.setdefault(row.run_id, {}).setdefault(row.outcome, {})[row.reason or NO_REASON] = int(row.n)
    return out


def first_run_with_rows(conn: sa.Connection, t: WarehouseTables, entity: str, run_ids: Sequence[str]) -> str | None:
    """The first of ``run_ids`` (newest first) that wrote rows for ``entity``: one index probe per run."""
    r = t.sync_result.c
    probe = sa.select(sa.literal(1)).where(r.entity == entity, r.run_id == sa.bindparam("run_id")).limit(1)
    for run_id in run_ids:
        if conn.execute(probe, {"run_id": run_id}).first() is not None:
            return run_id
    return None


def state_counts(conn: sa.Connection, t: WarehouseTables, entity: str) -> dict[str, int]:
    """Records quarantined now, and operations in batches still open (sent, results not applied)."""
    s, b = t.sync_state.c, t.batch.c
    quarantined = conn.execute(
        sa.select(sa.func.count()).where(s.entity == entity, s.quarantined.is_(True))
    ).scalar_one()
    in_open_batches = conn.execute(
        sa.select(sa.func.coalesce(sa.func.sum(b.operation_count), 0)).where(
            b.entity == entity, b.applied_at.is_(None), sa.or_(b.status.is_(None), b.status != "abandoned")
        )
    ).scalar_one()
    return {"quarantined": int(quarantined), "in_open_batches": int(in_open_batches)}


def member_status_counts(conn: sa.Connection, t: WarehouseTables) -> dict[str, int]:
    """Members pulled back from Mailchimp as archived, cleaned or unsubscribed."""
    m = t.member.c
    stmt = sa.select(m.status, sa.func.count().label("n")).where(
        m.status.in_(sa.bindparam("statuses", expanding=True))
    ).group_by(m.status)
    counts = {status: 0 for status in PULLED_BACK}
    for row in conn.execute(stmt, {"statuses": list(PULLED_BACK)}):
        counts[row.status] = int(row.n)
    return counts


def engagement_counts(conn: sa.Connection, t: WarehouseTables) -> dict[str, int]:
    """What the engagement pull holds: audiences, campaigns, unsubscribes, records it refused.

    (Not the activity rows: counting the largest table on every page view would cost more than the
    page is worth; the campaign view reads the per-campaign totals instead.)"""
    counts = {}
    for label, table in (("lists", t.list), ("campaigns", t.campaign), ("unsubscribes", t.unsubscribe),
                         ("rejected", t.rejected)):
        counts[label] = int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())
    return counts


# ------------------------------------------------------------------------------------------------
# tabs
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TabSource:
    """How one tab reads: its table, filter, reason column, key columns (the paging order) and rows."""

    table: sa.Table
    where: list[sa.ColumnElement[bool]]
    reason: sa.ColumnElement[Any]
    keys: list[sa.ColumnElement[Any]]
    columns: list[sa.ColumnElement[Any]]
    to_row: Callable[[Any], dict[str, Any]]


@dataclass
class Page:
    """One page of a tab, the counts by reason of the whole tab, and the cursor of the next page."""

    rows: list[dict[str, Any]]
    total: int
    reasons: dict[str, int]
    next_cursor: str | None
    run_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def tab_source(t: WarehouseTables, tab: Tab, entity: str, run_id: str | None) -> TabSource:
    """The query parts of ``tab`` for ``entity`` (``run_id``: the run a ``sync_result`` tab lists)."""
    if tab in RESULT_TABS:
        r = t.sync_result.c
        cols = [r.record_id, r.operation, r.reason, r.http_status, r.error_title, r.error_detail, r.field_errors,
                r.status_decision, r.batch_id, r.run_id, r.dag_id, r.task_id, r.map_index, r.recorded_at]
        return TabSource(
            t.sync_result,
            [r.entity == entity, r.run_id == (run_id or ""), r.outcome == RESULT_TABS[tab]],
            r.reason, [r.record_id, r.operation], cols, _result_row,
        )
    if tab == "quarantined":
        s = t.sync_state.c
        cols = [s.record_id, s.last_outcome, s.attempts, s.last_error, s.email, s.mailchimp_id, s.extra, s.updated_at]
        return TabSource(t.sync_state, [s.entity == entity, s.quarantined.is_(True)], s.last_outcome, [s.record_id],
                         cols, _state_row)
    if tab in MEMBER_STATUS_TABS:
        m = t.member.c
        cols = [m.list_id, m.member_id, m.email_address, m.status, m.unsubscribe_reason, m.last_changed]
        return TabSource(t.member, [m.status.in_(MEMBER_STATUS_TABS[tab])], m.status, [m.list_id, m.member_id],
                         cols, _member_row)
    raise ValueError(f"unknown tab {tab!r}; known: {', '.join(TABS)}")


def records_page(
    conn: sa.Connection, src: TabSource, *, reason: str | None = None, cursor: str | None = None, limit: int = 50
) -> Page:
    """One page of a tab, filtered by ``reason`` (``NO_REASON`` lists rows without one)."""
    limit = max(1, min(int(limit), MAX_PAGE))
    where = list(src.where)
    counts_stmt = sa.select(src.reason, sa.func.count().label("n")).where(*where).group_by(src.reason)
    reasons = {(row[0] if row[0] is not None else NO_REASON): int(row.n) for row in conn.execute(counts_stmt)}
    null_group = reason == NO_REASON
    if null_group:
        where.append(src.reason.is_(None))
    elif reason is not None:
        where.append(src.reason == reason)
    else:
        where.append(src.reason.is_not(None))
    order = src.keys if null_group else [src.reason, *src.keys]
    if cursor:
        values = decode_cursor(cursor, len(order))
        where.append(sa.tuple_(*order) > sa.tuple_(*[sa.literal(v) for v in values]))
    stmt = sa.select(*src.columns).where(*where).order_by(*order).limit(limit + 1)
    fetched = conn.execute(stmt).all()
    rows = fetched[:limit]
    next_cursor = None
    if len(fetched) > limit:
        last = rows[-1]._mapping
        next_cursor = encode_cursor([last[c.name] for c in order])
    total = reasons.get(reason, 0) if reason is not None else sum(reasons.values())
    return Page([src.to_row(r._mapping) for r in rows], total, reasons, next_cursor)


def record_emails(
    engine: sa.Engine, t: WarehouseTables, entity: str, source: EmailSource | None, record_ids: Sequence[str]
) -> dict[str, str]:
    """``{record_id: email}`` for one page's records: the source query's email (bound ids, one
    probe of the source's key), else ``sync_state.email``. A source that cannot be read (a
    broken ``include/sql`` edit) costs the emails from it, never the page: it is logged."""
    import logging

    from mailchimp_provider.warehouse.extract import tolerant_text

    ids = sorted({i for i in record_ids if i})
    if not ids:
        return {}
    found: dict[str, str] = {}
    if source is not None:
        from mailchimp_provider.sync.engine import source_sql

        try:
            sql = source_sql(source.sql_name, engine)
            stmt = sa.text(
                f"SELECT s.{source.key_column} AS record_id, s.{source.email_column} AS email FROM ({sql}) s "
                f"WHERE s.{source.key_column} IN :ids"
            ).bindparams(sa.bindparam("ids", expanding=True))
            with engine.connect() as conn, tolerant_text(conn):
                for row in conn.execute(stmt, {"ids": ids}):
                    email = row.email.decode("utf-8", "replace") if isinstance(row.email, bytes) else row.email
                    if email not in (None, ""):
                        found.setdefault(str(row.record_id), str(email))
        except Exception as exc:  # noqa: BLE001 - the page shows without the source's emails
            logging.getLogger(__name__).warning(
                "Dashboard: emails of %s records not read from include/sql/%s.sql (%s)", entity, source.sql_name, exc)
    missing = [i for i in ids if i not in found]
    if missing:
        s = t.sync_state.c
        stmt = sa.select(s.record_id, s.email).where(
            s.entity == entity, s.record_id.in_(sa.bindparam("ids", expanding=True)), s.email.is_not(None))
        with engine.connect() as conn:
            found.update({row.record_id: row.email for row in conn.execute(stmt, {"ids": missing})})
    return found


def encode_cursor(values: list[Any]) -> str:
    return json.dumps(values, separators=(",", ":"), default=str)


def decode_cursor(cursor: str, length: int) -> list[str]:
    """The key values a cursor carries; anything else is refused (never spliced into SQL)."""
    try:
        values = json.loads(cursor)
    except ValueError:
        raise BadCursor("cursor is not one this dashboard handed out") from None
    if not isinstance(values, list) or len(values) != length or not all(isinstance(v, (str, int)) for v in values):
        raise BadCursor("cursor is not one this dashboard handed out")
    return values


def _json(value: Any) -> Any:
    if value is None or not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else value


def _result_row(m: Any) -> dict[str, Any]:
    return {
        "record_id": m["record_id"], "operation": m["operation"], "reason": m["reason"],
        "http_status": m["http_status"], "error_title": m["error_title"], "error_detail": m["error_detail"],
        "field_errors": _json(m["field_errors"]), "status_decision": m["status_decision"],
        "batch_id": m["batch_id"], "run_id": m["run_id"], "dag_id": m["dag_id"], "task_id": m["task_id"],
        "map_index": m["map_index"], "recorded_at": _iso(m["recorded_at"]),
    }


def _state_row(m: Any) -> dict[str, Any]:
    extra = _json(m["extra"]) or {}
    return {
        "record_id": m["record_id"], "reason": m["last_outcome"],
        "error_detail": m["last_error"], "error_title": extra.get("reason") if isinstance(extra, dict) else None,
        "attempts": m["attempts"], "email": m["email"], "mailchimp_id": m["mailchimp_id"],
        "recorded_at": _iso(m["updated_at"]),
    }


def _member_row(m: Any) -> dict[str, Any]:
    return {
        "record_id": m["member_id"], "list_id": m["list_id"], "email": m["email_address"], "reason": m["status"],
        "error_detail": m["unsubscribe_reason"], "recorded_at": _iso(m["last_changed"]),
    }


# ------------------------------------------------------------------------------------------------
# one batch (the "Mailchimp batch" extra link of a task)
# ------------------------------------------------------------------------------------------------
BATCH_FIELDS = ("batch_id", "dag_id", "run_id", "task_id", "map_index", "entity", "chunk_no", "status",
                "total_operations", "finished_operations", "errored_operations", "operation_count",
                "submitted_at", "completed_at", "applied_at", "error")


def find_batch(conn: sa.Connection, ledgers: Sequence[WarehouseTables], batch_id: str) -> dict[str, Any] | None:
    """The batch's ledger row, from the first of ``ledgers`` (forward, engagement) that holds it."""
    inspector = sa.inspect(conn)
    for t in ledgers:
        if not inspector.has_table(t.batch.name, schema=t.batch.schema):
            continue
        b = t.batch.c
        row = conn.execute(sa.select(*[b[f] for f in BATCH_FIELDS]).where(b.batch_id == batch_id)).first()
        if row is not None:
            return {k: _iso(v) for k, v in row._mapping.items()}
    return None


def batch_results(conn: sa.Connection, t: WarehouseTables, batch_id: str, *, limit: int = MAX_PAGE) -> dict[str, Any]:
    """What the batch carried, from ``sync_result``: counts by entity, outcome and reason, and the
    records that did not go through (failed, skipped, pending) up to ``limit`` (``ix_..._batch``)."""
    r = t.sync_result.c
    counts: dict[str, dict[str, dict[str, int]]] = {}
    stmt = (sa.select(r.entity, r.outcome, r.reason, sa.func.count().label("n"))
            .where(r.batch_id == batch_id).group_by(r.entity, r.outcome, r.reason))
    for row in conn.execute(stmt):
        counts.setdefault(row.entity, {}).setdefault(row.outcome, {})[row.reason or NO_REASON] = int(row.n)
    cols = [r.entity, r.record_id, r.operation, r.outcome, r.reason, r.http_status, r.error_title, r.error_detail,
            r.field_errors, r.status_decision, r.batch_id, r.run_id, r.dag_id, r.task_id, r.map_index, r.recorded_at]
    stmt = (sa.select(*cols).where(r.batch_id == batch_id, r.outcome != "ok")
            .order_by(r.outcome, r.reason, r.record_id, r.operation).limit(max(1, min(int(limit), MAX_PAGE))))
    rows = [{**_result_row(m._mapping), "entity": m.entity, "outcome": m.outcome} for m in conn.execute(stmt)]
    return {"counts": counts, "rows": rows}


# ------------------------------------------------------------------------------------------------
# campaigns (for analysts)
# ------------------------------------------------------------------------------------------------
CAMPAIGN_FIGURES = ("emails_sent", "opens", "unique_opens", "clicks", "unsubscribed", "hard_bounces", "soft_bounces")


def campaigns(conn: sa.Connection, t: WarehouseTables, *, limit: int = 500) -> list[dict[str, Any]]:
    """Sent campaigns, newest first, with their report figures (bounces = hard + soft)."""
    c = t.campaign.c
    key = list(t.campaign.primary_key.columns)[0]
    figures = [c[name] for name in CAMPAIGN_FIGURES if name in c]
    label = [c[name] for name in ("title", "subject_line") if name in c]
    stmt = (
        sa.select(key.label("campaign_id"), *label, c.send_time, *figures)
        .where(c.send_time.is_not(None))
        .order_by(c.send_time.desc(), key)
        .limit(max(1, min(int(limit), 5000)))
    )
    out = []
    for row in conn.execute(stmt):
        m = row._mapping
        item = {"campaign_id": m["campaign_id"], "title": m.get("title") or m.get("subject_line"),
                "subject_line": m.get("subject_line"), "send_time": _iso(m["send_time"])}
        for name in CAMPAIGN_FIGURES:
            item[name] = int(m.get(name) or 0)
        item["sends"] = item.pop("emails_sent")
        item["bounces"] = item.pop("hard_bounces") + item.pop("soft_bounces")
        out.append(item)
    return out


def campaign_series(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The campaign figures summed per send day, oldest first (the chart's points)."""
    days: dict[str, dict[str, Any]] = {}
    for item in items:
        day = (item["send_time"] or "")[:10]
        point = days.setdefault(day, {"day": day, "sends": 0, "opens": 0, "unique_opens": 0, "clicks": 0,
                                      "unsubscribed": 0, "bounces": 0, "campaigns": 0})
        for name in ("sends", "opens", "unique_opens", "clicks", "unsubscribed", "bounces"):
            point[name] += item[name]
        point["campaigns"] += 1
    return [days[d] for d in sorted(days)]
