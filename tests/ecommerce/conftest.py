"""Fixtures of the e-commerce specs; the shop's rows and the DAG helpers are in ecommerce_harness."""

from __future__ import annotations

from typing import Any

import pytest

from ecommerce_harness import Shop, seed_shop


@pytest.fixture
def shop(warehouse: Any) -> Shop:
    """The small shop of ``ecommerce_harness`` in the (SQLite or PostgreSQL) warehouse."""
    return seed_shop(warehouse)
