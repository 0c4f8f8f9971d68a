"""The audit before writing reads who *left* marketing, not the members the last sync wrote.

After the first audit (the full member walk), each audit reads only archived, unsubscribed and
cleaned members changed since its own watermark (``members_left``): one walk per status. A member
who leaves after a run, or while it runs, is caught by the next audit; a no-change rerun reads as
many members as left, however many the first run wrote. Outcomes come from the emulator's state
and counters, the warehouse, and the ``AuditReport`` of a direct audit.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa

from sync.conftest import customer, subscriber_hash

LIST_MEMBERS = "GET /lists/{list_id}/members"
PUT_MEMBER = "PUT /lists/{list_id}/members/{subscriber_hash}"


def leave(h: Any, email: str, status: str) -> None:
    """The contact leaves marketing in Mailchimp: archived by a marketer, unsubscribed, or cleaned."""
    path = f"/lists/{h.list_id()}/members/{subscriber_hash(email)}"
    if status == "archived":
        resp = h.emulator.api("DELETE", path)
        assert resp.status_code == 204, resp.text
    else:
        resp = h.emulator.api("PATCH", path, json={"status": status})
        assert resp.status_code == 200, resp.text


def audit(h: Any) -> Any:
    from mailchimp_provider.hooks.mailchimp import MailchimpHook
    from mailchimp_provider.sync.audit import audit_members

    return audit_members(MailchimpHook(), h.db, h.tables, h.list_id())


def pulled_status(h: Any, email: str) -> str | None:
    t = h.tables.member
    with h.db.connect() as conn:
        return conn.execute(sa.select(t.c.status).where(t.c.member_id == subscriber_hash(email))).scalar_one_or_none()


def list_reads(h: Any) -> int:
    return int(h.emulator.admin("GET", "stats")["routes"].get(LIST_MEMBERS, {}).get("total", 0))


def seed(h: Any, n: int) -> list[str]:
    emails = [f"reader.{i}@quill-mail.com" for i in range(n)]
    h.insert(*(customer(f"c{i}", email, minutes=i, marketing_opt_in=True) for i, email in enumerate(emails)))
    return emails


@pytest.mark.parametrize("size", [4, 60])
def test_rerun_audit_reads_the_leavers_not_the_members_the_first_run_wrote(
    make_harness: Any, warehouse: Any, size: int
) -> None:
    h = make_harness(warehouse)
    h.make_audience()
    emails = seed(h, size)
    assert h.run().state == "success"
    assert h.batch_ops(PUT_MEMBER) == size  # the first run wrote every member

    before = list_reads(h)
    report = audit(h)  # a no-change audit after the first run: nothing left marketing
    assert (report.full, report.changed) == (False, 0)
    assert list_reads(h) - before == 3  # one walk (here one page) per status: archived, unsubscribed, cleaned

    for email, status in zip(emails[:3], ("archived", "unsubscribed", "cleaned")):
        leave(h, email, status)
    report = audit(h)
    assert report.changed == 3  # the three who left, whatever the size of the first run
    assert report.out_of_marketing == {"archived": 1, "unsubscribed": 1, "cleaned": 1}
    assert [pulled_status(h, e) for e in emails[:3]] == ["archived", "unsubscribed", "cleaned"]
    assert audit(h).changed == 3  # the lookback re-reads the recent edge on purpose, and only it

    rerun = h.run()
    assert rerun.state == "success"
    assert h.results(rerun.run_id) == {}  # nothing to send
    assert h.batch_ops(PUT_MEMBER) == size


def test_first_audit_is_the_full_walk_and_it_sets_the_leavers_watermark(make_harness: Any, warehouse: Any) -> None:
    """Members that exist before the first sync are known as existing (every status is read once)."""
    from mailchimp_provider.reverse import watermarks

    h = make_harness(warehouse)
    h.make_audience()
    h.put_member("signed.up@quill-mail.com", status_if_new="subscribed")
    h.put_member("gone@quill-mail.com", status_if_new="unsubscribed")
    report = audit(h)
    assert (report.full, report.changed, report.since) == (True, 2, None)
    assert pulled_status(h, "signed.up@quill-mail.com") == "subscribed"
    with h.db.connect() as conn:
        left = watermarks.get_timestamp(conn, h.tables, watermarks.MEMBERS_LEFT, h.list_id())
        full = watermarks.get_timestamp(conn, h.tables, watermarks.MEMBERS, h.list_id())
    assert left is not None and full is not None and left >= full


@pytest.mark.parametrize("status", ["archived", "unsubscribed", "cleaned"])
def test_a_member_who_leaves_after_a_run_is_caught_by_the_next_audit(
    make_harness: Any, warehouse: Any, status: str
) -> None:
    h = make_harness(warehouse)
    h.make_audience()
    emails = seed(h, 3)
    assert h.run().state == "success"
    assert h.run().state == "success"  # a rerun: its audit read nothing, and moved the watermark on

    leave(h, emails[1], status)
    h.update("c1", first_name="Changed", marketing_opt_in=True)
    run = h.run()
    assert run.state == "success"
    assert pulled_status(h, emails[1]) == status  # read by the audit (no engagement pull runs here)
    assert h.member(emails[1])["status"] == status  # never subscribed again
    if status == "archived":
        assert h.outcome(run.run_id, "c1") == [("skip", "skipped", "archived_in_mailchimp")]
        assert h.batch_ops(PUT_MEMBER) == 3  # no write reached the archived contact
    else:
        assert h.results(run.run_id)[("c1", "upsert")]["status_decision"] == f"kept {status} (never re-subscribed)"


def test_members_who_leave_while_a_run_writes_are_caught_by_the_next_audit(
    make_harness: Any, warehouse: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The leavers change after the run's audit read the audience and before its writes: the
    next run's audit reads them (its window starts at the last one's watermark minus the lookback)."""
    from mailchimp_provider.sync import audit as audit_module

    h = make_harness(warehouse)
    h.make_audience()
    emails = seed(h, 4)
    assert h.run().state == "success"

    real = audit_module.audit_members
    reports: list[Any] = []

    def audit_then_leave(*args: Any, **kwargs: Any) -> Any:
        reports.append(real(*args, **kwargs))
        if len(reports) == 1:  # inside the run, after its audit, before it plans and writes
            for email, status in zip(emails[1:], ("unsubscribed", "archived", "cleaned")):
                leave(h, email, status)
        return reports[-1]

    monkeypatch.setattr(audit_module, "audit_members", audit_then_leave)
    h.update("c0", first_name="During")  # the run writes c0 only
    during = h.run()
    assert during.state == "success"
    assert reports[0].changed == 0
    assert [pulled_status(h, e) for e in emails[1:]] == [None] * 3  # not seen yet (the first audit met an empty audience)

    for i in (1, 2, 3):
        h.update(f"c{i}", first_name="After", marketing_opt_in=True)
    after = h.run()
    assert after.state == "success"
    assert reports[1].changed == 3
    assert [pulled_status(h, e) for e in emails[1:]] == ["unsubscribed", "archived", "cleaned"]
    assert [h.member(e)["status"] for e in emails[1:]] == ["unsubscribed", "archived", "cleaned"]
    assert h.outcome(after.run_id, "c2") == [("skip", "skipped", "archived_in_mailchimp")]
    assert h.results(after.run_id)[("c1", "upsert")]["status_decision"] == "kept unsubscribed (never re-subscribed)"
    assert h.results(after.run_id)[("c3", "upsert")]["status_decision"] == "kept cleaned (never re-subscribed)"


def test_an_older_read_of_a_member_never_replaces_a_newer_one(warehouse: Any) -> None:
    """The audit and the full walk read the same member at different times: the loader keeps the
    read with the larger ``last_changed`` (and adds no second unsubscribe)."""
    from mailchimp_provider.reverse.audiences import _load_member_page
    from mailchimp_provider.reverse.loading import LoadStats
    from mailchimp_provider.reverse.normalise import member_row
    from mailchimp_provider.warehouse.tables import WarehouseTables

    tables = WarehouseTables()
    tables.create_all(warehouse.engine)
    t0 = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)

    def load(status: str, changed: datetime) -> LoadStats:
        item = {"id": "h1", "email_address": "late@quill-mail.com", "status": status,
                "last_changed": changed.isoformat()}
        stats = LoadStats()
        with warehouse.engine.begin() as conn:
            _load_member_page(conn, tables, "L1", [member_row(item, "L1")], stats)
        return stats

    load("unsubscribed", t0 + timedelta(minutes=5))
    stale = load("subscribed", t0)  # read before the unsubscribe, loaded after it
    assert stale.tables[tables.table_name("member")].unchanged == 1
    with warehouse.engine.connect() as conn:
        assert conn.execute(sa.select(tables.member.c.status)).scalar_one() == "unsubscribed"
        assert conn.execute(sa.select(sa.func.count()).select_from(tables.unsubscribe)).scalar_one() == 1
    load("subscribed", t0 + timedelta(minutes=9))  # a newer read wins
    with warehouse.engine.connect() as conn:
        assert conn.execute(sa.select(tables.member.c.status)).scalar_one() == "subscribed"


def come_back(h: Any, email: str) -> None:
    """The contact asks to come back after having left: Mailchimp refuses ``subscribed`` for an
    unsubscribed contact (compliance state); ``pending`` sends the opt-in confirmation, and
    ``pending`` is marketable."""
    resp = h.emulator.api("PATCH", f"/lists/{h.list_id()}/members/{subscriber_hash(email)}",
                          json={"status": "pending"})
    assert resp.status_code == 200, resp.text


def test_a_member_who_came_back_is_read_once_the_last_full_walk_is_older_than_the_bound(
    make_harness: Any, warehouse: Any
) -> None:
    """The leavers-only audit does not see a return to subscribed; the full walk it falls back to,
    once the last one started ``full_walk_after`` ago, does (and restarts the clock)."""
    h = make_harness(warehouse)
    h.make_audience()
    emails = seed(h, 2)
    assert h.run().state == "success"
    leave(h, emails[0], "unsubscribed")
    assert audit(h).changed == 1
    come_back(h, emails[0])

    report = audit(h)
    assert (report.full, report.changed) == (False, 0)
    assert pulled_status(h, emails[0]) == "unsubscribed"  # stale, on the safe side, within the bound

    from mailchimp_provider.hooks.mailchimp import MailchimpHook
    from mailchimp_provider.sync.audit import audit_members

    later = datetime.now(timezone.utc) + timedelta(hours=25)
    report = audit_members(MailchimpHook(), h.db, h.tables, h.list_id(), now=later)
    assert report.full and report.changed >= 2  # every member changed since the last full walk
    assert pulled_status(h, emails[0]) == "pending"
    report = audit_members(MailchimpHook(), h.db, h.tables, h.list_id(), now=later + timedelta(minutes=1))
    assert not report.full  # the full walk restarted the clock


def test_no_marketing_for_a_member_who_came_back_unsubscribes_them_when_audits_are_full(
    make_harness: Any, warehouse: Any
) -> None:
    """``sync.audit_full_walk_hours: 0``: every audit is the full walk, so a person who re-subscribed
    in Mailchimp (``pending``) and then got ``no_marketing`` in the warehouse is unsubscribed again at once."""
    h = make_harness(warehouse, sync={"audit_full_walk_hours": 0})
    h.make_audience()
    emails = seed(h, 2)
    assert h.run().state == "success"
    leave(h, emails[0], "unsubscribed")
    assert h.run().state == "success"
    come_back(h, emails[0])
    assert h.member(emails[0])["status"] == "pending"

    h.update("c0", no_marketing=True)
    run = h.run()
    assert run.state == "success"
    assert h.member(emails[0])["status"] == "unsubscribed"
    assert h.results(run.run_id)[("c0", "unsubscribe")]["status_decision"] == "unsubscribed: no_marketing set (was pending)"


def test_audit_full_walk_hours_must_not_be_negative() -> None:
    from mailchimp_provider.config import SyncTuning

    assert SyncTuning(audit_full_walk_hours=-1).validate() == [
        ("audit_full_walk_hours", "must not be negative (0: every audit reads every changed member)")]
    assert SyncTuning(audit_full_walk_hours=0).validate() == []
