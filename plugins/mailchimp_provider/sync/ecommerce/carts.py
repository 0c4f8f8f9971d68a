"""E-commerce carts, for abandoned-cart emails: optional source tables ``carts`` and ``cart_lines``.

* **Optional.** Without the tables (``warehouse.optional_inputs.OPTIONAL_TABLES``) the carts task
  says once what that turns off and sends nothing; the rest of the sync is unaffected.
* **Create vs update.** Mailchimp has no PUT for carts (facts §12 B): POST a new cart, PATCH a
  changed one. The PATCH body carries no ``id`` and no ``customer`` (Mailchimp's PATCH cannot
  change the cart's customer), and its lines no ``id`` (they replace the cart's lines). Healing
  ("already exists" -> PATCH, 404 -> POST) is the shared one of ``rules.CommerceRules``.
* **Dependencies.** A cart references its customer by id, so the customer must have reached
  Mailchimp (carts carry no email to create one from); every line's product and variant too.
  Otherwise the cart waits with reason ``customer_not_synced`` / ``product_not_synced``.
* **A cart that became an order is deleted** in Mailchimp, so nobody is reminded of a cart they
  bought: either its row leaves ``carts`` (``on_delete.cart: delete``, the default), or an order
  names it in the optional ``orders.cart_id``. A bought cart never sent is simply not sent.
* **A cart whose customer changed** cannot be PATCHed to its new customer; it is skipped with
  reason ``cart_customer_changed`` (give the new customer's cart a new id).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Iterator

import sqlalchemy as sa

from mailchimp_provider.sync.ecommerce.payloads import RejectedRecord, cart_payload, text_or_none
from mailchimp_provider.sync.ecommerce.rules import (
    Candidate,
    LineItemRules,
    load_states_for,
    rejected_skip,
    why_not_sent,
)
from mailchimp_provider.sync.ecommerce.store import store_path
from mailchimp_provider.sync.engine import OUTCOME_OK, OpRef, Outcome, PlannedOp, RecordPlan, RunContext, Skip, StateRow
from mailchimp_provider.warehouse.optional_inputs import absent_optional_columns, absent_optional_tables

if TYPE_CHECKING:
    from mailchimp_provider.batches.results import OperationResult
    from mailchimp_provider.sync.engine import SyncEngine

log = logging.getLogger(__name__)


class CartRules(LineItemRules):
    """Carts with their lines (rows carry ``_lines``)."""

    entity = "cart"
    sql_name = "carts"
    key_column = "cart_id"
    children = (("cart_lines", "_lines"),)
    unhashed_columns = frozenset({"created_at", "updated_at"})
    optional_queries = ("carts", "cart_lines")
    """The queries whose tables may be absent: then the entity is off (see :meth:`source_absent`)."""

    def collection_path(self, row: Any) -> str:
        return store_path(self.store_id, "carts")

    def source_absent(self, engine: "SyncEngine") -> bool:
        """True (and said once, in the task log) when a cart table does not exist."""
        absent = absent_optional_tables(engine.db, self.optional_queries)
        for item in absent:
            log.info("%s", item.message())
        return bool(absent)

    def prepare(self, engine: "SyncEngine", ctx: RunContext) -> None:
        super().prepare(engine, ctx)
        # orders.cart_id (optional): which carts were bought, read per chunk when orders return it
        ctx.data["orders_name_carts"] = not any(
            item.column == "cart_id" for item in absent_optional_columns(engine.db, "orders"))

    def update_body(self, body: dict[str, Any]) -> dict[str, Any]:
        patch = {k: v for k, v in body.items() if k not in ("id", "customer")}
        patch["lines"] = [{k: v for k, v in line.items() if k != "id"} for line in body["lines"]]
        return patch

    def plan(self, engine: "SyncEngine", rows: list[dict[str, Any]], states: dict[str, StateRow],
             ctx: RunContext) -> Iterator[RecordPlan]:
        bought = ordered_carts(engine, [str(r[self.key_column]) for r in rows]) if ctx.data.get("orders_name_carts") else set()
        rest = []
        for row in rows:
            record_id = str(row[self.key_column])
            if record_id not in bought:
                rest.append(row)
                continue
            state = states.get(record_id)
            if self.in_mailchimp(state):
                assert state is not None
                yield self.removal(record_id, state, "delete", "an order was bought from this cart (orders.cart_id)")
            else:
                yield RecordPlan(record_id, unchanged=True)  # bought before it was ever sent: nothing to do
        if rest:
            yield from super().plan(engine, rest, states, ctx)

    def plan_changed(self, engine: "SyncEngine", items: list[Candidate], ctx: RunContext) -> Iterator[RecordPlan]:
        customer_ids, customers, products, planned_products = self.line_dependencies(engine, items, ctx)
        for item in items:
            row, record_id, state = item.row, item.record_id, item.state
            customer_id = text_or_none(row.get("customer_id"))
            try:
                body = cart_payload(row, row.get("_lines") or [], customer={"id": customer_id})
            except RejectedRecord as error:
                yield RecordPlan(record_id, skips=[rejected_skip(record_id, error)])
                continue
            if customer_id not in customers:
                customer_state = load_states_for(engine, "customer", [customer_id]).get(str(customer_id))
                yield RecordPlan(record_id, skips=[Skip(
                    record_id, "customer_not_synced",
                    f"cart {record_id}: customer {customer_id} has not reached Mailchimp ({why_not_sent(customer_state)})")])
                continue
            previous = state.extra.get("customer_id") if state is not None and self.in_mailchimp(state) else None
            if previous is not None and previous != customer_id:
                yield RecordPlan(record_id, skips=[Skip(
                    record_id, "cart_customer_changed",
                    f"cart {record_id}: its customer changed from {previous} to {customer_id}; Mailchimp cannot move a "
                    "cart to another customer (give the new customer's cart a new cart_id)")])
                continue
            missing = self._missing_products(engine, body["lines"], products, planned_products)
            if missing:
                yield RecordPlan(record_id, skips=[Skip(record_id, "product_not_synced", f"cart {record_id}: {missing}")])
                continue
            yield self.write(item, body, ctx, extra={"customer_id": customer_id},
                             detail=f"{len(body['lines'])} line(s), {body['order_total']} {body['currency_code']}")

    def interpret(self, op: PlannedOp | None, ref: OpRef, result: "OperationResult", state: StateRow | None) -> Outcome:
        outcome = super().interpret(op, ref, result, state)
        if outcome.outcome == OUTCOME_OK and ref.step == "d":
            outcome.extra["customer_id"] = None
        return outcome


def ordered_carts(engine: "SyncEngine", cart_ids: list[str]) -> set[str]:
    """Which of ``cart_ids`` an order names in ``orders.cart_id`` (bounded ``IN`` lookups)."""
    from mailchimp_provider.sync.engine import source_sql

    ids = sorted(set(cart_ids))
    if not ids:
        return set()
    stmt = sa.text(
        f"SELECT DISTINCT src.cart_id FROM ({source_sql('orders', engine.db)}) src WHERE src.cart_id IN :ids"
    ).bindparams(sa.bindparam("ids", expanding=True))
    found: set[str] = set()
    with engine.db.connect() as conn:
        for start in range(0, len(ids), 900):
            found.update(str(r[0]) for r in conn.execute(stmt, {"ids": ids[start:start + 900]}))
    return found
