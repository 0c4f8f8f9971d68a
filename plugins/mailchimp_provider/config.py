"""Declarative sync configuration: a generic typed YAML loader, and the audience sync's config.

The loader turns a YAML mapping into frozen dataclasses, driven by their type hints
(``str``, ``int``, ``float``, ``bool``, ``X | None``, ``Literal[...]``, ``list[X]``,
``dict[str, X]`` and nested dataclasses). Every problem is a :class:`ConfigError` that names the
file, the key path and what is wrong (``include/audience_sync.yaml: merge_fields.LNAME.type: 'txt'
is not one of text, number, ...``). Unknown keys are errors too, with a "did you mean" hint: a
typo must not fall back to a default silently. Dataclasses can add cross-field checks in a
``validate(self) -> list[tuple[str, str]]`` method returning ``(key, problem)`` pairs.

DAG files parse the config at import time (``load_audience_config``), so a broken file shows up as
a DAG import error in the Airflow UI, before any run touches Mailchimp.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, TypeVar

import yaml

from mailchimp_provider.errors import MailchimpConfigError
from mailchimp_provider.include_paths import AUDIENCE_CONFIG_ENV, include_file

T = TypeVar("T")


def audience_config_path() -> Path:
    """``$MAILCHIMP_AUDIENCE_SYNC_CONFIG`` when set, else ``include/audience_sync.yaml`` found by
    the rule of :mod:`mailchimp_provider.include_paths` (raises naming the paths searched)."""
    return include_file("audience_sync.yaml", AUDIENCE_CONFIG_ENV)


class ConfigError(MailchimpConfigError):
    """A configuration file is invalid; the message names the file, the key and the problem."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = [f"{source}: {key or '(top level)'}: {problem}" for key, problem in problems]
        super().__init__("Invalid configuration:\n  " + "\n  ".join(lines) if len(lines) > 1 else lines[0])


# ------------------------------------------------------------------------------------------------
# generic loader
# ------------------------------------------------------------------------------------------------
def load_config(path: str | Path, cls: type[T]) -> T:
    """Read the YAML file ``path`` into the dataclass ``cls`` (errors name the file and key)."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(source, [("", f"cannot read the file ({exc.strerror or exc})")]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(source, [("", f"not valid YAML ({where}{getattr(exc, 'problem', exc)})")]) from None
    return parse_config(data if data is not None else {}, cls, source=source)


def parse_config(data: Any, cls: type[T], *, source: str = "<config>") -> T:
    """Build ``cls`` from already-parsed data; all problems are collected and raised together."""
    problems: list[tuple[str, str]] = []
    value = _convert(data, cls, "", problems)
    if not problems:
        _validate_tree(value, "", problems)
    if problems:
        raise ConfigError(source, problems)
    return value


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})" if not isinstance(value, (dict, list)) else type(value).__name__


def _convert(value: Any, tp: Any, path: str, problems: list[tuple[str, str]]) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        if len(non_none) == 1:
            return _convert(value, non_none[0], path, problems)
        for candidate in non_none:  # first type that converts without a problem
            trial: list[tuple[str, str]] = []
            out = _convert(value, candidate, path, trial)
            if not trial:
                return out
        problems.append((path, f"expected one of {', '.join(_type_name(a) for a in non_none)}, got {_describe(value)}"))
        return None
    if value is None:
        problems.append((path, f"a value is required (expected {_type_name(tp)})"))
        return None
    if origin is Literal:
        if value not in args:
            problems.append((path, f"{value!r} is not one of {', '.join(map(str, args))}"))
        return value
    if origin in (list, tuple, typing.Sequence):
        if isinstance(value, str) and args and args[0] is str:
            value = [value]  # a single string where a list of strings is expected
        if not isinstance(value, list):
            problems.append((path, f"expected a list, got {_describe(value)}"))
            return []
        items = [_convert(item, args[0] if args else Any, f"{path}[{i}]", problems) for i, item in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin in (dict, typing.Mapping, Mapping):
        if not isinstance(value, dict):
            problems.append((path, f"expected a mapping, got {_describe(value)}"))
            return {}
        value_type = args[1] if len(args) == 2 else Any
        return {str(k): _convert(v, value_type, _join(path, str(k)), problems) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return _build_dataclass(value, tp, path, problems)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        problems.append((path, f"expected true or false, got {_describe(value)}"))
        return False
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        problems.append((path, f"expected an integer, got {_describe(value)}"))
        return 0
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        problems.append((path, f"expected a number, got {_describe(value)}"))
        return 0.0
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # ids like 12345 written without quotes
        problems.append((path, f"expected a string, got {_describe(value)}"))
        return ""
    return value


def _build_dataclass(value: Any, cls: Any, path: str, problems: list[tuple[str, str]]) -> Any:
    if not isinstance(value, dict):
        problems.append((path, f"expected a mapping, got {_describe(value)}"))
        return None
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs: dict[str, Any] = {}
    for key, raw in value.items():
        name = str(key)
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(sorted(known))}"
            problems.append((_join(path, name), "unknown key" + hint))
            continue
        kwargs[name] = _convert(raw, hints[name], _join(path, name), problems)
    for name, f in known.items():
        if name in kwargs:
            continue
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:  # type: ignore[misc]
            problems.append((_join(path, name), "required key is missing"))
    try:
        return cls(**kwargs)
    except TypeError:  # a required key is missing: already reported above
        return None


def _validate_tree(value: Any, path: str, problems: list[tuple[str, str]]) -> None:
    """Run every nested dataclass's ``validate()`` (children first, then the parent)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            _validate_tree(getattr(value, f.name), _join(path, f.name), problems)
        check = getattr(value, "validate", None)
        if callable(check):
            for key, problem in check() or []:
                problems.append((_join(path, key) if key else path, problem))
    elif isinstance(value, dict):
        for k, v in value.items():
            _validate_tree(v, _join(path, str(k)), problems)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _validate_tree(v, f"{path}[{i}]", problems)


def _type_name(tp: Any) -> str:
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(map(str, typing.get_args(tp)))
    if origin in (list, tuple):
        return "a list"
    if origin in (dict, Mapping):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


# ------------------------------------------------------------------------------------------------
# the audience sync's configuration (include/audience_sync.yaml)
# ------------------------------------------------------------------------------------------------
MERGE_TAG_RE = re.compile(r"^[A-Z0-9_]{1,10}$")
MergeType = Literal["text", "number", "address", "phone", "date", "url", "imageurl", "radio", "dropdown", "birthday", "zip"]
ADDRESS_PARTS = ("addr1", "addr2", "city", "state", "zip", "country")
ADDRESS_REQUIRED = ("addr1", "city", "state", "zip")
"""Mailchimp rejects an ADDRESS without these ("Please enter a complete address")."""


@dataclass(frozen=True)
class AudienceContact:
    """The postal contact Mailchimp requires on every audience (anti-spam law); used to create one."""

    company: str
    address1: str
    city: str
    state: str
    zip: str
    country: str
    address2: str = ""
    phone: str = ""


@dataclass(frozen=True)
class CampaignDefaults:
    from_name: str
    from_email: str
    subject: str = ""
    language: str = "en"


@dataclass(frozen=True)
class AudienceSpec:
    """Which audience to sync into: by ``id``, or by ``name`` (created when ``create_if_missing``)."""

    id: str | None = None
    name: str | None = None
    create_if_missing: bool = False
    contact: AudienceContact | None = None
    permission_reminder: str | None = None
    campaign_defaults: CampaignDefaults | None = None
    email_type_option: bool = False

    def validate(self) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        if not (self.id or self.name):
            problems.append(("", "give the audience's 'id', or its 'name' to look it up (and create it)"))
        if self.id and self.name:
            problems.append(("", "give either 'id' or 'name', not both"))
        if self.create_if_missing:
            if not self.name:
                problems.append(("create_if_missing", "needs 'name' (an audience given by id cannot be created)"))
            for key in ("contact", "permission_reminder", "campaign_defaults"):
                if getattr(self, key) in (None, ""):
                    problems.append((key, "required when create_if_missing is true (Mailchimp needs it to create an audience)"))
        return problems


@dataclass(frozen=True)
class MergeFieldSpec:
    """One merge field: where its value comes from, its Mailchimp type, how to create it."""

    column: str | None = None
    """Source column (every type except ``address``)."""
    columns: dict[str, str] | None = None
    """``address`` only: part (addr1, addr2, city, state, zip, country) -> source column."""
    type: MergeType = "text"
    name: str | None = None
    """Display name when the field is created (default: the tag)."""
    default: str | None = None
    """Sent when the source value is empty (lets a ``required`` merge field always get a value)."""
    guests: bool = False
    """Also sent for guest rows (``is_guest``). Guests get only the fields with this flag (the
    issue's rule: only the first name, so the shipped config sets it on FNAME alone)."""

    def validate(self) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        if self.type == "address":
            if self.column:
                problems.append(("column", "an address field takes 'columns' (addr1, city, state, zip...), not 'column'"))
            parts = self.columns or {}
            unknown = [p for p in parts if p not in ADDRESS_PARTS]
            if unknown:
                problems.append(("columns", f"unknown address part(s) {', '.join(unknown)}; use {', '.join(ADDRESS_PARTS)}"))
            missing = [p for p in ADDRESS_REQUIRED if p not in parts]
            if missing:
                problems.append(("columns", f"missing address part(s) {', '.join(missing)} (Mailchimp needs addr1, city, state, zip)"))
        else:
            if not self.column:
                problems.append(("column", "required: the source column this merge field takes its value from"))
            if self.columns:
                problems.append(("columns", "only an address field takes 'columns'"))
        return problems


@dataclass(frozen=True)
class TagsSpec:
    """Which source columns become member tags. The sync only adds/removes tags it manages."""

    columns: list[str] = field(default_factory=lambda: ["customer_type"])
    """Columns whose value is one tag."""
    list_columns: list[str] = field(default_factory=lambda: ["tags"])
    """Columns holding several tags separated by ``separator``."""
    separator: str = ","
    max_length: int = 100

    def validate(self) -> list[tuple[str, str]]:
        return [("separator", "must not be empty")] if not self.separator else []


@dataclass(frozen=True)
class ConsentSpec:
    """The status policy (consent first); see sync/audience.py for the rules."""

    double_opt_in: bool = False
    """New opted-in members get ``pending`` (Mailchimp sends a confirmation email) instead of ``subscribed``."""
    opt_in_column: str = "marketing_opt_in"
    no_marketing_column: str = "no_marketing"
    guest_column: str = "is_guest"
    unsubscribe_on_withdrawal: bool = True
    """Withdrawn consent (opt-in true -> false, or no_marketing set) unsubscribes the member."""


@dataclass(frozen=True)
class SourceSpec:
    sql: str = "customers"
    """``include/sql/<sql>.sql``."""
    key_column: str = "customer_id"
    email_column: str = "email"
    created_column: str = "created_at"
    """Decides which of several customers sharing an email is synced (the most recent)."""


@dataclass(frozen=True)
class ErasureSpec:
    enabled: bool = True
    sql: str = "erasure_requests"
    """``include/sql/<sql>.sql`` returning customer_id, email, requested_at."""


@dataclass(frozen=True)
class SyncTuning:
    """Engine knobs (see ``sync.engine.SyncSettings``)."""

    max_operations_per_batch: int = 5000
    chunk_size: int = 2000
    max_attempts: int = 3
    max_failure_share: float = 0.05
    min_failures_to_fail: int = 10
    poll_interval: float = 5.0
    """Seconds between batch status checks."""
    stall_timeout: float = 1800.0
    """Fail (with a hint) when a batch makes no progress for this long."""
    audit_full_walk_hours: float = 24.0
    """The audit before writing reads only members who left marketing, except when the last full
    member walk (its own or the engagement pull's) started longer ago than this: then it reads every
    member changed since, so a member who came back to subscribed is known within this bound
    (``sync/audit.py``). 0 makes every audit a full walk."""

    def validate(self) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        if self.audit_full_walk_hours < 0:
            problems.append(("audit_full_walk_hours", "must not be negative (0: every audit reads every changed member)"))
        for key in ("max_operations_per_batch", "chunk_size", "max_attempts"):
            if getattr(self, key) < 1:
                problems.append((key, "must be at least 1"))
        if not 0 <= self.max_failure_share <= 1:
            problems.append(("max_failure_share", f"{self.max_failure_share} is not a share between 0 and 1 (0.05 = 5 %)"))
        if self.poll_interval <= 0:
            problems.append(("poll_interval", "must be positive"))
        return problems


@dataclass(frozen=True)
class MassDeleteSpec:
    """The guard against an extraction that suddenly returns (almost) nothing: a run removes (deletes
    or archives) at most ``max_share`` of an entity's records in Mailchimp unless its param
    ``allow_mass_delete`` is set. Fewer than ``min_records`` removals pass, unless they are every
    record. Shared by both syncs (``sync/deletions.py``)."""

    max_share: float = 0.10
    min_records: int = 10

    def validate(self) -> list[tuple[str, str]]:
        problems = []
        if not 0 <= self.max_share <= 1:
            problems.append(("max_share", f"{self.max_share} is not a share between 0 and 1"))
        if self.min_records < 0:
            problems.append(("min_records", "must not be negative"))
        return problems


@dataclass(frozen=True)
class AudienceSyncConfig:
    """``include/audience_sync.yaml``."""

    audience: AudienceSpec
    merge_fields: dict[str, MergeFieldSpec] = field(default_factory=dict)
    create_missing_merge_fields: bool = True
    tags: TagsSpec = field(default_factory=TagsSpec)
    consent: ConsentSpec = field(default_factory=ConsentSpec)
    source: SourceSpec = field(default_factory=SourceSpec)
    erasure: ErasureSpec = field(default_factory=ErasureSpec)
    on_delete: Literal["ignore", "archive"] = "ignore"
    """A member whose customer row left the source query: ``archive`` archives it in Mailchimp
    (``DELETE /lists/{id}/members/{hash}``); ``ignore`` (the default) leaves it."""
    mass_delete: MassDeleteSpec = field(default_factory=MassDeleteSpec)
    sync: SyncTuning = field(default_factory=SyncTuning)
    warehouse_conn_id: str = "warehouse_default"
    mailchimp_conn_id: str = "mailchimp_default"
    table_prefix: str = "mailchimp_"
    table_schema: str | None = None

    def validate(self) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        for tag in self.merge_fields:
            if not MERGE_TAG_RE.match(tag):
                problems.append((f"merge_fields.{tag}", "a merge tag is 1-10 characters of A-Z, 0-9 and _ (Mailchimp's rule)"))
        return problems


def load_audience_config(path: str | Path | None = None) -> AudienceSyncConfig:
    """Parse and validate the audience sync config (default: :func:`audience_config_path`)."""
    return load_config(path or audience_config_path(), AudienceSyncConfig)
