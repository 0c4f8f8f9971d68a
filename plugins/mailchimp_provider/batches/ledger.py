"""The batch ledger: which Mailchimp batches a task submitted, and whether their results are applied.

Why it exists: a task that submitted a batch and then died (worker lost, OOM, deploy) must not
submit the same operations again when it is retried or cleared. So a batch's row is committed the
moment ``POST /batches`` answers, before anyone waits for it, and a new try first re-attaches to
the open rows of its scope (dag_id, run_id, task_id, map_index).

Where it lives: the warehouse table ``<prefix>batch`` is the source of truth (queryable by the
on-call engineer, survives the Airflow metadata DB). Each write is mirrored into Airflow's
``task_state_store`` (Airflow >= 3.3) when the task has one, as a second durable record: if the
warehouse write itself fails right after a submission, the batch id still survives there, and
``open_batches`` picks it up. Without a warehouse (``engine=None``) the task_state_store is the
only record; that is enough for retries of the same task instance, but nothing outside Airflow
can see it.

Row lifecycle: a chunk's row is written *before* its ``POST /batches`` as an intent (``batch_id
'intent:<digest of its operation ids>:<random>'``, ``status = 'submitting'``, ``submitted_at`` =
our clock) and becomes the batch's row when Mailchimp answers. An intent still there when a try
starts means the try before died during the POST: the runner looks the batch up
(``hooks.batch_lookup``) and adopts it, or marks the intent ``'not_sent'`` when Mailchimp certainly
has no such batch. ``status`` is then Mailchimp's (pending ... finished) until the batch is either
applied (``applied_at`` set: its results are in the caller's bookkeeping) or abandoned (``status =
'abandoned'`` with ``error``: results expired, or a stalled batch given up on). A row is *open*
while it is neither. To give up on a batch by hand, set its status to ``'abandoned'``.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import sqlalchemy as sa

from mailchimp_provider.warehouse.tables import to_utc

if TYPE_CHECKING:
    from mailchimp_provider.warehouse.tables import WarehouseTables

__all__ = ["ABANDONED", "BatchLedger", "BatchScope", "LedgerEntry", "NOT_SENT", "STATE_STORE_KEY", "SUBMITTING",
           "operations_digest"]

log = logging.getLogger(__name__)

ABANDONED = "abandoned"
SUBMITTING = "submitting"
"""An intent: the row was written, the ``POST /batches`` was (about to be) sent, no answer recorded."""
NOT_SENT = "not_sent"
"""An intent whose batch Mailchimp certainly never created: nothing to wait for or apply."""
INTENT_PREFIX = "intent:"
DIGEST_CHARS = 24
STATE_STORE_KEY = "mailchimp_batches"
"""task_state_store key holding ``{batch_id: entry}`` for the task instance (renaming it breaks
re-attachment of tasks that are in flight during an upgrade)."""


@dataclass(frozen=True)
class BatchScope:
    """The task instance that owns a batch: the unit a retry re-attaches to."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int = -1

    @classmethod
    def from_context(cls, context: Mapping[str, Any]) -> "BatchScope":
        ti = context["ti"]
        map_index = getattr(ti, "map_index", -1)
        return cls(
            dag_id=str(ti.dag_id),
            run_id=str(ti.run_id),
            task_id=str(ti.task_id),
            map_index=-1 if map_index is None else int(map_index),
        )

    def __str__(self) -> str:
        suffix = f"[{self.map_index}]" if self.map_index >= 0 else ""
        return f"{self.dag_id}.{self.task_id}{suffix} run {self.run_id}"


@dataclass(frozen=True)
class LedgerEntry:
    """One submitted batch as the ledger knows it."""

    batch_id: str
    entity: str | None
    chunk_no: int | None
    operation_count: int | None
    status: str | None
    submitted_at: datetime | None = None
    applied_at: datetime | None = None
    error: str | None = None

    @property
    def is_open(self) -> bool:
        return self.applied_at is None and self.status not in (ABANDONED, NOT_SENT)

    @property
    def is_intent(self) -> bool:
        """A chunk whose ``POST /batches`` was sent by a try that died before recording the answer."""
        return self.batch_id.startswith(INTENT_PREFIX) and self.status == SUBMITTING

    @property
    def intent_digest(self) -> str | None:
        """:func:`operations_digest` (shortened) of an intent's operations, to recognise its batch."""
        return self.batch_id.split(":")[1] if self.is_intent else None


def operations_digest(operation_ids: Iterable[str]) -> str:
    """A digest of a chunk's operation ids (order-free): what identifies its batch among others
    of the same size, read back from the batch's results."""
    text = "\n".join(sorted(str(i) for i in operation_ids))
    return hashlib.sha256(text.encode()).hexdigest()[:DIGEST_CHARS]


class BatchLedger:
    """Record, update and look up submitted batches (see the module docstring for the rules)."""

    def __init__(
        self,
        engine: sa.Engine | None,
        tables: "WarehouseTables | None",
        *,
        state_store: Any | None = None,
        create_tables: bool = True,
    ) -> None:
        if engine is not None and tables is None:
            raise ValueError("BatchLedger: pass the WarehouseTables together with the engine")
        if engine is None and state_store is None:
            raise ValueError(
                "BatchLedger needs somewhere durable to record batches: a warehouse engine, or Airflow's "
                "task_state_store (context['task_state_store'], Airflow >= 3.3)."
            )
        self.engine = engine
        self.tables = tables
        self.state_store = state_store
        self._create_tables = create_tables
        self._tables_ready = False
        self._mirror_cache: dict[str, dict[str, Any]] | None = None
        """The mirror as last read or written: each store call is an Execution API round trip
        (tens of ms), and only this task instance writes its key, so one read per ledger will do."""

    # -- where ----------------------------------------------------------------------------------
    @property
    def table(self) -> sa.Table | None:
        return self.tables.batch if self.tables is not None else None

    def describe(self) -> str:
        """Where the ledger lives, for log lines an on-call engineer can act on."""
        if self.tables is not None:
            return f"warehouse table {self.tables.table_name('batch')}"
        return f"Airflow task_state_store key {STATE_STORE_KEY!r}"

    def _ready(self) -> None:
        if self.engine is None or self._tables_ready:
            return
        if self._create_tables:
            try:
                self.tables.create_all(self.engine)  # type: ignore[union-attr]
            except sa.exc.DatabaseError:
                # Another task created it concurrently: fine if it is there now.
                table = self.table
                assert table is not None
                if not sa.inspect(self.engine).has_table(table.name, schema=table.schema):
                    raise
        self._tables_ready = True

    # -- writes ---------------------------------------------------------------------------------
    def record_intent(
        self, scope: BatchScope, entity: str, chunk_no: int, operations: Iterable[Mapping[str, Any]]
    ) -> LedgerEntry:
        """Commit an intent row for a chunk about to be sent with ``POST /batches`` (see the module
        docstring); :meth:`record_submission` with ``intent=`` turns it into the batch's row."""
        ops = list(operations)
        digest = operations_digest(str(op.get("operation_id") or "") for op in ops)
        intent_id = f"{INTENT_PREFIX}{digest}:{secrets.token_hex(6)}"
        row = _row(scope, entity, chunk_no, intent_id, len(ops), {"status": SUBMITTING}, datetime.now(timezone.utc))
        if self.engine is not None:
            self._ready()
            with self.engine.begin() as conn:
                conn.execute(sa.insert(self.table), [row])  # type: ignore[arg-type]
        self._mirror_update(intent_id, _store_entry(row), create=True)
        return _entry(row)

    def record_submission(
        self,
        scope: BatchScope,
        entity: str,
        chunk_no: int,
        batch_id: str,
        operation_count: int,
        *,
        batch: Mapping[str, Any] | None = None,
        intent: LedgerEntry | None = None,
    ) -> LedgerEntry:
        """Commit the row for a batch that ``POST /batches`` just accepted (in place of its
        ``intent`` row, when one was written). Call before waiting."""
        row = _row(scope, entity, chunk_no, batch_id, operation_count, batch or {}, datetime.now(timezone.utc))
        replaced = intent.batch_id if intent is not None else None
        warehouse_error: BaseException | None = None
        if self.engine is not None:
            try:
                self._ready()
                t = self.table
                with self.engine.begin() as conn:
                    done = 0
                    if replaced is not None:
                        done = conn.execute(sa.update(t).where(t.c.batch_id == replaced).values(**row)).rowcount
                    if not done:
                        conn.execute(sa.insert(t), [row])  # type: ignore[arg-type]
            except Exception as exc:  # noqa: BLE001 - mirror first, then re-raise
                warehouse_error = exc
        self._mirror_update(batch_id, _store_entry(row), create=True, replaces=replaced)
        if warehouse_error is not None:
            log.error(
                "Batch %s was submitted but could not be recorded in %s (%s). It %s. Do not resubmit by hand "
                "before checking GET /batches/%s.",
                batch_id, self.describe(), warehouse_error,
                "is recorded in the task_state_store, so a retry re-attaches to it" if self.state_store is not None
                else "is recorded NOWHERE else",
                batch_id,
            )
            raise warehouse_error
        return _entry(row)

    def mark_not_sent(self, intent: LedgerEntry, why: str) -> None:
        """An intent whose batch Mailchimp certainly never created: closed, nothing to apply."""
        if self.engine is not None:
            self._ready()
            t = self.table
            with self.engine.begin() as conn:
                conn.execute(sa.update(t).where(t.c.batch_id == intent.batch_id).values(status=NOT_SENT, error=why[:4000]))
        self._mirror_update(intent.batch_id, {"status": NOT_SENT, "error": why[:1000]})

    def update_status(self, batch: Mapping[str, Any]) -> None:
        """Store Mailchimp's latest view of a batch (status and counters); abandoned rows stay so."""
        batch_id = str(batch["id"])
        values = {
            "status": batch.get("status"),
            "total_operations": batch.get("total_operations"),
            "finished_operations": batch.get("finished_operations"),
            "errored_operations": batch.get("errored_operations"),
            "completed_at": _timestamp_or_none(batch.get("completed_at")),
        }
        if self.engine is not None:
            self._ready()
            t = self.table
            with self.engine.begin() as conn:
                conn.execute(
                    sa.update(t)
                    .where(t.c.batch_id == batch_id, sa.or_(t.c.status.is_(None), t.c.status != ABANDONED))
                    .values(**values)
                )
        # The mirror only needs what re-attaching reads (the status), not the progress counters,
        # so a poll that sees the same status costs no task_state_store call.
        self._mirror_update(batch_id, {"status": values["status"]}, keep_abandoned=True)

    def mark_applied(self, batch_id: str) -> None:
        """The caller's bookkeeping for this batch's results is committed: close the row."""
        now = datetime.now(timezone.utc)
        if self.engine is not None:
            self._ready()
            t = self.table
            with self.engine.begin() as conn:
                conn.execute(sa.update(t).where(t.c.batch_id == batch_id).values(applied_at=now, error=None))
        self._mirror_update(batch_id, {"applied_at": now.isoformat()})

    def mark_abandoned(self, batch_id: str, error: str) -> None:
        """Give up on a batch (results expired, or stalled and given up): its records get re-planned."""
        if self.engine is not None:
            self._ready()
            t = self.table
            with self.engine.begin() as conn:
                conn.execute(sa.update(t).where(t.c.batch_id == batch_id).values(status=ABANDONED, error=error[:4000]))
        self._mirror_update(batch_id, {"status": ABANDONED, "error": error[:1000]})

    # -- reads ----------------------------------------------------------------------------------
    def entries(self, scope: BatchScope, entity: str | None = None) -> list[LedgerEntry]:
        """Every batch of the scope (open or not), oldest first."""
        found: dict[str, LedgerEntry] = {}
        if self.engine is not None:
            self._ready()
            t = self.table
            query = sa.select(t).where(
                t.c.dag_id == scope.dag_id,
                t.c.run_id == scope.run_id,
                t.c.task_id == scope.task_id,
                t.c.map_index == scope.map_index,
            )
            if entity is not None:
                query = query.where(t.c.entity == entity)
            with self.engine.connect() as conn:
                for row in conn.execute(query.order_by(t.c.submitted_at, t.c.chunk_no, t.c.batch_id)).mappings():
                    found[row["batch_id"]] = _entry(row)
        for batch_id, data in self._mirror().items():
            if batch_id in found or not _in_scope(data, scope) or (entity is not None and data.get("entity") != entity):
                continue
            if self.engine is not None:
                log.warning(
                    "Batch %s is in the task_state_store but not in %s (the warehouse write failed after "
                    "submission): using the task_state_store record.", batch_id, self.describe(),
                )
            found[batch_id] = _entry_from_store(batch_id, data)
        return sorted(found.values(), key=lambda e: (_sort_time(e.submitted_at), e.chunk_no or 0, e.batch_id))

    def open_batches(self, scope: BatchScope, entity: str | None = None) -> list[LedgerEntry]:
        """Batches of the scope that were submitted and are neither applied nor abandoned."""
        return [e for e in self.entries(scope, entity) if e.is_open]

    def get(self, batch_id: str) -> LedgerEntry | None:
        if self.engine is not None:
            self._ready()
            t = self.table
            with self.engine.connect() as conn:
                row = conn.execute(sa.select(t).where(t.c.batch_id == batch_id)).mappings().first()
            if row is not None:
                return _entry(row)
        data = self._mirror().get(batch_id)
        return _entry_from_store(batch_id, data) if data else None

    def recorded_between(self, start: datetime, end: datetime) -> set[str]:
        """Ids of batches (any task's) recorded as submitted between ``start`` and ``end``: never
        taken for the lost batch of an intent."""
        found: set[str] = set()
        if self.engine is not None:
            self._ready()
            t = self.table
            with self.engine.connect() as conn:
                found.update(conn.execute(sa.select(t.c.batch_id).where(t.c.submitted_at.between(start, end))).scalars())
        found.update(self._mirror())
        return found

    def next_chunk_no(self, scope: BatchScope, entity: str) -> int:
        """Chunk numbers continue across rounds and retries, so (scope, entity, chunk_no) stays unique."""
        numbers = [e.chunk_no for e in self.entries(scope, entity) if e.chunk_no is not None]
        return max(numbers, default=-1) + 1

    # -- task_state_store mirror ------------------------------------------------------------------
    def _mirror(self) -> dict[str, dict[str, Any]]:
        if self.state_store is None:
            return {}
        if self._mirror_cache is not None:
            return self._mirror_cache
        try:
            value = self.state_store.get(STATE_STORE_KEY, default={})
        except Exception as exc:  # noqa: BLE001 - the mirror is best effort when a warehouse exists
            if self.engine is None:
                raise
            log.warning("Could not read the task_state_store mirror of the batch ledger: %s", exc)
            return {}
        self._mirror_cache = value if isinstance(value, dict) else {}
        return self._mirror_cache

    def _mirror_update(
        self, batch_id: str, values: dict[str, Any], *, create: bool = False, keep_abandoned: bool = False,
        replaces: str | None = None,
    ) -> None:
        if self.state_store is None:
            return
        try:
            current = self._mirror()
            entry = current.get(batch_id)
            if entry is None and not create:
                return
            entry = dict(entry or {})
            if keep_abandoned and entry.get("status") == ABANDONED:
                values = {k: v for k, v in values.items() if k != "status"}
            if not create and all(entry.get(k) == v for k, v in values.items()):
                return  # nothing new to record (a poll that saw the same status)
            entry.update(values)
            from airflow.sdk.execution_time.context import NEVER_EXPIRE

            mirror = {k: v for k, v in current.items() if k != replaces}
            mirror[batch_id] = entry
            self.state_store.set(STATE_STORE_KEY, mirror, retention=NEVER_EXPIRE)
            self._mirror_cache = mirror
        except Exception as exc:  # noqa: BLE001
            if self.engine is None:
                raise
            log.warning("Could not mirror batch %s into the task_state_store: %s", batch_id, exc)


def _row(
    scope: BatchScope, entity: str, chunk_no: int, batch_id: str, operation_count: int, batch: Mapping[str, Any],
    now: datetime,
) -> dict[str, Any]:
    """A ledger row for a chunk: ``batch`` is Mailchimp's batch object (or the intent's status)."""
    return {
        "batch_id": batch_id,
        "dag_id": scope.dag_id,
        "run_id": scope.run_id,
        "task_id": scope.task_id,
        "map_index": scope.map_index,
        "entity": entity,
        "chunk_no": chunk_no,
        "status": batch.get("status") or "pending",
        "total_operations": batch.get("total_operations"),
        "finished_operations": batch.get("finished_operations"),
        "errored_operations": batch.get("errored_operations"),
        "operation_count": operation_count,
        "submitted_at": to_utc(batch.get("submitted_at") or None) or now,
        "completed_at": None,
        "applied_at": None,
        "error": None,
    }


def _timestamp_or_none(value: Any) -> datetime | None:
    try:
        return to_utc(value or None)
    except (TypeError, ValueError):
        return None


def _sort_time(value: datetime | None) -> float:
    return value.timestamp() if value is not None else 0.0


def _entry(row: Mapping[str, Any]) -> LedgerEntry:
    return LedgerEntry(
        batch_id=row["batch_id"],
        entity=row.get("entity"),
        chunk_no=row.get("chunk_no"),
        operation_count=row.get("operation_count"),
        status=row.get("status"),
        submitted_at=to_utc(row.get("submitted_at")),
        applied_at=to_utc(row.get("applied_at")),
        error=row.get("error"),
    )


def _store_entry(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row as JSON for the task_state_store (datetimes as ISO strings)."""
    out = {}
    for key, value in row.items():
        if key == "batch_id":
            continue
        out[key] = value.isoformat() if isinstance(value, datetime) else value
    return out


def _entry_from_store(batch_id: str, data: Mapping[str, Any]) -> LedgerEntry:
    return _entry({"batch_id": batch_id, **data})


def _in_scope(data: Mapping[str, Any], scope: BatchScope) -> bool:
    """Entries written by this task instance; also accept entries without scope fields."""
    wanted = asdict(scope)
    return all(data.get(k, wanted[k]) == wanted[k] for k in wanted)
