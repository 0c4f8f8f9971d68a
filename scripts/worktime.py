"""How much of a benchmark's time is the product's own work, and how much is waiting for Mailchimp.

Against a realistically slow Mailchimp (the emulator's ``--pace mailchimp``) a sync spends most of
its time waiting for batches. Two independent measures, taken in the sync process:

* **CPU time** (user + system, ``getrusage``) of the process over the run: everything the product
  (and Airflow around it, and SQLite, which runs in-process) computed. Wall time minus CPU time is
  time spent blocked on something else: Mailchimp's batches, HTTP round trips, a PostgreSQL server.
* **Batch wait**: wall time spent inside ``BatchRunner.wait`` (sleeping between polls, plus the
  polls themselves), the time the task was blocked on Mailchimp's batch processing and nothing else.

The CPU share is the stricter figure: it counts the polls' own cost as the product's work.
"""

from __future__ import annotations

import functools
import resource
import time
from typing import Any

ENV_PACE_FLAG = "--pace"
"""A benchmark whose emulator runs with this flag keeps the shipped poll interval (see below)."""


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and its finished children so far."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class BatchWaitClock:
    """Adds up the wall time every ``BatchRunner.wait`` call of this process blocks.

    ``install()`` wraps the method on the class, so the runner an operator builds inside
    ``dag.test()`` is timed too; the wrapper only measures, the call itself is unchanged.
    """

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0

    def install(self) -> "BatchWaitClock":
        from mailchimp_provider.batches.runner import BatchRunner

        original = BatchRunner.wait
        clock = self

        @functools.wraps(original)
        def timed_wait(runner: Any, *args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(runner, *args, **kwargs)
            finally:
                clock.seconds += time.perf_counter() - started
                clock.calls += 1

        BatchRunner.wait = timed_wait  # type: ignore[method-assign]
        return self


def paced(emulator_args: str) -> bool:
    """True when the benchmark's emulator runs a pace profile: the benchmark then keeps the shipped
    poll interval (5 s) instead of its zero-latency one, since a 0.05-0.2 s poll against a batch
    that takes minutes would spend the product's CPU on polls no user would configure."""
    return ENV_PACE_FLAG in emulator_args.split()


def split(wall: float, cpu: float, waited: float) -> dict[str, float]:
    """The figures a benchmark prints: CPU and batch-wait seconds and their shares of ``wall``."""
    return {
        "cpu_seconds": round(cpu, 2),
        "cpu_share": round(cpu / wall, 4) if wall else 0.0,
        "batch_wait_seconds": round(waited, 2),
        "batch_wait_share": round(waited / wall, 4) if wall else 0.0,
    }
