"""Lost batch results are never "unchanged": results that expire before they are read.

With ``results_ttl_seconds`` near zero every batch is gone (404) by the time the sync reads it:
the writes happened in Mailchimp, but no answer ever reaches the warehouse. The sync sends each
such record again in the same run, a bounded number of times (``engine.MAX_PASSES``), then fails
the task saying how many records, why and what to do, with every record recorded as ``pending``.
The next run, with results readable again, confirms them. Counts come from the emulator's state
and counters and from the warehouse.
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from fault_helpers import audience_rows

from mailchimp_provider.sync.engine import MAX_PASSES

PUT_MEMBER = "PUT /lists/{list_id}/members/{subscriber_hash}"
EXPIRE_AT_ONCE = {"results_ttl_seconds": 0.0}
KEEP_RESULTS = {"results_ttl_seconds": 3600.0}


def test_audience_first_sync_with_lost_results_fails_with_every_record_pending(
    make_harness: Any, warehouse: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    h = make_harness(warehouse, sync={"max_operations_per_batch": 10})
    rows = audience_rows(30)
    h.insert(*rows)
    h.make_audience()
    h.emulator.admin("POST", "faults", json=EXPIRE_AT_ONCE)

    lost = h.run()

    assert lost.state == "failed"
    log = capfd.readouterr()
    message = next(line for line in (log.out + log.err).splitlines() if "SyncUnconfirmed: " in line)
    assert "SyncUnconfirmed: 30 member record(s) were sent to Mailchimp but their results never arrived" in message
    assert "batch(es) abandoned" in message and "the batch is unknown or expired" in message  # why
    assert "retry or clear this task" in message and "outcome = 'pending'" in message  # what to do
    members = h.members()
    assert len(members) == len({m["email_address"] for m in members}) == 30  # 0 lost, 0 duplicates
    assert h.batch_ops(PUT_MEMBER) == 30 * MAX_PASSES  # planned again in the same run, bounded
    results = h.results(lost.run_id)
    assert {rid for rid, _ in results} == {r["customer_id"] for r in rows}  # every record has a result row
    assert {(op, r["outcome"], r["reason"]) for (_, op), r in results.items()} == {("upsert", "pending", "result_lost")}
    assert {h.state(r["customer_id"])["last_outcome"] for r in rows} == {"pending"}
    assert all(h.state(r["customer_id"])["payload_hash"] is None for r in rows)  # nothing confirmed

    h.emulator.admin("POST", "faults", json=KEEP_RESULTS)
    healed = h.run()

    assert healed.state == "success"
    results = h.results(healed.run_id)
    assert {rid for rid, _ in results} == {r["customer_id"] for r in rows}
    assert {r["outcome"] for r in results.values()} == {"ok"}
    # the members exist: the first run's writes reached Mailchimp, only their answers were lost
    assert {r["reason"] for (_, op), r in results.items() if op == "upsert"} == {"update"}
    assert len(h.members()) == 30
    assert sorted(m["status"] for m in h.members()).count("subscribed") == 24
    assert h.batch_ops(PUT_MEMBER) == 30 * MAX_PASSES + 30  # each record once more, no more


def test_audience_update_with_lost_results_is_never_reported_unchanged(make_harness: Any, warehouse: Any) -> None:
    h = make_harness(warehouse, sync={"max_operations_per_batch": 10})
    rows = audience_rows(20)
    h.insert(*rows)
    h.make_audience()
    assert h.run().state == "success"
    for row in rows[:5]:
        h.update(row["customer_id"], first_name="Renamed")
    h.emulator.admin("POST", "faults", json=EXPIRE_AT_ONCE)

    lost = h.run()

    assert lost.state == "failed"
    results = h.results(lost.run_id)
    assert {rid for rid, _ in results} == {r["customer_id"] for r in rows[:5]}
    assert {r["outcome"] for r in results.values()} == {"pending"}
    assert {m["merge_fields"]["FNAME"] for m in h.members() if m["email_address"] in
            {r["email"] for r in rows[:5]}} == {"Renamed"}  # the writes did happen
    h.emulator.admin("POST", "faults", json=KEEP_RESULTS)
    healed = h.run()
    assert healed.state == "success"
    assert {(rid, r["outcome"], r["reason"]) for (rid, _), r in h.results(healed.run_id).items()} == {
        (r["customer_id"], "ok", "update") for r in rows[:5]}


def test_ecommerce_lost_customer_results_fail_the_task_and_orders_wait_as_customer_pending(
    warehouse: Any, emulator: Any, airflow_db: None
) -> None:
    from ecommerce_harness import ENTITY_ORDER, results, run_sync, seed_shop, store_doc, task_states

    seed_shop(warehouse)
    emulator.admin("POST", "faults", json=EXPIRE_AT_ONCE)

    lost = run_sync()

    assert lost.state == "failed"
    assert task_states(lost)["sync_customers"] == "failed"
    rows = {(r["entity"], r["record_id"]): r for r in results(warehouse.engine, lost.run_id)}
    customers = {rid: (r["outcome"], r["reason"]) for (entity, rid), r in rows.items() if entity == "customer"}
    assert {rid for rid, v in customers.items() if v == ("pending", "result_lost")} == {"c1", "c2"}
    assert sorted(store_doc(emulator)["customers"]) == ["c1", "c2"]  # sent, each once in the store

    # Results readable again; the customers' task is not run, the rest is: orders of the pending
    # customers wait with the true reason.
    emulator.admin("POST", "faults", json=KEEP_RESULTS)
    waiting = run_sync({"entities": [e for e in ENTITY_ORDER if e != "customer"]})
    assert waiting.state == "success"
    reasons = {rid: r["reason"] for r in results(warehouse.engine, waiting.run_id)
               if r["entity"] == "order" for rid in [r["record_id"]]}
    # o5 also lacks its product (p3 is a bad row): it waits for its customer first
    assert {rid for rid, reason in reasons.items() if reason == "customer_pending"} == {"o1", "o2", "o3", "o5"}
    assert reasons["o4"] == "customer_not_synced"  # c3 is no_marketing: never sent, truly not synced
    assert store_doc(emulator)["orders"] == {}

    healed = run_sync()
    assert healed.state == "success"
    doc = store_doc(emulator)
    assert sorted(doc["customers"]) == ["c1", "c2"] and sorted(doc["orders"]) == ["o1", "o2", "o3"]
    rows = {(r["entity"], r["record_id"]): r for r in results(warehouse.engine, healed.run_id)}
    assert {rid for (entity, rid), r in rows.items() if entity == "order" and r["outcome"] == "ok"} == {"o1", "o2", "o3"}
    assert {rid for (entity, rid), r in rows.items() if entity == "customer" and r["outcome"] == "ok"} == {"c1", "c2"}
    list_id = emulator.api("GET", "/ecommerce/stores/test-shop").json()["list_id"]
    members = emulator.api("GET", f"/lists/{list_id}/members", params={"count": 1000}).json()["members"]
    assert len(members) == len({m["email_address"] for m in members}) == 2  # 0 duplicates
