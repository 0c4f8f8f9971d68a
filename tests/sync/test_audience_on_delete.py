"""``on_delete: archive`` of the audience sync, through the shipped DAG against the emulator, on
SQLite and PostgreSQL: a member whose customer row left the ``customers`` query is archived
(``DELETE /lists/{list_id}/members/{subscriber_hash}``, which archives: Mailchimp's API reference,
"Archive list member"), under the same mass-delete guard and dry run as e-commerce deletions.
"""

from __future__ import annotations

from typing import Any

import pytest

from sync.conftest import customer

pytestmark = pytest.mark.slow

ARCHIVE = "DELETE /lists/{list_id}/members/{subscriber_hash}"


def delete_customers(h: Any, *ids: str) -> None:
    t = h.source.tables["customers"]
    with h.db.begin() as conn:
        conn.execute(t.delete().where(t.c.customer_id.in_(ids)))


def test_members_whose_customer_row_is_gone_are_archived_under_the_guard(make_harness: Any, warehouse: Any) -> None:
    h = make_harness(warehouse, on_delete="archive", mass_delete={"max_share": 0.5, "min_records": 1})
    h.insert(customer("c1", "amy.keep@shop-mail.net", marketing_opt_in=True),
             customer("c2", "bo.keep@shop-mail.net"),
             customer("c3", "cy.gone@shop-mail.net", marketing_opt_in=True),
             customer("c4", "di.never@shop-mail.net", no_marketing=True))   # never a member: nothing to archive
    assert h.run().state == "success"
    assert {m["email_address"] for m in h.members()} == {"amy.keep@shop-mail.net", "bo.keep@shop-mail.net",
                                                         "cy.gone@shop-mail.net"}

    delete_customers(h, "c3", "c4")
    dry = h.run(dry_run=True)
    assert h.outcome(dry.run_id, "c3") == [("archive", "planned", "archive")]
    assert h.outcome(dry.run_id, "c4") == []
    assert h.results(dry.run_id)[("c3", "archive")]["error_detail"] == (
        "customer c3 (cy.gone@shop-mail.net) is no longer in the customers query")
    assert h.member("cy.gone@shop-mail.net")["status"] == "subscribed", "a dry run sends nothing"

    run = h.run()
    assert h.outcome(run.run_id, "c3") == [("archive", "ok", "archive")]
    assert h.member("cy.gone@shop-mail.net")["status"] == "archived"
    assert h.state("c3")["status"] == "archived"
    archived = h.batch_ops(ARCHIVE)
    assert archived == 1
    ops = h.total_batch_ops()
    assert h.run().state == "success"
    assert h.total_batch_ops() == ops, "a no-change rerun sends no operation (nobody is archived twice)"

    # the view breaks: both remaining members vanish (2 of 2 > max_share): refused, then allowed
    delete_customers(h, "c1", "c2")
    refused = h.run()
    assert h.outcome(refused.run_id, "c1") == [("archive", "skipped", "mass_delete_refused")]
    assert "allow_mass_delete" in h.results(refused.run_id)[("c1", "archive")]["error_detail"]
    assert h.member("amy.keep@shop-mail.net")["status"] == "subscribed"
    allowed = h.run(allow_mass_delete=True)
    assert h.outcome(allowed.run_id, "c2") == [("archive", "ok", "archive")]
    assert {h.member(e)["status"] for e in ("amy.keep@shop-mail.net", "bo.keep@shop-mail.net")} == {"archived"}

    # a row that comes back leaves its member archived until a run with retry_archived
    h.insert(customer("c3", "cy.gone@shop-mail.net", marketing_opt_in=True))
    back = h.run()
    assert h.outcome(back.run_id, "c3") == [("skip", "skipped", "archived_in_mailchimp")]
