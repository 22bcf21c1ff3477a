"""A fast check compiled from an already-loaded schema: True exactly when jsonschema agrees.

Every CLI command parses the stored groups, so validation is on the start-up path.  A
document the compiled check accepts is valid (no ``jsonschema`` import, ~30 ms); only a
document it does not accept goes to a full Draft 4 validator, which then lists the
errors to word (:mod:`infrakit.core.specs.validation`).

It only has to say "valid" exactly when ``jsonschema.Draft4Validator`` finds no error;
"not valid" (or "not sure") hands the document to the full validator.  So it implements
the keywords the CRD uses with Draft 4's own rules, and gives up (returns None: always
the full validator) on a schema with any keyword it does not know.

The schema arrives as a dict: reading the CRD is an adapter's business
(``infrakit.schemas``).  Patterns mean what they mean to the API server (Go's RE2):
see :func:`end_of_text`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

__all__ = ["Check", "compile_check", "end_of_text", "strict"]

Check = Callable[[Any], bool]

_ANNOTATIONS: Final = frozenset({"description", "default", "title", "example", "nullable"})
_CHECKED: Final = frozenset(
    {
        "type",
        "properties",
        "additionalProperties",
        "required",
        "items",
        "minimum",
        "maximum",
        "minLength",
        "maxLength",
        "maxItems",
        "pattern",
        "enum",
    }
)


def strict(schema: Mapping[str, Any]) -> dict[str, Any]:
    """Forbid unknown fields, as kubectl's strict field validation does on the server."""
    out: dict[str, Any] = {k: v for k, v in schema.items() if not k.startswith("x-kubernetes")}
    out.pop("format", None)  # int32/int64/date-time: bounds are stated separately
    if "properties" in schema:
        out["properties"] = {k: strict(v) for k, v in schema["properties"].items()}
        if not schema.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    if "items" in schema:
        out["items"] = strict(schema["items"])
    return out


@functools.cache
def end_of_text(pattern: str) -> re.Pattern[str]:
    """Compile ``pattern`` with RE2's meaning of "$" (end of text, never before a final newline).

    Every "$" outside a character class and not escaped becomes ``\\Z``; ``\\d``, ``\\w`` and
    ``\\s`` match ASCII only, as in RE2.
    """
    out: list[str] = []
    in_class = escaped = False
    for char in pattern:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif in_class:
            in_class = char != "]" or out[-1] == "["
        elif char == "[":
            in_class = True
        elif char == "$":
            out.append(r"\Z")
            continue
        out.append(char)
    return re.compile("".join(out), re.ASCII)


def compile_check(schema: Any) -> Check | None:
    """A fast check for a Draft 4 ``schema`` (the subset the CRD uses): True exactly when
    jsonschema finds no error; None when the schema uses what it does not implement."""
    if not isinstance(schema, dict) or not set(schema) <= _CHECKED | _ANNOTATIONS:
        return None
    checks: list[Check] = []
    kind = schema.get("type")
    if kind is not None:
        type_check = _TYPES.get(kind) if isinstance(kind, str) else None
        if type_check is None:
            return None  # a list of types, an unknown type
        checks.append(type_check)
    for keywords, compile_part in _PARTS:
        if not keywords.isdisjoint(schema):
            part = compile_part(schema)
            if part is None:
                return None
            checks.append(part)
    if "enum" in schema:
        allowed = schema["enum"]
        if not isinstance(allowed, list) or not all(_is_scalar(v) for v in allowed):
            return None
        # jsonschema's equality: True is not 1, 1 is 1.0; scalars only (anything else: jsonschema).
        keys = {_scalar_key(v) for v in allowed}
        checks.append(lambda value: _is_scalar(value) and _scalar_key(value) in keys)
    return lambda value: all(check(value) for check in checks)


def _compile_object(schema: dict[str, Any]) -> Check | None:
    properties = schema.get("properties", {})
    required = schema.get("required", [])
    extra = schema.get("additionalProperties", True)
    if not isinstance(properties, dict) or not isinstance(required, list) or not isinstance(extra, bool):
        return None  # additionalProperties as a schema: not used by the CRD
    compiled: dict[str, Check] = {}
    for name, subschema in properties.items():
        check = compile_check(subschema)
        if check is None:
            return None
        compiled[name] = check
    needed = tuple(required)

    def check_object(value: Any) -> bool:
        if not isinstance(value, dict):
            return True  # these keywords ignore other types (``type`` judges them)
        if not extra and not value.keys() <= compiled.keys():
            return False
        if any(name not in value for name in needed):
            return False
        return all(check(value[name]) for name, check in compiled.items() if name in value)

    return check_object


def _compile_array(schema: dict[str, Any]) -> Check | None:
    items = schema.get("items")
    item_check = compile_check(items) if items is not None else (lambda value: True)
    limit = schema.get("maxItems")
    if item_check is None or (limit is not None and type(limit) is not int):
        return None

    def check_array(value: Any) -> bool:
        if not isinstance(value, list):
            return True
        if limit is not None and len(value) > limit:
            return False
        return all(item_check(item) for item in value)

    return check_array


def _compile_bounds(schema: dict[str, Any]) -> Check | None:
    low, high = schema.get("minimum"), schema.get("maximum")
    if any(bound is not None and type(bound) not in (int, float) for bound in (low, high)):
        return None

    def check_number(value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float):
            # Not a number for Draft 4 (bool), or another kind of number (Decimal...): jsonschema decides.
            return isinstance(value, bool) or not _is_number(value)
        return (low is None or value >= low) and (high is None or value <= high)

    return check_number


def _compile_string(schema: dict[str, Any]) -> Check | None:
    shortest, longest, pattern = schema.get("minLength"), schema.get("maxLength"), schema.get("pattern")
    if any(n is not None and type(n) is not int for n in (shortest, longest)):
        return None
    if pattern is not None and not isinstance(pattern, str):
        return None
    regex = end_of_text(pattern) if pattern is not None else None  # RE2's "$", as the API server

    def check_string(value: Any) -> bool:
        if not isinstance(value, str):
            return True
        if shortest is not None and len(value) < shortest:
            return False
        if longest is not None and len(value) > longest:
            return False
        return regex is None or regex.search(value) is not None

    return check_string


# Each group of keywords and the part of the check that implements it, in the order they run.
_PARTS: Final[tuple[tuple[frozenset[str], Callable[[dict[str, Any]], Check | None]], ...]] = (
    (frozenset({"properties", "additionalProperties", "required"}), _compile_object),
    (frozenset({"items", "maxItems"}), _compile_array),
    (frozenset({"minimum", "maximum"}), _compile_bounds),
    (frozenset({"minLength", "maxLength", "pattern"}), _compile_string),
)


def _is_scalar(value: Any) -> bool:
    return value is None or type(value) in (str, int, float, bool)


def _is_number(value: Any) -> bool:
    import numbers

    return isinstance(value, numbers.Number)


def _scalar_key(value: Any) -> tuple[str, Any]:
    if isinstance(value, bool) or value is None:
        return ("literal", value)
    if isinstance(value, int | float):
        return ("number", value)
    return (type(value).__name__, value)


_TYPES: Final[dict[str, Check]] = {
    "object": lambda value: isinstance(value, dict),
    "array": lambda value: isinstance(value, list),
    "string": lambda value: isinstance(value, str),
    "integer": lambda value: isinstance(value, int) and not isinstance(value, bool),
    # Draft 4's number is any numbers.Number but bool; only int and float are decided here.
    "number": lambda value: isinstance(value, int | float) and not isinstance(value, bool),
    "boolean": lambda value: isinstance(value, bool),
    "null": lambda value: value is None,
}
