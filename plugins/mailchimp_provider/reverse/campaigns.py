"""Sent campaigns with settings and report summary, and their unsubscribe reports.

``/campaigns`` can only be filtered by send or create time, while a sent campaign's numbers keep
changing for days. So each run reads the campaigns sent since ``min(watermark, now - recent
window)``: new campaigns once, and the recent ones again, with their ``/reports`` entry (bounces,
unsubscribes and forwards are only there) and their unsubscribe report (which has no ``since``
filter and is read whole). Older campaigns are left as last read. The first run reads them all.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

from mailchimp_provider.reverse import rejects, unsubscribes, watermarks
from mailchimp_provider.reverse.audiences import mailchimp_time
from mailchimp_provider.reverse.config import EngagementConfig
from mailchimp_provider.reverse.loading import LoadStats, merge_rows
from mailchimp_provider.reverse.normalise import campaign_row, report_unsubscribe_row
from mailchimp_provider.sync.paths import api_path
from mailchimp_provider.warehouse.tables import WarehouseTables

log = logging.getLogger(__name__)


def refresh_since(mark: datetime | None, config: EngagementConfig, now: datetime) -> datetime | None:
    """Start of the send-time window to (re)read; None on the first run (read everything)."""
    if mark is None:
        return None
    return min(mark, now - config.campaigns.recent_window)


def pull_campaigns(
    hook: Any, engine: sa.Engine, tables: WarehouseTables, config: EngagementConfig, *, now: datetime | None = None
) -> LoadStats:
    now = (now or datetime.now(timezone.utc)).replace(microsecond=0)
    stats = LoadStats()
    with engine.connect() as conn:
        mark = watermarks.get_timestamp(conn, tables, watermarks.CAMPAIGNS, watermarks.ALL_SCOPES)
    since = refresh_since(mark, config, now)
    window = {"since_send_time": mailchimp_time(since)} if since else {}
    log.info(
        "Campaigns: %s", f"sent since {window['since_send_time']}" if since else "first load, reading every sent campaign"
    )
    reports = {
        r["id"]: r
        for r in hook.paginate(
            "/reports", "reports", params={**window, "exclude_fields": "reports._links"},
            page_size=config.campaigns.page_size, sort_field="",
        )
    }
    rejected = rejects.Rejects("campaign", watermarks.ALL_SCOPES)
    rows: list[dict[str, Any]] = [
        row
        for row in rejected.normalise(
            hook.paginate(
                "/campaigns", "campaigns", params={**window, "status": "sent", "exclude_fields": "campaigns._links"},
                page_size=config.campaigns.page_size, sort_field="send_time",
            ),
            lambda item: campaign_row(item, reports.get(item.get("id"))),
        )
        if config.audiences is None or row["list_id"] in config.audiences
    ]
    newest = max((r["send_time"] for r in rows if r["send_time"] is not None), default=None)
    with engine.begin() as conn:
        stats.record(tables.table_name("campaign"), merge_rows(conn, tables.campaign, rows, tables.key("campaign")))
        stats.record(tables.table_name("rejected"), rejects.store(conn, tables, rejected))
        if newest is not None:
            watermarks.advance_timestamps(conn, tables, watermarks.CAMPAIGNS, {watermarks.ALL_SCOPES: min(newest, now)})
    for row in rows:
        stats.merge(pull_campaign_unsubscribes(hook, engine, tables, row["campaign_id"], config))
    return stats


def pull_campaign_unsubscribes(
    hook: Any, engine: sa.Engine, tables: WarehouseTables, campaign_id: str, config: EngagementConfig
) -> LoadStats:
    """The whole unsubscribe report of one campaign (the endpoint has no ``since``)."""
    stats = LoadStats()
    rejected = rejects.Rejects("unsubscribe", campaign_id)
    rows = rejected.normalise(
        hook.paginate(
            api_path("reports", campaign_id, "unsubscribed"), "unsubscribes",
            params={"exclude_fields": "unsubscribes._links"}, page_size=config.campaigns.page_size,
            dedupe_key=None, sort_field="",
        ),
        lambda item: report_unsubscribe_row(item, campaign_id),
    )
    if rows or rejected:
        with engine.begin() as conn:
            stats.record(tables.table_name("unsubscribe"), unsubscribes.load(conn, tables, rows))
            stats.record(tables.table_name("rejected"), rejects.store(conn, tables, rejected))
    return stats
