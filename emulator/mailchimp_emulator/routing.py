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
        self._routes: list[tuple[re.Pattern[str], dict[str, Handler]]] = []

    def route(self, method: str, pattern: str) -> Callable[[Handler], Handler]:
        regex = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern.rstrip("/")) + "/?$")

        def register(handler: Handler) -> Handler:
            for existing, methods in self._routes:
                if existing.pattern == regex.pattern:
                    methods[method.upper()] = handler
                    break
            else:
                self._routes.append((regex, {method.upper(): handler}))
            return handler

        return register

    def dispatch(self, call: Call) -> Reply:
        """Run the handler for ``call``; unknown paths are 404, known paths with another method 405."""
        path = call.path.rstrip("/") or "/"
        for regex, methods in self._routes:
            match = regex.match(path)
            if not match:
                continue
            handler = methods.get(call.method.upper())
            if handler is None:
                raise method_not_allowed(", ".join(sorted(methods)))
            return handler(call, **match.groupdict())
        raise not_found()


router = Router()
"""The emulator's single route table; resource modules register on it at import time."""
