"""get_engine: the warehouse engine comes from the `warehouse_default` Airflow connection."""

from __future__ import annotations

import json
import urllib.parse

import pytest
import sqlalchemy as sa

from mailchimp_provider.errors import MailchimpConfigError
from mailchimp_provider.warehouse.connection import get_engine


def test_engine_from_airflow_connection_reaches_the_same_database(warehouse) -> None:
    with warehouse.engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE marker (id INTEGER PRIMARY KEY)"))
        conn.execute(sa.text("INSERT INTO marker VALUES (7)"))

    engine = get_engine()  # AIRFLOW_CONN_WAREHOUSE_DEFAULT, set by the fixture

    expected_backend = "sqlite" if warehouse.kind == "sqlite" else "postgresql"
    assert engine.url.get_backend_name() == expected_backend
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT id FROM marker")).scalar_one() == 7


def test_engine_is_cached_per_connection_and_uri(warehouse, monkeypatch, tmp_path) -> None:
    first = get_engine()
    assert get_engine() is first
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE_DEFAULT", f"sqlite:///{tmp_path / 'other.db'}")
    assert get_engine() is not first  # an edited connection gets a fresh engine


def test_sqlite_uses_wal_and_a_busy_timeout(sqlite_warehouse) -> None:
    with get_engine().connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000


def test_sqlite_absolute_path_survives_airflow_uri_parsing(monkeypatch, tmp_path) -> None:
    # Airflow's Connection.get_uri() would percent-encode this path into a relative file name.
    path = tmp_path / "nested dir" / "wh.db"
    path.parent.mkdir()
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE_DEFAULT", "sqlite:///" + urllib.parse.quote(str(path)))
    with get_engine().begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (x INTEGER)"))
    assert path.exists()


def test_postgres_connection_forwards_libpq_options_only(pg_warehouse, monkeypatch) -> None:
    uri = pg_warehouse.airflow_uri + "?sslmode=disable&application_name=mc-test&cursor=realdictcursor"
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE_DEFAULT", uri)
    engine = get_engine()
    assert engine.url.drivername == "postgresql+psycopg2"
    assert dict(engine.url.query) == {"sslmode": "disable", "application_name": "mc-test"}
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT current_setting('application_name')")).scalar() == "mc-test"


def test_extra_sqlalchemy_url_serves_any_dialect(monkeypatch, tmp_path) -> None:
    target = tmp_path / "via-extra.db"
    monkeypatch.setenv(
        "AIRFLOW_CONN_WAREHOUSE_DEFAULT",
        json.dumps({"conn_type": "generic", "extra": {"sqlalchemy_url": f"sqlite:///{target}"}}),
    )
    engine = get_engine()
    assert engine.url.database == str(target)


def test_missing_connection_is_a_config_error_that_says_how_to_fix_it(monkeypatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_NO_SUCH_WAREHOUSE", raising=False)
    with pytest.raises(MailchimpConfigError, match="no_such_warehouse.*AIRFLOW_CONN_NO_SUCH_WAREHOUSE"):
        get_engine("no_such_warehouse")


def test_unsupported_connection_type_is_a_config_error(monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE_DEFAULT", "http://warehouse.internal:8080")
    with pytest.raises(MailchimpConfigError, match="type 'http'.*sqlalchemy_url"):
        get_engine()
