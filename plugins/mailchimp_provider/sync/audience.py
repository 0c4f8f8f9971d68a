"""The audience rules: warehouse customers -> Mailchimp audience members, consent first.

Per customer row (``include/sql/customers.sql``), in this order:

1. **Erasure.** A row in ``marketing_erasure_requests`` (by customer id or email) permanently
   deletes the member (``actions/delete-permanent``; 404 means there was nothing to delete) and
   leaves a tombstone in ``sync_state`` (``status='erased'``, quarantined, no email kept, only the
   subscriber hash). A tombstoned customer id or subscriber hash is never sent again, even after the
   request row is gone.
2. **Email.** Missing or invalid emails are skipped with a reason. Emails are trimmed and compared
   case-insensitively. When several customers share an email the most recently created one is
   synced; the others are skipped with a reason naming it.
3. **no_marketing.** Never sent as a new member. An existing member whose row gets
   ``no_marketing`` is unsubscribed (PATCH ``status: unsubscribed``) and then left alone.
4. **Archived** in Mailchimp (from ``mailchimp_member``, which the audit before writing,
   ``sync/audit.py``, brings up to date at the start of every run): skipped with reason
   ``archived_in_mailchimp``, because any PUT would bring the contact back (as ``status_if_new``:
   an archived contact has lost its old status). A run with ``retry_archived`` re-adds them
   (action ``readd_archived``), changed row or not.
5. **The member write** (``PUT /lists/{id}/members/{hash}``): ``status_if_new`` is ``subscribed``
   with ``marketing_opt_in`` (``pending`` with double opt-in) and ``transactional`` otherwise;
   ``status`` is never sent except ``unsubscribed`` when consent was withdrawn (the last confirmed
   write carried opt-in and the row no longer does). So an unsubscribed, cleaned or archived member
   is never raised: Mailchimp keeps an existing member's status, and the plan says so
   (``status_decision``). Guests (``is_guest``) send only the merge fields marked ``guests: true``
   (the first name). ADDRESS is sent only when complete.
6. **Email change.** The same customer id with a new email is written through the *old* member's
   hash with the new ``email_address``: Mailchimp renames the contact (no duplicate, nothing to
   archive). "Member Exists" in answer is recorded as ``email_conflict``.
7. **Tags.** ``customer_type`` and ``tags`` become tags. New members get them in the PUT body; later
   changes go through ``POST .../tags`` once the member write is confirmed, adding and removing only
   tags this sync manages (``sync_state.tags_managed``): tags marketers add are left alone.
8. **Gone from the source** (``on_delete: archive``; default ``ignore``): a member this sync wrote
   whose customer row the query no longer returns is archived (``DELETE /lists/{id}/members/{hash}``
   archives a contact: Mailchimp's "Archive list member"; it keeps its history and can be re-added).
   Found and guarded like the e-commerce deletions (``sync/deletions.py``): at most
   ``mass_delete.max_share`` of the members per run unless ``allow_mass_delete``; a dry run lists
   them. Someone with an erasure request is erased instead. If the row comes back, the member stays
   archived (``archived_in_mailchimp``) until a run with ``retry_archived``.

Change detection hashes the member *content* (email, merge fields, consent flags, list), not the
operation, so a confirmed unsubscribe or email change does not look like a change next time. A
rerun first compares a *source digest* (:meth:`AudienceRules.source_digest`: the columns these
rules read, as extracted, keyed by a fingerprint of the content-shaping configuration, the list and
this code) with ``sync_state.source_hash``, stored when a member write (with its tags) or a tags
write is confirmed: a row that matches skips building its content, the rest are checked the long
way (and, when unchanged, get their digest stamped for the next rerun).
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import logging
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import msgspec
import sqlalchemy as sa

from mailchimp_provider.config import ADDRESS_REQUIRED, AudienceSyncConfig, MergeFieldSpec
from mailchimp_provider.errors import MailchimpConfigError
from mailchimp_provider.sync.paths import api_path
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
    StateDigest,
    StateRow,
    canonical_json,
    failure_reason,
    payload_hash,
    source_sql,
)

if TYPE_CHECKING:
    from mailchimp_provider.batches.results import OperationResult
    from mailchimp_provider.hooks.mailchimp import MailchimpHook
    from mailchimp_provider.sync.engine import SyncEngine

log = logging.getLogger(__name__)

ENTITY = "member"
STEP_UPSERT, STEP_TAGS, STEP_UNSUBSCRIBE, STEP_ERASE, STEP_ARCHIVE = "u", "t", "x", "d", "a"
OPERATION_NAMES = {STEP_UPSERT: "upsert", STEP_TAGS: "tags", STEP_UNSUBSCRIBE: "unsubscribe", STEP_ERASE: "erase",
                   STEP_ARCHIVE: "archive"}
ERASED = "erased"
ARCHIVED = "archived"
MAX_CUSTOMER_ID = 50
MARKETABLE = ("subscribed", "pending")
NEVER_RAISED = ("unsubscribed", "cleaned")

MAX_MERGE_TEXT = 255
"""Mailchimp stores at most 255 characters in a text merge field ("Add merge data to contacts",
https://mailchimp.com/developer/marketing/docs/merge-fields/): longer values are cut to it here
rather than sent and refused. Tag names are cut to ``tags.max_length`` (100) the same way."""

# Deliberately close to what Mailchimp accepts: one @, a dotted domain with an alphabetic TLD.
EMAIL_RE = re.compile(r"^[^@\s,;<>()\[\]\"]+@(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,}$")


def subscriber_hash(email: str) -> str:
    """Mailchimp's member id: md5 of the trimmed, lower-cased email."""
    return hashlib.md5(email.strip().lower().encode()).hexdigest()


def normalise_email(raw: Any) -> str | None:
    """Trimmed, lower-cased email, or None when missing."""
    if raw is None:
        return None
    text = str(raw).strip()
    return text.lower() or None


def is_valid_email(email: str) -> bool:
    return bool(EMAIL_RE.match(email)) and ".." not in email


def truthy(value: Any) -> bool:
    """Warehouse booleans: True/False, 1/0 (SQLite), 't'/'true'/'yes' strings."""
    if value is None:
        return False
    if isinstance(value, str):
        return value.strip().lower() in ("1", "t", "true", "y", "yes")
    return bool(value)


# ------------------------------------------------------------------------------------------------
# merge fields and tags from a row
# ------------------------------------------------------------------------------------------------
def _text(value: Any) -> str:
    if value is None:
        return ""
    if type(value) is str:  # the common case, first: this runs for every column of every row
        return value.strip()
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, (date, Decimal)):
        return str(value)
    return str(value).strip()


def merge_value(spec: MergeFieldSpec, row: dict[str, Any]) -> Any:
    """The value to send for one merge field, or None when it must not be sent.

    An incomplete ADDRESS is None (Mailchimp rejects partial addresses); other empty values become
    the field's ``default`` or ``""`` (so clearing a column clears the merge field).
    """
    if spec.type == "address":
        parts = {}
        for part, column in (spec.columns or {}).items():
            text = _text(row.get(column))
            if text:
                parts[part] = text
        for part in ADDRESS_REQUIRED:
            if part not in parts:
                return None
        return parts
    value = _text(row.get(spec.column) if spec.column else None)
    if value == "":
        return spec.default if spec.default is not None else ""
    if len(value) > MAX_MERGE_TEXT:
        value = value[:MAX_MERGE_TEXT].rstrip()
    if spec.type == "number":
        try:
            number = float(value)
        except ValueError:
            return value  # Mailchimp will name the field in its answer
        return int(number) if number.is_integer() else number
    return value


_SOURCE_ENCODE = msgspec.msgpack.Encoder().encode
SOURCE_DIGEST_BYTES = 8
"""A source digest is 64 bits of keyed blake2b: compared only with the same record's earlier
digest, so a false match (which would skip a changed row) is ~1 in 1.8e19 per changed row."""


@lru_cache(maxsize=1)
def _code_fingerprint() -> str | None:
    """What builds member content from a row besides the configuration: this module, the
    extraction's conversions and ``to_utc``, and the msgpack encoder of the digest. Any edit to
    them makes every row go the long way once (and be stamped again); None when the code cannot
    be read (then there are no source digests at all)."""
    from mailchimp_provider.warehouse import extract
    from mailchimp_provider.warehouse.tables import to_utc

    try:
        parts = [Path(__file__).read_bytes(), Path(extract.__file__).read_bytes(),
                 inspect.getsource(to_utc).encode(), msgspec.__version__.encode()]
    except (OSError, TypeError):
        return None
    return hashlib.blake2b(b"\0".join(parts), digest_size=16).hexdigest()


def desired_tags(config: AudienceSyncConfig, row: dict[str, Any]) -> list[str]:
    """Tags this sync wants on the member, sorted and de-duplicated (case-insensitively)."""
    spec = config.tags
    found: dict[str, str] = {}
    for column in spec.columns:
        value = _text(row.get(column))
        if value:
            found.setdefault(value.lower(), value[: spec.max_length])
    for column in spec.list_columns:
        for part in _text(row.get(column)).split(spec.separator):
            part = part.strip()
            if part:
                found.setdefault(part.lower(), part[: spec.max_length])
    return sorted(found.values(), key=str.lower)


# ------------------------------------------------------------------------------------------------
# the rules
# ------------------------------------------------------------------------------------------------
@dataclass
class _Known:
    """What we know about a member in Mailchimp: the freshest of sync_state and mailchimp_member."""

    status: str | None = None
    exists: bool = False
    source: str = ""


@dataclass
class AudienceRules(EntityRules):
    """Member rules for one audience (``list_id``); see the module docstring."""

    config: AudienceSyncConfig
    list_id: str
    operation_names: dict[str, str] = field(default_factory=lambda: dict(OPERATION_NAMES))

    def __post_init__(self) -> None:
        self.entity = ENTITY
        self.sql_name = self.config.source.sql
        self.key_column = self.config.source.key_column
        self.max_id_length = MAX_CUSTOMER_ID  # the contract: customer_id is at most 50 characters
        self._source_columns, self._source_key = self._source_spec()

    # -- what a row's content is built from ------------------------------------------------------
    def _source_spec(self) -> tuple[tuple[str, ...], bytes | None]:
        """The columns planning reads, and the key of their digest: a fingerprint of everything
        else member content depends on (merge fields, tags, consent and source settings, the
        list, the code), so changing any of them makes every row go the long way."""
        cfg = self.config
        columns = {cfg.source.key_column, cfg.source.email_column, cfg.consent.opt_in_column,
                   cfg.consent.no_marketing_column, cfg.consent.guest_column,
                   *cfg.tags.columns, *cfg.tags.list_columns}
        for spec in cfg.merge_fields.values():
            if spec.column:
                columns.add(spec.column)
            columns.update((spec.columns or {}).values())
        columns.discard("")
        code = _code_fingerprint()
        if code is None:
            return tuple(sorted(columns)), None
        fingerprint = canonical_json({
            "list": self.list_id, "code": code, "columns": sorted(columns),
            "merge_fields": {tag: dataclasses.asdict(spec) for tag, spec in cfg.merge_fields.items()},
            "tags": dataclasses.asdict(cfg.tags), "consent": dataclasses.asdict(cfg.consent),
            "source": dataclasses.asdict(cfg.source),
        })
        return tuple(sorted(columns)), hashlib.blake2b(fingerprint.encode(), digest_size=32).digest()

    def columns_read(self) -> tuple[str, ...]:
        """Key, email, consent, merge-field and tag columns: the timestamps are only checked."""
        return self._source_columns

    def source_digest(self, row: dict[str, Any]) -> str | None:
        """Keyed blake2b of the msgpack of the columns read (see :meth:`_source_spec`), or None
        when the code fingerprint is unknown or a value cannot be encoded."""
        key = self._source_key
        if key is None:
            return None
        try:
            data = _SOURCE_ENCODE(tuple(map(row.get, self._source_columns)))
        except (TypeError, ValueError, OverflowError):
            return None
        return hashlib.blake2b(data, digest_size=SOURCE_DIGEST_BYTES, key=key).hexdigest()

    # -- per-run data --------------------------------------------------------------------------
    def audited_list(self, hook: Any) -> str | None:
        """Member writes change statuses in this audience: it is audited before planning."""
        return None if self.list_id == PLANNED_AUDIENCE_ID else self.list_id

    def prepare(self, engine: "SyncEngine", ctx: RunContext) -> None:
        if ctx.retry_archived:
            from mailchimp_provider.sync.audit import archived_members

            ctx.data["archived"] = archived_members(engine.db, engine.tables, self.list_id)
        ctx.data["duplicates"] = self._duplicates(engine)
        by_customer, by_email = self._erasure_requests(engine)
        ctx.data["erase_by_customer"] = by_customer
        ctx.data["erase_by_email"] = by_email
        ctx.data["tombstones"] = self._tombstoned_hashes(engine)

    def _duplicates(self, engine: "SyncEngine") -> dict[str, tuple[str, int]]:
        """``{email: (winning record id, customers sharing it)}`` for emails used by several
        customers. Computed in SQL so only the duplicated rows come back, however big the table."""
        src = self.config.source
        sql = source_sql(src.sql, engine.db)
        norm = f"lower(trim(s.{src.email_column}))"
        stmt = sa.text(
            f"SELECT s.{src.key_column} AS record_id, {norm} AS email, s.{src.created_column} AS created_at "
            f"FROM ({sql}) s WHERE {norm} IN (SELECT lower(trim(d.{src.email_column})) FROM ({sql}) d "
            f"WHERE d.{src.email_column} IS NOT NULL GROUP BY lower(trim(d.{src.email_column})) HAVING count(*) > 1)"
        )
        from mailchimp_provider.warehouse.extract import tolerant_text

        groups: dict[str, list[tuple[Any, str]]] = {}
        with engine.db.connect() as conn, tolerant_text(conn):  # one undecodable row is skipped, not fatal
            for row in conn.execute(stmt):
                if isinstance(row.email, str) and row.email and is_valid_email(row.email):
                    groups.setdefault(row.email, []).append((_sortable_time(row.created_at), str(row.record_id)))
        return {email: (max(members)[1], len(members)) for email, members in groups.items() if len(members) > 1}

    def _erasure_requests(self, engine: "SyncEngine") -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
        """The run's erasure requests (a safety input: unreadable means the task fails before any
        write; a missing table means erasure is not configured, and the log says so)."""
        from mailchimp_provider.sync.consent import read_erasure_requests

        if not self.config.erasure.enabled:
            log.warning("Erasure is disabled (erasure.enabled: false in the audience config): erasure requests "
                        "are not read, and nobody is deleted from Mailchimp on request.")
            return {}, {}
        requests = read_erasure_requests(engine.db, self.config.erasure.sql)
        return requests.by_customer, requests.by_email

    def erasure_report(self, engine: "SyncEngine", ctx: RunContext) -> str | None:
        """One line for the task log: how many people with an erasure request were acted on in this
        run (deleted, or confirmed absent), were erased in an earlier run, or failed (retried next
        run). None when erasure is off or there are no requests."""
        people = set(ctx.data.get("erase_by_customer", {})) | {r for r, _ in ctx.data.get("erase_by_email", {}).values()}
        if not people:
            return None
        t = engine.tables.sync_result
        stmt = sa.select(t.c.record_id, t.c.outcome, t.c.reason).where(
            t.c.run_id == ctx.run_id, t.c.entity == ENTITY, t.c.record_id.in_(sa.bindparam("ids", expanding=True)))
        seen: dict[str, set[tuple[str, str]]] = {}
        ids = sorted(people)
        with engine.db.connect() as conn:
            for start in range(0, len(ids), 900):
                for r in conn.execute(stmt, {"ids": ids[start:start + 900]}):
                    seen.setdefault(r.record_id, set()).add((r.outcome, r.reason or ""))
        deleted = sum(1 for v in seen.values() if (OUTCOME_OK, "erase") in v)
        absent = sum(1 for v in seen.values() if (OUTCOME_OK, "erase_not_in_audience") in v and (OUTCOME_OK, "erase") not in v)
        failed = sum(1 for v in seen.values() if any(o == OUTCOME_FAILED for o, _ in v))
        earlier = sum(1 for v in seen.values() if v == {(OUTCOME_SKIPPED, ERASED)})
        planned = sum(1 for v in seen.values() if any(o == "planned" for o, _ in v))
        other = len(people) - deleted - absent - failed - earlier - planned
        text = (f"Erasure: {len(people)} people with a request; acted on in this run: {deleted + absent} "
                f"({deleted} permanently deleted, {absent} not in the audience); erased in an earlier run: {earlier}; "
                f"failed (retried next run): {failed}")
        if planned:
            text += f"; planned (dry run): {planned}"
        if other:
            text += f"; not acted on: {other} (see mailchimp_sync_result, e.g. erasure_without_email)"
        return text + "."

    def _tombstoned_hashes(self, engine: "SyncEngine") -> set[str]:
        t = engine.tables.sync_state
        stmt = sa.select(t.c.mailchimp_id).where(t.c.entity == ENTITY, t.c.status == ERASED)
        with engine.db.connect() as conn:
            return {r[0] for r in conn.execute(stmt) if r[0]}

    def _members(self, engine: "SyncEngine", hashes: set[str]) -> dict[str, tuple[str | None, datetime | None]]:
        """Reverse-pulled ``mailchimp_member`` rows (status, synced_at) for some subscriber hashes."""
        if not hashes:
            return {}
        t = engine.tables.member
        stmt = sa.select(t.c.member_id, t.c.status, t.c.synced_at).where(
            t.c.list_id == self.list_id, t.c.member_id.in_(sa.bindparam("ids", expanding=True))
        )
        out: dict[str, tuple[str | None, datetime | None]] = {}
        ids = sorted(hashes)
        with engine.db.connect() as conn:
            for start in range(0, len(ids), 900):
                for r in conn.execute(stmt, {"ids": ids[start : start + 900]}):
                    out[r.member_id] = (r.status, r.synced_at)
        return out

    # -- planning ------------------------------------------------------------------------------
    def plan(
        self, engine: "SyncEngine", rows: list[dict[str, Any]], states: dict[str, StateRow], ctx: RunContext
    ) -> Iterator[RecordPlan]:
        def chunk_members() -> dict[str, tuple[str | None, datetime | None]]:
            emails = {normalise_email(row.get(self.config.source.email_column)) for row in rows}
            emails |= {state.email for state in states.values() if state.email}
            return self._members(engine, {subscriber_hash(e) for e in emails if e})

        members = _LazyMembers(chunk_members)
        for row in rows:
            record_id = str(row[self.key_column])
            yield self._plan_row(record_id, row, states.get(record_id), members, ctx)

    def plan_extra(
        self, engine: "SyncEngine", ctx: RunContext, record_ids: Sequence[str] | None = None
    ) -> Iterator[RecordPlan]:
        """Erasure requests whose person is not (or no longer) in the source query."""
        seen = ctx.data.setdefault("_erasure_seen", set())
        wanted = set(record_ids) if record_ids is not None else None
        targets: dict[str, set[str]] = {}
        for email, (record_id, _requested) in ctx.data.get("erase_by_email", {}).items():
            targets.setdefault(record_id, set()).add(email)
        for record_id in ctx.data.get("erase_by_customer", {}):
            targets.setdefault(record_id, set())
        candidates = [r for r in targets if (wanted is None and r not in seen) or (wanted is not None and r in wanted)]
        if candidates:
            states = engine.load_states(candidates)
            for record_id in sorted(candidates):
                yield self._plan_erasure(record_id, targets[record_id], states.get(record_id), ctx)
        if wanted is None:
            seen.clear()
        if self.config.on_delete == "archive":
            yield from self._plan_archive(engine, ctx, record_ids, set(targets))

    def _plan_archive(
        self, engine: "SyncEngine", ctx: RunContext, record_ids: Sequence[str] | None, erasing: set[str]
    ) -> Iterator[RecordPlan]:
        """Archive the members whose customer row left the source query (``on_delete: archive``),
        under the mass-delete guard; people with an erasure request are erased instead."""
        from mailchimp_provider.sync.deletions import plan_removals

        yield from plan_removals(engine, self, ctx, record_ids, guard=self.config.mass_delete, what="members",
                                 removal=self._archive_plan, skip_statuses=(ERASED, ARCHIVED), exclude=erasing,
                                 verb="archived", operation="archive")

    def _archive_plan(self, record_id: str, state: StateRow) -> RecordPlan:
        op = PlannedOp(record_id, STEP_ARCHIVE, "archive", "DELETE",
                       api_path("lists", self.list_id, "members", state.mailchimp_id), None,
                       payload_hash(["archive", state.mailchimp_id]), "archive",
                       status_decision="archived",
                       detail=f"customer {record_id} ({state.email or state.mailchimp_id}) is no longer in the "
                              f"{self.sql_name} query")
        return RecordPlan(record_id, ops=[op])

    def _plan_row(
        self,
        record_id: str,
        row: dict[str, Any],
        state: StateRow | None,
        members: dict[str, tuple[str | None, datetime | None]],
        ctx: RunContext,
    ) -> RecordPlan:
        cfg = self.config
        raw_email = row.get(cfg.source.email_column)
        email = normalise_email(raw_email)
        erase_email = ctx.data.get("erase_by_email", {})
        if record_id in ctx.data.get("erase_by_customer", {}) or (email and email in erase_email):
            ctx.data.setdefault("_erasure_seen", set()).add(record_id)
            if email and email in erase_email:  # the request's own id must not plan it twice
                ctx.data["_erasure_seen"].add(erase_email[email][0])
            emails = {e for e, (rid, _) in erase_email.items() if rid == record_id}
            return self._plan_erasure(record_id, emails | ({email} if email else set()), state, ctx)
        if state is not None and state.status == ERASED:
            return RecordPlan(record_id, skips=[Skip(record_id, ERASED, state.last_error)])
        if not email:
            return RecordPlan(record_id, skips=[Skip(record_id, "missing_email", "the row has no email address")])
        if not is_valid_email(email):
            return RecordPlan(record_id, skips=[Skip(record_id, "invalid_email", f"{str(raw_email).strip()!r} is not a valid email address")])
        new_hash = subscriber_hash(email)
        if new_hash in ctx.data.get("tombstones", set()):
            return RecordPlan(record_id, skips=[Skip(record_id, ERASED, f"{email} was permanently deleted on an erasure request")])
        winner = ctx.data.get("duplicates", {}).get(email)
        if winner and winner[0] != record_id:
            return RecordPlan(record_id, skips=[Skip(
                record_id, "duplicate_email",
                f"{email} is shared by {winner[1]} customers; customer {winner[0]} (the most recently created) is synced",
            )])

        opt_in = truthy(row.get(cfg.consent.opt_in_column))
        no_marketing = truthy(row.get(cfg.consent.no_marketing_column))
        guest = truthy(row.get(cfg.consent.guest_column))
        old_email = state.email if state is not None and state.email and state.mailchimp_id else None
        path_hash = subscriber_hash(old_email) if old_email else new_hash

        if no_marketing:
            known = self._known(state, members, path_hash, ctx)
            return self._plan_no_marketing(record_id, state, known, path_hash, email, ctx)

        fields, tags, content_hash = self._member_content(row, email, opt_in, guest)
        managed = set(state.tags_managed) if state is not None else set()
        retrying = path_hash in ctx.data.get("archived", ())  # retry_archived, and archived when audited
        if (not ctx.full_refresh and not retrying and state is not None and state.payload_hash == content_hash
                and (set(tags) == managed or state.mailchimp_id is None)):
            # The common case on a rerun: decided without reading Mailchimp's side at all.
            return RecordPlan(record_id, unchanged=True)

        known = self._known(state, members, path_hash, ctx)
        readd = known.status == "archived" and ctx.retry_archived
        if known.status == "archived" and not readd:
            return RecordPlan(record_id, skips=[Skip(
                record_id, "archived_in_mailchimp",
                "the contact is archived in Mailchimp; writing it would restore it, so it is left archived "
                "(run with retry_archived to re-add it)",
                status_decision="kept archived",
            )])

        withdrawn = (
            cfg.consent.unsubscribe_on_withdrawal
            and not opt_in
            and state is not None
            and bool(state.extra.get("opt_in"))
            and known.status in MARKETABLE
        )
        member_changed = ctx.full_refresh or readd or state is None or state.payload_hash != content_hash
        plan = RecordPlan(record_id)
        if member_changed:
            plan.ops.append(self._upsert_op(record_id, email, old_email, path_hash, fields, tags, opt_in, withdrawn,
                                            known, content_hash, state, readd=readd))
            plan.ops[-1].context["source_hash"] = self.source_digest(row)
        tags_need_op = set(tags) != managed and (state is not None and state.mailchimp_id is not None)
        if tags_need_op and (not member_changed or ctx.dry_run):
            plan.ops.append(self._tags_op(record_id, state, email, tags, managed))
            plan.ops[-1].context["source_hash"] = self.source_digest(row)
        plan.unchanged = not plan.ops
        return plan

    def _member_content(
        self, row: dict[str, Any], email: str, opt_in: bool, guest: bool
    ) -> tuple[dict[str, Any], list[str], str]:
        """``(merge fields, tags, content hash)`` of a member write. The hash covers the member
        content (email, merge fields, consent flags, list), not the operation."""
        cfg = self.config
        fields = {
            tag: value
            for tag, spec in cfg.merge_fields.items()
            if (spec.guests or not guest) and (value := merge_value(spec, row)) is not None
        }
        tags = [] if guest else desired_tags(cfg, row)
        content = {"list": self.list_id, "email": email, "merge_fields": fields, "opt_in": opt_in, "guest": guest}
        return fields, tags, payload_hash(content)

    # -- the no-change check -------------------------------------------------------------------
    supports_unchanged_check = True

    def is_unchanged(
        self, record_id: str, row: dict[str, Any], digest: StateDigest, ctx: RunContext, same_source: bool = False
    ) -> bool:
        """:meth:`_plan_row`'s "unchanged" answer from a digest, for plain rows only: a row that
        takes any other path first (erasure, erased, bad or duplicate email, no_marketing) is left
        to the full plan, so its skip or operation is recorded exactly as before. With
        ``same_source`` (the row's source digest is the stored one) the content is not rebuilt:
        the stored hash and managed tags were confirmed for exactly these values."""
        if digest.status == ERASED or digest.payload_hash is None:
            return False
        cfg = self.config
        email = normalise_email(row.get(cfg.source.email_column))
        data = ctx.data
        if (not email or record_id in data.get("erase_by_customer", ()) or email in data.get("erase_by_email", ())
                or not is_valid_email(email)):
            return False
        winner = data.get("duplicates", {}).get(email)
        if winner and winner[0] != record_id:
            return False
        if truthy(row.get(cfg.consent.no_marketing_column)):
            return False
        tombstones = data.get("tombstones")
        archived = data.get("archived")  # retry_archived: an archived member is re-added, row changed or not
        if tombstones or archived:
            member = subscriber_hash(email)
            if (tombstones and member in tombstones) or (archived and member in archived):
                return False
        if same_source:
            return True
        opt_in = truthy(row.get(cfg.consent.opt_in_column))
        guest = truthy(row.get(cfg.consent.guest_column))
        _, tags, content_hash = self._member_content(row, email, opt_in, guest)
        if digest.payload_hash != content_hash:
            return False
        return digest.mailchimp_id is None or frozenset(tags) == digest.tags_managed

    def _known(
        self, state: StateRow | None, members: dict[str, tuple[str | None, datetime | None]], member_hash: str,
        ctx: RunContext,
    ) -> _Known:
        known = _Known()
        if state is not None and state.mailchimp_id and state.status:
            known = _Known(state.status, True, "sync_state")
        pulled = members.get(member_hash)
        sent_since = ctx.data.get("sent_since")
        if (pulled is not None and ctx.replanning and sent_since is not None and pulled[1] is not None
                and pulled[1] >= sent_since.replace(microsecond=0)):
            # Re-planning a batch this run sent (after a restart): a member changed since the run's
            # first batch went out may be that batch's own write; the batch was planned without it
            # (a member this run created stays a "create"). Mailchimp's last_changed has whole
            # seconds, and a batch usually applies within the second it was sent, so the
            # comparison is with the second of the send, not the instant.
            pulled = None
        if pulled is not None:
            pulled_at = pulled[1]
            ours = state.synced_at if state is not None else None
            if known.status is None or ours is None or (pulled_at is not None and pulled_at >= ours):
                known = _Known(pulled[0], True, "mailchimp_member")
        return known

    def _status_if_new(self, opt_in: bool) -> str:
        if not opt_in:
            return "transactional"
        return "pending" if self.config.consent.double_opt_in else "subscribed"

    def _upsert_op(
        self,
        record_id: str,
        email: str,
        old_email: str | None,
        path_hash: str,
        fields: dict[str, Any],
        tags: list[str],
        opt_in: bool,
        withdrawn: bool,
        known: _Known,
        content_hash: str,
        state: StateRow | None,
        *,
        readd: bool = False,
    ) -> PlannedOp:
        status_if_new = self._status_if_new(opt_in)
        body: dict[str, Any] = {"email_address": email, "status_if_new": status_if_new, "merge_fields": fields}
        tags_in_body = bool(tags) and not known.exists
        if tags_in_body:
            body["tags"] = tags
        detail_parts: list[str] = []
        if withdrawn:
            body["status"] = "unsubscribed"
            action = "unsubscribe"
            decision = f"unsubscribed: consent withdrawn (was {known.status})"
        elif readd:
            action = "readd_archived"
            decision = f"re-added from archived as {status_if_new} (retry_archived)"
        elif known.exists:
            action = "update"
            decision = f"kept {known.status}" + (" (never re-subscribed)" if known.status in NEVER_RAISED else "")
        else:
            action = "create"
            why = "marketing_opt_in" if opt_in else "no marketing opt-in"
            decision = f"new member: {status_if_new} ({why}" + (", double opt-in)" if opt_in and status_if_new == "pending" else ")")
        if old_email and old_email != email:
            action = "email_change" if not withdrawn else action
            detail_parts.append(f"email {old_email} -> {email}")
        if tags_in_body:
            detail_parts.append("tags " + " ".join(f"+{t}" for t in tags))
        return PlannedOp(
            record_id=record_id,
            step=STEP_UPSERT,
            operation=OPERATION_NAMES[STEP_UPSERT],
            method="PUT",
            path=api_path("lists", self.list_id, "members", path_hash),
            body=body,
            payload_hash=content_hash,
            action=action,
            status_decision=decision,
            detail="; ".join(detail_parts) or None,
            context={"tags": tags, "tags_in_body": tags_in_body, "opt_in": opt_in, "old_email": old_email, "email": email},
        )

    def _tags_op(self, record_id: str, state: StateRow, email: str, tags: list[str], managed: set[str]) -> PlannedOp:
        wanted = set(tags)
        changes = [{"name": t, "status": "active"} for t in sorted(wanted - managed, key=str.lower)]
        changes += [{"name": t, "status": "inactive"} for t in sorted(managed - wanted, key=str.lower)]
        member = state.mailchimp_id or subscriber_hash(email)
        return PlannedOp(
            record_id=record_id,
            step=STEP_TAGS,
            operation=OPERATION_NAMES[STEP_TAGS],
            method="POST",
            path=api_path("lists", self.list_id, "members", member, "tags"),
            body={"tags": changes, "is_syncing": True},
            payload_hash=payload_hash({"member": member, "tags": sorted(wanted), "managed": sorted(managed)}),
            action="tags",
            detail=" ".join(("+" if c["status"] == "active" else "-") + c["name"] for c in changes),
            context={"tags": sorted(wanted, key=str.lower)},
        )

    def _plan_no_marketing(
        self, record_id: str, state: StateRow | None, known: _Known, path_hash: str, email: str, ctx: RunContext
    ) -> RecordPlan:
        if not known.exists or known.status not in MARKETABLE + ("transactional",):
            what = f"member is {known.status}" if known.exists else "not sent to Mailchimp"
            return RecordPlan(record_id, skips=[Skip(record_id, "no_marketing", f"no_marketing is set; {what}",
                                                     status_decision=f"kept {known.status}" if known.exists else None)])
        content_hash = payload_hash({"list": self.list_id, "unsubscribe": path_hash})
        op = PlannedOp(
            record_id=record_id,
            step=STEP_UNSUBSCRIBE,
            operation=OPERATION_NAMES[STEP_UNSUBSCRIBE],
            method="PATCH",
            path=api_path("lists", self.list_id, "members", path_hash),
            body={"status": "unsubscribed"},
            payload_hash=content_hash,
            action="unsubscribe",
            status_decision=f"unsubscribed: no_marketing set (was {known.status})",
            context={"opt_in": False},
        )
        return RecordPlan(record_id, ops=[op])

    def _plan_erasure(self, record_id: str, emails: set[str], state: StateRow | None, ctx: RunContext) -> RecordPlan:
        requested = ctx.data.get("erase_by_customer", {}).get(record_id) or next(
            (ctx.data.get("erase_by_email", {})[e][1] for e in emails if e in ctx.data.get("erase_by_email", {})), ""
        )
        if state is not None and state.status == ERASED:
            return RecordPlan(record_id, skips=[Skip(record_id, ERASED, state.last_error)])
        targets = set(emails)
        if state is not None and state.email:
            targets.add(state.email)
        hashes = sorted({subscriber_hash(e) for e in targets if e})
        if state is not None and state.mailchimp_id and not state.email:
            hashes = sorted(set(hashes) | {state.mailchimp_id})
        if not hashes:
            return RecordPlan(record_id, skips=[Skip(record_id, "erasure_without_email",
                                                     "erasure requested but no email is known for this customer")])
        ops = []
        for index, member in enumerate(hashes):
            step = STEP_ERASE if index == 0 else f"{STEP_ERASE}{index + 1}"
            ops.append(PlannedOp(
                record_id=record_id,
                step=step,
                operation=OPERATION_NAMES[STEP_ERASE] + ("" if index == 0 else f"_{index + 1}"),
                method="POST",
                path=api_path("lists", self.list_id, "members", member, "actions", "delete-permanent"),
                body=None,
                payload_hash=member[:12],
                action="erase",
                status_decision="permanently deleted (erasure request)",
                detail=f"erasure requested {requested}".strip(),
                context={"member": member, "requested_at": requested},
            ))
        return RecordPlan(record_id, ops=ops)

    # -- results ---------------------------------------------------------------------------------
    def interpret(self, op: PlannedOp | None, ref: OpRef, result: "OperationResult", state: StateRow | None) -> Outcome:
        step = ref.step
        if step.startswith(STEP_ERASE):
            return self._interpret_erase(op, ref, result)
        if step == STEP_ARCHIVE:
            return self._interpret_archive(result)
        if step == STEP_UNSUBSCRIBE:
            return self._interpret_unsubscribe(op, result)
        if step == STEP_TAGS:
            return self._interpret_tags(op, result)
        return self._interpret_upsert(op, ref, result, state)

    def _interpret_upsert(self, op: PlannedOp | None, ref: OpRef, result: "OperationResult", state: StateRow | None) -> Outcome:
        if result.ok:
            answer = member_answer(result)
            status = answer.status
            member_tags = {t.get("name") for t in answer.tags or [] if isinstance(t, dict)}
            new_state: dict[str, Any] = {
                "payload_hash": ref.payload_hash,
                "mailchimp_id": answer.id,
                "email": normalise_email(answer.email_address),
                "status": status,
                "contact_id": answer.contact_id,
                "scope": self.list_id,
            }
            extra: dict[str, Any] = {}
            decision = op.status_decision if op else None
            if op is not None:
                extra["opt_in"] = op.context.get("opt_in")
                if op.context.get("tags_in_body"):
                    wanted = set(op.context.get("tags") or [])
                    new_state["tags_managed"] = sorted(wanted & member_tags, key=str.lower)
                elif state is None or state.mailchimp_id is None:
                    new_state["tags_managed"] = []
                if op.action == "create" and status and status != op.body.get("status_if_new"):
                    decision = f"kept {status} (already in Mailchimp; status never raised)"
            # Final unless the member's managed tags still differ from the wanted ones (then the
            # next pass sends the tags write).
            managed = new_state["tags_managed"] if "tags_managed" in new_state else (state.tags_managed if state else [])
            final = op is not None and set(op.context.get("tags") or []) == set(managed)
            if final and op.context.get("source_hash"):  # content and tags now match the row it was planned from
                new_state["source_hash"] = op.context["source_hash"]
            return Outcome(OUTCOME_OK, op.action if op else "update", status_decision=decision, state=new_state,
                           extra=extra, follow_up=not final)
        title = result.title or ""
        if title == "Member In Compliance State":
            return Outcome(OUTCOME_SKIPPED, "compliance_state", terminal=True,
                           status_decision="kept (Mailchimp compliance state: unsubscribed, bounced or under review)")
        if title == "Forgotten Email Not Subscribed":
            return Outcome(OUTCOME_SKIPPED, "forgotten_email", terminal=True,
                           status_decision="not re-added: permanently deleted in Mailchimp; the person must re-subscribe")
        if title == "Member Exists":
            old = op.context.get("old_email") if op else None
            new = op.context.get("email") if op else None
            if old and new and old != new:
                return Outcome(OUTCOME_FAILED, "email_conflict",
                               detail=f"cannot change {old} to {new}: {new} already belongs to another Mailchimp member "
                                      "(merge or remove one of the two contacts, then the next run retries)")
            return Outcome(OUTCOME_FAILED, "member_exists")
        if result.status_code == 400 and "looks fake or invalid" in (result.detail or ""):
            return Outcome(OUTCOME_FAILED, "email_rejected")
        if "merge fields were invalid" in (result.detail or "").lower():
            return Outcome(OUTCOME_FAILED, "merge_fields_invalid")
        return Outcome(OUTCOME_FAILED, failure_reason(result))

    def _interpret_tags(self, op: PlannedOp | None, result: "OperationResult") -> Outcome:
        if result.ok:
            state: dict[str, Any] = {}
            if op is not None:
                state["tags_managed"] = op.context["tags"]
                if op.context.get("source_hash"):  # planned only while the member content was unchanged
                    state["source_hash"] = op.context["source_hash"]
            return Outcome(OUTCOME_OK, "tags", state=state, follow_up=op is None)
        if result.status_code == 404:
            # the member is gone from Mailchimp: forget the confirmed write so it is created again
            return Outcome(OUTCOME_FAILED, "member_not_found", state={"payload_hash": None, "mailchimp_id": None})
        return Outcome(OUTCOME_FAILED, failure_reason(result))

    def _interpret_unsubscribe(self, op: PlannedOp | None, result: "OperationResult") -> Outcome:
        if result.ok:
            body = result.body if isinstance(result.body, dict) else {}
            return Outcome(OUTCOME_OK, "unsubscribe", state={"status": body.get("status", "unsubscribed")},
                           extra={"opt_in": False, "no_marketing": True}, follow_up=False)
        if result.status_code == 404:
            return Outcome(OUTCOME_OK, "not_in_audience", state={"status": None, "mailchimp_id": None},
                           extra={"opt_in": False, "no_marketing": True},
                           status_decision="nothing to unsubscribe: not in the audience", follow_up=False)
        return Outcome(OUTCOME_FAILED, failure_reason(result))

    def _interpret_archive(self, result: "OperationResult") -> Outcome:
        """Archived (204): the member stays known as archived, with no confirmed payload, so a
        customer row that comes back is planned and then skipped ``archived_in_mailchimp`` until a
        run with ``retry_archived``. 404: not in the audience (any more): nothing to archive. 405
        (bounced, pending or already archived, facts §3): refused for good, not retried."""
        if result.ok:
            return Outcome(OUTCOME_OK, "archive", state={"status": ARCHIVED, "payload_hash": None},
                           status_decision="archived", follow_up=False)
        if result.status_code == 404:
            return Outcome(OUTCOME_OK, "not_in_audience", state={"status": None, "mailchimp_id": None, "payload_hash": None},
                           status_decision="nothing to archive: not in the audience", follow_up=False)
        if result.status_code == 405:  # "Can not archive a contact that is bounced, pending or archived"
            return Outcome(OUTCOME_SKIPPED, "cannot_archive", terminal=True,
                           status_decision="left as it is (Mailchimp cannot archive a bounced, pending or archived contact)")
        return Outcome(OUTCOME_FAILED, failure_reason(result))

    def _interpret_erase(self, op: PlannedOp | None, ref: OpRef, result: "OperationResult") -> Outcome:
        if result.ok or result.status_code == 404:
            requested = op.context.get("requested_at") if op else ""
            member = op.context.get("member") if op else None
            tombstone = {
                "status": ERASED,
                "email": None,
                "payload_hash": None,
                "tags_managed": [],
                "contact_id": None,
                "quarantined": True,
                "last_outcome": ERASED,
                "last_error": f"erased on request {requested}".strip(),
            }
            if member:
                tombstone["mailchimp_id"] = member
            reason = "erase" if result.ok else "erase_not_in_audience"
            return Outcome(OUTCOME_OK, reason, state=tombstone, status_decision="permanently deleted", follow_up=False)
        return Outcome(OUTCOME_FAILED, failure_reason(result))


class MemberAnswer(msgspec.Struct):
    """The fields of Mailchimp's member answer (``PUT .../members/{hash}``) the rules read."""

    id: Any = None
    email_address: Any = None
    status: Any = None
    contact_id: Any = None
    tags: Any = None


def member_answer(result: "OperationResult") -> MemberAnswer:
    """A member write's answer, decoded into just the fields read (one per written member: the
    generic decode of the whole 31-field member was the largest cost of applying results); a body
    that is not a JSON object reads as empty, as before."""
    answer = result.decoded_as(MemberAnswer)
    if answer is not None:
        return answer
    body = result.body if isinstance(result.body, dict) else {}
    return MemberAnswer(body.get("id"), body.get("email_address"), body.get("status"), body.get("contact_id"),
                        body.get("tags"))


class _LazyMembers:
    """The reverse-pulled member rows of a chunk, read on first use: a chunk of unchanged records
    (a no-change rerun) never queries ``mailchimp_member``."""

    def __init__(self, load: Any) -> None:
        self._load = load
        self._rows: dict[str, tuple[str | None, datetime | None]] | None = None

    def get(self, key: str) -> tuple[str | None, datetime | None] | None:
        if self._rows is None:
            self._rows = self._load()
        return self._rows.get(key)


def _sortable_time(value: Any) -> str:
    """Timestamps from SQLite come back as text, from PostgreSQL as datetimes: compare as ISO text."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.replace(tzinfo=None).isoformat(sep=" ")
    return str(value).replace("T", " ")


# ------------------------------------------------------------------------------------------------
# audience and merge fields, before the first write
# ------------------------------------------------------------------------------------------------
PLANNED_AUDIENCE_ID = "planned-audience"
"""Stands in for the list id in a dry run whose audience does not exist yet (it is not created)."""


@dataclass
class AudienceCheck:
    list_id: str
    name: str
    created: bool = False
    merge_fields_created: list[str] = field(default_factory=list)
    dry_run: bool = False
    """Nothing was created: ``created``/``merge_fields_created`` say what a real run would create."""


def ensure_audience(
    hook: "MailchimpHook", config: AudienceSyncConfig, *, source: str = "audience config", dry_run: bool = False
) -> AudienceCheck:
    """Find the audience (by id, or by name, creating it when configured), then check the merge
    field mapping against it, creating missing merge fields. Raises :class:`MailchimpConfigError`
    naming the config key for anything that would make members fail. ``dry_run`` only reads."""
    spec = config.audience
    created = False
    if spec.id:
        found = hook.get(api_path("lists", spec.id), params={"fields": "id,name"})
        list_id, name = found["id"], found.get("name", "")
    else:
        match = next((lst for lst in hook.paginate("/lists", "lists", fields=["id", "name"])
                      if lst.get("name") == spec.name), None)
        if match is None:
            if not spec.create_if_missing:
                raise MailchimpConfigError(
                    f"{source}: audience.name: no Mailchimp audience is named {spec.name!r}. Create it, give its "
                    "'id', or set create_if_missing: true (with contact, permission_reminder, campaign_defaults)."
                )
            if dry_run:
                log.info("Dry run: audience %r does not exist and would be created.", spec.name)
                return AudienceCheck(PLANNED_AUDIENCE_ID, spec.name or "", True, list(config.merge_fields), True)
            contact = {k: v for k, v in vars(spec.contact).items() if v not in (None, "")} if spec.contact else {}
            defaults = dict(vars(spec.campaign_defaults)) if spec.campaign_defaults else {}
            match = hook.post("/lists", json={
                "name": spec.name,
                "contact": contact,
                "permission_reminder": spec.permission_reminder,
                "campaign_defaults": defaults,
                "email_type_option": spec.email_type_option,
                "double_optin": config.consent.double_opt_in,
            })
            created = True
            log.info("Created Mailchimp audience %r (%s).", spec.name, match["id"])
        list_id, name = match["id"], match.get("name", spec.name or "")
    existing = list(hook.paginate(api_path("lists", list_id, "merge-fields"), "merge_fields"))
    to_create, problems = check_merge_fields(config, existing, list_name=name)
    if to_create and not config.create_missing_merge_fields:
        problems += [(f"merge_fields.{tag}", f"audience {name!r} has no merge field {tag}; create it in Mailchimp "
                      "or set create_missing_merge_fields: true") for tag in to_create]
    if problems:
        raise MailchimpConfigError(
            "The merge field mapping does not fit the audience; nothing was sent:\n  "
            + "\n  ".join(f"{source}: {key}: {problem}" for key, problem in problems)
        )
    if dry_run:
        if to_create:
            log.info("Dry run: merge field(s) %s would be created in audience %r.", ", ".join(to_create), name)
        return AudienceCheck(list_id, name, created, to_create, True)
    for tag in to_create:
        spec_field = config.merge_fields[tag]
        hook.post(api_path("lists", list_id, "merge-fields"), json={
            "tag": tag, "name": spec_field.name or tag, "type": spec_field.type, "required": False, "public": False,
        })
        log.info("Created merge field %s (%s) in audience %r.", tag, spec_field.type, name)
    return AudienceCheck(list_id, name, created, to_create)


def check_merge_fields(
    config: AudienceSyncConfig, existing: list[dict[str, Any]], *, list_name: str = ""
) -> tuple[list[str], list[tuple[str, str]]]:
    """Compare the mapping with the audience's merge fields: ``(tags to create, problems)``.

    A problem is a type mismatch, or a ``required`` audience field the mapping can leave empty
    (unmapped; mapped without a ``default``; or not sent for guests): every such member would be
    rejected with "Your merge fields were invalid", so it is stopped here instead.
    """
    by_tag = {str(f.get("tag")).upper(): f for f in existing}
    problems: list[tuple[str, str]] = []
    to_create = [tag for tag in config.merge_fields if tag not in by_tag]
    for tag, spec in config.merge_fields.items():
        found = by_tag.get(tag)
        if found is not None and found.get("type") != spec.type:
            problems.append((f"merge_fields.{tag}.type",
                             f"{spec.type!r} but the audience's {tag} field has type {found.get('type')!r}"))
    for tag, found in by_tag.items():
        if not found.get("required"):
            continue
        spec = config.merge_fields.get(tag)
        where = f"merge_fields.{tag}"
        if spec is None:
            problems.append((where, f"the audience {list_name!r} requires {tag} ({found.get('name')}) but the "
                                    "mapping does not send it: map it, or make it optional in Mailchimp"))
        elif spec.default in (None, "") and spec.type != "address":
            problems.append((where, f"required in the audience, but column {spec.column!r} can be empty: add a "
                                    "'default' (or make the field optional in Mailchimp)"))
        elif spec.type == "address":
            problems.append((where, "required in the audience, but ADDRESS is only sent when complete: make it "
                                    "optional in Mailchimp"))
        elif not spec.guests:
            problems.append((where, "required in the audience, but guests send only their first name: set "
                                    "'guests: true' on it (the default is then sent for guests)"))
    return to_create, problems


# ------------------------------------------------------------------------------------------------
# reporting (the demo prints this)
# ------------------------------------------------------------------------------------------------
def sync_report(
    run_id: str,
    *,
    conn_id: str = "warehouse_default",
    table_prefix: str = "mailchimp_",
    table_schema: str | None = None,
    source_sql_name: str = "customers",
) -> dict[str, dict[str, int]]:
    """What one run of the audience sync did, from the warehouse tables alone:
    ``{"ok": {"create": 480, ...}, "skipped": {"invalid_email": 3, ...}, "failed": {...},
    "unchanged": {"unchanged": n}}`` (``unchanged`` = source rows with no result row in the run)."""
    from mailchimp_provider.sync.engine import run_summary
    from mailchimp_provider.warehouse.connection import get_engine
    from mailchimp_provider.warehouse.tables import WarehouseTables

    db = get_engine(conn_id)
    with db.connect() as conn:
        total = int(conn.execute(sa.text(f"SELECT count(*) FROM ({source_sql(source_sql_name, db)}) src")).scalar() or 0)
    return run_summary(db, WarehouseTables(table_prefix, table_schema), run_id, ENTITY, total_records=total).as_dict()
