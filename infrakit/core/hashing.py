"""The configuration hash that tags every instance: ``infrakit.config_sha``.

InfraKit decides whether an instance is up to date by comparing this tag with the
hash of the group's current spec.  We compute it exactly as InfraKit's group plugin
does, so instances made by either are recognised by the other:

    sha1( stable_json({Plugin, Properties} of the instance plugin)
          + stable_json({Plugin, Properties} of the flavor plugin) )
    -> base32, lower case, "=" padding removed

``stable_json`` is Go's ``json.MarshalIndent(v, "  ", "  ")`` of the document after a
round trip through ``map[string]interface{}``: keys sorted, numbers as float64,
HTML-sensitive characters escaped.  The allocation (size, logical IDs) and the update
strategy never enter the hash, so a resize never triggers a rolling update.

Pure functions only; no I/O.
"""

from __future__ import annotations

import base64
import decimal
import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

__all__ = ["config_sha", "go_stable_json"]

_PREFIX = "  "
_INDENT = "  "

# Go's encoder escapes these for safe embedding in HTML; Python's does not.
_GO_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def config_sha(*, instance: Mapping[str, Any], flavor: Mapping[str, Any]) -> str:
    """Hash two ``{"Plugin": name, "Properties": {...}}`` documents as InfraKit does."""
    hasher = hashlib.sha1(usedforsecurity=False)
    hasher.update(go_stable_json(instance).encode("utf-8"))
    hasher.update(go_stable_json(flavor).encode("utf-8"))
    return base64.b32encode(hasher.digest()).decode("ascii").lower().rstrip("=")


def go_stable_json(value: Any) -> str:
    """Render ``value`` byte for byte as Go's ``json.MarshalIndent(v, "  ", "  ")``."""
    return _render(value, depth=0)


def _render(value: Any, *, depth: int) -> str:
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        inner = "\n" + _PREFIX + _INDENT * (depth + 1)
        items = (inner + _string(str(k)) + ": " + _render(value[k], depth=depth + 1) for k in sorted(value, key=str))
        return "{" + ",".join(items) + "\n" + _PREFIX + _INDENT * depth + "}"
    if isinstance(value, list | tuple):
        if not value:
            return "[]"
        inner = "\n" + _PREFIX + _INDENT * (depth + 1)
        return (
            "[" + ",".join(inner + _render(v, depth=depth + 1) for v in value) + "\n" + _PREFIX + _INDENT * depth + "]"
        )
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int | float):
        return _number(float(value))
    return _string(str(value))


def _string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False).translate(_GO_ESCAPES)


def _number(number: float) -> str:
    """Format a float64 as Go's encoding/json does (ES6 number-to-string)."""
    if math.isnan(number) or math.isinf(number):
        raise ValueError(f"unsupported number {number!r}: JSON has no NaN or infinity")
    if number == 0:
        # Go keeps the sign of zero: strconv.FormatFloat(-0, 'f', -1, 64) is "-0".
        return "-0" if math.copysign(1.0, number) < 0 else "0"
    shortest = repr(number)  # shortest digits that round-trip, like Go's 'g' with precision -1
    magnitude = abs(number)
    if 1e-6 <= magnitude < 1e21:
        return format(decimal.Decimal(shortest).normalize(), "f")
    mantissa, _, exponent = shortest.partition("e")
    sign = "-" if exponent.startswith("-") else "+"
    return f"{mantissa}e{sign}{exponent.lstrip('+-').lstrip('0') or '0'}"
