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
    assert (row["list_id"], row["member_id"], row["id"]) == ("list1", *[subscriber_hash("ann@shop.com")] * 2)


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
    assert (bounce["url_key"], bounce["url"], bounce["bounce_type"], bounce["ip"]) == ("", None, "soft", None)


def activity(member: str, ip: str) -> dict:
    return {"campaign_id": "c1", "member_id": member, "action": "open",
            "timestamp": datetime(2024, 5, 1, 10, tzinfo=UTC), "url_key": "", "url": None, "list_id": "l1",
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


@pytest.mark.parametrize("as_text", [True, False], ids=["archive-text", "decoded-body"])
def test_a_bad_activity_record_is_kept_whole_and_the_rest_loads(warehouse, as_text: bool) -> None:
    """One unreadable record must neither stop the run nor vanish: it goes to the rejected-record
    table (record, field, raw), its campaign's other rows and every later campaign load, and a
    re-read of the same record does not add a second row. Both the archive path (typed decode on
    PostgreSQL) and already-decoded bodies behave alike."""
    import json

    import sqlalchemy as sa

    from mailchimp_provider.batches.results import OperationResult
    from mailchimp_provider.reverse import activity as pull
    from mailchimp_provider.reverse.config import EngagementConfig
    from mailchimp_provider.warehouse.tables import WarehouseTables

    tables = WarehouseTables()
    tables.create_all(warehouse.engine)

    def email(member: str, ts: str) -> dict:
        return {"email_id": member, "email_address": f"{member}@shop.com", "list_id": "l1",
                "activity": [{"action": "open", "timestamp": ts, "ip": "192.0.2.1"}]}

    answers = {
        "c1": [email("a", "2024-05-01T10:00:00+00:00")],
        "c2": [email("b", "2024-05-01T11:00:00+00:00")],
        "c3": [email("c", "2024-05-01T11:30:00+00:00"), email("x", "yesterday")],
        "c4": [email("d", "2024-05-01T12:00:00+00:00")],
    }

    def results() -> list[OperationResult]:
        if as_text:
            return [OperationResult.from_response(c, 200, json.dumps({"emails": e})) for c, e in answers.items()]
        return [OperationResult(c, 200, {"emails": e}) for c, e in answers.items()]

    for attempt in ("run#0", "run#1"):  # the second pass re-reads everything
        outcome = pull.apply_results(warehouse.engine, tables, EngagementConfig(), iter(results()),
                                     current_pass=attempt, submitted_at=datetime(2024, 6, 1, tzinfo=UTC))
        assert outcome.campaigns == 4 and outcome.rejected.seen == 1
    assert outcome.rejected.gained == 0  # the same record: its row is already there
    r = tables.rejected
    with warehouse.engine.connect() as conn:
        stored = conn.execute(sa.select(tables.activity.c.campaign_id, tables.activity.c.member_id)).all()
        marks = pull.watermarks.get_values(conn, tables, pull.watermarks.EMAIL_ACTIVITY)
        rejected = conn.execute(sa.select(r.c.stream, r.c.scope, r.c.record, r.c.field, r.c.raw)).all()
    assert sorted(stored) == [("c1", "a"), ("c2", "b"), ("c3", "c"), ("c4", "d")]
    assert sorted(marks) == ["c1", "c2", "c3", "c4"]
    [(stream, scope, record, field, raw)] = rejected
    assert (stream, scope, field) == ("email_activity", "c3", "activity.timestamp")
    assert record == "email activity of 'x@shop.com' in campaign 'c3'"
    assert json.loads(raw)["activity"][0]["timestamp"] == "yesterday" and json.loads(raw)["email_id"] == "x"


class _Pages:
    """Stands in for the hook's paginator: hands out the records a test gives, whatever the path."""

    def __init__(self, records: dict[str, list[dict]]) -> None:
        self.records = records

    def paginate(self, path: str, key: str, **_: object):
        yield from self.records.get(key, [])


def test_bad_members_lists_campaigns_and_unsubscribes_are_kept_whole_and_the_rest_loads(warehouse) -> None:
    import sqlalchemy as sa

    from mailchimp_provider.reverse import watermarks
    from mailchimp_provider.reverse.audiences import pull_audiences
    from mailchimp_provider.reverse.campaigns import pull_campaigns
    from mailchimp_provider.reverse.config import EngagementConfig
    from mailchimp_provider.warehouse.tables import WarehouseTables

    tables = WarehouseTables()
    tables.create_all(warehouse.engine)
    bob = {**MEMBER, "email_address": "bob@shop.com", "id": subscriber_hash("bob@shop.com"),
           "last_changed": "last Tuesday"}
    hook = _Pages({
        "lists": [{"id": "list1", "name": "Shop", "date_created": "2024-01-01T00:00:00+00:00"},
                  {"id": "list2", "name": "Odd", "date_created": "the day before"}],
        "members": [MEMBER, bob],
        "campaigns": [{"id": "c1", "status": "sent", "send_time": "2024-05-01T10:00:00+00:00",
                       "recipients": {"list_id": "list1"}},
                      {"id": "c2", "status": "sent", "send_time": "after lunch", "recipients": {"list_id": "list1"}}],
        "reports": [],
        "unsubscribes": [{"email_id": "h1", "email_address": "a@shop.com", "list_id": "list1",
                          "timestamp": "2024-05-02T10:00:00+00:00", "reason": "N/A"},
                         {"email_id": "h2", "email_address": "b@shop.com", "list_id": "list1",
                          "timestamp": "soon", "reason": "N/A"}],
    })
    pull_audiences(hook, warehouse.engine, tables, EngagementConfig(audiences=("list1", "list2")))
    stats = pull_campaigns(hook, warehouse.engine, tables, EngagementConfig())
    assert stats.tables[tables.table_name("rejected")].gained == 2  # campaign c2, and h2's unsubscribe of c1
    r = tables.rejected
    with warehouse.engine.connect() as conn:
        lists = conn.execute(sa.select(tables.list.c.list_id)).scalars().all()
        members = conn.execute(sa.select(tables.member.c.email_address)).scalars().all()
        campaigns = conn.execute(sa.select(tables.campaign.c.campaign_id)).scalars().all()
        unsubscribed = conn.execute(sa.select(tables.unsubscribe.c.member_id)
                                    .where(tables.unsubscribe.c.campaign_id == "c1")).scalars().all()
        rejected = sorted(conn.execute(sa.select(r.c.stream, r.c.scope, r.c.field)).all())
        mark = watermarks.get_timestamp(conn, tables, watermarks.MEMBERS, "list1")
    assert (lists, members, campaigns, unsubscribed) == (["list1"], ["Ann@Shop.com"], ["c1"], ["h1"])
    assert rejected == [("campaign", "*", "send_time"), ("list", "*", "date_created"),
                        ("member", "list1", "last_changed"), ("unsubscribe", "c1", "timestamp")]
    assert mark == datetime(2024, 5, 2, 8, 30, tzinfo=UTC)  # Ann's: the rejected member does not move it


def test_a_campaign_answered_in_several_pages_loads_each_page_once(warehouse) -> None:
    """Mailchimp pages a batched GET into several operations with the same operation_id, and
    pages can overlap while the list changes. The pages of one campaign are written one after the
    other (not by two writers at once), so the second sees the first committed and merges."""
    import json

    import sqlalchemy as sa

    from mailchimp_provider.batches.results import OperationResult
    from mailchimp_provider.reverse import activity as pull
    from mailchimp_provider.reverse.config import EngagementConfig
    from mailchimp_provider.warehouse.tables import WarehouseTables

    tables = WarehouseTables()
    tables.create_all(warehouse.engine)

    def page(members: range) -> OperationResult:
        emails = [{"email_id": f"m{n:05d}", "email_address": f"m{n}@shop.com", "list_id": "l1",
                   "activity": [{"action": "open", "timestamp": "2024-05-01T10:00:00+00:00"}]} for n in members]
        return OperationResult.from_response("c1", 200, json.dumps({"emails": emails}))

    # A long first page and a short overlapping second one: the second is ready while the first
    # is still being written.
    pages = [page(range(0, 20_000)), page(range(19_990, 20_010)), page(range(0, 10))]
    outcome = pull.apply_results(warehouse.engine, tables, EngagementConfig(), iter(pages),
                                 current_pass="run#0", submitted_at=datetime(2024, 6, 1, tzinfo=UTC))
    assert (outcome.counts.gained, outcome.counts.unchanged, outcome.failures) == (20_010, 20, [])
    with warehouse.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(tables.activity)).scalar_one() == 20_010


def test_an_answer_that_repeats_a_record_loads_it_once(warehouse) -> None:
    """A first read whose answer holds one record twice: the straight COPY is refused on the key
    and the rows are merged de-duplicated instead (the last one wins), nothing fails."""
    import json

    import sqlalchemy as sa

    from mailchimp_provider.batches.results import OperationResult
    from mailchimp_provider.reverse import activity as pull
    from mailchimp_provider.reverse.config import EngagementConfig
    from mailchimp_provider.warehouse.tables import WarehouseTables

    tables = WarehouseTables()
    tables.create_all(warehouse.engine)
    emails = [{"email_id": f"m{n}", "email_address": f"m{n}@shop.com", "list_id": "l1",
               "activity": [{"action": "open", "timestamp": "2024-05-01T10:00:00+00:00", "ip": f"192.0.2.{n}"}]}
              for n in (1, 2, 3)]
    emails.append({**emails[0], "activity": [{**emails[0]["activity"][0], "ip": "192.0.2.99"}]})
    outcome = pull.apply_results(
        warehouse.engine, tables, EngagementConfig(),
        iter([OperationResult.from_response("c1", 200, json.dumps({"emails": emails}))]),
        current_pass="run#0", submitted_at=datetime(2024, 6, 1, tzinfo=UTC),
    )
    assert (outcome.counts.gained, outcome.failures) == (3, [])
    with warehouse.engine.connect() as conn:
        stored = dict(conn.execute(sa.select(tables.activity.c.member_id, tables.activity.c.ip)).all())
    assert stored == {"m1": "192.0.2.99", "m2": "192.0.2.2", "m3": "192.0.2.3"}
