"""The audience rules, end to end: ``dag.test()`` of the shipped DAG, emulator, SQLite and PostgreSQL.

One purpose-built customer table exercises every rule; the runs are grouped (dry run, first
sync, no-change rerun, a round of changes, the next run's retry) so each DAG run checks many
rules at once.
"""

from __future__ import annotations

from typing import Any

from sync.conftest import (
    DELETE_PERMANENT,
    PATCH_MEMBER,
    POST_BATCHES,
    POST_TAGS,
    PUT_MEMBER,
    assert_unchanged_check_agrees_with_the_plan,
    customer,
    subscriber_hash,
)

FULL_ADDRESS = {"address1": "12 High St", "city": "Springfield", "province": "IL", "postal_code": "62704", "country_code": "US"}


def seed(h: Any) -> None:
    h.insert(
        customer("c01", "ann.opt@shop-mail.net", marketing_opt_in=True, customer_type="Wholesale",
                 tags="VIP, Newsletter", company="Ann Co", phone="555-0101", **FULL_ADDRESS),
        customer("c02", "ben.noopt@shop-mail.net"),
        customer("c03", "cat.never@shop-mail.net", marketing_opt_in=True, no_marketing=True),
        customer("c04", "dan.guest@shop-mail.net", marketing_opt_in=True, is_guest=True, last_name="Guestlast",
                 customer_type="Retail", company="Guest Co", **FULL_ADDRESS),
        customer("c05", None, marketing_opt_in=True),
        customer("c06", "not-an-email", marketing_opt_in=True),
        customer("c07", "  Shared@Shop-Mail.net ", minutes=1, marketing_opt_in=True),
        customer("c08", "shared@shop-mail.net", minutes=5),
        customer("c09", "eve.partial@shop-mail.net", address1="1 Elm St", city="Springfield"),
        customer("c10", "fay.unsub@shop-mail.net", marketing_opt_in=True),
        customer("c11", "gus.erase@shop-mail.net", marketing_opt_in=True),
        customer("c12", "hal.withdraw@shop-mail.net", marketing_opt_in=True),
        customer("c13", "ida.old@shop-mail.net", marketing_opt_in=True, customer_type="Retail"),
        customer("c14", "jon.conflict@shop-mail.net"),
        customer("c15", "kim.tags@shop-mail.net", tags="Alpha, Beta"),
        customer("c16", "lee.nomkt@shop-mail.net", marketing_opt_in=True),
        customer("c18", "ola.archived@shop-mail.net", marketing_opt_in=True),
        customer("c19", "pat.forgotten@shop-mail.net", marketing_opt_in=True),
    )
    h.request_erasure("c11", "gus.erase@shop-mail.net")


def test_audience_rules_across_runs(make_harness: Any, warehouse: Any) -> None:
    h = make_harness(warehouse, sync={"max_failure_share": 0.5, "min_failures_to_fail": 2, "max_attempts": 2})
    seed(h)
    list_id = h.make_audience()
    # Already in Mailchimp before the first sync: someone who unsubscribed, someone who will ask
    # to be erased, and the owner of an address another customer will move to.
    h.put_member("fay.unsub@shop-mail.net", status_if_new="unsubscribed")
    h.put_member("gus.erase@shop-mail.net", status_if_new="subscribed")
    h.put_member("taken.elsewhere@shop-mail.net", status_if_new="subscribed")
    h.add_reverse_pulled_member("fay.unsub@shop-mail.net", "unsubscribed")
    h.put_member("ola.archived@shop-mail.net", status_if_new="subscribed")  # archived by a marketer
    h.emulator.api("DELETE", f"/lists/{list_id}/members/{subscriber_hash('ola.archived@shop-mail.net')}").raise_for_status()
    h.add_reverse_pulled_member("ola.archived@shop-mail.net", "archived")
    h.put_member("pat.forgotten@shop-mail.net", status_if_new="subscribed")  # erased in Mailchimp's UI
    h.emulator.api("POST", f"/lists/{list_id}/members/{subscriber_hash('pat.forgotten@shop-mail.net')}"
                           "/actions/delete-permanent").raise_for_status()

    # -- dry run: the plan is recorded, nothing is sent -----------------------------------------
    dry = h.run(dry_run=True)
    assert dry.state == "success"
    assert h.total_batch_ops() == 0
    assert h.state("c01") is None
    plan = h.results(dry.run_id)
    assert plan[("c01", "upsert")]["outcome"] == "planned"
    assert plan[("c01", "upsert")]["reason"] == "create"
    assert plan[("c01", "upsert")]["status_decision"] == "new member: subscribed (marketing_opt_in)"
    assert "+Newsletter +VIP +Wholesale" in plan[("c01", "upsert")]["error_detail"]
    assert plan[("c02", "upsert")]["status_decision"] == "new member: transactional (no marketing opt-in)"
    assert plan[("c10", "upsert")]["reason"] == "update"
    assert plan[("c10", "upsert")]["status_decision"] == "kept unsubscribed (never re-subscribed)"
    assert plan[("c11", "erase")]["reason"] == "erase"
    assert plan[("c03", "skip")]["outcome"] == "skipped"

    # -- first sync -----------------------------------------------------------------------------
    first = h.run()
    assert first.state == "success"
    res = h.results(first.run_id)

    ann = h.member("ann.opt@shop-mail.net")
    assert ann["status"] == "subscribed"
    assert {t["name"] for t in ann["tags"]} == {"Wholesale", "VIP", "Newsletter"}
    assert ann["merge_fields"]["ADDRESS"]["addr1"] == "12 High St"
    assert ann["merge_fields"]["COMPANY"] == "Ann Co"
    assert h.state("c01")["tags_managed"] is not None

    assert h.member("ben.noopt@shop-mail.net")["status"] == "transactional"

    assert h.member("cat.never@shop-mail.net") is None
    assert res[("c03", "skip")]["reason"] == "no_marketing"

    guest = h.member("dan.guest@shop-mail.net")
    assert guest["merge_fields"]["FNAME"] == "Firstc04"
    assert guest["merge_fields"]["LNAME"] == "" and guest["merge_fields"]["COMPANY"] == ""
    assert guest["merge_fields"]["ADDRESS"] == ""
    assert guest["tags"] == []

    assert res[("c05", "skip")]["reason"] == "missing_email"
    assert res[("c06", "skip")]["reason"] == "invalid_email"
    assert "not-an-email" in res[("c06", "skip")]["error_detail"]

    assert res[("c07", "skip")]["reason"] == "duplicate_email"
    assert "customer c08" in res[("c07", "skip")]["error_detail"]
    assert res[("c08", "upsert")]["outcome"] == "ok"
    assert h.member("shared@shop-mail.net")["merge_fields"]["FNAME"] == "Firstc08"

    assert h.member("eve.partial@shop-mail.net")["merge_fields"]["ADDRESS"] == ""

    fay = h.member("fay.unsub@shop-mail.net")
    assert fay["status"] == "unsubscribed"
    assert res[("c10", "upsert")]["status_decision"] == "kept unsubscribed (never re-subscribed)"

    assert h.member("ola.archived@shop-mail.net")["status"] == "archived"  # not restored by a write
    assert res[("c18", "skip")]["reason"] == "archived_in_mailchimp"

    pat = res[("c19", "upsert")]  # a compliance answer is recorded as such, and not retried
    assert (pat["outcome"], pat["reason"], pat["error_title"]) == ("skipped", "forgotten_email", "Forgotten Email Not Subscribed")

    assert h.member("gus.erase@shop-mail.net") is None
    assert res[("c11", "erase")]["outcome"] == "ok"
    gus = h.state("c11")
    assert gus["status"] == "erased" and gus["quarantined"] and gus["email"] is None

    sent_first = h.total_batch_ops()
    # c01 c02 c04 c08 c09 c10 c12 c13 c14 c15 c16 c19 upserts + c11 erase; no separate tag calls
    assert h.batch_ops(PUT_MEMBER) == 12
    assert h.batch_ops(DELETE_PERMANENT) == 1
    assert h.batch_ops(POST_TAGS) == 0
    assert sent_first == 13

    # -- a rerun with no change sends nothing ---------------------------------------------------
    # (decided from a compact digest per record: it must agree with the full plan on every row)
    # (the first run's confirmed writes stored their rows' source digests: all 11 take the short way)
    assert assert_unchanged_check_agrees_with_the_plan(h, vouched=11) == 11
    batches_before = h.emulator.admin("GET", "stats")["routes"].get(POST_BATCHES, {}).get("total", 0)
    second = h.run()
    assert second.state == "success"
    assert h.total_batch_ops() == sent_first
    assert h.emulator.admin("GET", "stats")["routes"].get(POST_BATCHES, {}).get("total", 0) == batches_before
    assert {r["outcome"] for r in h.results(second.run_id).values()} == {"skipped"}
    assert h.outcome(second.run_id, "c11") == [("skip", "skipped", "erased")]
    assert h.outcome(second.run_id, "c19") == [("upsert", "skipped", "forgotten_email")]

    # -- a round of changes -----------------------------------------------------------------------
    h.emulator.api("POST", f"/lists/{list_id}/members/{subscriber_hash('kim.tags@shop-mail.net')}/tags",
                   json={"tags": [{"name": "Marketer", "status": "active"}]}).raise_for_status()
    h.update("c01", last_name="Changed")
    h.update("c12", marketing_opt_in=False)
    h.update("c13", email="ida.new@shop-mail.net")
    h.update("c14", email="taken.elsewhere@shop-mail.net")
    h.update("c15", tags="Alpha")
    h.update("c16", no_marketing=True)
    h.update("c11", first_name="Erased but edited")
    members_before = len(h.members())
    assert assert_unchanged_check_agrees_with_the_plan(h, vouched=5) == 5

    third = h.run()
    assert third.state == "success"
    res = h.results(third.run_id)
    assert h.total_batch_ops() == sent_first + 6

    assert res[("c01", "upsert")]["reason"] == "update"
    assert h.member("ann.opt@shop-mail.net")["merge_fields"]["LNAME"] == "Changed"

    assert h.member("hal.withdraw@shop-mail.net")["status"] == "unsubscribed"
    assert res[("c12", "upsert")]["reason"] == "unsubscribe"
    assert "consent withdrawn" in res[("c12", "upsert")]["status_decision"]

    assert h.member("ida.old@shop-mail.net") is None
    ida = h.member("ida.new@shop-mail.net")
    assert ida is not None and ida["status"] == "subscribed"
    assert {t["name"] for t in ida["tags"]} == {"Retail"}
    assert res[("c13", "upsert")]["reason"] == "email_change"
    assert len(h.members()) == members_before  # renamed, not duplicated

    assert res[("c14", "upsert")]["outcome"] == "failed"
    assert res[("c14", "upsert")]["reason"] == "email_conflict"
    assert res[("c14", "upsert")]["error_title"] == "Member Exists"
    assert "taken.elsewhere@shop-mail.net already belongs to another" in res[("c14", "upsert")]["error_detail"]
    assert h.member("jon.conflict@shop-mail.net") is not None

    kim = h.member("kim.tags@shop-mail.net")
    assert {t["name"] for t in kim["tags"]} == {"Alpha", "Marketer"}
    assert res[("c15", "tags")]["outcome"] == "ok"

    assert h.member("lee.nomkt@shop-mail.net")["status"] == "unsubscribed"
    assert res[("c16", "unsubscribe")]["outcome"] == "ok"
    assert h.batch_ops(PATCH_MEMBER) == 1

    assert h.member("gus.erase@shop-mail.net") is None  # erased people are never sent again

    # -- the next run retries the failure only, then quarantines it ------------------------------
    fourth = h.run()
    assert fourth.state == "success"
    assert h.total_batch_ops() == sent_first + 7
    assert h.outcome(fourth.run_id, "c14") == [("upsert", "failed", "email_conflict")]
    jon = h.state("c14")
    assert jon["attempts"] == 2 and jon["quarantined"]

    fifth = h.run()
    assert h.total_batch_ops() == sent_first + 7
    assert h.outcome(fifth.run_id, "c14") == [("upsert", "skipped", "quarantined")]
