"""A shard of the mapped ``pull_email_activity`` SIGKILLed while loading, then retried: it
re-attaches to its own batch, the rows equal those of a clean run, and no campaign is read twice."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from fault_helpers import route_total, wipe_bookkeeping

pytestmark = [pytest.mark.slow, pytest.mark.faults]

EMAIL_ACTIVITY = "GET /reports/{campaign_id}/email-activity"


def test_a_killed_shard_retried_reads_only_its_own_campaigns_and_duplicates_nothing(
    warehouse: Any, emulator: Any, airflow_db: None, tmp_path: Path
) -> None:
    from engagement_harness import EngagementHarness
    from kill_runner import kill_at
    from test_activity_shards import CAMPAIGNS, SHARDS, activity_world, engagement_state, owner, run_activity

    h = EngagementHarness(warehouse, emulator)
    campaign_ids = activity_world(h)
    run_activity(h, SHARDS)
    expected = engagement_state(h)
    wipe_bookkeeping(h.db)
    reads_before = route_total(emulator, EMAIL_ACTIVITY, "batch")
    run_after = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=1)

    kill_at("engagement-sharded", "mid_activity", run_after, tmp_path / "killed.log")
    [killed] = {row["map_index"] for row in h.rows("batch") if row["applied_at"] is None}
    assert killed in range(SHARDS)
    run_activity(h, SHARDS, run_after)

    assert engagement_state(h) == expected
    assert route_total(emulator, EMAIL_ACTIVITY, "batch") - reads_before == len(CAMPAIGNS)  # none read twice
    batches = [row for row in h.rows("batch") if row["entity"] == "email_activity"]
    assert all(row["applied_at"] is not None for row in batches)
    owned = sum(1 for c in campaign_ids if owner(c, SHARDS) == killed)
    assert sum(row["operation_count"] for row in batches if row["map_index"] == killed) == owned
