"""The declarative config loader, the engine's building blocks, and the audience pre-flight
(audience by name, merge fields checked against it before any member is written)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mailchimp_provider.config import ConfigError, load_audience_config, parse_config, AudienceSyncConfig
from mailchimp_provider.errors import MailchimpConfigError
from mailchimp_provider.sync.audience import check_merge_fields, desired_tags, ensure_audience, merge_value
from mailchimp_provider.sync.engine import OpRef, SyncSummary, format_summary, payload_hash


# -- config ------------------------------------------------------------------------------------
def test_the_shipped_config_is_valid() -> None:
    config = load_audience_config(Path(__file__).resolve().parents[2] / "include" / "audience_sync.yaml")
    assert config.audience.name and config.merge_fields["FNAME"].guests
    assert config.merge_fields["ADDRESS"].type == "address"


def test_config_errors_name_the_file_the_key_and_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "audience: {nme: Customers}\n"
        "merge_fields:\n  FNAME: {column: first_name, type: txt}\n"
        "sync: {max_attempts: three}\n"
    )
    with pytest.raises(ConfigError) as err:
        load_audience_config(path)
    message = str(err.value)
    assert f"{path}: audience.nme: unknown key; did you mean 'name'?" in message
    assert f"{path}: merge_fields.FNAME.type: 'txt' is not one of text, number" in message
    assert f"{path}: sync.max_attempts: expected an integer, got 'three' (str)" in message


def test_cross_field_rules_are_checked() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({
            "audience": {"name": "Customers", "create_if_missing": True},
            "merge_fields": {"address": {"type": "address", "columns": {"addr1": "a"}},
                             "LNAME": {"type": "text"}},
            "sync": {"max_failure_share": 5},
        }, AudienceSyncConfig, source="x.yaml")
    message = str(err.value)
    assert "x.yaml: audience.contact: required when create_if_missing is true" in message
    assert "x.yaml: merge_fields.address.columns: missing address part(s) city, state, zip" in message
    assert "x.yaml: merge_fields.address: a merge tag is 1-10 characters" in message
    assert "x.yaml: merge_fields.LNAME.column: required" in message
    assert "x.yaml: sync.max_failure_share: 5.0 is not a share between 0 and 1" in message


def test_unreadable_yaml_says_where(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("audience: [unclosed\n")
    with pytest.raises(ConfigError, match=r"broken.yaml: \(top level\): not valid YAML \(line"):
        load_audience_config(path)


# -- engine building blocks ---------------------------------------------------------------------
def test_operation_ids_round_trip_even_with_colons_in_the_record_id() -> None:
    ref = OpRef("member", "shop:eu:42", payload_hash({"a": 1}), "u")
    assert OpRef.parse(str(ref)) == ref
    assert len(ref.payload_hash) == 12
    assert OpRef.parse(None) is None and OpRef.parse("not-ours") is None and OpRef.parse("member:x:u") is None


def test_payload_hash_ignores_key_order_but_not_values() -> None:
    assert payload_hash({"a": 1, "b": [1, 2]}) == payload_hash({"b": [1, 2], "a": 1})
    assert payload_hash({"a": 1}) != payload_hash({"a": 2})


def test_summary_table_lists_each_outcome_and_reason_with_counts() -> None:
    summary = SyncSummary("run-1", "member", [("failed", "upsert", "email_rejected", 1), ("ok", "upsert", "create", 40),
                                              ("skipped", "skip", "invalid_email", 3)], total_records=50, distinct_records=44)
    table = format_summary(summary)
    assert "ok         upsert     create                        40" in table
    assert "unchanged" in table and table.rstrip().endswith("totals: failed=1, ok=40, skipped=3, unchanged=6")
    assert summary.as_dict() == {"failed": {"email_rejected": 1}, "ok": {"create": 40},
                                 "skipped": {"invalid_email": 3}, "unchanged": {"unchanged": 6}}


# -- row -> payload ----------------------------------------------------------------------------------
def test_address_is_sent_only_when_complete_and_tags_are_deduplicated() -> None:
    config = load_audience_config(Path(__file__).resolve().parents[2] / "include" / "audience_sync.yaml")
    spec = config.merge_fields["ADDRESS"]
    full = {"address1": "1 Elm St", "city": "Springfield", "province": "IL", "postal_code": "62704", "country_code": "US"}
    assert merge_value(spec, full) == {"addr1": "1 Elm St", "city": "Springfield", "state": "IL", "zip": "62704", "country": "US"}
    assert merge_value(spec, {**full, "postal_code": " "}) is None
    assert desired_tags(config, {"customer_type": "VIP", "tags": "vip, Spring Sale,, spring sale "}) == ["Spring Sale", "VIP"]


# -- pre-flight against the audience -------------------------------------------------------------------
def _config(**overrides: Any) -> AudienceSyncConfig:
    data = {
        "audience": {"name": "Preflight"},
        "merge_fields": {"FNAME": {"column": "first_name", "guests": True},
                         "LNAME": {"column": "last_name"},
                         "LOYALTY": {"column": "loyalty_points", "type": "number"}},
        **overrides,
    }
    return parse_config(data, AudienceSyncConfig, source="audience_sync.yaml")


def test_a_required_merge_field_the_mapping_can_leave_empty_is_an_error_before_any_write() -> None:
    existing = [{"tag": "FNAME", "type": "text", "required": False, "name": "First Name"},
                {"tag": "LNAME", "type": "text", "required": True, "name": "Last Name"},
                {"tag": "SHOESIZE", "type": "number", "required": True, "name": "Shoe size"},
                {"tag": "LOYALTY", "type": "text", "required": False, "name": "Loyalty"}]
    to_create, problems = check_merge_fields(_config(), existing, list_name="Preflight")
    assert to_create == []
    keys = dict(problems)
    assert "can be empty: add a 'default'" in keys["merge_fields.LNAME"]
    assert "requires SHOESIZE" in keys["merge_fields.SHOESIZE"]
    assert "'number' but the audience's LOYALTY field has type 'text'" in keys["merge_fields.LOYALTY.type"]


def test_audience_by_name_is_created_with_missing_merge_fields(emulator: Any) -> None:
    from mailchimp_provider.hooks.mailchimp import MailchimpHook

    shipped = load_audience_config(Path(__file__).resolve().parents[2] / "include" / "audience_sync.yaml")
    hook = MailchimpHook()
    check = ensure_audience(hook, shipped)
    assert check.created and check.merge_fields_created == ["COMPANY"]
    again = ensure_audience(hook, shipped)  # idempotent: found by name, nothing created
    assert again.list_id == check.list_id and not again.created and again.merge_fields_created == []
    assert len(emulator.api("GET", "/lists").json()["lists"]) == 1


def test_preflight_stops_before_any_member_is_written(emulator: Any) -> None:
    from mailchimp_provider.hooks.mailchimp import MailchimpHook

    hook = MailchimpHook()
    shipped = load_audience_config(Path(__file__).resolve().parents[2] / "include" / "audience_sync.yaml")
    list_id = ensure_audience(hook, shipped).list_id
    lname = next(f for f in hook.get(f"/lists/{list_id}/merge-fields")["merge_fields"] if f["tag"] == "LNAME")
    hook.patch(f"/lists/{list_id}/merge-fields/{lname['merge_id']}", json={"required": True})
    with pytest.raises(MailchimpConfigError, match=r"audience_sync.yaml: merge_fields.LNAME: required in the audience"):
        ensure_audience(hook, shipped, source="audience_sync.yaml")
    missing = parse_config({"audience": {"name": "Nope"}}, AudienceSyncConfig, source="a.yaml")
    with pytest.raises(MailchimpConfigError, match="a.yaml: audience.name: no Mailchimp audience is named 'Nope'"):
        ensure_audience(hook, missing, source="a.yaml")


def test_a_dry_run_creates_neither_the_audience_nor_merge_fields(emulator: Any) -> None:
    from mailchimp_provider.hooks.mailchimp import MailchimpHook

    shipped = load_audience_config(Path(__file__).resolve().parents[2] / "include" / "audience_sync.yaml")
    check = ensure_audience(MailchimpHook(), shipped, dry_run=True)
    assert check.dry_run and check.created and "COMPANY" in check.merge_fields_created
    assert emulator.api("GET", "/lists").json()["lists"] == []
