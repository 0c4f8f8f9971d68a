"""``include/engagement_pull.yaml`` as a typed, validated ``EngagementConfig``.

Parsed by the project's shared loader (``mailchimp_provider.config``): unknown keys are an error
(a typo such as ``lookback_minute`` would otherwise silently fall back to the default), types are
checked from the dataclasses' hints, and every error names the file and the key. The checks only
this config needs (positive numbers, Mailchimp's page-size cap) are the ``validate()`` methods.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from mailchimp_provider.config import load_config as load_typed_config
from mailchimp_provider.config import parse_config
from mailchimp_provider.include_paths import ENGAGEMENT_CONFIG_ENV, include_file

CONFIG_ENV = ENGAGEMENT_CONFIG_ENV
"""Environment variable naming another config file (several deployments, tests)."""


def config_path() -> Path:
    """``$MAILCHIMP_ENGAGEMENT_PULL_CONFIG`` when set, else ``include/engagement_pull.yaml`` found by
    the rule of :mod:`mailchimp_provider.include_paths` (raises naming the paths searched)."""
    return include_file("engagement_pull.yaml", ENGAGEMENT_CONFIG_ENV)


MAX_PAGE_SIZE = 1000
"""Mailchimp's maximum ``count``."""
MAX_SHARDS = 1024
"""Airflow refuses to map more task instances than ``[core] max_map_length`` (default 1024)."""


def _positive(section: Any) -> list[tuple[str, str]]:
    """Every number of a section must be above zero (a zero page size or lookback is a typo)."""
    return [
        (f.name, f"must be a positive number, got {getattr(section, f.name)!r}")
        for f in fields(section)
        if not isinstance(getattr(section, f.name), bool) and getattr(section, f.name) <= 0
    ]


def _page_size(section: Any) -> list[tuple[str, str]]:
    if section.page_size > MAX_PAGE_SIZE:
        return [("page_size", f"may be at most {MAX_PAGE_SIZE} (Mailchimp's maximum count), got {section.page_size}")]
    return []


@dataclass(frozen=True)
class MembersConfig:
    lookback_minutes: int = 15
    page_size: int = 1000

    def validate(self) -> list[tuple[str, str]]:
        return _positive(self) + _page_size(self)

    @property
    def lookback(self) -> timedelta:
        return timedelta(minutes=self.lookback_minutes)


@dataclass(frozen=True)
class CampaignsConfig:
    recent_window_days: int = 14
    page_size: int = 1000

    def validate(self) -> list[tuple[str, str]]:
        return _positive(self) + _page_size(self)

    @property
    def recent_window(self) -> timedelta:
        return timedelta(days=self.recent_window_days)


@dataclass(frozen=True)
class ActivityConfig:
    lookback_minutes: int = 60
    batch_chunk_size: int = 25
    insert_chunk_size: int = 10_000
    writers: int = 2
    """Connections that load campaigns at once while results are read (client/server databases)."""
    deferrable: bool = True
    """Wait for batches in the triggerer (no worker slot held) instead of polling in the task."""
    poll_interval_seconds: float = 15.0
    stall_timeout_seconds: float = 1800.0
    """A batch whose finished-operation count does not move for this long is abandoned and re-sent."""
    max_abandoned_batches: int = 2
    """Stop the pass (task fails, bookmarks kept) after this many batches stalled or expired."""
    shards: int = 1
    """Mapped task instances the activity is split over, each owning the campaigns whose id hashes
    to it (``mailchimp_provider.sharding``); 1 = one unmapped task, as before sharding existed."""

    def validate(self) -> list[tuple[str, str]]:
        problems = _positive(self)
        if self.shards > MAX_SHARDS:
            problems.append(("shards", f"may be at most {MAX_SHARDS} (Airflow's default [core] max_map_length), "
                                       f"got {self.shards}"))
        return problems

    @property
    def lookback(self) -> timedelta:
        return timedelta(minutes=self.lookback_minutes)


@dataclass(frozen=True)
class SegmentsConfig:
    members_refresh_hours: int = 24
    """A segment's members are read again when the segment changed (``updated_at``, ``member_count``)
    and at least this often (a saved segment's members change with its members, silently)."""

    def validate(self) -> list[tuple[str, str]]:
        return _positive(self)

    @property
    def members_refresh(self) -> timedelta:
        return timedelta(hours=self.members_refresh_hours)


@dataclass(frozen=True)
class EngagementConfig:
    """What the engagement pull reads and where it writes."""

    mailchimp_conn_id: str = "mailchimp_default"
    warehouse_conn_id: str = "warehouse_default"
    table_prefix: str = "mailchimp_"
    schema: str | None = None
    """``""`` in the file means none."""
    audiences: Literal["all"] | tuple[str, ...] | None = None
    """List ids to pull; ``None`` means every audience of the account (``all`` in the file)."""
    members: MembersConfig = field(default_factory=MembersConfig)
    campaigns: CampaignsConfig = field(default_factory=CampaignsConfig)
    activity: ActivityConfig = field(default_factory=ActivityConfig)
    segments: SegmentsConfig = field(default_factory=SegmentsConfig)
    max_rejected_fraction: float = 0.01
    """A task fails (after committing) when more than this share of the records it read could not
    be stored: one odd record is a warning, a format change that rejects everything is an error."""

    def __post_init__(self) -> None:
        # The file's spellings of "none": every reader then sees None.
        if self.audiences == "all":
            object.__setattr__(self, "audiences", None)
        if self.schema is not None and not self.schema.strip():
            object.__setattr__(self, "schema", None)

    def validate(self) -> list[tuple[str, str]]:
        problems = [
            (name, f"must be a non-empty string, got {getattr(self, name)!r}")
            for name in ("mailchimp_conn_id", "warehouse_conn_id")
            if not getattr(self, name).strip()
        ]
        if self.table_prefix != self.table_prefix.strip():  # "" is Fivetran's layout (no prefix)
            problems.append(("table_prefix", f"must not start or end with spaces, got {self.table_prefix!r}"))
        if self.audiences is not None and (not self.audiences or not all(a.strip() for a in self.audiences)):
            problems.append(("audiences", f"must be 'all' or a list of list ids, got {list(self.audiences)!r}"))
        if not 0 <= self.max_rejected_fraction <= 1:
            problems.append(("max_rejected_fraction", f"must be between 0 and 1, got {self.max_rejected_fraction!r}"))
        return problems

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (operator arguments, logs)."""
        return {
            "mailchimp_conn_id": self.mailchimp_conn_id,
            "warehouse_conn_id": self.warehouse_conn_id,
            "table_prefix": self.table_prefix,
            "schema": self.schema,
            "audiences": list(self.audiences) if self.audiences is not None else "all",
            "max_rejected_fraction": self.max_rejected_fraction,
            "members": {f.name: getattr(self.members, f.name) for f in fields(MembersConfig)},
            "campaigns": {f.name: getattr(self.campaigns, f.name) for f in fields(CampaignsConfig)},
            "activity": {f.name: getattr(self.activity, f.name) for f in fields(ActivityConfig)},
            "segments": {f.name: getattr(self.segments, f.name) for f in fields(SegmentsConfig)},
        }

    def with_overrides(self, **changes: Any) -> "EngagementConfig":
        return replace(self, **changes)


def load_config(path: str | Path | None = None) -> EngagementConfig:
    """Read the YAML file (default: :func:`config_path`); an empty file means the defaults."""
    return load_typed_config(Path(path) if path else config_path(), EngagementConfig)


def config_from_dict(data: Any, *, source: str = "engagement config") -> EngagementConfig:
    """Validate a parsed mapping (the YAML file, or ``to_dict()`` output) into an ``EngagementConfig``."""
    return parse_config(data, EngagementConfig, source=source)
