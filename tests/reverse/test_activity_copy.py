"""The first load's fast path writes exactly the COPY text the reference normaliser would.

``activity_copy_text`` decodes an answer into typed records and formats plain ones itself; records
that are not plain go through ``activity_rows``, and answers outside the typed shape are left to
the caller's generic decode. These tests hold it to the reference text, shape by shape, then load
both into PostgreSQL.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from mailchimp_provider.reverse.activity_copy import ActivityText, activity_copy_text, typed_fields
from mailchimp_provider.reverse.normalise import (
    ACTIVITY_COLUMNS,
    ACTIVITY_EMAIL_FIELDS,
    ACTIVITY_ITEM_FIELDS,
    NormalisationError,
    activity_rows,
)
from mailchimp_provider.reverse.rejects import Rejects
from mailchimp_provider.warehouse.tables import WarehouseTables
from mailchimp_provider.warehouse.upsert import CopyFormatter, copy_layout, copy_lines

UTC = timezone.utc
TABLES = WarehouseTables()
LAYOUT = copy_layout(TABLES.activity, ACTIVITY_COLUMNS, postgresql.psycopg2.dialect())


def email(member: str = "9623d7cfa9ae7a34254499c7001d9a88", *items: dict, **fields) -> dict:
    record = {"campaign_id": "c1", "list_id": "l1", "list_is_active": True, "email_id": member,
              "email_address": f"{member[:6]}@shop.com", "activity": list(items)}
    record.update(fields)
    return record


OPEN = {"action": "open", "timestamp": "2024-05-01T10:00:00+00:00", "ip": "192.0.2.1"}
CLICK = {"action": "click", "timestamp": "2024-05-01T10:00:07+00:00", "ip": "192.0.2.1",
         "url": "https://shop.example.com/sale"}
BOUNCE = {"action": "bounce", "timestamp": "2024-05-01T09:00:00+00:00", "type": "hard"}

SHAPES = {
    "plain open, click and bounce": [email("a1", OPEN, CLICK), email("b2", BOUNCE)],
    "no activity, null activity, empty activity": [
        email("a1"), {**email("b2"), "activity": None}, {"email_id": "c3", "email_address": "c@x.com"}],
    "optional fields missing or empty": [
        email("a1", {"action": "open", "timestamp": "2024-05-01T10:00:00+00:00", "ip": "", "url": None,
                     "combination_id": ""}),
        {"email_id": "b2", "email_address": "b@x.com", "activity": [OPEN]}],
    "bounce without type, open with a stray type": [
        email("a1", {"action": "bounce", "timestamp": "2024-05-01T09:00:00+00:00", "type": ""},
              {**OPEN, "type": "hard"})],
    "list_id null or empty": [email("a1", OPEN, list_id=None), email("b2", OPEN, list_id="")],
    "campaign_id missing or empty in the record": [
        {k: v for k, v in email("a1", OPEN).items() if k != "campaign_id"}, email("b2", OPEN, campaign_id="")],
    "combination id of a multivariate campaign": [email("a1", {**OPEN, "combination_id": "cmb7"})],
    "unknown fields go to extra": [email("a1", OPEN, vip=True), email("b2", {**OPEN, "device": "mobile"})],
    "no email_id: the subscriber hash of the address": [{"email_address": "Ann@Shop.com", "activity": [OPEN]}],
    "timestamps with Z, another offset, fractions, no offset": [
        email("a1", {**OPEN, "timestamp": "2024-05-01T10:00:01Z"},
              {**OPEN, "timestamp": "2024-05-01T12:00:00+02:00"},
              {**OPEN, "timestamp": "2024-05-01T10:00:00.250000+00:00"},
              {**OPEN, "timestamp": "2024-05-01T10:00:03"},
              {**OPEN, "timestamp": "2024-05-01 10:00:04+00:00"},
              {**OPEN, "timestamp": "2024-W18-3T10:00:05+00:00"})],
    "values COPY must escape": [
        email("a1", {**CLICK, "url": "https://x.com/a\tb\\c\nd"}),
        email("b2", OPEN, email_address="back\\slash@x.com")],
    "values that are not strings": [email("a1", {**OPEN, "ip": 3232235777}), email("b2", {**OPEN, "url": 0})],
    "plain and odd records mixed keep their order": [
        email("a1", OPEN), email("b2", {**CLICK, "url": "https://x.com/\t"}), email("c3", CLICK),
        email("d4", {**OPEN, "timestamp": "2024-05-01T12:00:00+02:00"}), email("e5", BOUNCE)],
    "a field without a column among plain records": [email("a1", OPEN), email("b2", OPEN, vip=True)],
}


TYPED = {  # shapes that decode into the typed records (the rest is normalised generically)
    "plain open, click and bounce", "no activity, null activity, empty activity", "optional fields missing or empty",
    "bounce without type, open with a stray type", "list_id null or empty",
    "campaign_id missing or empty in the record", "combination id of a multivariate campaign",
    "timestamps with Z, another offset, fractions, no offset", "values COPY must escape",
    "plain and odd records mixed keep their order",
}


def answer(emails: list) -> str:
    return json.dumps({"emails": emails, "campaign_id": "c1", "total_items": len(emails), "_links": []})


def fast_text(emails: list, layout=LAYOUT) -> tuple[ActivityText | None, Rejects]:
    rejected = Rejects("email_activity", "c1")
    return activity_copy_text("c1", answer(emails), layout, rejected), rejected


def reference_text(emails: list, campaign_id: str = "c1") -> tuple[str, int, datetime | None]:
    rows = [row for e in emails for row in activity_rows(e, campaign_id)]
    parts: list[str] = []
    CopyFormatter(LAYOUT).write(rows, parts.append)
    return "".join(parts), len(rows), max((r["timestamp"] for r in rows), default=None)


@pytest.mark.parametrize("shape", sorted(TYPED))
def test_fast_path_writes_the_reference_text(shape: str) -> None:
    emails = SHAPES[shape]
    fast, rejected = fast_text(emails)
    assert fast is not None and not rejected
    assert (fast.text, fast.rows, fast.newest) == reference_text(emails)


@pytest.mark.parametrize("shape", sorted(set(SHAPES) - TYPED))
def test_answers_outside_the_typed_shape_are_left_to_the_reference(shape: str) -> None:
    assert fast_text(SHAPES[shape])[0] is None
    assert activity_copy_text("c1", "not JSON {", LAYOUT, Rejects("email_activity", "c1")) is None


def test_typed_records_take_exactly_the_fields_that_have_a_column() -> None:
    """A field without a column must fail the typed decode, so that it reaches ``extra``."""
    assert typed_fields() == (ACTIVITY_EMAIL_FIELDS, ACTIVITY_ITEM_FIELDS)


def test_plain_records_are_written_without_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    """The point of the fast path: a plain answer never builds a row dict."""
    from mailchimp_provider.reverse import activity_copy

    monkeypatch.setattr(activity_copy, "activity_rows", lambda *a: pytest.fail("reference used for a plain record"))
    fast, _ = fast_text(SHAPES["plain open, click and bounce"])
    assert fast.rows == 3 and fast.newest == datetime(2024, 5, 1, 10, 0, 7, tzinfo=UTC)
    bounce = dict(zip(ACTIVITY_COLUMNS, fast.text.splitlines()[2].split("\t")))
    assert [bounce[c] for c in ("campaign_id", "member_id", "action", "timestamp")] == [
        "c1", "b2", "bounce", "2024-05-01T09:00:00+00:00"]
    assert (bounce["url_key"], bounce["url"], bounce["bounce_type"]) == ("", "\\N", "hard")


@pytest.mark.parametrize(
    ("emails", "field"),
    [
        ([email("a1", {**OPEN, "timestamp": "yesterday"})], "activity.timestamp"),
        ([email("a1", {"action": "", "timestamp": "2024-05-01T10:00:00+00:00"})], "activity.action"),
    ],
)
def test_bad_records_are_rejected_with_what_the_reference_raises(emails: list, field: str) -> None:
    fast, rejected = fast_text([email("ok", OPEN), *emails])
    assert fast is not None and fast.rows == 1  # the good record still loads
    [row] = rejected.rows
    with pytest.raises(NormalisationError, match=rf"field '{field}'") as reference:
        reference_text(emails)
    assert row["error"] == str(reference.value) and row["field"] == field
    assert json.loads(row["raw"]) == emails[0]


@pytest.mark.parametrize(
    ("emails", "field"),
    [
        ([email("a1", {**OPEN, "timestamp": None})], "activity.timestamp"),
        ([email("a1", {"timestamp": "2024-05-01T10:00:00+00:00"})], "activity.action"),
        ([email("a1", "not an object")], r"activity\[\]"),
        ([email("a1", activity={"action": "open"})], "activity"),
        (["not an object"], r"emails\[\]"),
        ([{"activity": [OPEN]}], "email_id"),
    ],
)
def test_the_reference_names_the_field_of_records_outside_the_typed_shape(emails: list, field: str) -> None:
    assert fast_text(emails)[0] is None
    with pytest.raises(NormalisationError, match=rf"field '{field}'"):
        reference_text(emails)


@pytest.mark.postgres
def test_fast_text_loads_the_rows_the_reference_upsert_loads(pg_warehouse) -> None:
    from mailchimp_provider.warehouse.upsert import upsert

    engine = pg_warehouse.engine
    TABLES.create_all(engine)
    # every typed shape, one member per record so that no key repeats
    emails = [{**e, "email_id": f"m{i}"} for i, e in enumerate(e for shape in sorted(TYPED) for e in SHAPES[shape])]
    t = TABLES.activity
    layout = copy_layout(t, ACTIVITY_COLUMNS, engine.dialect)
    with engine.begin() as conn:
        assert copy_lines(conn, layout, fast_text(emails, layout)[0].text)
        fast = conn.execute(sa.select(t).order_by(*t.primary_key.columns)).all()
        conn.execute(t.delete())
        upsert(conn, t, [r for e in emails for r in activity_rows(e, "c1")], TABLES.key("activity"))
        reference = conn.execute(sa.select(t).order_by(*t.primary_key.columns)).all()
    stamps = {"synced_at", "_fivetran_synced"}  # write times, taken per load
    strip = lambda rows: [tuple(v for k, v in r._mapping.items() if k not in stamps) for r in rows]  # noqa: E731
    assert strip(fast) == strip(reference) and len(fast) >= 10


@pytest.mark.postgres
def test_copy_lines_refuses_a_repeated_key_without_writing_anything(pg_warehouse) -> None:
    engine = pg_warehouse.engine
    TABLES.create_all(engine)
    layout = copy_layout(TABLES.activity, ACTIVITY_COLUMNS, engine.dialect)
    text = fast_text([email("a1", OPEN), email("b2", OPEN), email("a1", OPEN)], layout)[0].text
    with engine.begin() as conn:
        assert copy_lines(conn, layout, text) is False
        assert copy_lines(conn, layout, fast_text([email("z9", OPEN)], layout)[0].text) is True
        stored = conn.execute(sa.select(TABLES.activity.c.member_id)).scalars().all()
    assert stored == ["z9"]
