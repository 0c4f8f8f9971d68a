"""A campaign's email activity straight to PostgreSQL COPY text: the fast path of a first load.

``normalise.activity_rows`` is the definition of an activity row. Going through it costs about
15 µs of Python per row on PostgreSQL (a generic decode, a dict per row, then every value formatted
for COPY again), which made this process the bottleneck of the engagement pull. Nearly every
answer Mailchimp sends has one plain shape, though: the documented fields with string values,
none needing escaping, and UTC timestamps. Such an answer is decoded straight into typed records
(msgspec checks the fields and types in C), and for a plain record the row values *are* its
fields (``url_key`` ``''`` and ``url`` NULL when absent, empty optional fields NULL, ``bounce_type``
only on bounces),
so this module writes its COPY lines directly, at about a third of the cost.

Everything else goes the reference way, so its rows and its errors are exactly the reference's:

* an answer that does not decode into the typed records (a field without a column, which belongs
  in ``extra``; a missing ``email_id``; a value of another type; not JSON) makes
  ``activity_copy_text`` return None, and the caller normalises the generic decode;
* a record that decodes but is not plain (a value to escape, a timestamp with another offset or
  none, an empty action) is normalised by ``activity_rows`` and formatted the general way.

``tests/reverse/test_activity_copy.py`` checks that both give the same text, shape by shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import msgspec

from mailchimp_provider.reverse.normalise import ACTIVITY_COLUMNS, NormalisationError, activity_rows
from mailchimp_provider.reverse.rejects import Rejects
from mailchimp_provider.warehouse.upsert import CopyFormatter, CopyLayout, copy_verbatim

_UTC = timezone.utc
_ISO = datetime.fromisoformat
_NULL = "\\N"
_NO_URL = "\t" + _NULL
"""``url_key`` ``''`` and ``url`` NULL: an action without a URL."""
_ACTIONS = frozenset({"open", "click", "bounce"})


class _Item(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """An activity item with only fields that have a column (``normalise.ACTIVITY_ITEM_FIELDS``)."""

    action: str
    timestamp: str
    url: str | None = None
    ip: str | None = None
    type: str | None = None
    combination_id: str | None = None


class _Email(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """An email record with only fields that have a column (``normalise.ACTIVITY_EMAIL_FIELDS``)."""

    email_id: str
    email_address: str
    campaign_id: str | None = None
    list_id: str | None = None
    list_is_active: Any = None
    activity: list[_Item] | None = None
    links: Any = msgspec.field(default=None, name="_links")


class _Answer(msgspec.Struct):
    """``GET /reports/{campaign_id}/email-activity``; its other fields say nothing per row."""

    emails: list[_Email] | None = None


_DECODER = msgspec.json.Decoder(_Answer)


@dataclass(frozen=True)
class ActivityText:
    """One campaign's activity rows as COPY lines for ``layout``."""

    text: str
    rows: int
    newest: datetime | None
    """The latest activity timestamp among the rows (the campaign's next bookmark)."""


def activity_copy_text(
    campaign_id: str, response: str, layout: CopyLayout, rejected: Rejects
) -> ActivityText | None:
    """COPY lines of every activity row of one campaign's answer (the ``response`` text), in order;
    None when the answer is not in the plain shape as a whole (see module doc).

    A record ``activity_rows`` refuses goes to ``rejected``, as it would through the reference.
    """
    if layout.columns != ACTIVITY_COLUMNS:
        raise ValueError(f"activity COPY layout must be {ACTIVITY_COLUMNS}, got {layout.columns}")
    try:
        answer = _DECODER.decode(response)
    except msgspec.DecodeError:  # also msgspec.ValidationError: an unknown field, another type
        return None
    end = layout.tail + "\n"
    parts: list[str] = []
    count = 0
    newest: datetime | None = None
    general: CopyFormatter | None = None
    for email in answer.emails or ():
        if not email.activity:
            continue
        plain = _plain_lines(email, campaign_id, end)
        if plain is not None:
            text, rows, latest = plain
            parts.append(text)
        else:  # the reference normaliser, formatted the general way
            record = msgspec.to_builtins(email)
            try:
                found = list(activity_rows(record, campaign_id))
            except NormalisationError as exc:
                rejected.add(exc, record)
                continue
            if not found:
                continue
            general = general or CopyFormatter(layout)
            general.write(found, parts.append)
            rows, latest = len(found), max(row["timestamp"] for row in found)
        count += rows
        if newest is None or latest > newest:
            newest = latest
    return ActivityText("".join(parts), count, newest)


def _plain_lines(email: _Email, campaign_id: str, end: str) -> tuple[str, int, datetime] | None:
    """(lines, rows, newest) of a record with activity; None when it is not plain (module doc).

    The hot loop of a first load: checks are ordered so that the common values cost no call.
    """
    member_id = email.email_id
    address = email.email_address
    campaign = email.campaign_id or campaign_id
    list_id = email.list_id
    if not (member_id and copy_verbatim(member_id) and copy_verbatim(address)
            and copy_verbatim(campaign) and (list_id is None or copy_verbatim(list_id))):
        return None
    head = f"{campaign}\t{member_id}\t"
    middle = f"\t{_NULL if list_id is None else list_id}\t{address}\t"
    out = []
    newest = None
    for item in email.activity or ():
        action = item.action
        raw = item.timestamp
        url = item.url
        ip = item.ip
        combination = item.combination_id
        bounce = item.type if action == "bounce" else None
        if ((action not in _ACTIONS and not (action and copy_verbatim(action)))
                or (url and not copy_verbatim(url)) or (ip and not copy_verbatim(ip))
                or (combination and not copy_verbatim(combination))
                or (bounce and not copy_verbatim(bounce))):
            return None
        try:
            ts = _ISO(raw)
        except ValueError:
            return None  # the reference names the field
        if ts.tzinfo is not _UTC:
            return None  # naive or another offset: the reference converts it
        if newest is None or ts > newest:
            newest = ts
        if not (len(raw) == 25 and raw[19:] == "+00:00" and raw[10] == "T" and raw[4] == raw[7] == "-"
                and raw[13] == raw[16] == ":"):
            raw = ts.isoformat()  # "Z", fractions, week dates...: written the way the reference writes them
        urls = f"{url}\t{url}" if url else _NO_URL  # url_key, url
        out.append(
            f"{head}{action}\t{raw}\t{urls}{middle}{ip or _NULL}\t{bounce or _NULL}\t"
            f"{combination or _NULL}\t{_NULL}{end}"
        )
    return "".join(out), len(out), newest  # type: ignore[return-value]  # activity is not empty


def typed_fields() -> tuple[frozenset[str], frozenset[str]]:
    """The JSON fields the typed records accept (email, item): must be those that have a column."""
    email = frozenset(f.encode_name for f in msgspec.structs.fields(_Email))
    item = frozenset(f.encode_name for f in msgspec.structs.fields(_Item))
    return email, item


__all__ = ["ActivityText", "activity_copy_text", "typed_fields"]
