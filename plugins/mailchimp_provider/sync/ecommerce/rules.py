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
from typing import TYPE_CHECKING, Any, Iterator, Mapping, NamedTuple, Sequence

import msgspec
import sqlalchemy as sa

from mailchimp_provider.config import ConsentSpec
from mailchimp_provider.sync.ecommerce.config import EcommerceSyncConfig
from mailchimp_provider.sync.ecommerce.payloads import RejectedRecord, text_or_none
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
from mailchimp_provider.sync.deletions import mass_delete_refusal, plan_removals
from mailchimp_provider.sync.paths import path_segment

if TYPE_CHECKING:
    from mailchimp_provider.batches.results import OperationResult

log = logging.getLogger(__name__)
STEP_CREATE, STEP_UPDATE, STEP_UPSERT, STEP_DELETE = "c", "u", "p", "d"
OPERATION_NAMES = {STEP_CREATE: "create", STEP_UPDATE: "update", STEP_UPSERT: "upsert", STEP_DELETE: "delete"}
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
class ChildKind:
    """Children of a record that Mailchimp keeps when the record is updated without them.

    A product PATCH adds or updates the variants it names and keeps the others; so does an order
    PATCH with its lines (Mailchimp's WooCommerce plugin PATCHes the order, then deletes each line
    of the answer it no longer has: ``updateStoreOrder`` in mailchimp/mc-woocommerce
    ``includes/api/class-mailchimp-api.php``). A child whose row left the source is therefore
    deleted on its own (``DELETE <record>/<segment>/<child id>``), after the record's update is
    confirmed, so the record never has none (a product needs one variant, an order one line).
    """

    policy: str
    """The ``on_delete`` key (``variant``, ``order_line``)."""
    segment: str
    """The body field and path segment (``variants``, ``lines``); also the ``extra`` key of the ids sent."""
    step: str
    """The operation-id step of a child delete."""
    operation: str
    """``sync_result.operation`` prefix: ``<operation>:<hash>`` names one child's delete."""
    what: str
    """A child in words (``variant``, ``line``)."""

    @property
    def lost_key(self) -> str:
        """``sync_state.extra`` key of the children Mailchimp still holds and the source no longer has."""
        return f"lost_{self.segment}"

    def child_hash(self, child_id: str) -> str:
        return payload_hash([self.what, child_id])


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
    child_kind: ChildKind | None = None
    """Children deleted on their own when their rows leave the source (see :class:`ChildKind`)."""

    def __init__(self, scope: CommerceScope) -> None:
        self.scope = scope
        self.store_id = scope.store_id
        self.config = scope.config
        self._fingerprint = payload_hash([RULES_VERSION, self.entity, self.fingerprint_parts()])
        self._positions: dict[tuple[str, ...], int | tuple[int, ...]] = {}
        self._engine: "SyncEngine | None" = None
        self.awaiting_children: set[str] = set()
        """Records whose confirmed update left children to delete (the engine plans them again)."""

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
        lost_key = self.child_kind.lost_key if self.child_kind is not None else ""
        for row in rows:
            record_id = record_key(row.get(self.key_column))
            state = states.get(record_id)
            source = self.source_hash(row)
            if (not ctx.full_refresh and state is not None and state.mailchimp_id and state.payload_hash
                    and state.extra.get("source_hash") == source and not state.extra.get(lost_key)):
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
        kind = self.child_kind
        extra = dict(extra or {})
        lost: list[str] = []
        if kind is not None:
            current = [str(child["id"]) for child in body.get(kind.segment) or []]
            extra.setdefault(kind.segment, current)
            if exists and state is not None and self.child_policy() == "delete":
                held = set(state.extra.get(kind.segment) or []) | set(state.extra.get(kind.lost_key) or [])
                lost = sorted(held - set(current))
        if exists and state is not None and state.payload_hash == hash_ and not ctx.full_refresh:
            if lost:  # the record is as sent; children it lost wait for their delete
                return self.child_removals(record_id, state, lost, ctx)
            return RecordPlan(record_id, unchanged=True)
        if kind is not None:
            extra[kind.lost_key] = lost or None
        context = {"extra": {**extra, "source_hash": item.source_hash}}
        if self.upsert_with_put:
            op = PlannedOp(record_id, STEP_UPSERT, "upsert", "PUT", self.item_path(row, record_id), body, hash_,
                           "update" if exists else "create", status_decision=status_decision, detail=detail, context=context)
        elif exists:
            op = PlannedOp(record_id, STEP_UPDATE, "update", "PATCH", self.item_path(row, record_id), self.update_body(body), hash_,
                           "update", status_decision=status_decision, detail=detail, context=context)
        else:
            op = PlannedOp(record_id, STEP_CREATE, "create", "POST", self.collection_path(row), body, hash_,
                           "create", status_decision=status_decision, detail=detail, context=context)
        plan = RecordPlan(record_id, ops=[op])
        if lost and ctx.dry_run and state is not None:
            # a real run deletes them in the next pass, once the update is confirmed; the plan shows them now
            extra_plan = self.child_removals(record_id, state, lost, ctx)
            plan.ops.extend(extra_plan.ops)
            plan.skips.extend(extra_plan.skips)
        return plan

    def update_body(self, body: dict[str, Any]) -> dict[str, Any]:
        """The PATCH body of a changed record (default: the create body; carts drop what PATCH lacks)."""
        return body

    # -- children whose rows left the source (config ``on_delete.variant`` / ``order_line``) -----------
    def child_policy(self) -> str:
        kind = self.child_kind
        return getattr(self.config.on_delete, kind.policy, "ignore") if kind is not None else "ignore"

    def child_removals(self, record_id: str, state: StateRow, lost: Sequence[str], ctx: RunContext) -> RecordPlan:
        """One DELETE per child Mailchimp holds that the record's source rows no longer have, or one
        ``mass_delete_refused`` skip each when the guard refuses this run's child deletes."""
        kind = self.child_kind
        assert kind is not None
        plan = RecordPlan(record_id)
        refused = self.child_refusal(ctx)
        base = self.delete_path(record_id, state)
        for child_id in lost:
            hash_ = kind.child_hash(child_id)
            operation = f"{kind.operation}:{hash_}"
            detail = (f"{kind.what} {child_id} of {self.entity} {record_id}: its row is no longer in "
                      f"{self.children[0][0]}")
            if refused:
                plan.skips.append(Skip(record_id, "mass_delete_refused", f"{detail}; {refused}", operation))
                continue
            plan.ops.append(PlannedOp(record_id, kind.step, operation, "DELETE",
                                      f"{base}/{kind.segment}/{path_segment(child_id)}", None, hash_, "delete",
                                      detail=detail, context={"child": child_id}))
        return plan

    def child_refusal(self, ctx: RunContext) -> str | None:
        """The mass-delete guard for children, decided once per planning pass: the children
        awaiting deletion (recorded in the bookkeeping by confirmed updates) against the children
        Mailchimp holds (the child query's rows plus those awaiting deletion)."""
        if ctx.data.get("allow_mass_delete"):
            return None
        engine = self._engine
        assert engine is not None, "prepare() runs before planning"
        key = (self.entity, engine.pass_no)
        cache = ctx.data.setdefault("_child_guard", {})
        if key not in cache:
            from mailchimp_provider.sync.engine import source_sql

            kind = self.child_kind
            assert kind is not None
            t = engine.tables.sync_state
            pending = 0
            stmt = sa.select(t.c.extra).where(
                t.c.entity == self.entity, t.c.mailchimp_id.is_not(None),
                sa.cast(t.c.extra, sa.Text).like(f'%"{kind.lost_key}":[%'))
            count = sa.text(f"SELECT count(*) FROM ({source_sql(self.children[0][0], engine.db)}) src")
            with engine.db.connect() as conn:
                for (extra,) in conn.execute(stmt):
                    value = (json.loads(extra) if isinstance(extra, str) else extra or {}).get(kind.lost_key)
                    pending += len(value) if isinstance(value, list) else 0
                held = int(conn.execute(count).scalar() or 0) + pending
            cache[key] = mass_delete_refusal(ctx, self.config.mass_delete, f"{self.entity} {kind.segment}",
                                             pending, held)
        return cache[key]

    def prepare(self, engine: "SyncEngine", ctx: RunContext) -> None:
        super().prepare(engine, ctx)
        self._engine = engine

    def operation_name(self, ref: OpRef) -> str:
        """``sync_result.operation`` of a result whose operation could not be re-planned."""
        kind = self.child_kind
        if kind is not None and ref.step == kind.step:
            return f"{kind.operation}:{ref.payload_hash}"
        return self.operation_names.get(ref.step, ref.step)

    def interpret_child_delete(self, op: PlannedOp | None, ref: OpRef, result: "OperationResult",
                               state: StateRow | None) -> Outcome:
        """A confirmed child delete (or 404: already gone) takes the child off the record's list of
        children awaiting deletion; the record itself is untouched."""
        kind = self.child_kind
        assert kind is not None
        lost = list((state.extra.get(kind.lost_key) if state is not None else None) or [])
        child = op.context.get("child") if op is not None else next(
            (c for c in lost if kind.child_hash(c) == ref.payload_hash), None)
        if result.ok or result.status_code == 404:
            remaining = [c for c in lost if c != child]
            return Outcome(OUTCOME_OK, "delete" if result.ok else "already_deleted",
                           extra={kind.lost_key: remaining or None}, follow_up=False,
                           detail=None if result.ok else f"Mailchimp no longer had {kind.what} {child}")
        return Outcome(OUTCOME_FAILED, failure_reason(result))

    def lost_in_answer(self, op: PlannedOp | None, result: "OperationResult") -> list[str]:
        """Children Mailchimp's answer to a confirmed write still lists that the write did not send
        (the update keeps them): they await deletion too, also when the bookkeeping never knew them."""
        kind = self.child_kind
        if kind is None or op is None or op.body is None or self.child_policy() != "delete":
            return []
        sent = {str(child.get("id")) for child in op.body.get(kind.segment) or []}
        decoded = getattr(result, "decoded_as", None)
        ids = decoded(_ChildrenAnswer) if decoded is not None else None
        if ids is not None:  # only the children's ids decoded, not the whole order (with its customer)
            listed_ids = getattr(ids, kind.segment)
            if listed_ids is None:
                return []
            return [str(c.id) for c in listed_ids if c.id is not None and str(c.id) not in sent]
        answer = result.body if isinstance(result.body, dict) else {}
        listed = answer.get(kind.segment)
        if not isinstance(listed, list):
            return []
        return [str(c["id"]) for c in listed if isinstance(c, dict) and c.get("id") is not None and str(c["id"]) not in sent]

    # -- records whose row left the source (config ``on_delete``) ------------------------------------
    def delete_path(self, record_id: str, state: StateRow) -> str:
        """Where the record lives in Mailchimp, from its bookkeeping (its source row is gone)."""
        return self.item_path({}, record_id)

    def plan_extra(self, engine: "SyncEngine", ctx: RunContext, record_ids: Sequence[str] | None = None) -> Iterator[RecordPlan]:
        """Deletes for records Mailchimp holds whose row the source query no longer returns.

        Found in SQL (``sync_state`` anti-joined with the entity's query), so a run holds only the
        gone ids. The mass-delete guard (config ``mass_delete``) refuses the whole lot, each
        recorded as skipped ``mass_delete_refused``, when it exceeds the allowed share, unless the
        run's param ``allow_mass_delete`` is set: an extraction that returns nothing because a view
        broke must not empty the store.
        """
        policy = getattr(self.config.on_delete, self.entity, "ignore")
        if policy == "ignore" or ctx.data.get("source_absent"):
            return
        yield from plan_removals(
            engine, self, ctx, record_ids, guard=self.config.mass_delete, what=f"{self.entity} records",
            removal=lambda record_id, state: self.removal(record_id, state, policy,
                                                          "its row is no longer in the source query"))

    def removal(self, record_id: str, state: StateRow, policy: str, why: str) -> RecordPlan:
        """The write that takes a record out of Mailchimp."""
        hash_ = payload_hash([policy, record_id])
        op = PlannedOp(record_id, STEP_DELETE, "delete", "DELETE", self.delete_path(record_id, state), None, hash_,
                       "delete", detail=f"{self.entity} {record_id}: {why}")
        return RecordPlan(record_id, ops=[op])

    def interpret(self, op: PlannedOp | None, ref: OpRef, result: "OperationResult", state: StateRow | None) -> Outcome:
        if ref.step == STEP_DELETE:
            return self.interpret_delete(ref, result)
        if self.child_kind is not None and ref.step == self.child_kind.step:
            return self.interpret_child_delete(op, ref, result, state)
        confirmed = {"mailchimp_id": ref.record_id, "scope": self.store_id}
        if result.ok:
            extra = dict((op.context.get("extra") if op else None) or {})
            if self.child_kind is not None:
                lost_key = self.child_kind.lost_key
                answered = self.lost_in_answer(op, result)
                if answered:
                    extra[lost_key] = sorted(set(extra.get(lost_key) or []) | set(answered))
                if extra.get(lost_key):
                    self.awaiting_children.add(ref.record_id)
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

    @staticmethod
    def interpret_delete(ref: OpRef, result: "OperationResult") -> Outcome:
        """A confirmed delete (or a 404: someone deleted it first) forgets the record in the
        bookkeeping: no ``mailchimp_id``, no hash, so it is created again if its row comes back."""
        gone = {"mailchimp_id": None, "payload_hash": None}
        if result.ok:
            return Outcome(OUTCOME_OK, "delete", state=gone, extra={"source_hash": None}, follow_up=False)
        if result.status_code == 404:
            return Outcome(OUTCOME_SKIPPED, "already_deleted", state=gone, extra={"source_hash": None},
                           detail="Mailchimp no longer had this record", follow_up=False)
        return Outcome(OUTCOME_FAILED, failure_reason(result))


class _ChildId(msgspec.Struct):
    id: Any = None


class _ChildrenAnswer(msgspec.Struct):
    """The children an answer lists (``ChildKind.segment``), decoded without the rest of the answer.
    An answer of another shape (a segment that is not a list of objects) fails to decode into it,
    and is then read whole, as before."""

    lines: list[_ChildId] | None = None
    variants: list[_ChildId] | None = None


class LineDependencies(NamedTuple):
    """What a chunk of records with lines depends on, looked up once for the chunk."""

    customer_ids: set[str]
    """The customers the records name."""
    customers: set[str]
    """Those Mailchimp confirmed holding, or this run plans to send."""
    products: dict[str, list[str] | None]
    """Every confirmed product (see :meth:`LineItemRules.products_in_mailchimp`)."""
    planned_products: set[str]
    """The lines' products this run plans to send."""


class LineItemRules(CommerceRules):
    """Records with product lines (orders, carts): every line's product and variant must have
    reached Mailchimp first, or Mailchimp refuses the whole record."""

    def __init__(self, scope: CommerceScope) -> None:
        super().__init__(scope)
        self._products: dict[str, list[str] | None] | None = None

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

    def line_dependencies(self, engine: "SyncEngine", items: list["Candidate"], ctx: RunContext) -> LineDependencies:
        """The customers and products ``items`` (rows carrying ``_lines``) depend on: one lookup a chunk."""
        customer_ids = {c for c in (text_or_none(i.row.get("customer_id")) for i in items) if c}
        product_ids = {p for i in items for p in (text_or_none(line.get("product_id")) for line in i.row.get("_lines") or []) if p}
        customers = confirmed_ids(engine, "customer", customer_ids) | planned_in_run(engine, ctx, "customer", customer_ids)
        products = self.products_in_mailchimp(engine)
        planned_products = planned_in_run(engine, ctx, "product", product_ids)
        return LineDependencies(customer_ids, customers, products, planned_products)

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
                return f"product {product_id} (line {line['id']}) has not reached Mailchimp ({why_not_sent(state)})"
            variants = products[product_id]
            if variants is not None and variant_id not in variants:
                return f"variant {variant_id} of product {product_id} (line {line['id']}) is not in Mailchimp"
        return None


@dataclass
class Candidate:
    """A source record that needs its payload built: the row, its id, its state, its source hash."""

    row: dict[str, Any]
    record_id: str
    state: StateRow | None
    source_hash: str



# ------------------------------------------------------------------------------------------------
# lookups across entities
# ------------------------------------------------------------------------------------------------
def why_not_sent(state: StateRow | None) -> str:
    """Why a dependency is not in Mailchimp, for the detail of the record that waits on it."""
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
    return SyncEngine.load_states(engine, (str(i) for i in record_ids), entity)  # typed rows, as dependencies need


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


