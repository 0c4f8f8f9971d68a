"""Collection responses: ``count``/``offset`` paging and ``fields``/``exclude_fields`` filtering."""

from __future__ import annotations

from typing import Any, Callable, Collection, Iterable

from .routing import Call

MAX_COUNT = 1000


def page(
    call: Call,
    items: Iterable[dict[str, Any]],
    key: str,
    extra: dict[str, Any] | None = None,
    render: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    done: Collection[str] = (),
) -> dict[str, Any]:
    """Page ``items`` like Mailchimp: default count 10, counts above 1000 are clamped, ``total_items``;
    a batched GET without ``count`` gets every item.

    ``render`` turns a stored object into its API form; it runs on the returned page only, so paging
    a large collection stays cheap. ``done``: see :func:`filter_fields`.
    """
    items = list(items)
    if call.from_batch and call.params.get("count") in (None, ""):
        # Mailchimp pages a batched GET without ``count`` internally and returns every item.
        count = len(items)
    else:
        count = min(max(call.param_int("count", 10), 0), MAX_COUNT)
    offset = max(call.param_int("offset", 0), 0)
    window = items[offset : offset + count]
    body: dict[str, Any] = {key: [render(i) for i in window] if render else window}
    if extra:
        body.update(extra)
    body["total_items"] = len(items)
    body["_links"] = []
    return filter_fields(call, body, done)


def excluded(call: Call, path: str) -> bool:
    """True if ``exclude_fields`` names ``path`` itself (e.g. ``emails._links``).

    A renderer can then leave that field out of every item: :func:`filter_fields` would copy each
    item to drop it, which costs more than rendering the item.
    """
    raw = call.params.get("exclude_fields")
    return bool(raw) and path in (p.strip() for p in raw.split(","))


def filter_fields(call: Call, body: dict[str, Any], done: Collection[str] = ()) -> dict[str, Any]:
    """Apply ``fields`` (keep only) and ``exclude_fields`` (drop), comma-separated dotted paths.

    A path through a list applies to every element, e.g. ``members.email_address``. Exclusions in
    ``done`` were applied by the renderer already (see :func:`excluded`) and are skipped.

    ``body`` is never changed: only the objects along the filtered paths are copied, the rest is
    shared (a deep copy of a 5,000-recipient email-activity page cost more than rendering it).
    Bodies are encoded right after filtering, so the sharing is never observable.
    """
    params = call.params
    if not params.get("fields") and not params.get("exclude_fields"):
        return body
    include = [p for p in (params.get("fields") or "").split(",") if p.strip()]
    exclude = [p.strip() for p in (params.get("exclude_fields") or "").split(",")]
    exclude = [p for p in exclude if p and p not in done]
    if include:
        body = _keep(body, [p.strip().split(".") for p in include])
    for path in exclude:
        body = _without(body, path.split("."))
    return body


def _keep(value: Any, paths: list[list[str]]) -> Any:
    if isinstance(value, list):
        return [_keep(v, paths) for v in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for head in dict.fromkeys(p[0] for p in paths):
        if head not in value:
            continue
        rests = [p[1:] for p in paths if p[0] == head]
        out[head] = value[head] if any(not r for r in rests) else _keep(value[head], [r for r in rests if r])
    return out


def _without(value: Any, path: list[str]) -> Any:
    """``value`` minus ``path`` (through lists too): a copy of what lies on the path, else ``value`` itself."""
    if isinstance(value, list):
        if len(path) == 1:
            return _list_without(value, path[0])
        return [_without(v, path) for v in value]
    if not isinstance(value, dict) or path[0] not in value:
        return value
    out = value.copy()
    if len(path) == 1:
        del out[path[0]]
    else:
        out[path[0]] = _without(value[path[0]], path[1:])
    return out


def _list_without(items: list[Any], key: str) -> list[Any]:
    """:func:`_without` of a one-segment path over a list, inlined: pages of thousands of items
    (``emails._links``) would otherwise pay a recursive call per item."""
    out: list[Any] = []
    for item in items:
        if isinstance(item, dict) and key in item:
            item = item.copy()
            del item[key]
        elif isinstance(item, list):
            item = _list_without(item, key)
        out.append(item)
    return out
