"""One route table for direct HTTP calls and for operations inside a batch.

Handlers are plain synchronous functions ``handler(call, **path_params) -> Reply`` that read and
mutate ``call.state``. The HTTP layer (``app.py``) and the batch processor (``batches.py``) both go
through :meth:`Router.dispatch`, so a batched operation behaves exactly like a direct call.
Handlers run on the event loop thread only, so they need no locks, and must not block.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import unquote

from .errors import ApiError, method_not_allowed, not_found

if TYPE_CHECKING:
    from .state import EmulatorState


@dataclass
class Call:
    """One API call: method, path relative to /3.0 (e.g. ``/lists/abc/members``), query and JSON body."""

    method: str
    path: str
    params: dict[str, str]
    body: Any
    state: "EmulatorState"
    from_batch: bool = False
    root_url: str = ""
    """``scheme://host:port`` the client used (for URLs the emulator hands out, e.g. batch results)."""

    def param_bool(self, name: str, default: bool = False) -> bool:
        raw = self.params.get(name)
        if raw is None:
            return default
        return str(raw).lower() in ("1", "true", "yes")

    def param_int(self, name: str, default: int) -> int:
        raw = self.params.get(name)
        if raw in (None, ""):
            return default
        try:
            return int(raw)
        except (TypeError, ValueError):
            raise ApiError(400, "Invalid Resource", f"The value for '{name}' must be an integer.") from None

    def json_body(self) -> dict[str, Any]:
        """The body as an object, or a schema error naming the problem (like Mailchimp)."""
        if self.body is None:
            return {}
        if not isinstance(self.body, dict):
            raise ApiError(
                400,
                "Invalid Resource",
                "The resource submitted could not be validated. For field-specific details, see the 'errors' array.",
                [{"field": "", "message": "Schema describes object, " + type(self.body).__name__ + " found instead"}],
            )
        return self.body


@dataclass
class Reply:
    """A handler's answer. ``body=None`` with status 204 renders an empty response."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    float_free: bool = False
    """The body holds no floats: batch results may then encode it with msgspec, which writes
    floats unlike the standard library (``1e16``, NaN as ``null``); see ``batches.response_text``."""


def ok(body: Any, *, float_free: bool = False) -> Reply:
    return Reply(200, body, float_free=float_free)


def no_content() -> Reply:
    return Reply(204, None)


Handler = Callable[..., Reply]


class _Route:
    """One path pattern: its handlers by method and the counter keys of each method."""

    __slots__ = ("order", "pattern", "params", "methods", "keys")

    def __init__(self, order: int, pattern: str, params: tuple[str, ...]) -> None:
        self.order = order
        self.pattern = pattern
        self.params = params
        self.methods: dict[str, Handler] = {}
        self.keys: dict[str, tuple[str, str]] = {}
        """method -> (``"METHOD /pattern"``, ``"batch:METHOD /pattern"``), built once."""

    def add(self, method: str, handler: Handler) -> None:
        self.methods[method] = handler
        key = f"{method} {self.pattern}"
        self.keys[method] = (key, "batch:" + key)


class _Node:
    """A segment tree node: literal children, one placeholder child, and the route ending here."""

    __slots__ = ("literals", "placeholder", "route")

    def __init__(self) -> None:
        self.literals: dict[str, _Node] = {}
        self.placeholder: _Node | None = None
        self.route: _Route | None = None


class Router:
    """Maps ``(method, path pattern)`` to handlers; patterns use ``{name}`` placeholders for one segment.

    Patterns live in a tree of path segments, so matching a path costs one dict lookup per segment
    whatever the number of routes (batches dispatch hundreds of thousands of calls). A placeholder
    matches any non-empty segment; when a path matches several patterns (a literal segment and a
    placeholder at the same place), the pattern registered first wins.
    """

    def __init__(self) -> None:
        self._routes: list[_Route] = []
        self._by_pattern: dict[str, _Route] = {}
        self._root = _Node()

    def route(self, method: str, pattern: str) -> Callable[[Handler], Handler]:
        pattern = pattern.rstrip("/") or "/"

        def register(handler: Handler) -> Handler:
            entry = self._by_pattern.get(pattern)
            if entry is None:
                node = self._root
                params: list[str] = []
                for segment in _segments(pattern):
                    placeholder = _PLACEHOLDER.fullmatch(segment)
                    if placeholder:
                        params.append(placeholder.group(1))
                        node.placeholder = node.placeholder or _Node()
                        node = node.placeholder
                    else:
                        node = node.literals.setdefault(segment, _Node())
                entry = node.route = _Route(len(self._routes), pattern, tuple(params))
                self._routes.append(entry)
                self._by_pattern[pattern] = entry
            entry.add(method.upper(), handler)
            return handler

        return register

    def match(self, path: str) -> tuple[_Route, list[str]] | None:
        """The route for ``path`` (relative to /3.0) and its placeholder values, or None."""
        if not path.startswith("/"):
            return None
        segments = _segments(path.rstrip("/") or "/")
        # Fast path: while each node offers only one way on, walk straight down.
        node, values = self._root, []
        for segment in segments:
            child = node.literals.get(segment)
            if node.placeholder is None:
                if child is None:
                    return None
                node = child
            elif child is None:
                if not segment:
                    return None
                node = node.placeholder
                values.append(segment)
            else:
                return self._search(segments)  # a literal and a placeholder both fit here
        return (node.route, values) if node.route is not None else None

    def _search(self, segments: list[str]) -> tuple[_Route, list[str]] | None:
        """Every way down the tree; the earliest registered of the matching routes wins."""
        best: tuple[_Route, list[str]] | None = None
        stack: list[tuple[_Node, int, list[str]]] = [(self._root, 0, [])]
        last = len(segments)
        while stack:
            node, depth, values = stack.pop()
            if depth == last:
                if node.route is not None and (best is None or node.route.order < best[0].order):
                    best = (node.route, values)
                continue
            segment = segments[depth]
            if node.placeholder is not None and segment:
                stack.append((node.placeholder, depth + 1, values + [segment]))
            child = node.literals.get(segment)
            if child is not None:
                stack.append((child, depth + 1, values))
        return best

    def dispatch(self, call: Call) -> Reply:
        """Run the handler for ``call``; unknown paths are 404, known paths with another method 405.

        Every call is counted in ``state.counters`` under ``"METHOD /pattern"`` (and
        ``"batch:METHOD /pattern"`` when it came from a batch), whatever its outcome.
        """
        method = call.method.upper()
        found = self.match(call.path)
        if found is None:
            call.state.count(f"{method} <unknown>")
            raise not_found()
        entry, values = found
        counters = call.state.counters
        handler = entry.methods.get(method)
        keys = entry.keys.get(method)
        key, batch_key = keys if keys is not None else (f"{method} {entry.pattern}", f"batch:{method} {entry.pattern}")
        counters[key] = counters.get(key, 0) + 1
        if call.from_batch:
            counters[batch_key] = counters.get(batch_key, 0) + 1
        if handler is None:
            raise method_not_allowed(", ".join(sorted(entry.methods)))
        return handler(call, **dict(zip(entry.params, values)))

    def patterns(self) -> list[str]:
        """Every registered ``"METHOD /pattern"`` (for the admin API and docs)."""
        return [f"{m} {entry.pattern}" for entry in self._routes for m in sorted(entry.methods)]


_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def _segments(path: str) -> list[str]:
    """``"/lists/abc/members"`` -> ``["lists", "abc", "members"]``; ``"/"`` -> ``[]``.

    Split first, then each segment percent-decoded: ``%2F`` inside an id is part of the id, never a
    separator. Direct calls (``app.api_path_of``) and batch operations both pass encoded paths."""
    if path == "/":
        return []
    parts = path[1:].split("/")
    return [unquote(p) if "%" in p else p for p in parts]


router = Router()
"""The emulator's single route table; resource modules register on it at import time."""
