"""Collection responses: ``count``/``offset`` paging and ``fields``/``exclude_fields`` filtering."""

from __future__ import annotations

import copy
from typing import Any, Callable, Iterable

from .routing import Call

MAX_COUNT = 1000


def page(
    call: Call,
    items: Iterable[dict[str, Any]],
    key: str,
    extra: dict[str, Any] | None = None,
    render: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Page ``items`` like Mailchimp: default count 10, counts above 1000 are clamped, ``total_items``;
    a batched GET without ``count`` gets every item.

    ``render`` turns a stored object into its API form; it runs on the returned page only, so paging
    a large collection stays cheap.
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
    return filter_fields(call, body)


def filter_fields(call: Call, body: dict[str, Any]) -> dict[str, Any]:
    """Apply ``fields`` (keep only) and ``exclude_fields`` (drop), comma-separated dotted paths.

    A path through a list applies to every element, e.g. ``members.email_address``.
    """
    include = [p for p in (call.params.get("fields") or "").split(",") if p.strip()]
    exclude = [p for p in (call.params.get("exclude_fields") or "").split(",") if p.strip()]
    if not include and not exclude:
        return body
    body = copy.deepcopy(body)
    if include:
        body = _keep(body, [p.strip().split(".") for p in include])
    for path in exclude:
        _drop(body, path.strip().split("."))
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


def _drop(value: Any, path: list[str]) -> None:
    if isinstance(value, list):
        for v in value:
            _drop(v, path)
        return
    if not isinstance(value, dict) or path[0] not in value:
        return
    if len(path) == 1:
        del value[path[0]]
    else:
        _drop(value[path[0]], path[1:])
