"""``pull_email_activity`` fanned out over mapped task instances (``activity.shards``): the shards
together load exactly what one task loads, each reads only the campaigns it owns, and the batch
ledger keeps each shard's batches apart (``map_index``)."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from engagement_harness import EngagementHarness

SHARDS = 3
CAMPAIGNS = ("Spring sale", "Summer drop", "Autumn news", "Winter deals", "New arrivals", "Last chance", "Thank you")
EMAIL_ACTIVITY = "GET /reports/{campaign_id}/email-activity"


def owner(campaign_id: str, shards: int) -> int:
    """Written out from the definition the docs give (SHA-256 of the id, first 8 bytes, modulo)."""
    return int.from_bytes(hashlib.sha256(campaign_id.encode()).digest()[:8], "big") % shards


def activity_world(h: EngagementHarness) -> list[str]:
    """An audience of 40 and seven campaigns sent two days ago with Mailchimp's generated engagement
    (the emulator's is deterministic), one of them carrying an activity item without an action
    (Mailchimp's reference lists ``action`` on every item: a record to keep in rejected_record)."""
    list_id = h.make_list("Acme Newsletter")
    h.add_members(list_id, [f"reader{i:02d}@brightmail.co" for i in range(40)])
    sent = (datetime.now(timezone.utc) - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    campaign_ids = []
    for title in CAMPAIGNS:
        campaign_id = h.create_campaign(list_id, title)
        h.inject(campaign_id, send_time=sent, synthetic=True)
        campaign_ids.append(campaign_id)
    recipients = h.emulator.state.activity[campaign_ids[0]]["emails"]
    events = next(rec["activity"] for rec in recipients.values() if rec["activity"])
    events[0]["action"] = ""
    return campaign_ids


def activity_dag(h: EngagementHarness, shards: int = 1) -> Any:
    """``pull_campaigns >> pull_email_activity`` of the shipped DAG (the other tasks do not feed
    the activity), with ``shards``."""
    dag = h.dag(h.with_activity(shards=shards)).partial_subset(["pull_email_activity"], include_upstream=True)
    assert set(dag.task_ids) == {"pull_campaigns", "pull_email_activity"}
    return dag


def run_activity(h: EngagementHarness, shards: int = 1, run_after: datetime | None = None) -> None:
    """One ``dag.test()`` run of :func:`activity_dag`; every shard must succeed."""
    now = run_after or datetime.now(timezone.utc)
    run = activity_dag(h, shards).test(logical_date=now, run_after=now)
    states = [(ti.task_id, ti.map_index, str(ti.state)) for ti in run.get_task_instances()]
    assert str(run.state) == "success", states
    assert sorted(m for t, m, _ in states if t == "pull_email_activity") == (list(range(shards)) if shards > 1 else [-1])


def engagement_state(h: EngagementHarness) -> dict[str, Any]:
    """The campaign and activity tables (bookkeeping columns left out), the rejected records and
    the per-campaign activity bookmarks: what a sharded run must leave exactly as an unsharded one."""
    import sqlalchemy as sa

    state: dict[str, Any] = {k: v for k, v in h.snapshot().items() if k in ("campaign", "activity")}
    state["rejected"] = sorted(
        (r["stream"], r["scope"], r["record_hash"], r["field"], r["error"]) for r in h.rows("rejected"))
    t = h.tables.watermark
    with h.db.connect() as conn:
        state["bookmarks"] = sorted(conn.execute(
            sa.select(t.c.scope, t.c.value).where(t.c.stream == "email_activity")).all())
    return state


def batch_campaigns(batch_id: str) -> set[str]:
    """The campaigns a finished batch read, from its results archive (Mailchimp's view)."""
    from mailchimp_provider.hooks.mailchimp import MailchimpHook

    hook = MailchimpHook()
    return {r.operation_id for r in hook.iter_batch_results(hook.get_batch(batch_id))}


@pytest.mark.slow
def test_sharded_pull_loads_row_for_row_what_one_task_loads(harness: EngagementHarness) -> None:
    from faults.fault_helpers import wipe_bookkeeping

    h = harness
    campaign_ids = activity_world(h)
    run_activity(h)
    expected = engagement_state(h)
    assert len(expected["activity"]) > 100 and len(expected["bookmarks"]) == len(CAMPAIGNS)
    assert [r[:2] for r in expected["rejected"]] == [("email_activity", campaign_ids[0])]
    assert {owner(c, SHARDS) for c in campaign_ids} == set(range(SHARDS)), "every shard should own a campaign"

    wipe_bookkeeping(h.db)
    reads_before = h.emulator.admin("GET", "stats")["routes"][EMAIL_ACTIVITY]["batch"]
    run_activity(h, SHARDS)

    assert engagement_state(h) == expected
    # Each campaign was read once, by the task instance that owns it, in that instance's batches.
    reads = h.emulator.admin("GET", "stats")["routes"][EMAIL_ACTIVITY]["batch"] - reads_before
    assert reads == len(CAMPAIGNS)
    read_by: dict[str, int] = {}
    for row in h.rows("batch"):
        if row["entity"] == "email_activity":
            for campaign_id in batch_campaigns(row["batch_id"]):
                assert campaign_id not in read_by, f"{campaign_id} read by two task instances"
                read_by[campaign_id] = row["map_index"]
    assert read_by == {c: owner(c, SHARDS) for c in campaign_ids}


def test_a_shard_count_needs_the_mapped_task_and_is_validated() -> None:
    from mailchimp_provider.errors import MailchimpConfigError
    from mailchimp_provider.operators.engagement import MailchimpEmailActivityPullOperator
    from mailchimp_provider.reverse.config import EngagementConfig, config_from_dict

    config = config_from_dict({"activity": {"shards": 4}})
    with pytest.raises(ValueError, match=r"map it with .partial\(...\).expand\(shard=list\(range\(4\)\)\)"):
        MailchimpEmailActivityPullOperator(task_id="pull_email_activity", config=config)
    with pytest.raises(ValueError, match=r"shard must be in 0..3"):
        MailchimpEmailActivityPullOperator(task_id="pull_email_activity", config=config, shard=4)
    for bad in (0, 5000):
        with pytest.raises(MailchimpConfigError, match="shards"):
            config_from_dict({"activity": {"shards": bad}})
    assert EngagementConfig().activity.shards == 1


def test_the_dag_maps_the_activity_task_only_when_sharded() -> None:
    from engagement_harness import dag_module

    from mailchimp_provider.reverse.config import config_from_dict

    module = dag_module()
    unsharded = module.build_dag(config_from_dict({})).get_task("pull_email_activity")
    sharded = module.build_dag(config_from_dict({"activity": {"shards": 3}})).get_task("pull_email_activity")
    assert type(unsharded).__name__ == "MailchimpEmailActivityPullOperator"
    assert type(sharded).__name__ == "MappedOperator"
    assert sharded.upstream_task_ids == unsharded.upstream_task_ids == {"pull_campaigns"}
