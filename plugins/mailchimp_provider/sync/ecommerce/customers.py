"""E-commerce customers: consent policy, erasure requests, the audience audit before writing, and
email changes (a new Mailchimp customer id, mapped in the bookkeeping).

Email changes, from what Mailchimp documents and does:

* **Mailchimp cannot change an e-commerce customer's email.** The PATCH body of
  ``/ecommerce/stores/{store_id}/customers/{customer_id}`` has no ``email_address`` (spec v3.0.x,
  ``ECommerceCustomer4``: opt_in_status, company, names, address), and a PUT that names another
  email for an existing id is refused: "An email address may not be changed once a customer is
  created." (mailchimp/mc-magento#17, open since 2016; a Mailchimp developer there, 2018: "we don't
  have any concrete plans"; mailchimp/mc-magento2#230 stopped a whole sync on it). Nor can an order
  or a cart be moved to another customer: their PATCH ``customer`` has no ``id`` either
  (``ECommerceOrder2``, cart PATCH; shared/mailchimp-api.md §12 B).
* **What the platforms do.** mc-magento2 keys customers by ``md5(lower(email))`` (Model/Api/Customer.php),
  so a changed email silently becomes a second customer and the old one stays (duplicates). mc-woocommerce,
  answered "not be changed", deletes the customer and PUTs it again under the same id
  (class-mailchimp-woocommerce-single-order.php), then deletes the session's cart.
* **What this sync does.** The source ``customer_id`` keeps one *current* Mailchimp customer id,
  ``sync_state.mailchimp_id`` of the customer record (the bookkeeping is the mapping; orders and carts
  read it through :func:`mailchimp_customer_ids`). The id is :func:`mailchimp_customer_id`: the
  ``customer_id`` itself for the email the customer was first created with
  (``extra.original_email``), and ``<customer_id[:29]>~<blake2b(customer_id, email)>`` for any other
  email, so retries and reruns compute the same id, and changing back returns to the original id.
  On a change the new customer is PUT, and once Mailchimp confirmed it the old one is DELETEd in the
  next pass of the same run ("Delete a customer from a store", 204): a customer that no longer
  exists is in no e-commerce automation and gets no new order or cart, and a new email Mailchimp
  refuses leaves the old customer in place. ``extra.retired`` holds old ids still to delete (a
  failed delete is retried in later runs), ``extra.deleted`` those confirmed gone. Carts of the customer already in Mailchimp are moved by the carts task
  (deleted and created again under the new id, ``carts.py``).
* **No second contact.** Mailchimp links a customer to the audience member with its email. Creating
  the new customer before the audience sync renamed the member would add a second contact (and the
  rename would then fail as ``email_conflict``), so while the audience sync's bookkeeping still holds
  the old email for this ``customer_id`` the customer waits, skipped as ``email_change_pending``,
  and is re-keyed in the first run after the rename. Customers the audience sync does not manage
  are re-keyed at once (their old contact is left as it is).
* **What Mailchimp cannot do, so neither can this sync:** past orders stay under the old customer id
  (orders cannot change customer), and what Mailchimp does to a deleted customer's orders and carts
  is not documented (the emulator keeps them); the old customer's purchase history is therefore not
  merged into the new one's ``orders_count``/``total_spent``. Guest customers created from an order's
  ``customer_email`` are not re-keyed.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping

import sqlalchemy as sa

from mailchimp_provider.sync.audience import normalise_email
from mailchimp_provider.sync.consent import ErasureRequests, read_erasure_requests
from mailchimp_provider.sync.ecommerce.payloads import RejectedRecord, as_bool, customer_payload
from mailchimp_provider.sync.ecommerce.rules import OPERATION_NAMES, Candidate, CommerceRules, rejected_skip
from mailchimp_provider.sync.ecommerce.store import store_path
from mailchimp_provider.sync.engine import (
    OUTCOME_FAILED,
    OUTCOME_OK,
    OUTCOME_SKIPPED,
    OpRef,
    Outcome,
    PlannedOp,
    RecordPlan,
    RunContext,
    Skip,
    StateRow,
    failure_reason,
    payload_hash,
)

if TYPE_CHECKING:
    from mailchimp_provider.batches.results import OperationResult
    from mailchimp_provider.sync.engine import SyncEngine


STEP_RETIRE = "r"
"""The DELETE of a customer's previous Mailchimp customer id after an email change."""
STEP_REKEY = "k"
"""The PUT of a customer under a new Mailchimp id (its email changed); the old id's DELETE follows
in the next pass, once the new customer is confirmed (``replan_after_steps``)."""
MAX_CUSTOMER_ID = 50  # Mailchimp's customer ``id`` maxLength
_DIGEST_HEX = 20


def mailchimp_customer_id(customer_id: str, email: str, original_email: str | None) -> str:
    """The Mailchimp customer id of ``customer_id`` while it has ``email`` (normalised).

    ``customer_id`` itself for the email it was first created with (``original_email``; None: not
    created yet), so customers synced before email changes were handled keep their id; for any
    other email a deterministic id of at most 50 characters, the same in every retry and rerun.
    """
    if original_email is None or email == original_email:
        return customer_id
    digest = hashlib.blake2b(f"{customer_id}\n{email}".encode(), digest_size=_DIGEST_HEX // 2).hexdigest()
    return f"{customer_id[:MAX_CUSTOMER_ID - _DIGEST_HEX - 1]}~{digest}"


def original_email(record_id: str, state: StateRow | None) -> str | None:
    """The email ``record_id`` was first created with in Mailchimp (None: never created)."""
    if state is None:
        return None
    recorded = state.extra.get("original_email")
    if isinstance(recorded, str) and recorded:
        return recorded
    # bookkeeping from before email changes were handled: the id was always the customer_id
    return state.email if state.mailchimp_id == record_id and state.email else None


def mailchimp_customer_ids(engine: "SyncEngine", customer_ids: Iterable[str]) -> dict[str, str]:
    """``customer_id -> current Mailchimp customer id`` of the customers Mailchimp confirmed holding:
    what orders and carts must reference (bounded ``IN`` lookups of ``sync_state``)."""
    ids = sorted({str(i) for i in customer_ids})
    out: dict[str, str] = {}
    if not ids:
        return out
    t = engine.tables.sync_state
    stmt = sa.select(t.c.record_id, t.c.mailchimp_id).where(
        t.c.entity == "customer", t.c.mailchimp_id.is_not(None), t.c.record_id.in_(sa.bindparam("ids", expanding=True)))
    with engine.db.connect() as conn:
        for start in range(0, len(ids), 900):
            out.update((r[0], r[1]) for r in conn.execute(stmt, {"ids": ids[start:start + 900]}))
    return out


def member_emails(engine: "SyncEngine", customer_ids: Iterable[str], list_id: str | None) -> dict[str, str | None]:
    """``customer_id -> email`` the audience sync last confirmed for the member of each customer it
    manages (``sync_state`` entity ``member``, in ``list_id`` when known)."""
    ids = sorted({str(i) for i in customer_ids})
    out: dict[str, str | None] = {}
    if not ids:
        return out
    t = engine.tables.sync_state
    stmt = sa.select(t.c.record_id, t.c.email).where(
        t.c.entity == "member", t.c.mailchimp_id.is_not(None), t.c.record_id.in_(sa.bindparam("ids", expanding=True)))
    if list_id:
        stmt = stmt.where(t.c.scope == list_id)
    with engine.db.connect() as conn:
        for start in range(0, len(ids), 900):
            out.update((r[0], r[1]) for r in conn.execute(stmt, {"ids": ids[start:start + 900]}))
    return out


def _id_list(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


class CustomerRules(CommerceRules):
    """E-commerce customers, with the audience sync's consent policy.

    ``opt_in_status`` comes from the consent policy's opt-in column when the customer is new to the
    store; an existing customer is always re-sent with the value it was created with (kept in
    ``sync_state.status``). Mailchimp upgrades a ``transactional`` member to ``subscribed`` when a
    customer's ``opt_in_status`` goes from false to true, so re-sending the original value is what
    guarantees the e-commerce sync never changes an existing member's status; consent changes are
    the audience sync's job. With double opt-in, new customers are sent without opt-in (the
    audience sync makes them ``pending``; an e-commerce opt-in would subscribe them directly).
    ``no_marketing`` customers are never sent. A changed email moves the customer to a new
    Mailchimp customer id and deletes the old one (see the module docstring).

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
    operation_names = {**OPERATION_NAMES, STEP_RETIRE: "delete", STEP_REKEY: "upsert"}
    replan_after_steps = frozenset({STEP_REKEY})
    unhashed_columns = frozenset({"created_at", "updated_at", "phone", "customer_type", "tags"})

    def fingerprint_parts(self) -> Any:
        consent = self.scope.consent
        return [consent.opt_in_column, consent.no_marketing_column, consent.guest_column, consent.double_opt_in]

    def collection_path(self, row: Mapping[str, Any]) -> str:
        return store_path(self.store_id, "customers")

    def delete_path(self, record_id: str, state: StateRow) -> str:
        """The customer's current Mailchimp id (``on_delete.customer: delete``)."""
        return store_path(self.store_id, "customers", state.mailchimp_id or record_id)

    def plan(self, engine: "SyncEngine", rows: list[dict[str, Any]], states: dict[str, StateRow],
             ctx: RunContext) -> Iterator[RecordPlan]:
        """As ``CommerceRules.plan``; a customer with an old Mailchimp id still to delete (an
        earlier delete failed) is planned even when its row did not change."""
        retiring = {rid for rid, state in states.items() if _id_list(state.extra.get("retired"))}
        if not retiring:
            yield from super().plan(engine, rows, states, ctx)
            return
        by_id = {str(r.get(self.key_column)): r for r in rows}
        again: list[Candidate] = []
        for plan in super().plan(engine, rows, states, ctx):
            if plan.unchanged and not plan.ops and plan.record_id in retiring and plan.record_id in by_id:
                row = by_id[plan.record_id]
                again.append(Candidate(row, plan.record_id, states.get(plan.record_id), self.source_hash(row)))
            else:
                yield plan
        if again:
            yield from self.plan_changed(engine, again, ctx)

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
        changing = [i.record_id for i in items if i.state is not None and self.in_mailchimp(i.state) and i.state.email
                    and i.state.email != normalise_email(i.row.get("email"))]
        members = member_emails(engine, changing, self.list_id) if changing else {}
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
            current = state.mailchimp_id if exists and state is not None else None
            target = mailchimp_customer_id(record_id, email, original_email(record_id, state))
            if current is not None and current != target and record_id in members and members[record_id] != email:
                yield RecordPlan(record_id, skips=[Skip(
                    record_id, "email_change_pending",
                    f"customer {record_id}: email changed from {state.email if state else '?'} to {email}; waiting "
                    f"until the audience sync renames the member (it still has {members[record_id]}), so the new "
                    "e-commerce customer joins that contact instead of creating a second one")])
                continue
            body["id"] = target
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
                op.context["mc_id"] = target
                op.path = store_path(self.store_id, "customers", target)
                if current is not None and current != target:
                    op.step = STEP_REKEY
                    op.action = "create"
                    op.context["replaces"] = current
                    op.detail = f"email changed: Mailchimp customer {target} replaces {current}"
            yield self._with_retirements(plan, record_id, state, target)

    def _with_retirements(self, plan: RecordPlan, record_id: str, state: StateRow | None, target: str) -> RecordPlan:
        """Add the DELETE of one earlier Mailchimp id of this customer (``extra.retired``: recorded
        when the new id was confirmed, so a new email Mailchimp refuses never leaves the customer
        with no id at all). One a pass: ``sync_result`` keeps one row per record and operation."""
        retired = set(_id_list(state.extra.get("retired"))) if state is not None else set()
        retired.discard(target)
        if not retired or any(op.step == STEP_REKEY for op in plan.ops):
            return plan
        old = sorted(retired)[0]
        op = PlannedOp(record_id, STEP_RETIRE, "delete", "DELETE", store_path(self.store_id, "customers", old), None,
                       payload_hash(["retire", old]), "delete", context={"old_id": old},
                       detail=f"customer {record_id}: its previous Mailchimp customer {old} (email changed)")
        plan.ops.append(op)
        plan.unchanged = False
        return plan

    def interpret(self, op: PlannedOp | None, ref: OpRef, result: "OperationResult", state: StateRow | None) -> Outcome:
        if ref.step == STEP_RETIRE:
            return self._interpret_retire(op, result, state)
        outcome = super().interpret(op, ref, result, state)
        if outcome.outcome == OUTCOME_OK and ref.step != "d":
            body = result.body if isinstance(result.body, dict) else {}
            mc_id = str((op.context.get("mc_id") if op else None) or body.get("id") or ref.record_id)
            outcome.state["mailchimp_id"] = mc_id
            extra = state.extra if state is not None else {}
            deleted = set(_id_list(extra.get("deleted")))
            retired = set(_id_list(extra.get("retired")))
            replaced = op.context.get("replaces") if op else None
            if replaced and replaced != mc_id and replaced not in deleted:
                retired.add(replaced)  # deleted in the next pass; kept until that is confirmed
            retired.discard(mc_id)
            deleted.discard(mc_id)  # an id in use again (the email changed back)
            outcome.extra.update({"retired": sorted(retired) or None, "deleted": sorted(deleted) or None})
        if outcome.outcome == OUTCOME_OK and op is not None and op.body:
            email = str(op.body.get("email_address", "")).lower() or None
            outcome.state["email"] = email
            opted_in = op.context.get("opt_in", op.body.get("opt_in_status"))
            outcome.state["status"] = "opt_in" if opted_in else "no_opt_in"
            if email and outcome.state.get("mailchimp_id") == ref.record_id and not (state and state.extra.get("original_email")):
                outcome.extra["original_email"] = email
        return outcome

    def _interpret_retire(self, op: PlannedOp | None, result: "OperationResult", state: StateRow | None) -> Outcome:
        """A previous Mailchimp id deleted (or already gone: 404): no longer to delete, and the
        customer's current id is cleared if it was that one (the new one was not confirmed)."""
        if not result.ok and result.status_code != 404:
            return Outcome(OUTCOME_FAILED, failure_reason(result))
        old = op.context.get("old_id") if op is not None else None
        extra = state.extra if state is not None else {}
        retired = [i for i in _id_list(extra.get("retired")) if i != old]
        deleted = sorted(set(_id_list(extra.get("deleted"))) | ({old} if old else set()))
        cleared = {"mailchimp_id": None, "payload_hash": None} if old and state is not None and state.mailchimp_id == old else {}
        updates = {"retired": retired or None, "deleted": deleted or None, **({"source_hash": None} if cleared else {})}
        if result.ok:
            return Outcome(OUTCOME_OK, "delete", state=cleared, extra=updates, follow_up=False)
        return Outcome(OUTCOME_SKIPPED, "already_deleted", state=cleared, extra=updates, follow_up=False,
                       detail=f"Mailchimp no longer had the previous customer {old}")
