"""Email activity through batches when things go wrong: a task killed mid-batch and retried, a batch
that stalls, a batch whose results expire. Bookmarks are never lost and nothing is sent twice."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from engagement_harness import DAG_ID, EngagementHarness, subscriber_hash
from test_engagement_pull_dag import READERS, SENT, at, iso, seed

pytestmark = pytest.mark.parametrize("warehouse", ["sqlite"], indirect=True)

POST_BATCHES = "POST /batches"


def new_open(h: EngagementHarness, campaign_id: str, who: str, hours: float) -> None:
    h.inject(campaign_id, activity=[{"email_address": who, "action": "open", "timestamp": at(hours), "ip": "192.0.2.50"}])


def test_retry_after_the_task_was_killed_mid_batch_reattaches_instead_of_resending(harness: EngagementHarness) -> None:
    """The first try submitted the batch (ledger row committed) and died before applying it."""
    from mailchimp_provider.batches.ledger import BatchLedger, BatchScope
    from mailchimp_provider.batches.runner import BatchRunner
    from mailchimp_provider.hooks.mailchimp import MailchimpHook
    from mailchimp_provider.reverse import activity
    from mailchimp_provider.reverse.campaigns import pull_campaigns

    h = harness
    _, campaign_id = seed(h)
    h.tables.create_all(h.db)
    pull_campaigns(MailchimpHook(), h.db, h.tables, h.config)
    run_after = datetime.now(timezone.utc) + timedelta(seconds=1)
    scope = BatchScope(DAG_ID, f"manual__{run_after.isoformat()}", "pull_email_activity")
    with h.db.connect() as conn:
        planned = activity.plan(conn, h.tables, h.config, f"{scope.run_id}#0")
    runner = BatchRunner(MailchimpHook(), BatchLedger(h.db, h.tables))
    [killed_batch] = runner.submit(scope, activity.ENTITY, [f.operation() for f in planned])
    assert h.route_count(POST_BATCHES) == 1

    h.run(run_after=run_after)

    assert h.batches_sent() == 1  # re-attached to the first try's batch, sent nothing new
    assert len(h.rows("activity")) == 6
    [entry] = [e for e in BatchLedger(h.db, h.tables).entries(scope)]
    assert entry.batch_id == killed_batch


def test_a_stalled_batch_fails_the_task_with_the_bookmark_kept_and_the_next_run_goes_on(harness: EngagementHarness) -> None:
    h = harness
    _, campaign_id = seed(h)
    h.run()
    bookmark = h.watermark("email_activity", campaign_id)
    new_open(h, campaign_id, READERS[6], 6)

    h.faults(stuck_finalizing=True)
    states = h.run(expect="failed")
    assert states["pull_email_activity"] == "failed"
    assert h.batches_sent() == 1 + h.config.activity.max_abandoned_batches  # abandoned, re-sent once
    assert h.watermark("email_activity", campaign_id) == bookmark
    assert (subscriber_hash(READERS[6]), "open") not in {(r["member_id"], r["action"]) for r in h.rows("activity")}

    h.faults(stuck_finalizing=False)
    h.run()
    assert (subscriber_hash(READERS[6]), "open", SENT + timedelta(hours=6)) in {
        (r["member_id"], r["action"], r["timestamp"]) for r in h.rows("activity")
    }
    assert h.watermark("email_activity", campaign_id) > bookmark


def test_an_expired_batch_loses_nothing_and_the_next_run_goes_on_from_the_bookmark(harness: EngagementHarness) -> None:
    h = harness
    _, campaign_id = seed(h)
    h.run()
    bookmark = h.watermark("email_activity", campaign_id)
    new_open(h, campaign_id, READERS[7], 7)

    # Results vanish almost as soon as the batch finishes: before the task can read them.
    h.faults(results_ttl_seconds=0.01)
    h.run(h.with_activity(poll_interval_seconds=0.5), expect="failed")
    assert h.watermark("email_activity", campaign_id) == bookmark

    h.faults(results_ttl_seconds=3600)
    h.run()
    rows = {(r["member_id"], r["timestamp"]) for r in h.rows("activity")}
    assert (subscriber_hash(READERS[7]), SENT + timedelta(hours=7)) in rows
    assert len(rows) == 7


def test_deferrable_wait_in_the_triggerer_loads_the_same_rows(harness: EngagementHarness) -> None:
    h = harness
    _, campaign_id = seed(h)
    h.run(h.with_activity(deferrable=True))
    assert len(h.rows("activity")) == 6
    assert h.watermark("email_activity", campaign_id) == (SENT + timedelta(hours=5)).isoformat()


def test_many_campaigns_are_chunked_into_batches_each_with_its_own_since(harness: EngagementHarness) -> None:
    h = harness
    list_id, first = seed(h)
    others = []
    for n in range(3):
        campaign_id = h.create_campaign(list_id, f"Weekly {n}")
        h.inject(campaign_id, send_time=iso(SENT), activity=[
            {"email_address": READERS[n], "action": "open", "timestamp": at(2 + n), "ip": "192.0.2.9"}])
        others.append(campaign_id)
    h.run()  # 4 campaigns, batch_chunk_size 2
    assert h.batches_sent() == 2
    assert len(h.rows("activity")) == 6 + 3
    for n, campaign_id in enumerate(others):
        assert h.watermark("email_activity", campaign_id) == (SENT + timedelta(hours=2 + n)).isoformat()
    new_open(h, others[1], READERS[7], 9)
    h.run()
    assert len(h.rows("activity")) == 6 + 3 + 1
