"""Mailchimp's problem-detail errors (RFC 7807 style), raised by handlers and rendered by the app."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

ERROR_DOC_URL = "https://mailchimp.com/developer/marketing/docs/errors/"


@dataclass
class ApiError(Exception):
    """An error answer. Handlers raise it; the HTTP layer and the batch processor render it alike."""

    status: int
    title: str
    detail: str
    errors: list[dict[str, str]] | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def to_body(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": ERROR_DOC_URL,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "instance": instance or str(uuid.uuid4()),
        }
        if self.errors:
            body["errors"] = self.errors
        return body


def not_found() -> ApiError:
    return ApiError(404, "Resource Not Found", "The requested resource could not be found.")


def invalid_resource(detail: str, errors: list[dict[str, str]] | None = None) -> ApiError:
    return ApiError(400, "Invalid Resource", detail, errors)


def schema_error(errors: list[dict[str, str]]) -> ApiError:
    return invalid_resource(
        "The resource submitted could not be validated. For field-specific details, see the 'errors' array.",
        errors,
    )


def bad_request(detail: str) -> ApiError:
    return ApiError(400, "Bad Request", detail)


def method_not_allowed(allow: str, detail: str | None = None) -> ApiError:
    return ApiError(
        405,
        "Method Not Allowed",
        detail
        or "The requested method and resource are not compatible. See the Allow header for this resource's available methods.",
        headers={"Allow": allow},
    )


def api_key_invalid() -> ApiError:
    return ApiError(
        401,
        "API Key Invalid",
        "Your API key may be invalid, or you've attempted to access the wrong datacenter.",
    )


def api_key_missing() -> ApiError:
    return ApiError(401, "API Key Missing", "Your request did not include an API key.")


def too_many_requests() -> ApiError:
    return ApiError(429, "Too Many Requests", "You have exceeded the limit of 10 simultaneous connections.")


def json_parse_error() -> ApiError:
    return ApiError(400, "JSON Parse Error", "We encountered an unspecified JSON parsing error.")
