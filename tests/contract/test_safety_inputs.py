"""Safety inputs never fail silently, and optional inputs are detected for real, on contract-exact
warehouses (SQLite and PostgreSQL).

* No ``marketing_erasure_requests`` table: erasure is not configured, the run goes on and says so.
* Any other error reading it: the sync task fails before anything is sent, without retry, naming
  the SQL file, the table and the column.
* Optional columns beyond the contract (the guest-checkout columns of ``orders``) read as NULL
  when the table lacks them, are used when it has them, and a query that does not select them
  turns the feature off; the log says which.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from test_contract_dags import AUDIENCE_DAG, ECOMMERCE_DAG, ROOT, run, shipped_dag


def drop_erasure_table(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE marketing_erasure_requests"))


def erasure_table_without_email(engine: sa.Engine) -> None:
    """The table exists but lacks a contract column (a typo'd migration, a partial copy)."""
    drop_erasure_table(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE marketing_erasure_requests (customer_id TEXT, requested_at TEXT)"))
        conn.execute(sa.text("INSERT INTO marketing_erasure_requests VALUES ('C00001', '2024-03-01')"))


def writes_sent(emulator: Any) -> int:
    """Batches submitted plus member/customer writes made: 0 means nothing was sent."""
    return len(emulator.state.batches) + sum(len(m) for m in emulator.state.members.values())


def test_without_the_erasure_table_erasure_is_off_and_every_run_says_so(
    contract_warehouse: Any, emulator: Any, airflow_db: None, fast_audience_config: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    drop_erasure_table(contract_warehouse.engine)
    dag = shipped_dag(AUDIENCE_DAG, "mailchimp_audience_sync")
    for _ in range(2):
        caplog.clear()
        with caplog.at_level(logging.INFO):
            _, states = run(dag)
        assert set(states.values()) == {"success"}, states
        assert caplog.text.count("Erasure is not configured: marketing_erasure_requests does not exist") == 1


def test_an_unreadable_erasure_table_fails_the_audience_sync_before_any_write(
    contract_warehouse: Any, emulator: Any, airflow_db: None, fast_audience_config: Path,
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str],
) -> None:
    erasure_table_without_email(contract_warehouse.engine)
    dag = shipped_dag(AUDIENCE_DAG, "mailchimp_audience_sync")
    dag.get_task("sync_members").retries = 2  # fatal: Airflow must not retry it

    with caplog.at_level(logging.INFO):
        dag_run, states = run(dag)

    assert states["sync_members"] == "failed", states
    assert writes_sent(emulator) == 0
    text = caplog.text + capsys.readouterr().out  # the task's exception goes to the task log
    assert "include/sql/erasure_requests.sql failed on table marketing_erasure_requests, column email" in text, text[-3000:]
    assert "Nothing was sent" in text
    from airflow.utils.session import create_session

    with create_session() as session:
        ti = next(t for t in dag_run.get_task_instances(session=session) if t.task_id == "sync_members")
        assert ti.try_number == 1 and ti.max_tries == 2  # failed on its first try, no retry


def test_an_unreadable_erasure_table_fails_the_ecommerce_sync_before_any_customer_is_sent(
    contract_warehouse: Any, emulator: Any, airflow_db: None, capsys: pytest.CaptureFixture[str],
) -> None:
    erasure_table_without_email(contract_warehouse.engine)
    _, states = run(shipped_dag(ECOMMERCE_DAG, "mailchimp_ecommerce_sync"))

    assert states["sync_customers"] == "failed", states
    assert states["sync_orders"] in ("upstream_failed", "failed"), states
    assert all(not store["customers"] and not store["orders"] for store in emulator.state.stores.values())
    assert "erasure_requests.sql failed on table marketing_erasure_requests, column email" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------
# the optional inputs module, on both databases
# ------------------------------------------------------------------------------------------------
def test_guest_columns_read_as_null_on_a_contract_exact_orders_table(contract_warehouse: Any) -> None:
    from mailchimp_provider.warehouse.extract import stream_sql
    from mailchimp_provider.warehouse.optional_inputs import absent_optional_columns

    absent = absent_optional_columns(contract_warehouse.engine, "orders")
    assert [a.message() for a in absent][0] == (
        "orders has no customer_email: guest-checkout orders whose customer is not in customers are skipped "
        "(reason customer_unknown)")
    assert {a.column for a in absent} == {"customer_email", "customer_first_name", "customer_last_name", "cart_id"}
    rows = [r for chunk in stream_sql(contract_warehouse.engine, "orders") for r in chunk]
    assert len(rows) == len(contract_warehouse.rows["orders"])
    assert {r["customer_email"] for r in rows} == {None}


def test_guest_columns_are_used_when_the_table_has_them(contract_warehouse: Any) -> None:
    from mailchimp_provider.warehouse.extract import stream_sql
    from mailchimp_provider.warehouse.optional_inputs import absent_optional_columns

    engine = contract_warehouse.engine
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE orders ADD COLUMN customer_email TEXT"))
        conn.execute(sa.text("UPDATE orders SET customer_email = 'gus.ghost@larkinbox.com' WHERE order_id = 'O-GUEST'"))

    assert [a.column for a in absent_optional_columns(engine, "orders")] == [
        "customer_first_name", "customer_last_name", "cart_id"]
    rows = {r["order_id"]: r for chunk in stream_sql(engine, "orders") for r in chunk}
    assert rows["O-GUEST"]["customer_email"] == "gus.ghost@larkinbox.com"
    assert rows["O-GUEST"]["customer_first_name"] is None


def test_a_query_the_user_wrote_without_the_guest_columns_turns_guest_checkout_off(
    contract_warehouse: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mailchimp_provider.warehouse.optional_inputs import absent_optional_columns

    engine = contract_warehouse.engine
    with engine.begin() as conn:  # the table has the column, but the user's query does not select it
        conn.execute(sa.text("ALTER TABLE orders ADD COLUMN customer_email TEXT"))
    sql_dir = tmp_path / "sql"
    shutil.copytree(ROOT / "include" / "sql", sql_dir)
    text = (sql_dir / "orders.sql").read_text()
    (sql_dir / "orders.sql").write_text(text[: text.index("    -- optional")].rstrip().rstrip(",") + "\nFROM orders\n")
    monkeypatch.setenv("MAILCHIMP_SQL_DIR", str(sql_dir))

    messages = [a.message() for a in absent_optional_columns(engine, "orders")]
    assert messages[0] == (f"{sql_dir / 'orders.sql'} selects no customer_email: guest-checkout orders whose customer "
                           "is not in customers are skipped (reason customer_unknown)")
