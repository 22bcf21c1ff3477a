"""Reading Group documents from files: YAML or JSON text, defensively.

Only this module turns bytes into dicts for the local CLI.  It refuses what a careless
or hostile file could do to a parser: non-UTF-8 bytes, duplicate keys (YAML silently
keeps the last one), alias "billion laughs" bombs, absurd nesting and sizes.  YAML
timestamps stay strings, as they do on their way to the API server, and the values
only YAML has (``!!binary``, ``!!set``, ``!!omap``, non-string keys ...) are refused
with their line and column: a Group is JSON (``specs.check_json`` says so again for
every source, naming the field).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

import yaml

from infrakit.core import specs

__all__ = ["MAX_BYTES", "load_groups", "parse_text"]

MAX_BYTES: Final = 1 << 20  # the API server refuses objects above ~1.5 MiB anyway
MAX_DEPTH: Final = 64
MAX_ALIASES: Final = 64


def load_groups(path: str | Path, *, text: bytes | None = None) -> list[specs.GroupSpec]:
    """Every Group in a file (``-`` or ``text`` for given bytes); all valid, or SpecError."""
    source = str(path)
    if text is None:
        try:
            with open(path, "rb") as stream:
                text = stream.read(MAX_BYTES + 1)
        except OSError as error:
            raise specs.SpecError("", f"cannot read the file: {error.strerror or error}") from error
    documents = parse_text(text, source=source)
    if not documents:
        raise specs.SpecError("", "the file holds no document: expected a Group")
    groups = []
    for index, document in enumerate(documents):
        try:
            groups.append(specs.parse_document(document))
        except specs.SpecError as error:
            where = f"document {index + 1}: " if len(documents) > 1 else ""
            raise specs.SpecError(error.field, f"{where}{error.message}") from None
    names = [g.name for g in groups]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise specs.SpecError("metadata.name", f"group {duplicates[0]!r} appears more than once in the file")
    return groups


def parse_text(text: bytes, *, source: str = "<input>") -> list[Any]:
    """Decode YAML (or JSON) documents, skipping empty ones; raise SpecError on bad input."""
    if len(text) > MAX_BYTES:
        raise specs.SpecError("", f"larger than {MAX_BYTES} bytes; a Group is far smaller")
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError as error:
        raise specs.SpecError("", f"not UTF-8 text (byte {error.start}); save it as UTF-8") from None
    stripped = decoded.lstrip()
    if source.endswith(".json") or stripped.startswith("{"):
        try:
            return [
                json.loads(decoded, object_pairs_hook=_unique_pairs, parse_constant=_no_constant, parse_int=_json_int)
            ]
        except ValueError as error:
            raise specs.SpecError("", f"not valid JSON: {error}") from None
        except RecursionError:  # the C decoder recurses once per level: ~1,000 levels
            raise specs.SpecError("", "not valid JSON: nested too deeply") from None
    try:
        return [d for d in yaml.load_all(decoded, Loader=_SafeLoader) if d is not None]
    except _NotJson as error:
        mark = error.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise specs.SpecError(error.field, f"{error.problem}{where}") from None
    except yaml.YAMLError as error:
        raise specs.SpecError("", f"not valid YAML: {_one_line(error)}") from None
    except ValueError as error:  # a constructor's own check (a date that is none, ...)
        raise specs.SpecError("", f"not valid YAML: {' '.join(str(error).split())}") from None
    except RecursionError:
        raise specs.SpecError("", f"nested more than {MAX_DEPTH} levels deep") from None


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _json_int(text: str) -> int:
    if len(text) > _MAX_INT_TEXT:  # int() refuses 4,300 digits; float64 ends at 309
        raise ValueError(f"the integer {text[:20]}... is too large: numbers must fit in a 64-bit float")
    return int(text)


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _one_line(error: yaml.YAMLError) -> str:
    return " ".join(str(error).replace('in "<unicode string>", ', "").split())


_MAX_INT_TEXT: Final = 400  # characters of a YAML integer: float64's largest has 309 digits
_YAML: Final = "tag:yaml.org,2002:"
_JSON_TAGS: Final = frozenset(_YAML + t for t in ("str", "int", "float", "bool", "null", "map", "seq"))
_MERGE: Final = _YAML + "merge"
_NOT_JSON: Final = {
    _YAML + "binary": "binary data (!!binary) is not JSON; use a base64 string",
    _YAML + "set": "a set (!!set) is not JSON; use a list",
    _YAML + "omap": "an ordered map (!!omap) is not JSON; use a mapping",
    _YAML + "pairs": "pairs (!!pairs) are not JSON; use a mapping",
    _YAML + "timestamp": "a timestamp (!!timestamp) is not JSON; quote it as a string",
}
_KEY_KINDS: Final = {
    _YAML + "int": "a number",
    _YAML + "float": "a number",
    _YAML + "bool": "a boolean",
    _YAML + "null": "null",
}


class _NotJson(yaml.constructor.ConstructorError):
    """A YAML value with no JSON equivalent, at ``field``."""

    def __init__(self, field: str, problem: str, mark: Any) -> None:
        super().__init__(None, None, problem, mark)
        self.field = field


def _short_tag(tag: str) -> str:
    return "!!" + tag[len(_YAML) :] if tag.startswith(_YAML) else tag


class _SafeLoader(yaml.SafeLoader):
    """SafeLoader without timestamps, with duplicate-key, alias and depth limits, JSON values only."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._aliases = 0
        self._depth = 0
        self._open: set[str | None] = set()

    def compose_node(self, parent: Any, index: Any) -> Any:
        event: Any = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise yaml.YAMLError(f"more than {MAX_ALIASES} aliases: refusing a possible alias bomb")
            if event.anchor in self._open:  # "&a [*a]": a list that holds itself
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"the alias *{event.anchor} is inside its own anchor: JSON has no cycles",
                    self._mark(),
                )
        # An anchored collection is "open" until composed; PyYAML refuses duplicate anchors.
        anchor = event.anchor if isinstance(event, yaml.CollectionStartEvent) else None
        self._depth += 1
        if anchor is not None:
            self._open.add(anchor)
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.YAMLError(f"nested more than {MAX_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1
            self._open.discard(anchor)

    def _mark(self) -> Any:
        return self.peek_event().start_mark  # type: ignore[no-untyped-call]

    def construct_document(self, node: Any) -> Any:
        _check_json_nodes(node)
        return super().construct_document(node)

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == _MERGE:
                    continue  # "<<: *base" merges a mapping: its keys may be overridden here
                key = self.construct_object(key_node, deep=True)
                if key in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


_SafeLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _check_json_nodes(root: yaml.Node) -> None:
    """Refuse tags and keys JSON cannot carry, before anything is constructed.

    Walks the node graph once per node (aliases share nodes), so an alias bomb costs
    no more than its text.
    """
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, str]] = [(root, "")]
    while stack:
        node, path = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if node.tag not in _JSON_TAGS:
            problem = _NOT_JSON.get(
                node.tag, f"the YAML tag {_short_tag(node.tag)!r} has no JSON equivalent; remove it"
            )
            raise _NotJson(path, problem, node.start_mark)
        if node.tag == _YAML + "int" and len(node.value) > _MAX_INT_TEXT:
            # Python's int() refuses 4,300 digits (ValueError); float64 ends at 309.
            number = node.value[:20] + "..."
            raise _NotJson(
                path, f"the integer {number} is too large: numbers must fit in a 64-bit float", node.start_mark
            )
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.tag == _MERGE:
                    stack.append((value, path))  # the merged mapping's keys land here
                    continue
                if not isinstance(key, yaml.ScalarNode):
                    kind = "a mapping" if isinstance(key, yaml.MappingNode) else "a list"
                    raise _NotJson(path, f"{kind} as a key is not JSON; keys are strings", key.start_mark)
                if key.tag != _YAML + "str":
                    kind = _KEY_KINDS.get(key.tag, repr(_short_tag(key.tag)))
                    raise _NotJson(
                        path,
                        f"the key {key.value!r} is {kind} in YAML, and JSON keys are strings: quote it",
                        key.start_mark,
                    )
                stack.append((value, specs.field_path(path, str(key.value))))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((child, f"{path}[{index}]") for index, child in enumerate(node.value))
