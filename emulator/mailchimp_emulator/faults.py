"""Limits and injected faults applied by the HTTP layer before a request reaches the route table.

* Concurrency: Mailchimp allows 10 simultaneous connections per API key and answers 429 above
  that. :class:`InFlight` counts requests per key for their whole life, latency sleep included.
* Latency: ``Faults.latency_ms`` is slept on every /3.0 request.
* One-shot faults (``Faults.inject``): each entry matches by ``method`` (optional) and
  ``path_prefix`` (optional, relative to /3.0, e.g. ``/batches``) and is consumed by ``count``
  matching requests. Either ``status`` (429, 500, 502, 503, 504, 403) with ``body`` ``"json"``
  (a problem document), ``"html"`` or ``"empty"`` and an optional ``retry_after`` (seconds, sent as
  ``Retry-After``), or ``timeout_seconds``: the request is held that long and then answered
  ``504 Gateway Time-out`` with an HTML body, as a gateway in front of a slow server would.
* ``after_processing: true`` on an injected fault (not 429, which Mailchimp answers before doing
  anything): the request is first handled for real (a ``POST /batches`` creates its batch, a PUT
  writes), then its answer is replaced by the fault. This is the case a client must never replay
  blindly: the write happened, but the client saw a 5xx or no answer within its timeout.
* Storms (``Faults.storm``): each entry fails a matching request with probability ``rate``, picking
  uniformly among its ``statuses`` and, with ``timeout_seconds``, a held 504. Same matching and
  ``after_processing`` as one-shot faults; the choices come from a generator seeded by
  ``Faults.storm_seed`` so that a storm can be replayed.
"""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

from starlette.responses import Response

from .errors import ApiError
from .state import Faults

FAULT_STATUSES = {
    403: ("Forbidden", "You are not permitted to access this resource."),
    429: ("Too Many Requests", "You have exceeded the limit of 10 simultaneous connections."),
    500: ("Internal Server Error", "An unexpected internal error has occurred. Please contact Support for more information."),
    502: ("Bad Gateway", "The server received an invalid response from an upstream server."),
    503: ("Service Unavailable", "The service is temporarily unavailable. Please try again later."),
    504: ("Gateway Timeout", "The request timed out."),
}
BODY_KINDS = ("json", "html", "empty")


class InFlight:
    """Requests in flight per API key, and the highest total seen (for ``/_emulator/stats``)."""

    def __init__(self) -> None:
        self.by_key: dict[str, int] = {}

    def enter(self, key: str) -> int:
        """Count one more request for ``key``; returns how many are now in flight for it."""
        self.by_key[key] = self.by_key.get(key, 0) + 1
        return self.by_key[key]

    def leave(self, key: str) -> None:
        self.by_key[key] -= 1
        if not self.by_key[key]:
            del self.by_key[key]


def validate_injection(raw: Any) -> dict[str, Any]:
    """A normalised ``inject`` entry, or 400 naming the bad field."""
    if not isinstance(raw, dict):
        raise ApiError(400, "Invalid Resource", "Each inject entry must be an object.")
    entry = dict(raw)
    entry["count"] = int(entry.get("count", 1))
    if entry["count"] < 1:
        raise ApiError(400, "Invalid Resource", "inject.count must be at least 1.")
    if "timeout_seconds" in entry:
        entry["timeout_seconds"] = float(entry["timeout_seconds"])
    elif int(entry.get("status", 0)) not in FAULT_STATUSES:
        raise ApiError(
            400,
            "Invalid Resource",
            f"inject.status must be one of {sorted(FAULT_STATUSES)} (or give timeout_seconds).",
        )
    else:
        entry["status"] = int(entry["status"])
        entry.setdefault("body", "json" if entry["status"] == 429 else "html")
        if entry["body"] not in BODY_KINDS:
            raise ApiError(400, "Invalid Resource", f"inject.body must be one of {BODY_KINDS}.")
    if entry.get("method"):
        entry["method"] = str(entry["method"]).upper()
    entry["after_processing"] = bool(entry.get("after_processing", False))
    return entry


def validate_storm(raw: Any) -> dict[str, Any]:
    """A normalised ``storm`` entry, or 400 naming the bad field."""
    if not isinstance(raw, dict):
        raise ApiError(400, "Invalid Resource", "Each storm entry must be an object.")
    entry = dict(raw)
    rate = float(entry.get("rate", 0))
    if not 0 < rate <= 1:
        raise ApiError(400, "Invalid Resource", f"storm.rate must be within (0, 1], got {entry.get('rate')!r}.")
    statuses = [int(s) for s in entry.get("statuses", [])]
    unknown = sorted(set(statuses) - set(FAULT_STATUSES))
    if unknown:
        raise ApiError(400, "Invalid Resource", f"storm.statuses {unknown} not among {sorted(FAULT_STATUSES)}.")
    timeout = entry.get("timeout_seconds")
    if not statuses and timeout is None:
        raise ApiError(400, "Invalid Resource", "A storm entry needs statuses, timeout_seconds or both.")
    if entry.get("body", "json") not in BODY_KINDS:
        raise ApiError(400, "Invalid Resource", f"storm.body must be one of {BODY_KINDS}.")
    entry.update(rate=rate, statuses=statuses, after_processing=bool(entry.get("after_processing", False)))
    if timeout is not None:
        entry["timeout_seconds"] = float(timeout)
    if entry.get("method"):
        entry["method"] = str(entry["method"]).upper()
    return entry


def _matches(entry: dict[str, Any], method: str, path: str) -> bool:
    if entry.get("method") and entry["method"] != method.upper():
        return False
    return not entry.get("path_prefix") or path.startswith(entry["path_prefix"])


def storm_fault(faults: Faults, rng: random.Random, method: str, path: str) -> dict[str, Any] | None:
    """The fault a storm throws at this request (shaped like an injected entry), or None."""
    for entry in faults.storm:
        if not _matches(entry, method, path) or rng.random() >= entry["rate"]:
            continue
        kinds: list[Any] = [*entry["statuses"], *(["timeout"] if "timeout_seconds" in entry else [])]
        kind = rng.choice(kinds)
        fault: dict[str, Any] = {"after_processing": entry["after_processing"]}
        if kind == "timeout":
            fault["timeout_seconds"] = entry["timeout_seconds"]
        else:
            fault.update(status=kind, body="json" if kind == 429 else entry.get("body", "html"))
            if entry.get("retry_after") is not None:
                fault["retry_after"] = entry["retry_after"]
        return fault
    return None


def processed_first(fault: dict[str, Any]) -> bool:
    """Whether the request is handled for real before the fault replaces its answer."""
    return bool(fault.get("after_processing")) and fault.get("status") != 429


def take_injection(faults: Faults, method: str, path: str) -> dict[str, Any] | None:
    """Consume one use of the first injected fault matching ``method`` and ``path``."""
    for entry in faults.inject:
        if not _matches(entry, method, path):
            continue
        entry["count"] -= 1
        if entry["count"] <= 0:
            faults.inject.remove(entry)
        return entry
    return None


async def serve_injection(entry: dict[str, Any], request_id: str) -> Response:
    """The response an injected fault produces (after holding the request for a timeout fault)."""
    if "timeout_seconds" in entry:
        await asyncio.sleep(entry["timeout_seconds"])
        return Response(
            "<html><head><title>504 Gateway Time-out</title></head><body><h1>504 Gateway Time-out</h1></body></html>",
            status_code=504,
            media_type="text/html",
        )
    status = entry["status"]
    title, detail = FAULT_STATUSES[status]
    headers = {"X-Request-Id": request_id}
    if entry.get("retry_after") is not None:
        headers["Retry-After"] = str(entry["retry_after"])
    if entry["body"] == "json":
        body = ApiError(status, title, detail).to_body(request_id)
        return Response(
            json.dumps(body), status_code=status, headers=headers, media_type="application/problem+json; charset=utf-8"
        )
    if entry["body"] == "html":
        return Response(
            f"<html><head><title>{status} {title}</title></head><body><h1>{title}</h1></body></html>",
            status_code=status,
            headers=headers,
            media_type="text/html",
        )
    return Response(b"", status_code=status, headers=headers)
