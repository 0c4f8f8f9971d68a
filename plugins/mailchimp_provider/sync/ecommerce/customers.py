"""E-commerce customers: consent policy, erasure requests and the audience audit before writing."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator, Mapping

from mailchimp_provider.sync.audience import normalise_email
from mailchimp_provider.sync.consent import ErasureRequests, read_erasure_requests
from mailchimp_provider.sync.ecommerce.payloads import RejectedRecord, as_bool, customer_payload
from mailchimp_provider.sync.ecommerce.rules import Candidate, CommerceRules, rejected_skip
from mailchimp_provider.sync.ecommerce.store import store_path
from mailchimp_provider.sync.engine import OUTCOME_OK, OpRef, Outcome, PlannedOp, RecordPlan, RunContext, Skip, StateRow

if TYPE_CHECKING:
    from mailchimp_provider.batches.results import OperationResult
    from mailchimp_provider.sync.engine import SyncEngine


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
