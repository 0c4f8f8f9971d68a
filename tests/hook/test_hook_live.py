"""MailchimpHook against the live emulator: auth variants, retries, typed errors, the in-flight cap."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import pytest

from mailchimp_provider.errors import (
    MailchimpApiError,
    MailchimpAuthError,
    MailchimpConfigError,
    MailchimpNotFoundError,
    MailchimpRetriableError,
)
from mailchimp_provider.hooks.mailchimp import MailchimpHook
from mailchimp_provider.hooks.retry import RetryPolicy

FAST = RetryPolicy(max_attempts=4, base_delay=0.05, max_delay=0.2, max_elapsed=30)


def stats(emulator) -> dict:
    return emulator.admin("GET", "stats")


def faults(emulator, **settings) -> None:
    emulator.admin("POST", "faults", json=settings)


def wait_until_idle(emulator, limit: float = 10.0) -> None:
    deadline = time.monotonic() + limit
    while stats(emulator)["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert stats(emulator)["in_flight"] == 0


def use_connection(monkeypatch, **conn) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_MAILCHIMP_DEFAULT", json.dumps({"conn_type": "mailchimp", **conn}))


# -- auth variants ------------------------------------------------------------------------------------

def test_api_key_with_base_url_in_the_fixture_uri(emulator):
    hook = MailchimpHook()
    assert hook.get("/ping") == {"health_status": "Everything's Chimpy!"}
    assert hook.base_url == emulator.base_url


def test_base_url_given_as_host_and_port_only(emulator, monkeypatch):
    uri = f"mailchimp://:{quote(emulator.api_key, safe='')}@{emulator.host}:{emulator.port}/3.0"
    monkeypatch.setenv("AIRFLOW_CONN_MAILCHIMP_DEFAULT", uri)
    hook = MailchimpHook()
    assert hook.base_url == emulator.base_url
    assert hook.get("/ping")["health_status"]


def test_base_url_given_in_extra_only(emulator, monkeypatch):
    use_connection(monkeypatch, password=emulator.api_key, extra={"base_url": emulator.base_url})
    assert MailchimpHook().get("/ping")["health_status"]


def test_oauth_token_is_sent_as_bearer(emulator, monkeypatch):
    # The emulator accepts its API key as a bearer token too.
    use_connection(monkeypatch, extra={"oauth_token": emulator.api_key, "base_url": emulator.base_url})
    hook = MailchimpHook()
    assert hook.credentials.authorization.startswith("Bearer ")
    assert hook.get("/ping")["health_status"]


@pytest.mark.parametrize(
    "password",
    ["0123456789abcdef0123456789abcdef", "0123456789abcdef0123456789abcde-us1", "not-a-key"],
)
def test_malformed_key_fails_before_any_request(emulator, monkeypatch, password):
    use_connection(monkeypatch, password=password, extra={"base_url": emulator.base_url})
    hook = MailchimpHook()
    with pytest.raises(MailchimpConfigError) as info:
        hook.get("/ping")
    assert password not in str(info.value)
    assert stats(emulator)["requests"] == 0
    ok, message = hook.test_connection()
    assert not ok and "malformed" in message and password not in message


def test_non_loopback_http_host_fails_before_any_request(emulator, monkeypatch):
    use_connection(monkeypatch, password=emulator.api_key, host="http://mailchimp.internal.example.org/3.0")
    with pytest.raises(MailchimpConfigError, match="Refusing"):
        MailchimpHook().get("/ping")
    assert stats(emulator)["requests"] == 0


def test_test_connection_succeeds(emulator):
    ok, message = MailchimpHook().test_connection()
    assert ok
    assert "Everything's Chimpy!" in message


def test_test_connection_reports_a_rejected_key_without_raising(emulator, monkeypatch):
    wrong_key = "ffffffffffffffffffffffffffffffff-us1"
    use_connection(monkeypatch, password=wrong_key, extra={"base_url": emulator.base_url})
    ok, message = MailchimpHook().test_connection()
    assert not ok
    assert message.startswith("401 API Key Invalid: ")


def test_test_connection_reports_an_unreachable_emulator(emulator, monkeypatch):
    use_connection(monkeypatch, password=emulator.api_key, extra={"base_url": "http://127.0.0.1:9/3.0"})
    ok, message = MailchimpHook(retry=FAST).test_connection()
    assert not ok and "ConnectionError" in message


# -- retries ---------------------------------------------------------------------------------------

def test_429_with_retry_after_is_waited_for_then_succeeds(emulator):
    faults(emulator, inject=[{"status": 429, "count": 2, "path_prefix": "/ping", "retry_after": 1}])
    started = time.monotonic()
    assert MailchimpHook(retry=FAST).get("/ping")["health_status"]
    elapsed = time.monotonic() - started
    assert elapsed >= 2.0  # two Retry-After: 1, not FAST's 0.05 s backoff
    assert elapsed < 6.0
    s = stats(emulator)
    assert s["requests"] == 3 and s["injected"] == 2
    assert s["routes"]["GET /ping"]["total"] == 1


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 500, "body": "html"},
        {"status": 502, "body": "empty"},
        {"status": 503, "body": "json"},
        {"status": 504, "body": "html"},
        {"status": 429, "body": "empty"},
        {"status": 403, "body": "empty"},
    ],
)
def test_transient_answers_are_retried(emulator, fault):
    faults(emulator, inject=[{**fault, "count": 2, "path_prefix": "/ping"}])
    assert MailchimpHook(retry=FAST).get("/ping")["health_status"]
    assert stats(emulator)["requests"] == 3


def test_timeouts_are_retried(emulator):
    faults(emulator, inject=[{"timeout_seconds": 3, "count": 1, "path_prefix": "/ping"}])
    started = time.monotonic()
    assert MailchimpHook(retry=FAST, timeout=1.0).get("/ping")["health_status"]
    assert time.monotonic() - started < 3.0  # did not wait for the slow answer
    assert stats(emulator)["requests"] == 2
    wait_until_idle(emulator)  # the abandoned request is still held server-side


def test_gives_up_after_the_attempt_budget_with_the_count(emulator):
    faults(emulator, inject=[{"status": 503, "count": 10, "path_prefix": "/ping"}])
    policy = RetryPolicy(max_attempts=3, base_delay=0.05, max_delay=0.1)
    with pytest.raises(MailchimpRetriableError) as info:
        MailchimpHook(retry=policy).get("/ping")
    assert info.value.attempts == 3 and info.value.status == 503
    assert "gave up after 3 attempt(s)" in str(info.value)
    assert stats(emulator)["requests"] == 3


def test_gives_up_when_the_time_budget_is_spent(emulator):
    faults(emulator, inject=[{"status": 429, "count": 10, "path_prefix": "/ping", "retry_after": 1}])
    policy = RetryPolicy(max_attempts=50, max_elapsed=1.5)
    started = time.monotonic()
    with pytest.raises(MailchimpRetriableError) as info:
        MailchimpHook(retry=policy).get("/ping")
    assert time.monotonic() - started < 3.0
    assert info.value.attempts == 2


def test_403_with_a_problem_document_is_a_permission_error_not_retried(emulator):
    faults(emulator, inject=[{"status": 403, "body": "json", "count": 1, "path_prefix": "/ping"}])
    with pytest.raises(MailchimpAuthError) as info:
        MailchimpHook(retry=FAST).get("/ping")
    assert info.value.status == 403 and info.value.title == "Forbidden"
    assert stats(emulator)["requests"] == 1


def test_each_retry_is_logged_with_reason_and_delay(emulator, capsys):
    faults(emulator, inject=[{"status": 500, "count": 1, "path_prefix": "/ping"}])
    MailchimpHook(retry=FAST).get("/ping")
    logged = capsys.readouterr()
    lines = [line for line in (logged.out + logged.err).splitlines() if "retry" in line]
    assert len(lines) == 1
    assert "GET /ping failed (500 Internal Server Error); retry 1/3 in" in lines[0]
    assert emulator.api_key not in lines[0]


# -- typed errors -----------------------------------------------------------------------------------

def test_400_is_not_retried_and_carries_the_problem_fields(emulator):
    with pytest.raises(MailchimpApiError) as info:
        MailchimpHook(retry=FAST).post("/lists", json={"name": "Incomplete"})
    err = info.value
    assert type(err) is MailchimpApiError
    assert (err.status, err.title, err.method, err.path) == (400, "Invalid Resource", "POST", "/lists")
    assert err.detail and err.instance
    assert err.errors and "Required fields were not provided" in err.errors[0]["message"]
    assert stats(emulator)["requests"] == 1


def test_404_is_a_not_found_error(emulator):
    with pytest.raises(MailchimpNotFoundError) as info:
        MailchimpHook().get("/lists/0000000000")
    assert info.value.status == 404 and info.value.path == "/lists/0000000000"


def test_paths_must_be_relative_so_credentials_stay_on_the_checked_host(emulator):
    with pytest.raises(ValueError, match="relative"):
        MailchimpHook().get("http://127.0.0.1:9/3.0/ping")


# -- concurrency -----------------------------------------------------------------------------------

def test_threads_and_hook_instances_share_one_in_flight_cap(emulator):
    wait_until_idle(emulator)
    faults(emulator, latency_ms=200, max_concurrent=10)
    shared = MailchimpHook(max_in_flight=5)
    barrier = threading.Barrier(20)

    def worker(n: int) -> None:
        hook = shared if n % 2 else MailchimpHook(max_in_flight=5)
        barrier.wait()
        for _ in range(2):
            hook.get("/ping")

    with ThreadPoolExecutor(max_workers=20) as pool:
        list(pool.map(worker, range(20)))
    s = stats(emulator)
    assert s["requests"] == 40
    assert s["throttled"] == 0
    assert 2 <= s["max_in_flight"] <= 5


def test_httphook_run_goes_through_the_same_pipeline(emulator):
    faults(emulator, inject=[{"status": 503, "count": 1, "path_prefix": "/ping"}])
    response = MailchimpHook(retry=FAST).run("/ping")
    assert response.status_code == 200 and response.json()["health_status"]
    assert stats(emulator)["requests"] == 2
