"""Fixtures for the batch lifecycle tests."""

from __future__ import annotations

from typing import Any

import pytest
from batch_helpers import make_audience


@pytest.fixture
def audience(emulator: Any) -> str:
    return make_audience(emulator)
