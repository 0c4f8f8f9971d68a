"""E-commerce products, each with all its variants in one record."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator, Mapping, Any

from mailchimp_provider.sync.ecommerce.payloads import RejectedRecord, product_payload
from mailchimp_provider.sync.ecommerce.rules import Candidate, ChildKind, CommerceRules, rejected_skip
from mailchimp_provider.sync.ecommerce.store import store_path
from mailchimp_provider.sync.engine import RecordPlan, RunContext

if TYPE_CHECKING:
    from mailchimp_provider.sync.engine import SyncEngine


class ProductRules(CommerceRules):
    """Products with all their variants; rows carry their variant rows under ``_variants``."""

    entity = "product"
    sql_name = "products"
    key_column = "product_id"
    children = (("product_variants", "_variants"),)
    child_kind = ChildKind("variant", "variants", "dv", "delete_variant", "variant")
    """A variant row gone from ``product_variants`` is deleted once the product's PATCH is confirmed."""
    unhashed_columns = frozenset({"created_at", "updated_at"})

    def collection_path(self, row: Mapping[str, Any]) -> str:
        return store_path(self.store_id, "products")

    def plan_changed(self, engine: "SyncEngine", items: list[Candidate], ctx: RunContext) -> Iterator[RecordPlan]:
        for item in items:
            try:
                body = product_payload(item.row, item.row.get("_variants") or [])
            except RejectedRecord as error:
                yield RecordPlan(item.record_id, skips=[rejected_skip(item.record_id, error)])
                continue
            variants = [v["id"] for v in body["variants"]]
            yield self.write(item, body, ctx, extra={"variants": variants}, detail=f"{len(variants)} variant(s)")
