"""Secrets read from the connection are masked at once: logs, exceptions and reprs never show them."""

from __future__ import annotations

import base64
import io
import json
import logging

import pytest
from airflow.sdk import Connection
from airflow.sdk._shared.secrets_masker import _secrets_masker
from airflow.sdk.log import redact

from mailchimp_provider.errors import MailchimpAuthError, MailchimpConfigError
from mailchimp_provider.hooks.credentials import credentials_from_connection
from mailchimp_provider.hooks.mailchimp import MailchimpHook

# Keys unique to this module, so that masking seen here was done by this code.
KEY = "9f8e7d6c5b4a39281706f5e4d3c2b1a0-us3"
TOKEN = "oauth-9d1c7e5a3b2f4d6e8a0c1b3d5f7e9a2c"


@pytest.fixture
def masked_logger():
    """A stdlib logger whose handler applies Airflow's secrets masker, as task log handlers do."""
    masker = _secrets_masker()
    was_enabled = masker.is_log_masking_enabled()
    masker.enable_log_masking()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(masker)
    logger = logging.getLogger("test.mailchimp.masking")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield logger, stream
    logger.removeHandler(handler)
    if not was_enabled:
        masker.disable_log_masking()


def test_api_key_and_its_basic_auth_form_are_masked_as_soon_as_read(masked_logger):
    credentials_from_connection(Connection(conn_id="mask1", conn_type="mailchimp", password=KEY))
    basic = base64.b64encode(f"anystring:{KEY}".encode()).decode()
    logger, stream = masked_logger
    logger.info("calling with key %s and header Basic %s", KEY, basic)
    logged = stream.getvalue()
    assert KEY not in logged and basic not in logged
    assert "***" in logged
    assert KEY not in redact(f"error: {KEY}")


def test_oauth_token_is_masked(masked_logger):
    credentials_from_connection(
        Connection(
            conn_id="mask2",
            conn_type="mailchimp",
            extra=json.dumps({"oauth_token": TOKEN, "server_prefix": "us3"}),
        )
    )
    logger, stream = masked_logger
    logger.warning("token=%s", TOKEN)
    assert TOKEN not in stream.getvalue()


def test_malformed_key_is_masked_even_though_validation_fails(masked_logger):
    bad = "9f8e7d6c5b4a39281706f5e4d3c2b1a0x-us3"
    with pytest.raises(MailchimpConfigError) as info:
        credentials_from_connection(Connection(conn_id="mask3", conn_type="mailchimp", password=bad))
    assert bad not in str(info.value)
    logger, stream = masked_logger
    logger.info("oops %s", bad)
    assert bad not in stream.getvalue()


def test_hook_repr_and_attributes_never_hold_the_key_in_clear(emulator, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_MAILCHIMP_DEFAULT", emulator.conn_uri())
    hook = MailchimpHook()
    hook.get("/ping")
    basic = base64.b64encode(f"anystring:{emulator.api_key}".encode()).decode()
    for text in (repr(hook), str(hook), repr(hook.credentials), repr(vars(hook))):
        assert emulator.api_key not in text
        assert basic not in text


def test_errors_from_rejected_requests_do_not_contain_the_key(emulator, monkeypatch):
    wrong = "00000000000000000000000000000000-us1"
    monkeypatch.setenv(
        "AIRFLOW_CONN_MAILCHIMP_DEFAULT",
        json.dumps({"conn_type": "mailchimp", "password": wrong, "extra": {"base_url": emulator.base_url}}),
    )
    with pytest.raises(MailchimpAuthError) as info:
        MailchimpHook().get("/lists")
    err = info.value
    assert (err.status, err.title, err.method, err.path) == (401, "API Key Invalid", "GET", "/lists")
    for text in (str(err), repr(err), repr(err.__dict__)):
        assert wrong not in text
