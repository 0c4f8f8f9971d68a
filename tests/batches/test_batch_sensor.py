"""MailchimpBatchSensor run by Airflow (dag.test) against the emulator."""

from __future__ import annotations

from typing import Any

import pytest
from batch_helpers import emails, load_dag, put_member_ops, run_dag, task_outcome

from mailchimp_provider.hooks.mailchimp import MailchimpHook

DAGS = "test_batch_sensor_dags.py"


def submit(audience: str, n: int = 3) -> str:
    return MailchimpHook().submit_batch(put_member_ops(audience, emails(n)))["id"]


@pytest.mark.parametrize("dag_id", ["test_batch_sensor_poke", "test_batch_sensor_deferrable"])
def test_sensor_succeeds_with_the_finished_batch(airflow_db: None, emulator: Any, audience: str, dag_id: str) -> None:
    emulator.admin("POST", "faults", json={"batch_ops_per_second": 6})
    batch_id = submit(audience, 6)

    state, xcoms = task_outcome(run_dag(load_dag(DAGS, dag_id), {"batch_id": batch_id}), "wait")

    assert state == "success"
    assert xcoms["return_value"]["id"] == batch_id and xcoms["return_value"]["status"] == "finished"
    assert xcoms["mailchimp_batch_ids"] == [batch_id]
    assert xcoms["_link_MailchimpBatchLink"] == f"{emulator.base_url}/batches/{batch_id}"


@pytest.mark.parametrize("dag_id", ["test_batch_sensor_deferrable", "test_batch_sensor_reschedule"])
def test_sensor_fails_clearly_on_a_batch_stuck_in_finalizing(
    airflow_db: None, emulator: Any, audience: str, dag_id: str, capfd: pytest.CaptureFixture[str]
) -> None:
    emulator.admin("POST", "faults", json={"stuck_finalizing": True})
    batch_id = submit(audience)

    state, _ = task_outcome(run_dag(load_dag(DAGS, dag_id), {"batch_id": batch_id}), "wait")

    assert state == "failed"
    log = "".join(capfd.readouterr())
    assert "MailchimpBatchStalledError" in log
    assert f"Batch {batch_id}: No progress for" in log and "still compiling the results archive" in log


def test_sensor_fails_clearly_on_an_unknown_or_expired_batch(
    airflow_db: None, emulator: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    state, _ = task_outcome(run_dag(load_dag(DAGS, "test_batch_sensor_poke"), {"batch_id": "0123456789"}), "wait")

    assert state == "failed"
    log = "".join(capfd.readouterr())
    assert "MailchimpBatchExpiredError" in log and "results expired" in log
