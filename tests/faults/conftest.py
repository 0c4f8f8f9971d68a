"""The fault suite: every test here is marked ``faults``. The DAG harnesses of the other folders
are reused, not copied: their folders are put on ``sys.path`` here, and the audience sync's
``make_harness`` fixture is re-exported from ``tests/sync/conftest.py``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parents[1]
for folder in ("batches", "ecommerce", "reverse"):
    if str(TESTS / folder) not in sys.path:
        sys.path.append(str(TESTS / folder))

from sync.conftest import make_harness  # noqa: E402,F401  (the fixture, re-exported)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.faults)

