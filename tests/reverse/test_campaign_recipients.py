"""``campaign_recipient``: who each campaign was sent to, from ``GET /reports/{id}/sent-to`` through
batch operations, read once per page, with rejected records kept."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from engagement_harness import TASKS, EngagementHarness, subscriber_hash
from test_engagement_pull_dag import READERS, seed

from mailchimp_provider.batches.results import OperationResult
from mailchimp_provider.reverse import recipients, watermarks
from mailchimp_provider.warehouse.tables import WarehouseTables


def test_every_recipient_is_loaded_once_and_matches_mailchimps_report(harness: EngagementHarness) -> None:
    h = harness
    list_id, campaign_id = seed(h)
    assert h.run() == {t: "success" for t in TASKS}

    rows = h.rows("recipient")
    report = h.emulator.api("GET", f"/reports/{campaign_id}").json()  # Mailchimp's own count of sends
    assert len(rows) == report["emails_sent"] == len(READERS)
    by_member = {r["member_id"]: r for r in rows}
    assert set(by_member) == {subscriber_hash(e) for e in READERS}
    assert {r["campaign_id"] for r in rows} == {campaign_id} and {r["list_id"] for r in rows} == {list_id}
    assert by_member[subscriber_hash(READERS[2])]["status"] == "hard"  # delivery status: bounced
    assert by_member[subscriber_hash(READERS[0])]["open_count"] == 2
    assert all(r["_fivetran_synced"] is not None and r["combination_id"] is None for r in rows)

    with h.db.connect() as conn:
        assert recipients.plan(conn, h.tables, h.config, "another-pass") == []  # every page marked done
    h.run()  # incremental: the sent-to list does not change after the send, so it is not read again
    assert len(h.rows("recipient")) == len(READERS)
    assert [b["entity"] for b in h.rows("batch")].count(recipients.ENTITY) == 1


def test_a_record_that_cannot_be_stored_is_kept_and_the_page_still_counts_as_read(warehouse) -> None:
    tables = WarehouseTables()
    tables.create_all(warehouse.engine)
    page = {"sent_to": [
        {"email_id": "a" * 32, "email_address": "a@shop.com", "status": "sent", "open_count": 1,
         "last_open": "2024-05-01T10:00:00+00:00", "absplit_group": "", "gmt_offset": 0, "list_id": "L1"},
        {"email_id": "b" * 32, "email_address": "b@shop.com", "status": "sent", "open_count": "many",
         "list_id": "L1"},
    ]}
    results = iter([
        OperationResult.from_response("c1@0", 200, json.dumps(page)),  # as read from a results archive
        OperationResult.from_response("c2@0", 404, json.dumps({"title": "Resource Not Found", "detail": "gone"})),
    ])
    outcome = recipients.apply_results(warehouse.engine, tables, results, current_pass="p1")
    assert (outcome.pages, outcome.counts.gained, outcome.rejected.gained) == (1, 1, 1)
    assert "HTTP 404" in outcome.failures[0]
    with warehouse.engine.connect() as conn:
        [row] = conn.execute(sa.select(tables.recipient)).mappings().all()
        assert (row["member_id"], row["absplit_group"], row["gmt_offset"]) == ("a" * 32, None, 0)
        [rejected] = conn.execute(sa.select(tables.rejected)).mappings().all()
        assert (rejected["stream"], rejected["scope"], rejected["field"]) == ("campaign_recipient", "c1", "open_count")
        marks = watermarks.get_values(conn, tables, watermarks.CAMPAIGN_RECIPIENT_PAGES)
    assert marks == {"c1@0": "done", "c2@0": "failed:p1"}


@pytest.mark.parametrize("operation_id", ["", "c1", "c1@x"])
def test_an_operation_id_that_names_no_page_is_reported_not_guessed(operation_id: str) -> None:
    assert recipients.parse_scope(operation_id) is None
