"""``MailchimpHook``: every call this provider makes to the Mailchimp Marketing API v3 goes through it.

What a call gets on its way (in this order): the credential and host rules of
``hooks.credentials`` (checked once, before the first request), the per-account cap on requests in
flight of ``hooks.limiter``, a pooled ``requests.Session``, and the ``RetryPolicy`` of
``hooks.retry`` for 429/5xx/timeouts. Answers that retrying cannot fix become typed exceptions from
``mailchimp_provider.errors`` carrying Mailchimp's problem-detail fields.

``POST /batches`` is the one call that is never replayed blindly: after a 5xx or a timeout the batch
may exist, so ``submit_batch`` looks for it (``hooks.batch_lookup``) and sends again only when it is
certainly absent.

Concurrency across workers
--------------------------
Mailchimp allows 10 simultaneous connections per API key, counting every client of the account.
The hook caps requests in flight per process (``max_in_flight``, default 8). With a Redis URL
(``MAILCHIMP_LIMITER_REDIS_URL`` or the extra ``limiter_redis_url``) every request of every
process also takes a lease of one 10-connection budget per API key (``hooks.shared_limiter``),
and the pool below only bounds worker slots. Without one, put every Mailchimp task in one pool so
the per-process caps add up to at most 10::

    airflow pools set mailchimp_api 1 "Mailchimp API: <= 10 connections per API key"

and give the tasks ``pool="mailchimp_api"``. Rule of thumb: pool slots x ``max_in_flight`` <= 10,
e.g. 1 slot with the default 8, or 2 slots with ``max_in_flight=4`` (set it in the connection extra).
Other integrations on the same Mailchimp account use the same 10 connections: leave headroom.
"""

from __future__ import annotations

import hashlib
import json as jsonlib
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from http import HTTPStatus
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests
import urllib3
from requests_toolbelt.adapters.socket_options import TCPKeepAliveAdapter

from airflow.providers.http.hooks.http import HttpHook
from mailchimp_provider import __version__
from mailchimp_provider.errors import (
    MailchimpApiError,
    MailchimpAuthError,
    MailchimpBatchExpiredError,
    MailchimpConfigError,
    MailchimpError,
    MailchimpNotFoundError,
    MailchimpUnconfirmedWriteError,
)
from mailchimp_provider.hooks.batch_lookup import BatchLookup, find_submitted_batch
from mailchimp_provider.hooks.credentials import (
    CONN_FIELDS,
    UI_FIELD_BEHAVIOUR,
    MailchimpCredentials,
    credentials_from_connection,
    is_loopback_host,
    max_in_flight_from_connection,
)
from mailchimp_provider.hooks.limiter import DEFAULT_MAX_IN_FLIGHT, limiter_for, validate_max_in_flight
from mailchimp_provider.hooks.shared_limiter import SharedBudget, shared_budget_from_connection
from mailchimp_provider.hooks.pagination import (
    OffsetPaginator,
    build_fields,
    default_sort_field,
    item_key_field,
)
from mailchimp_provider.hooks.retry import RetryPolicy, is_refusal, is_retriable_status

if TYPE_CHECKING:
    from mailchimp_provider.batches.results import OperationResult
    from mailchimp_provider.hooks.async_client import MailchimpAsyncClient

DEFAULT_TIMEOUT = 120.0
"""Mailchimp cuts every API call off at 120 seconds; waiting longer is pointless."""
BATCH_SUBSCRIBE_LIMIT = 500
"""``POST /lists/{id}`` accepts at most 500 members per call."""
BATCH_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
USER_AGENT = f"airflow-provider-mailchimp/{__version__}"
TEST_CONNECTION_RETRY = RetryPolicy(max_attempts=2, max_elapsed=10.0, max_retry_after=5.0)
"""A connection test is interactive: fail fast rather than back off for minutes."""

_RETRIABLE_EXCEPTIONS = (
    requests.exceptions.Timeout,
    requests.exceptions.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
)


# -- helpers shared with the async client -------------------------------------------------------------
def encode_params(params: Mapping[str, Any] | None) -> dict[str, str]:
    """Query parameters as Mailchimp expects them: lowercase booleans, comma-joined lists, no Nones."""
    out: dict[str, str] = {}
    for key, value in (params or {}).items():
        if value is None:
            continue
        if isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, (list, tuple, set, frozenset)):
            out[key] = ",".join(str(v) for v in value)
        else:
            out[key] = str(value)
    return out


def api_url(base_url: str, path: str) -> str:
    """``base_url`` + ``path``; refuses absolute URLs so credentials only go to the checked host."""
    if "://" in path or path.startswith("//"):
        raise ValueError(f"Mailchimp paths are relative to the API base URL (like '/lists'), got {path!r}")
    return base_url.rstrip("/") + "/" + path.lstrip("/")


def parse_problem(body: bytes | str | None) -> dict[str, Any] | None:
    """The problem-detail document of an error answer, or None if the body is not a JSON object."""
    if not body:
        return None
    try:
        parsed = jsonlib.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return parsed if isinstance(parsed, dict) else None


def _snippet(body: bytes | str | None, limit: int = 200) -> str:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else (body or "")
    text = " ".join(text.split())
    return text[:limit] + ("…" if len(text) > limit else "")


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "HTTP error"


def api_error(status: int, body: bytes | str | None, method: str, path: str) -> MailchimpApiError:
    """The typed exception for a non-retriable error answer (JSON problem document or not)."""
    problem = parse_problem(body) or {}
    errors = problem.get("errors")
    field_errors = [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []
    title = str(problem.get("title") or _reason(status))
    if problem:
        detail = str(problem.get("detail") or "")
    else:
        detail = f"non-JSON answer: {_snippet(body)}" if body else "empty answer"
    cls: type[MailchimpApiError] = MailchimpApiError
    if status in (401, 403):
        cls = MailchimpAuthError
    elif status == 404:
        cls = MailchimpNotFoundError
    return cls(
        status,
        title,
        detail,
        errors=field_errors,
        method=method,
        path=path,
        instance=str(problem.get("instance") or ""),
    )


def failure_summary(status: int, body: bytes | str | None) -> str:
    """A one-line description of a retriable failure for logs and the final exception."""
    problem = parse_problem(body)
    if problem:
        title = problem.get("title") or _reason(status)
        return f"{status} {title}: {problem.get('detail') or ''}".rstrip(": ")
    return f"{status} {_reason(status)}" + (" (no JSON body)" if status in (403, 429) else "")


class ValidatedOperations(list):
    """Operations as :func:`validate_operations` returned them: ``submit_batch`` sends such a list
    without checking it again (the batch runner validates a whole submission, then submits it in
    chunks: :meth:`chunks`). Any other list or iterable is checked as always. Made only by this
    module; a caller that changes one after validation gives up the check."""

    __slots__ = ()

    def chunks(self, size: int) -> list["ValidatedOperations"]:
        """Consecutive slices of at most ``size`` operations, each still validated."""
        return [ValidatedOperations(self[start:start + size]) for start in range(0, len(self), size)]


def validate_operations(operations: Iterable[Mapping[str, Any]]) -> ValidatedOperations:
    """Check batch operations and normalise them to Mailchimp's shape (``body`` as a JSON string)."""
    out = ValidatedOperations()
    for index, op in enumerate(operations):
        label = f"operation #{index}"
        if not isinstance(op, Mapping):
            raise ValueError(f"Batch {label} must be a dict, got {type(op).__name__}")
        if op.get("operation_id") is not None:
            label += f" (operation_id {op['operation_id']!r})"
        method = str(op.get("method") or "").upper()
        if method not in BATCH_METHODS:
            raise ValueError(
                f"Batch {label}: field 'method' must be one of {sorted(BATCH_METHODS)}, "
                f"got {op.get('method')!r}"
            )
        path = op.get("path")
        if not isinstance(path, str) or not path.startswith("/") or "://" in path:
            raise ValueError(
                f"Batch {label}: field 'path' must be an API path like '/lists/abc/members', got {path!r}"
            )
        clean: dict[str, Any] = {"method": method, "path": path}
        if op.get("operation_id") is not None:
            clean["operation_id"] = str(op["operation_id"])
        if op.get("params") is not None:
            if not isinstance(op["params"], Mapping):
                raise ValueError(
                    f"Batch {label}: field 'params' must be a dict, got {type(op['params']).__name__}"
                )
            clean["params"] = dict(op["params"])
        body = op.get("body")
        if body is not None:
            if isinstance(body, (dict, list)):
                body = jsonlib.dumps(body, separators=(",", ":"))
            elif not isinstance(body, str):
                raise ValueError(
                    f"Batch {label}: field 'body' must be a dict or a JSON string, got {type(body).__name__}"
                )
            clean["body"] = body
        out.append(clean)
    if not out:
        raise ValueError("A Mailchimp batch needs at least one operation")
    return out


def never_sent(failure: BaseException) -> bool:
    """Whether a request failed before any byte of it could reach the server (no connection)."""
    if isinstance(failure, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(failure, requests.exceptions.ConnectionError):
        reason = failure.args[0] if failure.args else None
        return isinstance(getattr(reason, "reason", reason), urllib3.exceptions.NewConnectionError)
    return False


def batch_expired(batch_id: str, err: MailchimpNotFoundError) -> MailchimpBatchExpiredError:
    """The error for a 404 on ``/batches/{id}``: Mailchimp forgot the batch (or never had it)."""
    return MailchimpBatchExpiredError(
        batch_id,
        f"Mailchimp answered 404 ({err.detail or err.title}): the batch is unknown or expired.",
        "Batch results are kept only for a limited time. Treat its operations as not confirmed "
        "and re-submit them (the ledger's open batches tell which).",
    )


class MailchimpHook(HttpHook):
    """Talk to the Mailchimp Marketing API v3 with an Airflow connection of type ``mailchimp``.

    :param mailchimp_conn_id: the connection; API key in the password (or OAuth token + server
        prefix in the extra), host empty unless it is a local emulator.
    :param max_in_flight: cap on simultaneous requests for this API key in this process; defaults to
        the connection's ``max_in_flight`` extra, else 8 (Mailchimp's limit is 10).
    :param retry: the ``RetryPolicy`` for 429/5xx/timeouts; default 6 attempts within 5 minutes.
    :param timeout: seconds to wait for an answer (Mailchimp itself gives up at 120).
    :param batch_lookup: how ``submit_batch`` looks for a batch whose ``POST`` answer was lost.
    """

    conn_name_attr = "mailchimp_conn_id"
    default_conn_name = "mailchimp_default"
    conn_type = "mailchimp"
    hook_name = "Mailchimp"

    def __init__(
        self,
        mailchimp_conn_id: str = default_conn_name,
        max_in_flight: int | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        batch_lookup: BatchLookup | None = None,
    ) -> None:
        super().__init__(method="GET", http_conn_id=mailchimp_conn_id, tcp_keep_alive=False)
        self.mailchimp_conn_id = mailchimp_conn_id
        self.retry_policy = retry or RetryPolicy()
        self.timeout = float(timeout)
        self.batch_lookup = batch_lookup or BatchLookup()
        self.known_batch_ids: set[str] = set()
        """Batches this hook submitted or read: never mistaken for a lost submission of another chunk."""
        self._max_in_flight_arg = None if max_in_flight is None else validate_max_in_flight(max_in_flight)
        self._credentials: MailchimpCredentials | None = None
        self._max_in_flight: int | None = None
        self._shared_budget: SharedBudget | None = None
        self._session: requests.Session | None = None
        self._download_session: requests.Session | None = None
        self._setup_lock = threading.Lock()

    def __repr__(self) -> str:
        where = self._credentials.base_url if self._credentials else "unresolved"
        return f"<MailchimpHook conn_id={self.mailchimp_conn_id!r} base_url={where!r}>"

    # -- connection form ------------------------------------------------------------------------
    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Form relabelling for UIs that ask the hook; Airflow 3.2+ reads provider info instead."""
        return {
            "hidden_fields": list(UI_FIELD_BEHAVIOUR["hidden-fields"]),
            "relabeling": dict(UI_FIELD_BEHAVIOUR["relabeling"]),
            "placeholders": dict(UI_FIELD_BEHAVIOUR["placeholders"]),
        }

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Extra fields as WTForms widgets, built from the same ``CONN_FIELDS`` as provider info.

        Only UIs with Flask-AppBuilder call this (Airflow 3.2+ uses the declarative ``conn-fields``).
        """
        from flask_appbuilder.fieldwidgets import BS3PasswordFieldWidget, BS3TextFieldWidget
        from flask_babel import lazy_gettext
        from wtforms import IntegerField, PasswordField, StringField
        from wtforms.validators import NumberRange, Optional

        widgets: dict[str, Any] = {}
        for name, spec in CONN_FIELDS.items():
            schema = spec["schema"]
            label, description = lazy_gettext(spec["label"]), spec.get("description")
            if schema.get("format") == "password":
                widgets[name] = PasswordField(label, widget=BS3PasswordFieldWidget(), description=description)
            elif "integer" in schema["type"]:
                widgets[name] = IntegerField(
                    label,
                    widget=BS3TextFieldWidget(),
                    validators=[Optional(), NumberRange(min=schema["minimum"], max=schema["maximum"])],
                    default=schema.get("default"),
                    description=description,
                )
            else:
                widgets[name] = StringField(label, widget=BS3TextFieldWidget(), description=description)
        return widgets

    # -- resolved configuration -----------------------------------------------------------------
    def _resolve(self) -> MailchimpCredentials:
        with self._setup_lock:
            if self._credentials is None:
                conn = self.get_connection(self.mailchimp_conn_id)
                credentials = credentials_from_connection(conn)
                from_conn = max_in_flight_from_connection(conn)
                limit = self._max_in_flight_arg or from_conn or DEFAULT_MAX_IN_FLIGHT
                self._max_in_flight = validate_max_in_flight(limit)
                self._shared_budget = shared_budget_from_connection(conn)
                self._credentials = credentials
            return self._credentials

    @property
    def credentials(self) -> MailchimpCredentials:
        """The checked credentials of the connection (looked up on first use)."""
        return self._credentials or self._resolve()

    @property
    def base_url(self) -> str:  # type: ignore[override]
        """``https://<dc>.api.mailchimp.com/3.0``, or the loopback emulator's URL."""
        return self.credentials.base_url

    @base_url.setter
    def base_url(self, value: str) -> None:
        # HttpHook.__init__ assigns "" here; the real value always comes from the credential rules.
        if value:
            raise AttributeError("MailchimpHook.base_url comes from the connection and cannot be set")

    @property
    def max_in_flight(self) -> int:
        """Requests this process may have in flight for the connection's API key."""
        if self._max_in_flight is None:
            self._resolve()
        assert self._max_in_flight is not None
        return self._max_in_flight

    def get_conn(
        self, headers: dict[Any, Any] | None = None, extra_options: dict[str, Any] | None = None
    ) -> requests.Session:
        """The hook's pooled session, authenticated for the checked base URL (created once)."""
        credentials = self.credentials
        with self._setup_lock:
            if self._session is None:
                session = requests.Session()
                session.headers.update(
                    {
                        "Authorization": credentials.authorization,
                        "Accept": "application/json",
                        "User-Agent": USER_AGENT,
                    }
                )
                # One pool per hook, sized to the cap so a waiting thread never opens a fresh socket.
                adapter = TCPKeepAliveAdapter(
                    idle=120,
                    count=20,
                    interval=30,
                    pool_connections=1,
                    pool_maxsize=self._max_in_flight,
                    max_retries=0,
                )
                session.mount("http://", adapter)
                session.mount("https://", adapter)
                self._session = session
            if headers:
                self._session.headers.update(headers)
            return self._session

    def url_from_endpoint(self, endpoint: str | None) -> str:
        return api_url(self.base_url, endpoint or "/")

    def close(self) -> None:
        """Close the pooled sessions (idempotent)."""
        for session in (self._session, self._download_session):
            if session is not None:
                session.close()
        self._session = self._download_session = None

    # -- the request pipeline -------------------------------------------------------------------
    def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        policy: RetryPolicy | None = None,
        replay: bool = True,
    ) -> requests.Response:
        """One logical call: capped, retried, and mapped to typed errors. Returns a 2xx response.

        With ``replay=False`` only refusals (429, bare 403, no connection) are retried; a 5xx or a
        lost answer raises ``MailchimpUnconfirmedWriteError`` for the caller to look before resending.
        """
        method = method.upper()
        session = self.get_conn()
        url = api_url(self.base_url, path)
        gate = limiter_for(self.credentials.fingerprint, self._shared_budget)
        policy = policy or self.retry_policy
        query = encode_params(params)
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            retry_after: str | None = None
            failure: BaseException | None = None
            with gate.slot(self.max_in_flight):
                try:
                    response = session.request(
                        method,
                        url,
                        params=query,
                        json=json,
                        data=data,
                        headers=dict(headers or {}),
                        timeout=(min(self.timeout, 15.0), self.timeout),
                        allow_redirects=False,
                    )
                except _RETRIABLE_EXCEPTIONS as exc:
                    failure = exc
            if failure is None:
                status = response.status_code
                if status < 300:
                    self.log.debug("Mailchimp %s %s -> %s", method, path, status)
                    return response
                has_json = parse_problem(response.content) is not None
                if not is_retriable_status(status, has_json_body=has_json):
                    raise api_error(status, response.content, method, path)
                reason = failure_summary(status, response.content)
                retry_after = response.headers.get("Retry-After")
                if not replay and not is_refusal(status, has_json_body=has_json):
                    raise MailchimpUnconfirmedWriteError(
                        f"{method} {path}: answered {reason}; it may have been done", status=status, answered=True
                    )
            else:
                status = None
                reason = f"{type(failure).__name__} (no answer within {self.timeout:g}s or connection failed)"
                if not isinstance(failure, requests.exceptions.Timeout):
                    reason = f"{type(failure).__name__}: connection failed"
                if not replay and not never_sent(failure):
                    raise MailchimpUnconfirmedWriteError(
                        f"{method} {path}: {reason}; it may have been done", answered=False
                    ) from failure
            delay = policy.delay_or_give_up(
                method, path, attempt=attempt, started=started, reason=reason, status=status,
                retry_after_header=retry_after, failure=failure,
            )
            self.log.warning(
                "Mailchimp %s %s failed (%s); retry %d/%d in %.2fs%s",
                method,
                path,
                reason,
                attempt,
                policy.max_attempts - 1,
                delay,
                f" (Retry-After: {retry_after})" if retry_after else "",
            )
            time.sleep(delay)

    def request(
        self, method: str, path: str, *, params: Mapping[str, Any] | None = None, json: Any = None
    ) -> Any:
        """Call the API; the parsed JSON answer, or None for 204. Raises ``MailchimpError`` subtypes."""
        response = self._send(method, path, params=params, json=json)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise MailchimpError(
                f"{method.upper()} {path}: {response.status_code} answer is not JSON "
                f"({response.headers.get('Content-Type', 'no content type')}): {_snippet(response.content)}"
            ) from None

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, json: Any = None, params: Mapping[str, Any] | None = None) -> Any:
        return self.request("POST", path, params=params, json=json)

    def put(self, path: str, json: Any = None, params: Mapping[str, Any] | None = None) -> Any:
        return self.request("PUT", path, params=params, json=json)

    def patch(self, path: str, json: Any = None, params: Mapping[str, Any] | None = None) -> Any:
        return self.request("PATCH", path, params=params, json=json)

    def delete(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        return self.request("DELETE", path, params=params)

    def run(
        self,
        endpoint: str | None = None,
        data: dict[str, Any] | str | None = None,
        headers: dict[str, Any] | None = None,
        extra_options: dict[str, Any] | None = None,
        **request_kwargs: Any,
    ) -> requests.Response:
        """``HttpHook.run`` compatibility: same pipeline as ``request``, returns the raw response."""
        path = endpoint or "/"
        if self.method == "GET":
            query = data if isinstance(data, Mapping) else None
            return self._send("GET", path, params=query, headers=headers)
        return self._send(self.method, path, data=data, json=request_kwargs.get("json"), headers=headers)

    def test_connection(self) -> tuple[bool, str]:
        """Ping the API; ``(ok, message)``, never raises (the UI shows the message)."""
        try:
            answer = self._send("GET", "/ping", policy=TEST_CONNECTION_RETRY).json()
        except MailchimpApiError as err:
            return False, f"{err.status} {err.title}: {err.detail}"
        except MailchimpError as err:
            return False, str(err)
        except Exception as err:  # the connection test must report, not crash
            return False, f"{type(err).__name__}: {err}"
        status = answer.get("health_status", answer) if isinstance(answer, dict) else answer
        return True, f"Connected to {self.base_url}: {status}"

    # -- collections --------------------------------------------------------------------------
    def paginate(
        self,
        path: str,
        items_key: str,
        *,
        params: Mapping[str, Any] | None = None,
        page_size: int = 1000,
        fields: Iterable[str] | str | None = None,
        dedupe_key: str | None = "id",
        sort_field: str | None = None,
        overlap: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Yield every item of a collection once, across pages, even while it changes.

        ``sort_field`` None picks the collection's ever-growing field (members: ``last_changed``,
        campaigns: ``create_time``, lists: ``date_created``); pass ``""`` to leave the order alone.
        ``fields`` names item fields; ``total_items`` and ``dedupe_key`` are always requested.
        The default ``dedupe_key="id"`` means ``merge_id`` for merge fields and ``email_id`` for
        report collections (their items have no ``id``); ``None`` turns de-duplication off.
        """
        dedupe_key = item_key_field(items_key, dedupe_key)
        paginator = OffsetPaginator(page_size, overlap=overlap if dedupe_key else 0)
        query: dict[str, Any] = dict(params or {})
        sort = default_sort_field(path) if sort_field is None else (sort_field or None)
        if sort and "sort_field" not in query:
            query.update(sort_field=sort, sort_dir="ASC")
        fields_value = build_fields(items_key, fields, dedupe_key)
        if fields_value:
            query["fields"] = fields_value
        seen: set[Any] = set()
        while paginator.has_next_page:
            page = self.get(path, params={**query, **paginator.page_params()})
            items = page.get(items_key) if isinstance(page, dict) else None
            if not isinstance(items, list):
                keys = sorted(page) if isinstance(page, dict) else type(page).__name__
                raise MailchimpError(f"GET {path}: the answer has no '{items_key}' list (keys: {keys})")
            first_seen = None
            if dedupe_key and items:
                first_seen = self._item_key(items[0], dedupe_key, path, paginator.offset) in seen
            offset = paginator.offset
            paginator.update(len(items), page.get("total_items"), first_item_seen=first_seen)
            for index, item in enumerate(items):
                if dedupe_key:
                    key = self._item_key(item, dedupe_key, path, offset + index)
                    if key in seen:
                        continue
                    seen.add(key)
                yield item

    @staticmethod
    def _item_key(item: Any, dedupe_key: str, path: str, position: int) -> Any:
        if not isinstance(item, dict) or item.get(dedupe_key) is None:
            raise MailchimpError(
                f"GET {path}: item at offset {position} has no '{dedupe_key}' to de-duplicate on; "
                "include it in fields or pass dedupe_key=None"
            )
        return item[dedupe_key]

    # -- members ------------------------------------------------------------------------------
    @staticmethod
    def subscriber_hash(email: str) -> str:
        """Mailchimp's member id: MD5 of the trimmed, lower-cased email address."""
        return hashlib.md5(email.strip().lower().encode("utf-8")).hexdigest()

    def batch_subscribe(
        self,
        list_id: str,
        members: Iterable[Mapping[str, Any]],
        *,
        update_existing: bool = False,
        sync_tags: bool = False,
        skip_merge_validation: bool = False,
    ) -> Iterator[dict[str, Any]]:
        """Add or update members with ``POST /lists/{id}``, 500 per call; yields each call's answer.

        Every member is checked for an ``email_address`` before the first call, so a bad record
        fails the whole input up front instead of after half of it was sent.
        """
        batch = list(members)
        for index, member in enumerate(batch):
            if not isinstance(member, Mapping) or not str(member.get("email_address") or "").strip():
                raise ValueError(
                    f"batch_subscribe member #{index}: field 'email_address' is missing or empty"
                )
        from mailchimp_provider.sync.paths import api_path

        params = {"skip_merge_validation": True} if skip_merge_validation else None
        for start in range(0, len(batch), BATCH_SUBSCRIBE_LIMIT):
            chunk = [dict(m) for m in batch[start : start + BATCH_SUBSCRIBE_LIMIT]]
            body = {"members": chunk, "update_existing": update_existing, "sync_tags": sync_tags}
            yield self.post(api_path("lists", list_id), json=body, params=params)

    # -- batches ------------------------------------------------------------------------------
    def submit_batch(self, operations: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
        """``POST /batches`` after checking every operation; the new batch object.

        Never replayed blindly: after a 5xx or a lost answer the batch is looked for
        (``find_submitted_batch``) and, if Mailchimp has it, returned as if the POST had answered;
        the operations are sent again only when the batch is certainly absent. Refusals (429, no
        connection) are retried in place, since nothing was done.
        """
        # checked once: the batch runner hands over operations it validated (``ValidatedOperations``)
        ops = operations if type(operations) is ValidatedOperations else validate_operations(operations)
        policy = self.retry_policy
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            sent_at = time.time()
            try:
                batch = self._send("POST", "/batches", json={"operations": ops}, replay=False).json()
            except MailchimpUnconfirmedWriteError as err:
                found = find_submitted_batch(
                    self, ops, sent_at=sent_at, answered=err.answered, known=self.known_batch_ids,
                    lookup=self.batch_lookup,
                )
                if found is None:
                    delay = policy.delay_or_give_up(
                        "POST", "/batches", attempt=attempt, started=started, reason=str(err),
                        status=err.status, retry_after_header=None, failure=err,
                    )
                    self.log.warning(
                        "%s. Mailchimp has no such batch (looked it up): submitting again in %.2fs (attempt %d/%d).",
                        err, delay, attempt + 1, policy.max_attempts,
                    )
                    time.sleep(delay)
                    continue
                self.log.warning(
                    "%s, but Mailchimp had accepted it: batch %s (%s operations, submitted at %s). "
                    "Not sent again.", err, found.get("id"), found.get("total_operations"), found.get("submitted_at"),
                )
                batch = found
            self.known_batch_ids.add(str(batch["id"]))
            return batch

    def get_batch(self, batch_id: str) -> dict[str, Any]:
        """``GET /batches/{id}``; ``MailchimpBatchExpiredError`` when Mailchimp no longer knows it."""
        try:
            batch = self.get(f"/batches/{batch_id}")
        except MailchimpNotFoundError as err:
            raise batch_expired(batch_id, err) from err
        self.known_batch_ids.add(str(batch_id))
        return batch

    def delete_batch(self, batch_id: str) -> None:
        """``DELETE /batches/{id}``: stop a batch; results of finished operations are discarded."""
        self.delete(f"/batches/{batch_id}")

    def list_batches(self) -> list[dict[str, Any]]:
        """Every batch Mailchimp still knows for this account."""
        return list(self.paginate("/batches", "batches", sort_field=""))

    def download(self, url: str) -> IO[bytes]:
        """Open ``response_body_url`` as a byte stream (the results ``.tar.gz``, not decoded).

        The URL is presigned: no ``Authorization`` header is sent, from a separate session. Only
        https, or http to the loopback emulator, is accepted. Close the stream when done.
        """
        parts = urlsplit(url)
        emulator = parts.scheme == "http" and is_loopback_host(parts.hostname or "")
        if parts.scheme != "https" and not emulator:
            raise MailchimpConfigError(
                f"Refusing to download batch results over {parts.scheme or 'no scheme'}: {parts.hostname}"
            )
        where = f"{parts.hostname}{parts.path}"
        with self._setup_lock:
            if self._download_session is None:
                self._download_session = requests.Session()
                self._download_session.headers["User-Agent"] = USER_AGENT
        session = self._download_session
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            failure: BaseException | None = None
            try:
                response = session.get(url, stream=True, timeout=(15.0, self.timeout))
            except _RETRIABLE_EXCEPTIONS as exc:
                failure, reason = exc, type(exc).__name__
            else:
                if response.status_code < 300:
                    response.raw.decode_content = False
                    return response.raw
                response.close()
                reason = f"{response.status_code} {_reason(response.status_code)}"
                if not is_retriable_status(response.status_code):
                    expired = response.status_code == 403
                    hint = " (the presigned URL expired: GET the batch again)" if expired else ""
                    raise MailchimpError(f"Downloading batch results from {where} failed: {reason}{hint}")
            delay = self.retry_policy.delay_or_give_up(
                "GET batch results from", where, attempt=attempt, started=started, reason=reason,
                status=None if failure else response.status_code, retry_after_header=None, failure=failure,
            )
            self.log.warning("Batch results download failed (%s); retry in %.2fs", reason, delay)
            time.sleep(delay)

    def iter_batch_results(self, batch: Mapping[str, Any]) -> Iterator[OperationResult]:
        """Stream the operation results of a finished batch (as returned by ``get_batch``)."""
        from mailchimp_provider.batches.results import iter_results

        url = batch.get("response_body_url") or ""
        if batch.get("status") != "finished" or not url:
            raise MailchimpBatchExpiredError(
                str(batch.get("id")),
                f"has no results to read (status {batch.get('status')!r}, "
                f"{'no' if not url else 'a'} response_body_url).",
                "Wait until the batch is 'finished' and GET it again for a fresh URL; if it stays "
                "without one, its results were purged: re-submit its operations.",
            )
        with self.download(url) as stream:
            yield from iter_results(stream)

    # -- async --------------------------------------------------------------------------------
    def async_client(self) -> MailchimpAsyncClient:
        """An aiohttp client with this hook's credentials, limits and retry policy (for triggers)."""
        from mailchimp_provider.hooks.async_client import MailchimpAsyncClient

        return MailchimpAsyncClient(
            self.credentials, retry=self.retry_policy, timeout=self.timeout, max_in_flight=self.max_in_flight,
            shared_budget=self._shared_budget,
        )

