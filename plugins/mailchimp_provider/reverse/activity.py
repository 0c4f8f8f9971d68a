"""Email activity (opens, clicks, bounces) for many campaigns at once, through batch operations.

Planning is stateless: everything it needs is in the warehouse, so a retried, deferred or
resumed task plans from what is committed, never from memory.

* Which campaigns: every sent campaign in ``mailchimp_campaign`` that has no activity bookmark yet
  (the first load, and campaigns older than the window seen for the first time), plus those sent
  within the recent window (their activity keeps coming).
* From when: ``since = bookmark - lookback``. The bookmark is the latest activity timestamp
  committed for the campaign, and Mailchimp's ``since`` is exclusive, so the lookback re-reads a
  margin that the upsert on ``(campaign_id, member_id, action, timestamp, url_key)`` absorbs.
  ``since`` is sent without fractional seconds (they make Mailchimp answer 500).
* Done in this pass: a campaign whose results were applied gets the marker
  ``email_activity_pass = <run_id>#<clear_number>`` in the same transaction as its rows and its
  bookmark. A retry of the task (same pass) skips it; clearing the task starts a new pass.

* Which task instance: with ``activity.shards`` > 1 the task is mapped, and each instance plans
  only the campaigns it owns (``sharding.shard_of(campaign_id, shards)``). Everything above is kept
  per campaign, so shards share no bookmark, marker or batch (the ledger's scope has the
  ``map_index``), and a retried shard re-attaches to its own batches and re-plans its own campaigns.

Applying a result commits, per campaign, its rows, its bookmark and its pass marker together. A
bookmark is never set later than the batch's submission time (activity cannot be newer than the
read that returned it; this also keeps a clock-skewed or future-dated event from hiding what
arrives next), and only moves forward. A campaign whose operation failed keeps its bookmark; it
is tried again in the pass (``MAX_ATTEMPTS_PER_PASS``), then left to the next run.
"""

from __future__ import annotations

import logging
import operator
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa

from mailchimp_provider.batches.results import OperationResult
from mailchimp_provider.gc_tuning import bulk_allocations
from mailchimp_provider.reverse import rejects, watermarks
from mailchimp_provider.reverse.audiences import mailchimp_time
from mailchimp_provider.reverse.config import EngagementConfig
from mailchimp_provider.reverse.activity_copy import ActivityText, activity_copy_text
from mailchimp_provider.reverse.loading import LoadCounts, merge_rows
from mailchimp_provider.reverse.normalise import ACTIVITY_COLUMNS, NormalisationError, activity_rows
from mailchimp_provider.reverse.rejects import Rejects
from mailchimp_provider.sharding import Shard
from mailchimp_provider.sync.paths import api_path
from mailchimp_provider.warehouse.tables import WarehouseTables, to_utc
from mailchimp_provider.warehouse.upsert import CopyLayout, copy_layout, copy_lines

log = logging.getLogger(__name__)

ENTITY = "email_activity"
WHOLE = Shard()
MAX_ATTEMPTS_PER_PASS = 2
_FAILED = "#failed:"


@dataclass(frozen=True)
class CampaignFetch:
    """One planned ``GET /reports/{campaign_id}/email-activity``."""

    campaign_id: str
    list_id: str | None
    send_time: datetime | None
    since: datetime | None

    def operation(self) -> dict[str, Any]:
        params: dict[str, str] = {"exclude_fields": "emails._links,_links"}
        if self.since is not None:
            params["since"] = mailchimp_time(self.since)
        # No ``count``: a batched GET is paged by Mailchimp itself and returns every email.
        return {
            "method": "GET",
            "path": api_path("reports", self.campaign_id, "email-activity"),
            "operation_id": self.campaign_id,
            "params": params,
        }


def pass_id(context: Any) -> str:
    """``<run_id>#<clear_number>``: the same across retries and deferrals, new when the task is cleared."""
    dag_run = context["dag_run"]
    return f"{dag_run.run_id}#{getattr(dag_run, 'clear_number', 0) or 0}"


def plan(
    conn: sa.Connection,
    tables: WarehouseTables,
    config: EngagementConfig,
    current_pass: str,
    *,
    now: datetime | None = None,
    shard: Shard = WHOLE,
) -> list[CampaignFetch]:
    """Campaigns whose activity this pass still has to read, oldest send first (see module doc);
    only those ``shard`` owns (a stable hash of the campaign id), so a retried shard re-reads its
    own campaigns and no other shard's."""
    now = now or datetime.now(timezone.utc)
    c = tables.campaign
    query = sa.select(c.c.campaign_id, c.c.list_id, c.c.send_time).where(c.c.status == "sent")
    if config.audiences is not None:
        query = query.where(c.c.list_id.in_(config.audiences))
    campaigns = conn.execute(query.order_by(c.c.send_time, c.c.campaign_id)).all()
    bookmarks = watermarks.get_values(conn, tables, watermarks.EMAIL_ACTIVITY)
    passes = watermarks.get_values(conn, tables, watermarks.EMAIL_ACTIVITY_PASS)
    window_start = now - config.campaigns.recent_window
    planned: list[CampaignFetch] = []
    for campaign_id, list_id, send_time in campaigns:
        if not shard.owns(campaign_id):
            continue
        if not _still_to_do(passes.get(campaign_id), current_pass):
            continue
        mark = to_utc(bookmarks[campaign_id]) if campaign_id in bookmarks else None
        recent = send_time is not None and send_time >= window_start
        if mark is not None and not recent:
            continue
        since = mark - config.activity.lookback if mark is not None else None
        planned.append(CampaignFetch(campaign_id, list_id, send_time, since))
    return planned


def _still_to_do(marker: str | None, current_pass: str) -> bool:
    if marker is None or not marker.startswith(current_pass):
        return True
    rest = marker[len(current_pass):]
    if not rest:
        return False  # applied in this pass
    if rest.startswith(_FAILED):
        return int(rest[len(_FAILED):]) < MAX_ATTEMPTS_PER_PASS
    return True  # another pass that shares our prefix (e.g. clear 1 vs 12)


def failed_in_pass(
    conn: sa.Connection, tables: WarehouseTables, current_pass: str, shard: Shard = WHOLE
) -> dict[str, int]:
    """Campaigns (of ``shard``) whose operation failed in this pass, with the number of attempts."""
    out: dict[str, int] = {}
    for campaign_id, marker in watermarks.get_values(conn, tables, watermarks.EMAIL_ACTIVITY_PASS).items():
        if marker.startswith(current_pass + _FAILED) and shard.owns(campaign_id):
            out[campaign_id] = int(marker[len(current_pass + _FAILED):])
    return out


@dataclass
class ApplyOutcome:
    """What applying one batch's results did."""

    counts: LoadCounts = field(default_factory=LoadCounts)
    rejected: LoadCounts = field(default_factory=LoadCounts)
    """Rows written to ``<prefix>rejected_record`` (records that could not be stored)."""
    campaigns: int = 0
    failures: list[str] = field(default_factory=list)


def apply_results(
    engine: sa.Engine,
    tables: WarehouseTables,
    config: EngagementConfig,
    results: Iterator[OperationResult],
    *,
    current_pass: str,
    submitted_at: datetime | None,
) -> ApplyOutcome:
    """Load each campaign's activity and move its bookmark, one transaction per campaign.

    Two stages overlap: this thread reads the archive and turns the next campaign's emails into
    rows (on PostgreSQL: COPY lines, see ``activity_copy``) while ``activity.writers`` writer
    threads, one connection each, commit the campaigns before it (COPY and commit wait on the
    database, not on Python; PostgreSQL's COPY is the slowest stage, and two connections load
    two campaigns at once). At most ``writers + 1`` campaigns are in memory, so memory stays flat.
    Campaigns are independent transactions, so their commit order does not matter; a campaign
    whose answer comes in several results (Mailchimp pages a batched GET into several operations)
    is written one result after the other. An error stops the stream: campaigns already handed
    over are committed first (each is complete on its own), then the error is raised. SQLite
    loads inline.
    """
    outcome = ApplyOutcome()
    layout = _copy_layout(engine, tables)
    ceiling = to_utc(submitted_at) if submitted_at is not None else datetime.now(timezone.utc)
    pending: deque[tuple[str, Future[tuple[LoadCounts, LoadCounts] | None]]] = deque()

    def collect(future: Future[tuple[LoadCounts, LoadCounts] | None]) -> None:
        done = future.result()  # a writer error is raised here
        if done is not None:
            outcome.counts.add(done[0])
            outcome.rejected.add(done[1])
            outcome.campaigns += 1

    writers = 1 if engine.dialect.name == "sqlite" else config.activity.writers
    with bulk_allocations(), _writer(engine, writers) as writer:
        try:
            for result in results:
                campaign_id = result.operation_id
                if not campaign_id and isinstance(result.body, dict):
                    campaign_id = result.body.get("campaign_id")
                if not campaign_id:
                    outcome.failures.append(
                        f"an operation without operation_id answered HTTP {result.status_code}; skipped"
                    )
                    log.error(
                        "Batch result without an operation id (HTTP %s): cannot tell which campaign it is",
                        result.status_code,
                    )
                    continue
                load = _CampaignLoad.prepare(campaign_id, result, layout)
                while any(pending_id == campaign_id for pending_id, _ in pending):
                    # Another page of a campaign still being written: its first-read check must see
                    # the earlier page committed, so one campaign is written by one writer at a time.
                    collect(pending.popleft()[1])
                if load is None:
                    outcome.failures.append(_failure_message(campaign_id, result))
                    future = writer.submit(_record_failure, engine, tables, campaign_id, current_pass)
                else:
                    future = writer.submit(_commit_campaign, engine, tables, config, load, ceiling, current_pass)
                pending.append((campaign_id, future))
                while len(pending) > writers:
                    collect(pending.popleft()[1])
            while pending:
                collect(pending.popleft()[1])
        except BaseException:
            for _, future in pending:
                future.cancel()  # not started yet: dropped; already running: committed on exit
            raise
    return outcome


def _writer(engine: sa.Engine, writers: int) -> Executor:
    """Writer threads (one connection each) on a client/server database; inline on SQLite, which
    takes one writer at a time anyway."""
    if engine.dialect.name == "sqlite":
        return _Inline()
    return ThreadPoolExecutor(max_workers=writers, thread_name_prefix="activity-writer")


class _Inline(Executor):
    """An executor that runs each call at once in the caller's thread."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future


def campaign_rows(campaign_id: str, body: dict[str, Any], rejected: Rejects) -> list[dict[str, Any]]:
    """Every activity row of one campaign's ``email-activity`` answer; records that cannot be
    stored (and an answer whose ``emails`` is no list) go to ``rejected``."""
    emails = body.get("emails")
    if emails is None:
        return []
    if not isinstance(emails, list):
        rejected.add(NormalisationError(
            f"email activity of campaign {campaign_id!r}", "emails", type(emails).__name__, "a list"), body)
        return []
    per_email = rejected.normalise(emails, lambda email: list(activity_rows(email, campaign_id)))
    return [row for rows in per_email for row in rows]


def _copy_layout(engine: sa.Engine, tables: WarehouseTables) -> CopyLayout | None:
    """The COPY layout of activity rows where the database loads COPY text (PostgreSQL + psycopg2)."""
    if engine.dialect.name != "postgresql" or engine.dialect.driver != "psycopg2":
        return None
    return copy_layout(tables.activity, ACTIVITY_COLUMNS, engine.dialect)


@dataclass(frozen=True)
class _CampaignLoad:
    """One campaign's answer, normalised for the writer: on PostgreSQL its COPY lines when the
    answer has the plain shape (``activity_copy``), else its rows. Preparing it raises any
    ``NormalisationError`` in the reading thread, before later campaigns are handed over."""

    campaign_id: str
    result: OperationResult
    layout: CopyLayout | None
    text: ActivityText | None
    normalised: list[dict[str, Any]] | None
    rejected: Rejects

    @classmethod
    def prepare(cls, campaign_id: str, result: OperationResult, layout: CopyLayout | None) -> "_CampaignLoad | None":
        """The load of a successful answer; None for a failed operation (or a body that is no object)."""
        if not result.ok:
            return None
        rejected = Rejects(ENTITY, campaign_id)
        if layout is not None and result.response_text is not None:
            text = activity_copy_text(campaign_id, result.response_text, layout, rejected)
            if text is not None:
                return cls(campaign_id, result, layout, text, None, rejected)
        if not isinstance(result.body, dict):
            return None
        return cls(campaign_id, result, layout, None, campaign_rows(campaign_id, result.body, rejected), rejected)

    def rows(self) -> list[dict[str, Any]]:
        """The rows the reference way (derived again from the answer if only COPY lines were made)."""
        if self.normalised is not None:
            return self.normalised
        return campaign_rows(self.campaign_id, self.result.body, Rejects(ENTITY, self.campaign_id))


def _commit_campaign(
    engine: sa.Engine,
    tables: WarehouseTables,
    config: EngagementConfig,
    load: _CampaignLoad,
    ceiling: datetime,
    current_pass: str,
) -> tuple[LoadCounts, LoadCounts]:
    """One transaction: the campaign's rows, its rejected records, its bookmark and its pass
    marker; returns the counts of the activity and rejected-record tables.

    A campaign with nothing stored yet (its first read) is COPYed straight from its lines; should
    a key repeat among them, or be stored after all, the rows take the de-duplicating upsert.
    """
    campaign_id = load.campaign_id
    t = tables.activity
    with engine.begin() as conn:
        scope = t.c.campaign_id == campaign_id
        fresh = conn.execute(sa.select(sa.literal(1)).select_from(t).where(scope).limit(1)).first() is None
        text = load.text
        if fresh and text is not None and load.layout is not None and (
            not text.rows or copy_lines(conn, load.layout, text.text)
        ):
            counts, newest = LoadCounts(gained=text.rows), text.newest
        else:
            rows = load.rows()
            newest = max(map(_TIMESTAMP, rows), default=None)
            # After a refused COPY (a key repeats within the answer) a straight COPY would only
            # fail again: merge through the staging table, which de-duplicates.
            counts = merge_rows(
                conn, t, rows, tables.key("activity"), chunk_size=config.activity.insert_chunk_size,
                new_keys=fresh and text is None,
            )
        rejected = rejects.store(conn, tables, load.rejected)
        _move_bookmark(conn, tables, campaign_id, newest, ceiling)
        watermarks.set_values(conn, tables, watermarks.EMAIL_ACTIVITY_PASS, {campaign_id: current_pass})
    return counts, rejected


_TIMESTAMP = operator.itemgetter("timestamp")


def _move_bookmark(
    conn: sa.Connection, tables: WarehouseTables, campaign_id: str, newest: datetime | None, ceiling: datetime
) -> None:
    if newest is not None:
        watermarks.advance_timestamps(conn, tables, watermarks.EMAIL_ACTIVITY, {campaign_id: min(newest, ceiling)})
        return
    if watermarks.get_value(conn, tables, watermarks.EMAIL_ACTIVITY, campaign_id) is None:
        # Read, and nothing happened yet: nothing can predate the send, so start from there.
        c = tables.campaign
        send_time = conn.execute(sa.select(c.c.send_time).where(c.c.campaign_id == campaign_id)).scalar_one_or_none()
        start = min(send_time, ceiling) if send_time is not None else ceiling - timedelta(seconds=1)
        watermarks.advance_timestamps(conn, tables, watermarks.EMAIL_ACTIVITY, {campaign_id: start})


def _failure_message(campaign_id: str, result: OperationResult) -> str:
    message = f"campaign {campaign_id}: HTTP {result.status_code} {result.title}: {result.detail}"
    log.warning("Email activity of %s; its bookmark is unchanged, so it is read again later.", message)
    return message


def _record_failure(engine: sa.Engine, tables: WarehouseTables, campaign_id: str, current_pass: str) -> None:
    """Count the failed attempt in the pass marker (the campaign is retried up to MAX_ATTEMPTS_PER_PASS)."""
    with engine.begin() as conn:
        attempts = failed_in_pass(conn, tables, current_pass).get(campaign_id, 0) + 1
        watermarks.set_values(
            conn, tables, watermarks.EMAIL_ACTIVITY_PASS, {campaign_id: f"{current_pass}{_FAILED}{attempts}"}
        )
    log.info("Campaign %s: attempt %d of %d in this pass failed.", campaign_id, attempts, MAX_ATTEMPTS_PER_PASS)
