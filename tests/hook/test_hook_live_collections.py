"""Collections against the live emulator: paging over a changing audience, and batch subscribe."""

from __future__ import annotations

import hashlib

import pytest

from mailchimp_provider.errors import MailchimpError
from mailchimp_provider.hooks.mailchimp import MailchimpHook
from fixtures.emulator import AUDIENCE_BODY

LIST_BODY = {**AUDIENCE_BODY, "permission_reminder": "You bought from our shop."}


def email(n: int) -> str:
    return f"customer.{n:04d}@northwind-mail.com"


@pytest.fixture
def list_id(emulator) -> str:
    return MailchimpHook().post("/lists", json=LIST_BODY)["id"]


def subscribe(hook: MailchimpHook, list_id: str, numbers) -> None:
    members = [{"email_address": email(n), "status": "subscribed"} for n in numbers]
    for answer in hook.batch_subscribe(list_id, members):
        assert answer["error_count"] == 0, answer["errors"]


def test_subscriber_hash_is_md5_of_trimmed_lowercase_email():
    assert MailchimpHook.subscriber_hash("  Jane.Doe@Northwind-Mail.com ") == hashlib.md5(
        b"jane.doe@northwind-mail.com"
    ).hexdigest()


def test_batch_subscribe_sends_1100_members_in_three_calls(emulator, list_id):
    hook = MailchimpHook()
    members = [{"email_address": email(n), "status": "subscribed"} for n in range(1100)]
    answers = list(hook.batch_subscribe(list_id, members))
    assert [a["total_created"] for a in answers] == [500, 500, 100]
    assert emulator.admin("GET", "stats")["routes"]["POST /lists/{list_id}"]["total"] == 3
    assert hook.get(f"/lists/{list_id}/members", params={"count": 0})["total_items"] == 1100


def test_batch_subscribe_flags_reach_the_api(emulator, list_id):
    hook = MailchimpHook()
    subscribe(hook, list_id, [1])
    (again,) = hook.batch_subscribe(list_id, [{"email_address": email(1), "status": "subscribed"}])
    assert again["errors"][0]["error_code"] == "ERROR_CONTACT_EXISTS"
    (updated,) = hook.batch_subscribe(
        list_id, [{"email_address": email(1), "status": "unsubscribed"}], update_existing=True
    )
    assert updated["total_updated"] == 1


def test_batch_subscribe_rejects_a_member_without_email_before_sending(emulator, list_id):
    before = emulator.admin("GET", "stats")["requests"]
    members = [{"email_address": email(1)}, {"status": "subscribed"}]
    with pytest.raises(ValueError, match="member #1: field 'email_address'"):
        list(MailchimpHook().batch_subscribe(list_id, members))
    assert emulator.admin("GET", "stats")["requests"] == before


def test_paginate_reads_every_member_once_with_partial_fields(emulator, list_id):
    hook = MailchimpHook()
    subscribe(hook, list_id, range(25))
    items = list(
        hook.paginate(f"/lists/{list_id}/members", "members", page_size=10, fields=["email_address"])
    )
    assert sorted(i["email_address"] for i in items) == [email(n) for n in range(25)]
    assert set(items[0]) == {"id", "email_address"}


def test_paginate_over_a_changing_audience_yields_every_steady_member_exactly_once(emulator, list_id):
    """After each of the first five pages: 3 members archived, 2 added, 1 updated (so it moves to the
    end of the last_changed order). Members present throughout must each come out exactly once."""
    hook = MailchimpHook()
    subscribe(hook, list_id, range(60))
    path = f"/lists/{list_id}/members"
    archived: set[str] = set()
    added = iter(range(1000, 2000))
    to_archive = iter(range(59, 0, -4))  # spread over the whole walk, seen and unseen alike
    to_update = iter(range(0, 60, 7))

    yielded: list[str] = []
    pages_seen = 0
    for item in hook.paginate(path, "members", page_size=10, fields=["email_address"]):
        yielded.append(item["email_address"])
        if len(yielded) // 10 > pages_seen and pages_seen < 5:  # a page consumed: change the audience
            pages_seen = len(yielded) // 10
            for _ in range(3):
                n = next(to_archive)
                if email(n) not in archived:
                    hook.delete(f"{path}/{MailchimpHook.subscriber_hash(email(n))}")
                    archived.add(email(n))
            subscribe(hook, list_id, [next(added), next(added)])
            n = next(to_update)
            if email(n) not in archived:
                member_path = f"{path}/{MailchimpHook.subscriber_hash(email(n))}"
                hook.patch(member_path, json={"merge_fields": {"FNAME": "Moved"}})

    steady = {email(n) for n in range(60)} - archived
    assert len(archived) == 15
    assert len(yielded) == len(set(yielded)), "an item was yielded twice"
    assert steady <= set(yielded), f"skipped: {sorted(steady - set(yielded))}"


def test_paginate_sorts_members_by_last_changed_ascending(emulator, list_id):
    hook = MailchimpHook()
    subscribe(hook, list_id, range(3))
    path = f"/lists/{list_id}/members"
    hook.patch(f"{path}/{MailchimpHook.subscriber_hash(email(0))}", json={"merge_fields": {"FNAME": "Ann"}})
    order = [m["email_address"] for m in hook.paginate(path, "members", fields=["email_address"])]
    assert order == [email(1), email(2), email(0)]


def test_paginate_of_lists_and_a_missing_items_key(emulator, list_id):
    hook = MailchimpHook()
    assert [lst["id"] for lst in hook.paginate("/lists", "lists")] == [list_id]
    with pytest.raises(MailchimpError, match="no 'audiences' list"):
        list(hook.paginate("/lists", "audiences"))


def test_paginate_merge_fields_deduplicates_on_merge_id(emulator, list_id):
    fields = list(MailchimpHook().paginate(f"/lists/{list_id}/merge-fields", "merge_fields", page_size=2))
    tags = [f["tag"] for f in fields]
    assert "FNAME" in tags and len(tags) == len(set(tags)) == len({f["merge_id"] for f in fields})
