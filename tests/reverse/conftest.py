"""Fixtures of the engagement pull specs; the helpers are in ``engagement_harness``."""

from __future__ import annotations

from typing import Any

import pytest

from engagement_harness import EngagementHarness


@pytest.fixture
def harness(warehouse: Any, emulator: Any, airflow_db: None) -> EngagementHarness:
    return EngagementHarness(warehouse, emulator)
