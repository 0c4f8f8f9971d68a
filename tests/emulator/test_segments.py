"""List segments through the official ``mailchimp_marketing`` client (shared/mailchimp-api.md §12 D):
static segments are tags (one store), saved segments hold conditions, members are listed per segment."""

from __future__ import annotations

from typing import Any

from test_campaigns import add_members, api_error, make_list


def segments(mc: Any, list_id: str, **params: Any) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in mc.lists.list_segments(list_id, count=1000, **params)["segments"]}


def member_emails(mc: Any, list_id: str, segment_id: int, **params: Any) -> set[str]:
    answer = mc.lists.get_segment_members_list(list_id, str(segment_id), count=1000, **params)
    assert answer["total_items"] == len(answer["members"])
    return {m["email_address"] for m in answer["members"]}


def test_a_tag_is_a_static_segment_and_a_static_segment_is_a_tag(mc: Any) -> None:
    list_id = make_list(mc)
    fans = add_members(mc, list_id, 4)
    mc.lists.update_list_member_tags(list_id, fans[0], {"tags": [{"name": "VIP", "status": "active"}]})
    mc.lists.update_list_member_tags(list_id, fans[1], {"tags": [{"name": "VIP", "status": "active"}]})

    vip = segments(mc, list_id)["VIP"]
    assert (vip["type"], vip["member_count"], vip["list_id"]) == ("static", 2, list_id)
    assert vip["id"] == mc.lists.get_list_member_tags(list_id, fans[0])["tags"][0]["id"]
    assert member_emails(mc, list_id, vip["id"]) == {fans[0], fans[1]}

    made = mc.lists.create_segment(list_id, {"name": "Spring buyers", "static_segment": [fans[2], "nobody@brightmail.co"]})
    assert (made["type"], made["member_count"]) == ("static", 1)  # an address not on the list is ignored
    assert [t["name"] for t in mc.lists.get_list_member_tags(list_id, fans[2])["tags"]] == ["Spring buyers"]
    assert {t["name"] for t in mc.lists.tag_search(list_id)["tags"]} == {"VIP", "Spring buyers"}
    assert set(segments(mc, list_id, type="static")) == {"VIP", "Spring buyers"}
    assert segments(mc, list_id, type="saved") == {}


def test_segment_ids_are_unique_in_the_account_not_per_list(mc: Any) -> None:
    first, second = make_list(mc, "One"), make_list(mc, "Two")
    a = mc.lists.create_segment(first, {"name": "Tag", "static_segment": []})
    b = mc.lists.create_segment(second, {"name": "Tag", "static_segment": []})
    assert a["id"] != b["id"]
    status, _ = api_error(lambda: mc.lists.get_segment(second, str(a["id"])))
    assert status == 404


def test_static_members_are_added_and_removed_and_updated_at_moves(mc: Any) -> None:
    list_id = make_list(mc)
    fans = add_members(mc, list_id, 3)
    tag = mc.lists.create_segment(list_id, {"name": "Beta", "static_segment": []})
    answer = mc.lists.batch_segment_members({"members_to_add": fans[:2], "members_to_remove": []}, list_id, str(tag["id"]))
    assert (answer["total_added"], answer["total_removed"], answer["error_count"]) == (2, 0, 0)
    mc.lists.create_segment_member(list_id, str(tag["id"]), {"email_address": fans[2]})
    assert member_emails(mc, list_id, tag["id"]) == set(fans)

    before = mc.lists.get_segment(list_id, str(tag["id"]))["updated_at"]
    mc.lists.remove_segment_member(list_id, str(tag["id"]), fans[0])
    after = mc.lists.get_segment(list_id, str(tag["id"]))
    assert after["member_count"] == 2 and after["updated_at"] >= before
    assert mc.lists.get_list_member_tags(list_id, fans[0])["tags"] == []

    status, body = api_error(lambda: mc.lists.batch_segment_members(
        {"members_to_add": [f"x{i}@brightmail.co" for i in range(501)]}, list_id, str(tag["id"])))
    assert status == 400 and "at most 500" in body["detail"]

    mc.lists.delete_segment(list_id, str(tag["id"]))
    assert "Beta" not in segments(mc, list_id)
    assert all(mc.lists.get_list_member_tags(list_id, f)["tags"] == [] for f in fans)


def test_saved_segment_members_follow_its_conditions(mc: Any) -> None:
    list_id = make_list(mc)
    fans = add_members(mc, list_id, 3)
    vip = mc.lists.create_segment(list_id, {"name": "VIP", "static_segment": [fans[0]]})
    saved = mc.lists.create_segment(list_id, {"name": "VIP or fan.002", "options": {"match": "any", "conditions": [
        {"condition_type": "StaticSegment", "field": "static_segment", "op": "static_is", "value": vip["id"]},
        {"condition_type": "EmailAddress", "field": "EMAIL", "op": "starts", "value": "fan.002"},
    ]}})
    assert (saved["type"], saved["member_count"]) == ("saved", 2)
    assert member_emails(mc, list_id, saved["id"]) == {fans[0], fans[2]}

    mc.lists.update_list_member_tags(list_id, fans[1], {"tags": [{"name": "VIP", "status": "active"}]})
    assert member_emails(mc, list_id, saved["id"]) == set(fans)  # computed when asked

    status, body = api_error(lambda: mc.lists.create_segment_member(list_id, str(saved["id"]), {"email_address": fans[0]}))
    assert status == 400 and "static segment" in body["detail"]
    status, body = api_error(lambda: mc.lists.create_segment(list_id, {"name": "Odd", "options": {"conditions": [
        {"condition_type": "Aim", "field": "aim", "op": "open", "value": "any"}]}}))
    assert status == 400 and body["errors"][0]["field"] == "options.conditions.item:0.condition_type"


def test_unsubscribed_members_are_listed_only_when_asked_for_and_not_counted(mc: Any) -> None:
    list_id = make_list(mc)
    fans = add_members(mc, list_id, 2)
    tag = mc.lists.create_segment(list_id, {"name": "Both", "static_segment": fans})
    mc.lists.update_list_member(list_id, fans[1], {"status": "unsubscribed"})
    assert mc.lists.get_segment(list_id, str(tag["id"]))["member_count"] == 1
    assert member_emails(mc, list_id, tag["id"]) == {fans[0]}
    assert member_emails(mc, list_id, tag["id"], include_unsubscribed=True) == set(fans)


def test_created_and_updated_time_filters(mc: Any) -> None:
    list_id = make_list(mc)
    tag = mc.lists.create_segment(list_id, {"name": "Early", "static_segment": []})
    assert set(segments(mc, list_id, since_updated_at=tag["updated_at"])) == {"Early"}
    assert segments(mc, list_id, before_created_at=tag["created_at"]) == {}
