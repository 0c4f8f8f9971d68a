"""The forward sync engine: change detection, the plan, bookkeeping, quarantine, summary.

It is entity-agnostic. An *entity* (``member`` for the audience sync; ``customer``, ``product``,
``order``... for the e-commerce sync) supplies its rules as an :class:`EntityRules` subclass; the
engine supplies everything that is the same for every entity:

* **Planning, stateless.** :meth:`SyncEngine.next_operations` streams the entity's source query
  (``include/sql/<name>.sql`` through ``warehouse_default``) in chunks, loads ``sync_state`` for
  each chunk's keys, asks the rules what each record needs, and returns at most
  ``max_operations_per_batch`` Mailchimp operations per call. What still needs sending is derived
  from the source rows, ``sync_state`` and this run's ``sync_result`` rows only, so a deferral, a
  worker crash or an Airflow retry simply plans again and finds less to do. Within one process a
  generator keeps the scan position (an optimisation, never a source of truth), and
  :meth:`SyncEngine.prefetch` plans the next batch while Mailchimp works on the current one. A pass
  that sends something is followed by another pass over just the records it sent (follow-up
  operations such as tags that need the member to exist first), minus those whose every answer
  the rules called final (``Outcome.follow_up=False``); a pass over a few records reads just their
  rows (:meth:`SyncEngine.fetch_source`), not the whole source again; passes are capped at
  :data:`MAX_PASSES`, and the next pass starts only once every result of the previous is applied.
* **Operation ids** are ``<entity>:<record_id>:<payload hash>:<step>`` (see :class:`OpRef`): a
  result maps back to its record, the payload it carried and the kind of write without any
  extra state. Record ids may contain ``:``; the id is split from both ends.
* **Change detection.** Rules hash the outgoing payload with :func:`payload_hash`; ``sync_state``
  keeps the hash Mailchimp confirmed. Unchanged records cost no API call and get no result row.
  ``full_refresh`` makes rules plan every record again. Rules that implement
  :meth:`EntityRules.is_unchanged` clear unchanged rows from a :class:`StateDigest` (hash, id,
  status, managed tags: no JSON decoding, no timestamps) read per chunk; only the rest get full
  :class:`StateRow` objects and :meth:`EntityRules.plan`, so a no-change rerun costs the source
  scan and one hash per row. Rules with a *source digest* (:meth:`EntityRules.source_digest`: a
  cheap hash of the columns they read, as extracted, keyed by a fingerprint of their configuration
  and code) make that hash cheaper still: ``sync_state.source_hash`` keeps the digest of the row a
  confirmed state was written from (set by the rules' :class:`Outcome`, cleared by the engine when
  a confirmed column changes without one, and stamped by a rerun that found the row unchanged the
  long way), and a row whose digest matches skips building its payload. Columns the rules do not
  read (:meth:`EntityRules.columns_read`) are only checked by the extraction, not converted.
* **Bookkeeping** (:meth:`SyncEngine.apply_results`). Per operation result, one ``sync_result`` row
  (``ok``/``failed``/``skipped``; HTTP status, error title/detail, field errors, batch id) and an
  updated ``sync_state`` row, committed together per batch. ``sync_state``'s confirmed columns
  (``payload_hash``, ``mailchimp_id``, ``email``, ``status``, ``tags_managed``) change only on a
  confirmed write; a failure only moves ``attempts``/``last_outcome``/``last_error`` and records
  the failed payload in ``extra["pending"]`` (``"<step>:<hash>"``) and its reason in
  ``extra["reason"]``. Skips (invalid email, duplicates...) are recorded as the plan goes by.
* **One bad row is one skipped record.** :meth:`SyncEngine.screen_rows` takes out, before any rule
  sees them, rows whose id is missing (``missing_id``, under a synthetic record id), too long or
  unusable in a URL (``invalid: <key>``), on several rows (``duplicate_id``) or that carry a value
  the extraction could not read (``bad_value``, naming the column and the value). They are
  recorded as ``skipped``; the run goes on and the failure threshold decides the task state.
* **Quarantine.** A payload that failed ``max_attempts`` times (across runs) is quarantined: it is
  skipped with reason ``quarantined`` until its source row changes (a new hash). Rules can also
  declare an answer *terminal* (e.g. "Member In Compliance State"): recorded as ``skipped`` and
  quarantined at once, because retrying the same payload cannot succeed.
* **Within a run** a record whose operation failed is not sent again (the next run retries it).
* **Lost results are never "unchanged".** A write that was sent but whose result never arrived
  (its batch expired or was abandoned before the results were read) has no confirmed outcome: the
  record is planned again in the next pass of the same run (passes are bounded by
  :data:`MAX_PASSES`), and if it is still unconfirmed when planning ends, :meth:`SyncEngine.finish`
  records it as ``outcome='pending'`` (reason ``result_lost``, ``sync_state.last_outcome =
  'pending'``), and raises :class:`SyncUnconfirmed` saying how many, why and what to do. Records
  that depend on it (orders of a pending customer) wait with reason ``customer_pending``.
  A deferrable task resumes each wait with a new engine, so the bound is kept in the warehouse:
  :meth:`SyncEngine.hold_in_flight` writes the writes in flight down as ``pending`` rows before
  the task defers (``attempt`` = sends in this try), and a write sent ``MAX_PASSES`` times in the
  try is not planned again; a new try (:meth:`SyncEngine.start_try`) counts afresh.
  Results of a batch applied twice (a retry after a kill during apply) are recorded once: the
  first try's rows, ``create`` labels included, are kept.
* **Dry run.** Every planned operation is recorded as ``outcome='planned'`` (reason = the action,
  e.g. ``create``/``update``/``unsubscribe``/``tags``/``erase``; ``error_detail`` holds the
  human detail such as tag changes) and nothing is sent; ``sync_state`` is untouched.
* **Outcome.** :meth:`SyncEngine.summary` counts result rows per outcome and reason (plus the
  unchanged records); :func:`format_summary` renders the table the task log ends with;
  :meth:`SyncEngine.check_failure_threshold` fails the task (without retries) when failures exceed
  the configured share, naming the top error titles and the SQL that lists the failed rows.

How to add an entity
--------------------
1. Write ``include/sql/<name>.sql`` returning the contract's columns (one row per record).
2. Subclass :class:`EntityRules`: set ``entity`` (the ``sync_state.entity`` value), ``sql_name``
   and ``key_column``; implement :meth:`EntityRules.plan` (rows + states -> one
   :class:`RecordPlan` per row: operations to send, skips with reasons, or ``unchanged=True``) and,
   if the defaults do not fit, :meth:`EntityRules.interpret` (one operation result ->
   :class:`Outcome` with the confirmed state columns to store). Use :func:`payload_hash` for the
   hash and compare it with ``state.payload_hash``; honour ``ctx.full_refresh`` and
   ``ctx.dry_run`` (in a dry run, plan follow-up operations right away so the plan is complete).
3. Build a :class:`SyncEngine` with the rules in a ``MailchimpBatchLifecycleOperator`` subclass:
   ``next_operations`` -> ``engine.next_operations()``, ``apply_results`` ->
   ``engine.apply_results(batch_id, results)``, ``finish`` -> ``engine.finish()``.
   ``operators/audience.py`` is the worked example; ``sync/audience.py`` the worked rules.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections import Counter
from functools import lru_cache
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Collection, Iterable, Iterator, NamedTuple, Sequence

import sqlalchemy as sa

from mailchimp_provider.errors import MailchimpError
from mailchimp_provider.json_codec import dumps, dumps_sorted
from mailchimp_provider.warehouse.tables import refresh_statistics

if TYPE_CHECKING:
    from mailchimp_provider.batches.results import OperationResult
    from mailchimp_provider.warehouse.tables import WarehouseTables

log = logging.getLogger(__name__)

HASH_HEX_CHARS = 12
"""Payload hashes are 48-bit blake2b digests in hex: short enough for operation ids, and a
collision between two versions of the same record (the only comparison made) is ~1 in 2.8e14."""
MAX_PASSES = 3
"""Planning passes per process: the first sends changes, the second follow-ups (e.g. tags that
need the member to exist), the third heals what a lost result left behind. Bounded on purpose."""
STATE_LOOKUP_CHUNK = 900
"""Keys per ``IN (...)`` lookup: well under every dialect's bind-parameter limit."""
FETCH_PASS_LIMIT = STATE_LOOKUP_CHUNK
"""A pass restricted to at most this many records (a follow-up pass after a few failures) reads
their rows with one keyed query instead of scanning the whole source again: the second scan cost a
100k-member first run as much as a fifth of its planning, for the one record the demo's fake email
left failed."""
ANALYZE_AFTER_WRITES = 5_000
"""A run that wrote this many records refreshes the bookkeeping tables' planner statistics: right
after a first load PostgreSQL has none, and its state lookups scanned the whole index (10x slower
reruns) until autovacuum got round to it."""

_PASS_END: Any = object()
"""Yielded by the planner between passes: the next pass must not start before every result of
the previous one is applied, so a prefetch stops there."""
_NOT_FETCHED: Any = object()

OUTCOME_OK = "ok"
OUTCOME_FAILED = "failed"
OUTCOME_SKIPPED = "skipped"
OUTCOME_PLANNED = "planned"
OUTCOME_PENDING = "pending"
"""Sent, but Mailchimp's answer never arrived (lost results): neither confirmed nor unchanged."""
REASON_RESULT_LOST = "result_lost"
REASON_AWAITING_RESULT = "awaiting_result"
"""A ``pending`` row of a write in a batch a deferred task is waiting for (see :meth:`SyncEngine.hold_in_flight`)."""


# ------------------------------------------------------------------------------------------------
# hashing and operation ids
# ------------------------------------------------------------------------------------------------
def canonical_json(value: Any) -> str:
    """Deterministic JSON (sorted keys, no spaces; dates and decimals as strings)."""
    return dumps_sorted(value)


def payload_hash(value: Any) -> str:
    """The change-detection hash of an outgoing payload (any JSON-able value)."""
    return hashlib.blake2b(canonical_json(value).encode(), digest_size=HASH_HEX_CHARS // 2).hexdigest()


@dataclass(frozen=True)
class OpRef:
    """What an operation id says: entity, record, payload hash and step (``u``, ``t``, ``d``...)."""

    entity: str
    record_id: str
    payload_hash: str
    step: str

    def __str__(self) -> str:
        return f"{self.entity}:{self.record_id}:{self.payload_hash}:{self.step}"

    @classmethod
    def parse(cls, operation_id: str | None) -> "OpRef | None":
        """The parts of an id made by :meth:`__str__`, or None for ids this engine did not make."""
        if not operation_id:
            return None
        entity, sep, rest = operation_id.partition(":")
        parts = rest.rsplit(":", 2)
        if not sep or len(parts) != 3 or not all(parts) or not entity:
            return None
        return cls(entity, parts[0], parts[1], parts[2])


# ------------------------------------------------------------------------------------------------
# what rules produce and consume
# ------------------------------------------------------------------------------------------------
@dataclass
class PlannedOp:
    """One Mailchimp write for one record, with what bookkeeping needs to know about it."""

    record_id: str
    step: str
    """One short code per kind of write; part of the operation id (``u`` upsert, ``t`` tags...)."""
    operation: str
    """``sync_result.operation``: the kind of write in words (``upsert``, ``tags``, ``erase``...)."""
    method: str
    path: str
    body: dict[str, Any] | None
    payload_hash: str
    action: str
    """The plan's vocabulary: ``create``, ``update``, ``unsubscribe``, ``tags``, ``erase``..."""
    status_decision: str | None = None
    detail: str | None = None
    """Human detail for the plan (``+VIP -Retail``, ``email old@ -> new@``)."""
    params: dict[str, Any] | None = None
    context: dict[str, Any] = field(default_factory=dict)
    """Entity-specific facts :meth:`EntityRules.interpret` needs (desired tags, consent...)."""

    def ref(self, entity: str) -> OpRef:
        return OpRef(entity, self.record_id, self.payload_hash, self.step)

    def to_operation(self, entity: str) -> dict[str, Any]:
        """The operation as Mailchimp's batch endpoint takes it (body as a JSON string)."""
        op: dict[str, Any] = {"method": self.method, "path": self.path, "operation_id": str(self.ref(entity))}
        if self.body is not None:
            op["body"] = dumps(self.body)
        if self.params:
            op["params"] = self.params
        return op


@dataclass(frozen=True)
class Skip:
    """A record (or one of its writes) deliberately not sent, with a reason a person can act on."""

    record_id: str
    reason: str
    detail: str | None = None
    operation: str = "skip"
    status_decision: str | None = None


@dataclass
class RecordPlan:
    """What one source record needs in this pass."""

    record_id: str
    ops: list[PlannedOp] = field(default_factory=list)
    skips: list[Skip] = field(default_factory=list)
    unchanged: bool = False


@dataclass
class StateRow:
    """One ``sync_state`` row, decoded (``tags_managed`` as a list, ``extra`` as a dict)."""

    entity: str
    record_id: str
    payload_hash: str | None = None
    mailchimp_id: str | None = None
    scope: str | None = None
    contact_id: str | None = None
    email: str | None = None
    status: str | None = None
    tags_managed: list[str] = field(default_factory=list)
    last_outcome: str | None = None
    attempts: int = 0
    quarantined: bool = False
    last_error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    synced_at: datetime | None = None
    source_hash: str | None = None
    """The rules' :meth:`EntityRules.source_digest` of the source row the confirmed columns were
    last found consistent with (None: unknown; the row is then checked the long way)."""

    @property
    def pending(self) -> str | None:
        """``"<step>:<hash>"`` of the payload that last failed (None when the last write was ok)."""
        value = self.extra.get("pending")
        return value if isinstance(value, str) else None

    def is_quarantined_for(self, step: str, hash_: str) -> bool:
        return self.quarantined and self.pending == f"{step}:{hash_}"

    def to_row(self) -> dict[str, Any]:
        return {
            "entity": self.entity,
            "record_id": self.record_id,
            "payload_hash": self.payload_hash,
            "mailchimp_id": self.mailchimp_id,
            "scope": self.scope,
            "contact_id": self.contact_id,
            "email": self.email,
            "status": self.status,
            "tags_managed": sorted(self.tags_managed) if self.tags_managed else None,
            "last_outcome": self.last_outcome,
            "attempts": self.attempts,
            "quarantined": self.quarantined,
            "last_error": self.last_error,
            "extra": self.extra or None,
            "synced_at": self.synced_at,
            "source_hash": self.source_hash,
        }

    @classmethod
    def from_row(cls, row: Any) -> "StateRow":
        m = row._mapping if hasattr(row, "_mapping") else row
        return cls(
            entity=m["entity"],
            record_id=m["record_id"],
            payload_hash=m["payload_hash"],
            mailchimp_id=m["mailchimp_id"],
            scope=m["scope"],
            contact_id=m["contact_id"],
            email=m["email"],
            status=m["status"],
            tags_managed=_json_list(m["tags_managed"]),
            last_outcome=m["last_outcome"],
            attempts=int(m["attempts"] or 0),
            quarantined=bool(m["quarantined"]),
            last_error=m["last_error"],
            extra=_json_dict(m["extra"]),
            synced_at=m["synced_at"],
            source_hash=m.get("source_hash"),
        )


class StateDigest(NamedTuple):
    """The few ``sync_state`` facts a no-change check needs, read without decoding the row.

    A no-change rerun reads one digest per source row instead of a :class:`StateRow` (no JSON
    decoding of ``extra``, no timestamp conversion), so its cost is the source scan and the hash.
    """

    payload_hash: str | None
    mailchimp_id: str | None
    status: str | None
    tags_managed: frozenset[str]
    source_hash: str | None = None
    """``sync_state.source_hash``: see :meth:`EntityRules.source_digest`."""


@dataclass
class Outcome:
    """How the rules read one operation result.

    ``state`` holds the confirmed ``sync_state`` columns to set on success (``payload_hash``,
    ``mailchimp_id``, ``email``, ``status``, ``tags_managed``, ``scope``, ``contact_id``) and
    ``extra`` keys to merge. ``terminal`` marks a refusal retrying cannot fix (quarantine now).
    """

    outcome: str
    reason: str
    status_decision: str | None = None
    state: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    terminal: bool = False
    detail: str | None = None
    follow_up: bool = True
    """False when the rules know a confirmed write leaves this record nothing to do in a later
    pass of the run (e.g. a member created with its tags): it is then not planned again in this
    process. True (the safe default) re-plans it in the next pass."""


@dataclass
class RunContext:
    """Facts about the current run that rules may read while planning."""

    run_id: str
    dag_id: str = ""
    task_id: str = ""
    map_index: int = -1
    full_refresh: bool = False
    dry_run: bool = False
    replanning: bool = False
    """True while results are mapped back to records after a restart: rules must plan exactly as
    they would have (ignore ``full_refresh``-independent side data that may have moved on)."""
    data: dict[str, Any] = field(default_factory=dict)
    """Per-run data rules prepare once in :meth:`EntityRules.prepare` (duplicates, erasures...)."""
    retry_archived: bool = False
    """Re-add members archived in Mailchimp (run parameter ``retry_archived``); otherwise they are
    skipped with reason ``archived_in_mailchimp`` and no opt-in is sent for them."""
    retry_failed: bool = False
    """Send only the records whose last outcome was ``failed`` plus the quarantined ones, with
    their quarantine lifted for this run (run parameter ``retry_failed``; the dashboard's button)."""


@dataclass(frozen=True)
class SyncSettings:
    """The engine's knobs (the audience config's ``sync:`` section maps onto these)."""

    max_operations_per_batch: int = 5000
    chunk_size: int = 2000
    max_attempts: int = 3
    max_failure_share: float = 0.05
    """Fail the task when failed / (ok + failed) exceeds this share (0.05 = 5 %)."""
    min_failures_to_fail: int = 10
    """...and at least this many writes failed: a poison record retried alone in a run (1 of 1
    failed) must not fail every run until it is quarantined; it is still in the summary."""

    def __post_init__(self) -> None:
        if self.max_operations_per_batch < 1:
            raise ValueError("max_operations_per_batch must be at least 1")
        if self.chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not 0 <= self.max_failure_share <= 1:
            raise ValueError("max_failure_share must be between 0 and 1")


class SyncThresholdExceeded(MailchimpError):
    """Too many records failed in this run; the message says which errors and how to list them."""


class SyncUnconfirmed(MailchimpError):
    """Writes were sent but never confirmed (results lost); the message says how many, why, what to do."""


# ------------------------------------------------------------------------------------------------
# entity rules
# ------------------------------------------------------------------------------------------------
class EntityRules:
    """Entity-specific rules. Subclass, set the three class attributes, implement :meth:`plan`."""

    entity: str = ""
    """The ``sync_state.entity`` / ``sync_result.entity`` value and the operation-id prefix."""
    sql_name: str = ""
    """Source query name: ``include/sql/<sql_name>.sql``."""
    key_column: str = ""
    """Column of the source query that identifies a record (becomes ``record_id``)."""
    max_id_length: int | None = None
    """Longest id the engine lets through (``invalid: <key_column>`` beyond it); None = no engine
    check (the rules' payload builders check ids themselves)."""

    def prepare(self, engine: "SyncEngine", ctx: RunContext) -> None:
        """Load per-run data into ``ctx.data`` before the first pass (default: nothing)."""

    def audited_list(self, hook: Any) -> str | None:
        """The audience whose member changes must be read (``sync.audit``) before this entity is
        planned, because its writes can change members' statuses; None (the default): no audit."""
        return None

    def plan(
        self, engine: "SyncEngine", rows: list[dict[str, Any]], states: dict[str, StateRow], ctx: RunContext
    ) -> Iterator[RecordPlan]:
        """One :class:`RecordPlan` per row of a source chunk."""
        raise NotImplementedError

    supports_unchanged_check: bool = False
    """Set by rules that implement :meth:`is_unchanged`: the engine then reads a
    :class:`StateDigest` per row first and plans (with full :class:`StateRow` objects) only the
    rows the check cannot clear."""

    def is_unchanged(
        self, record_id: str, row: dict[str, Any], digest: StateDigest, ctx: RunContext, same_source: bool = False
    ) -> bool:
        """True when :meth:`plan` would certainly return ``RecordPlan(unchanged=True)`` (no
        operation, no skip) for this row. Called only for records with a ``sync_state`` row and
        never in a full refresh; False is always safe (the row is planned fully). ``same_source``:
        the row's :meth:`source_digest` equals ``digest.source_hash``, so the confirmed columns
        are known to match what this row produces and need not be rebuilt (per-run facts such as
        erasure requests must still be checked)."""
        return False

    def source_digest(self, row: dict[str, Any]) -> str | None:
        """A cheap digest of what this row's payloads are built from (the columns the rules read,
        as extracted, keyed by a fingerprint of the configuration and code that build them), or
        None (the default: no digest, every row is checked the long way).

        The rules store it in :attr:`Outcome.state` (``source_hash``) only where the confirmed
        columns they set are then exactly what :meth:`is_unchanged` compares this row with; the
        engine clears it whenever ``payload_hash``, ``mailchimp_id`` or ``tags_managed`` change
        without it, and stamps it on records a rerun found unchanged the long way."""
        return None

    def columns_read(self) -> Collection[str] | None:
        """The source columns planning reads from a row; the extraction only checks the others
        (a bad value is still a ``bad_value`` skip) instead of converting them. None (the
        default): every column is converted."""
        return None

    def plan_extra(
        self, engine: "SyncEngine", ctx: RunContext, record_ids: Sequence[str] | None = None
    ) -> Iterator[RecordPlan]:
        """Records that have no source row but still need writes (e.g. erasure requests of people
        no longer in the source). ``record_ids`` restricts the plan when re-planning. Default: none."""
        return iter(())

    def interpret(self, op: PlannedOp | None, ref: OpRef, result: "OperationResult", state: StateRow | None) -> Outcome:
        """Read one result (``op`` is None when the record's plan could not be reproduced: the
        source changed since the batch was sent). Default: 2xx confirms the payload hash."""
        if result.ok:
            return Outcome(OUTCOME_OK, op.action if op else ref.step, state={"payload_hash": ref.payload_hash})
        return Outcome(OUTCOME_FAILED, failure_reason(result))


def failure_reason(result: "OperationResult") -> str:
    """A stable, groupable reason for a failed result: the problem title as a slug."""
    if result.status_code == 429:
        return "rate_limited"
    if result.status_code >= 500:
        return "server_error"
    title = result.title or f"http {result.status_code}"
    return re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_") or f"http_{result.status_code}"


# ------------------------------------------------------------------------------------------------
# the engine
# ------------------------------------------------------------------------------------------------
@dataclass
class _PassStats:
    records: int = 0
    unchanged: int = 0
    ops: int = 0


class SyncEngine:
    """Plans, records and summarises one entity's forward sync for one Airflow run.

    ``db`` is the warehouse engine (``get_engine("warehouse_default")``); the tables are created
    if missing. ``source_chunks`` may replace the streamed SQL (tests, or a non-SQL source).
    """

    def __init__(
        self,
        db: sa.Engine,
        tables: "WarehouseTables",
        rules: EntityRules,
        ctx: RunContext,
        settings: SyncSettings | None = None,
    ) -> None:
        self.db = db
        self.tables = tables
        self.rules = rules
        self.ctx = ctx
        self.settings = settings or SyncSettings()
        self.entity = rules.entity
        self._prepared = False
        self.pass_no = 0
        """Planning passes started in this process (rules may decide things once per pass)."""
        self._duplicate_ids: dict[str, str] = {}
        """Ids on several source rows -> the detail of their ``duplicate_id`` skip."""
        self._generator: Iterator[list[PlannedOp]] | None = None
        self._prefetched: Any = _NOT_FETCHED
        self._in_flight: dict[str, PlannedOp] = {}
        """Operations handed over and not answered yet; what is left once planning ended was lost."""
        self._abandoned: dict[str, str] = {}
        """``batch id -> why`` of abandoned batches (for the lost-results message)."""
        self._handed: list[PlannedOp] = []
        """The operations of the last hand-over (what a deferral leaves in flight)."""
        self._last_full_pass: _PassStats | None = None
        self._skips_recorded: set[tuple[str, str]] = set()
        self._settled: set[str] = set()
        """Records with a write settled (ok or failed) in this run: a later pass may see them as
        skips (e.g. erased), which must not add a second row for them."""
        self._open: dict[str, list[int]] = {}
        """Records the current pass planned writes for whose answers are not all in yet:
        ``[operations not answered, any final answer, any other answer]``. A final answer is an
        ``ok`` the rules call final (``Outcome.follow_up`` False). Only records in flight are kept,
        so memory does not grow with the number of records (sets of every record sent and
        answered took about 0.2 KB per record: 200 MB for a million members)."""
        self._follow_up: set[str] = set()
        """Records of the current pass with all answers in that need a follow-up pass."""

    # -- planning ----------------------------------------------------------------------------
    def prepare(self) -> None:
        """Create missing tables and let the rules load their per-run data (idempotent)."""
        if self._prepared:
            return
        self.tables.create_all(self.db)
        self._duplicate_ids = self.find_duplicate_ids()
        self.rules.prepare(self, self.ctx)
        self._prepared = True

    def next_operations(self) -> list[dict[str, Any]] | None:
        """The next batch of Mailchimp operations, or None when nothing is left to send.

        In a dry run the whole plan is recorded on the first call and None is returned.
        """
        self.prepare()
        if self.ctx.dry_run:
            if self._generator is None:
                self._generator = iter(())
                self._record_dry_run()
            return None
        if self._generator is None:
            self._generator = self._batches()
        batch, self._prefetched = self._prefetched, _NOT_FETCHED
        if batch is _NOT_FETCHED:
            batch = next(self._generator, None)
        while batch is _PASS_END:  # every result of the previous pass is applied by now
            batch = next(self._generator, None)
        if batch is None:
            return None
        return self._hand_over(batch)

    def next_operations_early(self) -> list[dict[str, Any]] | None:
        """The next batch of the current pass while earlier ones are still in flight, or None.

        Plans within a pass never depend on each other's results (that is what a pass is), so
        the batch can go out before the previous one is applied. None at a pass boundary (the
        next pass needs every result of this one), at the end, and in a dry run.
        """
        self.prefetch()
        batch = self._prefetched
        if batch is _NOT_FETCHED or batch is _PASS_END or batch is None:
            return None
        self._prefetched = _NOT_FETCHED
        return self._hand_over(batch)

    def _hand_over(self, batch: list[PlannedOp]) -> list[dict[str, Any]]:
        self._handed = batch
        for op in batch:
            self._in_flight[str(op.ref(self.entity))] = op
        return [op.to_operation(self.entity) for op in batch]

    def prefetch(self) -> None:
        """Plan the next batch now (call it right after submitting one): planning then overlaps
        Mailchimp's processing of the batch in flight. Never crosses a pass boundary."""
        if self.ctx.dry_run or self._generator is None or self._prefetched is not _NOT_FETCHED:
            return
        self._prefetched = next(self._generator, None)

    def _batches(self) -> Iterator[Any]:
        limit = self.settings.max_operations_per_batch
        # pass 1 plans every record (retry_failed: the failed and quarantined ones); later passes only those just sent
        only: set[str] | None = self.retry_failed_ids() if self.ctx.retry_failed else None
        for pass_no in range(1, MAX_PASSES + 1):
            stats = _PassStats()
            self._start_pass()
            failed = self.failed_in_run() | self.lost_too_often()
            self._settled = self.answered_in_run(only)
            if self.ctx.full_refresh:  # resend everything once, not once per pass
                failed |= self.done_in_run()
            buffer: list[PlannedOp] = []
            for plan in self._iter_plans(stats, failed, record_skips=True, only=only):
                if not plan.ops:
                    continue
                self._note_sent(plan.record_id, len(plan.ops))
                if buffer and len(buffer) + len(plan.ops) > limit:
                    yield buffer
                    buffer = []
                buffer.extend(plan.ops)
                stats.ops += len(plan.ops)
            if buffer:
                yield buffer
            log.info(
                "%s pass %d: %d records, %d unchanged, %d operations planned",
                self.entity, pass_no, stats.records, stats.unchanged, stats.ops,
            )
            if only is None:
                self._last_full_pass = stats
            if stats.ops == 0:
                return
            yield _PASS_END  # resumed once every result of this pass is applied
            only = self._follow_up_ids()
            if not only:
                log.info("%s: every write of pass %d was final; no follow-up pass", self.entity, pass_no)
                return
        log.warning(
            "%s: stopped after %d planning passes with operations still planned; writes whose results "
            "were lost (e.g. an expired batch) are recorded as pending when the task finishes", self.entity, MAX_PASSES,
        )

    # -- which records the next pass re-plans -------------------------------------------------
    def _start_pass(self) -> None:
        self.pass_no += 1
        self._open, self._follow_up = {}, set()

    def _note_sent(self, record_id: str, operations: int = 1) -> None:
        entry = self._open.get(record_id)
        if entry is None:
            self._open[record_id] = [operations, 0, 0]
        else:
            entry[0] += operations

    def _note_answer(self, record_id: str, *, final: bool) -> None:
        entry = self._open.get(record_id)
        if entry is None:  # not written in this pass
            return
        entry[0] -= 1
        entry[1 if final else 2] = 1
        if entry[0] <= 0:
            del self._open[record_id]
            if _needs_follow_up(entry):
                self._follow_up.add(record_id)

    def _follow_up_ids(self) -> set[str]:
        """The records the next pass plans again. Only a record written in this pass can need a
        follow-up (e.g. its tags once the member exists): everything else was planned already and
        found nothing to do. Of those, records with a final answer and no other need nothing
        either; a record left without any answer (a lost batch) is planned again."""
        return self._follow_up | {record_id for record_id, entry in self._open.items() if _needs_follow_up(entry)}

    def _iter_plans(
        self, stats: _PassStats, failed: set[tuple[str, str]], *, record_skips: bool, only: set[str] | None = None
    ) -> Iterator[RecordPlan]:
        """Plans for every source record and extra record (or those in ``only``), filtered by this
        run's failures and quarantine; skips are recorded (once per process) as the chunks go by."""
        key = self.rules.key_column
        rules, ctx = self.rules, self.ctx
        check = rules.supports_unchanged_check and not ctx.full_refresh
        source_digest = rules.source_digest if type(rules).source_digest is not EntityRules.source_digest else None
        stamp = source_digest is not None and not ctx.dry_run and not ctx.replanning
        for rows in self._pass_chunks(only):
            first_row = stats.records + 1
            stats.records += len(rows)
            rows, refused = self.screen_rows(rows, first_row)
            if refused and only is None:
                if record_skips:
                    self._record_skips(refused)
                yield from refused
            if only is not None:
                rows = [r for r in rows if str(r[key]) in only]
                if not rows:
                    continue
            ids = [str(r[key]) for r in rows]
            if check:
                # The no-change path: a compact digest per record, and a full plan only for rows
                # the rules cannot clear from it (changed, new, or taking a special path).
                digests = self.load_digests(ids)
                kept_rows: list[dict[str, Any]] = []
                known: list[str] = []
                stamps: list[dict[str, Any]] = []
                for record_id, row in zip(ids, rows):
                    digest = digests.get(record_id)
                    if digest is None:
                        kept_rows.append(row)
                        continue
                    source = source_digest(row) if source_digest is not None else None
                    same = source is not None and source == digest.source_hash
                    if rules.is_unchanged(record_id, row, digest, ctx, same):
                        stats.unchanged += 1
                        if not same and stamp and source is not None:
                            stamps.append({"r": record_id, "p": digest.payload_hash, "s": source})
                    else:
                        kept_rows.append(row)
                        known.append(record_id)
                if stamps:
                    self.stamp_source_hashes(stamps)
                if not kept_rows:
                    continue
                rows = kept_rows
                states = self.load_states(known) if known else {}
            else:
                states = self.load_states(ids)
            plans = [self._filter(p, states.get(p.record_id), failed) for p in rules.plan(self, rows, states, ctx)]
            if record_skips:
                self._record_skips(plans)
            for plan in plans:
                if plan.unchanged and not plan.ops and not plan.skips:
                    stats.unchanged += 1
                yield plan
        extra = list(self.rules.plan_extra(self, self.ctx))
        if only is not None:
            extra = [p for p in extra if p.record_id in only]
        if extra:
            states = self.load_states([p.record_id for p in extra])
            extra = [self._filter(p, states.get(p.record_id), failed) for p in extra]
            stats.records += len(extra)
            if record_skips:
                self._record_skips(extra)
            yield from extra

    # -- rows the rules never see: unreadable values and unusable ids ------------------------------
    def screen_rows(self, rows: list[dict[str, Any]], first_row: int = 1) -> tuple[list[dict[str, Any]], list[RecordPlan]]:
        """Split a chunk into rows the rules may plan and skip plans for the others.

        A row is skipped, never sent and never fatal, when its id is missing (``missing_id``: it
        gets a synthetic record id, ``<missing KEY: hash>``, made from its values, so it still has
        a result row), too long or unusable in a URL (``invalid: <key_column>``), shared with
        another row (``duplicate_id``, the other rows named: sending either could overwrite the
        other), or when one of its values could not be read (``bad_value``; see
        ``warehouse.extract.REJECTED``). ``first_row`` is the chunk's position in the query, for
        the detail of a row without an id.
        """
        from mailchimp_provider.warehouse.extract import REJECTED, converted, types_for

        key, limit = self.rules.key_column, self.rules.max_id_length
        duplicates = self._duplicate_ids
        kept: list[dict[str, Any]] = []
        refused: list[RecordPlan] = []
        for n, row in enumerate(rows, first_row):
            raw = row.get(key)
            record_id = id_text(raw)
            if record_id is None:
                if self.rules.columns_read() is not None:  # named from its values as a full read has them
                    row = converted(row, types_for(self.rules.sql_name))
                synthetic = f"<missing {key}: {_row_hash(row)}>"
                refused.append(RecordPlan(synthetic, skips=[Skip(
                    synthetic, "missing_id",
                    f"row {n} of query {self.rules.sql_name!r} has no {key} (NULL or empty): {_row_clues(row, key)}; "
                    "recorded under a synthetic id made from a hash of its values")]))
                continue
            problem = None
            if limit is not None and len(record_id) > limit:
                problem = f"{key} is {len(record_id)} characters long; at most {limit} are allowed"
            elif record_id.strip(".") == "":
                problem = f"{key} {record_id!r} cannot be used in a Mailchimp URL"
            if problem is not None:
                rid = record_id[:MAX_RESULT_ID]
                refused.append(RecordPlan(rid, skips=[Skip(rid, f"invalid: {key}", problem)]))
                continue
            if duplicates and record_id in duplicates:
                rid = record_id[:MAX_RESULT_ID]
                refused.append(RecordPlan(rid, skips=[Skip(rid, "duplicate_id", duplicates[record_id])]))
                continue
            bad = row.get(REJECTED)
            if bad is not None:
                rid = record_id[:MAX_RESULT_ID]
                refused.append(RecordPlan(rid, skips=[Skip(rid, "bad_value", bad.detail)]))
                continue
            kept.append(row)
        return kept, refused

    def find_duplicate_ids(self) -> dict[str, str]:
        """Ids that several source rows share, each with a detail naming how its rows differ.

        Found in SQL (a ``GROUP BY`` of the entity's query), so only duplicated rows come back
        however big the source; a whole-run scan in Python would hold every id in memory."""
        from mailchimp_provider.warehouse.extract import tolerant_text

        if not self.rules.sql_name or not self.rules.key_column:
            return {}
        key, name = self.rules.key_column, self.rules.sql_name
        sql = source_sql(name, self.db)
        stmt = sa.text(
            f"SELECT * FROM ({sql}) src WHERE src.{key} IN (SELECT d.{key} FROM ({sql}) d "
            f"WHERE d.{key} IS NOT NULL GROUP BY d.{key} HAVING count(*) > 1)"
        )
        groups: dict[str, list[dict[str, Any]]] = {}
        with self.db.connect() as conn, tolerant_text(conn):
            for row in conn.execute(stmt).mappings():
                record_id = id_text(row[key])
                if record_id is not None:
                    groups.setdefault(record_id, []).append(dict(row))
        out: dict[str, str] = {}
        for record_id, group in groups.items():
            differing = [c for c in group[0] if c != key and len({repr(r.get(c)) for r in group}) > 1]
            shown = "; ".join(
                f"{c}: " + " / ".join(_shorten(r.get(c)) for r in group) for c in differing[:3]
            ) or "the rows are identical"
            out[record_id] = (
                f"{len(group)} rows of query {name!r} have {key} {_shorten(record_id)} ({shown}); "
                "none of them is sent until the id is unique"
            )
        if out:
            log.warning("%s: %d id(s) appear on several rows of %r and are skipped (duplicate_id)",
                        self.entity, len(out), name)
        return out

    def _filter(self, plan: RecordPlan, state: StateRow | None, failed: set[tuple[str, str]]) -> RecordPlan:
        """Drop writes already settled in this run (failed; or, in a full refresh, done); turn
        quarantined writes into skips."""
        kept: list[PlannedOp] = []
        for op in plan.ops:
            if (op.record_id, op.operation) in failed:
                continue
            lifted = self.ctx.full_refresh or self.ctx.retry_failed
            if state is not None and state.is_quarantined_for(op.step, op.payload_hash) and not lifted:
                if state.last_outcome == "refused":  # a definitive answer: keep its reason
                    reason = str(state.extra.get("reason") or "refused")
                    detail = f"refused by Mailchimp, not retried until the row changes: {state.last_error or ''}"
                else:
                    reason = "quarantined"
                    detail = f"after {state.attempts} failed attempt(s): {state.last_error or ''}"
                plan.skips.append(Skip(op.record_id, reason, detail.strip(), op.operation))
                continue
            kept.append(op)
        plan.ops = kept
        return plan

    def source_chunks(self) -> Iterator[list[dict[str, Any]]]:
        """The entity's source rows in chunks of ``settings.chunk_size`` (streamed)."""
        from mailchimp_provider.warehouse.extract import stream_sql

        yield from stream_sql(self.db, self.rules.sql_name, chunk_size=self.settings.chunk_size,
                              convert_only=self.rules.columns_read())

    def _pass_chunks(self, only: set[str] | None) -> Iterator[list[dict[str, Any]]]:
        """The source rows a pass reads: :meth:`source_chunks`, or, for a pass restricted to at most
        :data:`FETCH_PASS_LIMIT` records, just their rows (:meth:`fetch_source`). The keyed read is
        used only when it finds every one of them, so the pass plans exactly the rows a scan would
        keep; a record it misses (a plan_extra record, a key the query types differently) falls
        back to the scan. Engines with their own ``source_chunks`` always get theirs."""
        if (only and len(only) <= FETCH_PASS_LIMIT and type(self).source_chunks is SyncEngine.source_chunks
                and self.rules.sql_name and self.rules.key_column):
            key = self.rules.key_column
            rows = self.fetch_source(sorted(only))
            if {str(r[key]) for r in rows} >= only:
                size = self.settings.chunk_size
                for start in range(0, len(rows), size):
                    yield rows[start : start + size]
                return
        yield from self.source_chunks()

    def fetch_source(self, record_ids: Sequence[str], *, convert: bool = True) -> list[dict[str, Any]]:
        """Source rows for some records, by wrapping the entity's SQL (used to re-plan after a
        restart), read like the full scan reads them (``convert=False``: values as the driver
        returns them, only checked); unreadable rows are marked, as in ``extract.stream_sql``."""
        from mailchimp_provider.warehouse.extract import row_reader, tolerant_text, types_for

        if not record_ids:
            return []
        sql = source_sql(self.rules.sql_name, self.db)
        key = self.rules.key_column
        out: list[dict[str, Any]] = []
        stmt = sa.text(f"SELECT * FROM ({sql}) src WHERE src.{key} IN :ids").bindparams(
            sa.bindparam("ids", expanding=True)
        )
        types = types_for(self.rules.sql_name)
        with self.db.connect() as conn, tolerant_text(conn):
            for part in _chunks(list(record_ids), STATE_LOOKUP_CHUNK):
                result = conn.execute(stmt, {"ids": part})
                read = row_reader(list(result.keys()), types, convert=convert,
                                  bytes_are_bad=conn.dialect.name == "sqlite")
                out.extend(read(r) for r in result)
        return out

    def load_states(self, record_ids: Iterable[str], entity: str | None = None) -> dict[str, StateRow]:
        """``sync_state`` rows of this entity (or of ``entity``, e.g. a dependency) for ``record_ids``."""
        ids = list(dict.fromkeys(record_ids))
        table = self.tables.sync_state
        out: dict[str, StateRow] = {}
        if not ids:
            return out
        stmt = sa.select(table).where(table.c.entity == (entity or self.entity),
                                      table.c.record_id.in_(sa.bindparam("ids", expanding=True)))
        with self.db.connect() as conn:
            for part in _chunks(ids, STATE_LOOKUP_CHUNK):
                for row in conn.execute(stmt, {"ids": part}):
                    state = StateRow.from_row(row)
                    out[state.record_id] = state
        return out

    def load_digests(self, record_ids: Sequence[str]) -> dict[str, StateDigest]:
        """A :class:`StateDigest` per ``sync_state`` row of this entity among ``record_ids``."""
        table = self.tables.sync_state
        out: dict[str, StateDigest] = {}
        if not record_ids:
            return out
        stmt = sa.select(
            table.c.record_id, table.c.payload_hash, table.c.mailchimp_id, table.c.status,
            sa.type_coerce(table.c.tags_managed, sa.Text), table.c.source_hash,
        ).where(table.c.entity == self.entity, table.c.record_id.in_(sa.bindparam("ids", expanding=True)))
        tag_set = _tag_set
        with self.db.connect() as conn:
            for part in _chunks(list(record_ids), STATE_LOOKUP_CHUNK):
                rows = conn.execute(stmt, {"ids": part}).fetchall()
                out.update({r[0]: StateDigest(r[1], r[2], r[3], tag_set(r[4]), r[5]) for r in rows})
        return out

    def stamp_source_hashes(self, stamps: list[dict[str, Any]]) -> None:
        """Store the source digest of records a rerun found unchanged the long way (``r`` record
        id, ``p`` the payload hash that was compared, ``s`` the digest), so the next rerun takes
        the short way: after an upgrade, a configuration change that left the payloads as they
        were, or a write confirmed without a digest. Only where the payload hash is still the one
        compared; ``updated_at`` is left alone (nothing Mailchimp holds changed)."""
        t = self.tables.sync_state
        stmt = (
            sa.update(t)
            .where(t.c.entity == self.entity, t.c.record_id == sa.bindparam("r"), t.c.payload_hash == sa.bindparam("p"))
            .values(source_hash=sa.bindparam("s"), updated_at=t.c.updated_at)
        )
        with self.db.begin() as conn:
            conn.execute(stmt, stamps)

    def has_unconfirmed(self) -> bool:
        """Whether any record of this entity was sent and its answer never arrived (``last_outcome``
        ``pending``): what Mailchimp made of those writes is unknown until read back."""
        t = self.tables.sync_state
        stmt = sa.select(t.c.record_id).where(t.c.entity == self.entity, t.c.last_outcome == OUTCOME_PENDING).limit(1)
        with self.db.connect() as conn:
            return conn.execute(stmt).first() is not None

    def retry_failed_ids(self) -> set[str]:
        """Records a ``retry_failed`` run plans: last outcome ``failed``, or quarantined."""
        t = self.tables.sync_state
        stmt = sa.select(t.c.record_id).where(
            t.c.entity == self.entity, sa.or_(t.c.last_outcome == OUTCOME_FAILED, t.c.quarantined.is_(True))
        )
        with self.db.connect() as conn:
            ids = {r.record_id for r in conn.execute(stmt)}
        log.info("%s: retry_failed run: %d failed or quarantined record(s) to send again", self.entity, len(ids))
        return ids

    def failed_in_run(self) -> set[tuple[str, str]]:
        """``(record_id, operation)`` of this run's failed writes: not sent again in this run."""
        return self._in_run(OUTCOME_FAILED)

    def done_in_run(self) -> set[tuple[str, str]]:
        """``(record_id, operation)`` of this run's confirmed writes (a full refresh sends each once)."""
        return self._in_run(OUTCOME_OK)

    def answered_in_run(self, record_ids: set[str] | None = None) -> set[str]:
        """Records Mailchimp answered for in this run (any result row with an HTTP status), of
        ``record_ids`` when given (a follow-up pass plans only those: the first run of a million
        members need not hold a million ids)."""
        t = self.tables.sync_result
        stmt = sa.select(t.c.record_id).where(
            t.c.run_id == self.ctx.run_id, t.c.entity == self.entity, t.c.http_status.is_not(None)
        ).distinct()
        with self.db.connect() as conn:
            if record_ids is None:
                return {r.record_id for r in conn.execute(stmt)}
            stmt = stmt.where(t.c.record_id.in_(sa.bindparam("ids", expanding=True)))
            return {r.record_id for part in _chunks(sorted(record_ids), STATE_LOOKUP_CHUNK)
                    for r in conn.execute(stmt, {"ids": part})}

    def _in_run(self, outcome: str) -> set[tuple[str, str]]:
        t = self.tables.sync_result
        stmt = sa.select(t.c.record_id, t.c.operation).where(
            t.c.run_id == self.ctx.run_id, t.c.entity == self.entity, t.c.outcome == outcome
        )
        with self.db.connect() as conn:
            return {(r.record_id, r.operation) for r in conn.execute(stmt)}

    # -- recording skips and the dry-run plan --------------------------------------------------
    def _record_skips(self, plans: list[RecordPlan]) -> None:
        rows = []
        for plan in plans:
            for skip in plan.skips:
                key = (skip.record_id, skip.operation)
                if key in self._skips_recorded or skip.record_id in self._settled:
                    continue
                self._skips_recorded.add(key)
                rows.append(self._result_row(skip.record_id, skip.operation, OUTCOME_SKIPPED, skip.reason,
                                             status_decision=skip.status_decision, error_detail=skip.detail))
        if rows:
            self._write(results=rows)

    def _record_dry_run(self) -> None:
        stats = _PassStats()
        buffer: list[dict[str, Any]] = []
        only = self.retry_failed_ids() if self.ctx.retry_failed else None
        for plan in self._iter_plans(stats, set(), record_skips=True, only=only):
            for op in plan.ops:
                stats.ops += 1
                buffer.append(
                    self._result_row(op.record_id, op.operation, OUTCOME_PLANNED, op.action,
                                     status_decision=op.status_decision, error_detail=op.detail,
                                     operation_id=str(op.ref(self.entity)))
                )
            if len(buffer) >= self.settings.max_operations_per_batch:
                self._write(results=buffer)
                buffer = []
        if buffer:
            self._write(results=buffer)
        self._last_full_pass = stats
        log.info("%s dry run: %d records, %d unchanged, %d operations planned (nothing sent)",
                 self.entity, stats.records, stats.unchanged, stats.ops)

    # -- applying results ------------------------------------------------------------------------
    def apply_results(self, batch_id: str | None, results: Iterable["OperationResult"]) -> Counter[str]:
        """Record one batch's results: ``sync_result`` rows and ``sync_state`` updates, committed in
        slices as the (streamed) results go by. Safe to call twice for the same batch."""
        self.prepare()  # a retried task applies re-attached batches before planning anything
        counts: Counter[str] = Counter()
        pending: list[tuple[OpRef, "OperationResult"]] = []
        for result in results:
            ref = OpRef.parse(result.operation_id)
            if ref is None or ref.entity != self.entity:
                log.warning("batch %s: result for operation id %r is not a %s operation of this engine; ignored",
                            batch_id, result.operation_id, self.entity)
                counts["unmapped"] += 1
                continue
            pending.append((ref, result))
            if len(pending) >= self.settings.max_operations_per_batch:
                counts.update(self._apply_slice(batch_id, pending))
                pending = []
        if pending:
            counts.update(self._apply_slice(batch_id, pending))
        return counts

    def _apply_slice(self, batch_id: str | None, items: list[tuple[OpRef, "OperationResult"]]) -> Counter[str]:
        counts: Counter[str] = Counter()
        recorded = self.recorded_in_batch(batch_id, {ref.record_id for ref, _ in items})
        if recorded:
            # A retry re-applying a batch an earlier try had partly applied (killed mid-apply):
            # those results are in already; applying them again would read the state they wrote
            # and relabel this run's creates as updates.
            for ref, _ in items:
                if str(ref) in recorded:
                    self._in_flight.pop(str(ref), None)
                    counts["already_recorded"] += 1
            items = [(ref, result) for ref, result in items if str(ref) not in recorded]
            if not items:
                return counts
        ids = list(dict.fromkeys(ref.record_id for ref, _ in items))
        states = self.load_states(ids)
        missing = [ref for ref, _ in items if str(ref) not in self._in_flight]
        replanned = self._replan({ref.record_id for ref in missing}, states) if missing else {}
        now = datetime.now(timezone.utc)
        result_rows: list[dict[str, Any]] = []
        for ref, result in items:
            op = self._in_flight.pop(str(ref), None) or replanned.get(str(ref))
            state = states.get(ref.record_id)
            outcome = self.rules.interpret(op, ref, result, state)
            new_state = self._next_state(ref, state, outcome, result, now)
            states[ref.record_id] = new_state
            counts[outcome.outcome] += 1
            self._note_answer(ref.record_id, final=outcome.outcome == OUTCOME_OK and not outcome.follow_up)
            result_rows.append(
                self._result_row(
                    ref.record_id,
                    op.operation if op else self._operation_name(ref),
                    outcome.outcome,
                    outcome.reason,
                    status_decision=outcome.status_decision or (op.status_decision if op else None),
                    http_status=result.status_code,
                    error_title=result.title,
                    error_detail=outcome.detail or result.detail,
                    field_errors=result.field_errors or None,
                    retriable=(result.status_code == 429 or result.status_code >= 500) if not result.ok else None,
                    attempt=new_state.attempts if outcome.outcome == OUTCOME_FAILED else None,
                    batch_id=batch_id,
                    operation_id=str(ref),
                    recorded_at=now,
                )
            )
        touched = {ref.record_id for ref, _ in items}
        self._write(states=[states[i].to_row() for i in touched], results=result_rows)
        return counts

    def recorded_in_batch(self, batch_id: str | None, record_ids: set[str]) -> set[str]:
        """Operation ids of ``batch_id`` whose results this run already recorded (for ``record_ids``)."""
        if batch_id is None or not record_ids:
            return set()
        t = self.tables.sync_result
        stmt = sa.select(t.c.operation_id).where(
            t.c.run_id == self.ctx.run_id, t.c.entity == self.entity, t.c.batch_id == batch_id,
            t.c.outcome != OUTCOME_PENDING,  # a deferred try's note of what it sent, not a result
            t.c.record_id.in_(sa.bindparam("ids", expanding=True)),
        )
        found: set[str] = set()
        with self.db.connect() as conn:
            for part in _chunks(sorted(record_ids), STATE_LOOKUP_CHUNK):
                found.update(r[0] for r in conn.execute(stmt, {"ids": part}) if r[0])
        return found

    def _operation_name(self, ref: OpRef) -> str:
        """The result row's operation when the plan could not be reproduced: the rules'
        ``operation_name(ref)`` if they have one (one row per child write), else by step."""
        name_of = getattr(self.rules, "operation_name", None)
        if name_of is not None:
            return str(name_of(ref))
        names = getattr(self.rules, "operation_names", {}) or {}
        return names.get(ref.step, ref.step)

    def _replan(self, record_ids: set[str], states: dict[str, StateRow]) -> dict[str, PlannedOp]:
        """Plan some records again to recover their operations' context after a restart."""
        replanning = RunContext(**{**self.ctx.__dict__, "replanning": True, "data": self.ctx.data})
        ops: dict[str, PlannedOp] = {}
        rows, _ = self.screen_rows(self.fetch_source(sorted(record_ids)))
        plans = list(self.rules.plan(self, rows, states, replanning)) if rows else []
        found = {str(r[self.rules.key_column]) for r in rows}
        rest = [i for i in record_ids if i not in found]
        if rest:
            plans.extend(self.rules.plan_extra(self, replanning, rest))
        for plan in plans:
            for op in plan.ops:
                ops[str(op.ref(self.entity))] = op
        return ops

    def _next_state(
        self, ref: OpRef, state: StateRow | None, outcome: Outcome, result: "OperationResult", now: datetime
    ) -> StateRow:
        new = StateRow(**{**(state.__dict__ if state else {}), "entity": self.entity, "record_id": ref.record_id})
        new.extra = dict(new.extra)
        new.tags_managed = list(new.tags_managed)
        if outcome.outcome == OUTCOME_OK:
            new.extra.pop("pending", None)
            new.extra.pop("reason", None)
            new.last_outcome = OUTCOME_OK
            new.attempts = 0
            new.quarantined = False
            new.last_error = None
            new.synced_at = now
            for key, value in outcome.state.items():  # rules may set a tombstone (erased) here
                setattr(new, key, value)
            _drop_stale_source_hash(new, outcome.state)
            new.extra.update(outcome.extra)
            return new
        pending = f"{ref.step}:{ref.payload_hash}"
        error = f"{result.title}: {result.detail}" if result.title else (outcome.detail or outcome.reason)
        new.attempts = (new.attempts if new.pending == pending else 0) + 1
        new.extra.update(outcome.extra)
        new.extra["pending"] = pending
        new.extra["reason"] = outcome.reason
        new.last_error = error
        for key, value in outcome.state.items():  # rules may correct facts even on a refusal
            setattr(new, key, value)
        _drop_stale_source_hash(new, outcome.state)
        if outcome.terminal:
            new.quarantined = True
            new.last_outcome = "refused"
        else:
            new.quarantined = new.attempts >= self.settings.max_attempts
            new.last_outcome = "quarantined" if new.quarantined else OUTCOME_FAILED
        return new

    # -- writing -----------------------------------------------------------------------------------
    def _result_row(self, record_id: str, operation: str, outcome: str, reason: str | None, **columns: Any) -> dict[str, Any]:
        row = {
            "run_id": self.ctx.run_id,
            "entity": self.entity,
            "record_id": record_id,
            "operation": operation,
            "outcome": outcome,
            "reason": reason,
            "status_decision": None,
            "http_status": None,
            "error_title": None,
            "error_detail": None,
            "field_errors": None,
            "retriable": None,
            "attempt": None,
            "batch_id": None,
            "operation_id": None,
            "dag_id": self.ctx.dag_id,
            "task_id": self.ctx.task_id,
            "map_index": self.ctx.map_index,
            "recorded_at": datetime.now(timezone.utc),
        }
        row.update(columns)
        return row

    def _write(self, *, states: list[dict[str, Any]] | None = None, results: list[dict[str, Any]] | None = None) -> None:
        from mailchimp_provider.warehouse.upsert import upsert

        with self.db.begin() as conn:
            if states:
                upsert(conn, self.tables.sync_state, states, key=["entity", "record_id"])
            if results:
                upsert(conn, self.tables.sync_result, results, key=["run_id", "entity", "record_id", "operation"])

    # -- outcome -----------------------------------------------------------------------------------
    def summary(self) -> "SyncSummary":
        """Counts of this run's result rows per outcome/operation/reason, plus unchanged records."""
        return run_summary(self.db, self.tables, self.ctx.run_id, self.entity,
                           total_records=self._last_full_pass.records if self._last_full_pass else None)

    def finish(self, logger: logging.Logger | logging.LoggerAdapter | None = None) -> "SyncSummary":
        """Log the summary table (to ``logger``, e.g. the task's), then fail on lost results
        (:class:`SyncUnconfirmed`) or past the failure threshold."""
        pending = self.record_unconfirmed()
        summary = self.summary()
        (logger or log).info("\n%s", format_summary(summary, dry_run=self.ctx.dry_run))
        if summary.count(OUTCOME_OK) + summary.count(OUTCOME_FAILED) >= ANALYZE_AFTER_WRITES:
            refresh_statistics(self.db, [self.tables.sync_state, self.tables.sync_result])
        if pending:
            raise SyncUnconfirmed(self.unconfirmed_message(pending))
        self.check_failure_threshold(summary)
        return summary

    # -- lost results --------------------------------------------------------------------------
    # Synchronously, one engine sees the whole try: the writes still in ``_in_flight`` when
    # planning ends are the lost ones, and MAX_PASSES bounds how often they are sent. A deferrable
    # task ends its process at every wait, so before it defers the writes in flight are written
    # down as ``pending`` rows (reason awaiting_result, ``attempt`` = sends in this try); an
    # abandoned batch turns its rows into result_lost, the next engine of the same try leaves a
    # write alone once it was sent MAX_PASSES times, and ``finish`` counts the rows as unconfirmed.
    def hold_in_flight(self, batch_ids: Sequence[str]) -> None:
        """The task defers while ``batch_ids`` (the last hand-over, in order, chunked by
        ``max_operations_per_batch``) run: record their writes as ``pending`` / awaiting_result, so
        the engine of the resumed execution knows what was sent (see the comment above)."""
        handed, self._handed = self._handed, []
        if self.ctx.dry_run or not handed or not batch_ids:
            return
        size = self.settings.max_operations_per_batch
        sends = self._pending_sends({op.record_id for op in handed})
        rows = []
        for index, op in enumerate(handed):
            batch_id = batch_ids[min(index // size, len(batch_ids) - 1)]
            rows.append(self._result_row(
                op.record_id, op.operation, OUTCOME_PENDING, REASON_AWAITING_RESULT, status_decision=op.status_decision,
                error_detail=f"sent in batch {batch_id}; waiting for its results", batch_id=batch_id,
                operation_id=str(op.ref(self.entity)), attempt=sends.get((op.record_id, op.operation), 0) + 1,
            ))
        self._write(results=rows)

    def start_try(self) -> None:
        """A new try of the task counts its sends afresh: ``pending`` rows of earlier tries keep
        their outcome but no longer hold their writes back (a retry resends what is unconfirmed)."""
        t = self.tables.sync_result
        with self.db.begin() as conn:
            conn.execute(sa.update(t).where(
                t.c.run_id == self.ctx.run_id, t.c.entity == self.entity, t.c.outcome == OUTCOME_PENDING,
                t.c.attempt > 0,
            ).values(attempt=0))

    def note_abandoned(self, batch_id: str, error: str) -> None:
        """A batch was abandoned: its writes stay unanswered (see :meth:`finish`); those a deferred
        try recorded (:meth:`hold_in_flight`) become ``result_lost``."""
        self.remember_abandoned(batch_id, error)
        t = self.tables.sync_result
        with self.db.begin() as conn:
            conn.execute(sa.update(t).where(
                t.c.run_id == self.ctx.run_id, t.c.entity == self.entity, t.c.batch_id == batch_id,
                t.c.outcome == OUTCOME_PENDING,
            ).values(reason=REASON_RESULT_LOST, error_detail=f"batch {batch_id} abandoned before its results were read"))

    def remember_abandoned(self, batch_id: str, error: str | None) -> None:
        """Name an abandoned batch in the lost-results message (e.g. from the batch ledger)."""
        self._abandoned.setdefault(batch_id, (error or "").split(" What to do:")[0].strip() or "abandoned")

    def lost_too_often(self) -> set[tuple[str, str]]:
        """``(record_id, operation)`` sent MAX_PASSES times in this try without an answer (recorded
        by a deferred try): not planned again in this try."""
        return {key for key, sends in self._pending_sends().items() if sends >= MAX_PASSES}

    def _pending_sends(self, record_ids: set[str] | None = None) -> dict[tuple[str, str], int]:
        """``(record_id, operation) -> sends in this try`` of this run's ``pending`` rows."""
        t = self.tables.sync_result
        stmt = sa.select(t.c.record_id, t.c.operation, t.c.attempt).where(
            t.c.run_id == self.ctx.run_id, t.c.entity == self.entity, t.c.outcome == OUTCOME_PENDING, t.c.attempt > 0,
        )
        with self.db.connect() as conn:
            if record_ids is None:
                return {(r.record_id, r.operation): r.attempt for r in conn.execute(stmt)}
            found: dict[tuple[str, str], int] = {}
            stmt = stmt.where(t.c.record_id.in_(sa.bindparam("ids", expanding=True)))
            for part in _chunks(sorted(record_ids), STATE_LOOKUP_CHUNK):
                found.update(((r.record_id, r.operation), r.attempt) for r in conn.execute(stmt, {"ids": part}))
            return found

    def record_unconfirmed(self) -> int:
        """Record the writes still unanswered when planning ended as ``pending`` / ``result_lost``
        (result row and ``sync_state.last_outcome``; confirmed columns untouched, so the next run
        plans them again): this process's writes in flight, and those a deferred try recorded.
        Returns how many records that is."""
        if self.ctx.dry_run:
            return 0
        lost = [(op.record_id, op.operation, op.status_decision, str(op.ref(self.entity)), None, f"{op.operation} {op.action}")
                for op in self._in_flight.values()]
        self._in_flight = {}
        t = self.tables.sync_result
        with self.db.connect() as conn:
            held = conn.execute(sa.select(t).where(
                t.c.run_id == self.ctx.run_id, t.c.entity == self.entity, t.c.outcome == OUTCOME_PENDING, t.c.attempt > 0,
            )).mappings().all()
        seen = {(record_id, operation) for record_id, operation, *_ in lost}
        lost += [(r["record_id"], r["operation"], r["status_decision"], r["operation_id"], r["attempt"], r["operation"])
                 for r in held if (r["record_id"], r["operation"]) not in seen]
        if not lost:
            return 0
        states = self.load_states({record_id for record_id, *_ in lost})
        detail = (f"sent {MAX_PASSES} time(s) at most in this run; Mailchimp's results never arrived "
                  "(batch results expired or the batch was abandoned); the write may or may not have been applied")
        result_rows, state_rows = [], {}
        for record_id, operation, decision, operation_id, sends, what in lost:
            result_rows.append(self._result_row(
                record_id, operation, OUTCOME_PENDING, REASON_RESULT_LOST, status_decision=decision,
                error_detail=detail, operation_id=operation_id, attempt=sends,
            ))
            state = states.get(record_id) or StateRow(self.entity, record_id)
            state.extra = {**state.extra, "reason": REASON_RESULT_LOST}
            state.last_outcome = OUTCOME_PENDING
            state.last_error = f"{what}: result lost"
            state_rows[record_id] = state.to_row()
        self._write(states=list(state_rows.values()), results=result_rows)
        return len(state_rows)

    def unconfirmed_message(self, pending: int) -> str:
        """What a person needs when results were lost: how many, why, and what to do."""
        run_id = self.ctx.run_id.replace("'", "''")
        ids = list(self._abandoned)
        batches = (f"{len(ids)} batch(es) abandoned ({', '.join(ids[:5])}{', ...' if len(ids) > 5 else ''}); "
                   f"the first: {self._abandoned[ids[0]]}") if ids else "their batches were abandoned in an earlier try"
        return (
            f"{pending} {self.entity} record(s) were sent to Mailchimp but their results never arrived, after up to "
            f"{MAX_PASSES} planning passes in run {self.ctx.run_id}: {batches}. "
            "They are recorded as outcome 'pending' (reason result_lost), not as unchanged: their writes may or may "
            "not have been applied. What to do: retry or clear this task; it sends only what is not confirmed, and "
            "resending is safe (idempotent writes). If it happens again, batch results expire before this task reads "
            "them: check that the worker can download the results URL promptly, and lower max_operations_per_batch. "
            f"List them with: SELECT record_id, operation, error_detail FROM {self.tables.table_name('sync_result')} "
            f"WHERE run_id = '{run_id}' AND entity = '{self.entity}' AND outcome = 'pending' ORDER BY record_id"
        )

    def check_failure_threshold(self, summary: "SyncSummary") -> None:
        """Raise :class:`SyncThresholdExceeded` when failures exceed ``max_failure_share``."""
        failed = summary.count(OUTCOME_FAILED)
        attempted = failed + summary.count(OUTCOME_OK)
        if failed < max(1, self.settings.min_failures_to_fail) or attempted == 0:
            return
        share = failed / attempted
        if share <= self.settings.max_failure_share:
            if failed:
                log.warning("%d of %d %s writes failed (%.1f%%, threshold %.1f%%); listing: %s",
                            failed, attempted, self.entity, share * 100, self.settings.max_failure_share * 100,
                            self.failed_rows_sql())
            return
        titles = top_error_titles(self.db, self.tables, self.ctx.run_id, self.entity)
        raise SyncThresholdExceeded(
            f"{failed} of {attempted} {self.entity} writes failed in run {self.ctx.run_id} "
            f"({share:.1%} > threshold {self.settings.max_failure_share:.1%}). Top errors: "
            + "; ".join(f"{title} x{n}" for title, n in titles)
            + f". List the failed rows with: {self.failed_rows_sql()}"
        )

    def failed_rows_sql(self) -> str:
        """A query a person can paste into a SQL client to see this run's failed rows."""
        run_id = self.ctx.run_id.replace("'", "''")
        return (
            f"SELECT record_id, operation, http_status, error_title, error_detail, field_errors, batch_id "
            f"FROM {self.tables.table_name('sync_result')} WHERE run_id = '{run_id}' "
            f"AND entity = '{self.entity}' AND outcome = 'failed' ORDER BY record_id"
        )


# ------------------------------------------------------------------------------------------------
# summaries (also used by the demo to print per-reason counts for a run)
# ------------------------------------------------------------------------------------------------
@dataclass
class SyncSummary:
    """Per-run counts: ``rows`` are ``(outcome, operation, reason, count)``."""

    run_id: str
    entity: str
    rows: list[tuple[str, str, str, int]]
    total_records: int | None = None
    """Records the last complete planning pass saw (None when no pass ran in this process)."""
    distinct_records: int = 0
    """Records with at least one result row in this run."""
    ok_after_error: list[tuple[str, int, int]] = field(default_factory=list)
    """``(reason, http_status, count)`` of ok rows whose answer was an HTTP error: Mailchimp's batch
    counts them as errored operations, the sync as done (404 on erasing or unsubscribing someone
    who is not in the audience: there was nothing to delete)."""

    def count(self, outcome: str, reason: str | None = None) -> int:
        return sum(n for o, _, r, n in self.rows if o == outcome and (reason is None or r == reason))

    @property
    def records_with_results(self) -> int:
        return sum(n for *_, n in self.rows)

    @property
    def unchanged(self) -> int | None:
        """Records that needed nothing (known when the last planning pass ran in this process)."""
        return None if self.total_records is None else max(0, self.total_records - self.distinct_records)

    def as_dict(self) -> dict[str, dict[str, int]]:
        """``{outcome: {reason: count}}`` (operations folded together), for the demo and XCom."""
        out: dict[str, dict[str, int]] = {}
        for outcome, _, reason, n in self.rows:
            bucket = out.setdefault(outcome, {})
            bucket[reason or ""] = bucket.get(reason or "", 0) + n
        if self.unchanged is not None:
            out.setdefault("unchanged", {})["unchanged"] = self.unchanged
        return out


def run_summary(
    db: sa.Engine, tables: "WarehouseTables", run_id: str, entity: str | None = None, *, total_records: int | None = None
) -> SyncSummary:
    """Count ``sync_result`` rows of ``run_id`` (optionally one entity) per outcome/operation/reason."""
    t = tables.sync_result
    where = [t.c.run_id == run_id]
    if entity:
        where.append(t.c.entity == entity)
    stmt = (
        sa.select(t.c.outcome, t.c.operation, t.c.reason, sa.func.count())
        .where(*where)
        .group_by(t.c.outcome, t.c.operation, t.c.reason)
        .order_by(t.c.outcome, t.c.operation, t.c.reason)
    )
    distinct = sa.select(sa.func.count(sa.distinct(t.c.record_id))).where(*where)
    ok_error = (
        sa.select(t.c.reason, t.c.http_status, sa.func.count())
        .where(*where, t.c.outcome == OUTCOME_OK, t.c.http_status >= 400)
        .group_by(t.c.reason, t.c.http_status)
        .order_by(t.c.reason, t.c.http_status)
    )
    with db.connect() as conn:
        rows = [(r[0], r[1], r[2] or "", int(r[3])) for r in conn.execute(stmt)]
        n_distinct = int(conn.execute(distinct).scalar() or 0)
        after_error = [(r[0] or "", int(r[1]), int(r[2])) for r in conn.execute(ok_error)]
    return SyncSummary(run_id, entity or "*", rows, total_records, n_distinct, after_error)


def top_error_titles(db: sa.Engine, tables: "WarehouseTables", run_id: str, entity: str, limit: int = 5) -> list[tuple[str, int]]:
    """The most frequent error titles among this run's failed rows."""
    t = tables.sync_result
    stmt = (
        sa.select(sa.func.coalesce(t.c.error_title, t.c.reason), sa.func.count().label("n"))
        .where(t.c.run_id == run_id, t.c.entity == entity, t.c.outcome == OUTCOME_FAILED)
        .group_by(sa.func.coalesce(t.c.error_title, t.c.reason))
        .order_by(sa.desc("n"))
        .limit(limit)
    )
    with db.connect() as conn:
        return [(str(r[0]), int(r[1])) for r in conn.execute(stmt)]


def format_summary(summary: SyncSummary, *, dry_run: bool = False) -> str:
    """The table the task log ends with: one line per outcome / operation / reason."""
    title = f"Mailchimp {summary.entity} sync, run {summary.run_id}" + (" (DRY RUN: nothing sent)" if dry_run else "")
    lines = [(o, op, r or "-", str(n)) for o, op, r, n in summary.rows]
    if summary.unchanged is not None:
        lines.append(("unchanged", "-", "no change since last sync", str(summary.unchanged)))
    header = ("outcome", "operation", "reason", "count")
    widths = [max(len(header[i]), *(len(line[i]) for line in lines)) if lines else len(header[i]) for i in range(4)]

    def fmt(cols: tuple[str, ...]) -> str:
        return "  ".join(c.rjust(widths[i]) if i == 3 else c.ljust(widths[i]) for i, c in enumerate(cols))

    rule = "-" * (sum(widths) + 6)
    body = [fmt(line) for line in lines] or ["(no records)"]
    totals = Counter()
    for o, _, _, n in summary.rows:
        totals[o] += n
    total_line = ", ".join(f"{k}={v}" for k, v in sorted(totals.items()))
    if summary.unchanged is not None:
        total_line += (", " if total_line else "") + f"unchanged={summary.unchanged}"
    notes = []
    if summary.ok_after_error:
        n = sum(count for *_, count in summary.ok_after_error)
        parts = ", ".join(f"{count} {reason} (HTTP {status})" for reason, status, count in summary.ok_after_error)
        notes.append(f"note: {n} operation(s) Mailchimp's batches count as errored are ok here: {parts}. "
                     "A 404 on deleting or unsubscribing someone means they are not in the audience: "
                     "nothing was left to do.")
    return "\n".join([title, rule, fmt(header), rule, *body, rule, "totals: " + (total_line or "none"), *notes])


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------
def source_sql(name: str, db: sa.Engine | None = None) -> str:
    """The text of ``include/sql/<name>.sql`` without comments or a trailing semicolon, so it can
    be wrapped as a subquery. With ``db``, optional columns that warehouse lacks read as NULL
    (``warehouse.optional_inputs``)."""
    from mailchimp_provider.warehouse import extract

    loader = getattr(extract, "load_sql", None) or getattr(extract, "read_sql", None)
    if loader is None:
        raise MailchimpError("warehouse.extract exposes no SQL loader (load_sql)")
    text = loader(name)
    lines = [line.split("--", 1)[0] if "--" in line and "'" not in line else line for line in text.splitlines()]
    sql = "\n".join(lines).strip().rstrip(";").strip()
    if db is not None:
        from mailchimp_provider.warehouse.optional_inputs import resolve_optional_columns

        sql = resolve_optional_columns(db, sql)
    return sql


MAX_RESULT_ID = 255
"""Width of ``sync_result.record_id`` / ``sync_state.record_id``: longer (refused) ids are cut."""


def id_text(value: Any) -> str | None:
    """A source id as text, or None when it is missing (NULL, empty or blank)."""
    if value is None:
        return None
    if type(value) is not str:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        value = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return value.strip() or None


def _shorten(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _row_hash(row: dict[str, Any]) -> str:
    """A short stable hash of a row's values: the synthetic id of a row without an id."""
    values = repr(sorted((k, v) for k, v in row.items() if not k.startswith("_")))
    return hashlib.blake2b(values.encode("utf-8", "replace"), digest_size=5).hexdigest()


def _row_clues(row: dict[str, Any], key: str, n: int = 3) -> str:
    """The first few non-empty values of a row, so a person can find it in the source."""
    clues = [f"{k}={_shorten(v)}" for k, v in row.items() if k != key and not k.startswith("_") and v not in (None, "")]
    return ", ".join(clues[:n]) or "every column is empty"


def _needs_follow_up(entry: list[int]) -> bool:
    """An ``_open`` entry ``[unanswered, any final, any other]`` whose record the next pass plans
    again: no final answer (none at all, e.g. a lost batch), or an answer that is not final."""
    return not entry[1] or bool(entry[2])


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


_SOURCE_BOUND = ("payload_hash", "mailchimp_id", "tags_managed")
"""The confirmed columns a stored ``source_hash`` vouches for."""


def _drop_stale_source_hash(state: StateRow, changes: dict[str, Any]) -> None:
    """A confirmed column the no-change check compares changed without a new source digest: the
    stored one no longer vouches for the row (the next rerun checks it the long way)."""
    if "source_hash" not in changes and any(k in changes for k in _SOURCE_BOUND):
        state.source_hash = None


@lru_cache(maxsize=4096)
def _tag_set(value: str | None) -> frozenset[str]:
    """``tags_managed`` JSON text as a set; memoised, as a few tag combinations cover most rows."""
    return frozenset(_json_list(value))


def _json_list(value: Any) -> list[str]:
    if value in (None, ""):
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    try:
        parsed = json.loads(value)
    except (TypeError, ValueError):
        return []
    return [str(v) for v in parsed] if isinstance(parsed, list) else []


def _json_dict(value: Any) -> dict[str, Any]:
    if value in (None, ""):
        return {}
    if isinstance(value, dict):
        return dict(value)
    try:
        parsed = json.loads(value)
    except (TypeError, ValueError):
        return {}
    return parsed if isinstance(parsed, dict) else {}
