"""Who each campaign was sent to (``GET /reports/{campaign_id}/sent-to``), through batch operations.

``campaign_recipient`` is what ``fivetran/dbt_mailchimp`` counts as a campaign's *sends*; without
it the package counts only the recipients who did something. Mailchimp's sent-to list has no
``since`` filter and does not change once a campaign is sent, so, like Fivetran, each campaign is
read once: one operation per page of 1000 (Mailchimp's maximum ``count``), as many pages as the
campaign's ``emails_sent`` (from ``mailchimp_campaign``, which the campaign task fills first).

Bookmarks: each page read is marked done (``watermark`` stream ``campaign_recipient_page``, scope
``<campaign_id>@<offset>``) in the transaction of its rows and its rejected records, so a page is
never marked without its rows and a rerun reads only the pages still missing. A page whose
operation failed is marked failed for the current pass (not read again in it; the next run retries).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from mailchimp_provider.batches.results import OperationResult
from mailchimp_provider.reverse import rejects, watermarks
from mailchimp_provider.reverse.config import EngagementConfig
from mailchimp_provider.reverse.loading import LoadCounts, merge_rows
from mailchimp_provider.reverse.normalise import NormalisationError, recipient_row
from mailchimp_provider.reverse.rejects import Rejects
from mailchimp_provider.sync.paths import api_path
from mailchimp_provider.warehouse.tables import WarehouseTables

log = logging.getLogger(__name__)

ENTITY = "campaign_recipient"
PAGE_SIZE = 1000
"""Mailchimp's maximum ``count`` for sent-to."""
DONE = "done"
_FAILED = "failed:"


@dataclass(frozen=True)
class PageFetch:
    """One planned ``GET /reports/{campaign_id}/sent-to`` page."""

    campaign_id: str
    offset: int

    @property
    def scope(self) -> str:
        return f"{self.campaign_id}@{self.offset}"

    def operation(self) -> dict[str, Any]:
        return {
            "method": "GET",
            "path": api_path("reports", self.campaign_id, "sent-to"),
            "operation_id": self.scope,
            "params": {"count": PAGE_SIZE, "offset": self.offset},
        }


def parse_scope(operation_id: str) -> PageFetch | None:
    """The page an operation id names (``<campaign_id>@<offset>``); None if it names none."""
    campaign_id, _, offset = (operation_id or "").rpartition("@")
    if not campaign_id or not offset.isdigit():
        return None
    return PageFetch(campaign_id, int(offset))


def plan(conn: sa.Connection, tables: WarehouseTables, config: EngagementConfig, current_pass: str) -> list[PageFetch]:
    """Pages of sent campaigns not read yet (nor failed in this pass), oldest send first."""
    c = tables.campaign
    query = sa.select(c.c.campaign_id, c.c.emails_sent).where(c.c.status == "sent")
    if config.audiences is not None:
        query = query.where(c.c.list_id.in_(config.audiences))
    marks = watermarks.get_values(conn, tables, watermarks.CAMPAIGN_RECIPIENT_PAGES)
    planned = []
    for campaign_id, emails_sent in conn.execute(query.order_by(c.c.send_time, c.c.campaign_id)):
        for offset in range(0, max(emails_sent or 0, 1), PAGE_SIZE):
            page = PageFetch(campaign_id, offset)
            mark = marks.get(page.scope)
            if mark != DONE and mark != _FAILED + current_pass:
                planned.append(page)
    return planned


@dataclass
class ApplyOutcome:
    counts: LoadCounts = field(default_factory=LoadCounts)
    rejected: LoadCounts = field(default_factory=LoadCounts)
    pages: int = 0
    failures: list[str] = field(default_factory=list)


def apply_results(
    engine: sa.Engine, tables: WarehouseTables, results: Iterator[OperationResult], *, current_pass: str
) -> ApplyOutcome:
    """Load each page's recipients with its rejected records and its done mark, one transaction per page."""
    outcome = ApplyOutcome()
    for result in results:
        page = parse_scope(result.operation_id)
        if page is None:
            outcome.failures.append(f"an operation with id {result.operation_id!r} (HTTP {result.status_code}); skipped")
            log.error("Sent-to result whose operation id %r names no page: skipped", result.operation_id)
            continue
        body = result.body if result.ok else None
        if not isinstance(body, dict):
            message = f"sent-to of campaign {page.campaign_id} at offset {page.offset}: HTTP {result.status_code} " \
                      f"{result.title}: {result.detail}"
            outcome.failures.append(message)
            log.warning("%s; read again by the next run.", message)
            with engine.begin() as conn:
                watermarks.set_values(conn, tables, watermarks.CAMPAIGN_RECIPIENT_PAGES, {page.scope: _FAILED + current_pass})
            continue
        rejected = Rejects(ENTITY, page.campaign_id)
        rows = page_rows(page.campaign_id, body, rejected)
        with engine.begin() as conn:
            outcome.counts.add(merge_rows(conn, tables.recipient, rows, tables.key("recipient")))
            outcome.rejected.add(rejects.store(conn, tables, rejected))
            watermarks.set_values(conn, tables, watermarks.CAMPAIGN_RECIPIENT_PAGES, {page.scope: DONE})
        outcome.pages += 1
    return outcome


def page_rows(campaign_id: str, body: dict[str, Any], rejected: Rejects) -> list[dict[str, Any]]:
    """The rows of one sent-to page; records that cannot be stored (and a ``sent_to`` that is no
    list) go to ``rejected``."""
    items = body.get("sent_to")
    if items is None:
        return []
    if not isinstance(items, list):
        rejected.add(NormalisationError(f"sent-to of campaign {campaign_id!r}", "sent_to", type(items).__name__,
                                        "a list"), body)
        return []
    return rejected.normalise(items, lambda item: recipient_row(item, campaign_id))


__all__ = ["ENTITY", "PageFetch", "apply_results", "page_rows", "plan"]
