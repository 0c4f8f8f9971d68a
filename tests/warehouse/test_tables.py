"""WarehouseTables: the tables we write, their contract keys, prefix/schema options and types."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from mailchimp_provider.errors import MailchimpConfigError
from mailchimp_provider.warehouse.tables import KINDS, WarehouseTables

CONTRACT_KEYS = {
    "list": ["list_id"],
    "member": ["list_id", "member_id"],
    # The contract's '' -in-the-key parts of campaign_id and url are kept as campaign_key / url_key;
    # campaign_id and url are NULL there, as fivetran/dbt_mailchimp expects (README, "Tables").
    "unsubscribe": ["list_id", "member_id", "campaign_key", "timestamp"],
    "campaign": ["campaign_id"],
    "activity": ["campaign_id", "member_id", "action", "timestamp", "url_key"],
    "sync_state": ["entity", "record_id"],
    "sync_result": ["run_id", "entity", "record_id", "operation"],
    "batch": ["batch_id"],
    "watermark": ["stream", "scope"],
}

CONTRACT_COLUMNS = {
    "list": {"name", "member_count", "date_created"},
    "member": {"email_address", "status", "unsubscribe_reason", "last_changed", "timestamp_opt",
               "timestamp_signup", "member_rating", "vip", "tags"},
    "unsubscribe": {"email_address", "reason"},
    "campaign": {"list_id", "title", "subject_line", "type", "status", "create_time", "send_time", "emails_sent"},
    "activity": {"list_id", "email_address", "ip", "bounce_type"},
    "sync_state": {"payload_hash", "mailchimp_id", "last_outcome", "attempts", "synced_at"},
    "sync_result": {"outcome", "http_status", "error_title", "error_detail", "batch_id"},
    "batch": {"dag_id", "run_id", "task_id", "entity", "status", "total_operations", "finished_operations",
              "errored_operations", "submitted_at", "completed_at"},
}


def test_names_carry_the_prefix_and_the_contract_table_names() -> None:
    t = WarehouseTables()
    assert t.activity.name == "mailchimp_campaign_recipient_activity"
    assert {t.table(k).name for k in KINDS} == {
        "mailchimp_sync_state", "mailchimp_sync_result", "mailchimp_batch", "mailchimp_list",
        "mailchimp_member", "mailchimp_unsubscribe", "mailchimp_campaign",
        "mailchimp_campaign_recipient_activity", "mailchimp_campaign_recipient", "mailchimp_watermark",
        "mailchimp_rejected_record", "mailchimp_automation", "mailchimp_automation_email",
        "mailchimp_automation_recipient", "mailchimp_automation_recipient_activity", "mailchimp_segment",
        "mailchimp_segment_member",
    }
    custom = WarehouseTables(prefix="mc_", schema="marketing")
    assert custom.member.name == "mc_member"
    assert custom.table_name("member") == "marketing.mc_member"
    assert WarehouseTables().table_name("member") == "mailchimp_member"


@pytest.mark.parametrize("kind", sorted(CONTRACT_KEYS))
def test_primary_keys_are_the_contract_keys(kind: str) -> None:
    assert WarehouseTables().key(kind) == CONTRACT_KEYS[kind]


@pytest.mark.parametrize("kind", sorted(CONTRACT_COLUMNS))
def test_tables_hold_at_least_the_contract_columns(kind: str) -> None:
    assert CONTRACT_COLUMNS[kind] <= set(WarehouseTables().table(kind).c.keys())


def test_unknown_kind_is_named_in_the_error() -> None:
    with pytest.raises(KeyError, match="members.*known: sync_state"):
        WarehouseTables().table_name("members")


def test_create_all_creates_every_table_and_is_idempotent(warehouse) -> None:
    t = WarehouseTables()
    t.create_all(warehouse.engine)
    with warehouse.engine.begin() as conn:
        conn.execute(t.batch.insert().values(batch_id="b1", dag_id="d", run_id="r", task_id="t"))
    t.create_all(warehouse.engine)  # second run: no error, data kept

    names = set(sa.inspect(warehouse.engine).get_table_names())
    assert {t.table(k).name for k in KINDS} <= names
    with warehouse.engine.connect() as conn:
        row = conn.execute(sa.select(t.batch)).mappings().one()
    assert row["map_index"] == -1 and row["updated_at"].tzinfo is timezone.utc


def test_a_second_prefix_lives_side_by_side(warehouse) -> None:
    WarehouseTables().create_all(warehouse.engine)
    WarehouseTables(prefix="staging_mc_").create_all(warehouse.engine)
    names = set(sa.inspect(warehouse.engine).get_table_names())
    assert {"mailchimp_member", "staging_mc_member"} <= names


@pytest.mark.postgres
def test_schema_on_postgres_is_created_and_used(pg_warehouse) -> None:
    schema = f"mc_{uuid.uuid4().hex[:6]}"
    t = WarehouseTables(schema=schema)
    t.create_all(pg_warehouse.engine)
    t.create_all(pg_warehouse.engine)
    inspector = sa.inspect(pg_warehouse.engine)
    assert "mailchimp_member" in inspector.get_table_names(schema=schema)
    assert "mailchimp_member" not in inspector.get_table_names()
    with pg_warehouse.engine.begin() as conn:
        conn.execute(t.watermark.insert().values(stream="members", scope="list1", value="x"))
        # the qualified name is what users copy into their own queries
        count = conn.execute(sa.text(f"SELECT count(*) FROM {t.table_name('watermark')}")).scalar()
    assert count == 1


def test_schema_on_sqlite_must_be_an_attached_database(sqlite_warehouse) -> None:
    with pytest.raises(MailchimpConfigError, match="'marketing' is not an attached SQLite database"):
        WarehouseTables(schema="marketing").create_all(sqlite_warehouse.engine)


def test_timestamps_are_stored_in_utc_and_read_back_aware(warehouse) -> None:
    t = WarehouseTables()
    t.create_all(warehouse.engine)
    paris = timezone(timedelta(hours=2))
    with warehouse.engine.begin() as conn:
        conn.execute(t.watermark.insert(), [
            {"stream": "aware", "scope": "x", "updated_at": datetime(2024, 5, 1, 12, 0, tzinfo=paris)},
            {"stream": "naive", "scope": "x", "updated_at": datetime(2024, 5, 1, 10, 0)},
            {"stream": "string", "scope": "x", "updated_at": "2024-05-01T10:00:00+00:00"},
            {"stream": "zulu", "scope": "x", "updated_at": "2024-05-01T10:00:00Z"},
        ])
    with warehouse.engine.connect() as conn:
        stamps = dict(conn.execute(sa.select(t.watermark.c.stream, t.watermark.c.updated_at)).all())
    expected = datetime(2024, 5, 1, 10, 0, tzinfo=timezone.utc)
    assert stamps == {"aware": expected, "naive": expected, "string": expected, "zulu": expected}
    assert all(v.tzinfo is timezone.utc for v in stamps.values())


def test_json_columns_store_sorted_json_text(warehouse) -> None:
    t = WarehouseTables()
    t.create_all(warehouse.engine)
    with warehouse.engine.begin() as conn:
        conn.execute(t.member.insert(), [{
            "list_id": "l1", "member_id": "h1", "merge_fields": {"LNAME": "Khan", "FNAME": "Imogen"},
            "tags": ["VIP", "Wholesale"], "extra": '{"already": "text"}',
        }])
    with warehouse.engine.connect() as conn:
        row = conn.execute(sa.select(t.member)).mappings().one()
    assert row["merge_fields"] == '{"FNAME":"Imogen","LNAME":"Khan"}'
    assert row["tags"] == '["VIP","Wholesale"]'
    assert row["extra"] == '{"already": "text"}'
    assert row["synced_at"].tzinfo is timezone.utc


def test_empty_url_and_campaign_keys_default_to_empty_string_not_null(warehouse) -> None:
    t = WarehouseTables()
    t.create_all(warehouse.engine)
    with warehouse.engine.begin() as conn:
        conn.execute(t.unsubscribe.insert().values(list_id="l", member_id="m", timestamp="2024-01-01T00:00:00Z"))
        conn.execute(t.activity.insert().values(
            campaign_id="c", member_id="m", action="open", timestamp="2024-01-01T00:00:00Z"))
    with warehouse.engine.connect() as conn:
        assert conn.execute(sa.select(t.unsubscribe.c.campaign_key, t.unsubscribe.c.campaign_id)).one() == ("", None)
        assert conn.execute(sa.select(t.activity.c.url_key, t.activity.c.url)).one() == ("", None)


@pytest.mark.postgres
def test_statistics_are_refreshed_after_a_bulk_write_so_lookups_use_the_key_index(pg_warehouse) -> None:
    """Right after a first load PostgreSQL has no statistics and plans key lookups as full index
    scans; refresh_statistics (called by a sync that wrote many records) analyzes the tables."""
    from mailchimp_provider.warehouse.tables import refresh_statistics

    t = WarehouseTables()
    t.create_all(pg_warehouse.engine)
    state = t.sync_state
    now = datetime.now(timezone.utc)
    rows = [{"entity": "member", "record_id": f"C{i:06d}", "payload_hash": "h", "attempts": 0, "updated_at": now}
            for i in range(3000)]
    with pg_warehouse.engine.begin() as conn:
        conn.execute(sa.insert(state), rows)

    def analyzed() -> int:
        with pg_warehouse.engine.connect() as conn:
            return conn.execute(sa.text(
                "SELECT analyze_count FROM pg_stat_user_tables WHERE relname = :name"), {"name": state.name}
            ).scalar_one()

    before = analyzed()
    refresh_statistics(pg_warehouse.engine, [state, t.sync_result])
    deadline = time.monotonic() + 5  # the statistics collector reports asynchronously
    while analyzed() == before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert analyzed() == before + 1
    with pg_warehouse.engine.connect() as conn:
        plan = "\n".join(r[0] for r in conn.execute(sa.text(
            f"EXPLAIN SELECT payload_hash FROM {state.name} WHERE entity = 'member' AND record_id IN ('C000001', 'C000002')")))
    assert "Index Scan" in plan and "Bitmap" not in plan, plan
