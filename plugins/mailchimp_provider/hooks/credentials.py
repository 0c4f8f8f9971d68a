"""Turn an Airflow connection into Mailchimp credentials, enforcing the host rules.

Mailchimp has exactly one legitimate base URL per account, ``https://<dc>.api.mailchimp.com/3.0``,
where ``<dc>`` is the API key's ``-usN`` suffix (or the OAuth server prefix). A connection that
points anywhere else would ship the API key to that host, so the only exception allowed is a
loopback address over plain http: the local emulator. Everything is checked here, before the first
request, and every error message describes the *shape* of a bad key, never the key itself.

Secrets are registered with Airflow's secret masker the moment they are read, so they are redacted
from task logs, exception text, XComs and rendered templates even if some code path leaks them.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from mailchimp_provider.errors import MailchimpConfigError

API_KEY_PATTERN = re.compile(r"^[0-9a-f]{32}-([a-z]+[0-9]+)$")
DC_PATTERN = re.compile(r"^[a-z]+[0-9]+$")
API_VERSION_PATH = "/3.0"

# Connection extra fields (the form below writes them; JSON extras may use them directly).
EXTRA_OAUTH_TOKEN = "oauth_token"
EXTRA_SERVER_PREFIX = "server_prefix"
EXTRA_BASE_URL = "base_url"
EXTRA_MAX_IN_FLIGHT = "max_in_flight"

# Declarative connection form, in the ``conn-fields`` / ``ui-field-behaviour`` format Airflow 3.2+
# reads from provider info (get_provider_info.py uses these). Kept here, away from the hook module,
# so provider discovery can import it without importing requests/aiohttp/HttpHook.
CONN_FIELDS: dict[str, dict[str, Any]] = {
    EXTRA_OAUTH_TOKEN: {
        "label": "OAuth access token (instead of an API key)",
        "schema": {"type": ["string", "null"], "format": "password"},
        "description": "Token from Mailchimp's OAuth 2 flow; sent as 'Authorization: Bearer'. "
        "Needs the server prefix.",
    },
    EXTRA_SERVER_PREFIX: {
        "label": "Server prefix (data center, e.g. us6)",
        "schema": {"type": ["string", "null"]},
        "description": "Required with an OAuth token: the 'dc' from "
        "https://login.mailchimp.com/oauth2/metadata.",
    },
    EXTRA_MAX_IN_FLIGHT: {
        "label": "Max requests in flight per worker process",
        "schema": {"type": ["integer", "null"], "default": 8, "minimum": 1, "maximum": 10},
        "description": "Mailchimp allows 10 simultaneous connections per API key; keep headroom.",
    },
}

# Host, port and schema stay visible: together they are the emulator's base URL
# (``http://<host>:<port>/<schema>``), so a URI such as
# ``mailchimp://:<key>@127.0.0.1:8765/3.0`` shows in the form exactly as it was written, and
# saving the form writes the same URI back. Empty host = Mailchimp itself.
UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["login"],
    "relabeling": {
        "password": "API key",
        "host": "Emulator host (leave empty for Mailchimp)",
        "port": "Emulator port",
        "schema": "Emulator API path",
    },
    "placeholders": {
        "password": "<32 hex characters>-<dc>, e.g. …-us6",
        "host": "empty for Mailchimp; 127.0.0.1 for the local emulator",
        "port": "8765",
        "schema": "3.0",
        "extra": '{"oauth_token": "…", "server_prefix": "us6", "max_in_flight": 8}',
    },
}


class ConnectionLike(Protocol):
    """The attributes of an Airflow ``Connection`` this module reads (sync and async APIs alike)."""

    conn_id: str | None
    host: str | None
    port: int | None
    schema: str | None
    password: str | None

    @property
    def extra_dejson(self) -> dict: ...


@dataclass(frozen=True)
class MailchimpCredentials:
    """Where to send requests and the ``Authorization`` header value to send with them.

    ``authorization`` is excluded from ``repr`` and registered with the secret masker; use
    ``fingerprint`` (a hash) wherever a stable per-account identity is needed.
    """

    base_url: str
    authorization: str = field(repr=False)
    dc: str | None
    auth_kind: str = "api_key"

    @property
    def fingerprint(self) -> str:
        """A non-reversible identity of the credential, e.g. to key per-account limits."""
        return hashlib.sha256(self.authorization.encode()).hexdigest()[:16]

    @property
    def is_emulator(self) -> bool:
        return is_loopback_host(urlsplit(self.base_url).hostname or "")


def mailchimp_base_url(dc: str) -> str:
    return f"https://{dc}.api.mailchimp.com{API_VERSION_PATH}"


def describe_key_shape(key: str) -> str:
    """A description of a malformed key that reveals nothing usable: length and which parts are off."""
    prefix, dash, suffix = key.rpartition("-")
    if not dash:
        return f"{len(key)} characters with no '-<dc>' data-center suffix"
    problems = []
    if not re.fullmatch(r"[0-9a-f]{32}", prefix):
        problems.append(f"the part before the last dash has {len(prefix)} characters, expected 32 hex digits")
    if not DC_PATTERN.fullmatch(suffix):
        problems.append(f"the {len(suffix)}-character data-center suffix is not like 'us6'")
    return f"{len(key)} characters; " + "; ".join(problems or ["unexpected layout"])


def parse_api_key(key: str, conn_id: str | None = None) -> str:
    """Validate an API key's shape and return its data center (``us6``)."""
    where = f" in connection '{conn_id}'" if conn_id else ""
    match = API_KEY_PATTERN.fullmatch(key)
    if not match:
        raise MailchimpConfigError(
            f"The Mailchimp API key{where} is malformed ({describe_key_shape(key)}). "
            "Expected 32 lowercase hex characters, a dash and the data center, like '<32 hex>-us6'; "
            "copy it again from Account > Extras > API keys."
        )
    return match.group(1)


def is_loopback_host(hostname: str) -> bool:
    if hostname.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def check_base_url(url: str, dc: str | None, conn_id: str | None = None) -> str:
    """Return ``url`` normalised (no trailing slash) if it is allowed for this data center.

    Allowed: ``http://<loopback>[:port][/path]`` (the emulator), or exactly
    ``https://<dc>.api.mailchimp.com/3.0`` for the credential's data center.
    """
    where = f" of connection '{conn_id}'" if conn_id else ""
    normalised = url.strip().rstrip("/")
    parts = urlsplit(normalised)
    host = parts.hostname or ""
    if parts.username or parts.password or parts.query or parts.fragment:
        raise MailchimpConfigError(
            f"The Mailchimp base URL{where} must not carry credentials, a query or a fragment: "
            f"{parts.scheme}://{host}{parts.path}"
        )
    if is_loopback_host(host):
        if parts.scheme != "http":
            raise MailchimpConfigError(
                f"The Mailchimp base URL{where} points at a loopback host ({host}); only the local "
                f"emulator lives there, over http. Got scheme '{parts.scheme}'."
            )
        return normalised
    if dc is None:
        raise MailchimpConfigError(
            f"The Mailchimp base URL{where} ({normalised}) needs a data center: set the server prefix."
        )
    expected = mailchimp_base_url(dc)
    if normalised != expected:
        raise MailchimpConfigError(
            f"Refusing to send Mailchimp credentials to {normalised}{where}: the only allowed URL for "
            f"data center '{dc}' is {expected} (or an http://127.0.0.1 emulator). Clear the host / "
            "base_url field to use the default."
        )
    return normalised


def _explicit_base_url(conn: ConnectionLike) -> str | None:
    """The base URL the connection spells out, from ``host`` (+port, schema as path) or extra."""
    from_extra = (conn.extra_dejson.get(EXTRA_BASE_URL) or "").strip() or None
    from_host = None
    host = (conn.host or "").strip()
    if host:
        if "://" in host:
            from_host = host
        else:
            scheme = "http" if is_loopback_host(host.strip("[]")) else "https"
            netloc = f"[{host}]" if ":" in host and not host.startswith("[") else host
            from_host = f"{scheme}://{netloc}"
        if conn.port and urlsplit(from_host).port is None:
            parts = urlsplit(from_host)
            from_host = f"{parts.scheme}://{parts.netloc}:{conn.port}{parts.path}"
        if not urlsplit(from_host).path.strip("/"):
            path = (conn.schema or "").strip("/")
            from_host = from_host.rstrip("/") + (f"/{path}" if path else API_VERSION_PATH)
    if from_extra and from_host and from_extra.rstrip("/") != from_host.rstrip("/"):
        raise MailchimpConfigError(
            f"Connection '{conn.conn_id}' names two different base URLs: host gives {from_host} and "
            f"extra base_url gives {from_extra}. Keep one of them."
        )
    return from_extra or from_host


def max_in_flight_from_connection(conn: ConnectionLike) -> int | None:
    """The connection's ``max_in_flight`` extra, if set (validated as an integer)."""
    raw = conn.extra_dejson.get(EXTRA_MAX_IN_FLIGHT)
    if raw in (None, ""):
        return None
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise MailchimpConfigError(
            f"Connection '{conn.conn_id}': extra max_in_flight must be an integer, got {raw!r}"
        ) from None


def _mask(*secrets: str) -> None:
    from airflow.sdk.log import mask_secret

    for secret in secrets:
        mask_secret(secret)


def credentials_from_connection(conn: ConnectionLike, *, mask: bool = True) -> MailchimpCredentials:
    """Build credentials from an Airflow connection; raise ``MailchimpConfigError`` if unusable.

    The API key is the connection password; an OAuth token (extra ``oauth_token``) with a server
    prefix (extra ``server_prefix``) is the alternative. Secrets are masked before validation so
    that not even a traceback of a failed validation can show them. ``mask=False`` is for async
    callers, which mask with ``amask_secret`` themselves.
    """
    extra = conn.extra_dejson
    api_key = (conn.password or "").strip()
    token = str(extra.get(EXTRA_OAUTH_TOKEN) or "").strip()
    prefix = str(extra.get(EXTRA_SERVER_PREFIX) or extra.get("dc") or "").strip().lower() or None

    if api_key and token:
        raise MailchimpConfigError(
            f"Connection '{conn.conn_id}' has both an API key (password) and an OAuth token "
            "(extra oauth_token); keep one of them."
        )
    if not api_key and not token:
        raise MailchimpConfigError(
            f"Connection '{conn.conn_id}' has no Mailchimp credentials: put the API key in the "
            "password field, or an OAuth token in extra oauth_token with extra server_prefix."
        )

    if api_key:
        authorization = "Basic " + base64.b64encode(f"anystring:{api_key}".encode()).decode()
        if mask:
            _mask(api_key, authorization.split(" ", 1)[1])
        dc: str | None = parse_api_key(api_key, conn.conn_id)
        if prefix and prefix != dc:
            raise MailchimpConfigError(
                f"Connection '{conn.conn_id}': server_prefix '{prefix}' contradicts the API key's "
                f"data center '{dc}'. Remove server_prefix; the key decides."
            )
        kind = "api_key"
    else:
        authorization = f"Bearer {token}"
        if mask:
            _mask(token)
        if prefix is not None and not DC_PATTERN.fullmatch(prefix):
            raise MailchimpConfigError(
                f"Connection '{conn.conn_id}': server_prefix {prefix!r} is not a data center like 'us6'."
            )
        dc = prefix
        kind = "oauth"

    explicit = _explicit_base_url(conn)
    if explicit is not None:
        base_url = check_base_url(explicit, dc, conn.conn_id)
    elif dc is None:
        raise MailchimpConfigError(
            f"Connection '{conn.conn_id}' uses an OAuth token but no server_prefix: set extra "
            "server_prefix to the 'dc' from https://login.mailchimp.com/oauth2/metadata."
        )
    else:
        base_url = mailchimp_base_url(dc)
    return MailchimpCredentials(base_url=base_url, authorization=authorization, dc=dc, auth_kind=kind)


def secrets_of(conn: ConnectionLike) -> list[str]:
    """The secret strings a connection holds, for callers that mask asynchronously."""
    out = []
    api_key = (conn.password or "").strip()
    if api_key:
        out += [api_key, base64.b64encode(f"anystring:{api_key}".encode()).decode()]
    token = str(conn.extra_dejson.get(EXTRA_OAUTH_TOKEN) or "").strip()
    if token:
        out.append(token)
    return out
