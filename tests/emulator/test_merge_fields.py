"""Merge fields: CRUD, auto tags, and the validation member writes go through (facts §6.10, §3.3, §9.10)."""

from __future__ import annotations

import hashlib

ANN = "ann.lee@acme-outfitters.com"
ANN_HASH = hashlib.md5(ANN.encode()).hexdigest()


def test_default_merge_fields_have_documented_shape(mc, list_id):
    listing = mc.lists.get_list_merge_fields(list_id)
    assert listing["list_id"] == list_id
    by_tag = {f["tag"]: f for f in listing["merge_fields"]}
    assert by_tag["ADDRESS"]["type"] == "address"
    assert by_tag["PHONE"]["type"] == "phone"
    fname = by_tag["FNAME"]
    assert set(fname) >= {"merge_id", "tag", "name", "type", "required", "default_value", "public", "display_order", "options", "help_text", "list_id", "_links"}
    assert fname["required"] is False
    assert mc.lists.get_list_merge_field(list_id, fname["merge_id"])["tag"] == "FNAME"


def test_created_merge_field_gets_an_mmerge_tag_and_duplicates_are_rejected(mc, list_id, expect_problem):
    created = mc.lists.add_list_merge_field(list_id, {"name": "Favourite colour", "type": "text"})
    assert created["tag"] == f"MMERGE{created['merge_id']}"
    assert created["list_id"] == list_id
    tagged = mc.lists.add_list_merge_field(list_id, {"name": "Loyalty tier", "type": "dropdown", "tag": "TIER", "options": {"choices": ["gold", "silver"]}})
    assert tagged["tag"] == "TIER" and tagged["options"]["choices"] == ["gold", "silver"]

    duplicate = expect_problem(lambda: mc.lists.add_list_merge_field(list_id, {"name": "Other", "type": "text", "tag": "TIER"}))
    assert duplicate["status"] == 400 and "TIER" in duplicate["detail"]
    missing = expect_problem(lambda: mc.lists.add_list_merge_field(list_id, {"name": "No type"}))
    assert missing["title"] == "Invalid Resource" and "type" in missing["errors"][0]["message"]
    bad_type = expect_problem(lambda: mc.lists.add_list_merge_field(list_id, {"name": "X", "type": "colour"}))
    assert bad_type["errors"][0]["field"] == "type"


def test_merge_field_filters_update_and_delete(mc, list_id, expect_problem):
    created = mc.lists.add_list_merge_field(list_id, {"name": "Points", "type": "number", "required": True})
    assert [f["tag"] for f in mc.lists.get_list_merge_fields(list_id, type="number")["merge_fields"]] == [created["tag"]]
    assert [f["tag"] for f in mc.lists.get_list_merge_fields(list_id, required=True)["merge_fields"]] == [created["tag"]]

    updated = mc.lists.update_list_merge_field(list_id, created["merge_id"], {"name": "Loyalty points", "required": False})
    assert updated["name"] == "Loyalty points" and updated["required"] is False
    assert mc.lists.delete_list_merge_field(list_id, created["merge_id"]).status_code == 204
    assert expect_problem(lambda: mc.lists.get_list_merge_field(list_id, created["merge_id"]))["status"] == 404


def test_required_merge_field_must_have_a_value(mc, list_id, expect_problem):
    mc.lists.add_list_merge_field(list_id, {"name": "Last name (required)", "type": "text", "tag": "SURNAME", "required": True})
    error = expect_problem(lambda: mc.lists.add_list_member(list_id, {"email_address": ANN, "status": "subscribed"}))
    assert error["status"] == 400
    assert error["title"] == "Invalid Resource"
    assert error["detail"] == "Your merge fields were invalid."
    assert error["errors"] == [{"field": "SURNAME", "message": "Please enter a value"}]

    skipped = mc.lists.add_list_member(list_id, {"email_address": ANN, "status": "subscribed"}, skip_merge_validation=True)
    assert skipped["merge_fields"]["SURNAME"] == ""
    # an update that does not touch the field is fine; blanking it is not
    assert mc.lists.update_list_member(list_id, ANN_HASH, {"vip": True})["vip"] is True
    blank = expect_problem(lambda: mc.lists.update_list_member(list_id, ANN_HASH, {"merge_fields": {"SURNAME": ""}}))
    assert blank["errors"] == [{"field": "SURNAME", "message": "Please enter a value"}]


def test_address_must_be_complete(mc, list_id, expect_problem):
    incomplete = {"addr1": "1 Main St", "city": "Springfield", "state": "", "zip": "62701"}
    error = expect_problem(
        lambda: mc.lists.add_list_member(list_id, {"email_address": ANN, "status": "subscribed", "merge_fields": {"ADDRESS": incomplete}})
    )
    assert error["detail"] == "Your merge fields were invalid."
    assert error["errors"] == [{"field": "ADDRESS", "message": "Please enter a complete address"}]

    complete = {**incomplete, "state": "IL"}
    member = mc.lists.add_list_member(list_id, {"email_address": ANN, "status": "subscribed", "merge_fields": {"ADDRESS": complete}})
    assert member["merge_fields"]["ADDRESS"] == {**complete, "addr2": "", "country": "US"}


def test_number_and_date_values_are_type_checked(mc, list_id, expect_problem):
    points = mc.lists.add_list_merge_field(list_id, {"name": "Points", "type": "number"})["tag"]
    joined = mc.lists.add_list_merge_field(list_id, {"name": "Joined", "type": "date"})["tag"]
    error = expect_problem(
        lambda: mc.lists.add_list_member(
            list_id, {"email_address": ANN, "status": "subscribed", "merge_fields": {points: "lots", joined: "someday"}}
        )
    )
    assert {e["field"] for e in error["errors"]} == {points, joined}
    member = mc.lists.add_list_member(
        list_id, {"email_address": ANN, "status": "subscribed", "merge_fields": {points: "42", joined: "2024-03-01"}}
    )
    assert member["merge_fields"][points] == 42
    assert member["merge_fields"][joined] == "2024-03-01"
