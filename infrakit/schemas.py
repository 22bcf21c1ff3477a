"""The Group CRD's schema, read from the CRD shipped in the package and given to the core.

The core validates Groups against the CRD's openAPIV3Schema but reads no file
(:mod:`infrakit.core.specs.validation`): this adapter does.  Importing it provides the
core with :func:`crd_schema` and :func:`violations` (``infrakit.local`` and
``infrakit.cluster`` import it, so every mode has it before it parses a Group).

Every CLI command parses the stored groups, so the schema is on the start-up path.
:func:`crd_schema` parses the CRD's YAML once per CRD and keeps the schema as JSON in the
user's cache directory (``${INFRAKIT_CACHE:-~/.cache/infrakit}/schema``), so a command
does not import and run a YAML parser to validate a group.  :func:`violations` is
``jsonschema``'s Draft 4 validator, imported only to word a spec the core's compiled
check did not accept.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Final

from infrakit.core import specs

__all__ = ["CRD_PATH", "crd_schema", "violations"]

CRD_PATH: Final = os.path.join(os.path.dirname(__file__), "crds", "infrakit.io_groups.yaml")


@functools.cache
def crd_schema() -> dict[str, Any]:
    """The CRD's openAPIV3Schema (of the served version) as shipped in the package.

    Parsed once per CRD: the schema is kept as JSON in the user's cache directory
    (``${INFRAKIT_CACHE:-~/.cache/infrakit}/schema``) under the CRD's size and CRC, so a
    command does not import and run a YAML parser to validate a group.  A cache that is
    missing, unreadable, unwritable or not about this CRD is simply not used.
    """
    with open(CRD_PATH, "rb") as stream:
        data = stream.read()
    source = f"{len(data)}-{zlib.crc32(data):08x}"
    path = os.path.join(_cache_dir(), "schema", f"crd-{source}.json")
    cached = _read_cache(path, source=source)
    if cached is not None:
        return cached
    import yaml  # lazy: only when the cache has no copy of this CRD

    # libyaml when PyYAML has it: the same document, ten times faster than the Python parser.
    crd = yaml.load(data, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 - a safe loader
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    _write_cache(path, {"source": source, "schema": schema})
    return schema


def violations(schema: Mapping[str, Any]) -> Callable[[Any], Iterable[specs.Violation]]:
    """jsonschema's Draft 4 validator of ``schema``, with the API server's ``pattern``.

    Lazy: jsonschema costs ~30 ms to import and is needed only to word the errors of a
    spec the core's fast path did not accept.
    """
    import jsonschema
    import jsonschema.validators

    def pattern(validator: Any, regex: str, instance: Any, schema: Mapping[str, Any]) -> Iterable[Any]:
        """The ``pattern`` keyword as the API server runs it: a search, with "$" the end of text."""
        if isinstance(instance, str) and not specs.schema.end_of_text(regex).search(instance):
            yield jsonschema.ValidationError(f"{instance!r} does not match {regex!r}")

    draft4_re2 = jsonschema.validators.extend(jsonschema.Draft4Validator, validators={"pattern": pattern})  # type: ignore[no-untyped-call]
    validator = draft4_re2(schema)

    def listing(document: Any) -> Iterator[specs.Violation]:
        for error in validator.iter_errors(document):
            yield specs.Violation(
                rule=str(error.validator),
                path=tuple(error.absolute_path),
                expected=error.validator_value,
                got=error.instance,
                schema=error.schema,
                message=error.message,
            )

    return listing


def _cache_dir() -> str:
    return os.environ.get("INFRAKIT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "infrakit")


def _read_cache(path: str, *, source: str) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as stream:
            cached = json.loads(stream.read())
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(cached, dict) or cached.get("source") != source:
        return None
    schema = cached.get("schema")
    if not isinstance(schema, dict) or not isinstance((schema.get("properties") or {}).get("spec"), dict):
        return None
    return schema


def _write_cache(path: str, content: dict[str, Any]) -> None:
    """Atomically (temp file, rename), best effort: a cache is never worth a failure."""
    try:
        text = json.dumps(content, allow_nan=False)
        if json.loads(text) != content:
            return  # not JSON-exact (a YAML-only type): parse the CRD each time instead
        os.makedirs(os.path.dirname(path), exist_ok=True)
    except (OSError, TypeError, ValueError):
        return
    temp = f"{path}.{os.urandom(6).hex()}.tmp"
    try:
        with open(temp, "x", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temp)


specs.provide(load=crd_schema, violations=violations)
