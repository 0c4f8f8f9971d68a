"""Who must never be created in Mailchimp, whatever path a record takes.

The audience sync applies these rules per customer; the e-commerce sync sends customers too, and
creates contacts from guest-checkout orders (``customer_email`` on ``orders``), and neither may
bring back a person who asked to be forgotten or to receive no marketing at all.

These are safety inputs (``warehouse.optional_inputs.read_safety_input``): they are read in full
before anything is sent, and never fail silently. ``marketing_erasure_requests`` is optional in
the contract, so a missing table means erasure is not configured, and every run's log says so;
any other error reading it, or the ``no_marketing`` flags, fails the task naming the SQL file, the
table and the column.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
import sqlalchemy as sa

from mailchimp_provider.sync.audience import _text, normalise_email, subscriber_hash, truthy
from mailchimp_provider.warehouse.optional_inputs import SafetyInputMissing, read_safety_input

log = logging.getLogger(__name__)

ERASURE_TABLE = "marketing_erasure_requests"
CUSTOMERS_TABLE = "customers"


@dataclass
class ErasureRequests:
    """The erasure requests of one run, keyed the two ways a request can name a person."""

    by_customer: dict[str, str] = field(default_factory=dict)
    """customer id -> requested_at (text)."""
    by_email: dict[str, tuple[str, str]] = field(default_factory=dict)
    """lower-cased email -> (record id, requested_at); the record id of a request that names only
    an email is ``erasure:<hash prefix>`` (it has no customer id)."""
    read: int = 0
    """Rows the query returned."""
    configured: bool = True
    """False when the erasure table does not exist."""

    def record_ids(self) -> set[str]:
        """The sync records these requests act on (one per person)."""
        return set(self.by_customer) | {record_id for record_id, _ in self.by_email.values()}

    def covers(self, customer_id: str | None, email: str | None) -> bool:
        """True when a request names this customer id or this (normalised) email."""
        return bool(customer_id and customer_id in self.by_customer) or bool(email and email in self.by_email)


def read_erasure_requests(db: sa.Engine, sql_name: str = "erasure_requests", *, chunk_size: int = 5000) -> ErasureRequests:
    """Every erasure request (``include/sql/<sql_name>.sql``), logged with its count.

    A missing ``marketing_erasure_requests`` table: erasure is not configured (a warning, every
    run). Any other error: :class:`~mailchimp_provider.errors.MailchimpSafetyInputError`.
    """
    requests = ErasureRequests()
    try:
        for chunk in read_safety_input(db, sql_name, table=ERASURE_TABLE, what="the erasure requests",
                                       optional_table=True, chunk_size=chunk_size):
            for row in chunk:
                requests.read += 1
                requested = _text(row.get("requested_at"))
                customer_id = _text(row.get("customer_id"))
                email = normalise_email(row.get("email"))
                if customer_id:
                    requests.by_customer[customer_id] = requested
                if email:
                    requests.by_email[email] = (customer_id or f"erasure:{subscriber_hash(email)[:16]}", requested)
    except SafetyInputMissing as missing:
        log.warning("Erasure is not configured: %s, so no erasure request is acted on. Create %s(customer_id, "
                    "email, requested_at) to use erasure (see the warehouse contract).", missing, ERASURE_TABLE)
        return ErasureRequests(configured=False)
    log.info("%d erasure request(s) read from %s.sql (%d people).", requests.read, sql_name, len(requests.record_ids()))
    return requests


def no_marketing_emails(
    db: sa.Engine, *, customers_sql: str = "customers", no_marketing_column: str = "no_marketing", chunk_size: int = 5000,
) -> set[str]:
    """Lower-cased emails of customers with the no-marketing flag set."""
    emails: set[str] = set()
    for chunk in read_safety_input(db, customers_sql, table=CUSTOMERS_TABLE, chunk_size=chunk_size,
                                   what=f"the {no_marketing_column} flags of customers",
                                   columns=("email", no_marketing_column)):  # other bad values: their own record
        for row in chunk:
            if no_marketing_column not in row:
                from mailchimp_provider.errors import MailchimpSafetyInputError
                from mailchimp_provider.warehouse.extract import sql_path

                raise MailchimpSafetyInputError(
                    f"Cannot read the {no_marketing_column} flags of customers: {sql_path(customers_sql)} returns "
                    f"no column {no_marketing_column} (table {CUSTOMERS_TABLE}). Nothing was sent.")
            email = normalise_email(row.get("email"))
            if email and truthy(row.get(no_marketing_column)):
                emails.add(email)
    return emails


def blocked_emails(
    db: sa.Engine,
    *,
    customers_sql: str = "customers",
    no_marketing_column: str = "no_marketing",
    erasure_sql: str | None = "erasure_requests",
    chunk_size: int = 5000,
    erasure: ErasureRequests | None = None,
) -> dict[str, str]:
    """``email -> reason`` for every address that must never become a new contact:
    ``erasure_requested`` and ``no_marketing``. Read once per task, streamed; ``erasure`` reuses
    requests the caller has read already."""
    blocked = {email: "no_marketing" for email in no_marketing_emails(
        db, customers_sql=customers_sql, no_marketing_column=no_marketing_column, chunk_size=chunk_size)}
    if erasure is None and erasure_sql:
        erasure = read_erasure_requests(db, erasure_sql, chunk_size=chunk_size)
    for email in (erasure.by_email if erasure else {}):
        blocked[email] = "erasure_requested"
    return blocked

