"""Fuzzing the spec parser and the document reader: only clean validation errors.

Whatever bytes or structures come in, the outcome is a GroupSpec or a SpecError (which
the CLI turns into exit code 2), never another exception. The planner's fuzzing lives
in tests/core/test_planning.py (random observed states).
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infrakit.core import specs
from infrakit.local import documents
from tests.corpus import good

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)

PATHS = [
    (),
    ("metadata",),
    ("metadata", "name"),
    ("spec",),
    ("spec", "allocation"),
    ("spec", "allocation", "size"),
    ("spec", "allocation", "logicalIDs"),
    ("spec", "instance"),
    ("spec", "instance", "plugin"),
    ("spec", "instance", "properties"),
    ("spec", "flavor", "properties"),
    ("spec", "updateStrategy"),
    ("spec", "updateStrategy", "maxSurge"),
    ("spec", "paused"),
    ("apiVersion",),
    ("kind",),
]


def mutate(document: dict[str, Any], path: tuple[str, ...], value: Any) -> Any:
    if not path:
        return value
    out = copy.deepcopy(document)
    node: Any = out
    for key in path[:-1]:
        if not isinstance(node, dict):
            return out
        node = node.setdefault(key, {})
    if isinstance(node, dict):
        node[path[-1]] = value
    return out


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(PATHS), json_values), min_size=1, max_size=4))
def test_mutated_documents_parse_or_fail_cleanly(mutations: list[tuple[tuple[str, ...], Any]]) -> None:
    document: Any = good()
    for path, value in mutations:
        document = mutate(document, path, value)
    try:
        group = specs.parse_document(document)
    except specs.SpecError as error:
        assert str(error)
        return
    assert group.desired_size >= 0
    assert len(group.config_sha) == 32


@settings(max_examples=600, deadline=None)
@given(st.binary(max_size=400) | st.text(max_size=400).map(str.encode))
def test_arbitrary_bytes_are_read_or_refused_cleanly(data: bytes) -> None:
    try:
        documents.load_groups("fuzz.yaml", text=data)
    except specs.SpecError as error:
        assert str(error)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 40), st.sampled_from(["[", "{", "- ", "a: "]))
def test_deep_nesting_is_refused_not_crashing(depth: int, opener: str) -> None:
    text = ("a:\n" + "".join("  " * i + "b:\n" for i in range(depth * 3))).encode()
    with contextlib.suppress(specs.SpecError):
        documents.load_groups("deep.yaml", text=text)
    flow = (opener.strip() * depth * 5).encode()
    with contextlib.suppress(specs.SpecError):
        documents.parse_text(flow, source="flow.yaml")
