"""JSON's values and nothing else: the one check every document and stored value passes.

A Group travels as JSON (to the API server, into the config hash, into instance files),
and so does whatever a plugin stores or sends.  :func:`check_json` is the one rule for
all of them (the parser, the local store, the instance plugins, both ends of the RPC);
:func:`json_type` is the one name of a value's kind that their errors use.
"""

from __future__ import annotations

import datetime
import functools
import math
from collections.abc import Mapping
from typing import Any, Final

from infrakit.core.specs.errors import SpecError, field_path, short

__all__ = ["MAX_VALUES", "check_json", "json_type"]

# A Group's values once YAML aliases are expanded: a 1 MiB file holds at most ~500,000,
# while a handful of aliases can make billions (each check and the hash walk them all).
MAX_VALUES: Final = 1 << 20


def check_json(value: Any, *, field: str = "") -> None:
    """Refuse anything JSON cannot carry, naming the path of the first offender.

    A Group travels as JSON (to the API server, into the config hash, into instance
    files), so only JSON's values are accepted: mappings with string keys, lists,
    strings of valid Unicode, finite numbers that fit a float64 (the hash converts every
    number to one, as Go does), booleans and null.  YAML can say more (binary, sets,
    ordered maps, timestamps, non-string keys, ``.inf``); those would be saved, then
    crash whatever reads them later.  Iterative, so no depth crashes it; paths are
    spelled out only for the error, so a long (or cyclic) chain costs no more than its
    values.

    For what a plugin stores or sends (an instance file, an RPC answer), the same rule:
    written, such a value is not JSON to other readers, or comes back as something else.
    """
    stack: list[tuple[Any, _Link | None]] = [(value, None)]
    seen = 0
    while stack:
        node, link = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            raise SpecError(
                field, f"holds more than {MAX_VALUES} values (after expanding YAML aliases); a Group is far smaller"
            )
        problem = _json_problem(node)
        if problem:
            raise SpecError(_spell(field, link), problem)
        if isinstance(node, Mapping):
            for key, child in node.items():
                if not isinstance(key, str):
                    raise SpecError(
                        _spell(field, link), f"the key {key!r} is not a string; JSON keys are strings: quote it"
                    )
                key_problem = _text_problem(key)
                if key_problem:
                    raise SpecError(_spell(field, link), f"a key {key_problem}")
                stack.append((child, (link, key)))
        elif isinstance(node, list):
            stack.extend((child, (link, index)) for index, child in enumerate(node))


def json_type(value: Any) -> str | None:
    """JSON's name of ``value``'s type (``null``, ``boolean``, ``number``, ``string``,
    ``array``, ``object``), or None for a value JSON has no type for."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return None


_Link = tuple[Any, str | int]  # (parent link or None, key): a path, spelled out on demand


def _spell(field: str, link: _Link | None) -> str:
    keys: list[str | int] = []
    while link is not None:
        link, key = link
        keys.append(key)
    return functools.reduce(field_path, reversed(keys), field)


def _json_problem(value: Any) -> str | None:
    """Why ``value`` itself (not its children) is not JSON, or None."""
    if value is None or isinstance(value, bool | list | Mapping):
        return None
    if isinstance(value, str):
        return _text_problem(value)
    if isinstance(value, int):
        try:
            float(value)
        except OverflowError:
            return f"the integer {short(str(value))} is too large: numbers must fit in a 64-bit float"
        return None
    if isinstance(value, float):
        if math.isfinite(value):
            return None
        return f"{value!r} is not a finite number; JSON has no NaN or infinity"
    if isinstance(value, bytes | bytearray):
        return "binary data (YAML !!binary) is not JSON; use a base64 string"
    if isinstance(value, set | frozenset):
        return "a set (YAML !!set) is not JSON; use a list"
    if isinstance(value, tuple):
        return "pairs (YAML !!omap or !!pairs) are not JSON; use a mapping"
    if isinstance(value, datetime.date | datetime.time):
        return "a timestamp is not JSON; quote it as a string"
    return f"a {type(value).__name__} is not JSON; use a string, number, boolean, null, list or mapping"


def _text_problem(text: str) -> str | None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        return (
            f"holds an unpaired surrogate {text[error.start]!r} at character {error.start}, "
            "which is not valid Unicode; remove it"
        )
    return None
