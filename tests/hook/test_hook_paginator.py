"""OffsetPaginator as a strategy: page parameters, stop rules and recovery from a shifting collection.

These drive the strategy over a plain Python list standing in for one sorted collection; the live
walk over the emulator is in test_hook_live_pagination.py.
"""

from __future__ import annotations

import pytest

from mailchimp_provider.hooks.pagination import OffsetPaginator, build_fields, default_sort_field


def walk(collection: list[int], paginator: OffsetPaginator, between_pages=None) -> list[int]:
    seen: list[int] = []
    while paginator.has_next_page:
        p = paginator.page_params()
        page = collection[p["offset"] : p["offset"] + p["count"]]
        first_seen = page[0] in seen if page else None
        paginator.update(len(page), len(collection), first_item_seen=first_seen)
        seen += [i for i in page if i not in seen]
        if between_pages:
            between_pages(collection, seen)
    return seen


def test_static_collection_is_read_once_in_order():
    assert walk(list(range(95)), OffsetPaginator(10)) == list(range(95))


def test_stops_on_empty_collection_and_short_page():
    paginator = OffsetPaginator(10)
    assert walk([], paginator) == [] and paginator.pages == 1
    paginator = OffsetPaginator(10, overlap=0)
    assert walk(list(range(20)), paginator) == list(range(20)) and paginator.pages == 2


def test_deletions_larger_than_the_overlap_do_not_skip_survivors():
    deleted: set[int] = set()

    def delete_five_early_items(collection, seen):
        for item in list(collection[:5]):
            collection.remove(item)
            deleted.add(item)

    seen = walk(list(range(100)), OffsetPaginator(10, overlap=2), delete_five_early_items)
    survivors = set(range(100)) - deleted
    assert survivors <= set(seen)
    assert len(seen) == len(set(seen))


def test_page_size_is_clamped_to_mailchimps_maximum_and_overlap_below_it():
    assert OffsetPaginator(5000).page_params() == {"count": 1000, "offset": 0}
    assert OffsetPaginator(1, overlap=5).overlap == 0
    with pytest.raises(ValueError):
        OffsetPaginator(0)


def test_sort_fields_per_collection():
    assert default_sort_field("/lists/abc123/members") == "last_changed"
    assert default_sort_field("/campaigns") == "create_time"
    assert default_sort_field("/lists") == "date_created"
    assert default_sort_field("/batches") is None


def test_fields_always_carry_total_items_and_the_key():
    assert build_fields("members", ["email_address", "members.status"], "id") == (
        "members.email_address,members.status,total_items,members.id"
    )
    assert build_fields("members", "members", "id") == "members,total_items"
    assert build_fields("members", None, "id") is None
