"""Authentication like Mailchimp (facts §1, §3): Basic with any username, Bearer/OAuth tokens, 401s."""

from __future__ import annotations

import pytest
import requests
from fixtures.emulator import start_emulator

TOKEN = "f0e1d2c3b4a5968778695a4b3c2d1e0f"


@pytest.fixture(scope="module")
def two_credentials():
    """An emulator accepting an API key and an OAuth token."""
    key = "abcdefabcdefabcdefabcdefabcdef12-us6"
    running, server, thread = start_emulator(api_keys=[key, TOKEN])
    running.api_key = key
    yield running
    server.should_exit = True
    thread.join(timeout=10)


@pytest.mark.parametrize("username", ["anystring", "", "python-mailchimp", "user"])
def test_basic_auth_accepts_any_username(emulator, username):
    resp = requests.get(f"{emulator.base_url}/ping", auth=(username, emulator.api_key), timeout=10)
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/json; charset=utf-8"
    assert resp.json() == {"health_status": "Everything's Chimpy!"}


def test_wrong_key_is_api_key_invalid(emulator):
    resp = requests.get(f"{emulator.base_url}/ping", auth=("x", "ffffffffffffffffffffffffffffffff-us1"), timeout=10)
    assert resp.status_code == 401
    assert resp.headers["content-type"] == "application/problem+json; charset=utf-8"
    body = resp.json()
    assert body["title"] == "API Key Invalid"
    assert body["detail"] == "Your API key may be invalid, or you've attempted to access the wrong datacenter."
    assert body["type"] == "https://mailchimp.com/developer/marketing/docs/errors/"
    assert body["instance"] == resp.headers["X-Request-Id"]


def test_missing_credentials_is_api_key_missing(emulator):
    resp = requests.get(f"{emulator.base_url}/ping", timeout=10)
    assert resp.status_code == 401
    assert resp.json()["title"] == "API Key Missing"


@pytest.mark.parametrize("scheme", ["Bearer", "OAuth"])
def test_oauth_tokens_are_accepted(two_credentials, scheme):
    ok = requests.get(f"{two_credentials.base_url}/", headers={"Authorization": f"{scheme} {TOKEN}"}, timeout=10)
    assert ok.status_code == 200 and ok.json()["role"] == "owner"
    bad = requests.get(f"{two_credentials.base_url}/ping", headers={"Authorization": f"{scheme} nope"}, timeout=10)
    assert bad.status_code == 401 and bad.json()["title"] == "API Key Invalid"


def test_every_configured_key_works_and_others_do_not(two_credentials, emulator):
    assert requests.get(f"{two_credentials.base_url}/ping", auth=("x", two_credentials.api_key), timeout=10).status_code == 200
    # the demo key is not one of this emulator's keys
    assert requests.get(f"{two_credentials.base_url}/ping", auth=("x", emulator.api_key), timeout=10).status_code == 401


def test_official_sdk_with_a_bad_key_gets_401(emulator, expect_problem):
    import mailchimp_marketing as MailchimpMarketing

    client = MailchimpMarketing.Client()
    client.set_config({"api_key": "ffffffffffffffffffffffffffffffff-us1", "server": "us1"})
    client.api_client.host = emulator.base_url
    assert expect_problem(lambda: client.lists.get_all_lists())["status"] == 401


def test_official_sdk_with_an_oauth_token(two_credentials):
    import mailchimp_marketing as MailchimpMarketing

    client = MailchimpMarketing.Client()
    client.set_config({"access_token": TOKEN, "server": "us6"})
    client.api_client.host = two_credentials.base_url
    assert client.ping.get() == {"health_status": "Everything's Chimpy!"}


def test_admin_api_needs_no_auth_and_unknown_routes_are_404(emulator):
    assert requests.get(f"{emulator.root_url}/_emulator/stats", timeout=10).status_code == 200
    resp = emulator.api("GET", "/no/such/thing")
    assert resp.status_code == 404 and resp.json()["title"] == "Resource Not Found"
    wrong_method = emulator.api("PUT", "/lists")
    assert wrong_method.status_code == 405 and set(wrong_method.headers["Allow"].split(", ")) == {"GET", "POST"}
