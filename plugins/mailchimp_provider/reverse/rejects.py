"""Records the engagement pull cannot store: kept whole in ``<prefix>rejected_record``, never lost.

One bad record (a date Mailchimp wrote in an unexpected form, an activity item without an
action) must not stop a run that has a million good ones, and must not vanish either. Every
normaliser call of the pull goes through ``Rejects.normalise``: a ``NormalisationError`` puts the
record, as Mailchimp sent it, with the record's name, the field and the error, into the rejects of
that stream and scope, and the load goes on. ``store`` writes them in the same transaction as the
rows (and bookmark) they were read with, so a bookmark never moves past a record that is in
neither table. A record read again unchanged is the same row (the key holds the record's hash).

The bookmark does move past a rejected record: re-reading it would fail the same way. Once the
cause is fixed (in Mailchimp or in this project), its row says what to re-read.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import sqlalchemy as sa

from mailchimp_provider.json_codec import dumps_sorted
from mailchimp_provider.reverse.loading import LoadCounts, merge_rows
from mailchimp_provider.reverse.normalise import NormalisationError
from mailchimp_provider.warehouse.tables import WarehouseTables

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class Rejects:
    """The rejected records of one stream and scope (``member`` of a list, ``email_activity`` of a
    campaign...), collected while normalising and written by ``store``."""

    stream: str
    scope: str
    rows: list[dict[str, Any]] = field(default_factory=list)

    def add(self, error: NormalisationError, raw: Any) -> None:
        text = dumps_sorted(raw) if not isinstance(raw, str) else raw
        self.rows.append({
            "stream": self.stream,
            "scope": self.scope,
            "record_hash": hashlib.md5(text.encode(), usedforsecurity=False).hexdigest(),
            "record": error.record,
            "field": error.field,
            "error": str(error),
            "raw": text,
        })

    def normalise(self, items: Iterable[T], normalise: Callable[[T], R]) -> list[R]:
        """``normalise`` applied to each item; an item it rejects is kept here instead."""
        out: list[R] = []
        for item in items:
            try:
                out.append(normalise(item))
            except NormalisationError as exc:
                self.add(exc, item)
        return out

    def __len__(self) -> int:
        return len(self.rows)


def store(conn: sa.Connection, tables: WarehouseTables, rejects: Rejects) -> LoadCounts:
    """Upsert the rejected records in the caller's transaction and log what they are."""
    if not rejects.rows:
        return LoadCounts()
    counts = merge_rows(conn, tables.rejected, rejects.rows, tables.key("rejected"))
    table = tables.table_name("rejected")
    log.warning(
        "%d %s record(s) of %s could not be stored and are kept whole in %s; the rest is loaded. First: %s. "
        "See them with: SELECT record, field, error, raw FROM %s WHERE stream = '%s' AND scope = '%s';",
        len(rejects.rows), rejects.stream, rejects.scope, table, rejects.rows[0]["error"], table,
        rejects.stream, rejects.scope.replace("'", "''"),
    )
    return counts
