"""The README demo prints the sync task's own figures (one meaning of "records" and "unchanged")
and campaign titles whole."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from sync.conftest import customer

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from scripts.demo_steps import engagement_table, task_summary  # noqa: E402


def test_the_demo_prints_what_the_task_returned_and_records_include_erasures_of_non_customers(
    make_harness: Any, sqlite_warehouse: Any
) -> None:
    h = make_harness(sqlite_warehouse)
    h.insert(customer("c1", "ann.lee@shop-mail.net"), customer("c2", "bo.ng@shop-mail.net"))
    h.request_erasure("gone-1", "never.subscribed@shop-mail.net")
    h.run()
    rerun = h.run()
    metadata = sa.create_engine(os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])

    printed = task_summary(metadata, "mailchimp_audience_sync", rerun.run_id, "sync_members")

    results = h.results(rerun.run_id)
    with_results = {record_id for record_id, _ in results}
    # 3 records: two customer rows and the erasure request of someone who is not a customer
    assert printed["unchanged"]["unchanged"] + len(with_results) == 3
    for outcome in ("ok", "skipped", "failed"):
        assert sum(printed.get(outcome, {}).values()) == sum(r["outcome"] == outcome for r in results.values())


def test_campaign_titles_are_printed_whole() -> None:
    title = "Our autumn collection is here"
    table = engagement_table([{"campaign_id": "c0ffee1234", "title": title, "emails_sent": 480, "opens": 212,
                               "unique_opens": 160, "clicks": 41, "bounces": 3, "unsubscribes": 2}])
    header, line = table.splitlines()
    assert title in line
    assert line.split()[-6:] == ["480", "212", "160", "41", "3", "2"]
    assert header.index("sent") + len("sent") == line.index("480") + len("480")  # numbers line up
