"""stream_sql: the include/sql queries, streamed in chunks with normalised values."""

from __future__ import annotations

import tracemalloc
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from mailchimp_provider.demo.data import seed_demo_warehouse
from mailchimp_provider.errors import MailchimpConfigError
from mailchimp_provider.warehouse.extract import REJECTED, SQL_DIR_ENV, load_sql, sql_dir, stream_sql
from mailchimp_provider.warehouse.source_tables import (
    OPTIONAL_SOURCE_COLUMNS,
    SOURCE_COLUMNS,
    create_source_tables,
    source_metadata,
)
from mailchimp_provider.warehouse.upsert import upsert

ENTITIES = sorted(SOURCE_COLUMNS)


def test_every_entity_has_a_query_file_in_include_sql() -> None:
    assert sql_dir() == Path(__file__).resolve().parents[2] / "include" / "sql"
    assert sorted(p.stem for p in sql_dir().glob("*.sql")) == sorted([*ENTITIES, *OPTIONAL_SOURCE_COLUMNS])


@pytest.fixture
def demo(warehouse):
    seed_demo_warehouse(warehouse.engine, customers=40, products=8, orders=30, seed=7)
    return warehouse


@pytest.mark.parametrize("entity", ENTITIES)
def test_queries_return_exactly_the_contract_columns_with_normalised_types(demo, entity) -> None:
    rows = [row for chunk in stream_sql(demo.engine, entity) for row in chunk]
    assert rows, f"{entity}: the demo warehouse has rows"
    types = SOURCE_COLUMNS[entity]
    assert all(list(row) == list(types) for row in rows)
    python_types = {"bool": bool, "int": int, "decimal": Decimal, "timestamp": datetime, "text": str}
    for row in rows:
        for column, kind in types.items():
            value = row[column]
            if value is None:
                continue
            assert type(value) is python_types[kind], (entity, column, value)
            if kind == "timestamp":
                assert value.tzinfo is timezone.utc


def test_rows_come_in_chunks_of_the_requested_size(demo) -> None:
    chunks = list(stream_sql(demo.engine, "customers", chunk_size=7))
    sizes = [len(c) for c in chunks]
    total = sum(sizes)
    assert all(s == 7 for s in sizes[:-1]) and 1 <= sizes[-1] <= 7
    with demo.engine.connect() as conn:
        assert total == conn.execute(sa.text("SELECT count(*) FROM customers")).scalar()


def test_sqlite_zero_one_and_timestamp_strings_are_normalised(sqlite_warehouse, tmp_path) -> None:
    query = tmp_path / "raw.sql"
    query.write_text(
        "SELECT 'C1' AS customer_id, 1 AS marketing_opt_in, 0 AS is_guest, "
        "'2024-05-01 10:00:00.000000' AS updated_at, '2024-05-01T12:00:00+02:00' AS created_at, "
        "19.99 AS price, '3' AS quantity;"
    )
    (row,) = next(stream_sql(sqlite_warehouse.engine, query))
    utc10 = datetime(2024, 5, 1, 10, tzinfo=timezone.utc)
    assert row == {"customer_id": "C1", "marketing_opt_in": True, "is_guest": False, "updated_at": utc10,
                   "created_at": utc10, "price": Decimal("19.99"), "quantity": 3}


def test_an_unreadable_value_marks_its_row_and_the_stream_goes_on(sqlite_warehouse, tmp_path) -> None:
    query = tmp_path / "bad.sql"
    query.write_text("SELECT 'C9' AS customer_id, 'maybe' AS marketing_opt_in UNION ALL "
                     "SELECT 'C8', 1 ORDER BY 1")
    (good, bad) = next(stream_sql(sqlite_warehouse.engine, query))
    assert good == {"customer_id": "C8", "marketing_opt_in": True}
    assert bad["customer_id"] == "C9" and bad["marketing_opt_in"] == "maybe"
    assert bad[REJECTED].detail == "column marketing_opt_in: 'maybe' is not a boolean (true/false, 1/0)"


def test_a_safety_input_read_strictly_names_the_query_record_and_column(sqlite_warehouse, tmp_path) -> None:
    query = tmp_path / "bad.sql"
    query.write_text("SELECT 'C9' AS customer_id, 'maybe' AS marketing_opt_in")
    with pytest.raises(ValueError, match=r"bad.sql' \(.*bad.sql\), record customer_id='C9': column marketing_opt_in"):
        next(stream_sql(sqlite_warehouse.engine, query, strict=True))


def test_params_bind_and_column_types_extend_the_contract(warehouse, tmp_path) -> None:
    create_source_tables(warehouse.engine)
    customers = source_metadata().tables["customers"]
    with warehouse.engine.begin() as conn:
        conn.execute(customers.insert(), [
            {"customer_id": f"C{i}", "email": f"p{i}@gmail.com", "marketing_opt_in": i % 2 == 0,
             "updated_at": datetime(2024, 1, 1 + i, tzinfo=timezone.utc)} for i in range(5)
        ])
    query = tmp_path / "changed_since.sql"
    query.write_text(
        "SELECT customer_id, marketing_opt_in AS opted, updated_at FROM customers "
        "WHERE updated_at >= :since ORDER BY customer_id"
    )
    rows = [r for chunk in stream_sql(warehouse.engine, query, params={"since": datetime(2024, 1, 4)},
                                      column_types={"opted": "bool"}) for r in chunk]
    assert [(r["customer_id"], r["opted"]) for r in rows] == [("C3", False), ("C4", True)]


def test_sql_dir_can_be_overridden_and_missing_files_are_config_errors(monkeypatch, tmp_path) -> None:
    (tmp_path / "customers.sql").write_text("SELECT 1 AS customer_id;\n")
    monkeypatch.setenv(SQL_DIR_ENV, str(tmp_path))
    assert load_sql("customers") == "SELECT 1 AS customer_id"
    with pytest.raises(MailchimpConfigError, match="orders.sql' not found.*MAILCHIMP_SQL_DIR"):
        load_sql("orders")


@pytest.mark.slow
def test_streaming_keeps_memory_flat_on_50k_rows(warehouse) -> None:
    create_source_tables(warehouse.engine)
    customers = source_metadata().tables["customers"]
    n = 50_000
    rows = ({"customer_id": f"C{i:06d}", "email": f"someone.{i}@outlook.com", "first_name": "Ava",
             "last_name": "Thompson", "city": "Portland", "country_code": "US", "marketing_opt_in": True,
             "updated_at": datetime(2024, 1, 1, tzinfo=timezone.utc)} for i in range(n))
    with warehouse.engine.begin() as conn:
        upsert(conn, customers, list(rows), ["customer_id"])

    def traced(chunk_size: int, *, limit: int | None = None, keep: bool) -> tuple[int, int]:
        """Rows read and peak traced memory while streaming (keeping the rows or not)."""
        kept: list = []
        seen = 0
        tracemalloc.start()
        try:
            for chunk in stream_sql(warehouse.engine, "customers", chunk_size=chunk_size):
                seen += len(chunk)
                if keep:
                    kept.append(chunk)
                if limit is not None and seen >= limit:
                    break
            return seen, tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    sample_rows, sample_peak = traced(1_000, limit=1_000, keep=True)
    full_result_estimate = sample_peak / sample_rows * n
    streamed_rows, streamed_peak = traced(1_000, keep=False)
    assert streamed_rows == n
    # one chunk of 1,000 rows in memory at a time, not the whole 50,000-row result
    assert streamed_peak < full_result_estimate / 8, (streamed_peak, full_result_estimate)
