"""seed_demo_warehouse / apply_demo_changes: realistic, deterministic data with every bad-row kind."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from mailchimp_provider.demo.data import (
    BAD_ROW_KINDS,
    FINANCIAL_STATUSES,
    FULFILLMENT_STATUSES,
    apply_demo_changes,
    find_bad_rows,
    guest_checkout_orders,
    seed_demo_warehouse,
)
from mailchimp_provider.warehouse.source_tables import SOURCE_TABLE_NAMES

SMALL = {"customers": 60, "products": 10, "orders": 80}


def table_counts(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar() for t in SOURCE_TABLE_NAMES}


def test_counts_returned_are_the_rows_stored(warehouse) -> None:
    counts = seed_demo_warehouse(warehouse.engine, **SMALL)
    assert counts == table_counts(warehouse.engine)
    assert counts["customers"] >= 60 and counts["products"] >= 10 and counts["orders"] >= 80
    assert counts["order_lines"] > counts["orders"]


def test_every_bad_row_kind_is_present_and_findable(warehouse) -> None:
    seed_demo_warehouse(warehouse.engine, **SMALL)
    found = find_bad_rows(warehouse.engine)
    assert set(found) == set(BAD_ROW_KINDS)
    missing = [kind for kind, ids in found.items() if not ids]
    assert missing == []
    # the duplicate pairs: each duplicated email is held by two customers
    assert len(found["customer_duplicate_email"]) == 4
    assert len(found["erasure_request"]) == 3


def test_guest_checkouts_carry_their_buyer_on_the_order(warehouse) -> None:
    seed_demo_warehouse(warehouse.engine, **SMALL, bad_rows=False)
    guests = guest_checkout_orders(warehouse.engine)
    assert len(guests) >= 2
    assert len(set(guests.values())) == len(guests) - 1  # one guest checked out twice
    with warehouse.engine.connect() as conn:
        customer_ids = set(conn.execute(sa.text("SELECT customer_id FROM customers")).scalars())
        emails = {e.lower() for e in conn.execute(sa.text("SELECT email FROM customers")).scalars() if e}
        rows = conn.execute(sa.text(
            "SELECT order_id, customer_id, customer_email, customer_first_name, customer_last_name FROM orders "
            "WHERE customer_email IS NOT NULL")).all()
    assert {r.order_id for r in rows} == set(guests)
    for row in rows:
        assert row.customer_id not in customer_ids and row.customer_email.lower() not in emails
        assert re.fullmatch(r"[a-z0-9._]+@[a-z0-9.-]+\.[a-z.]+", row.customer_email)
        assert not row.customer_email.endswith(("example.com", "test.com"))
        assert row.customer_first_name and row.customer_last_name


def test_clean_data_has_no_bad_rows(warehouse) -> None:
    seed_demo_warehouse(warehouse.engine, **SMALL, bad_rows=False)
    assert {kind: ids for kind, ids in find_bad_rows(warehouse.engine).items() if ids} == {}


def test_same_seed_same_rows_other_seed_other_rows(sqlite_warehouse, tmp_path) -> None:
    other = sa.create_engine(f"sqlite:///{tmp_path / 'other.db'}")
    third = sa.create_engine(f"sqlite:///{tmp_path / 'third.db'}")
    try:
        seed_demo_warehouse(sqlite_warehouse.engine, **SMALL, seed=5)
        seed_demo_warehouse(other, **SMALL, seed=5)
        seed_demo_warehouse(third, **SMALL, seed=6)
        query = sa.text("SELECT customer_id, email, city, updated_at FROM customers ORDER BY customer_id")
        dump = lambda e: [tuple(r) for r in e.connect().execute(query)]  # noqa: E731
        assert dump(sqlite_warehouse.engine) == dump(other)
        assert dump(sqlite_warehouse.engine) != dump(third)
    finally:
        other.dispose()
        third.dispose()


def test_reseeding_replaces_the_data(warehouse) -> None:
    seed_demo_warehouse(warehouse.engine, **SMALL)
    counts = seed_demo_warehouse(warehouse.engine, customers=20, products=5, orders=10)
    assert table_counts(warehouse.engine) == counts


def test_people_look_real_enough_for_mailchimp(warehouse) -> None:
    seed_demo_warehouse(warehouse.engine, customers=400, products=10, orders=10, bad_rows=False)
    with warehouse.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT email, country_code, company, customer_type FROM customers")).all()
    emails = [r.email for r in rows]
    assert len(set(emails)) == len(emails)
    assert all(re.fullmatch(r"[a-z0-9._]+@[a-z0-9.-]+\.[a-z.]+", e) for e in emails)
    domains = {e.split("@")[1] for e in emails}
    assert not any(d.endswith(("example.com", "example.org", "test.com")) for d in domains)
    assert {"gmail.com", "outlook.com", "yahoo.co.uk"} <= domains
    assert len({r.country_code for r in rows}) >= 6
    business = [r for r in rows if r.company]
    assert business and all(r.customer_type == "Wholesale" for r in business)


def test_orders_cover_every_financial_and_fulfillment_status(warehouse) -> None:
    seed_demo_warehouse(warehouse.engine, customers=30, products=5, orders=40, bad_rows=False)
    with warehouse.engine.connect() as conn:
        financial = set(conn.execute(sa.text("SELECT DISTINCT financial_status FROM orders")).scalars())
        fulfillment = set(conn.execute(sa.text("SELECT DISTINCT fulfillment_status FROM orders")).scalars())
        cancelled_without_date = conn.execute(sa.text(
            "SELECT count(*) FROM orders WHERE financial_status = 'cancelled' AND cancelled_at IS NULL"
        )).scalar()
    assert financial == set(FINANCIAL_STATUSES)
    assert fulfillment == set(FULFILLMENT_STATUSES)
    assert cancelled_without_date == 0


def test_apply_demo_changes_makes_one_change_of_each_kind(warehouse) -> None:
    seed_demo_warehouse(warehouse.engine, **SMALL)
    with warehouse.engine.connect() as conn:
        before = {r.customer_id: r for r in conn.execute(sa.text("SELECT * FROM customers"))}

    changes = apply_demo_changes(warehouse.engine, seed=3)

    assert set(changes) == {"email_changed", "opted_out", "tags_changed", "order_cancelled",
                            "customer_added", "order_added"}
    with warehouse.engine.connect() as conn:
        after = {r.customer_id: r for r in conn.execute(sa.text("SELECT * FROM customers"))}
        order = conn.execute(sa.text("SELECT * FROM orders WHERE order_id = :o"),
                             {"o": changes["order_cancelled"]}).one()
        added_lines = conn.execute(sa.text("SELECT count(*) FROM order_lines WHERE order_id = :o"),
                                   {"o": changes["order_added"]}).scalar()
    changed_email = changes["email_changed"]
    assert after[changed_email].email != before[changed_email].email
    assert bool(before[changes["opted_out"]].marketing_opt_in) and not after[changes["opted_out"]].marketing_opt_in
    assert after[changes["tags_changed"]].customer_type == "VIP"
    assert order.financial_status == "cancelled" and order.cancelled_at is not None
    assert changes["customer_added"] in after and changes["customer_added"] not in before
    assert added_lines == 1
    # re-running replaces the added customer and order instead of duplicating them
    apply_demo_changes(warehouse.engine, seed=3)
    with warehouse.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM customers")).scalar() == len(after)


def test_apply_demo_changes_needs_a_seeded_warehouse(warehouse) -> None:
    seed_demo_warehouse(warehouse.engine, customers=1, products=1, orders=0, bad_rows=False)
    with pytest.raises(ValueError, match="seed_demo_warehouse"):
        apply_demo_changes(warehouse.engine)
