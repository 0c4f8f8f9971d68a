"""Storms: 30% of Mailchimp's answers are 429, 5xx or a held 504, and a failed ``POST /batches`` was
accepted before it failed. Each sync must end exactly as a clean run of the same data does: same
members in Mailchimp, same result rows, same warehouse rows, and no operation applied twice.

Each test runs the same data twice against an emptied account and emptied bookkeeping: once clean,
once in the storm. Tasks get the retries the shipped DAGs have (a try that exhausts its request
retries is retried, as in production).
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from fault_helpers import (
    audience_outcome,
    audience_rows,
    calm,
    clean_ecommerce_run,
    ecommerce_outcome,
    emulator_stats,
    ledger_rows,
    storm,
    wipe_bookkeeping,
)

pytestmark = pytest.mark.slow


def test_audience_sync_in_a_storm_ends_as_a_clean_run(make_harness: Any, warehouse: Any) -> None:
    h = make_harness(warehouse, sync={"max_operations_per_batch": 40})
    h.insert(*audience_rows(200))

    h.make_audience()
    clean = h.run(dag=h.load_dag(retries=2))
    assert clean.state == "success"
    expected = audience_outcome(h, clean.run_id)
    applied, batches = emulator_stats(h.emulator)["operations_applied"], emulator_stats(h.emulator)["batches"]["total"]
    assert Counter(m[1] for m in expected["members"]) == {"subscribed": 160, "transactional": 40}
    assert {r[0] for r in expected["results"]} == {row["customer_id"] for row in audience_rows(200)}

    h.emulator.admin("POST", "reset")
    wipe_bookkeeping(h.db)
    h.make_audience()
    storm(h.emulator)
    stormy = h.run(dag=h.load_dag(retries=2))
    calm(h.emulator)

    assert stormy.state == "success"
    stats = emulator_stats(h.emulator)
    assert stats["injected"] > 0 and stats["injected_after_processing"] > 0, "the storm did not hit"
    assert audience_outcome(h, stormy.run_id) == expected
    assert stats["operations_applied"] == applied  # no batch ran twice
    sent = [row for row in ledger_rows(h.db, stormy.run_id) if row["status"] != "not_sent"]
    assert stats["batches"]["total"] == batches == len(sent)  # no orphan batch


def test_ecommerce_sync_in_a_storm_ends_as_a_clean_run(warehouse: Any, emulator: Any, airflow_db: None) -> None:
    from ecommerce_harness import ORDERS_POST, batch_ops, load_test_dag, run_sync
    from test_kills import result_row_counts

    expected, expected_rows = clean_ecommerce_run(warehouse, emulator)
    emulator.admin("POST", "reset")
    wipe_bookkeeping(warehouse.engine)
    dag = load_test_dag()
    retries = {task.task_id: task.retries for task in dag.tasks}
    for task in dag.tasks:
        task.retries = 2  # as the shipped DAG's tasks have at least
    storm(emulator)
    try:
        stormy = run_sync()
    finally:
        calm(emulator)
        for task in dag.tasks:
            task.retries = retries[task.task_id]

    assert stormy.state == "success"
    stats = emulator_stats(emulator)
    assert stats["injected"] > 0, "the storm did not hit"
    assert ecommerce_outcome(emulator, warehouse.engine, stormy.run_id) == expected
    assert result_row_counts(warehouse.engine, stormy.run_id) == expected_rows
    assert batch_ops(emulator, ORDERS_POST) == len(expected["store"]["orders"])  # no order sent twice
    sent = [row for row in ledger_rows(warehouse.engine, stormy.run_id) if row["status"] != "not_sent"]
    assert stats["batches"]["total"] == len(sent)  # no orphan batch, none sent twice


def engagement_world(h: Any) -> None:
    """An audience of 120 with status changes and three sent campaigns with generated engagement."""
    from datetime import datetime, timedelta, timezone

    list_id = h.make_list("Acme Newsletter")
    readers = [f"reader{i:03d}@brightmail.co" for i in range(120)]
    h.add_members(list_id, readers)
    for email in readers[:6]:
        h.set_status(list_id, email, "unsubscribed")
    sent = (datetime.now(timezone.utc) - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    for title in ("Spring sale", "Summer drop", "Autumn news"):
        h.inject(h.create_campaign(list_id, title), send_time=sent, synthetic=True)


def test_engagement_pull_in_a_storm_writes_the_rows_of_a_clean_run(warehouse: Any, emulator: Any, airflow_db: None) -> None:
    from engagement_harness import EngagementHarness

    h = EngagementHarness(warehouse, emulator)
    engagement_world(h)
    h.run(retries=2, retry_delay=timedelta(0))
    expected = h.snapshot()
    assert all(expected[kind] for kind in ("list", "member", "campaign", "activity")), "nothing to compare"

    wipe_bookkeeping(h.db)
    storm(emulator)
    h.run(retries=2, retry_delay=timedelta(0))
    calm(emulator)

    assert emulator_stats(emulator)["injected"] > 0, "the storm did not hit"
    assert h.snapshot() == expected
