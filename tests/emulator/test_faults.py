"""Limits and injected faults: concurrency 429s, latency, one-shot 429/5xx/timeouts (facts §4, §9.3-§9.4)."""

from __future__ import annotations

import threading
import time

import pytest
import requests
from mailchimp_marketing.api_client import ApiClientError


def concurrent_pings(emulator, n: int) -> list[requests.Response]:
    results: list[requests.Response] = []
    barrier = threading.Barrier(n)

    def call() -> None:
        barrier.wait()
        results.append(emulator.api("GET", "/ping"))

    threads = [threading.Thread(target=call) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_more_than_ten_requests_in_flight_get_429(emulator):
    emulator.admin("POST", "faults", json={"latency_ms": 600})
    results = concurrent_pings(emulator, 14)
    statuses = sorted(r.status_code for r in results)
    assert statuses.count(200) <= 10
    assert statuses.count(429) >= 1
    assert set(statuses) == {200, 429}
    refused = next(r for r in results if r.status_code == 429)
    body = refused.json()
    assert refused.headers["content-type"] == "application/problem+json; charset=utf-8"
    assert (body["title"], body["detail"]) == ("Too Many Requests", "You have exceeded the limit of 10 simultaneous connections.")
    stats = emulator.admin("GET", "stats")
    assert stats["throttled"] == statuses.count(429)
    assert stats["max_in_flight"] >= 11


def test_ten_requests_in_flight_are_fine(emulator):
    emulator.admin("POST", "faults", json={"latency_ms": 300})
    assert {r.status_code for r in concurrent_pings(emulator, 10)} == {200}


def test_max_concurrent_is_adjustable(emulator):
    emulator.admin("POST", "faults", json={"latency_ms": 400, "max_concurrent": 2})
    statuses = [r.status_code for r in concurrent_pings(emulator, 4)]
    assert statuses.count(200) == 2 and statuses.count(429) == 2


def test_latency_is_added_to_every_request(emulator):
    emulator.admin("POST", "faults", json={"latency_ms": 250})
    started = time.monotonic()
    assert emulator.api("GET", "/ping").status_code == 200
    assert time.monotonic() - started >= 0.25


def test_injected_429_carries_retry_after_and_is_consumed(emulator, mc):
    emulator.admin("POST", "faults", json={"inject": {"status": 429, "count": 2, "retry_after": 3, "path_prefix": "/ping"}})
    for _ in range(2):
        resp = emulator.api("GET", "/ping")
        assert resp.status_code == 429
        assert resp.headers["Retry-After"] == "3"
        assert resp.json()["title"] == "Too Many Requests"
    assert emulator.api("GET", "/ping").status_code == 200
    assert emulator.admin("GET", "faults")["inject"] == []
    assert emulator.admin("GET", "stats")["injected"] == 2


@pytest.mark.parametrize("status, kind", [(500, "html"), (503, "empty"), (500, "json")])
def test_injected_server_errors_with_and_without_json(emulator, status, kind):
    emulator.admin("POST", "faults", json={"inject": [{"status": status, "body": kind}]})
    resp = emulator.api("GET", "/ping")
    assert resp.status_code == status
    if kind == "json":
        assert resp.json()["status"] == status
    elif kind == "html":
        assert resp.headers["content-type"].startswith("text/html") and resp.text.startswith("<html>")
    else:
        assert resp.content == b""


def test_injected_faults_match_method_and_path_prefix(emulator, list_id):
    emulator.admin("POST", "faults", json={"inject": {"status": 503, "method": "POST", "path_prefix": "/batches"}})
    assert emulator.api("GET", "/batches").status_code == 200
    assert emulator.api("POST", f"/lists/{list_id}/members", json={"email_address": "a@acme-outfitters.com", "status": "subscribed"}).status_code == 200
    assert emulator.api("POST", "/batches", json={"operations": [{"method": "GET", "path": "/ping"}]}).status_code == 503
    assert emulator.api("POST", "/batches", json={"operations": [{"method": "GET", "path": "/ping"}]}).status_code == 200


def test_injected_timeout_holds_the_request_then_answers_504(emulator):
    emulator.admin("POST", "faults", json={"inject": {"timeout_seconds": 0.6}})
    started = time.monotonic()
    resp = emulator.api("GET", "/ping")
    assert resp.status_code == 504
    assert time.monotonic() - started >= 0.6
    emulator.admin("POST", "faults", json={"inject": {"timeout_seconds": 1}})
    with pytest.raises(requests.Timeout):  # a client with a shorter timeout gives up first
        requests.get(f"{emulator.base_url}/ping", auth=("x", emulator.api_key), timeout=0.3)
    deadline = time.monotonic() + 5  # the held request still counts as in flight until answered
    while emulator.admin("GET", "stats")["in_flight"]:
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_sdk_sees_injected_errors_as_api_client_errors(emulator, mc):
    emulator.admin("POST", "faults", json={"inject": {"status": 500}})
    with pytest.raises(ApiClientError) as caught:
        mc.ping.get()
    assert caught.value.status_code == 500
    assert mc.ping.get() == {"health_status": "Everything's Chimpy!"}


def test_mailchimp3_survives_a_non_json_5xx(emulator, mc3):
    from mailchimp3.mailchimpclient import MailChimpError

    emulator.admin("POST", "faults", json={"inject": {"status": 503, "body": "html"}})
    with pytest.raises(MailChimpError):
        mc3.ping.get()
    assert mc3.ping.get()["health_status"] == "Everything's Chimpy!"


def test_fault_settings_are_validated_and_reset(emulator):
    bad = requests.post(f"{emulator.root_url}/_emulator/faults", json={"latency": 5}, timeout=10)
    assert bad.status_code == 400 and "latency" in bad.json()["detail"]
    bad_status = requests.post(f"{emulator.root_url}/_emulator/faults", json={"inject": {"status": 418}}, timeout=10)
    assert bad_status.status_code == 400
    emulator.admin("POST", "faults", json={"latency_ms": 5, "inject": {"status": 500, "count": 3}})
    assert emulator.admin("GET", "faults")["inject"][0]["count"] == 3
    emulator.admin("POST", "faults", json={"clear_inject": True})
    assert emulator.admin("GET", "faults")["inject"] == []
    emulator.admin("POST", "reset")
    assert emulator.admin("GET", "faults")["latency_ms"] == 0
