"""The admin API under ``/_emulator/`` (no auth): reset, faults, stats, state dump, batch results.

Tests and the demo drive the emulator through it; it is not part of Mailchimp. Other resource
modules can add admin endpoints with :func:`admin_route` (a handler receives the state, the JSON
body and the query parameters and returns ``(status, body)``).
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import TYPE_CHECKING, Any, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .batches import results_archive
from .campaigns import inject_activity
from .errors import ApiError
from .faults import validate_injection, validate_storm
from .pace import apply_pace
from .routing import router
from .state import EmulatorState, Faults

if TYPE_CHECKING:
    from .app import Emulator

AdminHandler = Callable[[EmulatorState, Any, dict[str, str]], "tuple[int, Any]"]
_EXTRA: list[tuple[str, str, AdminHandler]] = []


def admin_route(method: str, path: str) -> Callable[[AdminHandler], AdminHandler]:
    """Register ``handler(state, body, params) -> (status, body)`` at ``/_emulator/<path>``."""

    def register(handler: AdminHandler) -> AdminHandler:
        _EXTRA.append((method.upper(), "/" + path.strip("/"), handler))
        return handler

    return register


@admin_route("POST", "/activity")
def activity(state: EmulatorState, body: Any, params: dict[str, str]) -> tuple[int, Any]:
    """Inject exact campaign activity (see :func:`campaigns.inject_activity`)."""
    return 200, inject_activity(state, body)


def update_faults(faults: Faults, changes: dict[str, Any]) -> None:
    """Merge ``changes`` into ``faults``; ``inject`` entries are appended (``clear_inject`` empties first)."""
    known = {f.name: f for f in dataclasses.fields(Faults)}
    unknown = sorted(set(changes) - set(known) - {"clear_inject"})
    if unknown:
        raise ApiError(400, "Invalid Resource", f"Unknown fault settings: {', '.join(unknown)}; known: {', '.join(known)}.")
    if changes.get("clear_inject"):
        faults.inject.clear()
    if "pace" in changes or "pace_speedup" in changes:  # first, so knobs given beside it override it
        try:
            apply_pace(faults, str(changes.get("pace", faults.pace)), float(changes.get("pace_speedup", 1.0)))
        except ValueError as err:
            raise ApiError(400, "Invalid Resource", str(err)) from None
    for name, value in changes.items():
        if name in ("clear_inject", "pace", "pace_speedup"):
            continue
        if name == "inject":
            entries = value if isinstance(value, list) else [value]
            faults.inject.extend(validate_injection(e) for e in entries)
        elif name == "storm":
            faults.storm = [validate_storm(e) for e in (value if isinstance(value, list) else [value])]
        elif name == "storm_seed":
            faults.storm_seed = int(value)
        elif name == "stuck_finalizing":
            faults.stuck_finalizing = bool(value)
        elif name == "max_concurrent":
            faults.max_concurrent = int(value)
        else:
            faults_value = float(value)
            if faults_value < 0:
                raise ApiError(400, "Invalid Resource", f"{name} must not be negative.")
            setattr(faults, name, faults_value)


def stats(emulator: "Emulator") -> dict[str, Any]:
    state = emulator.state
    routes: dict[str, dict[str, int]] = {}
    for key, n in state.counters.items():
        via_batch = key.startswith("batch:")
        entry = routes.setdefault(key[6:] if via_batch else key, {"total": 0, "batch": 0})
        entry["batch" if via_batch else "total"] += n
    by_status: dict[str, int] = {}
    for batch in state.batches.values():
        by_status[batch["status"]] = by_status.get(batch["status"], 0) + 1
    traffic = state.traffic
    return {
        "requests": traffic.get("requests", 0),
        "max_in_flight": traffic.get("max_in_flight", 0),
        "in_flight": sum(emulator.in_flight.by_key.values()),
        "throttled": traffic.get("throttled", 0),
        "injected": traffic.get("injected", 0),
        "injected_after_processing": traffic.get("injected_after_processing", 0),
        "pending_limit_rejections": traffic.get("pending_limit", 0),
        "routes": routes,
        "batches": {"by_status": by_status, "total": len(state.batches)},
        "operations_applied": sum(n for key, n in state.counters.items() if key.startswith("batch:")),
    }


def admin_routes(emulator: "Emulator") -> list[Route]:
    """The Starlette routes of the admin API, bound to ``emulator``."""

    async def read_json(request: Request) -> Any:
        raw = await request.body()
        if not raw.strip():
            return {}
        try:
            return json.loads(raw)
        except ValueError:
            raise ApiError(400, "JSON Parse Error", "We encountered an unspecified JSON parsing error.") from None

    def error(err: ApiError) -> Response:
        return JSONResponse(err.to_body(), status_code=err.status)

    async def reset(request: Request) -> Response:
        emulator.reset()
        return JSONResponse({"reset": True, "account_id": emulator.state.account_id})

    async def faults(request: Request) -> Response:
        if request.method == "POST":
            try:
                changes = await read_json(request)
                if not isinstance(changes, dict):
                    raise ApiError(400, "Invalid Resource", "Send a JSON object of fault settings.")
                update_faults(emulator.state.faults, changes)
                if {"storm", "storm_seed"} & set(changes):
                    emulator.storm_rng.seed(emulator.state.faults.storm_seed)
            except (ApiError, TypeError, ValueError) as err:
                return error(err if isinstance(err, ApiError) else ApiError(400, "Invalid Resource", str(err)))
            emulator.mark_dirty()
        return JSONResponse(dataclasses.asdict(emulator.state.faults))

    async def get_stats(request: Request) -> Response:
        return JSONResponse(stats(emulator))

    async def dump_state(request: Request) -> Response:
        return Response(json.dumps(emulator.state.to_json()), media_type="application/json")

    async def routes_list(request: Request) -> Response:
        return JSONResponse({"routes": router.patterns()})

    async def batch_results(request: Request) -> Response:
        """Like a presigned S3 URL: no auth, ``Expires`` enforced, 404 once results are gone."""
        batch_id = request.path_params["name"]
        for suffix in (".tar.gz", "-response.tar.gz"):
            if batch_id.endswith(suffix):
                batch_id = batch_id[: -len(suffix)]
        expires = request.query_params.get("Expires")
        if expires and expires.isdigit() and int(expires) < time.time():
            return Response(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code>"
                "<Message>Request has expired</Message></Error>",
                status_code=403,
                media_type="application/xml",
            )
        archive = results_archive(emulator.state, batch_id)
        if archive is None:
            return Response(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchKey</Code>"
                "<Message>The specified key does not exist.</Message></Error>",
                status_code=404,
                media_type="application/xml",
            )
        return Response(archive, media_type="application/x-gzip")

    def extra(handler: AdminHandler) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            try:
                status, body = handler(emulator.state, await read_json(request), dict(request.query_params))
            except ApiError as err:
                return error(err)
            emulator.mark_dirty()
            return JSONResponse(body, status_code=status) if body is not None else Response(status_code=status)

        return endpoint

    routes = [
        Route("/_emulator/reset", reset, methods=["POST"]),
        Route("/_emulator/faults", faults, methods=["GET", "POST"]),
        Route("/_emulator/stats", get_stats, methods=["GET"]),
        Route("/_emulator/state", dump_state, methods=["GET"]),
        Route("/_emulator/routes", routes_list, methods=["GET"]),
        Route("/_emulator/batch-results/{name}", batch_results, methods=["GET"]),
    ]
    routes += [Route("/_emulator" + path, extra(handler), methods=[method]) for method, path, handler in _EXTRA]
    return routes
