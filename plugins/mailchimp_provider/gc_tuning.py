"""Cyclic garbage collection kept out of the way of bulk loads.

Parsing a results archive or a warehouse extract creates and frees millions of small objects
(decoded JSON, row dicts) that never form reference cycles, so reference counting frees them all.
The cyclic collector still runs every 700 allocations and, once older generations fill up,
walks every live object: 15-20% of an activity load's time for nothing. ``bulk_allocations``
raises the youngest generation's threshold for the duration of such a load.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

BULK_THRESHOLD = 200_000
"""Allocations between gen-0 collections during a bulk load (CPython's default is 700)."""

_lock = threading.Lock()
_depth = 0
_saved: tuple[int, int, int] | None = None


@contextmanager
def bulk_allocations() -> Iterator[None]:
    """Collect cycles rarely while the block runs; nestable and thread-safe (the setting is global)."""
    global _depth, _saved
    with _lock:
        if _depth == 0:
            _saved = gc.get_threshold()
            gc.set_threshold(max(BULK_THRESHOLD, _saved[0]), _saved[1], _saved[2])
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _saved is not None:
                gc.set_threshold(*_saved)
                _saved = None
