"""The ASGI application: authentication, limits and faults, error rendering, dispatch, lifespan.

Every /3.0 request goes: authenticate (401) -> per-key concurrency limit (429) -> one-shot injected
fault or storm fault (served at once, or after the request was handled for real when the fault is
``after_processing``) -> latency -> route table. The lifespan starts the batch processor and, with a state file,
the periodic saver (and saves once more on shutdown).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import copy
import json
import logging
import random
import time
import uuid
from pathlib import Path
from typing import Any, AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

# Resource modules register their routes on import.
from . import DEMO_API_KEY, automations, batches, campaigns, carts, ecommerce, lists, members, reports, root, segments  # noqa: F401
from .admin import admin_routes
from .batches import BatchProcessor, requeue_interrupted
from .errors import ApiError, api_key_invalid, api_key_missing, json_parse_error, too_many_requests
from .faults import InFlight, processed_first, serve_injection, storm_fault, take_injection
from .routing import Call, router
from .state import EmulatorState, Faults, write_json_atomically

JSON_TYPE = "application/json; charset=utf-8"
PROBLEM_TYPE = "application/problem+json; charset=utf-8"
PROBLEM_SCHEMA_LINK = '<https://us1.api.mailchimp.com/schema/3.0/Definitions/ProblemDetailDocument.json>; rel="describedBy"'
AUTOSAVE_SECONDS = 2.0
_encode = json.JSONEncoder(check_circular=False).encode
"""``json.dumps`` output (same separators), minus the reference-cycle bookkeeping: bodies are
trees built by the handlers."""

log = logging.getLogger(__name__)


class Emulator:
    """Holds the state, the accepted credentials and the runtime counters; builds the Starlette app."""

    def __init__(
        self,
        api_keys: list[str] | None = None,
        state: EmulatorState | None = None,
        *,
        state_file: str | Path | None = None,
        faults: Faults | None = None,
    ) -> None:
        self.api_keys = set(api_keys or [DEMO_API_KEY])
        self.state_file = Path(state_file) if state_file else None
        self.default_faults = copy.deepcopy(faults) if faults else Faults()
        if state is None and self.state_file and self.state_file.exists():
            state = EmulatorState.load(self.state_file)
            requeue_interrupted(state)
        self.state = state or EmulatorState()
        if faults is not None:
            self.state.faults = copy.deepcopy(faults)
        self.in_flight = InFlight()
        self.storm_rng = random.Random(self.state.faults.storm_seed)
        self.processor = BatchProcessor(lambda: self.state)
        self._dirty = True
        self._saved_fingerprint: Any = None

    # -- auth -----------------------------------------------------------------------------------
    def authenticate(self, request: Request) -> str:
        """Return the API key (or token) of the request, or raise 401 like Mailchimp."""
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        scheme = scheme.lower()
        if scheme == "basic":
            try:
                decoded = base64.b64decode(value.strip()).decode()
            except (binascii.Error, UnicodeDecodeError):
                raise api_key_invalid() from None
            _, _, key = decoded.partition(":")
            if key in self.api_keys:
                return key
            raise api_key_invalid()
        if scheme in ("bearer", "oauth"):
            if value.strip() in self.api_keys:
                return value.strip()
            raise api_key_invalid()
        if request.query_params.get("apikey") in self.api_keys:
            return request.query_params["apikey"]
        raise api_key_missing() if not header else api_key_invalid()

    # -- state ----------------------------------------------------------------------------------
    def reset(self) -> None:
        """A fresh, empty account with the faults the emulator was started with."""
        self.state = EmulatorState(faults=copy.deepcopy(self.default_faults))
        self.storm_rng.seed(self.state.faults.storm_seed)
        self.mark_dirty()

    def mark_dirty(self) -> None:
        self._dirty = True

    def _fingerprint(self) -> Any:
        state = self.state
        return (
            id(state),
            state.clock,
            sum(state.counters.values()),
            tuple((b["status"], b["finished_operations"]) for b in state.batches.values()),
        )

    def save(self) -> None:
        """Write the state file now (no-op without ``--state``)."""
        if not self.state_file:
            return
        write_json_atomically(self.state_file, json.dumps(self.state.to_json(), separators=(",", ":")))
        self._saved_fingerprint = self._fingerprint()
        self._dirty = False

    async def _autosave(self) -> None:
        """Save every few seconds when something changed. Serialising runs on the event loop (the
        state must not change mid-dump), so a big state is saved less often: the pause is at
        least five times the last dump's duration."""
        pause = AUTOSAVE_SECONDS
        while True:
            await asyncio.sleep(pause)
            if not self._dirty and self._fingerprint() == self._saved_fingerprint:
                continue
            started = time.monotonic()
            try:
                text = json.dumps(self.state.to_json(), separators=(",", ":"))
                fingerprint = self._fingerprint()
                pause = max(AUTOSAVE_SECONDS, 5 * (time.monotonic() - started))
                await asyncio.to_thread(write_json_atomically, self.state_file, text)
                self._saved_fingerprint, self._dirty = fingerprint, False
            except OSError:
                log.exception("could not save the emulator state to %s", self.state_file)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(self.processor.run(), name="mailchimp-batch-processor")]
        if self.state_file:
            tasks.append(asyncio.create_task(self._autosave(), name="mailchimp-state-saver"))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self.save()

    # -- HTTP -----------------------------------------------------------------------------------
    async def handle_api(self, request: Request) -> Response:
        request_id = str(uuid.uuid4())
        traffic = self.state.traffic
        traffic["requests"] = traffic.get("requests", 0) + 1
        try:
            key = self.authenticate(request)
        except ApiError as err:
            return problem_response(err, request_id)
        in_flight = self.in_flight.enter(key)
        try:
            total = sum(self.in_flight.by_key.values())
            if total > traffic.get("max_in_flight", 0):
                traffic["max_in_flight"] = total
            faults = self.state.faults
            if in_flight > faults.max_concurrent:
                traffic["throttled"] = traffic.get("throttled", 0) + 1
                return problem_response(too_many_requests(), request_id)
            path = api_path_of(request)
            injected = take_injection(faults, request.method, path)
            if injected is None and faults.storm:
                injected = storm_fault(faults, self.storm_rng, request.method, path)
            if injected is not None:
                traffic["injected"] = traffic.get("injected", 0) + 1
                if processed_first(injected):
                    traffic["injected_after_processing"] = traffic.get("injected_after_processing", 0) + 1
                    await self._dispatch(request, path, request_id)  # the work is done; its answer is lost
                return await serve_injection(injected, request_id)
            if faults.latency_ms > 0:
                await asyncio.sleep(faults.latency_ms / 1000)
            return await self._dispatch(request, path, request_id)
        finally:
            self.in_flight.leave(key)

    async def _dispatch(self, request: Request, path: str, request_id: str) -> Response:
        try:
            raw = await request.body()
            body: Any = None
            if raw.strip():
                try:
                    body = json.loads(raw)
                except ValueError:
                    raise json_parse_error() from None
            call = Call(
                method=request.method,
                path=path,
                params=dict(request.query_params),
                body=body,
                state=self.state,
                root_url=f"{request.url.scheme}://{request.url.netloc}",
            )
            reply = router.dispatch(call)
        except ApiError as err:
            return problem_response(err, request_id)
        headers = {"X-Request-Id": request_id, **reply.headers}
        if reply.status == 204 or reply.body is None:
            return Response(status_code=reply.status, headers=headers)
        return Response(_encode(reply.body), status_code=reply.status, headers=headers, media_type=JSON_TYPE)

    def build_app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/3.0/{path:path}", self.handle_api, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
                Route("/3.0", self.handle_api, methods=["GET"]),
                *admin_routes(self),
            ],
            lifespan=self.lifespan,
        )


def api_path_of(request: Request) -> str:
    """The request path below /3.0 as sent, still percent-encoded: the router splits it into
    segments first and decodes each one after (``routing._segments``), as Mailchimp does, so an
    id holding ``%2F`` stays one segment. Starlette's ``path`` is decoded already: ``/`` inside
    an id would have become a path separator there."""
    raw = request.scope.get("raw_path")
    if not raw:
        return "/" + request.path_params.get("path", "")
    text = raw.decode("latin-1").split("?", 1)[0]
    return text[4:] if text.startswith("/3.0/") else "/" + request.path_params.get("path", "")


def problem_response(err: ApiError, request_id: str) -> Response:
    return Response(
        json.dumps(err.to_body(request_id)),
        status_code=err.status,
        headers={"X-Request-Id": request_id, "Link": PROBLEM_SCHEMA_LINK, **err.headers},
        media_type=PROBLEM_TYPE,
    )


def create_app(
    api_keys: list[str] | None = None,
    state: EmulatorState | None = None,
    *,
    state_file: str | Path | None = None,
    faults: Faults | None = None,
) -> Starlette:
    return Emulator(api_keys, state, state_file=state_file, faults=faults).build_app()
