"""The tables this project writes to the warehouse, as SQLAlchemy Core ``Table`` objects.

Names and keys follow /work/shared/warehouse-contract.md ("Tables the project writes"). The
engagement tables also carry every column ``fivetran/dbt_mailchimp`` declares, under its names
(``tests/fixtures/dbt_mailchimp_columns.json``, checked by ``tests/reverse/test_fivetran_columns.py``):
where the contract and the package name the same thing differently, both columns are there (the
contract's key ``list_id``, the package's ``id``); where they want different values under one name
(``url`` and an unsubscribe's ``campaign_id``: '' in a key vs NULL), the contract's key value
lives in ``url_key`` / ``campaign_key`` and the named column holds NULL. ``reverse/schema_upgrade.py``
brings tables of earlier versions to this shape in place.
Every write is an upsert on the primary key declared here (see ``upsert.py``), so the primary key
*is* the idempotency key: change it only together with the contract.

Two column types make SQLite and PostgreSQL behave the same for callers:

* ``UtcDateTime`` stores UTC and always returns timezone-aware UTC datetimes (SQLite has no time
  zone support and hands back naive values; PostgreSQL returns the session's zone). It also
  accepts ISO-8601 strings as Mailchimp sends them (``2024-05-01T10:00:00+00:00``).
* ``JsonText`` stores JSON as text (portable, readable by any SQL client); dicts and lists are
  serialised with sorted keys, strings are stored as given, reads return the text.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import date, datetime, timezone
from typing import Any

import sqlalchemy as sa

from mailchimp_provider.errors import MailchimpConfigError
from mailchimp_provider.json_codec import dumps_sorted

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "mailchimp_"
FIVETRAN_PREFIX = ""
"""Fivetran's layout: no prefix (``list``, ``member``, ...), in a schema such as ``mailchimp``."""

# kind -> table name without prefix. ``activity`` keeps Fivetran's table name.
TABLE_NAMES: dict[str, str] = {
    "sync_state": "sync_state",
    "sync_result": "sync_result",
    "batch": "batch",
    "list": "list",
    "member": "member",
    "unsubscribe": "unsubscribe",
    "campaign": "campaign",
    "activity": "campaign_recipient_activity",
    "recipient": "campaign_recipient",
    "automation": "automation",
    "automation_email": "automation_email",
    "automation_recipient": "automation_recipient",
    "automation_activity": "automation_recipient_activity",
    "segment": "segment",
    "segment_member": "segment_member",
    "watermark": "watermark",
    "rejected": "rejected_record",
}
KINDS: tuple[str, ...] = tuple(TABLE_NAMES)


class UtcDateTime(sa.types.TypeDecorator):
    """A timestamp that goes in and comes out as an aware UTC ``datetime`` on every dialect.

    Naive datetimes are taken to be UTC already (what the rest of the project produces).
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> datetime | None:
        value = to_utc(value)
        if value is not None and dialect.name == "sqlite":
            # SQLite's DATETIME storage drops tzinfo; store UTC wall time so it sorts and compares.
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> datetime | None:
        return to_utc(value)


def to_utc(value: Any) -> datetime | None:
    """Normalise a datetime or ISO-8601 string to an aware UTC datetime (naive means UTC)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)  # the common case: what a driver or Mailchimp wrote
        except ValueError:
            try:
                value = datetime.fromisoformat(value.strip().replace(" ", "T", 1))
            except ValueError:
                raise ValueError(f"not an ISO-8601 timestamp: {value!r}") from None
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime or ISO-8601 string, got {type(value).__name__}: {value!r}")
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


class JsonText(sa.types.TypeDecorator):
    """JSON kept as text: dicts/lists are serialised deterministically, strings stored as given."""

    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> str | None:
        if value is None or isinstance(value, str):
            return value
        return dumps_sorted(value)


def key_text(length: int = 255) -> sa.types.TypeEngine:
    """Text usable in a primary key: VARCHAR(n) where a length is needed (MySQL), TEXT on PostgreSQL."""
    return sa.String(length).with_variant(sa.Text(), "postgresql")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _synced_at() -> sa.Column:
    return sa.Column("synced_at", UtcDateTime, nullable=False, default=_now, onupdate=_now)


FIVETRAN_SYNCED = "_fivetran_synced"
"""When the row was last written, under the name Fivetran's dbt package reads (``dbt source
freshness`` too): a column the database computes from ``synced_at`` (which the forward sync reads),
so it is never out of step with it and costs the bulk load nothing to send (a second timestamp
in every COPY line cost PostgreSQL 18% more CPU)."""
FIVETRAN_DELETED = "_fivetran_deleted"
"""Fivetran's soft-delete flag, on the tables whose package columns declare it; always false here:
a list or campaign deleted in Mailchimp is simply no longer refreshed."""


def _fivetran_synced() -> sa.Column:
    return sa.Column(FIVETRAN_SYNCED, UtcDateTime, sa.Computed("synced_at", persisted=True))


def _fivetran_deleted() -> sa.Column:
    return sa.Column(FIVETRAN_DELETED, sa.Boolean, nullable=False, default=False, server_default=sa.false())


def _columns(*spec: tuple[str, Any]) -> list[sa.Column]:
    """Plain nullable columns from ``(name, type)`` pairs: column groups several tables share."""
    return [sa.Column(name, type_) for name, type_ in spec]


def _bookkeeping(*, extra: bool = True, deleted: bool = False) -> list[sa.Column]:
    """The closing columns of an engagement table: ``extra`` (fields Mailchimp sent that have no
    column), the write time under both names and, where the package declares it, the soft-delete flag."""
    columns = [sa.Column("extra", JsonText)] if extra else []
    columns += [_synced_at(), _fivetran_synced()]
    return columns + [_fivetran_deleted()] if deleted else columns


def _settings_and_tracking() -> list[sa.Column]:
    """A campaign's ``settings`` and ``tracking`` flags under the package's names; an automation
    email is a campaign and carries the same."""
    return _columns(
        *((name, sa.Boolean) for name in (
            "authenticate", "auto_footer", "auto_tweet", "drag_and_drop", "fb_comments", "inline_css",
            "timewarp", "use_conversation",
        )),
        ("clicktale", sa.Text),
        ("google_analytics", sa.Text),
        *((name, sa.Boolean) for name in (
            "track_ecomm_360", "track_goals", "track_html_clicks", "track_opens", "track_text_clicks",
        )),
    )


def _report_summary() -> list[sa.Column]:
    """Opens and clicks of a report summary, as campaigns, automations and their emails carry them."""
    return _columns(
        ("opens", sa.Integer),
        ("unique_opens", sa.Integer),
        ("open_rate", sa.Float),
        ("clicks", sa.Integer),
        ("subscriber_clicks", sa.Integer),
        ("click_rate", sa.Float),
    )


def _recipient_columns(email_key: str) -> list[sa.Column]:
    """Who an email was sent to (GET /reports/{id}/sent-to), keyed by the email's id column."""
    return [
        sa.Column(email_key, key_text(64), primary_key=True),
        sa.Column("member_id", key_text(64), primary_key=True),  # subscriber hash (email_id)
        *_columns(
            ("list_id", sa.Text),
            ("email_address", sa.Text),
            ("status", sa.String(16)),  # delivery: sent | hard | soft
            ("open_count", sa.Integer),
            ("last_open", UtcDateTime),
        ),
    ]


def _activity_columns(email_key: str) -> list[sa.Column]:
    """What a recipient did with an email (GET /reports/{id}/email-activity), keyed by the email's id
    column. The contract's url part of the key, ``url_key``, is '' (not NULL) for actions without a
    URL, so it can be part of the key; ``url`` is the package's column: NULL for those actions."""
    return [
        sa.Column(email_key, key_text(64), primary_key=True),
        sa.Column("member_id", key_text(64), primary_key=True),
        sa.Column("action", key_text(16), primary_key=True),  # open | click | bounce
        sa.Column("timestamp", UtcDateTime, primary_key=True),
        sa.Column("url_key", key_text(2000), primary_key=True, default="", server_default=""),
        *_columns(
            ("url", sa.Text),
            ("list_id", sa.Text),
            ("email_address", sa.Text),
            ("ip", sa.Text),
            ("bounce_type", sa.String(16)),
        ),
    ]


class WarehouseTables:
    """Table objects for one prefix and schema.

    >>> t = WarehouseTables(prefix="mailchimp_", schema="marketing")
    >>> t.member.name, t.table_name("member")
    ('mailchimp_member', 'marketing.mailchimp_member')

    Attributes: ``sync_state``, ``sync_result``, ``batch``, ``list``, ``member``, ``unsubscribe``,
    ``campaign``, ``activity`` (``<prefix>campaign_recipient_activity``), ``recipient``
    (``<prefix>campaign_recipient``), ``automation``, ``automation_email``, ``automation_recipient``,
    ``automation_activity`` (``<prefix>automation_recipient_activity``), ``segment``,
    ``segment_member``, ``watermark`` and ``rejected`` (``<prefix>rejected_record``).
    """

    def __init__(self, prefix: str = DEFAULT_PREFIX, schema: str | None = None) -> None:
        self.prefix = prefix
        self.schema = schema or None
        self.metadata = sa.MetaData(schema=self.schema)
        self.sync_state = self._sync_state()
        self.sync_result = self._sync_result()
        self.batch = self._batch()
        self.watermark = self._watermark()
        self.rejected = self._rejected()
        self.list = self._list()
        self.member = self._member()
        self.unsubscribe = self._unsubscribe()
        self.campaign = self._campaign()
        self.activity = self._activity()
        self.recipient = self._recipient()
        self.automation = self._automation()
        self.automation_email = self._automation_email()
        self.automation_recipient = self._automation_recipient()
        self.automation_activity = self._automation_activity()
        self.segment = self._segment()
        self.segment_member = self._segment_member()

    # -- access ------------------------------------------------------------------------------
    def table(self, kind: str) -> sa.Table:
        """The table of ``kind`` (one of ``KINDS``)."""
        if kind not in TABLE_NAMES:
            raise KeyError(f"unknown warehouse table kind {kind!r}; known: {', '.join(KINDS)}")
        return getattr(self, kind)

    def table_name(self, kind: str) -> str:
        """Schema-qualified table name, for log messages and queries users can copy."""
        name = self.prefix + TABLE_NAMES[kind] if kind in TABLE_NAMES else None
        if name is None:
            raise KeyError(f"unknown warehouse table kind {kind!r}; known: {', '.join(KINDS)}")
        return f"{self.schema}.{name}" if self.schema else name

    def key(self, kind: str) -> list[str]:
        """Primary-key column names of ``kind``: the upsert key."""
        return [c.name for c in self.table(kind).primary_key.columns]

    def create_all(self, engine: sa.Engine) -> None:
        """Create missing tables (and the schema on PostgreSQL); existing engagement tables of an
        earlier version are upgraded in place (``reverse/schema_upgrade.py``), others left alone.
        Whichever DAG runs first after an upgrade does it, so no writer meets an old shape."""
        from mailchimp_provider.reverse.schema_upgrade import upgrade_engagement_tables

        with engine.begin() as conn:
            if self.schema:
                _ensure_schema(conn, self.schema)
        upgrade_engagement_tables(engine, self)
        with engine.begin() as conn:
            self.metadata.create_all(conn, checkfirst=True)
            for table in self.metadata.sorted_tables:  # indexes added since a table was created
                for index in table.indexes:
                    index.create(conn, checkfirst=True)

    # -- bookkeeping (forward direction) -----------------------------------------------------
    def _name(self, kind: str) -> str:
        return self.prefix + TABLE_NAMES[kind]

    def _sync_state(self) -> sa.Table:
        name = self._name("sync_state")
        return sa.Table(
            name,
            self.metadata,
            sa.Column("entity", key_text(32), primary_key=True),
            sa.Column("record_id", key_text(255), primary_key=True),
            sa.Column("payload_hash", sa.String(64)),
            # subscriber hash for members, the store object id for e-commerce entities
            sa.Column("mailchimp_id", sa.Text),
            # list id or store id the record was last synced to
            sa.Column("scope", sa.Text),
            sa.Column("contact_id", sa.Text),
            # last email sent (lower-cased): a new email means "PATCH the member via the old hash"
            sa.Column("email", sa.Text),
            sa.Column("status", sa.String(32)),
            sa.Column("tags_managed", JsonText),
            sa.Column("last_outcome", sa.String(16)),
            sa.Column("attempts", sa.Integer, nullable=False, default=0, server_default="0"),
            sa.Column("quarantined", sa.Boolean, nullable=False, default=False, server_default=sa.false()),
            sa.Column("last_error", sa.Text),
            sa.Column("extra", JsonText),
            sa.Column("synced_at", UtcDateTime),
            sa.Column("updated_at", UtcDateTime, nullable=False, default=_now, onupdate=_now),
            # the rules' digest of the source row the confirmed columns match (engine.EntityRules.source_digest);
            # added in place to tables of earlier versions (reverse/schema_upgrade.py)
            sa.Column("source_hash", sa.String(32)),
            sa.Index(f"ix_{name}_quarantined", "entity", "quarantined"),
        )

    def _sync_result(self) -> sa.Table:
        name = self._name("sync_result")
        return sa.Table(
            name,
            self.metadata,
            sa.Column("run_id", key_text(250), primary_key=True),
            sa.Column("entity", key_text(32), primary_key=True),
            sa.Column("record_id", key_text(255), primary_key=True),
            sa.Column("operation", key_text(32), primary_key=True),
            sa.Column("outcome", sa.String(16), nullable=False),  # ok | failed | skipped | planned
            sa.Column("reason", sa.Text),
            sa.Column("status_decision", sa.Text),
            sa.Column("http_status", sa.Integer),
            sa.Column("error_title", sa.Text),
            sa.Column("error_detail", sa.Text),
            sa.Column("field_errors", JsonText),
            sa.Column("retriable", sa.Boolean),
            sa.Column("attempt", sa.Integer),
            sa.Column("batch_id", sa.String(64)),
            sa.Column("operation_id", sa.Text),
            sa.Column("dag_id", sa.Text),
            sa.Column("task_id", sa.Text),
            sa.Column("map_index", sa.Integer),
            sa.Column("recorded_at", UtcDateTime, nullable=False, default=_now),
            sa.Index(f"ix_{name}_record", "entity", "record_id"),
            sa.Index(f"ix_{name}_batch", "batch_id"),
            # The dashboard's tabs and counts (dashboard/queries.py): one run's rows of one outcome,
            # by reason, paged by key; counts by outcome and reason read the index alone.
            sa.Index(f"ix_{name}_tab", "entity", "run_id", "outcome", "reason", "record_id", "operation"),
        )

    def _batch(self) -> sa.Table:
        name = self._name("batch")
        return sa.Table(
            name,
            self.metadata,
            sa.Column("batch_id", key_text(64), primary_key=True),
            sa.Column("dag_id", sa.Text, nullable=False),
            sa.Column("run_id", sa.Text, nullable=False),
            sa.Column("task_id", sa.Text, nullable=False),
            sa.Column("map_index", sa.Integer, nullable=False, default=-1, server_default="-1"),
            sa.Column("entity", sa.String(32)),
            sa.Column("chunk_no", sa.Integer),
            sa.Column("status", sa.String(32)),  # Mailchimp's: pending, started, finished, ...
            sa.Column("total_operations", sa.Integer),
            sa.Column("finished_operations", sa.Integer),
            sa.Column("errored_operations", sa.Integer),
            sa.Column("operation_count", sa.Integer),  # operations we sent
            sa.Column("submitted_at", UtcDateTime),
            sa.Column("completed_at", UtcDateTime),
            sa.Column("applied_at", UtcDateTime),  # results written to sync_result/sync_state
            sa.Column("error", sa.Text),
            sa.Column("updated_at", UtcDateTime, nullable=False, default=_now, onupdate=_now),
            sa.Index(f"ix_{name}_scope", "dag_id", "run_id", "task_id", "map_index"),
        )

    def _watermark(self) -> sa.Table:
        return sa.Table(
            self._name("watermark"),
            self.metadata,
            # e.g. ("members", list_id), ("email_activity", campaign_id)
            sa.Column("stream", key_text(64), primary_key=True),
            sa.Column("scope", key_text(255), primary_key=True),
            sa.Column("value", sa.Text),
            sa.Column("updated_at", UtcDateTime, nullable=False, default=_now, onupdate=_now),
        )

    def _rejected(self) -> sa.Table:
        return sa.Table(
            self._name("rejected"),
            self.metadata,
            # Records of the engagement pull that could not be stored, kept whole: one row per
            # distinct record (a re-read of the same record updates it, it does not add one).
            sa.Column("stream", key_text(64), primary_key=True),  # list, member, campaign, unsubscribe, email_activity
            sa.Column("scope", key_text(255), primary_key=True),  # list id, campaign id or '*'
            sa.Column("record_hash", key_text(64), primary_key=True),  # MD5 of the record's JSON
            sa.Column("record", sa.Text),  # e.g. "member 'ann@shop.com' of list 'a1b2'"
            sa.Column("field", sa.Text),
            sa.Column("error", sa.Text),
            sa.Column("raw", JsonText),  # the record as Mailchimp sent it
            sa.Column("first_seen_at", UtcDateTime, nullable=False, default=_now),
        )

    # -- engagement (reverse direction; Fivetran column names) -------------------------------
    def _list(self) -> sa.Table:
        return sa.Table(
            self._name("list"),
            self.metadata,
            sa.Column("list_id", key_text(64), primary_key=True),  # the contract's key
            sa.Column("id", sa.Text),  # the same list id, under the name the package reads
            sa.Column("web_id", sa.BigInteger),
            sa.Column("name", sa.Text),
            sa.Column("contact_company", sa.Text),
            sa.Column("contact_address_1", sa.Text),
            sa.Column("contact_address_2", sa.Text),
            sa.Column("contact_city", sa.Text),
            sa.Column("contact_state", sa.Text),
            sa.Column("contact_zip", sa.Text),
            sa.Column("contact_country", sa.Text),
            sa.Column("contact_phone", sa.Text),
            sa.Column("permission_reminder", sa.Text),
            sa.Column("use_archive_bar", sa.Boolean),
            sa.Column("default_from_name", sa.Text),
            sa.Column("default_from_email", sa.Text),
            sa.Column("default_subject", sa.Text),
            sa.Column("default_language", sa.Text),
            sa.Column("notify_on_subscribe", sa.Text),
            sa.Column("notify_on_unsubscribe", sa.Text),
            sa.Column("date_created", UtcDateTime),
            sa.Column("list_rating", sa.Integer),
            sa.Column("email_type_option", sa.Boolean),
            sa.Column("subscribe_url_short", sa.Text),
            sa.Column("subscribe_url_long", sa.Text),
            sa.Column("beamer_address", sa.Text),
            sa.Column("visibility", sa.Text),
            sa.Column("double_optin", sa.Boolean),
            sa.Column("has_welcome", sa.Boolean),
            sa.Column("marketing_permissions", sa.Boolean),
            sa.Column("member_count", sa.Integer),
            sa.Column("unsubscribe_count", sa.Integer),
            sa.Column("cleaned_count", sa.Integer),
            sa.Column("member_count_since_send", sa.Integer),
            sa.Column("unsubscribe_count_since_send", sa.Integer),
            sa.Column("cleaned_count_since_send", sa.Integer),
            sa.Column("campaign_count", sa.Integer),
            sa.Column("campaign_last_sent", UtcDateTime),
            sa.Column("merge_field_count", sa.Integer),
            sa.Column("avg_sub_rate", sa.Float),
            sa.Column("avg_unsub_rate", sa.Float),
            sa.Column("target_sub_rate", sa.Float),
            sa.Column("open_rate", sa.Float),
            sa.Column("click_rate", sa.Float),
            sa.Column("last_sub_date", UtcDateTime),
            sa.Column("last_unsub_date", UtcDateTime),
            *_bookkeeping(deleted=True),
        )

    def _member(self) -> sa.Table:
        name = self._name("member")
        return sa.Table(
            name,
            self.metadata,
            sa.Column("list_id", key_text(64), primary_key=True),
            sa.Column("member_id", key_text(64), primary_key=True),  # subscriber hash (MD5 of email)
            sa.Column("id", sa.Text),  # the same subscriber hash, under the name the package reads
            sa.Column("email_address", sa.Text),
            sa.Column("unique_email_id", sa.Text),
            sa.Column("web_id", sa.BigInteger),
            sa.Column("contact_id", sa.Text),
            sa.Column("full_name", sa.Text),
            sa.Column("email_type", sa.String(16)),
            sa.Column("status", sa.String(32)),
            sa.Column("unsubscribe_reason", sa.Text),
            sa.Column("consents_to_one_to_one_messaging", sa.Boolean),
            sa.Column("merge_fields", JsonText),
            sa.Column("interests", JsonText),
            sa.Column("stats_avg_open_rate", sa.Float),
            sa.Column("stats_avg_click_rate", sa.Float),
            sa.Column("ip_signup", sa.Text),
            sa.Column("timestamp_signup", UtcDateTime),
            sa.Column("ip_opt", sa.Text),
            sa.Column("timestamp_opt", UtcDateTime),
            sa.Column("member_rating", sa.Integer),
            sa.Column("last_changed", UtcDateTime),
            sa.Column("language", sa.Text),
            sa.Column("vip", sa.Boolean),
            sa.Column("email_client", sa.Text),
            sa.Column("latitude", sa.Float),
            sa.Column("longitude", sa.Float),
            sa.Column("gmtoff", sa.Float),
            sa.Column("dstoff", sa.Float),
            sa.Column("country_code", sa.Text),
            sa.Column("timezone", sa.Text),
            sa.Column("location_region", sa.Text),
            sa.Column("source", sa.Text),
            sa.Column("tag_count", sa.Integer),
            sa.Column("tags", JsonText),  # JSON list of tag names
            *_bookkeeping(),
            sa.Index(f"ix_{name}_email", "email_address"),
            sa.Index(f"ix_{name}_last_changed", "list_id", "last_changed"),
        )

    def _unsubscribe(self) -> sa.Table:
        return sa.Table(
            self._name("unsubscribe"),
            self.metadata,
            sa.Column("list_id", key_text(64), primary_key=True),
            sa.Column("member_id", key_text(64), primary_key=True),
            # The contract's campaign part of the key: '' (not NULL) when no campaign caused the
            # unsubscribe, so it can be part of the key. ``campaign_id`` is the package's column.
            sa.Column("campaign_key", key_text(64), primary_key=True, default="", server_default=""),
            sa.Column("timestamp", UtcDateTime, primary_key=True),
            sa.Column("campaign_id", sa.Text),  # NULL when no campaign caused it (Fivetran's way)
            sa.Column("email_address", sa.Text),
            sa.Column("reason", sa.Text),
            sa.Column("source", sa.String(32)),  # "report" (reports/{id}/unsubscribed) or "member"
            *_bookkeeping(),
        )

    def _campaign(self) -> sa.Table:
        name = self._name("campaign")
        return sa.Table(
            name,
            self.metadata,
            sa.Column("campaign_id", key_text(64), primary_key=True),  # the contract's key
            sa.Column("id", sa.Text),  # the same campaign id, under the name the package reads
            sa.Column("web_id", sa.BigInteger),
            sa.Column("list_id", sa.Text),
            sa.Column("segment_id", sa.BigInteger),  # saved segment id (an integer in Mailchimp)
            sa.Column("segment_text", sa.Text),
            sa.Column("title", sa.Text),
            sa.Column("subject_line", sa.Text),
            sa.Column("preview_text", sa.Text),
            sa.Column("type", sa.String(32)),
            sa.Column("status", sa.String(32)),
            sa.Column("create_time", UtcDateTime),
            sa.Column("send_time", UtcDateTime),
            sa.Column("emails_sent", sa.Integer),
            sa.Column("from_name", sa.Text),
            sa.Column("reply_to", sa.Text),
            sa.Column("to_name", sa.Text),
            sa.Column("archive_url", sa.Text),
            sa.Column("long_archive_url", sa.Text),
            sa.Column("content_type", sa.String(32)),
            sa.Column("template_id", sa.BigInteger),
            sa.Column("folder_id", sa.Text),
            sa.Column("parent_campaign_id", sa.Text),
            # settings, tracking and A/B settings (the package's names)
            *_settings_and_tracking(),
            sa.Column("test_size", sa.Integer),
            sa.Column("wait_time", sa.Integer),
            sa.Column("winner_criteria", sa.Text),
            sa.Column("winning_campaign_id", sa.Text),
            sa.Column("winning_combination_id", sa.Text),
            # report summary
            *_report_summary(),
            sa.Column("hard_bounces", sa.Integer),
            sa.Column("soft_bounces", sa.Integer),
            sa.Column("syntax_errors", sa.Integer),
            sa.Column("unsubscribed", sa.Integer),
            sa.Column("abuse_reports", sa.Integer),
            sa.Column("forwards", sa.Integer),
            sa.Column("last_open", UtcDateTime),
            sa.Column("last_click", UtcDateTime),
            *_bookkeeping(deleted=True),
            sa.Index(f"ix_{name}_send_time", "send_time"),
        )

    def _activity(self) -> sa.Table:
        name = self._name("activity")
        return sa.Table(
            name,
            self.metadata,
            *_activity_columns("campaign_id"),
            sa.Column("combination_id", sa.Text),
            *_bookkeeping(),
            # No secondary index: this is the largest table, loaded by the million, and an index on
            # the random subscriber hash made PostgreSQL's COPY ~70% slower. Per-member queries
            # that need one can add it (README, "Tables we write").
        )


    def _recipient(self) -> sa.Table:
        return sa.Table(
            self._name("recipient"),
            self.metadata,
            # GET /reports/{campaign_id}/sent-to: who a campaign was sent to (the package's "sends")
            *_recipient_columns("campaign_id"),
            sa.Column("absplit_group", sa.String(16)),
            sa.Column("gmt_offset", sa.Integer),
            sa.Column("combination_id", sa.Text),  # the package's column; sent-to does not carry it
            *_bookkeeping(),
        )

    # -- classic automations: a workflow, its emails, who each email went to and what they did --
    def _automation(self) -> sa.Table:
        return sa.Table(
            self._name("automation"),
            self.metadata,
            sa.Column("id", key_text(64), primary_key=True),  # workflow id (GET /automations)
            sa.Column("list_id", sa.Text),
            sa.Column("store_id", sa.Text),
            sa.Column("segment_id", sa.BigInteger),  # recipients.segment_opts.saved_segment_id
            sa.Column("segment_text", sa.Text),
            sa.Column("title", sa.Text),
            sa.Column("status", sa.String(32)),  # save | paused | sending
            sa.Column("create_time", UtcDateTime),
            sa.Column("start_time", UtcDateTime),
            sa.Column("emails_sent", sa.Integer),
            sa.Column("workflow_type", sa.Text),
            sa.Column("trigger_settings", JsonText),  # the object as Mailchimp sends it, as Fivetran keeps it
            sa.Column("from_name", sa.Text),
            sa.Column("reply_to", sa.Text),
            *_report_summary(),
            *_bookkeeping(deleted=True),  # deleted: true once the workflow is no longer listed
        )

    def _automation_email(self) -> sa.Table:
        return sa.Table(
            self._name("automation_email"),
            self.metadata,
            sa.Column("id", key_text(64), primary_key=True),  # the email's campaign id (its report id)
            sa.Column("automation_id", sa.Text, nullable=False),
            sa.Column("web_id", sa.BigInteger),
            sa.Column("position", sa.Integer),
            sa.Column("list_id", sa.Text),
            sa.Column("status", sa.String(32)),
            sa.Column("create_time", UtcDateTime),
            sa.Column("start_time", UtcDateTime),
            sa.Column("send_time", UtcDateTime),
            sa.Column("emails_sent", sa.Integer),
            sa.Column("delay_amount", sa.Integer),
            sa.Column("delay_type", sa.Text),  # now | day | hour | week
            sa.Column("delay_direction", sa.Text),  # before | after
            sa.Column("delay_action", sa.Text),
            sa.Column("delay_action_description", sa.Text),
            sa.Column("delay_full_description", sa.Text),
            sa.Column("title", sa.Text),
            sa.Column("subject_line", sa.Text),
            sa.Column("from_name", sa.Text),
            sa.Column("reply_to", sa.Text),
            sa.Column("to_name", sa.Text),
            sa.Column("archive_url", sa.Text),
            sa.Column("content_type", sa.String(32)),
            sa.Column("template_id", sa.BigInteger),
            sa.Column("folder_id", sa.Text),
            *_settings_and_tracking(),
            *_report_summary(),
            *_bookkeeping(deleted=True),
        )

    def _automation_recipient(self) -> sa.Table:
        return sa.Table(
            self._name("automation_recipient"),
            self.metadata,
            # GET /reports/{automation_email_id}/sent-to: who an automation email was sent to
            *_recipient_columns("automation_email_id"),
            *_bookkeeping(),
        )

    def _automation_activity(self) -> sa.Table:
        return sa.Table(
            self._name("automation_activity"),
            self.metadata,
            # GET /reports/{automation_email_id}/email-activity; the key is the campaign activity's
            *_activity_columns("automation_email_id"),
            *_bookkeeping(),
        )

    # -- segments (tags are static segments) -------------------------------------------------
    def _segment(self) -> sa.Table:
        return sa.Table(
            self._name("segment"),
            self.metadata,
            sa.Column("list_id", key_text(64), primary_key=True),
            sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),  # Mailchimp's integer id
            sa.Column("name", sa.Text),
            sa.Column("type", sa.String(16)),  # static (a tag) | saved | fuzzy
            sa.Column("member_count", sa.Integer),  # subscribed members, as Mailchimp counts them
            sa.Column("created_at", UtcDateTime),
            sa.Column("updated_at", UtcDateTime),
            sa.Column("match", sa.String(8)),  # a saved segment's options.match: any | all
            sa.Column("conditions", JsonText),
            *_bookkeeping(deleted=True),  # deleted: true once the segment is no longer listed
        )

    def _segment_member(self) -> sa.Table:
        return sa.Table(
            self._name("segment_member"),
            self.metadata,
            sa.Column("list_id", key_text(64), primary_key=True),
            sa.Column("segment_id", sa.BigInteger, primary_key=True, autoincrement=False),
            sa.Column("member_id", key_text(64), primary_key=True),  # subscriber hash
            sa.Column("email_address", sa.Text),
            sa.Column("status", sa.String(32)),  # the member's status when the segment was read
            *_bookkeeping(extra=False, deleted=True),  # deleted: the member left the segment (or it went)
        )


def refresh_statistics(engine: sa.Engine, tables: Sequence[sa.Table]) -> None:
    """``ANALYZE`` tables after a bulk write, so the planner uses their indexes at once (PostgreSQL;
    other databases are left to themselves). Best effort: a failure is logged, not raised."""
    if engine.dialect.name != "postgresql":
        return
    prep = engine.dialect.identifier_preparer
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE " + ", ".join(prep.format_table(t) for t in tables))
    except sa.exc.DBAPIError as exc:
        log.warning("Could not refresh planner statistics of %s: %s", ", ".join(t.name for t in tables), exc)


def _ensure_schema(conn: sa.Connection, schema: str) -> None:
    dialect = conn.dialect.name
    if dialect == "sqlite":
        attached = {row[1] for row in conn.exec_driver_sql("PRAGMA database_list")}
        if schema not in attached:
            raise MailchimpConfigError(
                f"Warehouse schema {schema!r} is not an attached SQLite database (attached: "
                f"{', '.join(sorted(attached))}). Leave the schema empty for SQLite."
            )
        return
    if schema not in sa.inspect(conn).get_schema_names():
        conn.execute(sa.schema.CreateSchema(schema, if_not_exists=True))
