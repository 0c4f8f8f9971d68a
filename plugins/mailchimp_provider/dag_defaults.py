"""Conventions every shipped Mailchimp DAG shares: the pool, and retries with backoff.

Mailchimp allows 10 simultaneous connections per API key, counting every client of the account.
Each hook caps its process at ``max_in_flight`` requests (default 8), so the pool that every
Mailchimp task runs in must keep *pool slots x max_in_flight <= 10*: one slot with the default, or
two slots with ``{"max_in_flight": 4}`` in the connection extra. Deferred tasks hold no slot while
Mailchimp processes their batches.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

POOL = "mailchimp_api"
POOL_SLOTS = 1
POOL_DESCRIPTION = "Mailchimp API: pool slots x max_in_flight <= 10 connections per API key"
POOL_COMMAND = f'airflow pools set {POOL} {POOL_SLOTS} "{POOL_DESCRIPTION}"'
"""Run once per Airflow deployment (the demo and docker-compose's airflow-init do)."""


def default_args(
    retries: int = 3,
    retry_delay: timedelta = timedelta(seconds=30),
    max_retry_delay: timedelta = timedelta(minutes=10),
) -> dict[str, Any]:
    """``default_args`` for a Mailchimp DAG: retried with exponential backoff, in the shared pool.

    Retrying is safe: batch operators re-attach to the batches an earlier try submitted.
    """
    return {
        "retries": retries,
        "retry_delay": retry_delay,
        "retry_exponential_backoff": True,
        "max_retry_delay": max_retry_delay,
        "pool": POOL,
    }
