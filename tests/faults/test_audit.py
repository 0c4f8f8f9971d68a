"""Audit before writing: a contact archived in Mailchimp stays archived, whatever the warehouse says.

The sync reads the member changes of its audience before planning (``sync/audit.py``), so it knows
about an archive made by a marketer even when the engagement pull never runs (it does not run in
these tests). Outcomes are read from the emulator's state and counters and from the warehouse.
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from fault_helpers import route_total

PUT_MEMBER = "PUT /lists/{list_id}/members/{subscriber_hash}"
PUT_CUSTOMER = "PUT /ecommerce/stores/{store_id}/customers/{customer_id}"


def archive(h: Any, email: str) -> None:
    """A marketer archives the contact in Mailchimp (``DELETE`` = archive)."""
    from sync.conftest import subscriber_hash

    resp = h.emulator.api("DELETE", f"/lists/{h.list_id()}/members/{subscriber_hash(email)}")
    assert resp.status_code == 204, resp.text


def test_archived_member_stays_archived_until_a_run_with_retry_archived(make_harness: Any, warehouse: Any) -> None:
    from sync.conftest import customer

    h = make_harness(warehouse)
    h.make_audience()
    h.insert(*(customer(f"a{i}", f"reader.{i}@quill-mail.com", minutes=i, marketing_opt_in=True) for i in range(3)))
    first = h.run()
    assert first.state == "success"
    assert {m["status"] for m in h.members()} == {"subscribed"}
    assert h.batch_ops(PUT_MEMBER) == 3

    archive(h, "reader.1@quill-mail.com")
    for n, name in enumerate(("Changed", "Changed again")):  # the row changes, opt-in stays true
        h.update("a1", first_name=name, marketing_opt_in=True)
        run = h.run()
        assert run.state == "success"
        assert h.member("reader.1@quill-mail.com")["status"] == "archived"  # 0 re-subscriptions
        assert h.batch_ops(PUT_MEMBER) == 3  # no write of any kind reached the archived contact
        assert h.outcome(run.run_id, "a1") == [("skip", "skipped", "archived_in_mailchimp")]
        assert h.results(run.run_id)[("a1", "skip")]["status_decision"] == "kept archived"
    assert [h.member(f"reader.{i}@quill-mail.com")["status"] for i in range(3)] == ["subscribed", "archived", "subscribed"]
    # the audit brought the archive into the warehouse (no engagement pull ran)
    t = h.tables.member
    with h.db.connect() as conn:
        pulled = dict(conn.execute(sa.select(t.c.email_address, t.c.status)).all())
    assert pulled["reader.1@quill-mail.com"] == "archived"

    retried = h.run(retry_archived=True)  # the row did not change since the last run: re-added anyway
    assert retried.state == "success"
    assert h.member("reader.1@quill-mail.com")["status"] == "subscribed"
    assert h.outcome(retried.run_id, "a1") == [("upsert", "ok", "readd_archived")]
    assert h.batch_ops(PUT_MEMBER) == 4  # the one re-add, nothing else

    after = h.run()  # and it is an ordinary member again: nothing to send
    assert after.state == "success"
    assert h.results(after.run_id) == {}
    assert h.batch_ops(PUT_MEMBER) == 4


def test_unsubscribed_and_cleaned_members_are_never_subscribed_again(make_harness: Any, warehouse: Any) -> None:
    from sync.conftest import customer, subscriber_hash

    h = make_harness(warehouse)
    h.make_audience()
    h.insert(customer("u1", "left.us@quill-mail.com", marketing_opt_in=True),
             customer("u2", "bounced@quill-mail.com", minutes=1, marketing_opt_in=True))
    assert h.run().state == "success"
    for email, status in (("left.us@quill-mail.com", "unsubscribed"), ("bounced@quill-mail.com", "cleaned")):
        resp = h.emulator.api("PATCH", f"/lists/{h.list_id()}/members/{subscriber_hash(email)}", json={"status": status})
        assert resp.status_code == 200, resp.text
    h.update("u1", first_name="New")
    h.update("u2", first_name="New")
    run = h.run(retry_archived=True)  # retry_archived is about archived contacts only
    assert run.state == "success"
    assert h.member("left.us@quill-mail.com")["status"] == "unsubscribed"
    assert h.member("bounced@quill-mail.com")["status"] == "cleaned"
    assert "never re-subscribed" in h.results(run.run_id)[("u1", "upsert")]["status_decision"]


def test_ecommerce_customer_of_an_archived_member_is_sent_without_opt_in(
    warehouse: Any, emulator: Any, airflow_db: None
) -> None:
    """A customer PUT with ``opt_in_status`` true brings an archived contact back as subscribed:
    the customer sync audits the store's audience first and withholds the opt-in."""
    from ecommerce_harness import STORE_ID, results, run_sync, seed_shop, store_doc
    from sync.conftest import subscriber_hash

    shop = seed_shop(warehouse)
    assert run_sync().state == "success"
    list_id = emulator.api("GET", f"/ecommerce/stores/{STORE_ID}").json()["list_id"]
    member = f"/lists/{list_id}/members/{subscriber_hash('ann.lane@northpeak-mail.com')}"
    assert emulator.api("GET", member).json()["status"] == "subscribed"  # c1 opted in
    assert emulator.api("DELETE", member).status_code == 204
    puts = route_total(emulator, PUT_CUSTOMER, "batch")

    for name in ("Annie", "Ann-Marie"):  # c1 changes twice; marketing_opt_in stays true
        shop.update("customers", {"customer_id": "c1"}, first_name=name)
        run = run_sync()
        assert run.state == "success"
        assert emulator.api("GET", member).json()["status"] == "archived"  # 0 re-subscriptions
        assert store_doc(emulator)["customers"]["c1"]["first_name"] == name  # the customer itself is synced
        assert store_doc(emulator)["customers"]["c1"]["opt_in_status"] is False
        row = next(r for r in results(warehouse.engine, run.run_id) if (r["entity"], r["record_id"]) == ("customer", "c1"))
        assert (row["outcome"], row["status_decision"]) == (
            "ok", "opt-in withheld: the member is archived in Mailchimp (run with retry_archived to re-add it)")
    assert route_total(emulator, PUT_CUSTOMER, "batch") == puts + 2

    shop.update("customers", {"customer_id": "c1"}, first_name="Ann")
    readded = run_sync({"retry_archived": True})
    assert readded.state == "success"
    assert store_doc(emulator)["customers"]["c1"]["opt_in_status"] is True
    assert emulator.api("GET", member).json()["status"] == "subscribed"
