"""Where the Group schema comes from: given to the core, never read by it.

The CRD's openAPIV3Schema is the one schema both modes validate against, so the local
store and the API server reject the same documents and name the same fields.  Reading
it (a file in the package, a cache under ``~/.cache``) and running a full Draft 4
validator (``jsonschema``) are I/O and a heavy library: an adapter does both and hands
the core two functions with :func:`provide` (``infrakit.schemas`` does, when it is
imported; ``infrakit.local`` and ``infrakit.cluster`` import it).  Both are called
lazily, on the first document validated, and their results kept.

:func:`validate_spec` runs the check compiled from the schema (:mod:`.schema`); only a
spec it does not accept is given to the full validator, whose first violation
(shallowest first) is worded by :func:`.errors.explain`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from infrakit.core.specs import schema
from infrakit.core.specs.errors import Violation, explain

__all__ = ["Load", "Violations", "provide", "spec_schema", "validate_spec"]

Load = Callable[[], Mapping[str, Any]]
"""The CRD's openAPIV3Schema (of the served version), loaded."""

Violations = Callable[[Mapping[str, Any]], Callable[[Any], Iterable[Violation]]]
"""Given a (strict) schema, a function listing every violation of a document, as Draft 4 does
(with the API server's ``pattern``: :func:`.schema.end_of_text`)."""


# What the adapter gave (module globals, not a dataclass: that costs ~0.5 ms of start-up).
_load: Load | None = None
_list_violations: Violations | None = None


def provide(*, load: Load, violations: Violations) -> None:
    """Take the Group schema from ``load`` and word its violations from ``violations``.

    The last call wins; what was derived from an earlier source is forgotten.
    """
    global _load, _list_violations  # one schema per process, chosen by its adapter
    _load, _list_violations = load, violations
    spec_schema.cache_clear()
    _fast_check.cache_clear()
    _violations.cache_clear()


def _provided() -> tuple[Load, Violations]:
    if _load is None or _list_violations is None:
        raise LookupError(
            "no Group schema was provided to the core: import infrakit.schemas (the packaged CRD's) "
            "or call infrakit.core.specs.provide()"
        )
    return _load, _list_violations


@functools.cache
def spec_schema() -> dict[str, Any]:
    """The strict schema of a Group's ``spec`` (unknown fields refused)."""
    return schema.strict(_provided()[0]()["properties"]["spec"])


@functools.cache
def _fast_check() -> schema.Check | None:
    return schema.compile_check(spec_schema())


@functools.cache
def _violations() -> Callable[[Any], Iterable[Violation]]:
    return _provided()[1](spec_schema())


def validate_spec(spec: Any) -> None:
    """Raise :class:`.errors.SpecError` for the first violation of the schema by ``spec``, if any."""
    fast = _fast_check()
    if fast is not None and fast(spec):
        return  # exactly what the full validator accepts: nothing to explain
    found = sorted(_violations()(spec), key=lambda v: (len(v.path), list(map(str, v.path))))
    if found:
        raise explain(found[0], more=len(found) - 1)
