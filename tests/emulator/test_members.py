"""List members: every member rule of the facts sheet (§3.3, §6.2-§6.7, §9.6-§9.7, §9.11),
driven with the official SDK (and mailchimp3 for a few calls)."""

from __future__ import annotations

import hashlib
import re
import time

import pytest

ANN = "Ann.Lee@Acme-Outfitters.com"
ANN_HASH = hashlib.md5(ANN.lower().encode()).hexdigest()


def put(mc, list_id, email, **body):
    return mc.lists.set_list_member(list_id, hashlib.md5(email.lower().encode()).hexdigest(), {"email_address": email, **body})


def test_put_creates_a_member_with_every_documented_field(mc, list_id):
    member = put(mc, list_id, ANN, status_if_new="subscribed", merge_fields={"FNAME": "Ann", "LNAME": "Lee"}, tags=["vip", "2024"])

    assert member["id"] == ANN_HASH
    assert member["email_address"] == ANN
    assert re.fullmatch(r"[0-9a-f]{10}", member["unique_email_id"])
    assert re.fullmatch(r"[0-9a-f]{32}", member["contact_id"])
    assert member["full_name"] == "Ann Lee"
    assert isinstance(member["web_id"], int)
    assert member["email_type"] == "html"
    assert member["status"] == "subscribed"
    assert member["unsubscribe_reason"] == ""
    assert member["merge_fields"]["FNAME"] == "Ann" and member["merge_fields"]["PHONE"] == ""
    assert member["interests"] == {}
    assert set(member["stats"]) >= {"avg_open_rate", "avg_click_rate"}
    assert member["timestamp_signup"] == "" and member["ip_signup"] == ""
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", member["timestamp_opt"])
    assert member["last_changed"] == member["timestamp_opt"]
    assert 1 <= member["member_rating"] <= 5
    assert member["vip"] is False and member["language"] == "" and member["email_client"] == ""
    assert set(member["location"]) >= {"latitude", "longitude", "gmtoff", "dstoff", "country_code", "timezone"}
    assert member["source"] == "API - Generic"
    assert member["tags_count"] == 2
    assert {t["name"] for t in member["tags"]} == {"vip", "2024"}
    assert all(set(t) == {"id", "name"} for t in member["tags"])
    assert member["list_id"] == list_id
    assert {l["rel"] for l in member["_links"]} >= {"self", "parent"}


def test_member_is_found_by_hash_email_or_contact_id(mc, list_id, expect_problem):
    created = put(mc, list_id, ANN, status_if_new="subscribed")
    for key in (ANN_HASH, ANN, ANN.lower(), created["contact_id"]):
        assert mc.lists.get_list_member(list_id, key)["id"] == ANN_HASH
    error = expect_problem(lambda: mc.lists.get_list_member(list_id, "nobody@acme-outfitters.com"))
    assert (error["status"], error["title"], error["detail"]) == (404, "Resource Not Found", "The requested resource could not be found.")


def test_post_of_an_existing_email_is_member_exists(mc, list_id, expect_problem):
    mc.lists.add_list_member(list_id, {"email_address": ANN, "status": "subscribed"})
    error = expect_problem(lambda: mc.lists.add_list_member(list_id, {"email_address": ANN.lower(), "status": "subscribed"}))
    assert error["status"] == 400
    assert error["title"] == "Member Exists"
    assert error["detail"] == f"{ANN.lower()} is already a list member. Use PUT to insert or update list members."


def test_post_of_an_archived_email_is_still_member_exists(mc, list_id, expect_problem):
    mc.lists.add_list_member(list_id, {"email_address": ANN, "status": "subscribed"})
    mc.lists.delete_list_member(list_id, ANN_HASH)
    error = expect_problem(lambda: mc.lists.add_list_member(list_id, {"email_address": ANN, "status": "subscribed"}))
    assert error["title"] == "Member Exists"


def test_put_keeps_an_existing_status_unless_status_is_given(mc, list_id):
    put(mc, list_id, ANN, status_if_new="unsubscribed")
    again = put(mc, list_id, ANN, status_if_new="subscribed", merge_fields={"FNAME": "Ann"})
    assert again["status"] == "unsubscribed"
    assert again["unsubscribe_reason"] != ""
    assert again["merge_fields"]["FNAME"] == "Ann"
    pending = put(mc, list_id, ANN, status_if_new="subscribed", status="pending")
    assert pending["status"] == "pending"


@pytest.mark.parametrize("blocked", ["unsubscribed", "cleaned"])
def test_subscribing_an_unsubscribed_or_cleaned_member_is_a_compliance_state(mc, list_id, expect_problem, blocked):
    put(mc, list_id, ANN, status_if_new=blocked)
    for attempt in (
        lambda: put(mc, list_id, ANN, status_if_new="subscribed", status="subscribed"),
        lambda: mc.lists.update_list_member(list_id, ANN_HASH, {"status": "subscribed"}),
    ):
        error = expect_problem(attempt)
        assert error["status"] == 400
        assert error["title"] == "Member In Compliance State"
        assert error["detail"] == (
            f"{ANN} is in a compliance state due to unsubscribe, bounce, or compliance review and cannot be subscribed."
        )
    assert mc.lists.update_list_member(list_id, ANN_HASH, {"status": "pending"})["status"] == "pending"


def test_put_with_a_new_body_email_changes_that_members_email(mc, list_id):
    created = put(mc, list_id, ANN, status_if_new="subscribed")
    moved = mc.lists.set_list_member(list_id, ANN_HASH, {"email_address": "ann.new@acme-outfitters.com", "status_if_new": "subscribed"})
    assert moved["email_address"] == "ann.new@acme-outfitters.com"
    assert moved["id"] == hashlib.md5(b"ann.new@acme-outfitters.com").hexdigest()
    assert moved["contact_id"] == created["contact_id"]
    assert mc.lists.get_list_members_info(list_id)["total_items"] == 1


def test_email_change_onto_another_member_is_member_exists(mc, list_id, expect_problem):
    put(mc, list_id, ANN, status_if_new="subscribed")
    put(mc, list_id, "bob.ray@acme-outfitters.com", status_if_new="subscribed")
    for attempt in (
        lambda: mc.lists.set_list_member(list_id, ANN_HASH, {"email_address": "bob.ray@acme-outfitters.com", "status_if_new": "subscribed"}),
        lambda: mc.lists.update_list_member(list_id, ANN_HASH, {"email_address": "bob.ray@acme-outfitters.com"}),
    ):
        assert expect_problem(attempt)["title"] == "Member Exists"


def test_put_to_an_unknown_hash_with_an_existing_body_email_is_member_exists(mc, list_id, expect_problem):
    put(mc, list_id, ANN, status_if_new="subscribed")
    unknown = hashlib.md5(b"someone.else@acme-outfitters.com").hexdigest()
    error = expect_problem(lambda: mc.lists.set_list_member(list_id, unknown, {"email_address": ANN, "status_if_new": "subscribed"}))
    assert error["title"] == "Member Exists"


def test_patch_of_an_absent_member_is_404_and_patch_updates(mc, list_id, expect_problem):
    assert expect_problem(lambda: mc.lists.update_list_member(list_id, ANN_HASH, {"status": "subscribed"}))["status"] == 404
    put(mc, list_id, ANN, status_if_new="subscribed")
    patched = mc.lists.update_list_member(list_id, ANN_HASH, {"merge_fields": {"LNAME": "Lee"}, "vip": True, "language": "fr"})
    assert patched["merge_fields"]["LNAME"] == "Lee" and patched["vip"] is True and patched["language"] == "fr"


def test_patch_rejects_transactional_status(mc, list_id, expect_problem):
    put(mc, list_id, ANN, status_if_new="subscribed")
    error = expect_problem(lambda: mc.lists.update_list_member(list_id, ANN_HASH, {"status": "transactional"}))
    assert error["title"] == "Invalid Resource" and error["errors"][0]["field"] == "status"


def test_delete_archives_and_put_brings_the_member_back(mc, list_id):
    put(mc, list_id, ANN, status_if_new="subscribed")
    assert mc.lists.delete_list_member(list_id, ANN_HASH).status_code == 204
    assert mc.lists.get_list_member(list_id, ANN_HASH)["status"] == "archived"
    assert mc.lists.get_list_members_info(list_id)["total_items"] == 0
    assert mc.lists.get_list_members_info(list_id, status="archived")["total_items"] == 1
    back = put(mc, list_id, ANN, status_if_new="subscribed")
    assert back["status"] == "subscribed"


@pytest.mark.parametrize("status", ["pending", "cleaned"])
def test_archiving_a_pending_or_cleaned_member_is_405(emulator, mc, list_id, status):
    put(mc, list_id, ANN, status_if_new=status)
    resp = emulator.api("DELETE", f"/lists/{list_id}/members/{ANN_HASH}")
    assert resp.status_code == 405
    assert resp.headers["Allow"] == "GET, PUT"
    assert resp.headers["content-type"] == "application/problem+json; charset=utf-8"
    body = resp.json()
    assert body["title"] == "Method Not Allowed"
    assert body["detail"] == "This list member cannot be removed. Can not archive a contact that is bounced, pending or archived"
    assert resp.headers["X-Request-Id"] == body["instance"]


def test_archiving_twice_is_405(emulator, mc, list_id):
    put(mc, list_id, ANN, status_if_new="subscribed")
    mc.lists.delete_list_member(list_id, ANN_HASH)
    assert emulator.api("DELETE", f"/lists/{list_id}/members/{ANN_HASH}").status_code == 405


def test_permanently_deleted_email_cannot_be_added_again(mc, list_id, expect_problem):
    put(mc, list_id, ANN, status_if_new="subscribed")
    assert mc.lists.delete_list_member_permanent(list_id, ANN_HASH).status_code == 204
    assert expect_problem(lambda: mc.lists.get_list_member(list_id, ANN_HASH))["status"] == 404
    for attempt in (
        lambda: mc.lists.add_list_member(list_id, {"email_address": ANN, "status": "subscribed"}),
        lambda: put(mc, list_id, ANN, status_if_new="subscribed"),
    ):
        error = expect_problem(attempt)
        assert error["status"] == 400
        assert error["title"] == "Forgotten Email Not Subscribed"
        assert error["detail"] == (
            f"{ANN} was permanently deleted and cannot be re-imported. The contact must re-subscribe to get back on the list."
        )


@pytest.mark.parametrize(
    "email",
    [
        "no-at-sign.acme-outfitters.com",
        "ann@localhost",
        "ann@acme outfitters.com",
        "ann@example.com",
        "ann@mail.example.org",
        "ann@shop.invalid",
        "ann@shop.test",
        "test@acme-outfitters.com",
        "noreply@acme-outfitters.com",
    ],
)
def test_fake_or_invalid_emails_are_rejected(mc, list_id, expect_problem, email):
    error = expect_problem(lambda: mc.lists.add_list_member(list_id, {"email_address": email, "status": "subscribed"}))
    assert error["status"] == 400
    assert error["title"] == "Invalid Resource"
    assert error["detail"] == f"{email} looks fake or invalid, please enter a real email address."


@pytest.mark.parametrize("email", ["jane.smith42@example-shop.com", "k.lee@mail.test-retail.net", "o'neil+news@acme.co.uk"])
def test_realistic_generated_emails_pass(mc, list_id, email):
    assert mc.lists.add_list_member(list_id, {"email_address": email, "status": "subscribed"})["email_address"] == email


def test_last_changed_moves_and_since_last_changed_keeps_sub_second_order(mc, list_id):
    first = put(mc, list_id, ANN, status_if_new="subscribed")
    put(mc, list_id, "bob.ray@acme-outfitters.com", status_if_new="subscribed")
    time.sleep(1.1)
    changed = mc.lists.update_list_member(list_id, ANN_HASH, {"merge_fields": {"FNAME": "Ann"}})
    assert changed["last_changed"] > first["last_changed"]

    since = mc.lists.get_list_members_info(list_id, since_last_changed=changed["last_changed"])
    assert [m["email_address"] for m in since["members"]] == [ANN]
    ordered = mc.lists.get_list_members_info(list_id, sort_field="last_changed", sort_dir="DESC")
    assert [m["email_address"] for m in ordered["members"]] == [ANN, "bob.ray@acme-outfitters.com"]
    before = mc.lists.get_list_members_info(list_id, before_last_changed=changed["last_changed"])
    assert [m["email_address"] for m in before["members"]] == ["bob.ray@acme-outfitters.com"]


def test_members_collection_filters_pages_and_clamps(emulator, mc, list_id):
    for i in range(12):
        put(mc, list_id, f"reader{i:02d}@acme-outfitters.com", status_if_new="subscribed" if i % 3 else "unsubscribed")

    default_page = mc.lists.get_list_members_info(list_id)
    assert len(default_page["members"]) == 10 and default_page["total_items"] == 12
    assert default_page["list_id"] == list_id
    second = mc.lists.get_list_members_info(list_id, count=5, offset=10)
    assert len(second["members"]) == 2
    assert mc.lists.get_list_members_info(list_id, status="unsubscribed")["total_items"] == 4
    unsub = mc.lists.get_list_members_info(list_id, status="unsubscribed", unsubscribed_since="2000-01-01T00:00:00+00:00")
    assert unsub["total_items"] == 4
    assert emulator.api("GET", f"/lists/{list_id}/members", params={"unsubscribed_since": "2000-01-01T00:00:00+00:00"}).status_code == 400
    clamped = emulator.api("GET", f"/lists/{list_id}/members", params={"count": 5000}).json()
    assert len(clamped["members"]) == 12
    slim = mc.lists.get_list_members_info(list_id, fields=["members.email_address", "total_items"], count=1)
    assert slim == {"members": [{"email_address": "reader00@acme-outfitters.com"}], "total_items": 12}
    no_links = mc.lists.get_list_members_info(list_id, exclude_fields=["members._links"], count=1)
    assert "_links" not in no_links["members"][0]
    by_opt = mc.lists.get_list_members_info(list_id, sort_field="timestamp_opt", sort_dir="ASC", status="subscribed")
    assert by_opt["total_items"] == 8


def test_member_writes_via_mailchimp3(mc3, list_id):
    created = mc3.lists.members.create_or_update(
        list_id, ANN_HASH, {"email_address": ANN, "status_if_new": "subscribed", "merge_fields": {"FNAME": "Ann"}}
    )
    assert created["status"] == "subscribed"
    assert mc3.lists.members.get(list_id, ANN_HASH)["merge_fields"]["FNAME"] == "Ann"
    mc3.lists.members.update(list_id, ANN_HASH, {"status": "unsubscribed"})
    everyone = mc3.lists.members.all(list_id, get_all=True, status="unsubscribed")
    assert [m["email_address"] for m in everyone["members"]] == [ANN]
    mc3.lists.members.delete(list_id, ANN_HASH)
    assert mc3.lists.members.get(list_id, ANN_HASH)["status"] == "archived"


def test_tags_are_added_removed_and_listed(mc, list_id, expect_problem):
    put(mc, list_id, ANN, status_if_new="subscribed", tags=["vip"])
    before = mc.lists.get_list_member(list_id, ANN_HASH)["last_changed"]
    resp = mc.lists.update_list_member_tags(
        list_id, ANN_HASH, {"tags": [{"name": "spring-sale", "status": "active"}, {"name": "vip", "status": "inactive"}], "is_syncing": True}
    )
    assert resp.status_code == 204
    tags = mc.lists.get_list_member_tags(list_id, ANN_HASH)
    assert tags["total_items"] == 1
    assert tags["tags"][0]["name"] == "spring-sale"
    assert set(tags["tags"][0]) >= {"id", "name", "date_added"}
    member = mc.lists.get_list_member(list_id, ANN_HASH)
    assert member["tags_count"] == 1 and member["last_changed"] >= before
    error = expect_problem(
        lambda: mc.lists.update_list_member_tags(list_id, hashlib.md5(b"x.y@acme-outfitters.com").hexdigest(), {"tags": [{"name": "a", "status": "active"}]})
    )
    assert error["status"] == 404
    bad = expect_problem(lambda: mc.lists.update_list_member_tags(list_id, ANN_HASH, {"tags": [{"name": "a", "status": "on"}]}))
    assert bad["status"] == 400


def test_put_tags_apply_to_new_members_only(mc, list_id):
    put(mc, list_id, ANN, status_if_new="subscribed", tags=["first"])
    again = put(mc, list_id, ANN, status_if_new="subscribed", tags=["second"])
    assert [t["name"] for t in again["tags"]] == ["first"]


def test_paging_sees_every_change_between_pages(mc, list_id):
    """Paging re-uses the filtered member list between pages (records.Member queries): an added,
    archived or permanently deleted member must still show in the very next page's total_items."""
    for i in range(3):
        mc.lists.add_list_member(list_id, {"email_address": f"page{i}@acme-outfitters.com", "status": "subscribed"})
    first = mc.lists.get_list_members_info(list_id, count=2, offset=0)
    assert first["total_items"] == 3 and len(first["members"]) == 2
    mc.lists.add_list_member(list_id, {"email_address": "page3@acme-outfitters.com", "status": "subscribed"})
    assert mc.lists.get_list_members_info(list_id, count=2, offset=2)["total_items"] == 4
    mc.lists.delete_list_member(list_id, "page0@acme-outfitters.com")  # archive: hidden without status=archived
    assert mc.lists.get_list_members_info(list_id, count=2, offset=2)["total_items"] == 3
    mc.lists.delete_list_member_permanent(list_id, "page1@acme-outfitters.com")
    rest = mc.lists.get_list_members_info(list_id, count=10, offset=0)
    assert rest["total_items"] == 2
    assert sorted(m["email_address"] for m in rest["members"]) == ["page2@acme-outfitters.com", "page3@acme-outfitters.com"]
    assert mc.lists.get_list_members_info(list_id, status="archived")["total_items"] == 1
