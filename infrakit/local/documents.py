"""Reading Group documents from files: YAML or JSON text, defensively.

Only this module turns bytes into dicts for the local CLI.  It refuses what a careless
or hostile file could do to a parser: non-UTF-8 bytes, duplicate keys (YAML silently
keeps the last one), alias "billion laughs" bombs, absurd nesting and sizes.  YAML
timestamps stay strings, as they do on their way to the API server.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from infrakit.core import specs

if TYPE_CHECKING:
    import yaml

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
            return [json.loads(decoded, object_pairs_hook=_unique_pairs, parse_constant=_no_constant)]
        except ValueError as error:
            raise specs.SpecError("", f"not valid JSON: {error}") from None
    import yaml  # lazy: only the commands that read a file need it (~9 ms to import)

    try:
        return [d for d in yaml.load_all(decoded, Loader=_safe_loader()) if d is not None]
    except yaml.YAMLError as error:
        raise specs.SpecError("", f"not valid YAML: {_one_line(error)}") from None
    except RecursionError:
        raise specs.SpecError("", f"nested more than {MAX_DEPTH} levels deep") from None


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _one_line(error: yaml.YAMLError) -> str:
    return " ".join(str(error).replace('in "<unicode string>", ', "").split())


@functools.cache
def _safe_loader() -> type[yaml.SafeLoader]:
    """SafeLoader without timestamps, with duplicate-key, alias and depth limits (made on first use)."""
    import yaml

    class _SafeLoader(yaml.SafeLoader):
        def __init__(self, stream: str) -> None:
            super().__init__(stream)
            self._aliases = 0
            self._depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                self._aliases += 1
                if self._aliases > MAX_ALIASES:
                    raise yaml.YAMLError(f"more than {MAX_ALIASES} aliases: refusing a possible alias bomb")
            self._depth += 1
            try:
                if self._depth > MAX_DEPTH:
                    raise yaml.YAMLError(f"nested more than {MAX_DEPTH} levels deep")
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1

        def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
            if isinstance(node, yaml.MappingNode):
                seen: set[Any] = set()
                for key_node, _ in node.value:
                    key = self.construct_object(key_node, deep=True)
                    if key in seen:
                        message = f"duplicate key {key!r}"
                        raise yaml.constructor.ConstructorError(None, None, message, key_node.start_mark)
                    seen.add(key)
            return super().construct_mapping(node, deep=deep)

    _SafeLoader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    return _SafeLoader
