"""Lists (audiences) and their merge fields.

A new list gets Mailchimp's default merge fields FNAME, LNAME, ADDRESS, PHONE and BIRTHDAY.
List ``stats`` are computed from the members on every read, so they are always consistent:
``member_count`` counts subscribed members only (Mailchimp's rule), ``total_contacts`` appears only
with ``include_total_contacts=true``.
"""

from __future__ import annotations

import random
import re
from typing import Any

from .collections import filter_fields, page
from .errors import ApiError, invalid_resource, not_found, schema_error
from .members import require_list, subscriber_hash
from .routing import Call, Reply, no_content, ok, router
from .state import EmulatorState, iso, new_id, now_iso, parse_iso

MERGE_FIELD_TYPES = (
    "text",
    "number",
    "address",
    "phone",
    "date",
    "url",
    "imageurl",
    "radio",
    "dropdown",
    "birthday",
    "zip",
)
_LIST_REQUIRED = ("name", "contact", "permission_reminder", "campaign_defaults", "email_type_option")
_CONTACT_REQUIRED = ("company", "address1", "city", "state", "zip", "country")
_DEFAULTS_REQUIRED = ("from_name", "from_email", "subject", "language")
_TAG_RE = re.compile(r"^[A-Z0-9_]{1,10}$")

DEFAULT_MERGE_FIELDS: tuple[dict[str, Any], ...] = (
    {"tag": "FNAME", "name": "First Name", "type": "text", "options": {"size": 25}},
    {"tag": "LNAME", "name": "Last Name", "type": "text", "options": {"size": 25}},
    {"tag": "ADDRESS", "name": "Address", "type": "address", "options": {"default_country": 164}},
    {"tag": "PHONE", "name": "Phone Number", "type": "phone", "options": {"phone_format": "none"}},
    {"tag": "BIRTHDAY", "name": "Birthday", "type": "birthday", "options": {"date_format": "MM/DD"}},
)


# ------------------------------------------------------------------------------------------------
# lists
# ------------------------------------------------------------------------------------------------
def _missing(body: dict[str, Any], names: tuple[str, ...], prefix: str = "") -> list[str]:
    return [prefix + n for n in names if body.get(n) in (None, "")]


def _validate_list_body(body: dict[str, Any], *, partial: bool) -> None:
    errors: list[dict[str, str]] = []
    if not partial:
        missing = _missing(body, _LIST_REQUIRED)
        if missing:
            errors.append({"field": "", "message": "Required fields were not provided: " + ", ".join(missing)})
    for name, required in (("contact", _CONTACT_REQUIRED), ("campaign_defaults", _DEFAULTS_REQUIRED)):
        if name not in body:
            continue
        if not isinstance(body[name], dict):
            errors.append({"field": name, "message": f"Schema describes object, {type(body[name]).__name__} found instead"})
        elif not partial:
            missing = _missing(body[name], required)
            if missing:
                errors.append({"field": name, "message": "Required fields were not provided: " + ", ".join(missing)})
    if errors:
        raise schema_error(errors)


@router.route("POST", "/lists")
def create_list(call: Call) -> Reply:
    body = call.json_body()
    _validate_list_body(body, partial=False)
    state = call.state
    list_id = new_id()
    while list_id in state.lists:
        list_id = new_id()
    web_id = random.randint(10_000, 999_999)
    contact = {"address2": "", "phone": "", **body["contact"]}
    stored = {
        "id": list_id,
        "web_id": web_id,
        "name": body["name"],
        "contact": contact,
        "permission_reminder": body["permission_reminder"],
        "use_archive_bar": bool(body.get("use_archive_bar", False)),
        "campaign_defaults": dict(body["campaign_defaults"]),
        "notify_on_subscribe": body.get("notify_on_subscribe", ""),
        "notify_on_unsubscribe": body.get("notify_on_unsubscribe", ""),
        "date_created": now_iso(),
        "list_rating": 0,
        "email_type_option": bool(body["email_type_option"]),
        "subscribe_url_short": f"http://eepurl.com/{list_id[:6]}",
        "subscribe_url_long": f"https://emulator.us1.list-manage.com/subscribe?u={state.account_id}&id={list_id}",
        "beamer_address": f"us1-{list_id}@inbound.mailchimp.com",
        "visibility": body.get("visibility", "pub"),
        "double_optin": bool(body.get("double_optin", False)),
        "has_welcome": bool(body.get("has_welcome", False)),
        "marketing_permissions": bool(body.get("marketing_permissions", False)),
        "modules": [],
    }
    state.lists[list_id] = stored
    state.members[list_id] = {}
    state.merge_fields[list_id] = []
    for index, definition in enumerate(DEFAULT_MERGE_FIELDS, start=1):
        state.merge_fields[list_id].append(
            _merge_field(list_id, index, definition["tag"], definition["name"], definition["type"], options=definition["options"])
        )
    return ok(list_view(state, stored))


def list_view(state: EmulatorState, stored: dict[str, Any], *, include_total_contacts: bool = False) -> dict[str, Any]:
    """The API form of a list, with ``stats`` computed from its members."""
    list_id = stored["id"]
    counts = {"subscribed": 0, "unsubscribed": 0, "cleaned": 0, "pending": 0, "transactional": 0, "archived": 0}
    last_sub = last_unsub = 0.0
    for member in state.members.get(list_id, {}).values():
        status = member["status"]
        counts[status] = counts.get(status, 0) + 1
        if status == "subscribed":
            last_sub = max(last_sub, member.get("_changed", 0.0))
        elif status == "unsubscribed":
            last_unsub = max(last_unsub, member.get("_changed", 0.0))
    campaigns = [
        c for c in state.campaigns.values() if isinstance(c, dict) and (c.get("recipients") or {}).get("list_id") == list_id
    ]
    sent_times = [c.get("send_time") for c in campaigns if c.get("send_time")]
    stats: dict[str, Any] = {
        "member_count": counts["subscribed"],
        "unsubscribe_count": counts["unsubscribed"],
        "cleaned_count": counts["cleaned"],
        "member_count_since_send": counts["subscribed"],
        "unsubscribe_count_since_send": counts["unsubscribed"],
        "cleaned_count_since_send": counts["cleaned"],
        "campaign_count": len(campaigns),
        "campaign_last_sent": max(sent_times) if sent_times else "",
        "merge_field_count": len(state.merge_fields.get(list_id, [])),
        "avg_sub_rate": 0,
        "avg_unsub_rate": 0,
        "target_sub_rate": 0,
        "open_rate": 0,
        "click_rate": 0,
        "last_sub_date": iso(last_sub) if last_sub else "",
        "last_unsub_date": iso(last_unsub) if last_unsub else "",
    }
    if include_total_contacts:
        stats["total_contacts"] = sum(counts.values()) - counts["archived"]
    view = dict(stored)
    view["stats"] = stats
    view["_links"] = [
        {"rel": "self", "href": f"/3.0/lists/{list_id}", "method": "GET"},
        {"rel": "parent", "href": "/3.0/lists", "method": "GET"},
        {"rel": "members", "href": f"/3.0/lists/{list_id}/members", "method": "GET"},
        {"rel": "merge-fields", "href": f"/3.0/lists/{list_id}/merge-fields", "method": "GET"},
    ]
    return view


@router.route("GET", "/lists")
def get_lists(call: Call) -> Reply:
    state = call.state
    lists = list(state.lists.values())
    params = call.params
    for name, since in (("since_date_created", True), ("before_date_created", False)):
        if params.get(name):
            bound = parse_iso(params[name])
            if bound is None:
                raise schema_error([{"field": name, "message": f"The value for '{name}' must be an ISO 8601 date-time."}])
            lists = [l for l in lists if (parse_iso(l["date_created"]) or 0) >= bound] if since else [
                l for l in lists if (parse_iso(l["date_created"]) or 0) < bound
            ]
    if params.get("email"):
        h = subscriber_hash(params["email"])
        lists = [l for l in lists if h in state.members.get(l["id"], {})]
    if params.get("sort_field"):
        if params["sort_field"] != "date_created":
            raise schema_error([{"field": "sort_field", "message": "Value is not one of the allowed values: date_created"}])
        lists.sort(key=lambda l: l["date_created"], reverse=(params.get("sort_dir") or "ASC").upper() == "DESC")
    total = call.param_bool("include_total_contacts")
    return ok(
        page(
            call,
            lists,
            "lists",
            {"constraints": {"may_create": True, "max_instances": 100000, "current_total_instances": len(state.lists)}},
            render=lambda l: list_view(state, l, include_total_contacts=total),
        )
    )


@router.route("GET", "/lists/{list_id}")
def get_list(call: Call, list_id: str) -> Reply:
    stored = require_list(call.state, list_id)
    return ok(filter_fields(call, list_view(call.state, stored, include_total_contacts=call.param_bool("include_total_contacts"))))


@router.route("PATCH", "/lists/{list_id}")
def update_list(call: Call, list_id: str) -> Reply:
    body = call.json_body()
    stored = require_list(call.state, list_id)
    _validate_list_body(body, partial=True)
    for key, value in body.items():
        if key in ("contact", "campaign_defaults") and isinstance(value, dict):
            stored[key].update(value)
        elif key in stored and key not in ("id", "web_id", "date_created", "stats"):
            stored[key] = value
    return ok(list_view(call.state, stored))


@router.route("DELETE", "/lists/{list_id}")
def delete_list(call: Call, list_id: str) -> Reply:
    state = call.state
    require_list(state, list_id)
    for table in (state.lists, state.members, state.merge_fields, state.forgotten, state.tags, state.segments,
                  state.contact_ids):
        table.pop(list_id, None)
    return no_content()


# ------------------------------------------------------------------------------------------------
# merge fields
# ------------------------------------------------------------------------------------------------
def _merge_field(
    list_id: str,
    merge_id: int,
    tag: str,
    name: str,
    kind: str,
    *,
    required: bool = False,
    default_value: str = "",
    public: bool = False,
    display_order: int | None = None,
    options: dict[str, Any] | None = None,
    help_text: str = "",
) -> dict[str, Any]:
    return {
        "merge_id": merge_id,
        "tag": tag,
        "name": name,
        "type": kind,
        "required": required,
        "default_value": default_value,
        "public": public,
        "display_order": display_order if display_order is not None else merge_id + 1,
        "options": dict(options or {}),
        "help_text": help_text,
        "list_id": list_id,
    }


def merge_field_view(field_def: dict[str, Any]) -> dict[str, Any]:
    base = f"/3.0/lists/{field_def['list_id']}/merge-fields"
    return {
        **field_def,
        "_links": [
            {"rel": "self", "href": f"{base}/{field_def['merge_id']}", "method": "GET"},
            {"rel": "parent", "href": base, "method": "GET"},
            {"rel": "update", "href": f"{base}/{field_def['merge_id']}", "method": "PATCH"},
            {"rel": "delete", "href": f"{base}/{field_def['merge_id']}", "method": "DELETE"},
        ],
    }


def _find_merge_field(state: EmulatorState, list_id: str, merge_id: str) -> dict[str, Any]:
    require_list(state, list_id)
    for field_def in state.merge_fields.get(list_id, []):
        if str(field_def["merge_id"]) == str(merge_id):
            return field_def
    raise not_found()


def _check_merge_body(body: dict[str, Any]) -> None:
    if "type" in body and body["type"] not in MERGE_FIELD_TYPES:
        raise schema_error([{"field": "type", "message": "Value is not one of the allowed values: " + ", ".join(MERGE_FIELD_TYPES)}])
    if "required" in body and not isinstance(body["required"], bool):
        raise schema_error([{"field": "required", "message": "Schema describes boolean"}])
    if "options" in body and not isinstance(body["options"], dict):
        raise schema_error([{"field": "options", "message": "Schema describes object"}])


@router.route("GET", "/lists/{list_id}/merge-fields")
def get_merge_fields(call: Call, list_id: str) -> Reply:
    require_list(call.state, list_id)
    fields = list(call.state.merge_fields.get(list_id, []))
    if call.params.get("type"):
        fields = [f for f in fields if f["type"] == call.params["type"]]
    if call.params.get("required") not in (None, ""):
        wanted = call.param_bool("required")
        fields = [f for f in fields if f["required"] == wanted]
    return ok(page(call, fields, "merge_fields", {"list_id": list_id}, render=merge_field_view))


@router.route("GET", "/lists/{list_id}/merge-fields/{merge_id}")
def get_merge_field(call: Call, list_id: str, merge_id: str) -> Reply:
    return ok(filter_fields(call, merge_field_view(_find_merge_field(call.state, list_id, merge_id))))


@router.route("POST", "/lists/{list_id}/merge-fields")
def add_merge_field(call: Call, list_id: str) -> Reply:
    body = call.json_body()
    state = call.state
    require_list(state, list_id)
    missing = _missing(body, ("name", "type"))
    if missing:
        raise schema_error([{"field": "", "message": "Required fields were not provided: " + ", ".join(missing)}])
    _check_merge_body(body)
    existing = state.merge_fields.setdefault(list_id, [])
    merge_id = max((f["merge_id"] for f in existing), default=0) + 1
    tag = str(body.get("tag") or f"MMERGE{merge_id}").strip().upper()
    if not _TAG_RE.match(tag):
        raise invalid_resource(
            "The tag must be 1-10 characters of letters, digits and underscores.",
            [{"field": "tag", "message": f"Invalid merge tag: {tag}"}],
        )
    if any(f["tag"] == tag for f in existing):
        raise ApiError(400, "Invalid Resource", f'A Merge Field with the tag "{tag}" already exists for this list.')
    field_def = _merge_field(
        list_id,
        merge_id,
        tag,
        str(body["name"]),
        body["type"],
        required=bool(body.get("required", False)),
        default_value=str(body.get("default_value") or ""),
        public=bool(body.get("public", False)),
        display_order=body.get("display_order"),
        options=body.get("options"),
        help_text=str(body.get("help_text") or ""),
    )
    existing.append(field_def)
    return ok(merge_field_view(field_def))


@router.route("PATCH", "/lists/{list_id}/merge-fields/{merge_id}")
def update_merge_field(call: Call, list_id: str, merge_id: str) -> Reply:
    body = call.json_body()
    field_def = _find_merge_field(call.state, list_id, merge_id)
    _check_merge_body(body)
    if "type" in body and body["type"] != field_def["type"]:
        raise invalid_resource("The type of an existing merge field cannot be changed.", [{"field": "type", "message": "Read-only"}])
    if "tag" in body:
        tag = str(body["tag"]).strip().upper()
        if any(f["tag"] == tag and f is not field_def for f in call.state.merge_fields[list_id]):
            raise ApiError(400, "Invalid Resource", f'A Merge Field with the tag "{tag}" already exists for this list.')
        if tag != field_def["tag"]:
            for member in call.state.members.get(list_id, {}).values():
                if field_def["tag"] in member["merge_fields"]:
                    member["merge_fields"][tag] = member["merge_fields"].pop(field_def["tag"])
            field_def["tag"] = tag
    for key in ("name", "required", "default_value", "public", "display_order", "help_text"):
        if key in body:
            field_def[key] = body[key]
    if "options" in body:
        field_def["options"].update(body["options"])
    return ok(merge_field_view(field_def))


@router.route("DELETE", "/lists/{list_id}/merge-fields/{merge_id}")
def delete_merge_field(call: Call, list_id: str, merge_id: str) -> Reply:
    field_def = _find_merge_field(call.state, list_id, merge_id)
    call.state.merge_fields[list_id].remove(field_def)
    for member in call.state.members.get(list_id, {}).values():
        member["merge_fields"].pop(field_def["tag"], None)
    return no_content()
