"""SQLAlchemy engine for the warehouse, built from an Airflow connection (``warehouse_default``).

Airflow connections and SQLAlchemy URLs disagree on details, so the URL is rebuilt from the
connection's fields instead of passing ``Connection.get_uri()`` through:

* ``sqlite``: Airflow parses ``sqlite:////abs/path.db`` into ``schema='/abs/path.db'`` and its
  ``get_uri()`` percent-encodes the slashes (``sqlite:///%2Fabs%2Fpath.db``), which SQLAlchemy
  would treat as a relative file name. The SQLite provider's UI form puts the path in ``host``.
  Both are accepted. Engines get WAL journaling and a busy timeout so a running task and the
  demo (or a second task) can read while another writes.
* ``postgres`` / ``postgresql``: ``postgresql+psycopg2``; libpq options in the extra
  (``sslmode``, ``connect_timeout``...) become URL query parameters.
* anything else: put a full SQLAlchemy URL in the extra ``sqlalchemy_url`` (it also overrides the
  two types above, e.g. to pick another driver).

One engine is cached per (conn_id, URL) per process: tasks call ``get_engine()`` freely without
opening a new pool each time, and an edited connection gets a fresh engine.
"""

from __future__ import annotations

import threading
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from mailchimp_provider.errors import MailchimpConfigError

DEFAULT_CONN_ID = "warehouse_default"
SQLITE_BUSY_TIMEOUT_MS = 30_000

# libpq connection parameters we forward from the connection extra; other extra keys (Airflow
# provider options such as "cursor" or "iam") would make psycopg2 refuse to connect.
_LIBPQ_PARAMS = frozenset(
    {
        "sslmode", "sslcert", "sslkey", "sslrootcert", "sslcrl", "sslpassword", "connect_timeout",
        "application_name", "options", "target_session_attrs", "keepalives", "keepalives_idle",
        "keepalives_interval", "keepalives_count", "client_encoding", "gssencmode", "channel_binding",
    }
)

_engines: dict[tuple[str, str], sa.Engine] = {}
_lock = threading.Lock()


def get_engine(conn_id: str = DEFAULT_CONN_ID) -> sa.Engine:
    """Return the (cached) engine for the Airflow connection ``conn_id``."""
    conn = _get_connection(conn_id)
    url = connection_url(conn, conn_id=conn_id)
    key = (conn_id, url.render_as_string(hide_password=False))
    with _lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _create_engine(url)
            _engines[key] = engine
        return engine


def dispose_engines() -> None:
    """Close every cached engine (tests, and processes that fork after using the warehouse)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


def connection_url(conn: Any, *, conn_id: str = DEFAULT_CONN_ID) -> URL:
    """Translate an Airflow ``Connection`` into a SQLAlchemy URL (see the module docstring)."""
    extra = _extra(conn, conn_id)
    explicit = extra.get("sqlalchemy_url")
    if explicit:
        try:
            return make_url(str(explicit))
        except sa.exc.ArgumentError as exc:
            raise MailchimpConfigError(
                f"Connection {conn_id!r}: extra 'sqlalchemy_url' is not a valid SQLAlchemy URL ({exc})."
            ) from None

    conn_type = (conn.conn_type or "").lower()
    if conn_type == "sqlite":
        path = conn.schema or conn.host or ""
        if not path:
            raise MailchimpConfigError(
                f"Connection {conn_id!r} (sqlite) has no database path: use a URI like "
                "'sqlite:////absolute/path/warehouse.db'."
            )
        return URL.create("sqlite", database=path)
    if conn_type in ("postgres", "postgresql"):
        query = {k: str(v) for k, v in extra.items() if k in _LIBPQ_PARAMS and v is not None}
        return URL.create(
            "postgresql+psycopg2",
            username=conn.login or None,
            password=conn.password or None,
            host=conn.host or None,
            port=conn.port or None,
            database=conn.schema or None,
            query=query,
        )
    raise MailchimpConfigError(
        f"Connection {conn_id!r} has type {conn.conn_type!r}, which the warehouse layer cannot turn "
        "into a database URL. Use conn type 'sqlite' or 'postgres', or put a full SQLAlchemy URL in "
        "the connection extra as {\"sqlalchemy_url\": \"dialect+driver://...\"}."
    )


def _get_connection(conn_id: str) -> Any:
    from airflow.sdk import BaseHook  # imported late: importing Airflow is slow and reads config
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        raise MailchimpConfigError(
            f"Airflow connection {conn_id!r} is not defined. Create it (UI, `airflow connections add`, "
            f"or the environment variable AIRFLOW_CONN_{conn_id.upper()}), e.g. "
            "'sqlite:////abs/path/warehouse.db' or 'postgres://user:pass@host:5432/db'."
        ) from None


def _extra(conn: Any, conn_id: str) -> dict[str, Any]:
    try:
        extra = conn.extra_dejson
    except Exception as exc:  # noqa: BLE001 - Airflow raises different types across versions
        raise MailchimpConfigError(f"Connection {conn_id!r}: the extra field is not valid JSON ({exc}).") from None
    return extra if isinstance(extra, dict) else {}


def _create_engine(url: URL) -> sa.Engine:
    if url.get_backend_name() == "sqlite":
        engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        sa.event.listen(engine, "connect", _sqlite_on_connect)
        return engine
    return sa.create_engine(url, pool_pre_ping=True)


def _sqlite_on_connect(dbapi_conn: Any, _record: Any) -> None:
    """WAL lets readers run while a writer commits; the busy timeout makes writers wait, not fail."""
    cursor = dbapi_conn.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        if dbapi_conn.execute("PRAGMA database_list").fetchone()[2]:  # a file, not :memory:
            cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
    finally:
        cursor.close()
