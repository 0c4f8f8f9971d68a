"""A run parameter belongs to its own run: the next run without it gets the DAG's declared default.

``dag.test()`` runs every run in this process on one DAG object, and Airflow resolves a run's
``params`` onto that DAG's shared ``Param`` objects (``process_params``: ``Param.resolve(value)``
stores the value). A parameter a run does not pass would then keep the previous run's value, where a
task in production (a fresh task process that parses the DAG file) gets the declared default. These
specs hold the test harness to production's behaviour; ``retry_archived`` is the parameter where a
leftover value is a consent breach (it re-subscribes an archived contact).
"""

from __future__ import annotations

from typing import Any

from ecommerce_harness import STORE_ID, results, run_sync, store_doc

WITHHELD = "opt-in withheld: the member is archived in Mailchimp (run with retry_archived to re-add it)"


def _member_path(emulator: Any) -> str:
    from mailchimp_emulator.members import subscriber_hash

    list_id = emulator.api("GET", f"/ecommerce/stores/{STORE_ID}").json()["list_id"]
    return f"/lists/{list_id}/members/{subscriber_hash('ann.lane@northpeak-mail.com')}"


def test_retry_archived_of_one_run_does_not_carry_over_to_the_next(
    airflow_db: None, emulator: Any, shop: Any
) -> None:
    assert run_sync().state == "success"
    member = _member_path(emulator)
    assert emulator.api("DELETE", member).status_code == 204  # a marketer archives c1

    shop.update("customers", {"customer_id": "c1"}, first_name="Annie")
    assert run_sync({"retry_archived": True}).state == "success"  # this run re-adds on purpose
    assert emulator.api("GET", member).json()["status"] == "subscribed"

    assert emulator.api("DELETE", member).status_code == 204  # archived again
    shop.update("customers", {"customer_id": "c1"}, first_name="Ann-Marie")
    run = run_sync()  # no retry_archived: the declared default (false) applies
    assert run.state == "success"
    assert emulator.api("GET", member).json()["status"] == "archived"
    assert store_doc(emulator)["customers"]["c1"]["opt_in_status"] is False
    row = next(r for r in results(shop.engine, run.run_id) if (r["entity"], r["record_id"]) == ("customer", "c1"))
    assert (row["outcome"], row["status_decision"]) == ("ok", WITHHELD)

