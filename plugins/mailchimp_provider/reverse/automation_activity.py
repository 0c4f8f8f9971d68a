"""Who each automation email went to (``automation_recipient``) and what they did
(``automation_recipient_activity``), through batch operations.

An automation email is a campaign: its report id is its own id, and its sent-to list and email
activity are read exactly as a campaign's, one operation per email and report:

* ``GET /reports/{email_id}/email-activity?since=...``: incremental like campaign activity. The
  bookmark (stream ``automation_activity``) is the latest activity timestamp committed, never
  later than the batch's submission; ``since`` starts a lookback before it (Mailchimp's ``since``
  is exclusive) and the upsert on the activity key absorbs the overlap. Rows are the campaign
  activity's own (``normalise.activity_rows``) under the email's id.
* ``GET /reports/{email_id}/sent-to``: an automation email keeps sending, sent-to has no ``since``
  and no documented order, so an email's list is read whole whenever its ``emails_sent`` (from
  ``automation_email``, which the automations task fills first) is above what was read last
  (stream ``automation_recipient_read``, value = the ``total_items`` read). Never partially, so
  no recipient can be skipped.

Each answer commits its rows, its rejected records and its bookmark in one transaction. Every
operation read in a pass is marked (stream ``automation_email_pass``, scope ``<kind>:<email_id>``,
value the pass, or ``<pass>#failed`` when it failed): a retried task skips it; a failure is read
again by the next run.
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
from mailchimp_provider.reverse.audiences import mailchimp_time
from mailchimp_provider.reverse.config import EngagementConfig
from mailchimp_provider.reverse.loading import LoadStats, merge_rows
from mailchimp_provider.reverse.normalise import NormalisationError, Row, activity_rows, recipient_row
from mailchimp_provider.reverse.rejects import Rejects
from mailchimp_provider.sync.paths import api_path
from mailchimp_provider.warehouse.tables import WarehouseTables, to_utc

log = logging.getLogger(__name__)

ENTITY = "automation_activity"
ACTIVITY, SENT_TO = "activity", "sent-to"
BOOKMARK = "automation_activity"
"""Watermark stream: latest activity timestamp committed, per automation email."""
RECIPIENTS_READ = "automation_recipient_read"
"""Watermark stream: the sent-to ``total_items`` last read whole, per automation email."""
PASS = "automation_email_pass"
"""Watermark stream: the pass that read ``<kind>:<email_id>`` (``#failed`` appended if it failed)."""
_FAILED = "#failed"


@dataclass(frozen=True)
class EmailFetch:
    """One planned read of an automation email's report: its activity or its sent-to list."""

    kind: str
    email_id: str
    since: datetime | None = None

    @property
    def operation_id(self) -> str:
        return f"{self.kind}:{self.email_id}"

    def operation(self) -> dict[str, Any]:
        if self.kind == ACTIVITY:
            params = {"exclude_fields": "emails._links,_links"}
            if self.since is not None:
                params["since"] = mailchimp_time(self.since)
            path = api_path("reports", self.email_id, "email-activity")
        else:
            params = {"exclude_fields": "sent_to._links,_links"}
            path = api_path("reports", self.email_id, "sent-to")
        # No ``count``: a batched GET is paged by Mailchimp itself and returns every item.
        return {"method": "GET", "path": path, "operation_id": self.operation_id, "params": params}


def parse_operation_id(operation_id: str) -> EmailFetch | None:
    kind, _, email_id = (operation_id or "").partition(":")
    if kind not in (ACTIVITY, SENT_TO) or not email_id:
        return None
    return EmailFetch(kind, email_id)


def plan(conn: sa.Connection, tables: WarehouseTables, config: EngagementConfig, current_pass: str) -> list[EmailFetch]:
    """The reads this pass still owes: every email that sent anything (activity), and those that
    sent more than was read (sent-to); none already read, or failed, in this pass."""
    e = tables.automation_email
    query = sa.select(e.c.id, e.c.emails_sent).where(e.c.emails_sent > 0, e.c._fivetran_deleted.is_(sa.false()))
    if config.audiences is not None:
        query = query.where(e.c.list_id.in_(config.audiences))
    bookmarks = watermarks.get_values(conn, tables, BOOKMARK)
    read = watermarks.get_values(conn, tables, RECIPIENTS_READ)
    passes = watermarks.get_values(conn, tables, PASS)
    planned: list[EmailFetch] = []
    for email_id, emails_sent in conn.execute(query.order_by(e.c.id)):
        if not _in_pass(passes.get(f"{ACTIVITY}:{email_id}"), current_pass):
            mark = bookmarks.get(email_id)
            since = to_utc(mark) - config.activity.lookback if mark else None
            planned.append(EmailFetch(ACTIVITY, email_id, since))
        if int(read.get(email_id) or 0) < emails_sent and not _in_pass(passes.get(f"{SENT_TO}:{email_id}"), current_pass):
            planned.append(EmailFetch(SENT_TO, email_id))
    return planned


def _in_pass(marker: str | None, current_pass: str) -> bool:
    return marker in (current_pass, current_pass + _FAILED)


@dataclass
class ApplyOutcome:
    stats: LoadStats = field(default_factory=LoadStats)
    emails: int = 0
    failures: list[str] = field(default_factory=list)


def apply_results(
    engine: sa.Engine,
    tables: WarehouseTables,
    results: Iterator[OperationResult],
    *,
    current_pass: str,
    submitted_at: datetime | None,
) -> ApplyOutcome:
    """Load each answer with its rejected records and bookmarks, one transaction per answer."""
    outcome = ApplyOutcome()
    ceiling = to_utc(submitted_at) if submitted_at is not None else datetime.now(timezone.utc)
    for result in results:
        fetch = parse_operation_id(result.operation_id)
        if fetch is None:
            outcome.failures.append(f"an operation with id {result.operation_id!r} (HTTP {result.status_code}); skipped")
            log.error("Automation report result whose operation id %r names no email: skipped", result.operation_id)
            continue
        if not result.ok or not isinstance(result.body, dict):
            message = (f"{fetch.kind} of automation email {fetch.email_id}: HTTP {result.status_code} "
                       f"{result.title}: {result.detail}")
            outcome.failures.append(message)
            log.warning("%s; read again by the next run.", message)
            with engine.begin() as conn:
                watermarks.set_values(conn, tables, PASS, {fetch.operation_id: current_pass + _FAILED})
            continue
        rejected = Rejects(f"automation_{fetch.kind}", fetch.email_id)
        with engine.begin() as conn:
            if fetch.kind == ACTIVITY:
                rows = activity_rows_of(fetch.email_id, result.body, rejected)
                kind = "automation_activity"
                counts = merge_rows(conn, tables.automation_activity, rows, tables.key(kind))
                newest = max((r["timestamp"] for r in rows), default=None)
                if newest is not None:
                    watermarks.advance_timestamps(conn, tables, BOOKMARK, {fetch.email_id: min(newest, ceiling)})
            else:
                rows = recipient_rows_of(fetch.email_id, result.body, rejected)
                kind = "automation_recipient"
                counts = merge_rows(conn, tables.automation_recipient, rows, tables.key(kind))
                total = result.body.get("total_items")
                read = total if isinstance(total, int) else len(rows) + len(rejected)
                watermarks.set_values(conn, tables, RECIPIENTS_READ, {fetch.email_id: str(read)})
            outcome.stats.record(tables.table_name(kind), counts)
            outcome.stats.record(tables.table_name("rejected"), rejects.store(conn, tables, rejected))
            watermarks.set_values(conn, tables, PASS, {fetch.operation_id: current_pass})
        outcome.emails += 1
    return outcome


def activity_rows_of(email_id: str, body: dict[str, Any], rejected: Rejects) -> list[Row]:
    """The ``automation_recipient_activity`` rows of one email-activity answer: the campaign
    activity rows (one definition), keyed by ``automation_email_id``."""
    emails = body.get("emails")
    if emails is None:
        return []
    if not isinstance(emails, list):
        rejected.add(NormalisationError(f"email activity of automation email {email_id!r}", "emails",
                                        type(emails).__name__, "a list"), body)
        return []
    per_email = rejected.normalise(emails, lambda email: list(activity_rows(email, email_id)))
    return [_automation_activity(row) for rows in per_email for row in rows]


def _automation_activity(row: Row) -> Row:
    out = {"automation_email_id": row.pop("campaign_id"), **row}
    combination = out.pop("combination_id")
    if combination is not None:
        out["extra"] = {**(out["extra"] or {}), "combination_id": combination}
    return out


def recipient_rows_of(email_id: str, body: dict[str, Any], rejected: Rejects) -> list[Row]:
    """The ``automation_recipient`` rows of one sent-to answer (the campaign recipient's reading)."""
    items = body.get("sent_to")
    if items is None:
        return []
    if not isinstance(items, list):
        rejected.add(NormalisationError(f"sent-to of automation email {email_id!r}", "sent_to",
                                        type(items).__name__, "a list"), body)
        return []
    return [_automation_recipient(row) for row in rejected.normalise(items, lambda i: recipient_row(i, email_id))]


_RECIPIENT_COLUMNS = ("member_id", "list_id", "email_address", "status", "open_count", "last_open")


def _automation_recipient(row: Row) -> Row:
    out = {"automation_email_id": row["campaign_id"], **{c: row[c] for c in _RECIPIENT_COLUMNS}}
    rest = {k: row[k] for k in ("absplit_group", "gmt_offset", "combination_id") if row.get(k) not in (None, 0)}
    extra = {**(row["extra"] or {}), **rest}
    out["extra"] = extra or None
    return out


__all__ = ["ENTITY", "EmailFetch", "activity_rows_of", "apply_results", "parse_operation_id", "plan",
           "recipient_rows_of"]
