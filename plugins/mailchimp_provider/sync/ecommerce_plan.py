"""E-commerce entity rules for the sync engine: what each record needs, in dependency order.

Every run goes customers -> products (with variants) -> promo rules -> promo codes -> orders (with
lines and promos). Each phase is one :class:`~mailchimp_provider.sync.engine.EntityRules`
subclass here, driven by the generic engine (change detection by payload hash, bookkeeping,
quarantine, dry run, summary).

Create or update (decided from ``mailchimp_sync_state``; ``mailchimp_id`` set = Mailchimp has it):

=============  =======================  ===========================================
entity         new record               changed record
=============  =======================  ===========================================
customer       PUT (add or update)      PUT
product        POST (with variants)     PATCH (with variants, upserted by id)
promo_rule     POST                     PATCH
promo_code     POST (under its rule)    PATCH
order          POST (lines, promos)     PATCH (status, totals, refunds, cancellation)
=============  =======================  ===========================================

Products: the newer spec has ``PUT /products/{id}``, but it is absent from spec v3.0.55 and the
official Python SDK, and its semantics (upsert or replace-only) are unconfirmed (facts §11.8). So
products use POST/PATCH with healing, which is correct under either semantics; the variants ride
in the product body (PATCH upserts the variants it names, by id), so one record is one operation.

Healing, bounded: a POST answered "already exists" (state lost, or the record written by someone
else) records ``mailchimp_id`` and is sent again as a PATCH in the next pass of the same run; a
PATCH answered 404 clears ``mailchimp_id`` and is sent again as a POST. Both healed answers are
recorded as ``skipped`` (reason ``already_exists`` / ``not_found``), not ``failed``: the record is
fine, only our bookkeeping was stale. If a record contradicts itself (POST says it exists, then
PATCH says it does not) the second answer is terminal: quarantined, never an endless loop. The
engine's ``failed_in_run`` and ``MAX_PASSES`` bound it further.

Dependencies: a promo code needs its rule, an order needs its customer and every line's product
(and variant) to have reached Mailchimp. Otherwise the record is skipped with reason
``customer_not_synced`` / ``product_not_synced`` / ``promo_rule_not_synced`` and a detail naming
the missing record; it goes out in the first run after its dependency has. In a dry run, a
dependency this run's plan would send counts as sent, so the plan shows what a real run would do.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

import sqlalchemy as sa

from mailchimp_provider.config import ConsentSpec
from mailchimp_provider.sync.ecommerce_config import EcommerceSyncConfig
from mailchimp_provider.sync.ecommerce_payloads import (
    RejectedRecord,
    as_bool,
    customer_payload,
    order_customer_payload,
    order_payload,
    product_payload,
    promo_code_payload,
    promo_rule_payload,
    text_or_none,
)
from mailchimp_provider.sync.ecommerce_source import attach_children, merged_chunks
from mailchimp_provider.sync.ecommerce_store import store_path
from mailchimp_provider.sync.engine import (
    OUTCOME_FAILED,
    OUTCOME_OK,
    OUTCOME_SKIPPED,
    EntityRules,
    OpRef,
    Outcome,
    PlannedOp,
    RecordPlan,
    RunContext,
    Skip,
    StateRow,
    SyncEngine,
    failure_reason,
    payload_hash,
)

if TYPE_CHECKING:
    from mailchimp_provider.batches.results import OperationResult

log = logging.getLogger(__name__)

STEP_CREATE, STEP_UPDATE, STEP_UPSERT = "c", "u", "p"
OPERATION_NAMES = {STEP_CREATE: "create", STEP_UPDATE: "update", STEP_UPSERT: "upsert"}
MAX_RECORD_ID = 255  # sync_state.record_id / sync_result.record_id column width


def already_exists(result: "OperationResult") -> bool:
    """Mailchimp's answer to a POST whose id is taken (facts §3.3): 400 "... already exists ..."."""
    return result.status_code == 400 and "already exists" in (result.detail or "").lower()


def record_key(value: Any) -> str:
    """The record id as bookkeeping stores it (bad ids are still recorded, cut to the column width)."""
    text = text_or_none(value) or "(missing id)"
    return text[:MAX_RECORD_ID]


def rejected_skip(record_id: str, error: RejectedRecord) -> Skip:
    """A bad row: reason ``invalid: <field>`` (groupable), detail names the record and the field."""
    return Skip(record_id, f"invalid: {error.field_kind}", str(error))


@dataclass(frozen=True)
class CommerceScope:
    """What every e-commerce rule needs: the store and the config."""

    store_id: str
    config: EcommerceSyncConfig
    consent: ConsentSpec
    """The audience sync's consent policy (columns, double opt-in)."""


class CommerceRules(EntityRules):
    """Shared create/update/heal logic; subclasses build payloads and declare their paths."""

    operation_names = OPERATION_NAMES
    upsert_with_put = False
    """True for resources with a documented PUT add-or-update (customers)."""

    def __init__(self, scope: CommerceScope) -> None:
        self.scope = scope
        self.store_id = scope.store_id
        self.config = scope.config

    # -- paths (subclasses) --------------------------------------------------------------------
    def collection_path(self, row: Mapping[str, Any]) -> str:
        raise NotImplementedError

    def item_path(self, row: Mapping[str, Any], record_id: str) -> str:
        return f"{self.collection_path(row)}/{record_id}"

    # -- the shared decision -------------------------------------------------------------------
    @staticmethod
    def in_mailchimp(state: StateRow | None) -> bool:
        """Mailchimp confirmed holding this record (a write succeeded, or a POST said it exists)."""
        return state is not None and bool(state.mailchimp_id)

    def write(
        self,
        row: Mapping[str, Any],
        record_id: str,
        body: dict[str, Any],
        state: StateRow | None,
        ctx: RunContext,
        *,
        hashed: Any = None,
        extra: dict[str, Any] | None = None,
        status_decision: str | None = None,
        detail: str | None = None,
    ) -> RecordPlan:
        """Plan the create or update of one record, or nothing when Mailchimp has this payload.

        ``hashed`` is what change detection compares (defaults to ``body``): orders hash their
        customer as ``{"id": ...}`` so the way the customer is referenced never counts as a change.
        """
        hash_ = payload_hash(body if hashed is None else hashed)
        exists = self.in_mailchimp(state)
        if exists and state is not None and state.payload_hash == hash_ and not ctx.full_refresh:
            return RecordPlan(record_id, unchanged=True)
        context = {"extra": extra or {}}
        if self.upsert_with_put:
            op = PlannedOp(record_id, STEP_UPSERT, "upsert", "PUT", self.item_path(row, record_id), body, hash_,
                           "update" if exists else "create", status_decision=status_decision, detail=detail, context=context)
        elif exists:
            op = PlannedOp(record_id, STEP_UPDATE, "update", "PATCH", self.item_path(row, record_id), body, hash_,
                           "update", status_decision=status_decision, detail=detail, context=context)
        else:
            op = PlannedOp(record_id, STEP_CREATE, "create", "POST", self.collection_path(row), body, hash_,
                           "create", status_decision=status_decision, detail=detail, context=context)
        return RecordPlan(record_id, ops=[op])

    def interpret(self, op: PlannedOp | None, ref: OpRef, result: "OperationResult", state: StateRow | None) -> Outcome:
        confirmed = {"mailchimp_id": ref.record_id, "scope": self.store_id}
        if result.ok:
            extra = dict((op.context.get("extra") if op else None) or {})
            action = op.action if op else OPERATION_NAMES.get(ref.step, ref.step)
            return Outcome(OUTCOME_OK, action, state={"payload_hash": ref.payload_hash, **confirmed},
                           status_decision=op.status_decision if op else None, extra=extra)
        previous = state.pending if state is not None else None
        if ref.step == STEP_CREATE and already_exists(result):
            if previous == f"{STEP_UPDATE}:{ref.payload_hash}":
                return Outcome(OUTCOME_FAILED, "exists_and_not_found", terminal=True,
                               detail="POST says the record exists but PATCH said it does not; quarantined")
            return Outcome(OUTCOME_SKIPPED, "already_exists", state=confirmed,
                           detail="Mailchimp already had this record (state lost or written elsewhere); sent again as an update")
        if ref.step == STEP_UPDATE and result.status_code == 404:
            if previous == f"{STEP_CREATE}:{ref.payload_hash}":
                return Outcome(OUTCOME_FAILED, "exists_and_not_found", terminal=True,
                               detail="PATCH says the record does not exist but POST said it does; quarantined")
            return Outcome(OUTCOME_SKIPPED, "not_found", state={"mailchimp_id": None},
                           detail="Mailchimp no longer had this record; sent again as a create")
        return Outcome(OUTCOME_FAILED, failure_reason(result))


# ------------------------------------------------------------------------------------------------
# customers
# ------------------------------------------------------------------------------------------------
class CustomerRules(CommerceRules):
    """E-commerce customers, with the audience sync's consent policy.

    ``opt_in_status`` comes from ``marketing_opt_in`` when the customer is new to the store; an
    existing customer is always re-sent with the value it was created with (kept in
    ``sync_state.status``). Mailchimp upgrades a ``transactional`` member to ``subscribed`` when a
    customer's ``opt_in_status`` goes from false to true, so re-sending the original value is what
    guarantees the e-commerce sync never changes an existing member's status; consent changes are
    the audience sync's job. Mailchimp customers cannot change email: a changed email is skipped
    with reason ``email_changed`` instead of failing every run.
    """

    entity = "customer"
    sql_name = "customers"
    key_column = "customer_id"
    upsert_with_put = True

    def collection_path(self, row: Mapping[str, Any]) -> str:
        return store_path(self.store_id, "customers")

    def plan(self, engine: "SyncEngine", rows: list[dict[str, Any]], states: dict[str, StateRow],
             ctx: RunContext) -> Iterator[RecordPlan]:
        consent = self.scope.consent
        for row in rows:
            record_id = record_key(row.get("customer_id"))
            state = states.get(record_id)
            exists = self.in_mailchimp(state)
            # With double opt-in the audience sync makes opted-in people ``pending`` (a confirmation
            # email); an e-commerce opt-in would subscribe them directly, so it is not sent.
            opted_in = as_bool(row.get(consent.opt_in_column)) and not consent.double_opt_in
            if exists and state is not None and state.status in ("opt_in", "no_opt_in"):
                opted_in = state.status == "opt_in"
            try:
                body = customer_payload(row, opt_in_status=opted_in,
                                        no_marketing=as_bool(row.get(consent.no_marketing_column)),
                                        guest=as_bool(row.get(consent.guest_column)))
            except RejectedRecord as error:
                yield RecordPlan(record_id, skips=[rejected_skip(record_id, error)])
                continue
            email = body["email_address"].lower()
            if exists and state is not None and state.email and state.email != email:
                yield RecordPlan(record_id, skips=[Skip(
                    record_id, "email_changed",
                    f"customer {record_id}: email changed from {state.email} to {email}; Mailchimp e-commerce "
                    "customers cannot change email (the audience sync updates the member)")])
                continue
            decision = ("kept: " if exists else "") + ("subscribed if new" if opted_in else "transactional if new")
            yield self.write(row, record_id, body, state, ctx, status_decision=decision,
                             extra={"opt_in_status": opted_in})

    def interpret(self, op: PlannedOp | None, ref: OpRef, result: "OperationResult", state: StateRow | None) -> Outcome:
        outcome = super().interpret(op, ref, result, state)
        if outcome.outcome == OUTCOME_OK and op is not None and op.body:
            outcome.state["email"] = str(op.body.get("email_address", "")).lower() or None
            outcome.state["status"] = "opt_in" if op.body.get("opt_in_status") else "no_opt_in"
        return outcome


# ------------------------------------------------------------------------------------------------
# products
# ------------------------------------------------------------------------------------------------
class ProductRules(CommerceRules):
    """Products with all their variants; rows carry their variant rows under ``_variants``."""

    entity = "product"
    sql_name = "products"
    key_column = "product_id"
    children = (("product_variants", "_variants"),)

    def collection_path(self, row: Mapping[str, Any]) -> str:
        return store_path(self.store_id, "products")

    def plan(self, engine: "SyncEngine", rows: list[dict[str, Any]], states: dict[str, StateRow],
             ctx: RunContext) -> Iterator[RecordPlan]:
        for row in rows:
            record_id = record_key(row.get("product_id"))
            try:
                body = product_payload(row, row.get("_variants") or [])
            except RejectedRecord as error:
                yield RecordPlan(record_id, skips=[rejected_skip(record_id, error)])
                continue
            variants = [v["id"] for v in body["variants"]]
            yield self.write(row, record_id, body, states.get(record_id), ctx, extra={"variants": variants},
                             detail=f"{len(variants)} variant(s)")


# ------------------------------------------------------------------------------------------------
# promo rules and codes
# ------------------------------------------------------------------------------------------------
class PromoRuleRules(CommerceRules):
    entity = "promo_rule"
    sql_name = "promo_rules"
    key_column = "promo_rule_id"

    def collection_path(self, row: Mapping[str, Any]) -> str:
        return store_path(self.store_id, "promo-rules")

    def plan(self, engine: "SyncEngine", rows: list[dict[str, Any]], states: dict[str, StateRow],
             ctx: RunContext) -> Iterator[RecordPlan]:
        for row in rows:
            record_id = record_key(row.get("promo_rule_id"))
            try:
                body = promo_rule_payload(row)
            except RejectedRecord as error:
                yield RecordPlan(record_id, skips=[rejected_skip(record_id, error)])
                continue
            yield self.write(row, record_id, body, states.get(record_id), ctx)


class PromoCodeRules(CommerceRules):
    """Promo codes live under their rule: the rule must have reached Mailchimp first."""

    entity = "promo_code"
    sql_name = "promo_codes"
    key_column = "promo_code_id"

    def collection_path(self, row: Mapping[str, Any]) -> str:
        return store_path(self.store_id, "promo-rules", str(text_or_none(row.get("promo_rule_id"))), "promo-codes")

    def plan(self, engine: "SyncEngine", rows: list[dict[str, Any]], states: dict[str, StateRow],
             ctx: RunContext) -> Iterator[RecordPlan]:
        rule_ids = [r for r in (text_or_none(row.get("promo_rule_id")) for row in rows) if r]
        rules = load_states_for(engine, "promo_rule", rule_ids)
        planned = planned_in_run(engine, ctx, "promo_rule", rule_ids)
        for row in rows:
            record_id = record_key(row.get("promo_code_id"))
            try:
                body = promo_code_payload(row)
            except RejectedRecord as error:
                yield RecordPlan(record_id, skips=[rejected_skip(record_id, error)])
                continue
            rule_id = str(text_or_none(row.get("promo_rule_id")))
            if not self.in_mailchimp(rules.get(rule_id)) and rule_id not in planned:
                yield RecordPlan(record_id, skips=[Skip(
                    record_id, "promo_rule_not_synced",
                    f"promo code {record_id}: its promo rule {rule_id} has not reached Mailchimp "
                    f"({_why(rules.get(rule_id))})")])
                continue
            yield self.write(row, record_id, body, states.get(record_id), ctx, extra={"promo_rule_id": rule_id})


# ------------------------------------------------------------------------------------------------
# orders
# ------------------------------------------------------------------------------------------------
class OrderRules(CommerceRules):
    """Orders with their lines and promos (rows carry ``_lines`` and ``_promos``).

    Never sent twice: a confirmed order is only PATCHed when its payload changed (status, totals,
    refund, cancellation, lines). The customer is referenced by id once it is in Mailchimp; a
    customer that appears only on orders (absent from ``customers``) is created from the order's
    optional ``customer_email``/``customer_first_name``/``customer_last_name`` columns, as a
    ``transactional`` contact (no consent is known for it).
    """

    entity = "order"
    sql_name = "orders"
    key_column = "order_id"
    children = (("order_lines", "_lines"), ("order_promos", "_promos"))

    def collection_path(self, row: Mapping[str, Any]) -> str:
        return store_path(self.store_id, "orders")

    def plan(self, engine: "SyncEngine", rows: list[dict[str, Any]], states: dict[str, StateRow],
             ctx: RunContext) -> Iterator[RecordPlan]:
        customer_ids = {c for c in (text_or_none(r.get("customer_id")) for r in rows) if c}
        product_ids = {p for r in rows for p in (text_or_none(line.get("product_id")) for line in r.get("_lines") or []) if p}
        customers = load_states_for(engine, "customer", customer_ids)
        products = load_states_for(engine, "product", product_ids)
        planned_customers = planned_in_run(engine, ctx, "customer", customer_ids)
        planned_products = planned_in_run(engine, ctx, "product", product_ids)
        unsynced = [c for c in customer_ids if not self.in_mailchimp(customers.get(c)) and c not in planned_customers]
        known_customers = source_ids(engine, "customers", "customer_id", unsynced)
        maps = self.config.status_maps
        for row in rows:
            record_id = record_key(row.get("order_id"))
            customer_id = text_or_none(row.get("customer_id"))
            try:
                body = order_payload(row, row.get("_lines") or [], row.get("_promos") or [],
                                     customer={"id": customer_id}, status_maps=maps)
            except RejectedRecord as error:
                yield RecordPlan(record_id, skips=[rejected_skip(record_id, error)])
                continue
            assert customer_id is not None  # order_payload checked it
            if not self.in_mailchimp(customers.get(customer_id)) and customer_id not in planned_customers:
                if customer_id in known_customers:
                    yield RecordPlan(record_id, skips=[Skip(
                        record_id, "customer_not_synced",
                        f"order {record_id}: customer {customer_id} has not reached Mailchimp "
                        f"({_why(customers.get(customer_id))})")])
                    continue
                full = order_customer_payload(row, opt_in_status=False)
                if full is None:
                    yield RecordPlan(record_id, skips=[Skip(
                        record_id, "customer_unknown",
                        f"order {record_id}: customer {customer_id} is not in customers and the order has no "
                        "customer_email to create it from")])
                    continue
                body["customer"] = full
            missing = self._missing_products(body["lines"], products, planned_products)
            if missing:
                yield RecordPlan(record_id, skips=[Skip(record_id, "product_not_synced", f"order {record_id}: {missing}")])
                continue
            hashed = {**body, "customer": {"id": customer_id}}
            yield self.write(row, record_id, body, states.get(record_id), ctx, hashed=hashed,
                             detail=f"{body.get('financial_status') or '-'}/{body.get('fulfillment_status') or '-'}")

    def _missing_products(
        self, lines: Sequence[Mapping[str, Any]], products: Mapping[str, StateRow], planned: set[str]
    ) -> str | None:
        for line in lines:
            product_id, variant_id = line["product_id"], line["product_variant_id"]
            if product_id in planned:
                continue
            state = products.get(product_id)
            if not self.in_mailchimp(state):
                return f"product {product_id} (line {line['id']}) has not reached Mailchimp ({_why(state)})"
            assert state is not None
            variants = state.extra.get("variants")
            if isinstance(variants, list) and variant_id not in variants:
                return f"variant {variant_id} of product {product_id} (line {line['id']}) is not in Mailchimp"
        return None


RULES: dict[str, type[CommerceRules]] = {
    "customer": CustomerRules,
    "product": ProductRules,
    "promo_rule": PromoRuleRules,
    "promo_code": PromoCodeRules,
    "order": OrderRules,
}


# ------------------------------------------------------------------------------------------------
# lookups across entities
# ------------------------------------------------------------------------------------------------
def _why(state: StateRow | None) -> str:
    if state is None:
        return "never sent: see its skipped or failed result"
    if state.quarantined:
        return f"quarantined: {state.last_error or state.last_outcome}"
    return f"last outcome {state.last_outcome}: {state.last_error or 'no error recorded'}"


def load_states_for(engine: "SyncEngine", entity: str, record_ids: Any) -> dict[str, StateRow]:
    """``sync_state`` rows of another entity (dependencies), in bounded ``IN`` lookups."""
    ids = sorted({str(i) for i in record_ids})
    out: dict[str, StateRow] = {}
    if not ids:
        return out
    table = engine.tables.sync_state
    stmt = sa.select(table).where(table.c.entity == entity, table.c.record_id.in_(sa.bindparam("ids", expanding=True)))
    with engine.db.connect() as conn:
        for start in range(0, len(ids), 900):
            for row in conn.execute(stmt, {"ids": ids[start:start + 900]}):
                state = StateRow.from_row(row)
                out[state.record_id] = state
    return out


def planned_in_run(engine: "SyncEngine", ctx: RunContext, entity: str, record_ids: Any) -> set[str]:
    """In a dry run, the dependencies this run's plan would create: an order whose customer is
    planned counts as sendable, so the dry-run plan is the plan a real run would carry out."""
    ids = sorted({str(i) for i in record_ids})
    if not ctx.dry_run or not ids:
        return set()
    t = engine.tables.sync_result
    stmt = sa.select(t.c.record_id).where(
        t.c.run_id == ctx.run_id, t.c.entity == entity, t.c.outcome == "planned",
        t.c.record_id.in_(sa.bindparam("ids", expanding=True)))
    found: set[str] = set()
    with engine.db.connect() as conn:
        for start in range(0, len(ids), 900):
            found.update(r[0] for r in conn.execute(stmt, {"ids": ids[start:start + 900]}))
    return found


def source_ids(engine: "SyncEngine", sql_name: str, key: str, record_ids: Sequence[str]) -> set[str]:
    """Which of ``record_ids`` exist in a source query (e.g. is this order's customer in ``customers``)."""
    from mailchimp_provider.sync.engine import source_sql

    ids = sorted(set(record_ids))
    if not ids:
        return set()
    stmt = sa.text(f"SELECT src.{key} FROM ({source_sql(sql_name)}) src WHERE src.{key} IN :ids").bindparams(
        sa.bindparam("ids", expanding=True))
    found: set[str] = set()
    with engine.db.connect() as conn:
        for start in range(0, len(ids), 900):
            found.update(str(r[0]) for r in conn.execute(stmt, {"ids": ids[start:start + 900]}))
    return found



class EcommerceSyncEngine(SyncEngine):
    """The generic engine, reading products with their variants and orders with their lines and
    promos as single records (merge join; see ``ecommerce_source``)."""

    def source_chunks(self) -> Iterator[list[dict[str, Any]]]:
        children = getattr(self.rules, "children", ())
        if not children:
            yield from super().source_chunks()
            return
        yield from merged_chunks(self.db, self.rules.sql_name, self.rules.key_column, children, self.settings.chunk_size)

    def fetch_source(self, record_ids: Sequence[str]) -> list[dict[str, Any]]:
        rows = super().fetch_source(record_ids)
        children = getattr(self.rules, "children", ())
        return attach_children(self.db, rows, self.rules.key_column, children) if children and rows else rows
