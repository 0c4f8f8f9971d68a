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
* **A cart whose customer's email changed** references the customer's new Mailchimp id (the
  mapping kept by ``customers.py``). A cart already in Mailchimp under the old id is *moved*: the
  PATCH body has no customer id, so it is deleted (step ``m``) and, in the next pass of the same
  run, created again under the new id; the old customer is left with no cart to remind anyone of.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Iterator

import sqlalchemy as sa

from mailchimp_provider.sync.ecommerce.customers import mailchimp_customer_ids
from mailchimp_provider.sync.ecommerce.payloads import RejectedRecord, cart_payload, text_or_none
from mailchimp_provider.sync.ecommerce.rules import (
    OPERATION_NAMES,
    Candidate,
    LineItemRules,
    load_states_for,
    rejected_skip,
    why_not_sent,
)
from mailchimp_provider.sync.ecommerce.store import store_path
from mailchimp_provider.sync.engine import (
    OUTCOME_OK,
    OpRef,
    Outcome,
    PlannedOp,
    RecordPlan,
    RunContext,
    Skip,
    StateRow,
    payload_hash,
)
from mailchimp_provider.warehouse.optional_inputs import absent_optional_columns, absent_optional_tables

if TYPE_CHECKING:
    from mailchimp_provider.batches.results import OperationResult
    from mailchimp_provider.sync.engine import SyncEngine

log = logging.getLogger(__name__)
STEP_MOVE = "m"
"""The DELETE of a cart that must be created again under its customer's new Mailchimp id."""


class CartRules(LineItemRules):
    """Carts with their lines (rows carry ``_lines``)."""

    entity = "cart"
    sql_name = "carts"
    key_column = "cart_id"
    children = (("cart_lines", "_lines"),)
    unhashed_columns = frozenset({"created_at", "updated_at"})
    optional_queries = ("carts", "cart_lines")
    replan_after_steps = frozenset({STEP_MOVE})
    """A confirmed move (the delete) is followed by the create in the next pass (``EcommerceSyncEngine``)."""
    operation_names = {**OPERATION_NAMES, STEP_MOVE: "delete"}
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
        moved = self._customer_moved(engine, rest, states)
        if moved:
            rest = [r for r in rest if str(r[self.key_column]) not in moved]
            yield from self.plan_changed(engine, [Candidate(r, str(r[self.key_column]), states.get(str(r[self.key_column])),
                                                            self.source_hash(r)) for r in moved.values()], ctx)
        if rest:
            yield from super().plan(engine, rest, states, ctx)

    def _customer_moved(self, engine: "SyncEngine", rows: list[dict[str, Any]],
                        states: dict[str, StateRow]) -> dict[str, dict[str, Any]]:
        """Rows of carts in Mailchimp whose customer now has another Mailchimp id (its email changed):
        planned in full even when the cart's own row did not change."""
        held = {rid: s.extra.get("customer_ref") or s.extra.get("customer_id")
                for rid, s in states.items() if self.in_mailchimp(s)}
        if not held:
            return {}
        mapped = mailchimp_customer_ids(engine, {str(r.get("customer_id")) for r in rows if r.get("customer_id") is not None})
        out: dict[str, dict[str, Any]] = {}
        for row in rows:
            record_id, customer_id = str(row[self.key_column]), text_or_none(row.get("customer_id"))
            now = mapped.get(customer_id or "")
            if record_id in held and now is not None and held[record_id] != now:
                out[record_id] = row
        return out

    def plan_changed(self, engine: "SyncEngine", items: list[Candidate], ctx: RunContext) -> Iterator[RecordPlan]:
        customer_ids, customers, products, planned_products = self.line_dependencies(engine, items, ctx)
        mapped = mailchimp_customer_ids(engine, customer_ids)  # the customer's current id (email changes)
        for item in items:
            row, record_id, state = item.row, item.record_id, item.state
            customer_id = text_or_none(row.get("customer_id"))
            ref = mapped.get(customer_id or "", customer_id)
            try:
                body = cart_payload(row, row.get("_lines") or [], customer={"id": ref})
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
            held = (state.extra.get("customer_ref") or previous) if state is not None and previous is not None else None
            if held is not None and held != ref:
                assert state is not None
                yield RecordPlan(record_id, ops=[PlannedOp(
                    record_id, STEP_MOVE, "delete", "DELETE", self.item_path(row, record_id), None,
                    payload_hash(["move", ref]), "delete",
                    detail=f"cart {record_id}: its customer's email changed; deleted under Mailchimp customer {held} "
                           f"and created again under {ref}")])
                continue
            yield self.write(item, body, ctx, extra={"customer_id": customer_id, "customer_ref": ref},
                             detail=f"{len(body['lines'])} line(s), {body['order_total']} {body['currency_code']}")

    def interpret(self, op: PlannedOp | None, ref: OpRef, result: "OperationResult", state: StateRow | None) -> Outcome:
        if ref.step == STEP_MOVE:  # a delete, after which the next pass creates the cart again
            outcome = self.interpret_delete(ref, result)
            outcome.follow_up = True
        else:
            outcome = super().interpret(op, ref, result, state)
        if outcome.state.get("mailchimp_id", "") is None and ref.step in ("d", STEP_MOVE):
            outcome.extra.update({"customer_id": None, "customer_ref": None})
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
