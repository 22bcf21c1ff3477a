"""How a bad Group is reported: :class:`SpecError`, the path of a field, and the words.

Every refusal names the field (``spec.allocation.size``) and says what to do, in one
line.  A schema violation found by a full Draft 4 validator (an adapter's, see
:mod:`infrakit.core.specs.validation`) arrives as a :class:`Violation` and is worded by
:func:`explain`, so the words are the core's whichever validator found it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

__all__ = ["SpecError", "Violation", "explain", "field_path", "short", "type_name"]


class SpecError(ValueError):
    """A document that is not a valid Group; ``field`` names where, ``message`` what to do."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


_PATH_SPECIAL: Final = frozenset(".[]'\" \\")


def field_path(path: str, key: str | int) -> str:
    """``path.key``, ``path[3]``, or ``path['odd key']`` for a key that is not plain text.

    Keys come from the user: a key holding a newline or a dot must not break the one-line
    error, nor pass for two levels.
    """
    if isinstance(key, int):
        return f"{path}[{key}]"
    if not key or not key.isprintable() or any(c in _PATH_SPECIAL for c in key):
        return f"{path}[{key!r}]"
    return f"{path}.{key}" if path else key


class Violation:
    """One error of a full Draft 4 validator, as :func:`explain` words it.

    The fields of jsonschema's ``ValidationError`` under plainer names: ``rule`` is its
    ``validator`` (the keyword), ``expected`` its ``validator_value``, ``got`` its
    ``instance``, ``path`` its ``absolute_path``; ``message`` is the validator's own
    words, used only for a keyword the CRD does not use.
    """

    # A plain class: a dataclass costs ~0.5 ms to define, on the start-up of every command.
    __slots__ = ("expected", "got", "message", "path", "rule", "schema")

    def __init__(
        self, *, rule: str, path: tuple[str | int, ...], expected: Any, got: Any, schema: Any, message: str
    ) -> None:
        self.rule = rule
        self.path = path
        self.expected = expected
        self.got = got
        self.schema = schema
        self.message = message

    def __repr__(self) -> str:
        return f"Violation(rule={self.rule!r}, path={self.path!r}, got={self.got!r})"


def explain(violation: Violation, *, more: int) -> SpecError:
    """The :class:`SpecError` of the first violation of ``spec``; ``more`` counts the others."""
    path = functools.reduce(field_path, violation.path, "spec")
    value, got, schema, rule = violation.expected, violation.got, violation.schema, violation.rule
    words = _WORDS.get(rule)
    message: str
    if words is not None:
        message = words(value, got)
    elif rule == "required":
        missing = next((k for k in value if isinstance(got, Mapping) and k not in got), "?")
        path, message = field_path(path, missing), "is required"
    elif rule == "additionalProperties":
        allowed = ", ".join(sorted(schema.get("properties", {})))
        unknown = sorted(set(got) - set(schema.get("properties", {}))) if isinstance(got, Mapping) else []
        path = field_path(path, unknown[0]) if unknown else path
        message = f"unknown field; allowed here: {allowed}"
    else:  # pragma: no cover - rules the CRD does not use yet
        message = violation.message
    if more:
        message += f" (and {more} more problem{'s' if more > 1 else ''})"
    return SpecError(path, message)


_PATTERNS: Final = {
    "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$": (
        "use lowercase letters, digits and '-', starting and ending with a letter or digit"
    ),
    "^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$": (
        "use at most 63 letters, digits, '.', '_' and '-', starting and ending with a letter or digit"
    ),
}


# What a rule's violation says, from the rule's value in the schema and the value found.
_WORDS: Final[dict[str, Callable[[Any, Any], str]]] = {
    "type": lambda value, got: f"must be {_article(str(value))}, got {type_name(got)}",
    "minimum": lambda value, got: f"must be at least {value}, got {got}",
    "maximum": lambda value, got: f"must be at most {value}, got {got}",
    "pattern": lambda value, got: f"{got!r} is not allowed: {_PATTERNS.get(value, f'it must match {value}')}",
    "minLength": lambda value, got: "must not be empty" if value == 1 else f"must be at least {value} characters",
    "maxLength": lambda value, got: f"must be at most {value} characters, got {len(got)}",
    "maxItems": lambda value, got: f"must have at most {value} items, got {len(got)}",
    "enum": lambda value, got: f"must be one of {', '.join(map(repr, value))}, got {got!r}",
}


def _article(type_name: str) -> str:
    return {"integer": "an integer", "object": "a mapping", "array": "a list", "boolean": "true or false"}.get(
        type_name, f"a {type_name}"
    )


def type_name(value: Any) -> str:
    """What ``value`` is, with the value when it is short: ``number -1``, ``string 'x'``, ``a mapping``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {value!r}"
    if isinstance(value, int | float):
        return f"number {value!r}"
    if isinstance(value, str):
        return f"string {short(value)!r}"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, Iterable):
        return "a list"
    return type(value).__name__


def short(text: str, limit: int = 40) -> str:
    """``text``, or its first ``limit - 3`` characters and ``...``."""
    return text if len(text) <= limit else text[: limit - 3] + "..."
