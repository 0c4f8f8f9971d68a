"""List segments: static segments (tags) and saved segments, with their members.

Mailchimp: "Static segments are now known as tags" (facts §12 D). So a static segment *is* a tag of
the list: the tag registry of :mod:`members` (``state.tags``) is the one store of static segments,
and member tags, ``/tag-search`` and ``/segments?type=static`` all read it. Creating a static
segment creates a tag; adding a member to it tags the member; a tag created through member tags
is listed here. Ids come from one account-wide sequence (``members.new_segment_id``).

Saved segments (``state.segments``) hold conditions; their members are computed when asked for.
The conditions understood (Mailchimp's condition schemas, the common ones): ``StaticSegment``
(``op`` ``static_is`` / ``static_not``, ``value`` a tag id), ``EmailAddress`` and ``TextMerge``
(``field`` ``EMAIL``/``merge0`` or a merge tag; ``op`` ``is``, ``not``, ``contains``,
``notcontain``, ``starts``, ``ends``, ``blank``, ``blank_not``). Any other condition type is
refused with 400 naming it, never ignored. Members can be added to or removed from static
segments only.

``member_count`` counts subscribed members ("the number of active subscribers currently included
in the segment"). The members listing leaves out unsubscribed, cleaned and transactional members
unless ``include_unsubscribed`` / ``include_cleaned`` / ``include_transactional`` ask for them
(the emulator's reading of those flags; archived members are never listed). ``updated_at`` of a
static segment moves whenever a member joins or leaves it (inferred: no source says).
"""

from __future__ import annotations

from typing import Any, Callable

from .collections import filter_fields, page
from .errors import bad_request, not_found, schema_error
from .members import find_member, member_view, new_segment_id, require_list, set_tags, subscriber_hash, tag_record
from .reports import time_window
from .routing import Call, Reply, no_content, ok, router
from .schema import Field, field_error, validate
from .state import EmulatorState, iso

SEGMENT_TYPES = ("saved", "static", "fuzzy")
MAX_MEMBER_ITEMS = 500
TOO_MANY = (
    "Maximum allowed member items exceeded, please provide at most 500 items in members_to_add field or "
    "members_to_remove field"
)
TEXT_OPS = ("is", "not", "contains", "notcontain", "starts", "ends", "blank", "blank_not")
_CONDITION = Field("object", required=("condition_type", "op"),
                   props={"condition_type": Field("string"), "field": Field("string"), "op": Field("string")})
SEGMENT_BODY = Field(
    "object",
    required=("name",),
    props={
        "name": Field("string", max_length=100),
        "static_segment": Field("array", items=Field("string")),
        "options": Field("object", props={"match": Field("string", enum=("any", "all")),
                                          "conditions": Field("array", items=_CONDITION)}),
    },
)
MEMBERS_BODY = Field("object", props={"members_to_add": Field("array", items=Field("string")),
                                      "members_to_remove": Field("array", items=Field("string"))})


# ------------------------------------------------------------------------------------------------
# the two stores as one collection
# ------------------------------------------------------------------------------------------------
def _static(state: EmulatorState, list_id: str) -> list[dict[str, Any]]:
    return list(state.tags.get(list_id, {}).values())


def _find(state: EmulatorState, list_id: str, segment_id: str) -> tuple[str, dict[str, Any]]:
    """``("static", tag record)`` or ``("saved", segment)``; 404 if the list has no such segment."""
    require_list(state, list_id)
    key = segment_id.strip()
    saved = state.segments.get(list_id, {}).get(key)
    if saved is not None:
        return "saved", saved
    for tag in _static(state, list_id):
        if str(tag["id"]) == key:
            return "static", tag
    raise not_found()


def _members_of(state: EmulatorState, list_id: str, kind: str, segment: dict[str, Any]) -> list[dict[str, Any]]:
    """Every stored member of the segment (any status but archived), in list order."""
    members = [m for m in state.members.get(list_id, {}).values() if m["status"] != "archived"]
    if kind == "static":
        return [m for m in members if any(t["id"] == segment["id"] for t in m["tags"])]
    match = _matcher(segment.get("options") or {})
    return [m for m in members if match(m)]


def _matcher(options: dict[str, Any]) -> Callable[[dict[str, Any]], bool]:
    tests = [_condition_test(c) for c in options.get("conditions") or []]
    combine = all if options.get("match", "any") == "all" else any
    return lambda member: bool(tests) and combine(test(member) for test in tests)


def _condition_test(condition: dict[str, Any]) -> Callable[[dict[str, Any]], bool]:
    kind, op, value = condition.get("condition_type"), condition.get("op"), condition.get("value")
    if kind == "StaticSegment":
        wanted = int(value) if str(value).isdigit() else None
        has = lambda m: any(t["id"] == wanted for t in m["tags"])  # noqa: E731
        return has if op == "static_is" else (lambda m: not has(m))
    field = str(condition.get("field") or "")
    if kind == "EmailAddress" or field in ("EMAIL", "merge0"):
        read = lambda m: str(m.get("email_address") or "")  # noqa: E731
    else:
        read = lambda m: str((m.get("merge_fields") or {}).get(field) or "")  # noqa: E731
    text = str(value or "").lower()
    compare: dict[str, Callable[[str], bool]] = {
        "is": lambda v: v == text, "not": lambda v: v != text, "contains": lambda v: text in v,
        "notcontain": lambda v: text not in v, "starts": lambda v: v.startswith(text),
        "ends": lambda v: v.endswith(text), "blank": lambda v: v == "", "blank_not": lambda v: v != "",
    }
    test = compare[op]
    return lambda m: test(read(m).lower())


def _check_conditions(conditions: list[dict[str, Any]]) -> None:
    for index, condition in enumerate(conditions):
        where = f"options.conditions.item:{index}"
        kind, op = condition["condition_type"], condition["op"]
        if kind == "StaticSegment":
            if op not in ("static_is", "static_not"):
                raise field_error(f"{where}.op", "Value is not one of the allowed values: static_is, static_not")
        elif kind in ("EmailAddress", "TextMerge"):
            if op not in TEXT_OPS:
                raise field_error(f"{where}.op", "Value is not one of the allowed values: " + ", ".join(TEXT_OPS))
            if kind == "TextMerge" and not condition.get("field"):
                raise field_error(f"{where}.field", "A TextMerge condition needs the merge field it tests.")
        else:
            raise field_error(f"{where}.condition_type",
                              f"The emulator does not evaluate {kind!r} conditions (StaticSegment, EmailAddress, "
                              "TextMerge).")


def _options(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """The checked ``options`` of a body; conditions as sent (their ``value`` may be a number or text)."""
    raw = call.json_body()["options"].get("conditions") or []
    _check_conditions(body["options"].get("conditions", []))
    return {"match": body["options"].get("match", "any"), "conditions": [dict(c) for c in raw]}


def render_segment(state: EmulatorState, list_id: str, kind: str, segment: dict[str, Any]) -> dict[str, Any]:
    subscribed = sum(1 for m in _members_of(state, list_id, kind, segment) if m["status"] == "subscribed")
    if kind == "static":
        created, updated, options = segment["_created"], segment["_updated"], {}
    else:
        created, updated, options = segment["created_at"], segment["updated_at"], segment["options"]
    base = f"/3.0/lists/{list_id}/segments/{segment['id']}"
    return {
        "id": segment["id"],
        "name": segment["name"],
        "member_count": subscribed,
        "type": kind,
        "created_at": created,
        "updated_at": updated,
        "options": options,
        "list_id": list_id,
        "_links": [{"rel": "self", "href": base, "method": "GET"},
                   {"rel": "members", "href": base + "/members", "method": "GET"}],
    }


# ------------------------------------------------------------------------------------------------
# routes
# ------------------------------------------------------------------------------------------------
@router.route("GET", "/lists/{list_id}/segments")
def list_segments(call: Call, list_id: str) -> Reply:
    """Static and saved segments, by id; filters ``type`` and the since/before created and
    updated times (since inclusive, before exclusive)."""
    state = call.state
    require_list(state, list_id)
    wanted = call.params.get("type")
    if wanted and wanted not in SEGMENT_TYPES:
        raise field_error("type", "Value is not one of the allowed values: " + ", ".join(SEGMENT_TYPES))
    created = time_window(call, "since_created_at", "before_created_at")
    updated = time_window(call, "since_updated_at", "before_updated_at")
    items = [("static", t) for t in _static(state, list_id)]
    items += [("saved", s) for s in state.segments.get(list_id, {}).values()]
    items.sort(key=lambda pair: int(pair[1]["id"]))
    rendered = [render_segment(state, list_id, kind, s) for kind, s in items if not wanted or kind == wanted]
    rendered = [s for s in rendered if created(s["created_at"]) and updated(s["updated_at"])]
    return ok(page(call, rendered, "segments", {"list_id": list_id}))


@router.route("POST", "/lists/{list_id}/segments")
def create_segment(call: Call, list_id: str) -> Reply:
    """``static_segment`` (emails; those not on the list are ignored) makes a static segment, a
    tag; ``options`` a saved segment. Not both."""
    state = call.state
    require_list(state, list_id)
    body = validate(call.json_body(), SEGMENT_BODY)
    name = body["name"].strip()
    if ("static_segment" in body) == ("options" in body):
        raise bad_request("Provide either static_segment or options (conditions), not both and not neither.")
    if "static_segment" in body:
        if name in state.tags.get(list_id, {}):
            raise bad_request(f"Sorry, that tag already exists: {name}")
        tag = tag_record(state, list_id, name)
        _change_static(state, list_id, tag, add=body["static_segment"], remove=[])
        return ok(filter_fields(call, render_segment(state, list_id, "static", tag)))
    options = _options(call, body)
    stamp = iso(state.tick())
    segment = {"id": new_segment_id(state), "name": name, "options": options, "created_at": stamp, "updated_at": stamp}
    state.segments.setdefault(list_id, {})[str(segment["id"])] = segment
    return ok(filter_fields(call, render_segment(state, list_id, "saved", segment)))


@router.route("GET", "/lists/{list_id}/segments/{segment_id}")
def get_segment(call: Call, list_id: str, segment_id: str) -> Reply:
    kind, segment = _find(call.state, list_id, segment_id)
    return ok(filter_fields(call, render_segment(call.state, list_id, kind, segment)))


@router.route("PATCH", "/lists/{list_id}/segments/{segment_id}")
def update_segment(call: Call, list_id: str, segment_id: str) -> Reply:
    """Rename; a static segment's ``static_segment`` replaces its members ([] empties it); a saved
    segment's ``options`` replace its conditions."""
    state = call.state
    kind, segment = _find(state, list_id, segment_id)
    body = validate(call.json_body(), SEGMENT_BODY)
    name = body["name"].strip()
    if kind == "static":
        if "options" in body:
            raise bad_request("A static segment has no conditions.")
        registry = state.tags[list_id]
        if name != segment["name"]:
            if name in registry:
                raise bad_request(f"Sorry, that tag already exists: {name}")
            _rename_tag(state, list_id, segment, name)
        if "static_segment" in body:
            current = [m["email_address"] for m in _members_of(state, list_id, "static", segment)]
            _change_static(state, list_id, segment, add=body["static_segment"], remove=current)
        return ok(filter_fields(call, render_segment(state, list_id, kind, segment)))
    if "static_segment" in body:
        raise bad_request("A saved segment's members follow its conditions; static_segment is for static segments.")
    segment["name"] = name
    if "options" in body:
        segment["options"] = _options(call, body)
    segment["updated_at"] = iso(state.tick())
    return ok(filter_fields(call, render_segment(state, list_id, kind, segment)))


@router.route("DELETE", "/lists/{list_id}/segments/{segment_id}")
def delete_segment(call: Call, list_id: str, segment_id: str) -> Reply:
    """Deleting a static segment deletes the tag: it leaves every member that had it."""
    state = call.state
    kind, segment = _find(state, list_id, segment_id)
    if kind == "saved":
        del state.segments[list_id][str(segment["id"])]
        return no_content()
    for member in _members_of(state, list_id, "static", segment):
        set_tags(state, member, [(segment["name"], "inactive")], member["last_changed"])
    del state.tags[list_id][segment["name"]]
    return no_content()


@router.route("POST", "/lists/{list_id}/segments/{segment_id}")
def batch_segment_members(call: Call, list_id: str, segment_id: str) -> Reply:
    """Add and remove members of a static segment, at most 500 of each per call."""
    state = call.state
    kind, segment = _find(state, list_id, segment_id)
    body = validate(call.json_body(), MEMBERS_BODY)
    add, remove = body.get("members_to_add", []), body.get("members_to_remove", [])
    if len(add) > MAX_MEMBER_ITEMS or len(remove) > MAX_MEMBER_ITEMS:
        raise bad_request(TOO_MANY)
    _static_only(kind)
    added, removed, errors = _change_static(state, list_id, segment, add=add, remove=remove)
    return ok({
        "members_added": [member_view(m) for m in added],
        "members_removed": [member_view(m) for m in removed],
        "errors": errors,
        "total_added": len(added),
        "total_removed": len(removed),
        "error_count": sum(len(e["email_addresses"]) for e in errors),
        "_links": [],
    })


@router.route("GET", "/lists/{list_id}/segments/{segment_id}/members")
def list_segment_members(call: Call, list_id: str, segment_id: str) -> Reply:
    state = call.state
    kind, segment = _find(state, list_id, segment_id)
    shown = {"subscribed", "pending"}
    for status, flag in (("unsubscribed", "include_unsubscribed"), ("cleaned", "include_cleaned"),
                         ("transactional", "include_transactional")):
        if call.param_bool(flag):
            shown.add(status)
    members = [m for m in _members_of(state, list_id, kind, segment) if m["status"] in shown]
    return ok(page(call, members, "members", render=member_view))


@router.route("POST", "/lists/{list_id}/segments/{segment_id}/members")
def add_segment_member(call: Call, list_id: str, segment_id: str) -> Reply:
    """Add one list member to a static segment; 404 if the address is not on the list."""
    state = call.state
    kind, segment = _find(state, list_id, segment_id)
    body = call.json_body()
    email = body.get("email_address")
    if not isinstance(email, str) or not email.strip():
        raise schema_error([{"field": "", "message": "Required fields were not provided: email_address"}])
    _static_only(kind)
    member = find_member(state, list_id, subscriber_hash(email))
    if member is None or member["status"] == "archived":
        raise not_found()
    set_tags(state, member, [(segment["name"], "active")], member["last_changed"])
    return ok(filter_fields(call, member_view(member)))


@router.route("DELETE", "/lists/{list_id}/segments/{segment_id}/members/{subscriber_hash}")
def remove_segment_member(call: Call, list_id: str, segment_id: str, subscriber_hash: str) -> Reply:
    state = call.state
    kind, segment = _find(state, list_id, segment_id)
    _static_only(kind)
    member = find_member(state, list_id, subscriber_hash)
    if member is None or not any(t["id"] == segment["id"] for t in member["tags"]):
        raise not_found()
    set_tags(state, member, [(segment["name"], "inactive")], member["last_changed"])
    return no_content()


# ------------------------------------------------------------------------------------------------
# static segment changes (they are tag changes)
# ------------------------------------------------------------------------------------------------
def _static_only(kind: str) -> None:
    if kind != "static":
        raise bad_request("Members can only be added to or removed from a static segment (a tag).")


def _change_static(
    state: EmulatorState, list_id: str, tag: dict[str, Any], *, add: list[str], remove: list[str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Tag the ``add`` emails and untag the ``remove`` ones; emails not on the list are reported."""
    added, removed, missing = [], [], []
    for emails, status, done in ((remove, "inactive", removed), (add, "active", added)):
        for email in emails:
            member = find_member(state, list_id, subscriber_hash(email))
            if member is None or member["status"] == "archived":
                missing.append(email)
                continue
            had = any(t["id"] == tag["id"] for t in member["tags"])
            if had != (status == "active"):
                set_tags(state, member, [(tag["name"], status)], member["last_changed"])
                done.append(member)
    errors = [{"email_addresses": missing, "error": "Email addresses are not on the list."}] if missing else []
    return added, removed, errors


def _rename_tag(state: EmulatorState, list_id: str, tag: dict[str, Any], name: str) -> None:
    registry = state.tags[list_id]
    del registry[tag["name"]]
    for member in state.members.get(list_id, {}).values():
        for member_tag in member["tags"]:
            if member_tag["id"] == tag["id"]:
                member_tag["name"] = name
    tag["name"] = name
    tag["_updated"] = iso(state.tick())
    registry[name] = tag
