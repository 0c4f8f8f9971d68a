"""MailchimpBatchTrigger: JSON-only kwargs, and exactly one JSON-only event per wait (run directly)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from airflow.sdk._shared.module_loading import import_string
from batch_helpers import emails, put_member_ops

from mailchimp_provider.hooks.mailchimp import MailchimpHook
from mailchimp_provider.triggers.batch import MailchimpBatchTrigger


def run_trigger(trigger: MailchimpBatchTrigger, timeout: float = 20) -> list[dict[str, Any]]:
    """Drive the trigger's async generator to its end and return the payloads it yielded."""

    async def collect() -> list[dict[str, Any]]:
        return [event.payload async for event in trigger.run()]

    return asyncio.run(asyncio.wait_for(collect(), timeout))


def submit(audience: str, n: int = 3) -> str:
    return MailchimpHook().submit_batch(put_member_ops(audience, emails(n)))["id"]


def test_serialize_round_trips_through_the_classpath_and_json() -> None:
    trigger = MailchimpBatchTrigger(["a1b2c3d4e5", "f6a7b8c9d0"], "mailchimp_default", 2.5, 60.0, None, wait_started_at=1700000000.0)
    classpath, kwargs = trigger.serialize()

    assert classpath == "mailchimp_provider.triggers.batch.MailchimpBatchTrigger"
    assert json.loads(json.dumps(kwargs)) == kwargs
    clone = import_string(classpath)(**json.loads(json.dumps(kwargs)))
    assert clone.serialize() == (classpath, kwargs)
    assert kwargs == {
        "batch_ids": ["a1b2c3d4e5", "f6a7b8c9d0"],
        "mailchimp_conn_id": "mailchimp_default",
        "poll_interval": 2.5,
        "stall_timeout": 60.0,
        "max_wait": None,
        "wait_started_at": 1700000000.0,
    }


def test_finished_batches_yield_one_finished_event(emulator: Any, audience: str) -> None:
    emulator.admin("POST", "faults", json={"batch_ops_per_second": 20})
    first, second = submit(audience), submit(audience)

    events = run_trigger(MailchimpBatchTrigger([first, second], "mailchimp_default", poll_interval=0.1, stall_timeout=10))

    assert len(events) == 1
    [event] = events
    assert json.loads(json.dumps(event)) == event
    assert event["status"] == "finished"
    assert set(event["batches"]) == {first, second}
    assert all(b["status"] == "finished" and b["finished_operations"] == 3 for b in event["batches"].values())
    assert first in event["message"] and "3/3 operations finished" in event["message"]


def test_batch_stuck_in_finalizing_yields_a_stalled_event(emulator: Any, audience: str) -> None:
    emulator.admin("POST", "faults", json={"stuck_finalizing": True})
    batch_id = submit(audience)

    started = time.monotonic()
    [event] = run_trigger(MailchimpBatchTrigger([batch_id], poll_interval=0.1, stall_timeout=1.0))

    assert time.monotonic() - started < 5
    assert event["status"] == "stalled"
    assert event["batches"][batch_id]["status"] == "finalizing"
    assert "still compiling the results archive" in event["message"] and "What to do:" in event["message"]


def test_unknown_or_expired_batch_yields_an_expired_event(emulator: Any, audience: str) -> None:
    emulator.admin("POST", "faults", json={"results_ttl_seconds": 0.3})
    batch_id = submit(audience, 1)
    time.sleep(1.0)  # finished and past its results TTL: Mailchimp answers 404

    [event] = run_trigger(MailchimpBatchTrigger([batch_id, "0000000000"], poll_interval=0.1, stall_timeout=10))

    assert event["status"] == "expired"
    assert event["batches"][batch_id]["expired"] is True
    assert "clear the task to resubmit; records without a confirmed outcome will be sent again (idempotent)" in event["message"]


def test_max_wait_yields_an_error_event_that_keeps_the_batch(emulator: Any, audience: str) -> None:
    emulator.admin("POST", "faults", json={"batch_ops_per_second": 2})
    batch_id = submit(audience, 20)

    [event] = run_trigger(MailchimpBatchTrigger([batch_id], poll_interval=0.1, stall_timeout=30, max_wait=0.5))

    assert event["status"] == "error"
    assert "max_wait" in event["message"] and "stays in the ledger" in event["message"]
