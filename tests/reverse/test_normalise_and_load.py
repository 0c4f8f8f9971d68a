"""Mailchimp's odd values made regular, upserts that report what they did, and the member statuses
the forward sync relies on."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from mailchimp_provider.reverse.loading import merge_rows
from mailchimp_provider.reverse.normalise import (
    NormalisationError,
    activity_rows,
    campaign_row,
    member_row,
    subscriber_hash,
)

UTC = timezone.utc
MEMBER = {
    "id": subscriber_hash("Ann@Shop.com"),
    "email_address": "Ann@Shop.com",
    "status": "unsubscribed",
    "unsubscribe_reason": "Other",
    "timestamp_signup": "",
    "timestamp_opt": "2024-05-01T10:00:00+02:00",
    "last_changed": "2024-05-02T08:30:00+00:00",
    "member_rating": "3",
    "vip": False,
    "location": {"latitude": 0, "longitude": 0, "gmtoff": 0, "dstoff": 0, "country_code": "", "timezone": "",
                 "region": "", "new_in_2026": "kept"},
    "tags": [{"id": 7, "name": "Wholesale"}, {"id": 3, "name": "Autumn"}],
    "sms_phone_number": "+15550100",
    "_links": [{"rel": "self"}],
}


def test_member_dates_blank_become_null_and_timestamps_utc() -> None:
    row = member_row(MEMBER, "list1")
    assert row["timestamp_signup"] is None
    assert row["timestamp_opt"] == datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
    assert row["last_changed"].tzinfo == UTC
    assert row["member_rating"] == 3
    assert row["tags"] == ["Autumn", "Wholesale"] and row["tag_count"] == 2
    assert (row["list_id"], row["member_id"]) == ("list1", subscriber_hash("ann@shop.com"))


def test_fields_without_a_column_are_kept_in_extra_not_dropped() -> None:
    row = member_row(MEMBER, "list1")
    assert row["extra"] == {"sms_phone_number": "+15550100", "location": {"new_in_2026": "kept"}}
    campaign = campaign_row({"id": "c1", "send_time": "", "brand_new_field": 1, "settings": {"title": "T", "x": 2}})
    assert campaign["send_time"] is None and campaign["title"] == "T"
    assert campaign["extra"] == {"brand_new_field": 1, "settings": {"x": 2}}


def test_a_bad_value_is_an_error_naming_the_record_and_the_field() -> None:
    with pytest.raises(NormalisationError, match=r"member 'Ann@Shop.com' of list 'list1': field 'last_changed'"):
        member_row({**MEMBER, "last_changed": "yesterday"}, "list1")
    with pytest.raises(NormalisationError, match=r"campaign 'c9'.*'activity.timestamp'"):
        list(activity_rows({"email_address": "b@shop.com", "activity": [{"action": "open", "timestamp": "soon"}]}, "c9"))


def test_email_records_without_activity_yield_no_rows() -> None:
    assert list(activity_rows({"email_id": "h", "email_address": "a@shop.com"}, "c1")) == []
    assert list(activity_rows({"email_id": "h", "email_address": "a@shop.com", "activity": None}, "c1")) == []
    [bounce] = activity_rows(
        {"email_id": "h", "email_address": "a@shop.com", "list_id": "l",
         "activity": [{"action": "bounce", "type": "soft", "timestamp": "2024-05-01T10:00:00+00:00"}]}, "c1")
    assert (bounce["url"], bounce["bounce_type"], bounce["ip"]) == ("", "soft", None)


def activity(member: str, ip: str) -> dict:
    return {"campaign_id": "c1", "member_id": member, "action": "open",
            "timestamp": datetime(2024, 5, 1, 10, tzinfo=UTC), "url": "", "list_id": "l1",
            "email_address": f"{member}@shop.com", "ip": ip, "bounce_type": None, "combination_id": None}


def test_upsert_counts_rows_gained_changed_and_unchanged(warehouse) -> None:
    from mailchimp_provider.warehouse.tables import WarehouseTables

    tables = WarehouseTables()
    tables.create_all(warehouse.engine)
    key = tables.key("activity")
    with warehouse.engine.begin() as conn:
        first = merge_rows(conn, tables.activity, [activity("a", "1.1.1.1"), activity("b", "1.1.1.1")], key)
    with warehouse.engine.begin() as conn:
        again = merge_rows(
            conn, tables.activity,
            # "a" unchanged, "b" changed (twice in the input: the last row wins), "c" new
            [activity("a", "1.1.1.1"), activity("b", "9.9.9.9"), activity("b", "2.2.2.2"), activity("c", "1.1.1.1")],
            key,
        )
    assert (first.gained, first.changed, first.unchanged) == (2, 0, 0)
    assert (again.gained, again.changed, again.unchanged) == (1, 1, 1)
    with warehouse.engine.connect() as conn:
        ips = dict(conn.execute(tables.activity.select().with_only_columns(
            tables.activity.c.member_id, tables.activity.c.ip)).all())
    assert ips == {"a": "1.1.1.1", "b": "2.2.2.2", "c": "1.1.1.1"}


def test_member_statuses_tell_the_forward_sync_who_must_not_be_resubscribed(warehouse) -> None:
    from mailchimp_provider.reverse.statuses import may_resubscribe, member_statuses
    from mailchimp_provider.warehouse.tables import WarehouseTables

    tables = WarehouseTables()
    tables.create_all(warehouse.engine)
    rows = [
        member_row({"email_address": f"{name}@shop.com", "status": status, "last_changed": "2024-05-01T10:00:00+00:00"}, "l1")
        for name, status in (("ann", "subscribed"), ("bob", "unsubscribed"), ("cy", "cleaned"), ("di", "archived"))
    ]
    with warehouse.engine.begin() as conn:
        merge_rows(conn, tables.member, rows, tables.key("member"))
    statuses = member_statuses(warehouse.engine, tables, "l1")
    assert statuses == {
        subscriber_hash("ann@shop.com"): "subscribed", subscriber_hash("bob@shop.com"): "unsubscribed",
        subscriber_hash("cy@shop.com"): "cleaned", subscriber_hash("di@shop.com"): "archived",
    }
    assert [may_resubscribe(statuses[subscriber_hash(f"{n}@shop.com")]) for n in ("ann", "bob", "cy")] == [True, False, False]
    assert member_statuses(warehouse.engine, tables, "other-list") == {}


def test_activity_fields_without_a_column_are_kept_in_extra() -> None:
    [row] = activity_rows(
        {"email_id": "h", "email_address": "a@shop.com", "list_id": "l", "list_is_active": True, "vip": True,
         "activity": [{"action": "open", "timestamp": "2024-05-01T12:00:00+02:00", "ip": "1.2.3.4", "device": "mobile"}]},
        "c1",
    )
    assert row["extra"] == {"vip": True, "device": "mobile"}
    assert row["timestamp"] == datetime(2024, 5, 1, 10, tzinfo=UTC) and row["timestamp"].tzinfo is UTC
    [plain] = activity_rows(
        {"email_id": "h", "activity": [{"action": "open", "timestamp": "2024-05-01T10:00:00+00:00"}]}, "c1")
    assert plain["extra"] is None


def test_applying_results_commits_each_campaign_before_a_bad_one_stops_the_stream(warehouse) -> None:
    """Campaigns are written by a second thread on PostgreSQL; the contract is the same on both."""
    from mailchimp_provider.batches.results import OperationResult
    from mailchimp_provider.reverse import activity as pull
    from mailchimp_provider.reverse.config import EngagementConfig
    from mailchimp_provider.warehouse.tables import WarehouseTables

    tables = WarehouseTables()
    tables.create_all(warehouse.engine)

    def email(member: str, ts: str) -> dict:
        return {"email_id": member, "email_address": f"{member}@shop.com", "list_id": "l1",
                "activity": [{"action": "open", "timestamp": ts, "ip": "192.0.2.1"}]}

    results = [
        OperationResult("c1", 200, {"emails": [email("a", "2024-05-01T10:00:00+00:00")]}),
        OperationResult("c2", 200, {"emails": [email("b", "2024-05-01T11:00:00+00:00")]}),
        OperationResult("c3", 200, {"emails": [email("c", "yesterday")]}),
        OperationResult("c4", 200, {"emails": [email("d", "2024-05-01T12:00:00+00:00")]}),
    ]
    with pytest.raises(NormalisationError, match=r"campaign 'c3'.*'activity.timestamp'"):
        pull.apply_results(warehouse.engine, tables, EngagementConfig(), iter(results),
                           current_pass="run#0", submitted_at=datetime(2024, 6, 1, tzinfo=UTC))
    with warehouse.engine.connect() as conn:
        stored = conn.execute(tables.activity.select().with_only_columns(
            tables.activity.c.campaign_id, tables.activity.c.member_id)).all()
        marks = pull.watermarks.get_values(conn, tables, pull.watermarks.EMAIL_ACTIVITY)
    assert sorted(stored) == [("c1", "a"), ("c2", "b")]
    assert sorted(marks) == ["c1", "c2"]
