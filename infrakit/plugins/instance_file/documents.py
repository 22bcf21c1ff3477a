"""The file plugin's instance documents: what a file must hold to be an instance, and how one is written.

An instance file is ``json.dumps(indent=2, sort_keys=True)`` of ``CreatedAt, ID,
LogicalID, Spec, Tags`` (:func:`encode_new` renders it byte for byte, at C-encoder speed).
:func:`read_description` accepts only well-typed documents (string IDs, logical IDs and
tags: what the planner compares); :func:`recover` describes an undecodable file from its
two ends when they are exactly what this plugin writes; :func:`measure` tells how many
bytes properties take once indented in a file (what ``validate`` bounds), and
:func:`check_readable` refuses what no reader would get back as written.  Pure functions
over bytes and values: :mod:`.plugin` and :mod:`.listing` do the I/O.

A file named as an instance that cannot be decoded (larger than :data:`MAX_FILE`, damaged
in the middle, written by an older version with other limits) may still be one of ours,
and forgetting it would make its group provision a replacement on every pass.  Our files
are ``json.dumps(indent=2, sort_keys=True)`` of ``CreatedAt, ID, LogicalID, Spec,
Tags``: the head names the instance and the last member is its ``Tags``.  So when the
first :data:`HEAD` bytes are exactly that head (with the file's own name as ``ID``) and
the last :data:`TAIL` bytes end in exactly ``"Tags": {...}`` (strings to strings), the
file is described from those two ends (:func:`recover`): a member of its group, never
replaced, removed by the group's ``destroy`` (which needs only its name), warned about
once.  Anything else (truncated at the end, another format, a decodable document of the
wrong types) is not a member: its group provisions one replacement, once, and the file
is left alone.
"""

from __future__ import annotations

import json
import math
import re
import sys
from typing import Any, Final

from infrakit.core import instances, specs

__all__ = [
    "HEAD",
    "INSTANCE_ID",
    "MAX_DEPTH",
    "MAX_FILE",
    "PROPERTIES_INDENT",
    "TAIL",
    "check_readable",
    "compact",
    "encode_new",
    "measure",
    "read_description",
    "reason",
    "recover",
]

MAX_FILE: Final = 8 << 20  # bytes: the read limit, so also the largest file provision or label writes
HEAD: Final = 8192  # bytes read to recover an undecodable file's identity (ID, LogicalID, CreatedAt)
TAIL: Final = 65536  # bytes read to recover its Tags
INSTANCE_ID: Final = re.compile(r"instance-[0-9]{1,19}")  # always fullmatch: "$" would let a trailing newline in
MAX_DEPTH: Final = specs.MAX_PROPERTY_DEPTH  # what the core accepts; deeper risks the encoder's recursion
PROPERTIES_INDENT: Final = 4  # in a file, the properties' lines are indented 4 more than on their own


# -- reading -------------------------------------------------------------------------------


def read_description(name: str, document: Any) -> instances.Description | str:
    """The description an instance document gives, or what is wrong with it.

    Only well-typed values pass: the planner compares logical IDs and tags as strings,
    and the operator writes them into the Group's status.
    """
    if type(document) is not dict or document.get("ID") != name:
        return "is not an instance document (a JSON object whose ID is its name)"
    logical_id = document.get("LogicalID")
    if logical_id is not None and not _text(logical_id):
        return f"has a LogicalID that {_wrong(logical_id, 'a string or null')}"
    tags = document.get("Tags")
    if tags is None:
        tags = {}
    elif type(tags) is not dict:
        return f"has Tags that are {instances.kind(tags)}, not a mapping of strings to strings"
    for key, value in tags.items():
        if not _text(value):  # keys of a decoded JSON object are strings
            return f"has a tag {key!r} whose value {_wrong(value, 'a string')}"
        if not _text(key):
            return "has a tag whose key is a string with an unpaired surrogate (not valid Unicode)"
    created = document.get("CreatedAt")
    if created is None:
        created = 0.0
    elif type(created) is float or type(created) is int:
        if type(created) is int and not -(2**53) <= created <= 2**53:
            return "has a CreatedAt that is not a time (seconds since the epoch)"
        created = float(created)
        if not math.isfinite(created):
            return "has a CreatedAt that is not a time (seconds since the epoch)"
    else:
        return f"has a CreatedAt that is {instances.kind(created)}, not a number"
    return instances.Description(
        id=name,
        logical_id=logical_id,
        tags={sys.intern(k): sys.intern(v) for k, v in tags.items()},
        created=created,
    )


def check_readable(spec: instances.InstanceSpec) -> None:
    """``SpecError`` naming the first field a reader would not get back as written (issue 19, J16):
    a lone surrogate would make the instance invisible to describe; NaN or 1e400 make a file
    other readers refuse."""
    instances.check_json(spec.properties, field="Properties")
    instances.check_json(dict(spec.tags), field="Tags")
    instances.check_json(spec.init, field="Init")
    instances.check_json(spec.logical_id, field="LogicalID")
    for index, attachment in enumerate(spec.attachments):
        instances.check_json(attachment.id, field=f"Attachments[{index}].ID")
        instances.check_json(attachment.type, field=f"Attachments[{index}].Type")


def reason(error: BaseException) -> str:
    """An exception's text, short enough for a one-line warning or refusal."""
    text = str(error) or type(error).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def _wrong(value: Any, wanted: str) -> str:
    """What is wrong with a value read from a file, for a warning: "is a number, not a string",
    or, for a string that is not valid text, "holds an unpaired surrogate (not valid Unicode)"."""
    if type(value) is str:
        return "holds an unpaired surrogate (not valid Unicode)"
    return f"is {instances.kind(value)}, not {wanted}"


def _text(value: Any) -> bool:
    """A string that can be written anywhere (UTF-8: no lone surrogates from ``\\udXXX`` escapes)."""
    if type(value) is not str:
        return False
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# The head of a file this plugin wrote (sort_keys, indent=2): what makes it an instance.
_HEAD_FORMAT = re.compile(
    rb'\{\n  "CreatedAt": ([-+.0-9eE]{1,40}|null),\n  "ID": "(instance-[0-9]{1,19})",'
    rb'\n  "LogicalID": (null|"(?:[^"\\\n]|\\.)*"),\n'
)
_TAGS_MEMBER: Final = b'\n  "Tags": '  # the last member at the top level (a nested one is indented more)


def recover(name: str, head: bytes, tail: bytes) -> instances.Description | None:
    """Describe an undecodable file from its two ends, if they are exactly what this plugin writes."""
    match = _HEAD_FORMAT.match(head)
    if match is None or match[2].decode() != name:
        return None
    at = tail.rfind(_TAGS_MEMBER)
    rest = tail[at + len(_TAGS_MEMBER) :].rstrip() if at >= 0 else b""
    if not rest.endswith(b"\n}"):
        return None
    try:
        created = 0.0 if match[1] == b"null" else float(match[1])
        document = {
            "ID": name,
            "CreatedAt": created if math.isfinite(created) else 0.0,
            "LogicalID": json.loads(match[3]),
            "Tags": json.loads(rest[:-2]),
        }
    except Exception:  # not what we write after all
        return None
    found = read_description(name, document)
    return found if isinstance(found, instances.Description) else None


# -- writing -------------------------------------------------------------------------------


def measure(value: Any, *, base: int) -> tuple[int, int]:
    """``(depth, indentation)``: how deep ``value`` nests, and the bytes ``json.dumps(indent=2)``
    adds to its rendering with separators ``(",", ": ")`` when nested ``base`` spaces deep.

    A non-empty container at depth ``d`` puts each of its ``n`` members on a line of
    its own, indented ``base + 2(d + 1)``, and its closing bracket on one indented
    ``base + 2d``.  Iterative (no recursion), and it stops past ``MAX_DEPTH``, so a
    cycle or a hostile nesting ends too.
    """
    deepest = 0  # the depth of the deepest value (the top one is at 0), as the core counts it
    indentation = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            members: Any = node.values()
        elif isinstance(node, list | tuple):
            members = node
        else:
            continue
        if not members:
            deepest = max(deepest, depth)
            continue
        if depth >= deepest:
            deepest = depth + 1
            if deepest > MAX_DEPTH:
                break
        indentation += len(members) * (1 + base + 2 * (depth + 1)) + 1 + base + 2 * depth
        stack.extend((member, depth + 1) for member in members if isinstance(member, dict | list | tuple))
    return deepest, indentation


def encode_new(*, created: float, instance_id: str, logical_id: str | None, spec: str, tags: str) -> bytes:
    """``json.dumps(document, indent=2, sort_keys=True)``, byte for byte, at C-encoder speed.

    The pure-Python indenting encoder cost more than writing the file; ``spec`` and
    ``tags`` come rendered by ``FilePlugin._nested`` (the plugin), once for all the instances that
    share them.
    """
    return (
        f'{{\n  "CreatedAt": {_scalar(created)},\n  "ID": "{instance_id}",\n'
        f'  "LogicalID": {_scalar(logical_id)},\n  "Spec": {spec},\n  "Tags": {tags}\n}}'
    ).encode()


def _scalar(value: float | str | None) -> str:
    if type(value) is float and math.isfinite(value):
        return float.__repr__(value)  # what json writes for a float
    return json.dumps(value)


compact = json.JSONEncoder(sort_keys=True, separators=(",", ": "))  # one encoder, C speed (no indent)
