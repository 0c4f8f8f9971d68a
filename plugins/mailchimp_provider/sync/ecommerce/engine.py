"""The sync engine as e-commerce runs it: merged child rows, targeted follow-up passes, and the
entity rules in dependency order (:data:`RULES`)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

import sqlalchemy as sa

from mailchimp_provider.sync.ecommerce.carts import CartRules
from mailchimp_provider.sync.ecommerce.customers import CustomerRules
from mailchimp_provider.sync.ecommerce.orders import OrderRules
from mailchimp_provider.sync.ecommerce.products import ProductRules
from mailchimp_provider.sync.ecommerce.promos import PromoCodeRules, PromoRuleRules
from mailchimp_provider.sync.ecommerce.rules import CommerceRules
from mailchimp_provider.sync.ecommerce.source import attach_children, merged_chunks
from mailchimp_provider.sync.engine import OpRef, PlannedOp, StateRow, SyncEngine

if TYPE_CHECKING:
    from mailchimp_provider.batches.results import OperationResult

RULES: dict[str, type[CommerceRules]] = {
    "customer": CustomerRules,
    "product": ProductRules,
    "promo_rule": PromoRuleRules,
    "promo_code": PromoCodeRules,
    "order": OrderRules,
    "cart": CartRules,
}
"""The rules of each entity, by entity name (the order of ``config.ENTITIES`` is the run order)."""


class EcommerceSyncEngine(SyncEngine):
    """The generic engine, with three additions for the e-commerce volumes:

    * products come with their variants and orders with their lines and promos, as single records
      (merge join; see ``ecommerce.source``);
    * follow-up passes re-plan only the records that need it. The engine plans again after a pass
      that sent something, to heal "already exists" / "not found" answers; in e-commerce only the
      records whose write was not confirmed in this process can need it (dependencies are other
      entities, finished before this task), so a second full scan of 100k orders is skipped, and
      a pass whose writes were all confirmed is the last. Only those records are kept in memory,
      not every record sent. A new process (retry, deferral) always starts with a full pass;
    * ``load_states`` without per-row type processing;
    * an entity whose optional source tables do not exist (carts) reads and sends nothing (its
      rules' ``source_absent`` says so once in the log).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._full_scans = 0
        self._full_records: int | None = None
        self._unconfirmed: set[str] = set()
        """Records sent by this process whose write is not confirmed yet (or was not ``ok``)."""
        self._absent: bool | None = None

    def prepare(self) -> None:
        if self._absent is None:
            check = getattr(self.rules, "source_absent", None)
            self._absent = bool(check is not None and check(self))
            if self._absent:
                self.ctx.data["source_absent"] = True
        super().prepare()

    def find_duplicate_ids(self) -> dict[str, str]:
        return {} if self._absent else super().find_duplicate_ids()

    def _hand_over(self, batch: list[PlannedOp]) -> list[dict[str, Any]]:
        self._unconfirmed.update(op.record_id for op in batch)
        return super()._hand_over(batch)

    # The next pass re-plans exactly ``_unconfirmed`` (see ``source_chunks``), so the generic
    # per-pass sets of sent and answered records (100k ids each for 100k orders) are not kept.
    def _note_sent(self, record_id: str, operations: int = 1) -> None:
        pass

    def _note_answer(self, record_id: str, *, final: bool) -> None:
        pass

    def _follow_up_ids(self) -> set[str]:
        return set(self._unconfirmed)

    def apply_results(self, batch_id: str | None, results: Iterable["OperationResult"]) -> Any:
        again = getattr(self.rules, "replan_after_steps", frozenset())  # e.g. a cart moved: deleted, then created

        def watched() -> Iterator["OperationResult"]:
            for result in results:
                ref = OpRef.parse(result.operation_id)
                if ref is not None and (result.ok or result.status_code == 404) and ref.step in again:
                    self._unconfirmed.add(ref.record_id)
                elif ref is not None and result.ok:
                    self._unconfirmed.discard(ref.record_id)
                yield result

        counts = super().apply_results(batch_id, watched())
        waiting = getattr(self.rules, "awaiting_children", None)
        if waiting:  # confirmed updates that left children to delete: those go out in the next pass
            self._unconfirmed.update(waiting)
            waiting.clear()
        return counts

    def source_chunks(self) -> Iterator[list[dict[str, Any]]]:
        if self._absent:
            self._full_records = 0
            return
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

    def load_states(self, record_ids: Iterable[str], entity: str | None = None) -> dict[str, StateRow]:
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
            sa.literal_column('"entity"') == (entity or self.entity),
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
        # read as the full scan reads them: merged entities unconverted (see ecommerce.source)
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
