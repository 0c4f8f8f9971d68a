"""One bad value is one bad record, and ids are checked, in the audience sync run by Airflow.

The campaign of issue 12 stopped whole runs with a ``ValueError`` that named no record (a date
that is not a date, a boolean 2, undecodable text), sent a NULL ``customer_id`` as the string
``'None'`` and made two members of one customer id. Each such row must now be one ``skipped``
result with a reason naming the column and the value, while the good rows are synced.
"""

from __future__ import annotations

from typing import Any

import pytest

from bad_tables import break_utf8, insert_raw, loosen
from sync.conftest import customer, make_harness  # noqa: F401 - the fixture is used by name

pytestmark = pytest.mark.faults

GOOD = {"g1": "gina.good@northpeak-mail.com", "g2": "gus.good@northpeak-mail.com", "g3": "gil.long@northpeak-mail.com"}
LONG_NAME = "Gil" + "l" * 297  # 300 characters: Mailchimp keeps at most 255 in a text merge field


def _raw(customer_id: Any, email: str, **columns: Any) -> dict[str, Any]:
    return {"customer_id": customer_id, "email": email, "first_name": "Raw", "marketing_opt_in": 0,
            "no_marketing": 0, "is_guest": 0, "created_at": "2024-03-01 09:00:00", **columns}


def test_bad_values_and_bad_ids_are_skipped_by_name_and_the_rest_is_synced(make_harness: Any, warehouse: Any) -> None:
    h = make_harness(warehouse)
    h.insert(*(customer(cid, email, marketing_opt_in=True, first_name=LONG_NAME if cid == "g3" else "Good")
               for cid, email in GOOD.items()))
    loosen(h.db, "customers", ("created_at", "updated_at", "marketing_opt_in", "no_marketing", "is_guest"))
    pg = warehouse.kind == "postgres"
    false = "false" if pg else 0
    insert_raw(h.db, "customers", [
        _raw("bad_date", "bea.date@northpeak-mail.com", created_at="not a date", marketing_opt_in=false,
             no_marketing=false, is_guest=false),
        _raw("bad_optin", "bo.optin@northpeak-mail.com", marketing_opt_in=2, no_marketing=false, is_guest=false),
        _raw(None, "nora.null@northpeak-mail.com", marketing_opt_in=false, no_marketing=false, is_guest=false),
        _raw("  ", "ed.empty@northpeak-mail.com", marketing_opt_in=false, no_marketing=false, is_guest=false),
        _raw("d1", "dee.one@northpeak-mail.com", marketing_opt_in=false, no_marketing=false, is_guest=false),
        _raw("d1", "dee.two@northpeak-mail.com", marketing_opt_in=false, no_marketing=false, is_guest=false),
        _raw("L" * 60, "len.long@northpeak-mail.com", marketing_opt_in=false, no_marketing=false, is_guest=false),
    ])
    if not pg:  # PostgreSQL refuses invalid UTF-8 when it is written; SQLite keeps it
        insert_raw(h.db, "customers", [_raw("bad_utf8", "ulla.utf@northpeak-mail.com")])
        break_utf8(h.db, "customers", "first_name", "customer_id", "bad_utf8")

    dag_run = h.run()

    assert str(dag_run.state) == "success"
    results = h.results(dag_run.run_id)
    skips = {rid: (r["reason"], r["error_detail"]) for (rid, op), r in results.items() if r["outcome"] == "skipped"}
    assert skips["bad_date"] == ("bad_value", "column created_at: 'not a date' is not a timestamp")
    assert skips["bad_optin"][0] == "bad_value"
    assert skips["bad_optin"][1].startswith("column marketing_opt_in: ") and "is not a boolean" in skips["bad_optin"][1]
    if not pg:
        assert skips["bad_utf8"] == ("bad_value", "column first_name: b'An\\xc3(\\xff' is not valid UTF-8 text")
    reason, detail = skips["d1"]
    assert reason == "duplicate_id"
    assert "2 rows" in detail and "dee.one@northpeak-mail.com" in detail and "dee.two@northpeak-mail.com" in detail
    assert skips["L" * 60][0] == "invalid: customer_id" and "60 characters" in skips["L" * 60][1]
    missing = {rid: d for rid, (r, d) in skips.items() if r == "missing_id"}
    assert len(missing) == 2 and all(rid.startswith("<missing customer_id: ") for rid in missing)
    assert any("nora.null@northpeak-mail.com" in d for d in missing.values())
    assert "None" not in {rid for rid, _ in results}
    # only the good rows reached Mailchimp: no 'None', no second member for one customer id
    assert sorted(m["email_address"] for m in h.members()) == sorted(GOOD.values())
    assert {rid for (rid, op), r in results.items() if r["outcome"] == "ok"} == set(GOOD)
    assert h.member(GOOD["g3"])["merge_fields"]["FNAME"] == LONG_NAME[:255]  # cut, not refused

    # a rerun with nothing changed records the same skips and sends nothing
    before = h.total_batch_ops()
    again = h.run()
    assert str(again.state) == "success" and h.total_batch_ops() == before
    assert {rid for (rid, _), r in h.results(again.run_id).items() if r["outcome"] == "skipped"} == set(skips)
