"""Chunked upserts that also say what they did: rows gained (new keys), changed and unchanged.

The engagement pull logs, per table, how many rows a run *gained* and *changed*, so a rerun that
finds nothing new visibly reports ``+0 ~0``. The writing and counting is the shared
``warehouse.upsert.upsert_counts`` (COPY on PostgreSQL, unchanged rows left untouched); this
module feeds it a stream in bounded chunks and keeps the per-table tallies of a task.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import sqlalchemy as sa

from mailchimp_provider.warehouse.upsert import upsert_counts

log = logging.getLogger(__name__)


@dataclass
class LoadCounts:
    """What loading did to one table."""

    gained: int = 0
    changed: int = 0
    unchanged: int = 0
    removed: int = 0
    """Rows deleted as duplicates of another row (unsubscribes known from two sources)."""

    def add(self, other: "LoadCounts") -> None:
        self.gained += other.gained
        self.changed += other.changed
        self.unchanged += other.unchanged
        self.removed += other.removed

    @property
    def seen(self) -> int:
        return self.gained + self.changed + self.unchanged


@dataclass
class LoadStats:
    """Per-table counts of one task; ``log()`` prints the line the issue asks for."""

    tables: dict[str, LoadCounts] = field(default_factory=dict)

    def record(self, table: str, counts: LoadCounts) -> None:
        self.tables.setdefault(table, LoadCounts()).add(counts)

    def merge(self, other: "LoadStats") -> None:
        for name, counts in other.tables.items():
            self.record(name, counts)

    def to_dict(self) -> dict[str, dict[str, int]]:
        return {
            name: {"gained": c.gained, "changed": c.changed, "unchanged": c.unchanged, "removed": c.removed}
            for name, c in sorted(self.tables.items())
        }

    @classmethod
    def from_dict(cls, data: dict[str, dict[str, int]]) -> "LoadStats":
        return cls({name: LoadCounts(**counts) for name, counts in data.items()})

    def log(self, logger: logging.Logger | logging.LoggerAdapter = log, prefix: str = "") -> None:
        for name, c in sorted(self.tables.items()):
            removed = f", {c.removed} removed as duplicates" if c.removed else ""
            logger.info(
                "%s%s: %d rows gained, %d changed, %d unchanged%s",
                prefix, name, c.gained, c.changed, c.unchanged, removed,
            )


def merge_rows(
    conn: sa.Connection,
    table: sa.Table,
    rows: Iterable[dict[str, Any]],
    key: Sequence[str],
    *,
    chunk_size: int = 10_000,
    new_keys: bool = False,
) -> LoadCounts:
    """Upsert ``rows`` on ``key`` in the caller's transaction and count gained / changed rows.

    ``rows`` may be a generator: it is consumed ``chunk_size`` rows at a time, so memory does not
    grow with the number of rows. ``new_keys=True`` promises that none of the keys is stored yet
    (checked by the caller in the same transaction): the first chunk is then COPYed straight into
    the table on PostgreSQL. Later chunks take the conflict-checking path, since a key may repeat
    across chunks (a repeated key keeps its last row, as everywhere).
    """
    counts = LoadCounts()
    for number, chunk in enumerate(chunks(rows, chunk_size)):
        done = upsert_counts(conn, table, chunk, key, chunk_size=chunk_size, new_keys=new_keys and number == 0)
        counts.add(LoadCounts(gained=done.inserted, changed=done.updated, unchanged=done.unchanged))
    return counts


def chunks(rows: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    """Consecutive lists of up to ``size`` items of ``rows`` (a stream is read lazily)."""
    iterator = iter(rows)
    while chunk := list(islice(iterator, size)):
        yield chunk
