"""Shards: which mapped task instance owns a record, decided by a stable hash of its key.

Why a hash and not ranges of the sorted keys: ownership must not move when records are added or
removed between tries, so that a retried shard re-reads exactly the records it owned before and
no other shard's. The hash is SHA-256 of the key's UTF-8 text (stable across processes, Python
versions and machines, unlike ``hash()``), reduced modulo the shard count: every key has exactly
one owner for a given count, and the shards together own every key.

Changing the shard count between runs only moves ownership for later runs; nothing a shard
records (bookmarks, pass markers) is keyed by the shard, only by the record.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

__all__ = ["Shard", "shard_of"]


def shard_of(key: str, count: int) -> int:
    """The index (``0 .. count-1``) of the shard that owns ``key``."""
    if count < 1:
        raise ValueError(f"shard count must be >= 1, got {count}")
    if count == 1:
        return 0
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count``; ``Shard(0, 1)`` owns everything (the unsharded task)."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"shard index must be in 0..{self.count - 1} (shard count {self.count}), got {self.index}")

    @property
    def is_whole(self) -> bool:
        """True when this shard owns every key (no sharding)."""
        return self.count == 1

    def owns(self, key: str) -> bool:
        return self.count == 1 or shard_of(key, self.count) == self.index

    def label(self) -> str:
        """``"shard 2 of 4"`` for log lines; ``""`` when unsharded."""
        return "" if self.is_whole else f"shard {self.index} of {self.count}"
