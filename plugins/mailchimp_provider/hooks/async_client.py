"""``MailchimpAsyncClient``: the hook's rules on aiohttp, for triggers running in the triggerer's event loop.

Same credentials (``hooks.credentials``), same ``RetryPolicy``, same typed errors as the sync hook;
only the waiting differs (``asyncio.sleep``, an ``asyncio.Semaphore`` per client for the in-flight
cap, then a lease of the account's shared Redis budget when one is configured, as in the hook). Nothing here blocks the event loop: the connection is read with ``BaseHook.aget_connection``
and secrets are masked with ``amask_secret``.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import logging
import time
from collections.abc import Mapping
from typing import Any

import aiohttp

from mailchimp_provider.errors import MailchimpError, MailchimpNotFoundError
from mailchimp_provider.hooks.credentials import (
    MailchimpCredentials,
    credentials_from_connection,
    max_in_flight_from_connection,
    secrets_of,
)
from mailchimp_provider.hooks.limiter import DEFAULT_MAX_IN_FLIGHT, validate_max_in_flight
from mailchimp_provider.hooks.shared_limiter import SharedBudget, alease, shared_budget_from_connection
from mailchimp_provider.hooks.mailchimp import (
    DEFAULT_TIMEOUT,
    USER_AGENT,
    api_error,
    api_url,
    batch_expired,
    encode_params,
    failure_summary,
    parse_problem,
)
from mailchimp_provider.hooks.retry import RetryPolicy, is_retriable_status

log = logging.getLogger(__name__)

_RETRIABLE_EXCEPTIONS = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, asyncio.TimeoutError)


class MailchimpAsyncClient:
    """Async GET/POST/... against Mailchimp with retries and a cap on requests in flight.

    Use as ``async with MailchimpAsyncClient.from_conn_id(...) as client`` or call ``close()``.
    The aiohttp session is created on first use, inside the running event loop.
    """

    def __init__(
        self,
        credentials: MailchimpCredentials,
        *,
        retry: RetryPolicy | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        shared_budget: SharedBudget | None = None,
    ) -> None:
        self.credentials = credentials
        self.shared_budget = shared_budget
        self.retry_policy = retry or RetryPolicy()
        self.timeout = float(timeout)
        self.max_in_flight = validate_max_in_flight(max_in_flight)
        self._session: aiohttp.ClientSession | None = None
        self._semaphore: asyncio.Semaphore | None = None

    def __repr__(self) -> str:
        return f"<MailchimpAsyncClient base_url={self.credentials.base_url!r}>"

    @property
    def base_url(self) -> str:
        return self.credentials.base_url

    @classmethod
    async def from_conn_id(
        cls,
        conn_id: str = "mailchimp_default",
        *,
        retry: RetryPolicy | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_in_flight: int | None = None,
    ) -> MailchimpAsyncClient:
        """Build a client from an Airflow connection without blocking the event loop."""
        from airflow.sdk.bases.hook import BaseHook
        from airflow.sdk.log import amask_secret

        conn = await BaseHook.aget_connection(conn_id)
        for secret in secrets_of(conn):
            await amask_secret(secret)
        credentials = credentials_from_connection(conn, mask=False)
        limit = max_in_flight or max_in_flight_from_connection(conn) or DEFAULT_MAX_IN_FLIGHT
        return cls(credentials, retry=retry, timeout=timeout, max_in_flight=limit,
                   shared_budget=shared_budget_from_connection(conn))

    async def __aenter__(self) -> MailchimpAsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _ensure_session(self) -> tuple[aiohttp.ClientSession, asyncio.Semaphore]:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers={
                    "Authorization": self.credentials.authorization,
                    "Accept": "application/json",
                    "User-Agent": USER_AGENT,
                },
                timeout=aiohttp.ClientTimeout(total=self.timeout, connect=min(self.timeout, 15.0)),
                connector=aiohttp.TCPConnector(limit=self.max_in_flight),
            )
            self._semaphore = asyncio.Semaphore(self.max_in_flight)
        assert self._semaphore is not None
        return self._session, self._semaphore

    async def request(
        self, method: str, path: str, *, params: Mapping[str, Any] | None = None, json: Any = None
    ) -> Any:
        """The parsed JSON answer (None for 204); typed errors like ``MailchimpHook.request``."""
        method = method.upper()
        url = api_url(self.base_url, path)
        query = encode_params(params)
        session, semaphore = self._ensure_session()
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            retry_after: str | None = None
            failure: BaseException | None = None
            status: int | None = None
            body = b""
            async with semaphore, alease(self.shared_budget, self.credentials.fingerprint):
                try:
                    async with session.request(
                        method, url, params=query, json=json, allow_redirects=False
                    ) as response:
                        status = response.status
                        body = await response.read()
                        retry_after = response.headers.get("Retry-After")
                        content_type = response.headers.get("Content-Type", "")
                except _RETRIABLE_EXCEPTIONS as exc:
                    failure = exc
            if failure is None and status is not None:
                if status < 300:
                    if status == 204 or not body:
                        return None
                    try:
                        return jsonlib.loads(body)
                    except ValueError:
                        raise MailchimpError(
                            f"{method} {path}: {status} answer is not JSON "
                            f"({content_type or 'no content type'})"
                        ) from None
                if not is_retriable_status(status, has_json_body=parse_problem(body) is not None):
                    raise api_error(status, body, method, path)
                reason = failure_summary(status, body)
            else:
                reason = f"{type(failure).__name__}: no answer within {self.timeout:g}s or connection failed"
            delay = self.retry_policy.delay_or_give_up(
                method, path, attempt=attempt, started=started, reason=reason, status=status,
                retry_after_header=retry_after, failure=failure,
            )
            log.warning(
                "Mailchimp %s %s failed (%s); retry %d/%d in %.2fs",
                method,
                path,
                reason,
                attempt,
                self.retry_policy.max_attempts - 1,
                delay,
            )
            await asyncio.sleep(delay)

    async def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        return await self.request("GET", path, params=params)

    async def post(self, path: str, json: Any = None, params: Mapping[str, Any] | None = None) -> Any:
        return await self.request("POST", path, params=params, json=json)

    async def delete(self, path: str) -> Any:
        return await self.request("DELETE", path)

    async def get_batch(self, batch_id: str) -> dict[str, Any]:
        """``GET /batches/{id}``; ``MailchimpBatchExpiredError`` on 404, like the sync hook."""
        try:
            return await self.get(f"/batches/{batch_id}")
        except MailchimpNotFoundError as err:
            raise batch_expired(batch_id, err) from err
