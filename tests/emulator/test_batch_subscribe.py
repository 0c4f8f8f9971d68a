"""Batch subscribe, ``POST /lists/{list_id}`` (facts §6.8, §9.8)."""

from __future__ import annotations


def emails(n: int, prefix: str = "shopper") -> list[str]:
    return [f"{prefix}{i:03d}@acme-outfitters.com" for i in range(n)]


def test_new_members_are_created_and_counted(mc, list_id):
    result = mc.lists.batch_list_members(
        list_id, {"members": [{"email_address": e, "status": "subscribed", "merge_fields": {"FNAME": "S"}} for e in emails(3)]}
    )
    assert result["total_created"] == 3 and result["total_updated"] == 0 and result["error_count"] == 0
    assert [m["email_address"] for m in result["new_members"]] == emails(3)
    assert result["updated_members"] == [] and result["errors"] == []
    assert mc.lists.get_list(list_id)["stats"]["member_count"] == 3


def test_existing_members_are_errors_unless_update_existing(mc, list_id):
    mc.lists.batch_list_members(list_id, {"members": [{"email_address": e, "status": "subscribed"} for e in emails(2)]})
    body = {"members": [{"email_address": e, "status": "unsubscribed"} for e in emails(3)]}

    refused = mc.lists.batch_list_members(list_id, body)
    assert refused["total_created"] == 1 and refused["error_count"] == 2
    error = refused["errors"][0]
    assert set(error) == {"email_address", "error", "error_code", "field", "field_message"}
    assert error["email_address"] == emails(2)[0]
    assert error["error_code"] == "ERROR_CONTACT_EXISTS"

    updated = mc.lists.batch_list_members(list_id, {**body, "update_existing": True})
    assert updated["total_updated"] == 3 and updated["error_count"] == 0
    assert {m["status"] for m in updated["updated_members"]} == {"unsubscribed"}


def test_rule_violations_are_generic_errors_per_member(mc, list_id):
    mc.lists.add_list_member(list_id, {"email_address": "gone@acme-outfitters.com", "status": "unsubscribed"})
    result = mc.lists.batch_list_members(
        list_id,
        {
            "update_existing": True,
            "members": [
                {"email_address": "ann@example.com", "status": "subscribed"},
                {"email_address": "gone@acme-outfitters.com", "status": "subscribed"},
                {"email_address": "fine@acme-outfitters.com", "status": "subscribed"},
            ],
        },
    )
    assert result["total_created"] == 1
    assert [(e["email_address"], e["error_code"]) for e in result["errors"]] == [
        ("ann@example.com", "ERROR_GENERIC"),
        ("gone@acme-outfitters.com", "ERROR_GENERIC"),
    ]
    assert "looks fake or invalid" in result["errors"][0]["error"]
    assert "compliance state" in result["errors"][1]["error"]


def test_required_merge_fields_and_skip_merge_validation(mc, list_id):
    mc.lists.add_list_merge_field(list_id, {"name": "Store", "type": "text", "tag": "STORE", "required": True})
    members = {"members": [{"email_address": e, "status": "subscribed"} for e in emails(2)]}
    refused = mc.lists.batch_list_members(list_id, members)
    assert refused["error_count"] == 2
    assert (refused["errors"][0]["field"], refused["errors"][0]["field_message"]) == ("STORE", "Please enter a value")
    accepted = mc.lists.batch_list_members(list_id, members, skip_merge_validation=True)
    assert accepted["total_created"] == 2


def test_duplicates_in_one_request_need_skip_duplicate_check(mc, list_id):
    twice = {"members": [{"email_address": "dup@acme-outfitters.com", "status": s} for s in ("subscribed", "unsubscribed")]}
    refused = mc.lists.batch_list_members(list_id, twice)
    assert refused["total_created"] == 1 and refused["error_count"] == 1
    mc.lists.delete_list_member_permanent(list_id, "dup@acme-outfitters.com")
    other = {"members": [{"email_address": "dup2@acme-outfitters.com", "status": s} for s in ("pending", "unsubscribed")]}
    first_wins = mc.lists.batch_list_members(list_id, other, skip_duplicate_check=True)
    assert first_wins["total_created"] == 1 and first_wins["error_count"] == 0
    assert first_wins["new_members"][0]["status"] == "pending"


def test_sync_tags_replaces_tags(mc, list_id):
    mc.lists.batch_list_members(list_id, {"members": [{"email_address": "t@acme-outfitters.com", "status": "subscribed", "tags": ["a", "b"]}]})
    mc.lists.batch_list_members(
        list_id,
        {"update_existing": True, "sync_tags": True, "members": [{"email_address": "t@acme-outfitters.com", "tags": ["b", "c"]}]},
    )
    tags = {t["name"] for t in mc.lists.get_list_member(list_id, "t@acme-outfitters.com")["tags"]}
    assert tags == {"b", "c"}


def test_more_than_500_members_is_rejected(emulator, mc, list_id, expect_problem):
    body = {"members": [{"email_address": e, "status": "subscribed"} for e in emails(501)]}
    error = expect_problem(lambda: mc.lists.batch_list_members(list_id, body))
    assert error["status"] == 400 and error["title"] == "Invalid Resource"
    assert mc.lists.get_list_members_info(list_id, count=0)["total_items"] == 0
    assert mc.lists.batch_list_members(list_id, {"members": body["members"][:500]})["total_created"] == 500


def test_unknown_list_is_404(mc, expect_problem):
    error = expect_problem(lambda: mc.lists.batch_list_members("0000000000", {"members": []}))
    assert error["status"] == 404
