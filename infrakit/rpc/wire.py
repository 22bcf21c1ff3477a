"""The plugin protocol's shapes on the wire (InfraKit v0.5), for both ends.

Interfaces are named ``Name/Version`` (``Instance/0.5.0``); methods ``Service.Method``.
Payloads are Go structs encoded by ``encoding/json``: capitalised keys, ``null`` for
nil slices and maps, unknown keys ignored, and keys matched case-insensitively when
decoding (as Go does).  This module turns them into our SPI values and back, and
refuses a value of the wrong shape with :class:`WireError` naming where it is
(``Spec.Tags.tier``) and what was expected: the server answers that as a JSON-RPC
error, the client as a :class:`~infrakit.plugins.spi.PluginError`.

Every JSON document from a peer is decoded by :func:`loads`, bounded in depth, so no
peer can make a reader recurse until it crashes.

Pure: no I/O, no HTTP; the server (aiohttp) and the client (http.client) share it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

from infrakit.core import instances, specs

__all__ = [
    "CHANGED_ALL",
    "CHANGES_TOPIC",
    "EVENT",
    "FLAVOR",
    "GROUP",
    "HANDSHAKE_IMPLEMENTS",
    "HANDSHAKE_TYPES",
    "INSTANCE",
    "MAX_DEPTH",
    "MAX_EVENT",
    "METADATA",
    "InterfaceSpec",
    "ParseError",
    "WireError",
    "allocation_from_wire",
    "allocation_to_wire",
    "boolean",
    "description_from_wire",
    "description_to_wire",
    "field",
    "go_list",
    "health_from_wire",
    "health_to_wire",
    "loads",
    "obj",
    "optional_string",
    "path_from_wire",
    "path_to_wire",
    "spec_from_wire",
    "spec_to_wire",
    "string",
    "tags",
    "uint",
]


@dataclasses.dataclass(frozen=True, kw_only=True, order=True)
class InterfaceSpec:
    """An interface and its version, as ``spi.InterfaceSpec`` (``{"Name", "Version"}``)."""

    name: str
    version: str

    def encode(self) -> str:
        return f"{self.name}/{self.version}"

    def to_wire(self) -> dict[str, str]:
        return {"Name": self.name, "Version": self.version}


INSTANCE: Final = InterfaceSpec(name="Instance", version="0.5.0")
FLAVOR: Final = InterfaceSpec(name="Flavor", version="0.1.0")
GROUP: Final = InterfaceSpec(name="Group", version="0.1.0")
METADATA: Final = InterfaceSpec(name="Metadata", version="0.1.0")
EVENT: Final = InterfaceSpec(name="Event", version="0.1.0")

CHANGES_TOPIC: Final = "instance/changes"
"""The topic on which our instance daemons publish the IDs of instances that changed.

Its events' ``Data`` is ``{"IDs": [...]}``, or ``{"All": true}`` when anything may have
changed; a client heals from it instead of polling (InfraKit's own daemons publish
nothing there, and are polled)."""

CHANGED_ALL: Final[Mapping[str, Any]] = MappingProxyType({"All": True})
"""A change event's ``Data`` when anything may have changed (also what a subscriber that fell behind gets)."""

MAX_DEPTH: Final = 100
"""Containers a message may nest, envelope included (a Group's properties nest at most 32).

Every JSON document a peer sends (a request, an answer, an event) is refused beyond it,
so no value deep enough to exhaust a recursive reader (a parser, an encoder, a schema
check: about 1,000 frames) ever reaches one."""

MAX_EVENT: Final = 1 << 20
"""Bytes of one server-sent event (its ``data:`` lines); a longer one is skipped unread."""

HANDSHAKE_IMPLEMENTS: Final = "Handshake.Implements"
HANDSHAKE_TYPES: Final = "Handshake.Types"

_HEALTH: Final = {instances.Health.UNKNOWN: 0, instances.Health.HEALTHY: 1, instances.Health.UNHEALTHY: 2}
_HEALTH_BACK: Final = {v: k for k, v in _HEALTH.items()}


class WireError(ValueError):
    """A JSON value that does not decode into the Go type the protocol declares."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}" if where else message)
        self.where = where
        self.message = message


class ParseError(ValueError):
    """A peer's bytes that are not JSON we read: malformed, or nested beyond :data:`MAX_DEPTH`.

    ``deep`` tells which: the text says it in one line either way.
    """

    def __init__(self, message: str, *, deep: bool = False) -> None:
        super().__init__(message)
        self.deep = deep


def loads(data: bytes | str) -> Any:
    """Decode one JSON document from a peer; :class:`ParseError` for anything else.

    Never a ``RecursionError`` (the parser's own limit, reached by a body of 100,000
    ``[``, is reported as too deep) and never a value nested deeper than
    :data:`MAX_DEPTH` (checked without recursion).  Sizes are bounded by the callers,
    which read the bytes.
    """
    try:
        value = json.loads(data)
    except RecursionError:
        raise ParseError(f"nested more than {MAX_DEPTH} levels deep", deep=True) from None
    except ValueError as error:  # malformed, not UTF-8, an integer of more than 4,300 digits
        raise ParseError(str(error)) from None
    if type(value) is dict or type(value) is list:
        stack: list[tuple[Any, int]] = [(value, 1)]
        while stack:
            node, depth = stack.pop()
            if depth > MAX_DEPTH:
                raise ParseError(f"nested more than {MAX_DEPTH} levels deep", deep=True)
            for child in node.values() if type(node) is dict else node:
                if type(child) is dict or type(child) is list:
                    stack.append((child, depth + 1))
    return value


# -- scalars and containers (Go's decoding rules) ------------------------------------------


def field(document: Mapping[str, Any], key: str) -> Any:
    """``document[key]``, matching the key case-insensitively as Go does; None if absent."""
    if key in document:
        return document[key]
    lowered = key.lower()
    for name, value in document.items():
        if isinstance(name, str) and name.lower() == lowered:
            return value
    return None


def _refuse(where: str, value: Any, want: str) -> WireError:
    # JSON's name of what came, from the core's one classifier (a decoded value always has one).
    return WireError(where, f"cannot decode {specs.json_type(value) or 'object'} as {want}")


def obj(value: Any, where: str) -> Mapping[str, Any]:
    """An object (``null`` is Go's zero value: empty)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _refuse(where, value, "an object")
    return value


def string(value: Any, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _refuse(where, value, "a string")
    return value


def optional_string(value: Any, where: str) -> str | None:
    return None if value is None else string(value, where)


def boolean(value: Any, where: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _refuse(where, value, "true or false")
    return value


def uint(value: Any, where: str) -> int:
    if value is None:
        return 0
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _refuse(where, value, "an unsigned integer")
    if value < 0:
        raise WireError(where, f"cannot decode {value} as an unsigned integer")
    return value


def tags(value: Any, where: str) -> dict[str, str]:
    """A ``map[string]string`` (``null``: empty)."""
    mapping = obj(value, where)
    out: dict[str, str] = {}
    for key, item in mapping.items():
        out[str(key)] = string(item, f"{where}.{key}") if item is not None else ""
    return out


def go_list(items: list[Any] | tuple[Any, ...]) -> list[Any] | None:
    """Go's nil slice: an empty list goes on the wire as ``null``."""
    return list(items) if items else None


# -- instances ------------------------------------------------------------------------------


def spec_to_wire(spec: instances.InstanceSpec) -> dict[str, Any]:
    """``instance.Spec``."""
    return {
        "Properties": spec.properties,
        "Tags": dict(spec.tags),
        "Init": spec.init,
        "LogicalID": spec.logical_id,
        "Attachments": go_list([a.to_json() for a in spec.attachments]),
    }


def spec_from_wire(value: Any, where: str) -> instances.InstanceSpec:
    document = obj(value, where)
    attachments = []
    listed = field(document, "Attachments")
    if listed is not None and not isinstance(listed, list):
        raise _refuse(f"{where}.Attachments", listed, "an array of {ID, Type}")
    for index, item in enumerate(listed or []):
        at = f"{where}.Attachments[{index}]"
        entry = obj(item, at)
        attachments.append(
            instances.Attachment(
                id=string(field(entry, "ID"), f"{at}.ID"), type=string(field(entry, "Type"), f"{at}.Type")
            )
        )
    return instances.InstanceSpec(
        properties=field(document, "Properties"),
        tags=tags(field(document, "Tags"), f"{where}.Tags"),
        init=string(field(document, "Init"), f"{where}.Init"),
        logical_id=optional_string(field(document, "LogicalID"), f"{where}.LogicalID"),
        attachments=tuple(attachments),
    )


def description_to_wire(description: instances.Description) -> dict[str, Any]:
    """``instance.Description`` (``Properties`` omitted: we describe none)."""
    return {"ID": description.id, "LogicalID": description.logical_id, "Tags": dict(description.tags)}


def description_from_wire(value: Any, where: str) -> instances.Description:
    document = obj(value, where)
    instance_id = field(document, "ID")
    if not isinstance(instance_id, str) or not instance_id:
        raise WireError(f"{where}.ID", "an instance description needs a non-empty string ID")
    return instances.Description(
        id=instance_id,
        logical_id=optional_string(field(document, "LogicalID"), f"{where}.LogicalID"),
        tags=tags(field(document, "Tags"), f"{where}.Tags"),
    )


def health_to_wire(health: instances.Health) -> int:
    """``flavor.Health``: 0 unknown, 1 healthy, 2 unhealthy."""
    return _HEALTH[health]


def health_from_wire(value: Any, where: str) -> instances.Health:
    number = uint(value, where)
    if number not in _HEALTH_BACK:
        raise WireError(where, f"health must be 0 (unknown), 1 (healthy) or 2 (unhealthy), got {number}")
    return _HEALTH_BACK[number]


# -- groups ---------------------------------------------------------------------------------


def allocation_to_wire(allocation: specs.Allocation) -> dict[str, Any]:
    """``group_types.AllocationMethod``."""
    return {
        "Size": allocation.size or 0,
        "LogicalIDs": go_list(list(allocation.logical_ids or ())),
    }


def allocation_from_wire(value: Any, where: str) -> specs.Allocation:
    document = obj(value, where)
    listed = field(document, "LogicalIDs")
    if listed is not None:
        if not isinstance(listed, list):
            raise _refuse(f"{where}.LogicalIDs", listed, "an array of strings")
        if listed:
            ids = tuple(string(item, f"{where}.LogicalIDs[{i}]") for i, item in enumerate(listed))
            return specs.Allocation(logical_ids=ids)
    return specs.Allocation(size=uint(field(document, "Size"), f"{where}.Size"))


def path_from_wire(value: Any, where: str) -> tuple[str, ...]:
    """``types.Path``: a ``/``-separated string (``"."`` is the root), or a list of names."""
    if value is None:
        parts: list[str] = []
    elif isinstance(value, str):
        parts = value.strip(" \"'\t\n\\").split("/")
    elif isinstance(value, list):
        parts = [string(item, f"{where}[{i}]") for i, item in enumerate(value)]
    else:
        raise _refuse(where, value, "a path (a string such as 'specs/cattle')")
    cleaned: list[str] = []
    for part in parts:
        if part in ("", "."):
            continue
        if part == "..":
            if cleaned:
                cleaned.pop()
            continue
        cleaned.append(part)
    return tuple(cleaned)


def path_to_wire(path: tuple[str, ...]) -> str:
    return "/".join(path) or "."
