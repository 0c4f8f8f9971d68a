"""Credentials and host rules: what a connection may contain, decided before any request is made."""

from __future__ import annotations

import base64
import json

import pytest
from airflow.sdk import Connection

from mailchimp_provider.errors import MailchimpConfigError
from mailchimp_provider.hooks.credentials import credentials_from_connection

KEY = "0123456789abcdef0123456789abcdef-us6"
TOKEN = "5f0c9e0b8a6d4e2f9a7b3c1d0e8f6a4b"


def conn(
    password: str | None = KEY,
    host: str | None = None,
    port: int | None = None,
    schema: str | None = None,
    **extra,
) -> Connection:
    return Connection(
        conn_id="mc_test",
        conn_type="mailchimp",
        password=password,
        host=host,
        port=port,
        schema=schema,
        extra=json.dumps(extra) if extra else None,
    )


def test_api_key_gives_its_data_center_and_basic_auth():
    creds = credentials_from_connection(conn())
    assert creds.dc == "us6"
    assert creds.base_url == "https://us6.api.mailchimp.com/3.0"
    assert creds.auth_kind == "api_key"
    user, _, key = base64.b64decode(creds.authorization.removeprefix("Basic ")).decode().partition(":")
    assert key == KEY and user


def test_repr_of_credentials_shows_neither_key_nor_header():
    creds = credentials_from_connection(conn())
    assert KEY not in repr(creds)
    assert creds.authorization.split()[1] not in repr(creds)


def test_surrounding_whitespace_of_a_pasted_key_is_ignored():
    assert credentials_from_connection(conn(password=f"  {KEY}\n")).dc == "us6"


def test_oauth_token_with_server_prefix_uses_bearer_auth():
    creds = credentials_from_connection(conn(password=None, oauth_token=TOKEN, server_prefix="us19"))
    assert creds.authorization == f"Bearer {TOKEN}"
    assert creds.base_url == "https://us19.api.mailchimp.com/3.0"
    assert creds.auth_kind == "oauth"


def test_oauth_token_without_server_prefix_is_rejected():
    with pytest.raises(MailchimpConfigError, match="server_prefix"):
        credentials_from_connection(conn(password=None, oauth_token=TOKEN))


def test_both_api_key_and_token_is_ambiguous():
    with pytest.raises(MailchimpConfigError, match="keep one"):
        credentials_from_connection(conn(oauth_token=TOKEN, server_prefix="us6"))


def test_no_credentials_at_all_says_where_to_put_them():
    with pytest.raises(MailchimpConfigError, match="password field"):
        credentials_from_connection(conn(password=None))


def test_server_prefix_contradicting_the_key_is_rejected():
    with pytest.raises(MailchimpConfigError, match="contradicts"):
        credentials_from_connection(conn(server_prefix="us7"))


@pytest.mark.parametrize(
    "bad_key, shape",
    [
        ("0123456789abcdef0123456789abcdef", "no '-<dc>' data-center suffix"),
        ("0123456789abcdef0123456789abcde-us6", "31 characters, expected 32 hex digits"),
        ("0123456789ABCDEF0123456789ABCDEF-us6", "expected 32 hex digits"),
        ("0123456789abcdef0123456789abcdef-6us", "data-center suffix is not like 'us6'"),
    ],
)
def test_malformed_key_is_described_by_shape_never_by_value(bad_key, shape):
    with pytest.raises(MailchimpConfigError) as info:
        credentials_from_connection(conn(password=bad_key))
    message = str(info.value)
    assert shape in message
    assert "mc_test" in message
    assert bad_key not in message
    assert bad_key[:8] not in message and bad_key.split("-")[0][-8:] not in message


# -- base URL: loopback emulator only, otherwise exactly https://<dc>.api.mailchimp.com/3.0 ------------

@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({"host": "127.0.0.1", "port": 8765}, "http://127.0.0.1:8765/3.0"),
        ({"host": "127.0.0.1", "port": 8765, "schema": "3.0"}, "http://127.0.0.1:8765/3.0"),
        ({"host": "localhost", "port": 9000}, "http://localhost:9000/3.0"),
        ({"host": "http://127.0.0.1:8765/3.0"}, "http://127.0.0.1:8765/3.0"),
        ({"host": "http://127.0.0.1/3.0", "port": 8765}, "http://127.0.0.1:8765/3.0"),
        ({"host": "::1", "port": 8765}, "http://[::1]:8765/3.0"),
        ({"host": "127.10.0.3", "port": 80}, "http://127.10.0.3:80/3.0"),
        ({"base_url": "http://127.0.0.1:8765/3.0/"}, "http://127.0.0.1:8765/3.0"),
        (
            {"host": "127.0.0.1", "port": 8765, "base_url": "http://127.0.0.1:8765/3.0"},
            "http://127.0.0.1:8765/3.0",
        ),
        ({"host": "us6.api.mailchimp.com"}, "https://us6.api.mailchimp.com/3.0"),
        ({"base_url": "https://us6.api.mailchimp.com/3.0"}, "https://us6.api.mailchimp.com/3.0"),
    ],
)
def test_allowed_base_urls(kwargs, expected):
    extra = {"base_url": kwargs.pop("base_url")} if "base_url" in kwargs else {}
    assert credentials_from_connection(conn(**kwargs, **extra)).base_url == expected


def test_the_emulator_fixture_uri_form_parses_with_host_and_extra_agreeing():
    uri = "mailchimp://:" + KEY + "@127.0.0.1:8765/?base_url=http%3A%2F%2F127.0.0.1%3A8765%2F3.0"
    creds = credentials_from_connection(Connection.from_uri(uri, conn_id="mc_uri"))
    assert creds.base_url == "http://127.0.0.1:8765/3.0"
    assert creds.is_emulator


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"host": "http://mailchimp-proxy.internal/3.0"}, "Refusing to send Mailchimp credentials"),
        ({"base_url": "http://10.0.0.5:8765/3.0"}, "Refusing to send Mailchimp credentials"),
        ({"host": "https://us7.api.mailchimp.com/3.0"}, "https://us6.api.mailchimp.com/3.0"),
        ({"host": "https://us6.api.mailchimp.com.evil.io/3.0"}, "Refusing"),
        ({"host": "https://us6.api.mailchimp.com/2.0"}, "Refusing"),
        ({"host": "https://127.0.0.1:8765/3.0"}, "over http"),
        ({"base_url": "http://user:pw@127.0.0.1:8765/3.0"}, "must not carry credentials"),
        ({"host": "127.0.0.1", "port": 1, "base_url": "http://127.0.0.1:2/3.0"}, "two different base URLs"),
    ],
)
def test_rejected_base_urls(kwargs, fragment):
    extra = {"base_url": kwargs.pop("base_url")} if "base_url" in kwargs else {}
    with pytest.raises(MailchimpConfigError) as info:
        credentials_from_connection(conn(**kwargs, **extra))
    assert fragment in str(info.value)
    assert KEY not in str(info.value)


def test_oauth_token_may_target_the_emulator_without_a_server_prefix():
    emulator_conn = conn(password=None, oauth_token=TOKEN, base_url="http://127.0.0.1:1/3.0")
    creds = credentials_from_connection(emulator_conn)
    assert creds.base_url == "http://127.0.0.1:1/3.0" and creds.dc is None
