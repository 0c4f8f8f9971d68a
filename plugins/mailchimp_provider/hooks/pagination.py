"""Count/offset pagination that survives a collection changing underneath the walk.

Offset paging over a live collection skips an item whenever something before it is deleted (or
modified, when the sort key is ``last_changed``: the item moves to the end) between two page reads,
and repeats items when something is inserted before the offset. The defences, all in
``OffsetPaginator`` so the hook's loop stays trivial:

* sort ascending by a field that only grows (``last_changed``, ``create_time``, ``date_created``),
  so new and changed items land at the end of the walk instead of shifting earlier pages;
* overlap consecutive pages by a few items and de-duplicate by key within the walk;
* check the overlap: if the first item of a page was *not* seen before, more items vanished before
  it than the overlap covers, so step back until the page starts on a known item;
* stop on an empty or short page, or once the offset reaches ``total_items``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

log = logging.getLogger(__name__)

MAX_PAGE_SIZE = 1000
"""Mailchimp's maximum ``count``; larger values are silently clamped by the server."""

_SORT_FIELDS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^/?lists/[^/]+/members/?$"), "last_changed"),
    (re.compile(r"^/?campaigns/?$"), "create_time"),
    (re.compile(r"^/?lists/?$"), "date_created"),
)


_ITEM_KEYS: dict[str, str] = {
    "merge_fields": "merge_id",
    "emails": "email_id",
    "unsubscribes": "email_id",
    "sent_to": "email_id",
}
"""Collections whose items have no ``id``: the field that identifies an item instead."""


def item_key_field(items_key: str, dedupe_key: str | None) -> str | None:
    """The de-duplication field: ``dedupe_key``, except the default ``"id"`` on id-less collections."""
    if dedupe_key == "id":
        return _ITEM_KEYS.get(items_key, "id")
    return dedupe_key


def default_sort_field(path: str) -> str | None:
    """The ever-growing sort field Mailchimp supports for this collection, if any."""
    for pattern, sort_field in _SORT_FIELDS:
        if pattern.match(path):
            return sort_field
    return None


def build_fields(items_key: str, fields: Iterable[str] | str | None, dedupe_key: str | None) -> str | None:
    """The ``fields`` query value for a paged read, or None to get whole items.

    ``fields`` names item fields (``email_address``, ``merge_fields.FNAME``) or full paths
    (``members.email_address``). ``total_items`` and the de-duplication key are always added: the
    walk cannot stop or de-duplicate correctly without them.
    """
    if fields is None:
        return None
    names = [f.strip() for f in (fields.split(",") if isinstance(fields, str) else fields) if f.strip()]
    out: list[str] = []
    for name in names:
        if name == "total_items" or name == items_key or name.startswith(f"{items_key}."):
            out.append(name)
        else:
            out.append(f"{items_key}.{name}")
    required = ["total_items"]
    if items_key not in out:
        required.append(f"{items_key}.{dedupe_key}" if dedupe_key else items_key)
    for name in required:
        if name not in out:
            out.append(name)
    return ",".join(out)


class OffsetPaginator:
    """Decides the ``count``/``offset`` of the next page and when the walk is over.

    Call ``page_params()`` for the next request, then ``update()`` with what came back. With
    ``overlap`` > 0 the caller must de-duplicate and tell ``update()`` whether the page's first
    item had been seen already (that is how shifted items are detected).
    """

    def __init__(self, page_size: int = MAX_PAGE_SIZE, *, overlap: int | None = None, max_rewinds: int = 50):
        if page_size < 1:
            raise ValueError(f"page_size must be >= 1, got {page_size}")
        self.page_size = min(page_size, MAX_PAGE_SIZE)
        wanted = max(1, min(10, self.page_size // 10)) if overlap is None else overlap
        if wanted < 0:
            raise ValueError(f"overlap must be >= 0, got {overlap}")
        self.overlap = min(wanted, self.page_size - 1)
        self.max_rewinds = max_rewinds
        self.offset = 0
        self.total_items: int | None = None
        self.has_next_page = True
        self.pages = 0
        self.rewinds = 0

    def page_params(self) -> dict[str, int]:
        return {"count": self.page_size, "offset": self.offset}

    def _rewind(self, to: int, why: str) -> bool:
        """Step back to offset ``to``; False (with a warning) once the re-read budget is spent."""
        if self.rewinds >= self.max_rewinds:
            if self.rewinds == self.max_rewinds:
                self.rewinds += 1
                log.warning(
                    "Collection keeps shifting (%s) after %d re-reads; carrying on forward, so items "
                    "that moved during the walk may be missing from it",
                    why,
                    self.max_rewinds,
                )
            return False
        self.rewinds += 1
        log.info("Collection shifted during pagination (%s): re-reading from offset %d", why, max(0, to))
        self.offset = max(0, to)
        return True

    def update(self, page_len: int, total_items: int | None, *, first_item_seen: bool | None = None) -> None:
        """Advance past a page of ``page_len`` items; ``first_item_seen`` checks the overlap."""
        self.pages += 1
        if total_items is not None:
            self.total_items = int(total_items)
        step = self.page_size - self.overlap
        if self.overlap > 0 and self.offset > 0:
            if page_len == 0 and self.total_items:
                # We ran off the end because items before us vanished: step back into what is left.
                if self._rewind(min(self.offset - step, self.total_items - 1), "page past the end"):
                    return
            elif page_len and first_item_seen is False:
                if self._rewind(self.offset - step, "first item of the page was not in the overlap"):
                    return
        end = self.offset + page_len
        if page_len < self.page_size or (self.total_items is not None and end >= self.total_items):
            self.has_next_page = False
            return
        self.offset = end - self.overlap
