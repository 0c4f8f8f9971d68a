"""Classic automations and their emails (``automation``, ``automation_email``), and the emails'
unsubscribe reports.

An account has few workflows and each few emails, and ``/automations`` can only be filtered by
create and start time while a workflow's status and counts keep changing: so, like Fivetran, both
are read whole every run (``GET /automations``, then ``GET /automations/{id}/emails`` per
workflow, which takes no paging parameters). Reading everything is also what lets a workflow or
email that disappeared from Mailchimp be marked ``_fivetran_deleted`` instead of lingering.

An automation email is a campaign (its id is its report id): its unsubscribes are read with the
campaign task's ``pull_campaign_unsubscribes`` into ``unsubscribe`` (``campaign_id`` = the email's
id, as Fivetran stores them). Who each email went to and what they did is
``reverse.automation_activity`` (batch operations).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

from mailchimp_provider.reverse import rejects, watermarks
from mailchimp_provider.reverse.campaigns import pull_campaign_unsubscribes
from mailchimp_provider.reverse.config import EngagementConfig
from mailchimp_provider.reverse.loading import LoadCounts, LoadStats, merge_rows
from mailchimp_provider.reverse.normalise import (
    REPORT_SUMMARY, SETTINGS_AND_TRACKING, ColumnSpec, NormalisationError, Row, project, to_int, to_json,
    to_text, to_timestamp,
)
from mailchimp_provider.sync.paths import api_path
from mailchimp_provider.warehouse.tables import FIVETRAN_DELETED, WarehouseTables

log = logging.getLogger(__name__)

AUTOMATION_COLUMNS: ColumnSpec = {
    "id": (("id",), to_text),
    "list_id": (("recipients", "list_id"), to_text),
    "store_id": (("recipients", "store_id"), to_text),
    "segment_id": (("recipients", "segment_opts", "saved_segment_id"), to_int),
    "segment_text": (("recipients", "segment_text"), to_text),
    "title": (("settings", "title"), to_text),
    "status": (("status",), to_text),
    "create_time": (("create_time",), to_timestamp),
    "start_time": (("start_time",), to_timestamp),
    "emails_sent": (("emails_sent",), to_int),
    "workflow_type": (("trigger_settings", "workflow_type"), to_text),
    "trigger_settings": (("trigger_settings",), to_json),
    "from_name": (("settings", "from_name"), to_text),
    "reply_to": (("settings", "reply_to"), to_text),
    **REPORT_SUMMARY,
}
AUTOMATION_EMAIL_COLUMNS: ColumnSpec = {
    "id": (("id",), to_text),
    "automation_id": (("workflow_id",), to_text),
    "web_id": (("web_id",), to_int),
    "position": (("position",), to_int),
    "list_id": (("recipients", "list_id"), to_text),
    "status": (("status",), to_text),
    "create_time": (("create_time",), to_timestamp),
    "start_time": (("start_time",), to_timestamp),
    "send_time": (("send_time",), to_timestamp),
    "emails_sent": (("emails_sent",), to_int),
    "delay_amount": (("delay", "amount"), to_int),
    "delay_type": (("delay", "type"), to_text),
    "delay_direction": (("delay", "direction"), to_text),
    "delay_action": (("delay", "action"), to_text),
    "delay_action_description": (("delay", "action_description"), to_text),
    "delay_full_description": (("delay", "full_description"), to_text),
    "title": (("settings", "title"), to_text),
    "subject_line": (("settings", "subject_line"), to_text),
    "from_name": (("settings", "from_name"), to_text),
    "reply_to": (("settings", "reply_to"), to_text),
    "to_name": (("settings", "to_name"), to_text),
    "archive_url": (("archive_url",), to_text),
    "content_type": (("content_type",), to_text),
    "template_id": (("settings", "template_id"), to_int),
    "folder_id": (("settings", "folder_id"), to_text),
    **SETTINGS_AND_TRACKING,
    **REPORT_SUMMARY,
}


def _row(obj: Any, spec: ColumnSpec, record: str) -> Row:
    """``project`` with Mailchimp's ``""`` (unset) stored as NULL, as the package expects."""
    if not isinstance(obj, Mapping):
        raise NormalisationError(record, "(record)", obj, "an object")
    if not obj.get("id"):
        raise NormalisationError(record, "id", obj.get("id"), "an id (the key)")
    row = {k: (None if v == "" else v) for k, v in project(obj, spec, record).items()}
    row[FIVETRAN_DELETED] = False
    return row


def automation_row(obj: Mapping[str, Any]) -> Row:
    """A ``GET /automations`` item as an ``automation`` row."""
    return _row(obj, AUTOMATION_COLUMNS, f"automation {_id(obj)!r}")


def automation_email_row(obj: Mapping[str, Any], automation_id: str) -> Row:
    """A ``GET /automations/{id}/emails`` item as an ``automation_email`` row."""
    row = _row(obj, AUTOMATION_EMAIL_COLUMNS, f"email {_id(obj)!r} of automation {automation_id!r}")
    row["automation_id"] = row["automation_id"] or automation_id
    return row


def _id(obj: Any) -> Any:
    return obj.get("id") if isinstance(obj, Mapping) else None


def pull_automations(
    hook: Any, engine: sa.Engine, tables: WarehouseTables, config: EngagementConfig, *, now: datetime | None = None
) -> LoadStats:
    """Every workflow and its emails (soft-deleting what is gone), then the sending emails'
    unsubscribe reports."""
    now = now or datetime.now(timezone.utc)
    stats = LoadStats()
    rejected = rejects.Rejects("automation", watermarks.ALL_SCOPES)
    workflows = list(hook.paginate("/automations", "automations", params={"exclude_fields": "automations._links"},
                                   sort_field=""))
    listed = {str(w.get("id")) for w in workflows if isinstance(w, Mapping) and w.get("id")}
    automation_rows = [
        row for row in rejected.normalise(workflows, automation_row)
        if config.audiences is None or row["list_id"] in config.audiences
    ]
    email_rows: list[Row] = []
    for workflow in automation_rows:
        answer = hook.get(api_path("automations", workflow["id"], "emails"))
        emails = (answer or {}).get("emails") or []
        email_rows += rejected.normalise(emails, lambda e, w=workflow["id"]: automation_email_row(e, w))
    with engine.begin() as conn:
        a, e = tables.automation, tables.automation_email
        done = merge_rows(conn, a, automation_rows, tables.key("automation"))
        done.changed += _mark_deleted(conn, a, ~a.c.id.in_(listed) if listed else sa.true(), now)
        stats.record(tables.table_name("automation"), done)
        done = merge_rows(conn, e, email_rows, tables.key("automation_email"))
        kept = {r["id"] for r in email_rows}
        gone = sa.or_(~e.c.automation_id.in_(listed), ~e.c.id.in_(kept)) if kept and listed else sa.true()
        done.changed += _mark_deleted(conn, e, gone, now)
        stats.record(tables.table_name("automation_email"), done)
        stats.record(tables.table_name("rejected"), rejects.store(conn, tables, rejected))
    for row in email_rows:
        if row["emails_sent"]:
            stats.merge(pull_campaign_unsubscribes(hook, engine, tables, row["id"], config))
    log.info("Automations: %d workflow(s) with %d email(s) read.", len(automation_rows), len(email_rows))
    return stats


def _mark_deleted(conn: sa.Connection, table: sa.Table, gone: Any, now: datetime) -> int:
    """Flag rows Mailchimp no longer lists (``_fivetran_deleted``); returns how many changed."""
    deleted = table.c[FIVETRAN_DELETED]
    result = conn.execute(
        sa.update(table).where(gone, deleted.is_(sa.false())).values({FIVETRAN_DELETED: True, "synced_at": now})
    )
    if result.rowcount:
        log.info("%s: %d row(s) no longer in Mailchimp, marked %s.", table.name, result.rowcount, FIVETRAN_DELETED)
    return int(result.rowcount or 0)


__all__ = ["automation_email_row", "automation_row", "pull_automations"]
