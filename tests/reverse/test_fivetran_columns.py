"""The engagement tables carry every column ``fivetran/dbt_mailchimp`` reads, under its names and
with a compatible type, on SQLite and PostgreSQL, in both table layouts.

The package fills a column it cannot find with NULL, silently: a rename on our side would zero an
analyst's dashboard without any error. The column lists are the package's own declarations
(``tests/fixtures/dbt_mailchimp_columns.json``, with the version they came from); refresh that file
when upgrading the package, never from our table definitions.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from mailchimp_provider.warehouse.tables import FIVETRAN_PREFIX, WarehouseTables

DECLARED = json.loads((Path(__file__).parents[1] / "fixtures" / "dbt_mailchimp_columns.json").read_text())

OURS = {
    "list": "list",
    "member": "member",
    "unsubscribe": "unsubscribe",
    "campaign": "campaign",
    "campaign_recipient_activity": "activity",
    "campaign_recipient": "recipient",
    "automation": "automation",
    "automation_email": "automation_email",
    "automation_recipient": "automation_recipient",
    "automation_recipient_activity": "automation_activity",
    "segment": "segment",
    "segment_member": "segment_member",
}
"""The package's table -> our table kind: every table it reads, so its automations and segments
switches can stay at their defaults (true)."""

FAMILIES = {
    "string": ("TEXT", "VARCHAR", "CHAR"),
    "int": ("INTEGER", "BIGINT", "SMALLINT"),
    "float": ("FLOAT", "DOUBLE", "REAL", "NUMERIC"),
    "timestamp": ("TIMESTAMP", "DATETIME"),
    "boolean": ("BOOLEAN",),
}

KEPT_AS_MAILCHIMP_SENDS = {
    ("list", "contact_address_2"): "string",
    ("list", "default_subject"): "string",
    ("list", "notify_on_subscribe"): "string",  # an email address
    ("list", "notify_on_unsubscribe"): "string",
    ("list", "list_rating"): "int",  # 0-5 stars
    ("campaign", "segment_text"): "string",  # a description of the conditions
    ("campaign", "folder_id"): "string",
    ("campaign", "clicktale"): "string",
    ("campaign", "winner_criteria"): "string",  # opens, clicks, manual, ...
    ("campaign", "winning_campaign_id"): "string",
    ("campaign", "winning_combination_id"): "string",
    ("campaign_recipient_activity", "bounce_type"): "string",  # hard | soft
    ("campaign_recipient_activity", "combination_id"): "string",
    ("campaign_recipient", "combination_id"): "string",  # Mailchimp's combination ids are strings
    ("unsubscribe", "reason"): "string",
    ("automation", "segment_text"): "string",
    ("automation_email", "clicktale"): "string",
    ("automation_email", "delay_direction"): "string",  # before | after
    ("automation_email", "folder_id"): "string",
    ("automation_email", "timewarp"): "boolean",  # settings.timewarp, a boolean (as the campaign's)
    ("automation_email", "to_name"): "string",
    ("automation_email", "use_conversation"): "boolean",
    ("automation_recipient_activity", "bounce_type"): "string",
}
"""Where the package's declared type (inferred from its sample data) is not what Mailchimp's API
documents, we keep Mailchimp's: converting would reject real records. The package selects these
columns as they are; none of them is joined or compared with a number."""


def our_type(package_table: str, column: str) -> str:
    return KEPT_AS_MAILCHIMP_SENDS.get((package_table, column), DECLARED["tables"][package_table][column])


def family(type_: sa.types.TypeEngine) -> str:
    name = type(type_).__name__.upper()
    compiled = str(type_).upper()
    for fam, names in FAMILIES.items():
        if any(n in name or compiled.startswith(n) for n in names):
            return fam
    raise AssertionError(f"unexpected column type {compiled}")


def test_fixture_names_its_package_version_and_every_table_is_accounted_for() -> None:
    assert (DECLARED["package"], DECLARED["version"]) == ("fivetran/dbt_mailchimp", "v1.3.0")
    assert set(DECLARED["tables"]) == set(OURS)


@pytest.mark.parametrize("prefix, schema", [("mailchimp_", None), (FIVETRAN_PREFIX, "mailchimp")],
                         ids=["default-prefix", "fivetran-layout"])
def test_every_declared_column_exists_with_a_compatible_type(warehouse, prefix: str, schema: str | None) -> None:
    engine = warehouse.engine
    if engine.dialect.name == "sqlite":
        schema = None  # SQLite has no schemas: Fivetran's layout there is the bare names
    tables = WarehouseTables(prefix, schema)
    tables.create_all(engine)
    inspector = sa.inspect(engine)
    problems = []
    for package_table, kind in OURS.items():
        name = tables.table(kind).name
        assert name == prefix + package_table
        present = {c["name"]: c["type"] for c in inspector.get_columns(name, schema=schema)}
        for column in DECLARED["tables"][package_table]:
            if column not in present:
                problems.append(f"{name}.{column}: missing")
            elif family(present[column]) != our_type(package_table, column):
                problems.append(f"{name}.{column}: {present[column]}, package declares "
                                f"{DECLARED['tables'][package_table][column]}")
    assert problems == []


def test_package_key_columns_hold_the_contract_keys_and_null_where_nothing_applies(warehouse) -> None:
    """``id`` repeats the contract's key; ``url`` and an unsubscribe's ``campaign_id`` are NULL where
    the contract's key parts hold ''."""
    from mailchimp_provider.reverse.normalise import (
        activity_rows, campaign_row, list_row, member_row, member_unsubscribe_row,
    )

    tables = WarehouseTables()
    tables.create_all(warehouse.engine)
    member = member_row({"email_address": "ann@shop.com", "status": "unsubscribed",
                         "last_changed": "2024-05-01T10:00:00+00:00", "location": {"gmtoff": 5.5}}, "L1")
    rows = {
        "list": [list_row({"id": "L1", "name": "Shop", "campaign_defaults": {"from_email": "a@shop.com"}})],
        "member": [member],
        "campaign": [campaign_row({"id": "C1", "recipients": {"segment_opts": {"saved_segment_id": 42}},
                                   "tracking": {"opens": True}})],
        "unsubscribe": [member_unsubscribe_row(member)],
        "activity": list(activity_rows({"email_id": member["member_id"], "email_address": "ann@shop.com",
                                        "activity": [{"action": "open", "timestamp": "2024-05-01T10:00:00+00:00"}]},
                                       "C1")),
    }
    with warehouse.engine.begin() as conn:
        for kind, batch in rows.items():
            conn.execute(tables.table(kind).insert(), batch)
    with warehouse.engine.connect() as conn:
        def one(kind: str, *columns: str) -> tuple:
            t = tables.table(kind)
            return tuple(conn.execute(sa.select(*(t.c[c] for c in columns))).one())

        assert one("list", "id", "list_id", "default_from_email", "_fivetran_deleted") == ("L1", "L1", "a@shop.com", False)
        assert one("member", "id", "gmtoff") == (member["member_id"], 5.5)
        assert one("campaign", "id", "segment_id", "track_opens") == ("C1", 42, True)
        assert one("unsubscribe", "campaign_key", "campaign_id") == ("", None)
        assert one("activity", "url_key", "url") == ("", None)
        for kind in rows:
            assert one(kind, "_fivetran_synced")[0] is not None, kind
