"""BatchProgress: when a wait is finished, still working, stalled, expired or out of time (fake clock)."""

from __future__ import annotations

import pytest

from mailchimp_provider.batches.progress import BatchProgress, Outcome, PollSchedule


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def snap(batch_id: str, status: str, done: int, total: int = 10, errored: int = 0) -> dict:
    return {"id": batch_id, "status": status, "finished_operations": done, "total_operations": total,
            "errored_operations": errored, "_links": [{"rel": "self"}]}


def test_finished_only_when_every_batch_is_finished() -> None:
    clock = Clock()
    progress = BatchProgress(["a", "b"], stall_timeout=60, clock=clock)
    progress.observe("a", snap("a", "finished", 10))
    progress.observe("b", snap("b", "started", 3))
    assert progress.verdict().outcome is Outcome.WORKING
    assert progress.pending() == ["b"]
    progress.observe("b", snap("b", "finished", 10, errored=2))
    verdict = progress.verdict()
    assert verdict.outcome is Outcome.FINISHED and verdict.done
    assert "b (status finished, 10/10 operations finished, 2 errored)" in verdict.message
    assert "_links" not in verdict.snapshots["a"]


def test_movement_of_any_batch_restarts_the_stall_clock() -> None:
    """Mailchimp runs batches one at a time: a pending batch behind a moving one is not stalled."""
    clock = Clock()
    progress = BatchProgress(["a", "b"], stall_timeout=60, clock=clock)
    progress.observe("a", snap("a", "started", 1))
    progress.observe("b", snap("b", "pending", 0, total=0))
    for done in range(2, 10):
        clock.now += 50
        progress.observe("a", snap("a", "started", done))
        progress.observe("b", snap("b", "pending", 0, total=0))
        assert progress.verdict().outcome is Outcome.WORKING
    clock.now += 61
    verdict = progress.verdict()
    assert verdict.outcome is Outcome.STALLED and verdict.stalled == ("a", "b")
    assert "No progress for 61s (stall_timeout=60s)" in verdict.message
    assert "Mailchimp has not started it" in verdict.message


def test_a_batch_stuck_in_finalizing_stalls_with_an_explanation() -> None:
    clock = Clock()
    progress = BatchProgress(["a"], stall_timeout=30, clock=clock)
    progress.observe("a", snap("a", "finalizing", 10))
    clock.now += 29
    progress.observe("a", snap("a", "finalizing", 10))
    assert progress.verdict().outcome is Outcome.WORKING
    clock.now += 1
    verdict = progress.verdict()
    assert verdict.outcome is Outcome.STALLED
    assert "all operations are done but Mailchimp is still compiling the results archive" in verdict.message
    assert "What to do: the batch stays in the ledger" in verdict.message


def test_expired_batches_end_the_wait_once_the_others_are_done() -> None:
    progress = BatchProgress(["a", "b"], stall_timeout=30, clock=Clock())
    progress.observe_expired("a")
    progress.observe("b", snap("b", "started", 1))
    assert progress.verdict().outcome is Outcome.WORKING
    progress.observe("b", snap("b", "finished", 10))
    verdict = progress.verdict()
    assert verdict.outcome is Outcome.EXPIRED and verdict.expired == ("a",)
    assert "clear the task to resubmit; records without a confirmed outcome will be sent again (idempotent)" in verdict.message


def test_max_wait_bounds_a_wait_that_keeps_moving() -> None:
    clock = Clock()
    progress = BatchProgress(["a"], stall_timeout=30, max_wait=100, clock=clock, waited_before=40)
    for done in range(1, 4):
        clock.now += 20
        progress.observe("a", snap("a", "started", done))
    assert progress.verdict().outcome is Outcome.TIMED_OUT
    assert progress.verdict().outcome.value == "error"
    assert "max_wait=100s" in progress.verdict().message


def test_polling_backs_off_gently_and_never_sleeps_past_the_stall_deadline() -> None:
    schedule = PollSchedule(10)
    assert [round(schedule.next(), 2) for _ in range(12)][:4] == [10, 12.5, 15.62, 19.53]
    assert schedule.next() == 60  # capped at 6x the base
    clock = Clock()
    progress = BatchProgress(["a"], stall_timeout=5, poll_interval=10, clock=clock)
    progress.observe("a", snap("a", "started", 1))
    assert progress.next_interval() == pytest.approx(5.05)


def test_checkpoint_restores_the_stall_clock_in_another_process() -> None:
    clock = Clock()
    first = BatchProgress(["a"], stall_timeout=30, clock=clock)
    first.observe("a", snap("a", "finalizing", 10))
    saved = first.checkpoint()
    clock.now += 31
    second = BatchProgress(["a"], stall_timeout=30, clock=clock)
    second.restore(saved)
    second.observe("a", snap("a", "finalizing", 10))
    assert second.verdict().outcome is Outcome.STALLED


@pytest.mark.parametrize("kwargs", [{"stall_timeout": 0}, {"stall_timeout": 5, "max_wait": -1}])
def test_bad_settings_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        BatchProgress(["a"], **kwargs)
