"""A per-campaign engagement summary computed from the warehouse tables (demo and analysts).

Counts come from the rows the engagement pull loaded, not from Mailchimp's report summary, so the
report doubles as a check that the activity and unsubscribe tables are complete: for a fully pulled
campaign, ``opens`` and ``clicks`` here equal ``mailchimp_campaign.opens`` / ``.clicks``.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from mailchimp_provider.warehouse.tables import WarehouseTables

REPORT_COLUMNS = (
    "campaign_id", "title", "send_time", "emails_sent",
    "opens", "unique_opens", "clicks", "bounces", "unsubscribes",
)


def engagement_report_sql(tables: WarehouseTables) -> str:
    """The report's SQL (portable: SQLite and PostgreSQL), with the configured table names."""
    campaign = tables.table_name("campaign")
    activity = tables.table_name("activity")
    unsubscribe = tables.table_name("unsubscribe")
    return f"""\
SELECT c.campaign_id,
       c.title,
       c.send_time,
       c.emails_sent,
       COALESCE(a.opens, 0)        AS opens,
       COALESCE(a.unique_opens, 0) AS unique_opens,
       COALESCE(a.clicks, 0)       AS clicks,
       COALESCE(a.bounces, 0)      AS bounces,
       COALESCE(u.unsubscribes, 0) AS unsubscribes
FROM {campaign} c
LEFT JOIN (
    SELECT campaign_id,
           SUM(CASE WHEN action = 'open' THEN 1 ELSE 0 END)                  AS opens,
           COUNT(DISTINCT CASE WHEN action = 'open' THEN member_id END)     AS unique_opens,
           SUM(CASE WHEN action = 'click' THEN 1 ELSE 0 END)                 AS clicks,
           COUNT(DISTINCT CASE WHEN action = 'bounce' THEN member_id END)   AS bounces
    FROM {activity}
    GROUP BY campaign_id
) a ON a.campaign_id = c.campaign_id
LEFT JOIN (
    SELECT campaign_id, COUNT(DISTINCT member_id) AS unsubscribes
    FROM {unsubscribe}
    WHERE campaign_key <> ''
    GROUP BY campaign_id
) u ON u.campaign_id = c.campaign_id
WHERE c.status = 'sent'
ORDER BY c.send_time DESC, c.campaign_id"""


def engagement_report(engine: sa.Engine, tables: WarehouseTables) -> list[dict[str, Any]]:
    """One row per sent campaign: campaign_id, title, send_time, emails_sent, opens, unique_opens,
    clicks, bounces (recipients who bounced), unsubscribes (people the campaign's report lists)."""
    # send_time is read through the column's type: an aware UTC datetime on every dialect.
    stmt = sa.text(engagement_report_sql(tables)).columns(send_time=tables.campaign.c.send_time.type)
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(stmt).mappings()]
