"""MailchimpAsyncClient: the hook's credentials, retries and errors on aiohttp, for triggers."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from mailchimp_provider.errors import (
    MailchimpAuthError,
    MailchimpBatchExpiredError,
    MailchimpConfigError,
    MailchimpNotFoundError,
    MailchimpRetriableError,
)
from mailchimp_provider.hooks.async_client import MailchimpAsyncClient
from mailchimp_provider.hooks.mailchimp import MailchimpHook
from mailchimp_provider.hooks.retry import RetryPolicy

FAST = RetryPolicy(max_attempts=3, base_delay=0.05, max_delay=0.1)


def test_from_conn_id_reads_the_connection_without_blocking_and_pings(emulator):
    async def main():
        async with await MailchimpAsyncClient.from_conn_id("mailchimp_default") as client:
            assert client.base_url == emulator.base_url
            return await client.get("/ping")

    assert asyncio.run(main()) == {"health_status": "Everything's Chimpy!"}


def test_retry_after_is_honoured_asynchronously(emulator):
    fault = {"status": 429, "count": 1, "path_prefix": "/ping", "retry_after": 1}
    emulator.admin("POST", "faults", json={"inject": [fault]})

    async def main():
        async with await MailchimpAsyncClient.from_conn_id(retry=FAST) as client:
            return await client.get("/ping")

    started = time.monotonic()
    assert asyncio.run(main())["health_status"]
    assert time.monotonic() - started >= 1.0
    assert emulator.admin("GET", "stats")["requests"] == 2


def test_errors_are_the_same_types_as_the_sync_hook(emulator, monkeypatch):
    async def get(path, **kwargs):
        async with await MailchimpAsyncClient.from_conn_id(retry=FAST) as client:
            return await client.get(path, **kwargs)

    with pytest.raises(MailchimpNotFoundError):
        asyncio.run(get("/lists/0123456789"))

    async def get_batch(batch_id):
        async with await MailchimpAsyncClient.from_conn_id(retry=FAST) as client:
            return await client.get_batch(batch_id)

    with pytest.raises(MailchimpBatchExpiredError, match="What to do"):
        asyncio.run(get_batch("0123456789"))

    emulator.admin("POST", "faults", json={"inject": [{"status": 503, "count": 5, "path_prefix": "/ping"}]})
    with pytest.raises(MailchimpRetriableError) as info:
        asyncio.run(get("/ping"))
    assert info.value.attempts == 3

    url = emulator.base_url
    monkeypatch.setenv(
        "AIRFLOW_CONN_MAILCHIMP_DEFAULT",
        json.dumps({"conn_type": "mailchimp", "password": "1" * 32 + "-us1", "extra": {"base_url": url}}),
    )
    with pytest.raises(MailchimpAuthError):
        asyncio.run(get("/ping"))
    malformed = json.dumps({"conn_type": "mailchimp", "password": "nope"})
    monkeypatch.setenv("AIRFLOW_CONN_MAILCHIMP_DEFAULT", malformed)
    with pytest.raises(MailchimpConfigError, match="malformed"):
        asyncio.run(get("/ping"))


def test_hook_hands_its_credentials_and_policy_to_an_async_client(emulator):
    hook = MailchimpHook(max_in_flight=3, retry=FAST)
    client = hook.async_client()
    assert (client.credentials, client.retry_policy, client.max_in_flight) == (hook.credentials, FAST, 3)

    async def main():
        async with client:
            return await asyncio.gather(*(client.get("/ping") for _ in range(6)))

    emulator.admin("POST", "faults", json={"latency_ms": 100})
    assert len(asyncio.run(main())) == 6
    assert emulator.admin("GET", "stats")["max_in_flight"] <= 3
