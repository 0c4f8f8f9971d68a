"""Fixtures for the emulator specs: the official SDK and mailchimp3 pointed at the live emulator,
a fresh audience, and a helper that returns the problem document of a failed SDK call."""

from __future__ import annotations

import json
from typing import Any, Callable

import mailchimp_marketing as MailchimpMarketing
import pytest
from mailchimp_marketing.api_client import ApiClientError

from fixtures.emulator import AUDIENCE_BODY

LIST_BODY: dict[str, Any] = AUDIENCE_BODY


@pytest.fixture
def mc(emulator: Any) -> MailchimpMarketing.Client:
    """The official ``mailchimp_marketing`` client, talking to the emulator."""
    client = MailchimpMarketing.Client()
    client.set_config({"api_key": emulator.api_key, "server": "us1"})
    client.api_client.host = emulator.base_url
    return client


@pytest.fixture
def mc3(emulator: Any) -> Any:
    """The ``mailchimp3`` client, talking to the emulator."""
    from mailchimp3 import MailChimp

    client = MailChimp(mc_api=emulator.api_key, mc_user="x")
    client.base_url = emulator.base_url + "/"  # mailchimp3 urljoins relative paths onto it
    return client


@pytest.fixture
def list_id(mc: MailchimpMarketing.Client) -> str:
    """A fresh audience with the default merge fields."""
    return mc.lists.create_list(LIST_BODY)["id"]


def problem(call: Callable[[], Any]) -> dict[str, Any]:
    """Run an SDK call that must fail; return its problem document plus ``status_code``.

    The SDK raises ``ApiClientError`` whose ``.text`` is the raw problem JSON (facts §9.12).
    """
    with pytest.raises(ApiClientError) as caught:
        call()
    body = json.loads(caught.value.text)
    assert body["status"] == caught.value.status_code
    return body


@pytest.fixture
def expect_problem() -> Callable[[Callable[[], Any]], dict[str, Any]]:
    """:func:`problem` as a fixture (test modules here do not import each other)."""
    return problem


@pytest.fixture
def list_body() -> dict[str, Any]:
    """A valid ``POST /lists`` body (a fresh copy per test)."""
    return json.loads(json.dumps(LIST_BODY))
