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


def ok(body: Any) -> Reply:
    return Reply(200, body)


def no_content() -> Reply:
    return Reply(204, None)


Handler = Callable[..., Reply]


class Router:
    """Maps ``(method, path pattern)`` to handlers; patterns use ``{name}`` placeholders for one segment."""

    def __init__(self) -> None:
        self._routes: list[tuple[re.Pattern[str], str, dict[str, Handler]]] = []
        self._by_head: dict[tuple[str, int], list[tuple[re.Pattern[str], str, dict[str, Handler]]]] = {}

    def route(self, method: str, pattern: str) -> Callable[[Handler], Handler]:
        pattern = pattern.rstrip("/") or "/"
        regex = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "/?$")

        def register(handler: Handler) -> Handler:
            for existing, _, methods in self._routes:
                if existing.pattern == regex.pattern:
                    methods[method.upper()] = handler
                    break
            else:
                entry = (regex, pattern, {method.upper(): handler})
                self._routes.append(entry)
                self._by_head.setdefault(_head(pattern), []).append(entry)
            return handler

        return register

    def dispatch(self, call: Call) -> Reply:
        """Run the handler for ``call``; unknown paths are 404, known paths with another method 405.

        Every call is counted in ``state.counters`` under ``"METHOD /pattern"`` (and
        ``"batch:METHOD /pattern"`` when it came from a batch), whatever its outcome.
        """
        path = call.path.rstrip("/") or "/"
        method = call.method.upper()
        for regex, pattern, methods in self._by_head.get(_head(path), ()):
            match = regex.match(path)
            if not match:
                continue
            key = f"{method} {pattern}"
            counters = call.state.counters
            counters[key] = counters.get(key, 0) + 1
            if call.from_batch:
                counters["batch:" + key] = counters.get("batch:" + key, 0) + 1
            handler = methods.get(method)
            if handler is None:
                raise method_not_allowed(", ".join(sorted(methods)))
            return handler(call, **match.groupdict())
        call.state.count(f"{method} <unknown>")
        raise not_found()

    def patterns(self) -> list[str]:
        """Every registered ``"METHOD /pattern"`` (for the admin API and docs)."""
        return [f"{m} {pattern}" for _, pattern, methods in self._routes for m in sorted(methods)]


def _head(path: str) -> tuple[str, int]:
    """First path segment and segment count: routes are bucketed by them so dispatch tries only
    one or two regexes per call (batches dispatch hundreds of thousands of calls)."""
    parts = path.strip("/").split("/")
    return parts[0], len(parts)


router = Router()
"""The emulator's single route table; resource modules register on it at import time."""
