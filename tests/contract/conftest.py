"""Fixtures of the contract specs (the DAG helpers live in test_contract_dags)."""

from __future__ import annotations

from test_contract_dags import fast_audience_config  # noqa: F401 - a fixture both files use
