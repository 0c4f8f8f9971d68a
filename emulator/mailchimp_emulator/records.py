"""Compact stored records for the emulator's biggest collection: list members.

A member stored as a plain dict in the API's shape cost about 3 KB (a 31-key dict, nested
``location``/``stats``/``interests`` dicts, a dict per tag, and a fresh string for every repeated
value the JSON decoder produced), so a 1,000,000-member benchmark needed about 4 GB. A
:class:`Member` keeps the same data in ``__slots__``:

* fields that are the same for every member made through the API (``stats``, ``member_rating``,
  the ``sms_*`` fields...) are class-level defaults, stored per member only once set;
* ``location``, ``interests`` and ``marketing_permissions`` are created on first access;
* ``last_changed`` and ``tags_count`` are derived (from ``_changed`` and ``tags``), so they can
  never disagree with what they are derived from;
* tags are :class:`MemberTag` slots objects, ADDRESS merge values :class:`Address` tuples;
  repeated values (statuses, names, cities...) are shared through :func:`shared`.

Members still read and write like dicts (``member["status"] = "unsubscribed"``), so the member
rules in ``members.py`` and the other resource modules are unchanged; :meth:`Member.api_dict` is
the API form and :meth:`Member.to_dict` / :meth:`Member.from_dict` the JSON of ``--state`` files
(the same shape as before, private keys included).
"""

from __future__ import annotations

from operator import attrgetter
from typing import Any, Callable, Iterator

from .state import iso

_SHARE_LIMIT = 50_000
"""Distinct values remembered per field by :func:`shared`: repeated values (first names, cities)
are met early and stay shared; unique ones (phone numbers) stop being remembered at the limit."""
_shared: dict[str, dict[str, str]] = {}


def shared(field: str, value: Any) -> Any:
    """``value``, or an equal string already stored for ``field`` (one object instead of many)."""
    if value.__class__ is not str:
        return value
    seen = _shared.get(field)
    if seen is None:
        seen = _shared[field] = {}
    return interned(seen, value, _SHARE_LIMIT)


def interned(seen: dict[Any, Any], value: Any, limit: int) -> Any:
    """The object equal to ``value`` already in ``seen``, else ``value`` (remembered while ``seen``
    holds fewer than ``limit``): the one interning rule of the compact records."""
    found = seen.get(value)
    if found is not None:
        return found
    if len(seen) < limit:
        seen[value] = value
    return value


class MemberTag:
    """One tag on a member: ``{"id", "name", "date_added"}`` read like a dict, in 56 bytes."""

    __slots__ = ("id", "name", "date_added")

    def __init__(self, id: int, name: str, date_added: str) -> None:
        self.id, self.name, self.date_added = id, name, date_added

    def __getitem__(self, key: str) -> Any:
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None

    def keys(self) -> tuple[str, ...]:
        return self.__slots__

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "date_added": self.date_added}


class Address(tuple):  # type: ignore[type-arg]
    """An ADDRESS merge value, stored as a 6-tuple (88 bytes instead of a 272-byte dict); its API
    form is :meth:`as_dict`."""

    __slots__ = ()
    KEYS = ("addr1", "addr2", "city", "state", "zip", "country")

    @classmethod
    def of(cls, value: dict[str, Any]) -> "Address":
        return cls(shared(key, value.get(key, "")) for key in cls.KEYS)

    def as_dict(self) -> dict[str, Any]:
        return dict(zip(self.KEYS, self))

    def __str__(self) -> str:  # what str() of the dict it stands for gives (segment conditions)
        return str(self.as_dict())


def merge_view(values: dict[str, Any]) -> dict[str, Any]:
    """Merge values in their API form: a fresh dict, ADDRESS values as dicts."""
    return {k: v.as_dict() if v.__class__ is Address else v for k, v in values.items()}


def _location() -> dict[str, Any]:
    return {"latitude": 0, "longitude": 0, "gmtoff": 0, "dstoff": 0, "country_code": "", "timezone": "", "region": ""}


_EMPTY_LOCATION = _location()
_EMPTY_STATS = {"avg_open_rate": 0, "avg_click_rate": 0}
_EMPTY_INTERESTS: dict[str, Any] = {}
_EMPTY_LIST: list[Any] = []
"""Shared by every rendered member that has no location / stats of its own: rendered members are
encoded at once and never changed (the contract of ``collections.filter_fields``)."""

_CONSTANT_DEFAULTS: dict[str, Any] = {
    "consents_to_one_to_one_messaging": True,
    "sms_phone_number": "",
    "sms_subscription_status": "",
    "sms_subscription_last_updated": "",
    "member_rating": 2,
    "email_client": "",
}
"""Fields every API-made member has with the same value; a member stores one only once it is set."""
_MUTABLE_DEFAULTS: dict[str, Callable[[], Any]] = {"stats": lambda: {"avg_open_rate": 0, "avg_click_rate": 0}}
_LAZY_SLOTS: dict[str, Callable[[], Any]] = {"interests": dict, "location": _location, "marketing_permissions": list}
"""Slots left None until first read (most members never have these set)."""
_SHARED_SLOTS = frozenset({"email_type", "status", "unsubscribe_reason", "timestamp_opt", "timestamp_signup",
                           "language", "source", "list_id", "full_name", "ip_signup", "ip_opt"})

API_FIELDS = (
    "id", "email_address", "unique_email_id", "contact_id", "full_name", "web_id", "email_type", "status",
    "unsubscribe_reason", "consents_to_one_to_one_messaging", "sms_phone_number", "sms_subscription_status",
    "sms_subscription_last_updated", "merge_fields", "interests", "stats", "ip_signup", "timestamp_signup", "ip_opt",
    "timestamp_opt", "member_rating", "last_changed", "language", "vip", "email_client", "location",
    "marketing_permissions", "source", "tags_count", "tags", "list_id",
)
"""The keys of a member's API form, in Mailchimp's order."""
PRIVATE_FIELDS = ("_changed", "_created")
_DERIVED = frozenset({"last_changed", "tags_count"})


class Member:
    """A list member in ``__slots__``, read and written like the dict it replaces (see module doc)."""

    __slots__ = (
        "id", "email_address", "unique_email_id", "contact_id", "full_name", "web_id", "email_type", "status",
        "unsubscribe_reason", "merge_fields", "interests", "ip_signup", "timestamp_signup", "ip_opt",
        "timestamp_opt", "language", "vip", "location", "marketing_permissions", "source", "tags", "list_id",
        "_changed", "_created", "_other",
    )

    def __init__(self, **values: Any) -> None:
        self._other: dict[str, Any] | None = None
        for name in _LAZY_SLOTS:
            setattr(self, name, None)
        self.tags: list[MemberTag] = []
        for key, value in values.items():
            self[key] = value

    @classmethod
    def new(cls, *, id: str, email_address: str, unique_email_id: str, contact_id: str, web_id: int, status: str,
            merge_fields: dict[str, Any], timestamp_opt: str, source: str, list_id: str, changed: float) -> "Member":
        """A member as the API creates it (the other fields at their defaults), assigned directly:
        a million-member import creates a million of these."""
        m = cls.__new__(cls)
        m.id, m.email_address, m.unique_email_id, m.contact_id, m.web_id = id, email_address, unique_email_id, contact_id, web_id
        m.status, m.source, m.list_id = shared("status", status), shared("source", source), shared("list_id", list_id)
        m.timestamp_opt = shared("timestamp_opt", timestamp_opt)
        m.merge_fields, m._changed, m._created = merge_fields, changed, changed
        m.full_name = m.unsubscribe_reason = m.ip_signup = m.timestamp_signup = m.ip_opt = m.language = ""
        m.email_type, m.vip, m.tags, m._other = "html", False, [], None
        m.interests = m.location = m.marketing_permissions = None
        return m

    # dict-like access ---------------------------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        getter = _GETTERS.get(key)
        if getter is None:
            return self._constant(key)
        try:
            return getter(self)
        except AttributeError:  # a slot never set
            raise KeyError(key) from None

    def _constant(self, key: str) -> Any:
        if self._other is not None and key in self._other:
            return self._other[key]
        if key in _CONSTANT_DEFAULTS:
            return _CONSTANT_DEFAULTS[key]
        if key in _MUTABLE_DEFAULTS:  # handed out for changing in place: the member keeps its own
            value = _MUTABLE_DEFAULTS[key]()
            self._set_other(key, value)
            return value
        raise KeyError(key)

    def __setitem__(self, key: str, value: Any) -> None:
        if key in _DERIVED:
            raise KeyError(f"{key} is derived; change {'_changed' if key == 'last_changed' else 'tags'} instead")
        if key in _SLOT_SET:
            if key in _SHARED_SLOTS:
                value = shared(key, value)
            elif key == "merge_fields":
                value = {k: Address.of(v) if v.__class__ is dict and "addr1" in v else v for k, v in value.items()}
            elif key == "tags":
                value = [t if isinstance(t, MemberTag) else MemberTag(t["id"], t["name"], t.get("date_added", ""))
                         for t in value]
            setattr(self, key, value)
        else:
            self._set_other(key, value)

    def _set_other(self, key: str, value: Any) -> None:
        if self._other is None:
            self._other = {}
        self._other[key] = value

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __contains__(self, key: object) -> bool:
        return key in _GETTERS or key in _CONSTANT_DEFAULTS or key in _MUTABLE_DEFAULTS or bool(
            self._other and key in self._other)

    def keys(self) -> Iterator[str]:
        yield from API_FIELDS
        yield from PRIVATE_FIELDS
        if self._other:
            yield from (k for k in self._other if k not in _KNOWN)

    # conversions --------------------------------------------------------------------------------
    def api_dict(self) -> dict[str, Any]:
        """The member's API fields as a fresh dict (nested values shared: encode it, do not keep it);
        tags as ``{"id", "name"}``."""
        # spelled out (not a loop over API_FIELDS): a page of 1,000 members renders this 1,000 times
        out = {
            "id": self.id,
            "email_address": self.email_address,
            "unique_email_id": self.unique_email_id,
            "contact_id": self.contact_id,
            "full_name": self.full_name,
            "web_id": self.web_id,
            "email_type": self.email_type,
            "status": self.status,
            "unsubscribe_reason": self.unsubscribe_reason,
            "consents_to_one_to_one_messaging": True,
            "sms_phone_number": "",
            "sms_subscription_status": "",
            "sms_subscription_last_updated": "",
            "merge_fields": merge_view(self.merge_fields),
            "interests": _EMPTY_INTERESTS if self.interests is None else self.interests,
            "stats": _EMPTY_STATS,
            "ip_signup": self.ip_signup,
            "timestamp_signup": self.timestamp_signup,
            "ip_opt": self.ip_opt,
            "timestamp_opt": self.timestamp_opt,
            "member_rating": 2,
            "last_changed": iso(self._changed),
            "language": self.language,
            "vip": self.vip,
            "email_client": "",
            "location": _EMPTY_LOCATION if self.location is None else self.location,
            "marketing_permissions": _EMPTY_LIST if self.marketing_permissions is None else self.marketing_permissions,
            "source": self.source,
            "tags_count": len(self.tags),
            "tags": [{"id": t.id, "name": t.name} for t in self.tags],
            "list_id": self.list_id,
        }
        if self._other:  # constants changed on this member, and keys the API form does not know
            out.update(self._other)
        return out

    def float_free(self) -> bool:
        """True when the API form certainly holds no float (``Reply.float_free``: batch results
        then encode it with msgspec). Only client-supplied values can be floats: merge values,
        the optional fields ``extra`` sets, and the lazily made or unusual fields, which are
        answered False (the standard library encodes those members) rather than walked."""
        if (self._other is not None or self.location is not None or self.interests is not None
                or self.marketing_permissions is not None):
            return False
        for value in (self.email_type, self.language, self.vip, self.ip_signup, self.timestamp_signup, self.ip_opt,
                      self.timestamp_opt, self.full_name, self.unsubscribe_reason):
            if value.__class__ not in _NO_FLOAT:
                return False
        for value in self.merge_fields.values():
            if value.__class__ not in _NO_FLOAT and not (
                    value.__class__ is Address and all(part.__class__ in _NO_FLOAT for part in value)):
                return False
        return True

    def to_dict(self) -> dict[str, Any]:
        """The stored form of ``--state`` files: API fields, full tags and the private keys."""
        out = {key: self[key] for key in self.keys()}
        out["merge_fields"] = merge_view(self.merge_fields)
        out["tags"] = [t.to_dict() for t in self.tags]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Member":
        return cls(**{k: v for k, v in data.items() if k not in _DERIVED})

    def __repr__(self) -> str:
        return f"Member({self.email_address!r}, {self.status!r})"


def _lazy(name: str, make: Callable[[], Any]) -> Callable[[Member], Any]:
    def get(member: Member) -> Any:
        value = getattr(member, name)
        if value is None:
            value = make()
            setattr(member, name, value)
        return value

    return get


_NO_FLOAT = frozenset({str, int, bool, type(None)})
"""Scalar types msgspec and ``json.dumps`` write alike."""
_SLOT_SET = frozenset(Member.__slots__) - {"_other"}
_GETTERS: dict[str, Callable[[Member], Any]] = {name: attrgetter(name) for name in _SLOT_SET}
_GETTERS.update({name: _lazy(name, make) for name, make in _LAZY_SLOTS.items()})
_GETTERS["last_changed"] = lambda m: iso(m._changed)
_GETTERS["tags_count"] = lambda m: len(m.tags)
_KNOWN = frozenset(API_FIELDS) | frozenset(PRIVATE_FIELDS)

__all__ = ["API_FIELDS", "Address", "Member", "MemberTag", "PRIVATE_FIELDS", "merge_view", "shared"]
