"""Shared helpers for the warehouse-layer specs."""

from __future__ import annotations

from typing import Iterator

import pytest


@pytest.fixture(autouse=True)
def _fresh_engine_cache() -> Iterator[None]:
    """``get_engine`` caches engines per process; each test starts and ends without any."""
    from mailchimp_provider.warehouse.connection import dispose_engines

    dispose_engines()
    yield
    dispose_engines()
