"""Who must never be created in Mailchimp, whatever path a record takes.

The audience sync applies these rules per customer; the e-commerce sync also creates contacts
from guest-checkout orders (``customer_email`` on ``orders``), and those must not bring back a
person who asked to be forgotten or to receive no marketing at all.
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa

from mailchimp_provider.sync.audience import normalise_email, truthy
from mailchimp_provider.warehouse.extract import stream_sql

log = logging.getLogger(__name__)


def blocked_emails(
    db: sa.Engine,
    *,
    customers_sql: str = "customers",
    no_marketing_column: str = "no_marketing",
    erasure_sql: str | None = "erasure_requests",
    chunk_size: int = 5000,
) -> dict[str, str]:
    """``email -> reason`` for every address that must never become a new contact:
    ``erasure_requested`` (``marketing_erasure_requests``, an optional table) and ``no_marketing``
    (a customer row with the no-marketing flag set). Read once per task, streamed."""
    blocked: dict[str, str] = {}
    for chunk in stream_sql(db, customers_sql, chunk_size=chunk_size):
        for row in chunk:
            email = normalise_email(row.get("email"))
            if email and truthy(row.get(no_marketing_column)):
                blocked[email] = "no_marketing"
    if erasure_sql:
        try:
            for chunk in stream_sql(db, erasure_sql, chunk_size=chunk_size):
                for row in chunk:
                    if email := normalise_email(row.get("email")):
                        blocked[email] = "erasure_requested"
        except sa.exc.DBAPIError as exc:  # the erasure table is optional
            log.warning("No erasure requests read (%s); create marketing_erasure_requests to use erasure.",
                        str(exc).splitlines()[0])
    return blocked
