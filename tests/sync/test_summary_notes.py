"""The task log's summary explains why Mailchimp's "errored" operations and the sync's failures
differ: a 404 on erasing someone who is not in the audience is an errored operation for
Mailchimp's batch, and done (ok) for the sync."""

from __future__ import annotations

from typing import Any

from mailchimp_provider.sync.engine import format_summary, run_summary
from sync.conftest import customer


def test_erasing_someone_not_in_the_audience_is_ok_and_the_summary_says_why(make_harness: Any, sqlite_warehouse: Any) -> None:
    h = make_harness(sqlite_warehouse)
    h.insert(customer("c1", "ann.lee@shop-mail.net"), customer("c2", "bo.ng@shop-mail.net"))
    h.request_erasure("gone-1", "never.subscribed@shop-mail.net")  # not a customer, never in Mailchimp

    run = h.run()

    assert run.state == "success"
    assert h.outcome(run.run_id, "gone-1") == [("erase", "ok", "erase_not_in_audience")]
    assert h.results(run.run_id)[("gone-1", "erase")]["http_status"] == 404  # errored, for Mailchimp's batch
    summary = run_summary(h.db, h.tables, run.run_id, "member")
    assert summary.ok_after_error == [("erase_not_in_audience", 404, 1)]
    text = format_summary(summary)
    assert "1 operation(s) Mailchimp's batches count as errored are ok here: 1 erase_not_in_audience (HTTP 404)" in text
    assert "not in the audience" in text


def test_a_run_without_such_answers_adds_no_note(make_harness: Any, sqlite_warehouse: Any) -> None:
    h = make_harness(sqlite_warehouse)
    h.insert(customer("c1", "ann.lee@shop-mail.net"))
    run = h.run()
    summary = run_summary(h.db, h.tables, run.run_id, "member")
    assert summary.ok_after_error == [] and "note:" not in format_summary(summary)
