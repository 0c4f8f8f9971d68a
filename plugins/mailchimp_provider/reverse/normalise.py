"""Turn Mailchimp API objects into warehouse rows with Fivetran's column names.

Mailchimp's odd values are made regular here, once, so every loader and every dialect sees the same
thing:

* unset dates arrive as ``""``: they become ``NULL``;
* timestamps (``2024-05-01T10:00:00+00:00``) become aware UTC ``datetime`` objects;
* numbers that arrive as strings are converted; ``""`` numbers become ``NULL``;
* fields we have no column for are kept, not dropped: they go to the table's ``extra`` JSON column
  (``_links`` excepted: it is navigation, not data);
* a value that cannot be converted raises :class:`NormalisationError` naming the record and the
  field, instead of loading a wrong value or silently skipping the row.

The activity flattener is on the hot path of the benchmark (a million rows per run), so it is
hand-written rather than driven by the generic column spec the other entities use.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timezone
from typing import Any

Row = dict[str, Any]
Path = tuple[str, ...]


class NormalisationError(ValueError):
    """A Mailchimp record has a value that cannot be stored in its column."""

    def __init__(self, record: str, field: str, value: Any, expected: str) -> None:
        shown = repr(value)
        if len(shown) > 200:  # a whole record in the wrong place: enough to recognise it
            shown = shown[:200] + "..."
        super().__init__(f"{record}: field {field!r} has {shown}, expected {expected}")
        self.record = record
        self.field = field
        self.value = value


# -- scalar converters -------------------------------------------------------------------------
def to_timestamp(value: Any, record: str, field: str) -> datetime | None:
    """ISO-8601 -> aware UTC datetime; ``""``/``None`` -> ``None`` (Mailchimp's "not set")."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise NormalisationError(record, field, value, "an ISO-8601 timestamp") from None
    else:
        raise NormalisationError(record, field, value, "an ISO-8601 timestamp")
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def to_int(value: Any, record: str, field: str) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise NormalisationError(record, field, value, "an integer")


def to_float(value: Any, record: str, field: str) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise NormalisationError(record, field, value, "a number")


def to_bool(value: Any, record: str, field: str) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    raise NormalisationError(record, field, value, "a boolean")


def to_text(value: Any, record: str, field: str) -> str | None:
    """Strings stay as sent ("" included, it is a value for text); numbers become their text."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise NormalisationError(record, field, value, "a string")


def to_json(value: Any, record: str, field: str) -> Any:
    """Objects and lists are kept whole (the JsonText column serialises them)."""
    return value


Converter = Callable[[Any, str, str], Any]
ColumnSpec = Mapping[str, tuple[Path, Converter]]


def subscriber_hash(email: str) -> str:
    """Mailchimp's member id: MD5 of the lower-cased address."""
    return hashlib.md5(email.strip().lower().encode("utf-8")).hexdigest()


# -- generic projection ------------------------------------------------------------------------
def _get(obj: Mapping[str, Any], path: Path) -> Any:
    value: Any = obj
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def project(obj: Mapping[str, Any], spec: ColumnSpec, record: str) -> Row:
    """Columns of ``spec`` from ``obj``, plus ``extra``: every field no column consumed."""
    row: Row = {}
    for column, (path, convert) in spec.items():
        row[column] = convert(_get(obj, path), record, ".".join(path))
    row["extra"] = leftovers(obj, [path for path, _ in spec.values()]) or None
    return row


def leftovers(obj: Mapping[str, Any], consumed: list[Path]) -> dict[str, Any]:
    """``obj`` without the consumed paths, ``_links`` and the objects left empty by that."""
    heads: dict[str, list[Path]] = {}
    whole: set[str] = set()
    for path in consumed:
        if len(path) == 1:
            whole.add(path[0])
        else:
            heads.setdefault(path[0], []).append(path[1:])
    out: dict[str, Any] = {}
    for key, value in obj.items():
        if key == "_links" or key in whole:
            continue
        if key in heads and isinstance(value, Mapping):
            rest = leftovers(value, heads[key])
            if rest:
                out[key] = rest
        else:
            out[key] = value
    return out


# -- lists ---------------------------------------------------------------------------------------
LIST_COLUMNS: ColumnSpec = {
    "list_id": (("id",), to_text),
    "id": (("id",), to_text),
    "web_id": (("web_id",), to_int),
    "name": (("name",), to_text),
    "contact_company": (("contact", "company"), to_text),
    "contact_address_1": (("contact", "address1"), to_text),
    "contact_address_2": (("contact", "address2"), to_text),
    "contact_city": (("contact", "city"), to_text),
    "contact_state": (("contact", "state"), to_text),
    "contact_zip": (("contact", "zip"), to_text),
    "contact_country": (("contact", "country"), to_text),
    "contact_phone": (("contact", "phone"), to_text),
    "permission_reminder": (("permission_reminder",), to_text),
    "use_archive_bar": (("use_archive_bar",), to_bool),
    "default_from_name": (("campaign_defaults", "from_name"), to_text),
    "default_from_email": (("campaign_defaults", "from_email"), to_text),
    "default_subject": (("campaign_defaults", "subject"), to_text),
    "default_language": (("campaign_defaults", "language"), to_text),
    "notify_on_subscribe": (("notify_on_subscribe",), to_text),
    "notify_on_unsubscribe": (("notify_on_unsubscribe",), to_text),
    "date_created": (("date_created",), to_timestamp),
    "list_rating": (("list_rating",), to_int),
    "email_type_option": (("email_type_option",), to_bool),
    "subscribe_url_short": (("subscribe_url_short",), to_text),
    "subscribe_url_long": (("subscribe_url_long",), to_text),
    "beamer_address": (("beamer_address",), to_text),
    "visibility": (("visibility",), to_text),
    "double_optin": (("double_optin",), to_bool),
    "has_welcome": (("has_welcome",), to_bool),
    "marketing_permissions": (("marketing_permissions",), to_bool),
    "member_count": (("stats", "member_count"), to_int),
    "unsubscribe_count": (("stats", "unsubscribe_count"), to_int),
    "cleaned_count": (("stats", "cleaned_count"), to_int),
    "member_count_since_send": (("stats", "member_count_since_send"), to_int),
    "unsubscribe_count_since_send": (("stats", "unsubscribe_count_since_send"), to_int),
    "cleaned_count_since_send": (("stats", "cleaned_count_since_send"), to_int),
    "campaign_count": (("stats", "campaign_count"), to_int),
    "campaign_last_sent": (("stats", "campaign_last_sent"), to_timestamp),
    "merge_field_count": (("stats", "merge_field_count"), to_int),
    "avg_sub_rate": (("stats", "avg_sub_rate"), to_float),
    "avg_unsub_rate": (("stats", "avg_unsub_rate"), to_float),
    "target_sub_rate": (("stats", "target_sub_rate"), to_float),
    "open_rate": (("stats", "open_rate"), to_float),
    "click_rate": (("stats", "click_rate"), to_float),
    "last_sub_date": (("stats", "last_sub_date"), to_timestamp),
    "last_unsub_date": (("stats", "last_unsub_date"), to_timestamp),
}


def list_row(obj: Mapping[str, Any]) -> Row:
    """A ``GET /lists`` item as a ``mailchimp_list`` row."""
    record = f"list {obj.get('id')!r}"
    if not obj.get("id"):
        raise NormalisationError(record, "id", obj.get("id"), "a list id")
    return project(obj, LIST_COLUMNS, record)


# -- members -------------------------------------------------------------------------------------
MEMBER_COLUMNS: ColumnSpec = {
    "email_address": (("email_address",), to_text),
    "unique_email_id": (("unique_email_id",), to_text),
    "web_id": (("web_id",), to_int),
    "contact_id": (("contact_id",), to_text),
    "full_name": (("full_name",), to_text),
    "email_type": (("email_type",), to_text),
    "status": (("status",), to_text),
    "unsubscribe_reason": (("unsubscribe_reason",), to_text),
    "consents_to_one_to_one_messaging": (("consents_to_one_to_one_messaging",), to_bool),
    "merge_fields": (("merge_fields",), to_json),
    "interests": (("interests",), to_json),
    "stats_avg_open_rate": (("stats", "avg_open_rate"), to_float),
    "stats_avg_click_rate": (("stats", "avg_click_rate"), to_float),
    "ip_signup": (("ip_signup",), to_text),
    "timestamp_signup": (("timestamp_signup",), to_timestamp),
    "ip_opt": (("ip_opt",), to_text),
    "timestamp_opt": (("timestamp_opt",), to_timestamp),
    "member_rating": (("member_rating",), to_int),
    "last_changed": (("last_changed",), to_timestamp),
    "language": (("language",), to_text),
    "vip": (("vip",), to_bool),
    "email_client": (("email_client",), to_text),
    "latitude": (("location", "latitude"), to_float),
    "longitude": (("location", "longitude"), to_float),
    "gmtoff": (("location", "gmtoff"), to_float),
    "dstoff": (("location", "dstoff"), to_float),
    "country_code": (("location", "country_code"), to_text),
    "timezone": (("location", "timezone"), to_text),
    "location_region": (("location", "region"), to_text),
    "source": (("source",), to_text),
    "tag_count": (("tags_count",), to_int),
}
_MEMBER_CONSUMED: list[Path] = [p for p, _ in MEMBER_COLUMNS.values()] + [("id",), ("list_id",), ("tags",)]


def member_row(obj: Mapping[str, Any], list_id: str) -> Row:
    """A ``GET /lists/{id}/members`` item as a ``mailchimp_member`` row.

    ``member_id`` (the contract's name) and ``id`` (the package's) are the subscriber hash; when
    Mailchimp omits ``id`` it is derived from the email.
    ``tags`` is the JSON list of tag names (Mailchimp sends ``[{id, name}]``).
    """
    email = obj.get("email_address")
    record = f"member {email or obj.get('id')!r} of list {list_id!r}"
    member_id = obj.get("id") or (subscriber_hash(email) if isinstance(email, str) and email else None)
    if not member_id:
        raise NormalisationError(record, "id", obj.get("id"), "a subscriber hash or an email_address")
    row: Row = {"list_id": obj.get("list_id") or list_id, "member_id": member_id, "id": member_id}
    for column, (path, convert) in MEMBER_COLUMNS.items():
        row[column] = convert(_get(obj, path), record, ".".join(path))
    row["tags"] = _tag_names(obj.get("tags"), record)
    if row["tag_count"] is None and row["tags"] is not None:
        row["tag_count"] = len(row["tags"])
    row["extra"] = leftovers(obj, _MEMBER_CONSUMED) or None
    return row


def _tag_names(tags: Any, record: str) -> list[str] | None:
    if tags is None:
        return None
    if not isinstance(tags, list):
        raise NormalisationError(record, "tags", tags, "a list of tags")
    names: list[str] = []
    for tag in tags:
        if isinstance(tag, Mapping) and isinstance(tag.get("name"), str):
            names.append(tag["name"])
        elif isinstance(tag, str):
            names.append(tag)
        else:
            raise NormalisationError(record, "tags", tag, "a tag object with a 'name'")
    return sorted(names)


# -- campaigns -----------------------------------------------------------------------------------
# A campaign's settings and tracking flags, under the package's names; an automation email is a
# campaign and carries the same (``reverse/automations.py``).
SETTINGS_AND_TRACKING: ColumnSpec = {
    "authenticate": (("settings", "authenticate"), to_bool),
    "auto_footer": (("settings", "auto_footer"), to_bool),
    "auto_tweet": (("settings", "auto_tweet"), to_bool),
    "drag_and_drop": (("settings", "drag_and_drop"), to_bool),
    "fb_comments": (("settings", "fb_comments"), to_bool),
    "inline_css": (("settings", "inline_css"), to_bool),
    "timewarp": (("settings", "timewarp"), to_bool),
    "use_conversation": (("settings", "use_conversation"), to_bool),
    "clicktale": (("tracking", "clicktale"), to_text),
    "google_analytics": (("tracking", "google_analytics"), to_text),
    "track_ecomm_360": (("tracking", "ecomm360"), to_bool),
    "track_goals": (("tracking", "goal_tracking"), to_bool),
    "track_html_clicks": (("tracking", "html_clicks"), to_bool),
    "track_opens": (("tracking", "opens"), to_bool),
    "track_text_clicks": (("tracking", "text_clicks"), to_bool),
}
# The ``report_summary`` counters campaigns, automations and automation emails carry.
REPORT_SUMMARY: ColumnSpec = {
    "opens": (("report_summary", "opens"), to_int),
    "unique_opens": (("report_summary", "unique_opens"), to_int),
    "open_rate": (("report_summary", "open_rate"), to_float),
    "clicks": (("report_summary", "clicks"), to_int),
    "subscriber_clicks": (("report_summary", "subscriber_clicks"), to_int),
    "click_rate": (("report_summary", "click_rate"), to_float),
}
CAMPAIGN_COLUMNS: ColumnSpec = {
    "campaign_id": (("id",), to_text),
    "id": (("id",), to_text),
    "web_id": (("web_id",), to_int),
    "list_id": (("recipients", "list_id"), to_text),
    "segment_id": (("recipients", "segment_opts", "saved_segment_id"), to_int),
    "segment_text": (("recipients", "segment_text"), to_text),
    "title": (("settings", "title"), to_text),
    "subject_line": (("settings", "subject_line"), to_text),
    "preview_text": (("settings", "preview_text"), to_text),
    "type": (("type",), to_text),
    "status": (("status",), to_text),
    "create_time": (("create_time",), to_timestamp),
    "send_time": (("send_time",), to_timestamp),
    "emails_sent": (("emails_sent",), to_int),
    "from_name": (("settings", "from_name"), to_text),
    "reply_to": (("settings", "reply_to"), to_text),
    "to_name": (("settings", "to_name"), to_text),
    "archive_url": (("archive_url",), to_text),
    "long_archive_url": (("long_archive_url",), to_text),
    "content_type": (("content_type",), to_text),
    "template_id": (("settings", "template_id"), to_int),
    "folder_id": (("settings", "folder_id"), to_text),
    "parent_campaign_id": (("parent_campaign_id",), to_text),
    **SETTINGS_AND_TRACKING,
    "test_size": (("variate_settings", "test_size"), to_int),
    "wait_time": (("variate_settings", "wait_time"), to_int),
    "winner_criteria": (("variate_settings", "winner_criteria"), to_text),
    "winning_campaign_id": (("variate_settings", "winning_campaign_id"), to_text),
    "winning_combination_id": (("variate_settings", "winning_combination_id"), to_text),
    **REPORT_SUMMARY,
}
# Columns the campaign object does not carry but ``GET /reports`` does (or carries more current).
REPORT_COLUMNS: ColumnSpec = {
    "opens": (("opens", "opens_total"), to_int),
    "unique_opens": (("opens", "unique_opens"), to_int),
    "open_rate": (("opens", "open_rate"), to_float),
    "last_open": (("opens", "last_open"), to_timestamp),
    "clicks": (("clicks", "clicks_total"), to_int),
    "subscriber_clicks": (("clicks", "unique_subscriber_clicks"), to_int),
    "click_rate": (("clicks", "click_rate"), to_float),
    "last_click": (("clicks", "last_click"), to_timestamp),
    "hard_bounces": (("bounces", "hard_bounces"), to_int),
    "soft_bounces": (("bounces", "soft_bounces"), to_int),
    "syntax_errors": (("bounces", "syntax_errors"), to_int),
    "unsubscribed": (("unsubscribed",), to_int),
    "abuse_reports": (("abuse_reports",), to_int),
    "forwards": (("forwards", "forwards_count"), to_int),
    "emails_sent": (("emails_sent",), to_int),
}
# Report fields that repeat the campaign's own (not worth keeping twice in ``extra``).
_REPORT_DUPLICATES: list[Path] = [
    ("id",), ("campaign_title",), ("type",), ("list_id",), ("list_is_active",), ("list_name",),
    ("subject_line",), ("preview_text",), ("send_time",),
]


def campaign_row(campaign: Mapping[str, Any], report: Mapping[str, Any] | None = None) -> Row:
    """A ``GET /campaigns`` item, merged with its ``GET /reports`` item, as a ``mailchimp_campaign`` row.

    The report's counters win over the campaign's ``report_summary`` (the report is the fuller
    source: bounces, unsubscribes, forwards); report fields without a column go to
    ``extra["report"]``.
    """
    record = f"campaign {campaign.get('id')!r}"
    if not campaign.get("id"):
        raise NormalisationError(record, "id", campaign.get("id"), "a campaign id")
    row = project(campaign, CAMPAIGN_COLUMNS, record)
    for column in REPORT_COLUMNS:
        row.setdefault(column, None)
    if report:
        report_record = f"report of campaign {campaign.get('id')!r}"
        for column, (path, convert) in REPORT_COLUMNS.items():
            value = convert(_get(report, path), report_record, ".".join(path))
            if value is not None:
                row[column] = value
        rest = leftovers(report, [p for p, _ in REPORT_COLUMNS.values()] + _REPORT_DUPLICATES)
        if rest:
            row["extra"] = {**(row["extra"] or {}), "report": rest}
    return row


# -- unsubscribes --------------------------------------------------------------------------------
_UNSUBSCRIBE_CONSUMED: list[Path] = [
    ("email_id",), ("email_address",), ("timestamp",), ("reason",), ("list_id",), ("campaign_id",),
    ("list_is_active",),
]


def report_unsubscribe_row(obj: Mapping[str, Any], campaign_id: str) -> Row:
    """A ``GET /reports/{id}/unsubscribed`` item as a ``mailchimp_unsubscribe`` row."""
    email = obj.get("email_address")
    record = f"unsubscribe of {email or obj.get('email_id')!r} from campaign {campaign_id!r}"
    member_id = obj.get("email_id") or (subscriber_hash(email) if isinstance(email, str) and email else None)
    if not member_id:
        raise NormalisationError(record, "email_id", obj.get("email_id"), "a subscriber hash or email_address")
    timestamp = to_timestamp(obj.get("timestamp"), record, "timestamp")
    if timestamp is None:
        raise NormalisationError(record, "timestamp", obj.get("timestamp"), "a timestamp (part of the key)")
    list_id = obj.get("list_id")
    if not list_id:
        raise NormalisationError(record, "list_id", list_id, "a list id (part of the key)")
    campaign = obj.get("campaign_id") or campaign_id
    return {
        "list_id": list_id,
        "member_id": member_id,
        "campaign_key": campaign,
        "timestamp": timestamp,
        "campaign_id": campaign,
        "email_address": to_text(email, record, "email_address"),
        "reason": to_text(obj.get("reason"), record, "reason"),
        "source": "report",
        "extra": leftovers(obj, _UNSUBSCRIBE_CONSUMED) or None,
    }


def member_unsubscribe_row(member: Row) -> Row:
    """A list-level unsubscribe derived from a normalised member row whose status is ``unsubscribed``.

    Mailchimp exposes no unsubscribe time on the member, so ``last_changed`` (the time of the change
    that made the status ``unsubscribed``, or later) stands in; no campaign is known to have caused
    it, so ``campaign_id`` is NULL and the key's ``campaign_key`` ``''``.
    """
    if member.get("last_changed") is None:
        raise NormalisationError(
            f"member {member.get('email_address')!r} of list {member.get('list_id')!r}",
            "last_changed", None, "a timestamp to date the unsubscribe",
        )
    return {
        "list_id": member["list_id"],
        "member_id": member["member_id"],
        "campaign_key": "",
        "timestamp": member["last_changed"],
        "campaign_id": None,
        "email_address": member.get("email_address"),
        "reason": member.get("unsubscribe_reason"),
        "source": "member",
        "extra": None,
    }


# -- campaign recipients (sent-to) ---------------------------------------------------------------
RECIPIENT_COLUMNS: ColumnSpec = {
    "list_id": (("list_id",), to_text),
    "email_address": (("email_address",), to_text),
    "status": (("status",), to_text),
    "open_count": (("open_count",), to_int),
    "last_open": (("last_open",), to_timestamp),
    "absplit_group": (("absplit_group",), to_text),
    "gmt_offset": (("gmt_offset",), to_int),
    "combination_id": (("combination_id",), to_text),
}
_RECIPIENT_CONSUMED: list[Path] = [p for p, _ in RECIPIENT_COLUMNS.values()] + [
    ("email_id",), ("campaign_id",), ("list_is_active",), ("merge_fields",), ("vip",),
]
"""``merge_fields`` and ``vip`` repeat the member's own (``mailchimp_member``): not kept twice."""


def recipient_row(obj: Mapping[str, Any], campaign_id: str) -> Row:
    """A ``GET /reports/{id}/sent-to`` item as a ``campaign_recipient`` row; ``""`` values of
    optional fields (``absplit_group`` of a campaign that is no A/B test) become NULL."""
    email = obj.get("email_address") if isinstance(obj, Mapping) else None
    record = f"recipient {email!r} of campaign {campaign_id!r}"
    if not isinstance(obj, Mapping):
        raise NormalisationError(record, "sent_to[]", obj, "an object")
    member_id = obj.get("email_id") or (subscriber_hash(email) if isinstance(email, str) and email else None)
    if not member_id:
        raise NormalisationError(record, "email_id", obj.get("email_id"), "a subscriber hash or email_address")
    row: Row = {"campaign_id": obj.get("campaign_id") or campaign_id, "member_id": member_id}
    for column, (path, convert) in RECIPIENT_COLUMNS.items():
        value = convert(_get(obj, path), record, ".".join(path))
        row[column] = None if value == "" else value
    row["extra"] = leftovers(obj, _RECIPIENT_CONSUMED) or None
    return row


# -- email activity (hot path) -------------------------------------------------------------------
_UTC = timezone.utc
_ISO = datetime.fromisoformat
ACTIVITY_EMAIL_FIELDS = frozenset(
    {"campaign_id", "list_id", "list_is_active", "email_id", "email_address", "activity", "_links"}
)
"""Fields of an email record that have a column (or say nothing new: ``list_is_active``, links);
any other goes to ``extra``."""
ACTIVITY_ITEM_FIELDS = frozenset({"action", "timestamp", "url", "ip", "type", "combination_id"})
"""Fields of an activity item that have a column; any other goes to ``extra``."""
ACTIVITY_COLUMNS = (
    "campaign_id", "member_id", "action", "timestamp", "url_key", "url", "list_id", "email_address", "ip",
    "bounce_type", "combination_id", "extra",
)
"""The columns of an activity row, in the order ``activity_rows`` builds them."""


def _activity_time(raw: Any, address: Any, campaign: str) -> datetime:
    """Mailchimp's ``YYYY-MM-DDTHH:MM:SS+00:00`` parses straight to an aware UTC datetime (C speed);
    other offsets are converted, naive times taken as UTC; anything else is an error."""
    try:
        ts = _ISO(raw)
    except (TypeError, ValueError):
        raise NormalisationError(
            f"email activity of {address!r} in campaign {campaign!r}", "activity.timestamp", raw,
            "an ISO-8601 timestamp (part of the key)",
        ) from None
    if ts.tzinfo is _UTC:  # "+00:00" gives the timezone.utc singleton
        return ts
    return ts.replace(tzinfo=_UTC) if ts.tzinfo is None else ts.astimezone(_UTC)


def activity_rows(email: Mapping[str, Any], campaign_id: str) -> Iterator[Row]:
    """One ``mailchimp_campaign_recipient_activity`` row per item of an email's ``activity`` list.

    An email record without ``activity`` (or with ``null``) has nothing to load and yields nothing:
    Mailchimp sends such records (airbyte#4787). ``url`` is NULL for actions without one (and the
    key's ``url_key`` ``''``); ``url_key`` is the URL otherwise, and
    ``bounce_type`` is the bounce's ``type`` (``hard``/``soft``). Fields without a column, of the
    email record or of the item, go to ``extra`` (the item's win on a clash).
    """
    if not isinstance(email, Mapping):
        raise NormalisationError(f"email activity of campaign {campaign_id!r}", "emails[]", email, "an object")
    activity = email.get("activity")
    if not activity:
        return
    address = email.get("email_address")
    if not isinstance(activity, list):
        raise NormalisationError(
            f"email activity of {address!r} in campaign {campaign_id!r}", "activity", activity, "a list"
        )
    member_id = email.get("email_id")
    if not member_id:
        if not isinstance(address, str) or not address:
            raise NormalisationError(
                f"email activity of campaign {campaign_id!r}", "email_id", member_id,
                "a subscriber hash or email_address",
            )
        member_id = subscriber_hash(address)
    campaign = email.get("campaign_id") or campaign_id
    list_id = email.get("list_id")
    email_extra = None
    if not email.keys() <= ACTIVITY_EMAIL_FIELDS:
        email_extra = {k: v for k, v in email.items() if k not in ACTIVITY_EMAIL_FIELDS}
    for item in activity:
        if not isinstance(item, Mapping):
            raise NormalisationError(
                f"email activity of {address!r} in campaign {campaign!r}", "activity[]", item, "an object"
            )
        action = item.get("action")
        if not action:
            raise NormalisationError(
                f"email activity of {address!r} in campaign {campaign!r}", "activity.action", action,
                "open, click or bounce",
            )
        ts = _activity_time(item.get("timestamp"), address, campaign)
        extra = email_extra
        if not item.keys() <= ACTIVITY_ITEM_FIELDS:
            extra = {**(email_extra or {}), **{k: v for k, v in item.items() if k not in ACTIVITY_ITEM_FIELDS}}
        url = item.get("url") or None
        yield {
            "campaign_id": campaign,
            "member_id": member_id,
            "action": action,
            "timestamp": ts,
            "url_key": url or "",
            "url": url,
            "list_id": list_id,
            "email_address": address,
            "ip": item.get("ip") or None,
            "bounce_type": (item.get("type") or None) if action == "bounce" else None,
            "combination_id": item.get("combination_id") or None,
            "extra": extra,
        }
