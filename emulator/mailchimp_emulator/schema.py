"""Request-body schemas: validate a JSON body and answer like Mailchimp when it does not fit.

Mailchimp answers schema problems with ``400 Invalid Resource`` and an ``errors`` array of
``{field, message}``: missing required properties are reported together on the containing object
(``field`` is ``""`` at the top level, ``lines.item:0`` inside an array), wrong types as
"Schema describes string, NULL found instead". Validation collects every problem before answering,
so a client sees all of them at once. Used by the e-commerce and campaign modules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping

from .errors import ApiError, schema_error


@dataclass(frozen=True)
class Field:
    """The schema of one JSON value.

    ``kind`` is a JSON-schema type name. ``id_like`` strings also accept numbers (stored as text,
    as the newer SDKs send ids as ``string | number``); ``number`` also accepts numeric strings.
    """

    kind: str
    max_length: int | None = None
    enum: tuple[str, ...] = ()
    props: Mapping[str, "Field"] | None = None
    required: tuple[str, ...] = ()
    items: "Field | None" = None
    id_like: bool = False
    accepts: type | None = field(init=False, repr=False, compare=False)
    """The Python type taken as is, with nothing to check or convert (``str`` for a string without
    length or enum limits, ``float`` for a number...): the fast path of :func:`_check_object`."""
    fields: tuple[tuple[str, "Field"], ...] = field(init=False, repr=False, compare=False)
    """``props`` as ``(name, schema)`` pairs, in order."""

    def __post_init__(self) -> None:
        plain_string = self.kind == "string" and self.max_length is None and not self.enum
        accepts = str if plain_string else _ACCEPTED_AS_IS.get(self.kind)
        object.__setattr__(self, "accepts", accepts)
        object.__setattr__(self, "fields", tuple((self.props or {}).items()))


_ACCEPTED_AS_IS: dict[str, type] = {"number": float, "integer": int, "boolean": bool}


_JSON_TYPE_NAMES = {
    type(None): "NULL",
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
}


def _type_name(value: Any) -> str:
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)


Location = Any
"""Where a value sits in the body, built lazily: ``""`` (the body), or ``(parent, name)`` /
``(parent, index)``. Validation is hot (100k-operation batches) and a path string is only needed
for an error, so it is spelled out by :func:`_where` only then."""


def _where(loc: Location) -> str:
    """The error ``field`` of a location: ``lines.item:0.price``, ``customer.id``, ``""`` for the body."""
    if loc.__class__ is str:
        return loc
    parent, part = loc
    base = _where(parent)
    if part.__class__ is int:
        return f"{base}.item:{part}"
    return f"{base}.{part}" if base else part


def _mismatch(value: Any, spec: Field, loc: Location) -> dict[str, str]:
    """The error for a value of the wrong JSON type (built only when needed: validation is hot)."""
    return {"field": _where(loc), "message": f"Schema describes {spec.kind}, {_type_name(value)} found instead"}


def _check(value: Any, spec: Field, loc: Location, errors: list[dict[str, str]], *, partial: bool = False) -> Any:
    """Return ``value`` normalised to ``spec``; append ``{field, message}`` for each problem.

    Each kind tests the usual, valid case first (a ``str`` for a string, a ``float`` for a number).
    """
    kind = spec.kind
    if kind == "string":
        if value.__class__ is not str:
            if spec.id_like and isinstance(value, int) and not isinstance(value, bool):
                value = str(value)
            elif not isinstance(value, str):
                errors.append(_mismatch(value, spec, loc))
                return value
        if spec.max_length is not None and len(value) > spec.max_length:
            message = f"String is too long ({len(value)} characters); the maximum is {spec.max_length}."
            errors.append({"field": _where(loc), "message": message})
        if spec.enum and value not in spec.enum:
            message = f"Value is not one of the allowed values: {', '.join(spec.enum)}."
            errors.append({"field": _where(loc), "message": message})
        return value
    if kind == "number":
        if value.__class__ is float:
            return value
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                errors.append(_mismatch(value, spec, loc))
                return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            errors.append(_mismatch(value, spec, loc))
            return value
        return float(value)
    if kind == "integer":
        if value.__class__ is int:
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            errors.append(_mismatch(value, spec, loc))
        return value
    if kind == "boolean":
        if not isinstance(value, bool):
            errors.append(_mismatch(value, spec, loc))
        return value
    if kind == "object":
        if not isinstance(value, dict):
            errors.append(_mismatch(value, spec, loc))
            return value
        return _check_object(value, spec, loc, errors, partial=partial)
    if kind == "array":
        if not isinstance(value, list):
            errors.append(_mismatch(value, spec, loc))
            return value
        item_spec = spec.items or Field("string")
        return [_check(v, item_spec, (loc, i), errors) for i, v in enumerate(value)]
    raise AssertionError(f"unknown schema kind {spec.kind!r}")


def _check_object(
    value: dict[str, Any], spec: Field, loc: Location, errors: list[dict[str, str]], *, partial: bool
) -> dict[str, Any]:
    """The known properties of ``value``, checked, in the schema's order (unknown ones dropped)."""
    missing = [name for name in spec.required if value.get(name) in (None, "")] if not partial else []
    if missing:
        errors.append({"field": _where(loc), "message": "Required fields were not provided: " + ", ".join(missing)})
    out: dict[str, Any] = {}
    for name, sub in spec.fields:
        if name not in value or (missing and name in missing):
            continue
        item = value[name]
        out[name] = item if item.__class__ is sub.accepts else _check(item, sub, (loc, name), errors)
    return out


def validate(body: Any, spec: Field, *, partial: bool = False) -> dict[str, Any]:
    """Validate a request body; ``partial`` (PATCH) skips the top-level required fields.

    Unknown properties are ignored, as Mailchimp does. Raises 400 Invalid Resource listing every
    problem found.
    """
    errors: list[dict[str, str]] = []
    if not isinstance(body, dict):
        message = f"Schema describes object, {_type_name(body)} found instead"
        raise schema_error([{"field": "", "message": message}])
    out = _check_object(body, spec, "", errors, partial=partial)
    if errors:
        raise schema_error(errors)
    return out


def field_error(name: str, message: str) -> ApiError:
    """A 400 Invalid Resource naming one field (for rules a schema cannot express)."""
    return schema_error([{"field": name, "message": message}])


def parse_time(value: str, name: str) -> datetime:
    """Parse an ISO 8601 timestamp (``Z`` or an offset; naive means UTC) or answer 400 naming ``name``."""
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        message = f"'{value}' is not a valid ISO 8601 date-time, e.g. 2015-10-21T15:41:36+00:00."
        raise field_error(name, message) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
