"""Mailchimp API paths built from data: every segment percent-encoded, in one place.

Ids come from the warehouse (customer, product, order and promo ids) or from Mailchimp (list,
campaign, member ids). Put into a path verbatim, an id such as ``../../../lists/abc/members/x``
names another resource: a proxy that normalises ``..`` would send a customer body to a member URL.
So every path the provider builds from data goes through :func:`api_path`, which encodes each
segment with ``urllib.parse.quote(safe="")`` (``/`` becomes ``%2F``, ``?`` ``%3F``, ``#``
``%23``). Mailchimp decodes each segment back, so the record keeps its literal id; batch
operations carry the same paths, so a batched write and a direct call address the same resource.

A segment that is empty, or only dots, has no encoding that survives URL normalisation (``.`` is
an unreserved character, which clients decode again); such ids are refused before a path is built
(the sync engine skips them with reason ``invalid: <id column>``), and :func:`api_path` raises.
"""

from __future__ import annotations

import re
from urllib.parse import quote

_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]+").fullmatch
"""Text ``quote(safe="")`` leaves as it is: list ids, subscriber hashes and most record ids are
returned without the encode / scan / decode round trip (four segments per member write)."""


class UnsafePathSegment(ValueError):
    """A path segment that cannot be sent safely (empty, or only dots)."""


def path_segment(value: object) -> str:
    """One segment, percent-encoded; ``UnsafePathSegment`` for empty or dot-only values."""
    text = value if value.__class__ is str else str(value)
    if text.strip(".") == "":
        raise UnsafePathSegment(f"{text!r} cannot be a Mailchimp URL path segment")
    return text if _UNRESERVED(text) else quote(text, safe="")


def api_path(*segments: object) -> str:
    """``api_path("lists", list_id, "members", member_hash)`` -> ``/lists/<id>/members/<hash>``.

    Every segment is encoded, literal ones included (they encode to themselves), so a caller never
    has to decide which parts came from data.
    """
    return "/" + "/".join(path_segment(s) for s in segments)
