"""``include/engagement_pull.yaml`` as a typed, validated ``EngagementConfig``.

Unknown keys are an error (a typo such as ``lookback_minute`` would otherwise silently fall back to
the default), and every error names the file and the key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from mailchimp_provider.errors import MailchimpConfigError

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parents[3] / "include" / "engagement_pull.yaml"
CONFIG_ENV = "MAILCHIMP_ENGAGEMENT_PULL_CONFIG"
"""Environment variable naming another config file (several deployments, tests)."""


def config_path() -> Path:
    """``$MAILCHIMP_ENGAGEMENT_PULL_CONFIG`` when set, else ``include/engagement_pull.yaml``."""
    return Path(os.environ[CONFIG_ENV]) if os.environ.get(CONFIG_ENV) else DEFAULT_CONFIG_PATH


@dataclass(frozen=True)
class MembersConfig:
    lookback_minutes: int = 15
    page_size: int = 1000

    @property
    def lookback(self) -> timedelta:
        return timedelta(minutes=self.lookback_minutes)


@dataclass(frozen=True)
class CampaignsConfig:
    recent_window_days: int = 14
    page_size: int = 1000

    @property
    def recent_window(self) -> timedelta:
        return timedelta(days=self.recent_window_days)


@dataclass(frozen=True)
class ActivityConfig:
    lookback_minutes: int = 60
    batch_chunk_size: int = 100
    insert_chunk_size: int = 10_000
    deferrable: bool = True
    """Wait for batches in the triggerer (no worker slot held) instead of polling in the task."""
    poll_interval_seconds: float = 15.0
    stall_timeout_seconds: float = 1800.0
    """A batch whose finished-operation count does not move for this long is abandoned and re-sent."""
    max_abandoned_batches: int = 2
    """Stop the pass (task fails, bookmarks kept) after this many batches stalled or expired."""

    @property
    def lookback(self) -> timedelta:
        return timedelta(minutes=self.lookback_minutes)


@dataclass(frozen=True)
class EngagementConfig:
    """What the engagement pull reads and where it writes."""

    mailchimp_conn_id: str = "mailchimp_default"
    warehouse_conn_id: str = "warehouse_default"
    table_prefix: str = "mailchimp_"
    schema: str | None = None
    audiences: tuple[str, ...] | None = None
    """List ids to pull; ``None`` means every audience of the account."""
    members: MembersConfig = field(default_factory=MembersConfig)
    campaigns: CampaignsConfig = field(default_factory=CampaignsConfig)
    activity: ActivityConfig = field(default_factory=ActivityConfig)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (operator arguments, logs)."""
        return {
            "mailchimp_conn_id": self.mailchimp_conn_id,
            "warehouse_conn_id": self.warehouse_conn_id,
            "table_prefix": self.table_prefix,
            "schema": self.schema,
            "audiences": list(self.audiences) if self.audiences is not None else "all",
            "members": {f.name: getattr(self.members, f.name) for f in fields(MembersConfig)},
            "campaigns": {f.name: getattr(self.campaigns, f.name) for f in fields(CampaignsConfig)},
            "activity": {f.name: getattr(self.activity, f.name) for f in fields(ActivityConfig)},
        }

    def with_overrides(self, **changes: Any) -> "EngagementConfig":
        return replace(self, **changes)


def load_config(path: str | Path | None = None) -> EngagementConfig:
    """Read the YAML file (default ``include/engagement_pull.yaml``); a missing default file means defaults."""
    path = Path(path) if path else DEFAULT_CONFIG_PATH
    if not path.exists():
        if path == DEFAULT_CONFIG_PATH:
            return EngagementConfig()
        raise MailchimpConfigError(f"Engagement pull config {path} does not exist.")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise MailchimpConfigError(f"{path}: not valid YAML ({exc}).") from None
    return config_from_dict(data, source=str(path))


def config_from_dict(data: Any, *, source: str = "engagement config") -> EngagementConfig:
    """Validate a parsed mapping (the YAML file, or ``to_dict()`` output) into an ``EngagementConfig``."""
    if not isinstance(data, dict):
        raise MailchimpConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}.")
    top = {f.name for f in fields(EngagementConfig)}
    _reject_unknown(data, top, source, "")
    kwargs: dict[str, Any] = {}
    for name in ("mailchimp_conn_id", "warehouse_conn_id", "table_prefix"):
        if name in data:
            kwargs[name] = _string(data[name], source, name)
    if data.get("schema") not in (None, ""):
        kwargs["schema"] = _string(data["schema"], source, "schema")
    kwargs["audiences"] = _audiences(data.get("audiences", "all"), source)
    kwargs["members"] = _section(data.get("members"), MembersConfig, source, "members")
    kwargs["campaigns"] = _section(data.get("campaigns"), CampaignsConfig, source, "campaigns")
    kwargs["activity"] = _section(data.get("activity"), ActivityConfig, source, "activity")
    config = EngagementConfig(**kwargs)
    if config.members.page_size > 1000 or config.campaigns.page_size > 1000:
        raise MailchimpConfigError(f"{source}: page_size may be at most 1000 (Mailchimp's maximum count).")
    return config


def _reject_unknown(data: dict[str, Any], known: set[str], source: str, prefix: str) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        raise MailchimpConfigError(
            f"{source}: unknown key(s) {', '.join(prefix + k for k in unknown)}; known: "
            f"{', '.join(prefix + k for k in sorted(known))}."
        )


def _string(value: Any, source: str, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise MailchimpConfigError(f"{source}: {key} must be a non-empty string, got {value!r}.")
    return value.strip()


def _audiences(value: Any, source: str) -> tuple[str, ...] | None:
    if value is None or value == "all":
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise MailchimpConfigError(f"{source}: audiences must be 'all' or a list of list ids, got {value!r}.")
    return tuple(_string(v, source, "audiences[]") for v in value)


def _section(value: Any, cls: type, source: str, name: str) -> Any:
    if value is None:
        return cls()
    if not isinstance(value, dict):
        raise MailchimpConfigError(f"{source}: {name} must be a mapping, got {value!r}.")
    known = {f.name for f in fields(cls)}
    _reject_unknown(value, known, source, name + ".")
    types = {f.name: type(f.default) for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, raw in value.items():
        wanted = types[key]
        if wanted is bool:
            if not isinstance(raw, bool):
                raise MailchimpConfigError(f"{source}: {name}.{key} must be true or false, got {raw!r}.")
        elif isinstance(raw, bool) or not isinstance(raw, (int, float)) or raw <= 0 or (
            wanted is int and not isinstance(raw, int)
        ):
            kind = "a positive integer" if wanted is int else "a positive number"
            raise MailchimpConfigError(f"{source}: {name}.{key} must be {kind}, got {raw!r}.")
        kwargs[key] = wanted(raw)
    return cls(**kwargs)
