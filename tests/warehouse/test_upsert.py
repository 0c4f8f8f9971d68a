"""upsert: idempotent bulk writes on the contract key, the same on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from mailchimp_provider.warehouse.tables import WarehouseTables
from mailchimp_provider.warehouse.upsert import COPY_THRESHOLD, upsert, upsert_counts

T0 = datetime(2024, 3, 1, 9, 30, tzinfo=timezone.utc)


@pytest.fixture
def tables(warehouse) -> WarehouseTables:
    t = WarehouseTables()
    t.create_all(warehouse.engine)
    return t


def members(n: int, *, status: str = "subscribed") -> list[dict]:
    return [
        {"list_id": "L1", "member_id": f"{i:032x}", "email_address": f"person{i}@gmail.com", "status": status,
         "vip": i % 7 == 0, "member_rating": i % 5 + 1, "last_changed": T0 + timedelta(minutes=i),
         "tags": ["Retail"] if i % 2 else []}
        for i in range(n)
    ]


def snapshot(engine: sa.Engine, table: sa.Table, *, exclude: tuple[str, ...] = ("synced_at",)) -> list[dict]:
    cols = [c for c in table.c if c.name not in exclude]
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(*cols).order_by(*table.primary_key.columns)).mappings()]


# small inputs take the multi-row INSERT path, large ones the COPY path on PostgreSQL
SIZES = [pytest.param(25, id="small"), pytest.param(COPY_THRESHOLD + 500, id="large")]


@pytest.mark.parametrize("n", SIZES)
def test_running_the_same_upsert_twice_leaves_the_same_rows(warehouse, tables, n) -> None:
    rows = members(n)
    with warehouse.engine.begin() as conn:
        assert upsert(conn, tables.member, rows, key=["list_id", "member_id"]) == n
    first = snapshot(warehouse.engine, tables.member, exclude=())
    with warehouse.engine.begin() as conn:
        assert upsert(conn, tables.member, rows, key=["list_id", "member_id"]) == n
    # unchanged rows are not rewritten: even synced_at stays
    assert snapshot(warehouse.engine, tables.member, exclude=()) == first
    assert len(first) == n
    assert first[1]["last_changed"] == T0 + timedelta(minutes=1)
    assert first[1]["tags"] == '["Retail"]' and first[1]["vip"] is False and first[0]["vip"] is True


@pytest.mark.parametrize("n", SIZES)
def test_changed_columns_are_updated_and_new_keys_inserted(warehouse, tables, n) -> None:
    with warehouse.engine.begin() as conn:
        upsert(conn, tables.member, members(n), key=["list_id", "member_id"])
    changed = members(n + 3, status="unsubscribed")
    changed[0]["email_address"] = "renamed@outlook.com"
    with warehouse.engine.begin() as conn:
        upsert(conn, tables.member, changed, key=["list_id", "member_id"])

    rows = snapshot(warehouse.engine, tables.member)
    assert len(rows) == n + 3
    assert {r["status"] for r in rows} == {"unsubscribed"}
    assert rows[0]["email_address"] == "renamed@outlook.com"


def test_omitted_columns_keep_their_values_and_update_columns_limits_the_update(warehouse, tables) -> None:
    key = ["entity", "record_id"]
    with warehouse.engine.begin() as conn:
        upsert(conn, tables.sync_state, [
            {"entity": "member", "record_id": "C1", "payload_hash": "h1", "email": "a@gmail.com", "attempts": 1},
        ], key)
        # a partial row: only the outcome; payload_hash and email stay
        upsert(conn, tables.sync_state, [{"entity": "member", "record_id": "C1", "last_outcome": "failed"}], key)
        # update_columns: attempts changes, payload_hash does not
        upsert(conn, tables.sync_state, [
            {"entity": "member", "record_id": "C1", "payload_hash": "IGNORED", "attempts": 2},
        ], key, update_columns=["attempts"])
    (row,) = snapshot(warehouse.engine, tables.sync_state)
    assert (row["payload_hash"], row["email"], row["last_outcome"], row["attempts"]) == ("h1", "a@gmail.com", "failed", 2)
    assert row["quarantined"] is False


def test_updated_at_moves_only_when_something_changed(warehouse, tables) -> None:
    key = ["stream", "scope"]
    with warehouse.engine.begin() as conn:
        upsert(conn, tables.watermark, [{"stream": "members", "scope": "L1", "value": "a"}], key)
    before = snapshot(warehouse.engine, tables.watermark, exclude=())[0]["updated_at"]
    with warehouse.engine.begin() as conn:
        upsert(conn, tables.watermark, [{"stream": "members", "scope": "L1", "value": "a"}], key)
    assert snapshot(warehouse.engine, tables.watermark, exclude=())[0]["updated_at"] == before
    with warehouse.engine.begin() as conn:
        upsert(conn, tables.watermark, [{"stream": "members", "scope": "L1", "value": "b"}], key)
    after = snapshot(warehouse.engine, tables.watermark, exclude=())[0]
    assert after["value"] == "b" and after["updated_at"] > before


def test_a_key_repeated_in_the_input_is_written_once_with_its_last_row(warehouse, tables) -> None:
    rows = [{"batch_id": "b1", "dag_id": "d", "run_id": "r", "task_id": "t", "status": s}
            for s in ("pending", "started", "finished")]
    with warehouse.engine.begin() as conn:
        assert upsert(conn, tables.batch, rows, key=["batch_id"]) == 1
    assert [r["status"] for r in snapshot(warehouse.engine, tables.batch)] == ["finished"]


def test_timestamp_keys_match_whether_given_as_string_or_datetime(warehouse, tables) -> None:
    key = ["campaign_id", "member_id", "action", "timestamp", "url_key"]
    base = {"campaign_id": "c1", "member_id": "m1", "action": "open", "url_key": "", "list_id": "L1"}
    with warehouse.engine.begin() as conn:
        upsert(conn, tables.activity, [{**base, "timestamp": "2024-03-01T09:30:00+00:00", "ip": "1.1.1.1"}], key)
        upsert(conn, tables.activity, [{**base, "timestamp": T0, "ip": "2.2.2.2"}], key)
        upsert(conn, tables.activity, [{**base, "timestamp": T0, "ip": "3.3.3.3"}], key, strategy="generic")
    rows = snapshot(warehouse.engine, tables.activity)
    assert [(r["timestamp"], r["ip"]) for r in rows] == [(T0, "3.3.3.3")]


@pytest.mark.parametrize("strategy", ["on_conflict", "generic"])
def test_every_strategy_gives_the_same_result(warehouse, tables, strategy) -> None:
    first, second = members(40), members(60, status="cleaned")
    second[5]["email_address"] = None
    with warehouse.engine.begin() as conn:
        upsert(conn, tables.member, first, ["list_id", "member_id"], strategy=strategy)
        upsert(conn, tables.member, second, ["list_id", "member_id"], strategy=strategy)
    rows = snapshot(warehouse.engine, tables.member)
    assert len(rows) == 60 and {r["status"] for r in rows} == {"cleaned"}
    assert rows[5]["email_address"] is None


@pytest.mark.postgres
def test_copy_path_round_trips_awkward_text(pg_warehouse) -> None:
    t = WarehouseTables()
    t.create_all(pg_warehouse.engine)
    awkward = "tab\there, newline\nthere, back\\slash, quote \" and ' , émoji 📬, \\N literal"
    rows = [{"stream": "s", "scope": str(i), "value": awkward if i % 2 else None} for i in range(COPY_THRESHOLD)]
    with pg_warehouse.engine.begin() as conn:
        upsert(conn, t.watermark, rows, ["stream", "scope"], strategy="copy")
    stored = {r["scope"]: r["value"] for r in snapshot(pg_warehouse.engine, t.watermark)}
    assert stored["1"] == awkward and stored["0"] is None


@pytest.mark.postgres
def test_copy_path_rejects_values_without_a_sql_form_naming_record_and_column(pg_warehouse) -> None:
    t = WarehouseTables()
    t.create_all(pg_warehouse.engine)
    rows = [{"stream": "s", "scope": "a", "value": {"not": "text"}}]
    with pg_warehouse.engine.begin() as conn, pytest.raises(TypeError, match=r"scope='a'.*column value got a dict"):
        upsert(conn, t.watermark, rows, ["stream", "scope"], strategy="copy")


def test_key_must_be_unique_in_the_table(warehouse, tables) -> None:
    with warehouse.engine.begin() as conn, pytest.raises(ValueError, match="neither the primary key"):
        upsert(conn, tables.member, members(1), key=["email_address"])


def test_unknown_columns_and_missing_keys_are_named(warehouse, tables) -> None:
    with warehouse.engine.begin() as conn:
        with pytest.raises(ValueError, match="unknown column.*emial"):
            upsert(conn, tables.member, [{"list_id": "L", "member_id": "m", "emial": "x"}], ["list_id", "member_id"])
        with pytest.raises(ValueError, match="row 1 lacks key column member_id"):
            upsert(conn, tables.member, [{"list_id": "L", "member_id": "m"}, {"list_id": "L"}],
                   ["list_id", "member_id"])


def test_upsert_joins_the_callers_transaction(warehouse, tables) -> None:
    with pytest.raises(RuntimeError), warehouse.engine.begin() as conn:
        upsert(conn, tables.member, members(3), ["list_id", "member_id"])
        raise RuntimeError("task failed after writing")
    assert snapshot(warehouse.engine, tables.member) == []


def test_empty_input_writes_nothing(warehouse, tables) -> None:
    with warehouse.engine.begin() as conn:
        assert upsert(conn, tables.member, [], ["list_id", "member_id"]) == 0


def _assert_counts_say_what_happened(engine, tables: WarehouseTables, strategy: str) -> None:
    key = ["list_id", "member_id"]
    with engine.begin() as conn:
        first = upsert_counts(conn, tables.member, members(10), key, strategy=strategy)
    second = members(12)
    second[3]["status"] = "unsubscribed"  # changed; 0-2 and 4-9 as stored; 10 and 11 new
    with engine.begin() as conn:
        again = upsert_counts(conn, tables.member, second, key, strategy=strategy)
    assert (first.inserted, first.updated, first.unchanged) == (10, 0, 0)
    assert (again.inserted, again.updated, again.unchanged) == (2, 1, 9)
    stored = snapshot(engine, tables.member)
    assert len(stored) == 12 and [r["status"] for r in stored].count("unsubscribed") == 1


@pytest.mark.parametrize("strategy", ["auto", "on_conflict", "generic"])
def test_upsert_counts_says_what_was_inserted_updated_and_left_alone(warehouse, tables, strategy) -> None:
    _assert_counts_say_what_happened(warehouse.engine, tables, strategy)


@pytest.mark.postgres
def test_upsert_counts_of_the_copy_strategy(pg_warehouse) -> None:
    tables = WarehouseTables()
    tables.create_all(pg_warehouse.engine)
    _assert_counts_say_what_happened(pg_warehouse.engine, tables, "copy")


@pytest.mark.postgres
def test_new_keys_copies_straight_into_the_table_and_a_broken_promise_fails(pg_warehouse) -> None:
    t = WarehouseTables()
    t.create_all(pg_warehouse.engine)
    rows = members(30)
    with pg_warehouse.engine.begin() as conn:
        counts = upsert_counts(conn, t.member, rows, ["list_id", "member_id"], new_keys=True)
    assert counts.inserted == 30
    stored = snapshot(pg_warehouse.engine, t.member, exclude=())
    assert len(stored) == 30 and all(r["synced_at"] is not None for r in stored)
    assert stored[7]["vip"] is True and stored[7]["tags"] == '["Retail"]'
    import psycopg2

    with pg_warehouse.engine.begin() as conn, pytest.raises(psycopg2.IntegrityError, match="duplicate key"):
        upsert_counts(conn, t.member, rows[:1], ["list_id", "member_id"], new_keys=True)


@pytest.mark.postgres
def test_new_keys_with_a_key_repeated_in_the_input_keep_its_last_row(pg_warehouse) -> None:
    """The straight COPY is optimistic: a repeated key rolls it back and the input is de-duplicated."""
    t = WarehouseTables()
    t.create_all(pg_warehouse.engine)
    rows = members(5)
    repeated = {**rows[2], "email_address": "second.copy@example.org"}
    with pg_warehouse.engine.begin() as conn:
        counts = upsert_counts(conn, t.member, [*rows, repeated], ["list_id", "member_id"], new_keys=True)
    assert counts.inserted == 5
    stored = snapshot(pg_warehouse.engine, t.member, exclude=())
    assert len(stored) == 5
    assert [r["email_address"] for r in stored if r["member_id"] == rows[2]["member_id"]] == ["second.copy@example.org"]
