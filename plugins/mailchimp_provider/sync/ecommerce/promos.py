"""E-commerce promo rules and the promo codes that live under them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator, Mapping

from mailchimp_provider.sync.ecommerce.payloads import RejectedRecord, promo_code_payload, promo_rule_payload, text_or_none
from mailchimp_provider.sync.ecommerce.rules import (
    Candidate,
    CommerceRules,
    confirmed_ids,
    load_states_for,
    planned_in_run,
    rejected_skip,
    why_not_sent,
)
from mailchimp_provider.sync.ecommerce.store import store_path
from mailchimp_provider.sync.engine import RecordPlan, RunContext, Skip, StateRow

if TYPE_CHECKING:
    from mailchimp_provider.sync.engine import SyncEngine


class PromoRuleRules(CommerceRules):
    entity = "promo_rule"
    sql_name = "promo_rules"
    key_column = "promo_rule_id"

    def collection_path(self, row: Mapping[str, Any]) -> str:
        return store_path(self.store_id, "promo-rules")

    def plan_changed(self, engine: "SyncEngine", items: list[Candidate], ctx: RunContext) -> Iterator[RecordPlan]:
        for item in items:
            try:
                body = promo_rule_payload(item.row)
            except RejectedRecord as error:
                yield RecordPlan(item.record_id, skips=[rejected_skip(item.record_id, error)])
                continue
            yield self.write(item, body, ctx)


class PromoCodeRules(CommerceRules):
    """Promo codes live under their rule: the rule must have reached Mailchimp first."""

    entity = "promo_code"
    sql_name = "promo_codes"
    key_column = "promo_code_id"

    def collection_path(self, row: Mapping[str, Any]) -> str:
        return store_path(self.store_id, "promo-rules", str(text_or_none(row.get("promo_rule_id"))), "promo-codes")

    def delete_path(self, record_id: str, state: StateRow) -> str:
        return self.item_path({"promo_rule_id": state.extra.get("promo_rule_id")}, record_id)

    def plan_changed(self, engine: "SyncEngine", items: list[Candidate], ctx: RunContext) -> Iterator[RecordPlan]:
        rule_ids = [r for r in (text_or_none(item.row.get("promo_rule_id")) for item in items) if r]
        confirmed = confirmed_ids(engine, "promo_rule", rule_ids) | planned_in_run(engine, ctx, "promo_rule", rule_ids)
        for item in items:
            record_id = item.record_id
            try:
                body = promo_code_payload(item.row)
            except RejectedRecord as error:
                yield RecordPlan(record_id, skips=[rejected_skip(record_id, error)])
                continue
            rule_id = str(text_or_none(item.row.get("promo_rule_id")))
            if rule_id not in confirmed:
                yield RecordPlan(record_id, skips=[Skip(
                    record_id, "promo_rule_not_synced",
                    f"promo code {record_id}: its promo rule {rule_id} has not reached Mailchimp "
                    f"({why_not_sent(load_states_for(engine, 'promo_rule', [rule_id]).get(rule_id))})")])
                continue
            yield self.write(item, body, ctx, extra={"promo_rule_id": rule_id})
