"""The emulator's whole state: one Mailchimp account, plus its fault settings.

Each resource module owns one attribute here and only mutates that attribute through its own
functions (``members.py`` owns ``lists``/``members``..., ``ecommerce.py`` owns ``stores``...).
Everything in this object is plain data (dicts, lists, str, int, float, bool, None) so that
``--state FILE`` can persist it as JSON, except list members and order and cart lines (compact
``records.Member`` / ``commerce_records.Line`` records, saved as the dicts they read like) and
``derived``: caches computed from the rest, which are never saved.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


@dataclass
class Faults:
    """Fault and performance knobs, set by CLI flags or ``POST /_emulator/faults``."""

    latency_ms: float = 0.0
    """Added to every /3.0 request (while counting against the concurrency limit)."""
    max_concurrent: int = 10
    """Requests in flight per API key above this get 429 (Mailchimp: 10)."""
    batch_ops_per_second: float = 0.0
    """Batch processing rate; 0 means as fast as possible."""
    batch_queue_seconds: float = 0.0
    """A new batch stays ``pending`` at least this long before it may start (see ``pace.py``)."""
    batch_finalizing_seconds: float = 0.0
    """Once all its operations ran, a batch stays ``finalizing`` this long before ``finished``."""
    pace: str = ""
    """Name of the pace profile that set the three knobs above ('' = none; see ``pace.py``)."""
    pace_speedup: float = 1.0
    """The profile runs this many times faster than real time (tests)."""
    stuck_finalizing: bool = False
    """Batches reach ``finalizing`` with all operations finished and stay there."""
    results_ttl_seconds: float = 3600.0
    """After this long past completion a batch and its results 404 (expired)."""
    inject: list[dict[str, Any]] = field(default_factory=list)
    """One-shot faults: ``{"status": 429|500|503, "count": N, "method": "GET", "path_prefix": "/lists",
    "retry_after": 1}`` or ``{"timeout_seconds": 5, "count": N, ...}``; each matching request consumes one."""
    storm: list[dict[str, Any]] = field(default_factory=list)
    """Random faults: ``{"rate": 0.3, "statuses": [429, 500, 503], "timeout_seconds": 0.2, "method": M,
    "path_prefix": P, "after_processing": true}``; each matching request fails with probability ``rate``."""
    storm_seed: int = 0
    """Seed of the storm's random choices (set again whenever ``storm`` or ``storm_seed`` is posted)."""


_NOT_SAVED = frozenset({"derived"})


@dataclass
class EmulatorState:
    account_id: str = field(default_factory=lambda: secrets.token_hex(5))
    # owned by members.py / lists.py
    lists: dict[str, dict[str, Any]] = field(default_factory=dict)
    merge_fields: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    members: dict[str, dict[str, Any]] = field(default_factory=dict)
    """list_id -> subscriber_hash -> ``records.Member`` (a compact record read like the API's member
    object, with ``tags``; saved as that dict)."""
    forgotten: dict[str, list[str]] = field(default_factory=dict)
    """list_id -> subscriber hashes permanently deleted (re-adding fails)."""
    contact_ids: dict[str, dict[str, str]] = field(default_factory=dict)
    """list_id -> contact_id -> subscriber hash (so a contact id in the hash slot resolves in O(1))."""
    tags: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    """list_id -> tag name -> ``{"id": int, "name": str}`` (the list's tag registry)."""
    clock: float = 0.0
    """Last value handed out by :meth:`tick`: a strictly increasing epoch time for ordering changes."""
    segments: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    """list_id -> segment id (text) -> saved segment, owned by segments.py (static segments are the
    tags above)."""
    automations: dict[str, dict[str, Any]] = field(default_factory=dict)
    """workflow_id -> classic automation, owned by automations.py; its emails are campaigns of type
    ``automation`` in ``campaigns``."""
    # owned by ecommerce.py
    stores: dict[str, dict[str, Any]] = field(default_factory=dict)
    """store_id -> {"store": {...}, "customers": {...}, "products": {...}, "orders": {...}, "promo_rules": {...}}"""
    # owned by campaigns.py / reports.py
    campaigns: dict[str, dict[str, Any]] = field(default_factory=dict)
    activity: dict[str, dict[str, Any]] = field(default_factory=dict)
    """campaign_id -> {"list_id", "emails": {subscriber_hash: {"email_address", "activity": [...]}},
    "unsubscribes": [...]} for sent campaigns (layout in reports.py)."""
    # owned by batches.py
    batches: dict[str, dict[str, Any]] = field(default_factory=dict)
    batch_operations: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    batch_results: dict[str, str] = field(default_factory=dict)
    """batch_id -> base64 of the gzipped tar (kept as text so the state stays JSON)."""
    batch_webhooks: dict[str, dict[str, Any]] = field(default_factory=dict)
    faults: Faults = field(default_factory=Faults)
    counters: dict[str, int] = field(default_factory=dict)
    """Observability for tests: every dispatched call under ``"METHOD /route/{pattern}"`` and, when it
    came from a batch, also under ``"batch:METHOD /route/{pattern}"``."""
    traffic: dict[str, int] = field(default_factory=dict)
    """HTTP-level counters kept by the app: ``requests``, ``max_in_flight``, ``throttled`` (429s
    served for concurrency), ``injected`` (one-shot faults served), ``pending_limit`` (429s for
    too many pending batches)."""
    derived: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    """Caches computed from the rest of the state (e.g. report tallies, see ``tally.py``): never
    saved, rebuilt on demand after a load."""

    def to_json(self) -> dict[str, Any]:
        """The state as JSON-able data (shallow: shares the state's own dicts, so dump it at once)."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _NOT_SAVED}
        data["faults"] = asdict(self.faults)
        # members are compact records (records.Member): saved as the dicts they read like
        data["members"] = {list_id: {h: m.to_dict() for h, m in members.items()} for list_id, members in self.members.items()}
        from .commerce_records import plain_store  # order and cart lines are compact records too

        data["stores"] = {store_id: plain_store(doc) for store_id, doc in self.stores.items()}
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "EmulatorState":
        known = {f.name for f in fields(cls)} - _NOT_SAVED
        kwargs = {k: v for k, v in data.items() if k in known}
        faults = kwargs.get("faults", {})
        kwargs["faults"] = Faults(**{k: v for k, v in faults.items() if k in {f.name for f in fields(Faults)}})
        from .records import Member  # records builds on this module

        kwargs["members"] = {list_id: {h: Member.from_dict(m) for h, m in members.items()}
                             for list_id, members in kwargs.get("members", {}).items()}
        from .commerce_records import compact_store

        kwargs["stores"] = {store_id: compact_store(doc) for store_id, doc in kwargs.get("stores", {}).items()}
        return cls(**kwargs)

    def save(self, path: str | Path) -> None:
        """Write the state to ``path`` as JSON, atomically (a crash never leaves half a file)."""
        write_json_atomically(path, json.dumps(self.to_json(), separators=(",", ":")))

    @classmethod
    def load(cls, path: str | Path) -> "EmulatorState":
        return cls.from_json(json.loads(Path(path).read_text()))

    def count(self, key: str, n: int = 1) -> None:
        self.counters[key] = self.counters.get(key, 0) + n

    def tick(self) -> float:
        """A strictly increasing epoch time: members changed in the same second still sort and
        filter (``since_last_changed``) in the order they changed."""
        now = time.time()
        self.clock = now if now > self.clock else self.clock + 1e-6
        return self.clock


def write_json_atomically(path: str | Path, text: str) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, target)


def now_iso() -> str:
    """Mailchimp's timestamp format: second precision with a ``+00:00`` offset."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def iso(epoch: float) -> str:
    """``epoch`` in Mailchimp's timestamp format (second precision, ``+00:00``)."""
    return _iso_second(int(epoch))


@functools.lru_cache(maxsize=64)
def _iso_second(second: int) -> str:
    return datetime.fromtimestamp(second, timezone.utc).isoformat()


def parse_iso(value: str) -> float | None:
    """Epoch seconds of an ISO 8601 query value (``Z``, offsets and fractions accepted); None if invalid."""
    text = str(value).strip().replace(" ", "+") if value else ""
    if not text:
        return None
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def new_id(nbytes: int = 5) -> str:
    """A random lowercase hex id (10 hex chars by default, like list, campaign and batch ids)."""
    return secrets.token_hex(nbytes)
