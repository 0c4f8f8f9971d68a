"""Every API path built from data goes through ``sync.paths``: a segment is one segment."""

from __future__ import annotations

import pytest

from mailchimp_provider.sync.ecommerce.store import store_path
from mailchimp_provider.sync.paths import UnsafePathSegment, api_path


def test_each_segment_is_percent_encoded() -> None:
    assert api_path("lists", "abc", "members", "x") == "/lists/abc/members/x"
    assert store_path("shop", "customers", "../../../lists/L1/members/x") == (
        "/ecommerce/stores/shop/customers/..%2F..%2F..%2Flists%2FL1%2Fmembers%2Fx")
    assert api_path("lists", "a b?c#d%e") == "/lists/a%20b%3Fc%23d%25e"


@pytest.mark.parametrize("segment", ["", ".", ".."])
def test_segments_no_encoding_can_protect_are_refused(segment: str) -> None:
    with pytest.raises(UnsafePathSegment):
        api_path("ecommerce", "stores", "shop", "customers", segment)
