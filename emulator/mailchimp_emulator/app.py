"""The ASGI application: authentication, error rendering and dispatch to the route table."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import uuid
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import DEMO_API_KEY, root  # noqa: F401  (root registers routes)
from .errors import ApiError, api_key_invalid, api_key_missing, json_parse_error
from .routing import Call, router
from .state import EmulatorState

JSON_TYPE = "application/json; charset=utf-8"
PROBLEM_TYPE = "application/problem+json; charset=utf-8"


class Emulator:
    """Holds the state and the accepted credentials; builds the Starlette app."""

    def __init__(self, api_keys: list[str] | None = None, state: EmulatorState | None = None) -> None:
        self.api_keys = set(api_keys or [DEMO_API_KEY])
        self.state = state or EmulatorState()

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

    # -- HTTP -----------------------------------------------------------------------------------
    async def handle_api(self, request: Request) -> Response:
        request_id = str(uuid.uuid4())
        try:
            self.authenticate(request)
            raw = await request.body()
            body: Any = None
            if raw.strip():
                try:
                    body = json.loads(raw)
                except ValueError:
                    raise json_parse_error() from None
            call = Call(
                method=request.method,
                path="/" + request.path_params.get("path", ""),
                params=dict(request.query_params),
                body=body,
                state=self.state,
            )
            reply = router.dispatch(call)
        except ApiError as err:
            return problem_response(err, request_id)
        headers = {"X-Request-Id": request_id, **reply.headers}
        if reply.status == 204 or reply.body is None:
            return Response(status_code=reply.status, headers=headers)
        return Response(json.dumps(reply.body), status_code=reply.status, headers=headers, media_type=JSON_TYPE)

    def build_app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/3.0/{path:path}", self.handle_api, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
                Route("/3.0", self.handle_api, methods=["GET"]),
            ]
        )


def problem_response(err: ApiError, request_id: str) -> Response:
    return Response(
        json.dumps(err.to_body(request_id)),
        status_code=err.status,
        headers={"X-Request-Id": request_id, **err.headers},
        media_type=PROBLEM_TYPE,
    )


def create_app(api_keys: list[str] | None = None, state: EmulatorState | None = None) -> Starlette:
    return Emulator(api_keys, state).build_app()


_ = (asyncio, JSONResponse)
