"""Lists (audiences): create, read, page, update, delete, and their computed stats (facts §6.1, §9.15)."""

from __future__ import annotations

import re



def test_created_list_has_mailchimp_shape_and_default_merge_fields(mc, list_body):
    created = mc.lists.create_list(list_body)

    assert re.fullmatch(r"[0-9a-f]{10}", created["id"])
    assert isinstance(created["web_id"], int)
    assert created["name"] == "Newsletter"
    assert created["contact"]["company"] == "Acme Outfitters"
    assert created["permission_reminder"] == list_body["permission_reminder"]
    assert created["campaign_defaults"]["from_email"] == "news@acme-outfitters.com"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", created["date_created"])
    assert created["stats"]["member_count"] == 0
    assert created["stats"]["campaign_last_sent"] == ""
    assert "total_contacts" not in created["stats"]
    tags = [f["tag"] for f in mc.lists.get_list_merge_fields(created["id"])["merge_fields"]]
    assert tags[:4] == ["FNAME", "LNAME", "ADDRESS", "PHONE"]


def test_create_list_names_missing_required_fields(mc, list_body, expect_problem):
    body = {k: v for k, v in list_body.items() if k not in ("name", "permission_reminder")}
    error = expect_problem(lambda: mc.lists.create_list(body))
    assert error["status"] == 400
    assert error["title"] == "Invalid Resource"
    assert "name" in error["errors"][0]["message"] and "permission_reminder" in error["errors"][0]["message"]


def test_member_count_counts_subscribed_only(mc, list_id):
    for email, status in [
        ("ann.lee@acme-outfitters.com", "subscribed"),
        ("bob.ray@acme-outfitters.com", "subscribed"),
        ("cid.fox@acme-outfitters.com", "unsubscribed"),
        ("dee.ott@acme-outfitters.com", "cleaned"),
        ("eve.pym@acme-outfitters.com", "pending"),
    ]:
        mc.lists.add_list_member(list_id, {"email_address": email, "status": status})

    stats = mc.lists.get_list(list_id, include_total_contacts=True)["stats"]
    assert stats["member_count"] == 2
    assert stats["unsubscribe_count"] == 1
    assert stats["cleaned_count"] == 1
    assert stats["total_contacts"] == 5
    assert stats["last_sub_date"] != "" and stats["last_unsub_date"] != ""


def test_lists_collection_pages_sorts_and_filters_fields(mc, list_body):
    ids = [mc.lists.create_list({**list_body, "name": f"List {i}"})["id"] for i in range(3)]

    first = mc.lists.get_all_lists(count=2, offset=0, sort_field="date_created", sort_dir="ASC")
    second = mc.lists.get_all_lists(count=2, offset=2, sort_field="date_created", sort_dir="ASC")
    assert first["total_items"] == 3
    assert [l["id"] for l in first["lists"] + second["lists"]] == ids

    slim = mc.lists.get_all_lists(fields=["lists.id", "lists.name", "total_items"])
    assert set(slim) == {"lists", "total_items"}
    assert all(set(l) == {"id", "name"} for l in slim["lists"])
    without_links = mc.lists.get_all_lists(exclude_fields=["lists._links"])
    assert all("_links" not in l for l in without_links["lists"])


def test_lists_filter_by_member_email(mc, list_id, list_body):
    other = mc.lists.create_list({**list_body, "name": "Other"})["id"]
    mc.lists.add_list_member(other, {"email_address": "only.here@acme-outfitters.com", "status": "subscribed"})
    found = mc.lists.get_all_lists(email="only.here@acme-outfitters.com")
    assert [l["id"] for l in found["lists"]] == [other]


def test_update_and_delete_list(mc, list_id, expect_problem):
    updated = mc.lists.update_list(list_id, {"name": "Renamed", "campaign_defaults": {"subject": "Hello"}})
    assert updated["name"] == "Renamed"
    assert updated["campaign_defaults"]["subject"] == "Hello"
    assert updated["campaign_defaults"]["from_name"] == "Acme"

    assert mc.lists.delete_list(list_id).status_code == 204
    error = expect_problem(lambda: mc.lists.get_list(list_id))
    assert (error["status"], error["title"]) == (404, "Resource Not Found")


def test_count_above_1000_is_clamped_not_rejected(emulator, list_id):
    resp = emulator.api("GET", "/lists", params={"count": 3000})
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/json; charset=utf-8"


def test_mailchimp3_reads_lists(mc3, list_id):
    everything = mc3.lists.all(get_all=True)
    assert [l["id"] for l in everything["lists"]] == [list_id]
    assert mc3.lists.get(list_id)["name"] == "Newsletter"
