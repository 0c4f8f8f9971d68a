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
the missing record (``customer_pending`` when the customer was sent but its result was lost); it goes out in the first run after its dependency has. In a dry run, a
dependency this run's plan would send counts as sent, so the plan shows what a real run would do.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping, Sequence

import sqlalchemy as sa

from mailchimp_provider.config import ConsentSpec
from mailchimp_provider.sync.audience import normalise_email
from mailchimp_provider.sync.consent import ErasureRequests, blocked_emails, read_erasure_requests
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
from mailchimp_provider.warehouse.optional_inputs import log_absent_optional_columns
from mailchimp_provider.sync.paths import path_segment
from mailchimp_provider.sync.engine import (
    OUTCOME_FAILED,
    OUTCOME_OK,
    OUTCOME_PENDING,
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
RULES_VERSION = 1
"""Part of every source hash: bump it when a payload builder changes, so records are re-checked."""


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
    """Shared change detection, create/update/heal logic; subclasses build payloads and paths.

    Change detection has two levels. The engine's contract is the *payload* hash (what Mailchimp
    confirmed). Building 100k order payloads only to find them unchanged would dominate a no-change
    run, so a confirmed write also records a *source* hash (``sync_state.extra.source_hash``: the
    source row and its children, minus the columns no payload uses, plus a fingerprint of the
    rules and config that shape the payload). A record whose source hash matches is unchanged
    without building anything; otherwise its payload is built and compared by payload hash, so a
    source change that does not change the payload (``Paid`` -> ``paid``) still sends nothing.
    """

    operation_names = OPERATION_NAMES
    upsert_with_put = False
    """True for resources with a documented PUT add-or-update (customers)."""
    unhashed_columns: frozenset[str] = frozenset()
    """Source columns no payload uses: changing them is not a change."""
    children: tuple[tuple[str, str], ...] = ()
    """``(query name, row attribute)`` of child rows merged into each record (variants, lines...)."""

    def __init__(self, scope: CommerceScope) -> None:
        self.scope = scope
        self.store_id = scope.store_id
        self.config = scope.config
        self._fingerprint = payload_hash([RULES_VERSION, self.entity, self.fingerprint_parts()])
        self._positions: dict[tuple[str, ...], int | tuple[int, ...]] = {}

    def fingerprint_parts(self) -> Any:
        """Config that shapes this entity's payloads (a change resends, through the payload hash)."""
        return None

    # -- paths (subclasses) --------------------------------------------------------------------
    def collection_path(self, row: Mapping[str, Any]) -> str:
        raise NotImplementedError

    def item_path(self, row: Mapping[str, Any], record_id: str) -> str:
        return f"{self.collection_path(row)}/{path_segment(record_id)}"

    # -- planning ------------------------------------------------------------------------------
    @staticmethod
    def in_mailchimp(state: StateRow | None) -> bool:
        """Mailchimp confirmed holding this record (a write succeeded, or a POST said it exists)."""
        return state is not None and bool(state.mailchimp_id)

    def source_hash(self, row: Mapping[str, Any]) -> str:
        """Hash of the record's source values (see the class docstring).

        Pickle is used for speed (7x ``repr``); values pickle deterministically, and should two
        runs ever serialise equal values differently the record only falls through to the
        payload-hash comparison, which decides alone whether anything is sent.
        """
        parts: list[Any] = [self._fingerprint, self._values(row)]
        for _, attribute in self.children:
            parts.append([self._values(child) for child in row.get(attribute) or ()])
        return hashlib.blake2b(pickle.dumps(parts, 4), digest_size=8).hexdigest()

    def _values(self, row: Mapping[str, Any]) -> tuple[Any, ...]:
        """The hashed values of a row, positionally (rows of one query share their columns)."""
        keys = tuple(row)
        positions = self._positions.get(keys)
        if positions is None:
            wanted = tuple(i for i, k in enumerate(keys) if k not in self.unhashed_columns and k[0] != "_")
            # a prefix (children attached after the columns) is sliced, not picked
            positions = len(wanted) if wanted == tuple(range(len(wanted))) else wanted
            self._positions[keys] = positions
        values = tuple(row.values())
        if type(positions) is int:
            return values if positions == len(values) else values[:positions]
        return tuple(values[i] for i in positions)

    def plan(self, engine: "SyncEngine", rows: list[dict[str, Any]], states: dict[str, StateRow],
             ctx: RunContext) -> Iterator[RecordPlan]:
        changed: list[Candidate] = []
        for row in rows:
            record_id = record_key(row.get(self.key_column))
            state = states.get(record_id)
            source = self.source_hash(row)
            if (not ctx.full_refresh and state is not None and state.mailchimp_id and state.payload_hash
                    and state.extra.get("source_hash") == source):
                yield RecordPlan(record_id, unchanged=True)
            else:
                changed.append(Candidate(row, record_id, state, source))
        if changed:
            yield from self.plan_changed(engine, changed, ctx)

    def plan_changed(self, engine: "SyncEngine", items: list["Candidate"], ctx: RunContext) -> Iterator[RecordPlan]:
        """Plans for the records whose source changed (or that were never confirmed)."""
        raise NotImplementedError

    def write(
        self,
        item: "Candidate",
        body: dict[str, Any],
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
        row, record_id, state = item.row, item.record_id, item.state
        hash_ = payload_hash(body if hashed is None else hashed)
        exists = self.in_mailchimp(state)
        if exists and state is not None and state.payload_hash == hash_ and not ctx.full_refresh:
            return RecordPlan(record_id, unchanged=True)
        context = {"extra": {**(extra or {}), "source_hash": item.source_hash}}
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


@dataclass
class Candidate:
    """A source record that needs its payload built: the row, its id, its state, its source hash."""

    row: dict[str, Any]
    record_id: str
    state: StateRow | None
    source_hash: str


# ------------------------------------------------------------------------------------------------
# customers
# ------------------------------------------------------------------------------------------------
class CustomerRules(CommerceRules):
    """E-commerce customers, with the audience sync's consent policy.

    ``opt_in_status`` comes from the consent policy's opt-in column when the customer is new to the
    store; an existing customer is always re-sent with the value it was created with (kept in
    ``sync_state.status``). Mailchimp upgrades a ``transactional`` member to ``subscribed`` when a
    customer's ``opt_in_status`` goes from false to true, so re-sending the original value is what
    guarantees the e-commerce sync never changes an existing member's status; consent changes are
    the audience sync's job. With double opt-in, new customers are sent without opt-in (the
    audience sync makes them ``pending``; an e-commerce opt-in would subscribe them directly).
    ``no_marketing`` customers are never sent. Mailchimp customers cannot change email: a changed
    email is skipped with reason ``email_changed`` instead of failing every run.

    Audit before writing: a customer written with ``opt_in_status`` true re-adds an archived
    member as ``subscribed``. The store's audience is audited before customers are planned
    (``sync/audit.py``), and a customer whose member is archived, unsubscribed or cleaned there is
    sent with ``opt_in_status`` false (``status_decision`` says why); archived members get the
    opt-in again only in a run with ``retry_archived``.
    """

    entity = "customer"
    sql_name = "customers"
    key_column = "customer_id"
    upsert_with_put = True
    unhashed_columns = frozenset({"created_at", "updated_at", "phone", "customer_type", "tags"})

    def fingerprint_parts(self) -> Any:
        consent = self.scope.consent
        return [consent.opt_in_column, consent.no_marketing_column, consent.guest_column, consent.double_opt_in]

    def collection_path(self, row: Mapping[str, Any]) -> str:
        return store_path(self.store_id, "customers")

    def prepare(self, engine: "SyncEngine", ctx: RunContext) -> None:
        """Read the erasure requests before anything is sent: an e-commerce customer creates an
        audience contact, so an erased person must never be sent from here either."""
        super().prepare(engine, ctx)
        ctx.data["erasure"] = read_erasure_requests(engine.db)

    list_id: str | None = None
    """The store's audience, known once :meth:`audited_list` ran (None: no audit, e.g. no store yet)."""

    def audited_list(self, hook: Any) -> str | None:
        """The store's audience: customers with an opt-in change its members' statuses."""
        from mailchimp_provider.errors import MailchimpNotFoundError

        try:
            store = hook.get(store_path(self.store_id), params={"fields": "id,list_id"})
        except MailchimpNotFoundError:  # a dry run before the store exists: nothing to audit
            return None
        self.list_id = (store or {}).get("list_id") or None
        return self.list_id

    def _audited_statuses(self, engine: "SyncEngine", items: list[Candidate]) -> dict[str, str]:
        """``{subscriber_hash: status}`` of the audited members these customers' emails belong to."""
        if not self.list_id:
            return {}
        from mailchimp_provider.sync.audience import subscriber_hash
        from mailchimp_provider.sync.audit import member_statuses

        emails = {normalise_email(i.row.get("email")) for i in items}
        return member_statuses(engine.db, engine.tables, self.list_id, {subscriber_hash(e) for e in emails if e})

    def plan_changed(self, engine: "SyncEngine", items: list[Candidate], ctx: RunContext) -> Iterator[RecordPlan]:
        from mailchimp_provider.sync.audience import subscriber_hash
        from mailchimp_provider.sync.audit import NEVER_SUBSCRIBE

        consent = self.scope.consent
        audited = self._audited_statuses(engine, items)
        erasure: ErasureRequests = ctx.data.get("erasure") or ErasureRequests()
        for item in items:
            row, record_id, state = item.row, item.record_id, item.state
            if erasure.covers(record_id, normalise_email(row.get("email"))):
                yield RecordPlan(record_id, skips=[Skip(
                    record_id, "erasure_requested",
                    f"customer {record_id}: an erasure request names this customer or email; it is never sent")])
                continue
            exists = self.in_mailchimp(state)
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
            member_status = audited.get(subscriber_hash(email))
            if (body.get("opt_in_status") and member_status in NEVER_SUBSCRIBE
                    and not (member_status == "archived" and ctx.retry_archived)):
                body["opt_in_status"] = False
                decision = (f"opt-in withheld: the member is {member_status} in Mailchimp"
                            + (" (run with retry_archived to re-add it)" if member_status == "archived" else ""))
            plan = self.write(item, body, ctx, status_decision=decision)
            for op in plan.ops:  # the consent the customer is created with, whatever was withheld
                op.context["opt_in"] = opted_in
            yield plan

    def interpret(self, op: PlannedOp | None, ref: OpRef, result: "OperationResult", state: StateRow | None) -> Outcome:
        outcome = super().interpret(op, ref, result, state)
        if outcome.outcome == OUTCOME_OK and op is not None and op.body:
            outcome.state["email"] = str(op.body.get("email_address", "")).lower() or None
            opted_in = op.context.get("opt_in", op.body.get("opt_in_status"))
            outcome.state["status"] = "opt_in" if opted_in else "no_opt_in"
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


# ------------------------------------------------------------------------------------------------
# promo rules and codes
# ------------------------------------------------------------------------------------------------
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
                    f"({_why(load_states_for(engine, 'promo_rule', [rule_id]).get(rule_id))})")])
                continue
            yield self.write(item, body, ctx, extra={"promo_rule_id": rule_id})


# ------------------------------------------------------------------------------------------------
# orders
# ------------------------------------------------------------------------------------------------
class OrderRules(CommerceRules):
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

    def __init__(self, scope: CommerceScope) -> None:
        super().__init__(scope)
        self._products: dict[str, list[str] | None] | None = None
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

    def products_in_mailchimp(self, engine: "SyncEngine") -> dict[str, list[str] | None]:
        """``product_id -> variant ids`` of every confirmed product, read once per task: the
        catalogue is small next to the orders, and the products phase is over before orders run."""
        if self._products is None:
            t = engine.tables.sync_state
            stmt = sa.select(t.c.record_id, t.c.extra).where(t.c.entity == "product", t.c.mailchimp_id.is_not(None))
            products: dict[str, list[str] | None] = {}
            with engine.db.connect() as conn:
                for record_id, extra in conn.execute(stmt):
                    variants = (json.loads(extra) if isinstance(extra, str) else extra or {}).get("variants")
                    products[record_id] = [str(v) for v in variants] if isinstance(variants, list) else None
            self._products = products
        return self._products

    def plan_changed(self, engine: "SyncEngine", items: list[Candidate], ctx: RunContext) -> Iterator[RecordPlan]:
        customer_ids = {c for c in (text_or_none(i.row.get("customer_id")) for i in items) if c}
        product_ids = {p for i in items for p in (text_or_none(line.get("product_id")) for line in i.row.get("_lines") or []) if p}
        customers = confirmed_ids(engine, "customer", customer_ids) | planned_in_run(engine, ctx, "customer", customer_ids)
        products = self.products_in_mailchimp(engine)
        planned_products = planned_in_run(engine, ctx, "product", product_ids)
        known_customers = source_ids(engine, "customers", "customer_id", [c for c in customer_ids if c not in customers])
        maps = self.config.status_maps
        for item in items:
            row, record_id = item.row, item.record_id
            customer_id = text_or_none(row.get("customer_id"))
            try:
                body = order_payload(row, row.get("_lines") or [], row.get("_promos") or [],
                                     customer={"id": customer_id}, status_maps=maps)
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
                        f"order {record_id}: customer {customer_id} has not reached Mailchimp ({_why(state)})")])
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

    def _missing_products(
        self, engine: "SyncEngine", lines: Sequence[Mapping[str, Any]], products: Mapping[str, list[str] | None],
        planned: set[str],
    ) -> str | None:
        for line in lines:
            product_id, variant_id = line["product_id"], line["product_variant_id"]
            if product_id in planned:
                continue
            if product_id not in products:
                state = load_states_for(engine, "product", [product_id]).get(product_id)
                return f"product {product_id} (line {line['id']}) has not reached Mailchimp ({_why(state)})"
            variants = products[product_id]
            if variants is not None and variant_id not in variants:
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


def confirmed_ids(engine: "SyncEngine", entity: str, record_ids: Any) -> set[str]:
    """Which of ``record_ids`` Mailchimp confirmed holding (a light lookup: ids only)."""
    ids = sorted({str(i) for i in record_ids})
    found: set[str] = set()
    if not ids:
        return found
    t = engine.tables.sync_state
    stmt = sa.select(t.c.record_id).where(t.c.entity == entity, t.c.mailchimp_id.is_not(None),
                                          t.c.record_id.in_(sa.bindparam("ids", expanding=True)))
    with engine.db.connect() as conn:
        for start in range(0, len(ids), 900):
            found.update(r[0] for r in conn.execute(stmt, {"ids": ids[start:start + 900]}))
    return found


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
    stmt = sa.text(f"SELECT src.{key} FROM ({source_sql(sql_name, engine.db)}) src WHERE src.{key} IN :ids").bindparams(
        sa.bindparam("ids", expanding=True))
    found: set[str] = set()
    with engine.db.connect() as conn:
        for start in range(0, len(ids), 900):
            found.update(str(r[0]) for r in conn.execute(stmt, {"ids": ids[start:start + 900]}))
    return found



class EcommerceSyncEngine(SyncEngine):
    """The generic engine, with three additions for the e-commerce volumes:

    * products come with their variants and orders with their lines and promos, as single records
      (merge join; see ``ecommerce_source``);
    * follow-up passes re-plan only the records that need it. The engine plans again after a pass
      that sent something, to heal "already exists" / "not found" answers; in e-commerce only the
      records whose write was not confirmed in this process can need it (dependencies are other
      entities, finished before this task), so a second full scan of 100k orders is skipped, and
      a pass whose writes were all confirmed is the last. Only those records are kept in memory,
      not every record sent. A new process (retry, deferral) always starts with a full pass;
    * ``load_states`` without per-row type processing.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._full_scans = 0
        self._full_records: int | None = None
        self._unconfirmed: set[str] = set()
        """Records sent by this process whose write is not confirmed yet (or was not ``ok``)."""

    def _hand_over(self, batch: list[PlannedOp]) -> list[dict[str, Any]]:
        self._unconfirmed.update(op.record_id for op in batch)
        return super()._hand_over(batch)

    # The next pass re-plans exactly ``_unconfirmed`` (see ``source_chunks``), so the generic
    # per-pass sets of sent and answered records (100k ids each for 100k orders) are not kept.
    def _note_sent(self, record_id: str) -> None:
        pass

    def _note_answer(self, record_id: str, *, final: bool) -> None:
        pass

    def _follow_up_ids(self) -> set[str]:
        return set(self._unconfirmed)

    def apply_results(self, batch_id: str | None, results: Iterable["OperationResult"]) -> Any:
        def watched() -> Iterator["OperationResult"]:
            for result in results:
                ref = OpRef.parse(result.operation_id)
                if ref is not None and result.ok:
                    self._unconfirmed.discard(ref.record_id)
                yield result

        return super().apply_results(batch_id, watched())

    def source_chunks(self) -> Iterator[list[dict[str, Any]]]:
        if self._full_scans and not self.ctx.dry_run:
            # a follow-up pass: only what this process sent without a confirmed write
            ids = sorted(self._unconfirmed)
            self._unconfirmed.clear()
            for start in range(0, len(ids), self.settings.chunk_size):
                rows = self.fetch_source(ids[start:start + self.settings.chunk_size])
                if rows:
                    yield rows
            return
        self._full_scans += 1
        children = getattr(self.rules, "children", ())
        chunks = (merged_chunks(self.db, self.rules.sql_name, self.rules.key_column, children, self.settings.chunk_size)
                  if children else super().source_chunks())
        records = 0
        for chunk in chunks:
            records += len(chunk)
            yield chunk
        self._full_records = records

    def summary(self) -> Any:
        """As ``SyncEngine.summary``, counting unchanged records against the full pass."""
        from mailchimp_provider.sync.engine import run_summary

        return run_summary(self.db, self.tables, self.ctx.run_id, self.entity, total_records=self._full_records)

    def load_states(self, record_ids: Iterable[str]) -> dict[str, StateRow]:
        """``SyncEngine.load_states`` without SQLAlchemy's per-row type processing: a no-change
        run over 100k orders reads 100k states, and only ``extra`` needs decoding to plan.
        Timestamps stay as the driver returns them; writing a state back accepts either form."""
        ids = list(dict.fromkeys(record_ids))
        out: dict[str, StateRow] = {}
        if not ids:
            return out
        t = self.tables.sync_state
        columns = [c.name for c in t.columns if c.name != "updated_at"]
        stmt = sa.select(*(sa.literal_column(f'"{name}"') for name in columns)).select_from(t).where(
            sa.literal_column('"entity"') == self.entity,
            sa.literal_column('"record_id"').in_(sa.bindparam("ids", expanding=True)),
        )
        with self.db.connect() as conn:
            for start in range(0, len(ids), 900):
                for values in conn.execute(stmt, {"ids": ids[start:start + 900]}).fetchall():
                    m = dict(zip(columns, values))
                    state = StateRow(
                        entity=m["entity"], record_id=m["record_id"], payload_hash=m["payload_hash"],
                        mailchimp_id=m["mailchimp_id"], scope=m["scope"], contact_id=m["contact_id"],
                        email=m["email"], status=m["status"], tags_managed=_decode(m["tags_managed"], list),
                        last_outcome=m["last_outcome"], attempts=int(m["attempts"] or 0),
                        quarantined=bool(m["quarantined"]), last_error=m["last_error"],
                        extra=_decode(m["extra"], dict), synced_at=m["synced_at"],
                    )
                    out[state.record_id] = state
        return out

    def fetch_source(self, record_ids: Sequence[str], *, convert: bool = True) -> list[dict[str, Any]]:
        children = getattr(self.rules, "children", ())
        # read as the full scan reads them: merged entities unconverted (see ecommerce_source)
        rows = super().fetch_source(record_ids, convert=convert and not children)
        return attach_children(self.db, rows, self.rules.key_column, children) if children and rows else rows


def _decode(value: Any, kind: type) -> Any:
    """A JSON text column as ``kind`` (empty ``kind()`` for NULL or anything unexpected)."""
    if value is None or value == "":
        return kind()
    if isinstance(value, kind):
        return value
    try:
        parsed = json.loads(value)
    except (TypeError, ValueError):
        return kind()
    return parsed if isinstance(parsed, kind) else kind()
