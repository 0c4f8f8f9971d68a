"""Bulk loads relax the cyclic garbage collector, and put it back as they found it."""

from __future__ import annotations

import gc
import threading

from mailchimp_provider.gc_tuning import BULK_THRESHOLD, bulk_allocations


def test_the_threshold_is_raised_inside_and_restored_after() -> None:
    before = gc.get_threshold()
    with bulk_allocations():
        assert gc.get_threshold()[0] >= BULK_THRESHOLD
        assert gc.get_threshold()[1:] == before[1:]
    assert gc.get_threshold() == before


def test_nested_and_concurrent_loads_restore_only_when_the_last_one_ends() -> None:
    before = gc.get_threshold()
    inner_entered, outer_may_leave = threading.Event(), threading.Event()

    def other_load() -> None:
        with bulk_allocations():
            inner_entered.set()
            outer_may_leave.wait(5)

    worker = threading.Thread(target=other_load)
    with bulk_allocations():
        with bulk_allocations():
            pass
        assert gc.get_threshold()[0] >= BULK_THRESHOLD  # the nested block did not restore it
        worker.start()
        inner_entered.wait(5)
    assert gc.get_threshold()[0] >= BULK_THRESHOLD  # the other thread's load is still running
    outer_may_leave.set()
    worker.join(5)
    assert gc.get_threshold() == before


def test_an_exception_restores_the_threshold() -> None:
    before = gc.get_threshold()
    try:
        with bulk_allocations():
            raise RuntimeError("load failed")
    except RuntimeError:
        pass
    assert gc.get_threshold() == before
