"""E-commerce orders with their lines and promos; guest customers created from the order."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from mailchimp_provider.sync.audience import normalise_email
from mailchimp_provider.sync.consent import blocked_emails
from mailchimp_provider.sync.ecommerce.customers import mailchimp_customer_ids
from mailchimp_provider.sync.ecommerce.payloads import RejectedRecord, order_customer_payload, order_payload, text_or_none
from mailchimp_provider.sync.ecommerce.rules import (
    Candidate,
    ChildKind,
    CommerceScope,
    LineItemRules,
    load_states_for,
    rejected_skip,
    source_ids,
    why_not_sent,
)
from mailchimp_provider.sync.ecommerce.store import store_path
from mailchimp_provider.sync.engine import OUTCOME_PENDING, RecordPlan, RunContext, Skip
from mailchimp_provider.warehouse.optional_inputs import log_absent_optional_columns

if TYPE_CHECKING:
    from mailchimp_provider.sync.engine import SyncEngine

log = logging.getLogger(__name__)


class OrderRules(LineItemRules):
    """Orders with their lines and promos (rows carry ``_lines`` and ``_promos``).

    Never sent twice: a confirmed order is only PATCHed when its payload changed (status, totals,
    refund, cancellation, lines). The customer is referenced by id once it is in Mailchimp; a
    customer that appears only on orders (absent from ``customers``) is created from the order's
    optional ``customer_email``/``customer_first_name``/``customer_last_name`` columns, as a
    ``transactional`` contact (no consent is known for it), unless that email asked to be erased or
    belongs to a ``no_marketing`` customer (``sync.consent.blocked_emails``).
    """

    entity = "order"
    sql_name = "orders"
    key_column = "order_id"
    children = (("order_lines", "_lines"), ("order_promos", "_promos"))
    child_kind = ChildKind("order_line", "lines", "dl", "delete_line", "line")
    """A line gone from ``order_lines``: the order is PATCHed without it, then the line deleted."""
    unhashed_columns = frozenset({"cart_id"})

    def __init__(self, scope: CommerceScope) -> None:
        super().__init__(scope)
        self._blocked: dict[str, str] | None = None

    def prepare(self, engine: "SyncEngine", ctx: RunContext) -> None:
        """Say once which optional inputs are absent; when guest orders can create customers (the
        orders query returns ``customer_email``), read who must never be created before anything
        is sent, so an unreadable consent input fails the task before any write."""
        super().prepare(engine, ctx)
        absent = log_absent_optional_columns(engine.db, self.sql_name, log)
        if all(item.column != "customer_email" for item in absent):
            self.blocked_emails(engine)

    def blocked_emails(self, engine: "SyncEngine") -> dict[str, str]:
        """Emails a guest order must not create a contact for; read once per task (a safety input)."""
        if self._blocked is None:
            self._blocked = blocked_emails(engine.db, no_marketing_column=self.scope.consent.no_marketing_column)
        return self._blocked

    def fingerprint_parts(self) -> Any:
        maps = self.config.status_maps
        return [sorted(maps.financial.items()), sorted(maps.fulfillment.items())]

    def collection_path(self, row: Mapping[str, Any]) -> str:
        return store_path(self.store_id, "orders")

    def plan_changed(self, engine: "SyncEngine", items: list[Candidate], ctx: RunContext) -> Iterator[RecordPlan]:
        customer_ids, customers, products, planned_products = self.line_dependencies(engine, items, ctx)
        known_customers = source_ids(engine, "customers", "customer_id", [c for c in customer_ids if c not in customers])
        mapped = mailchimp_customer_ids(engine, customer_ids)  # the customer's current id (email changes)
        maps = self.config.status_maps
        for item in items:
            row, record_id = item.row, item.record_id
            customer_id = text_or_none(row.get("customer_id"))
            try:
                body = order_payload(row, row.get("_lines") or [], row.get("_promos") or [],
                                     customer={"id": mapped.get(customer_id or "", customer_id)}, status_maps=maps)
            except RejectedRecord as error:
                yield RecordPlan(record_id, skips=[rejected_skip(record_id, error)])
                continue
            assert customer_id is not None  # order_payload checked it
            if customer_id not in customers:
                if customer_id in known_customers:
                    state = load_states_for(engine, "customer", [customer_id]).get(customer_id)
                    if state is not None and state.last_outcome == OUTCOME_PENDING:
                        yield RecordPlan(record_id, skips=[Skip(
                            record_id, "customer_pending",
                            f"order {record_id}: customer {customer_id} was sent but Mailchimp's answer was lost "
                            "(result_lost); the order waits until the customer is confirmed")])
                        continue
                    yield RecordPlan(record_id, skips=[Skip(
                        record_id, "customer_not_synced",
                        f"order {record_id}: customer {customer_id} has not reached Mailchimp ({why_not_sent(state)})")])
                    continue
                full = order_customer_payload(row, opt_in_status=False)
                if full is None:
                    given = text_or_none(row.get("customer_email"))
                    why = ("the order has no customer_email to create it from" if given is None
                           else f"the order's customer_email {given!r} is not a valid email address")
                    yield RecordPlan(record_id, skips=[Skip(
                        record_id, "customer_unknown",
                        f"order {record_id}: customer_id {customer_id!r} is not in customers and {why}")])
                    continue
                blocked = self.blocked_emails(engine).get(normalise_email(full["email_address"]) or "")
                if blocked:
                    yield RecordPlan(record_id, skips=[Skip(
                        record_id, "customer_consent_blocked",
                        f"order {record_id}: customer_email of guest {customer_id!r} is not created in Mailchimp "
                        f"({'an erasure request' if blocked == 'erasure_requested' else 'a no_marketing customer'} "
                        "has this address)")])
                    continue
                body["customer"] = full
            missing = self._missing_products(engine, body["lines"], products, planned_products)
            if missing:
                yield RecordPlan(record_id, skips=[Skip(record_id, "product_not_synced", f"order {record_id}: {missing}")])
                continue
            hashed = {**body, "customer": {"id": customer_id}}
            yield self.write(item, body, ctx, hashed=hashed,
                             detail=f"{body.get('financial_status') or '-'}/{body.get('fulfillment_status') or '-'}")
