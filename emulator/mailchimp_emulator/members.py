"""List members: the member rules, the member routes, member tags and batch subscribe.

Member rules (each one is Mailchimp behaviour described in /work/shared/mailchimp-api.md §3, §6, §9):

* Members are keyed by ``subscriber_hash`` = md5 of the trimmed, lower-cased email. The
  ``{subscriber_hash}`` path slot also accepts the email address itself or the ``contact_id``.
* POST of an email already on the list (in any status, archived included) -> 400 "Member Exists".
* PUT upserts: ``status_if_new`` for a new member; an existing member keeps its status unless
  ``status`` is given. PUT un-archives. A body email that differs from the URL member's email is an
  email change of that member; if the new email belongs to another member -> 400 "Member Exists".
* Setting ``subscribed`` on an ``unsubscribed`` or ``cleaned`` member -> 400 "Member In Compliance
  State" (``pending`` is allowed: that sends a double opt-in email).
* DELETE archives (204). Archiving a pending, cleaned or archived member -> 405 with ``Allow: GET, PUT``.
* ``actions/delete-permanent`` removes the member and leaves a tombstone; adding that email again
  (POST, PUT, batch subscribe) -> 400 "Forgotten Email Not Subscribed".
* ``required`` merge fields must have a value, ADDRESS values must be complete (addr1, city, state,
  zip), number/date values must parse, unless ``skip_merge_validation=true``.
* ``last_changed`` moves on every change. Mailchimp reports it with second precision; internally each
  member also carries a strictly increasing ``_changed`` epoch so ``since_last_changed`` and
  ``sort_field=last_changed`` keep the true order of changes made within one second.

Fake-email rule (the emulator's reading of "looks fake or invalid"): an address is rejected with 400
"Invalid Resource" / "<email> looks fake or invalid, please enter a real email address." when

* it is not ``local@domain`` with a non-empty local part and a dotted domain of letters, digits and
  hyphens ending in an alphabetic TLD of 2+ letters;
* the domain is ``example.com``, ``example.org`` or ``example.net`` (or a subdomain of them), or ends
  in one of the reserved TLDs ``.invalid``, ``.test``, ``.localhost``, ``.example``;
* the local part is exactly one of ``test``, ``asdf``, ``fake``, ``noreply``, ``no-reply``.

Realistic generated addresses such as ``jane.smith42@example-shop.com`` or
``k.lee@mail.test-retail.net`` pass.

Stored members are :class:`records.Member` objects (compact slots records read and written like
dicts in the API's shape, plus the private keys ``_changed`` and ``_created``; ``last_changed`` and
``tags_count`` are derived); :func:`member_view` gives the API form. Other modules use :func:`subscriber_hash`,
:func:`find_member`, :func:`upsert_member`, :func:`set_member_status` and :func:`require_list`.
"""

from __future__ import annotations

import functools
import hashlib
import random
import re
import time
from datetime import date, datetime
from typing import Any

from .collections import filter_fields, page
from .errors import ApiError, bad_request, invalid_resource, method_not_allowed, not_found, schema_error
from .records import Address, Member, MemberTag, shared
from .routing import Call, Reply, no_content, ok, router
from .state import EmulatorState, iso, parse_iso

MEMBER_STATUSES = ("subscribed", "unsubscribed", "cleaned", "pending", "transactional")
PATCH_STATUSES = ("subscribed", "unsubscribed", "cleaned", "pending")
BATCH_SUBSCRIBE_LIMIT = 500
DEFAULT_UNSUBSCRIBE_REASON = "N/A (Unsubscribed by an admin)"
SOURCE_NAMES = {"API": "API - Generic"}

_EMAIL_RE = re.compile(r"^[^@\s]+@((?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,})$")
_FAKE_DOMAINS = ("example.com", "example.org", "example.net")
_FAKE_DOMAIN_SUFFIXES = tuple("." + d for d in _FAKE_DOMAINS)
_RESERVED_TLDS = ("invalid", "test", "localhost", "example")
_FAKE_LOCAL_PARTS = frozenset({"test", "asdf", "fake", "noreply", "no-reply"})
_OPTIONAL_FIELDS = (
    "email_type",
    "interests",
    "language",
    "vip",
    "location",
    "ip_signup",
    "timestamp_signup",
    "ip_opt",
    "timestamp_opt",
    "marketing_permissions",
)


# ------------------------------------------------------------------------------------------------
# helpers used by other modules
# ------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=8192)
def subscriber_hash(email: str) -> str:
    """Mailchimp's member id: md5 of the trimmed, lower-cased email address."""
    return hashlib.md5(email.strip().lower().encode()).hexdigest()


def require_list(state: EmulatorState, list_id: str) -> dict[str, Any]:
    """The stored list, or 404 Resource Not Found."""
    found = state.lists.get(list_id)
    if found is None:
        raise not_found()
    return found


def find_member(state: EmulatorState, list_id: str, key: str) -> Member | None:
    """The stored member for ``key`` (subscriber hash, email address or contact_id); None if absent.

    Archived members are found (they are still on the list); permanently deleted ones are not.
    """
    members = state.members.get(list_id)
    if not members or not key:
        return None
    key = key.strip()
    if "@" in key:
        return members.get(subscriber_hash(key))
    lowered = key.lower()
    if lowered in members:
        return members[lowered]
    by_contact = state.contact_ids.get(list_id, {}).get(lowered)
    return members.get(by_contact) if by_contact else None


def upsert_member(
    state: EmulatorState,
    list_id: str,
    email: str,
    *,
    status_if_new: str | None,
    status: str | None = None,
    merge_fields: dict[str, Any] | None = None,
    tags: list[str] | None = None,
    source: str = "API",
    skip_merge_validation: bool = False,
    extra: dict[str, Any] | None = None,
) -> Member:
    """Add or update the member ``email`` like ``PUT /lists/{id}/members/{hash}``; returns the stored member.

    ``tags`` are added to new members only (as Mailchimp does on PUT). ``extra`` carries the other
    writable member fields (``email_type``, ``language``, ``vip``, ``interests``, ``ip_signup``...).
    Raises :class:`ApiError` for every rule in the module docstring.
    """
    require_list(state, list_id)
    email = check_email(email)
    existing = state.members.get(list_id, {}).get(subscriber_hash(email))
    if existing is None:
        return create_member(
            state,
            list_id,
            email,
            status=status or status_if_new,
            merge_fields=merge_fields,
            tags=tags,
            source=source,
            skip_merge_validation=skip_merge_validation,
            extra=extra,
        )
    if existing["status"] == "archived":
        # PUT brings an archived contact back; it lost its old status, so it is "new" again.
        status = status or status_if_new
        _require_status(status, MEMBER_STATUSES, "status_if_new")
    update_member(
        state,
        list_id,
        existing,
        status=status,
        merge_fields=merge_fields,
        skip_merge_validation=skip_merge_validation,
        extra=extra,
    )
    return existing


def set_member_status(
    state: EmulatorState, list_id: str, subscriber_hash: str, status: str, *, reason: str | None = None
) -> Member:
    """Change a member's status (e.g. an unsubscribe or a bounce from campaign activity); 404 if absent.

    The compliance rule applies: an unsubscribed or cleaned member cannot become ``subscribed``.
    """
    member = find_member(state, list_id, subscriber_hash)
    if member is None:
        raise not_found()
    _require_status(status, MEMBER_STATUSES + ("archived",), "status")
    _apply_status(member, status, reason=reason)
    _touch(state, member)
    return member


def check_email(email: Any) -> str:
    """The trimmed address, or 400 if it is missing or looks fake (rule in the module docstring)."""
    if not isinstance(email, str) or not email.strip():
        raise schema_error([{"field": "email_address", "message": "This value should not be blank."}])
    email = email.strip()
    if looks_fake(email):
        raise invalid_resource(f"{email} looks fake or invalid, please enter a real email address.")
    return email


@functools.lru_cache(maxsize=8192)
def looks_fake(email: str) -> bool:
    """True when Mailchimp's emulator would refuse ``email`` as fake or invalid."""
    lowered = email.strip().lower()
    match = _EMAIL_RE.match(lowered)
    if not match:
        return True
    local, domain = lowered.rsplit("@", 1)
    if local in _FAKE_LOCAL_PARTS:
        return True
    if domain in _FAKE_DOMAINS or domain.endswith(_FAKE_DOMAIN_SUFFIXES):
        return True
    return domain.rsplit(".", 1)[-1] in _RESERVED_TLDS


def member_view(member: Member) -> dict[str, Any]:
    """The API form of a stored member: private keys dropped, tags as ``[{id, name}]``, ``_links``."""
    view = member.api_dict()
    base = f"/3.0/lists/{member['list_id']}/members/{member['id']}"
    view["_links"] = [
        {"rel": "self", "href": base, "method": "GET"},
        {"rel": "parent", "href": f"/3.0/lists/{member['list_id']}/members", "method": "GET"},
        {"rel": "upsert", "href": base, "method": "PUT"},
        {"rel": "delete", "href": base, "method": "DELETE"},
    ]
    return view


def member_reply(member: Member) -> Reply:
    """The answer of a member write: its API form, flagged float-free when it is (see
    ``Member.float_free``), so a batch writes it with msgspec (a PUT's largest cost otherwise)."""
    return ok(member_view(member), float_free=member.float_free())


# ------------------------------------------------------------------------------------------------
# member writes
# ------------------------------------------------------------------------------------------------
def create_member(
    state: EmulatorState,
    list_id: str,
    email: str,
    *,
    status: str | None,
    merge_fields: dict[str, Any] | None = None,
    tags: list[str] | None = None,
    source: str = "API",
    skip_merge_validation: bool = False,
    extra: dict[str, Any] | None = None,
) -> Member:
    """Add a member that is not on the list (the caller checked); applies the forgotten and merge rules."""
    email = check_email(email)
    _require_status(status, MEMBER_STATUSES, "status")
    h = subscriber_hash(email)
    if h in state.forgotten.get(list_id, ()):
        raise ApiError(
            400,
            "Forgotten Email Not Subscribed",
            f"{email} was permanently deleted and cannot be re-imported. "
            "The contact must re-subscribe to get back on the list.",
        )
    values = validate_merge_fields(state, list_id, merge_fields or {}, new=True, skip=skip_merge_validation)
    changed = state.tick()
    stamp = iso(changed)
    # The constant fields (stats, member_rating, sms_*...) and the empty interests, location and
    # marketing_permissions are records.Member defaults; last_changed and tags_count are derived.
    member = Member.new(
        id=h,
        email_address=email,
        unique_email_id="%010x" % random.getrandbits(40),
        contact_id="%032x" % random.getrandbits(128),
        web_id=100_000_000 + int(random.random() * 900_000_000),  # like randint, at a tenth of the cost
        status=status,
        merge_fields=values,
        timestamp_opt=stamp if status == "subscribed" else "",
        source=SOURCE_NAMES.get(source, source),
        list_id=list_id,
        changed=changed,
    )
    if status == "unsubscribed":
        member["unsubscribe_reason"] = DEFAULT_UNSUBSCRIBE_REASON
    _apply_extra(member, extra)
    _refresh_full_name(member)
    if tags:
        set_tags(state, member, [(name, "active") for name in tags], stamp)
    state.members.setdefault(list_id, {})[h] = member
    state.contact_ids.setdefault(list_id, {})[member["contact_id"]] = h
    return member


def update_member(
    state: EmulatorState,
    list_id: str,
    member: Member,
    *,
    status: str | None = None,
    email: str | None = None,
    merge_fields: dict[str, Any] | None = None,
    skip_merge_validation: bool = False,
    extra: dict[str, Any] | None = None,
    allowed_statuses: tuple[str, ...] = MEMBER_STATUSES,
) -> Member:
    """Change an existing member: email, status (compliance rule), merge fields, other fields."""
    if status is not None:
        _require_status(status, allowed_statuses, "status")
    new_email = None
    if email is not None and email.strip().lower() != member["email_address"].lower():
        new_email = check_email(email)
        new_hash = subscriber_hash(new_email)
        if new_hash in state.members.get(list_id, {}):
            raise member_exists(new_email)
        if new_hash in state.forgotten.get(list_id, ()):
            raise ApiError(
                400,
                "Forgotten Email Not Subscribed",
                f"{new_email} was permanently deleted and cannot be re-imported. "
                "The contact must re-subscribe to get back on the list.",
            )
    if status is not None and status != member["status"]:
        _check_compliance(member, status)
    values = None
    if merge_fields:
        values = validate_merge_fields(state, list_id, merge_fields, new=False, skip=skip_merge_validation)
    # every check passed: apply
    if new_email is not None:
        members = state.members[list_id]
        del members[member["id"]]
        member["email_address"] = new_email
        member["id"] = subscriber_hash(new_email)
        members[member["id"]] = member
        state.contact_ids.setdefault(list_id, {})[member["contact_id"]] = member["id"]
    elif email is not None and email.strip() != member["email_address"]:
        member["email_address"] = email.strip()  # a change of letter case only
    if status is not None and status != member["status"]:
        _apply_status(member, status)
    if values:
        member["merge_fields"].update(values)
        _refresh_full_name(member)
    _apply_extra(member, extra)
    _touch(state, member)
    return member


def member_exists(email: str) -> ApiError:
    return ApiError(
        400, "Member Exists", f"{email} is already a list member. Use PUT to insert or update list members."
    )


def _check_compliance(member: Member, status: str) -> None:
    if status == "subscribed" and member["status"] in ("unsubscribed", "cleaned"):
        raise ApiError(
            400,
            "Member In Compliance State",
            f"{member['email_address']} is in a compliance state due to unsubscribe, bounce, or compliance "
            "review and cannot be subscribed.",
        )


def _apply_status(member: Member, status: str, *, reason: str | None = None) -> None:
    if status == member["status"]:
        return
    if status == "subscribed":
        _check_compliance(member, status)
        member["timestamp_opt"] = iso(time.time())
    member["status"] = status
    member["unsubscribe_reason"] = (reason or DEFAULT_UNSUBSCRIBE_REASON) if status == "unsubscribed" else ""


def _require_status(status: Any, allowed: tuple[str, ...], field_name: str) -> None:
    if status is None:
        raise schema_error([{"field": "", "message": f"Required fields were not provided: {field_name}"}])
    if status not in allowed:
        raise schema_error(
            [{"field": field_name, "message": f"Value is not one of the allowed values: {', '.join(allowed)}"}]
        )


def _touch(state: EmulatorState, member: Member) -> None:
    member["_changed"] = state.tick()  # last_changed is derived from it


def _apply_extra(member: Member, extra: dict[str, Any] | None) -> None:
    if not extra:
        return
    for key in _OPTIONAL_FIELDS:
        if key not in extra or extra[key] is None:
            continue
        value = extra[key]
        if key == "email_type" and value not in ("html", "text"):
            raise schema_error([{"field": "email_type", "message": "Value is not one of the allowed values: html, text"}])
        if key == "interests":
            member["interests"].update(value)
        elif key == "location":
            member["location"].update({k: v for k, v in value.items() if k in ("latitude", "longitude")})
        else:
            member[key] = value


def _refresh_full_name(member: Member) -> None:
    values = member["merge_fields"]
    first, last = str(values.get("FNAME") or "").strip(), str(values.get("LNAME") or "").strip()
    member["full_name"] = f"{first} {last}" if first and last else first or last  # shared: names repeat


# ------------------------------------------------------------------------------------------------
# merge-field validation
# ------------------------------------------------------------------------------------------------
def validate_merge_fields(
    state: EmulatorState, list_id: str, values: Any, *, new: bool, skip: bool = False
) -> dict[str, Any]:
    """Check ``values`` against the list's merge fields; returns the values to store.

    For a new member every merge field gets a value (its default or ""), and ``required`` fields must
    be non-empty. For an update only the supplied tags are checked. Unknown tags are ignored (as
    Mailchimp does). ``skip`` (``skip_merge_validation``) waives the required check only.
    """
    if not isinstance(values, dict):
        raise schema_error([{"field": "merge_fields", "message": "Schema describes object, " + type(values).__name__ + " found instead"}])
    definitions = state.merge_fields.get(list_id, [])
    supplied = {str(k).upper(): v for k, v in values.items()}
    out: dict[str, Any] = {}
    errors: list[dict[str, str]] = []
    for field_def in definitions:
        tag = field_def["tag"]
        if tag in supplied:
            value = supplied[tag]
        elif new:
            value = field_def.get("default_value") or ""
        else:
            continue
        if value.__class__ is str and value and field_def["type"] not in _PARSED_TYPES:
            out[tag] = shared(tag, value)  # the common case, checked first: a non-empty value stored as sent
            continue
        empty = value is None or value == "" or (isinstance(value, dict) and not any(value.values()))
        if empty:
            if field_def.get("required") and not skip:
                errors.append({"field": tag, "message": "Please enter a value"})
            out[tag] = "" if value is None or isinstance(value, dict) else value
            continue
        try:
            out[tag] = _coerce(field_def, value)
        except ValueError as err:
            errors.append({"field": tag, "message": str(err)})
    if errors:
        raise invalid_resource("Your merge fields were invalid.", errors)
    return out


_PARSED_TYPES = frozenset({"address", "number", "date", "birthday"})
"""Merge field types whose values :func:`_coerce` checks or converts; the others store a text as sent."""
_ADDRESS_REQUIRED = ("addr1", "city", "state", "zip")


def _coerce(field_def: dict[str, Any], value: Any) -> Any:
    kind = field_def["type"]
    if kind == "address":
        if not isinstance(value, dict) or not all(_filled(value.get(k)) for k in _ADDRESS_REQUIRED):
            raise ValueError("Please enter a complete address")
        return Address.of({  # a compact tuple; repeated parts (cities, countries) stored once
            "addr1": value["addr1"],
            "addr2": value.get("addr2") or "",
            "city": value["city"],
            "state": value["state"],
            "zip": str(value["zip"]),
            "country": value.get("country") or "US",
        })
    if kind == "number":
        if isinstance(value, bool):
            raise ValueError("Please enter a number")
        if isinstance(value, (int, float)):
            return value
        try:
            number = float(str(value).strip())
        except ValueError:
            raise ValueError("Please enter a number") from None
        return int(number) if number.is_integer() else number
    if kind == "date":
        return _parse_date(str(value), field_def.get("options", {}).get("date_format", "MM/DD/YYYY"))
    if kind == "birthday":
        text = str(value).strip()
        for fmt in ("%m/%d", "%d/%m") if field_def.get("options", {}).get("date_format") == "DD/MM" else ("%m/%d",):
            try:
                datetime.strptime("2000/" + text, "%Y/" + fmt)
                return text
            except ValueError:
                continue
        raise ValueError("Please enter a valid birthday")
    if isinstance(value, (dict, list)):
        raise ValueError("Please enter a value")
    return value if isinstance(value, str) else str(value)


def _filled(part: Any) -> bool:
    """True when an address part has text (numbers count: a zip may come as one)."""
    if part.__class__ is str:
        return bool(part) and not part.isspace()
    return bool(str(part or "").strip())


def _parse_date(text: str, date_format: str) -> str:
    formats = ["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S"]
    formats.insert(0, "%d/%m/%Y" if date_format.upper().startswith("DD") else "%m/%d/%Y")
    for fmt in formats:
        try:
            parsed = datetime.strptime(text.strip(), fmt)
        except ValueError:
            continue
        return date(parsed.year, parsed.month, parsed.day).isoformat()
    raise ValueError("Please enter a valid date")


# ------------------------------------------------------------------------------------------------
# tags
# ------------------------------------------------------------------------------------------------
SEGMENTS_CREATED = "segments created"
"""Key in ``state.counters``: segment ids (tags are static segments) are unique in the account."""


def new_segment_id(state: EmulatorState) -> int:
    """The next segment id of the account: tags and saved segments share one sequence, as a tag's
    id is a static segment's id in Mailchimp."""
    if SEGMENTS_CREATED not in state.counters:  # a state saved before ids were account-wide
        known = [t["id"] for tags in state.tags.values() for t in tags.values()]
        known += [int(s) for segments in state.segments.values() for s in segments]
        state.counters[SEGMENTS_CREATED] = max(known, default=0)
    state.count(SEGMENTS_CREATED)
    return state.counters[SEGMENTS_CREATED]


def tag_record(state: EmulatorState, list_id: str, name: str) -> dict[str, Any]:
    """The list's tag (static segment) called ``name``, created if new: ``{"id", "name"}`` plus the
    private ``_created`` / ``_updated`` times that ``segments.py`` reports."""
    registry = state.tags.setdefault(list_id, {})
    record = registry.get(name)
    if record is None:
        stamp = iso(state.tick())
        record = {"id": new_segment_id(state), "name": name, "_created": stamp, "_updated": stamp}
        registry[name] = record
    return record


def set_tags(state: EmulatorState, member: Member, changes: list[tuple[str, str]], stamp: str) -> None:
    """Apply ``(name, "active"|"inactive")`` pairs to a member's tags; a tag whose members change
    is marked updated (the static segment's ``updated_at``)."""
    current = {t["name"]: t for t in member["tags"]}
    for name, status in changes:
        if status == "active" and name not in current:
            record = tag_record(state, member["list_id"], name)
            current[name] = MemberTag(record["id"], record["name"], stamp)
            record["_updated"] = iso(state.tick())
        elif status == "inactive" and name in current:
            current.pop(name)
            record = state.tags.get(member["list_id"], {}).get(name)
            if record is not None:
                record["_updated"] = iso(state.tick())
    member["tags"] = list(current.values())  # tags_count is derived from it



def _validate_tag_names(raw: Any, field_name: str = "tags") -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(t, str) and t.strip() for t in raw):
        raise schema_error([{"field": field_name, "message": "Schema describes array of non-empty strings"}])
    return [t.strip() for t in raw]


# ------------------------------------------------------------------------------------------------
# routes: members
# ------------------------------------------------------------------------------------------------
_SORT_KEYS = {"timestamp_opt": "timestamp_opt", "timestamp_signup": "timestamp_signup", "last_changed": "_changed"}


_PAGE_PARAMS = frozenset({"count", "offset", "fields", "exclude_fields"})
_QUERY_CACHE = "members query"
"""Key in ``state.derived``: the last member query's matches, so paging through a million members
(1,000 GETs of 1,000) filters and sorts once instead of once per page."""


@router.route("GET", "/lists/{list_id}/members")
def list_members(call: Call, list_id: str) -> Reply:
    require_list(call.state, list_id)
    state = call.state
    stored = state.members.get(list_id, {})
    query = (list_id, tuple(sorted((k, v) for k, v in call.params.items() if k not in _PAGE_PARAMS)))
    # every member change ticks the clock (deletions included), so (clock, size) identifies the data
    version = (state.clock, len(stored))
    cached = state.derived.get(_QUERY_CACHE)
    if cached is not None and cached[0] == query and cached[1] == version:
        members = cached[2]
    else:
        members = _matching_members(call, stored)
        state.derived[_QUERY_CACHE] = (query, version, members)
    return ok(page(call, members, "members", {"list_id": list_id}, render=member_view))


def _matching_members(call: Call, stored: dict[str, Member]) -> list[Member]:
    """The list's members that the query's filters select, in its sort order."""
    members = list(stored.values())
    params = call.params
    status = params.get("status")
    if status:
        if status not in MEMBER_STATUSES + ("archived",):
            raise schema_error([{"field": "status", "message": "Value is not one of the allowed values"}])
        members = [m for m in members if m.status == status]
    else:
        members = [m for m in members if m.status != "archived"]  # attributes: 1M lookups
    if params.get("unsubscribed_since"):
        if status != "unsubscribed":
            raise bad_request("The unsubscribed_since filter can only be used with status=unsubscribed.")
    members = _filter_time(members, params, "since_last_changed", lambda m: m._changed, since=True)
    members = _filter_time(members, params, "before_last_changed", lambda m: m._changed, since=False)
    members = _filter_time(members, params, "unsubscribed_since", lambda m: m._changed, since=True)
    members = _filter_time(members, params, "since_timestamp_opt", lambda m: _epoch(m["timestamp_opt"]), since=True)
    members = _filter_time(members, params, "before_timestamp_opt", lambda m: _epoch(m["timestamp_opt"]), since=False)
    if params.get("email_type"):
        members = [m for m in members if m["email_type"] == params["email_type"]]
    if call.param_bool("vip_only"):
        members = [m for m in members if m["vip"]]
    if params.get("unique_email_id"):
        members = [m for m in members if m["unique_email_id"] == params["unique_email_id"]]
    sort_field = params.get("sort_field")
    if sort_field:
        if sort_field not in _SORT_KEYS:
            raise schema_error([{"field": "sort_field", "message": "Value is not one of the allowed values: " + ", ".join(_SORT_KEYS)}])
        key = _SORT_KEYS[sort_field]
        descending = (params.get("sort_dir") or "ASC").upper() == "DESC"
        if key == "_changed":
            members.sort(key=lambda m: m._changed, reverse=descending)
        else:
            members.sort(key=lambda m: (_epoch(m[key]) or 0.0, m["_created"]), reverse=descending)
    return members


def _epoch(stamp: str) -> float | None:
    return parse_iso(stamp) if stamp else None


def _filter_time(members: list[Member], params: dict[str, str], name: str, get: Any, *, since: bool) -> list[Member]:
    raw = params.get(name)
    if not raw:
        return members
    bound = parse_iso(raw)
    if bound is None:
        raise schema_error([{"field": name, "message": f"The value for '{name}' must be an ISO 8601 date-time."}])
    if since:
        return [m for m in members if (get(m) or 0.0) >= bound]
    return [m for m in members if get(m) is not None and get(m) < bound]


def _member_or_404(call: Call, list_id: str, key: str) -> Member:
    require_list(call.state, list_id)
    member = find_member(call.state, list_id, key)
    if member is None:
        raise not_found()
    return member


@router.route("GET", "/lists/{list_id}/members/{subscriber_hash}")
def get_member(call: Call, list_id: str, subscriber_hash: str) -> Reply:
    return ok(filter_fields(call, member_view(_member_or_404(call, list_id, subscriber_hash))))


def _extra(body: dict[str, Any]) -> dict[str, Any]:
    return {k: body[k] for k in _OPTIONAL_FIELDS if k in body}


@router.route("POST", "/lists/{list_id}/members")
def add_member(call: Call, list_id: str) -> Reply:
    body = call.json_body()
    require_list(call.state, list_id)
    missing = [name for name in ("email_address", "status") if not body.get(name)]
    if missing:
        raise schema_error([{"field": "", "message": "Required fields were not provided: " + ", ".join(missing)}])
    email = check_email(body["email_address"])
    if subscriber_hash(email) in call.state.members.get(list_id, {}):
        raise member_exists(email)
    member = create_member(
        call.state,
        list_id,
        email,
        status=body["status"],
        merge_fields=body.get("merge_fields"),
        tags=_validate_tag_names(body.get("tags")),
        skip_merge_validation=call.param_bool("skip_merge_validation"),
        extra=_extra(body),
    )
    return member_reply(member)


@router.route("PUT", "/lists/{list_id}/members/{subscriber_hash}")
def put_member(call: Call, list_id: str, subscriber_hash: str) -> Reply:
    body = call.json_body()
    state = call.state
    require_list(state, list_id)
    skip = call.param_bool("skip_merge_validation")
    target = find_member(state, list_id, subscriber_hash)
    body_email = body.get("email_address")
    if target is not None:
        # The URL names an existing member: the body may rename it (email change).
        status = body.get("status")
        if target["status"] == "archived":
            status = status or body.get("status_if_new")
            if status is None:
                _require_status(None, MEMBER_STATUSES, "status_if_new")
        update_member(
            state,
            list_id,
            target,
            status=status,
            email=body_email,
            merge_fields=body.get("merge_fields"),
            skip_merge_validation=skip,
            extra=_extra(body),
        )
        return member_reply(target)
    email = body_email or (subscriber_hash if "@" in subscriber_hash else None)
    if not email:
        raise schema_error([{"field": "", "message": "Required fields were not provided: email_address"}])
    email = check_email(email)
    if find_member(state, list_id, email) is not None:
        # URL hash unknown but the body email is another member: Mailchimp refuses.
        raise member_exists(email)
    if body.get("status_if_new") is None and body.get("status") is None:
        _require_status(None, MEMBER_STATUSES, "status_if_new")
    member = create_member(
        state,
        list_id,
        email,
        status=body.get("status") or body.get("status_if_new"),
        merge_fields=body.get("merge_fields"),
        tags=_validate_tag_names(body.get("tags")),
        skip_merge_validation=skip,
        extra=_extra(body),
    )
    return member_reply(member)


@router.route("PATCH", "/lists/{list_id}/members/{subscriber_hash}")
def patch_member(call: Call, list_id: str, subscriber_hash: str) -> Reply:
    body = call.json_body()
    member = _member_or_404(call, list_id, subscriber_hash)
    update_member(
        call.state,
        list_id,
        member,
        status=body.get("status"),
        email=body.get("email_address"),
        merge_fields=body.get("merge_fields"),
        skip_merge_validation=call.param_bool("skip_merge_validation"),
        extra=_extra(body),
        allowed_statuses=PATCH_STATUSES,
    )
    return member_reply(member)


@router.route("DELETE", "/lists/{list_id}/members/{subscriber_hash}")
def archive_member(call: Call, list_id: str, subscriber_hash: str) -> Reply:
    member = _member_or_404(call, list_id, subscriber_hash)
    if member["status"] in ("pending", "cleaned", "archived"):
        raise method_not_allowed(
            "GET, PUT",
            "This list member cannot be removed. Can not archive a contact that is bounced, pending or archived",
        )
    member["status"] = "archived"
    _touch(call.state, member)
    return no_content()


@router.route("POST", "/lists/{list_id}/members/{subscriber_hash}/actions/delete-permanent")
def delete_member_permanently(call: Call, list_id: str, subscriber_hash: str) -> Reply:
    member = _member_or_404(call, list_id, subscriber_hash)
    del call.state.members[list_id][member["id"]]
    call.state.tick()  # a change of the list: cached member queries are stale
    call.state.contact_ids.get(list_id, {}).pop(member["contact_id"], None)
    call.state.forgotten.setdefault(list_id, []).append(member["id"])
    return no_content()


# ------------------------------------------------------------------------------------------------
# routes: tags
# ------------------------------------------------------------------------------------------------
@router.route("GET", "/lists/{list_id}/members/{subscriber_hash}/tags")
def get_member_tags(call: Call, list_id: str, subscriber_hash: str) -> Reply:
    member = _member_or_404(call, list_id, subscriber_hash)
    tags = [t.to_dict() for t in member["tags"]]
    return ok(page(call, tags, "tags"))


@router.route("POST", "/lists/{list_id}/members/{subscriber_hash}/tags")
def post_member_tags(call: Call, list_id: str, subscriber_hash: str) -> Reply:
    body = call.json_body()
    member = _member_or_404(call, list_id, subscriber_hash)
    raw = body.get("tags")
    if not isinstance(raw, list):
        raise schema_error([{"field": "", "message": "Required fields were not provided: tags"}])
    changes: list[tuple[str, str]] = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict) or not str(item.get("name") or "").strip():
            raise schema_error([{"field": f"tags.item:{index}", "message": "Required fields were not provided: name"}])
        status = item.get("status")
        if status not in ("active", "inactive"):
            raise schema_error(
                [{"field": f"tags.item:{index}.status", "message": "Value is not one of the allowed values: active, inactive"}]
            )
        changes.append((str(item["name"]).strip(), status))
    _touch(call.state, member)
    set_tags(call.state, member, changes, member["last_changed"])
    return no_content()


@router.route("GET", "/lists/{list_id}/tag-search")
def tag_search(call: Call, list_id: str) -> Reply:
    require_list(call.state, list_id)
    name = (call.params.get("name") or "").lower()
    tags = [{"id": t["id"], "name": t["name"]} for t in call.state.tags.get(list_id, {}).values() if name in t["name"].lower()]
    return ok(page(call, tags, "tags"))


# ------------------------------------------------------------------------------------------------
# route: batch subscribe (POST /lists/{list_id})
# ------------------------------------------------------------------------------------------------
@router.route("POST", "/lists/{list_id}")
def batch_subscribe(call: Call, list_id: str) -> Reply:
    body = call.json_body()
    state = call.state
    require_list(state, list_id)
    items = body.get("members")
    if not isinstance(items, list):
        raise schema_error([{"field": "", "message": "Required fields were not provided: members"}])
    if len(items) > BATCH_SUBSCRIBE_LIMIT:
        raise invalid_resource(
            f"Maximum allowed member items exceeded, please provide at most {BATCH_SUBSCRIBE_LIMIT} items in members field",
            [{"field": "members", "message": f"At most {BATCH_SUBSCRIBE_LIMIT} members may be added or updated per call."}],
        )
    update_existing = bool(body.get("update_existing"))
    sync_tags = bool(body.get("sync_tags"))
    skip_merge = call.param_bool("skip_merge_validation") or bool(body.get("skip_merge_validation"))
    skip_duplicates = call.param_bool("skip_duplicate_check") or bool(body.get("skip_duplicate_check"))
    created: list[dict[str, Any]] = []
    updated: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    for item in items:
        email = str((item or {}).get("email_address") or "") if isinstance(item, dict) else ""
        try:
            if not isinstance(item, dict):
                raise schema_error([{"field": "members", "message": "Each member must be an object"}])
            email = check_email(item.get("email_address"))
            h = subscriber_hash(email)
            if h in seen:
                if skip_duplicates:
                    continue
                raise bad_request(f"{email} was provided more than once in this batch.")
            seen.add(h)
            tags = _validate_tag_names(item.get("tags"))
            existing = state.members.get(list_id, {}).get(h)
            if existing is None:
                member = create_member(
                    state,
                    list_id,
                    email,
                    status=item.get("status"),
                    merge_fields=item.get("merge_fields"),
                    tags=tags,
                    skip_merge_validation=skip_merge,
                    extra=_extra(item),
                )
                created.append(member_view(member))
                continue
            if not update_existing:
                errors.append(
                    {
                        "email_address": email,
                        "error": f"{email} is already a list member, do you want to update? "
                        "please provide update_existing:true in the request body",
                        "error_code": "ERROR_CONTACT_EXISTS",
                        "field": "email_address",
                        "field_message": "",
                    }
                )
                continue
            status = item.get("status")
            if existing["status"] == "archived" and status is None:
                _require_status(None, MEMBER_STATUSES, "status")
            update_member(
                state,
                list_id,
                existing,
                status=status,
                merge_fields=item.get("merge_fields"),
                skip_merge_validation=skip_merge,
                extra=_extra(item),
            )
            if sync_tags and "tags" in item:
                wanted = set(tags)
                changes = [(t["name"], "inactive") for t in existing["tags"] if t["name"] not in wanted]
                changes += [(name, "active") for name in tags]
                set_tags(state, existing, changes, existing["last_changed"])
            elif tags:
                set_tags(state, existing, [(name, "active") for name in tags], existing["last_changed"])
            updated.append(member_view(existing))
        except ApiError as err:
            first = (err.errors or [{}])[0]
            errors.append(
                {
                    "email_address": email,
                    "error": err.detail,
                    "error_code": "ERROR_GENERIC",
                    "field": first.get("field", ""),
                    "field_message": first.get("message", ""),
                }
            )
    return ok(
        {
            "new_members": created,
            "updated_members": updated,
            "errors": errors,
            "total_created": len(created),
            "total_updated": len(updated),
            "error_count": len(errors),
            "_links": [],
        }
    )
