"""Fuzzing the spec parser, the document reader and ``infrakit-local commit``.

Whatever bytes or structures come in, the outcome is a GroupSpec or a SpecError (which
the CLI turns into exit code 2), never another exception; through the CLI, exit code
0, 1 or 2 only, no traceback, one line on stderr on failure, nothing changed on exit 2.
The planner's fuzzing lives in tests/core/test_planning.py (random observed states).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import hypothesis
import yaml
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infrakit import cli
from infrakit.core import specs
from infrakit.local import documents
from tests.conftest import snapshot
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


# --- the CLI end to end: `infrakit-local commit` of hostile input ---------------------------------

# YAML that JSON cannot say, or says only as an error: spliced into documents as raw text.
HOSTILE_YAML = [
    "!!binary aGVsbG8=",
    "!!set {a, b}",
    "!!omap [a: 1]",
    "!!pairs [a: 1, a: 2]",
    "!!timestamp 2001-12-14",
    "!!timestamp 2001-13-45",
    "!custom x",
    "!!python/object:os.system {}",
    "{1: a}",
    '{1: a, "1": b}',
    "{on: x}",
    "{~: x}",
    "{? [a]: b}",
    "{<<: {a: 1}, b: 2}",
    ".inf",
    "-.inf",
    ".nan",
    "-0.0",
    "1" * 401,
    "9" * 5000,
    '"\\ud800"',
    '"\\U0010ffff"',
    "&a [*a]",
    "*nowhere",
    "[" * 300,
    "'unterminated",
    '"\\x00\\u2028<&>"',
    "|\n        block\n        text",
]


@functools.cache
def _template_home() -> Path:
    """A store with one committed group and its instances, copied for each example."""
    root = Path(tempfile.mkdtemp(prefix="infrakit-fuzz-"))
    home = root / "home"
    manifest = root / "small.yaml"
    manifest.write_text(yaml.safe_dump(good()))
    result = _commit(home, manifest)
    assert result.exit_code == 0, result.output
    return home


def _commit(home: Path, path: Path, *extra: str) -> Result:
    args = ["--home", str(home), "--dir", str(home / "instances"), "commit", str(path), "--timeout", "10", *extra]
    return CliRunner().invoke(cli.cli, args, catch_exceptions=False)


def _small_enough_to_provision(text: bytes) -> bool:
    """Only small valid groups are committed for real (a fuzzed size may be 100,000)."""
    try:
        groups = documents.load_groups("fuzz.yaml", text=text)
    except specs.SpecError:
        return True  # refused before anything is provisioned
    return all(g.desired_size <= 3 for g in groups)


def _check_commit(text: bytes, *, suffix: str, pretend: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="infrakit-fuzz-") as scratch:
        home = Path(scratch) / "home"
        shutil.copytree(_template_home(), home, symlinks=True)
        path = Path(scratch) / f"input{suffix}"
        path.write_bytes(text)
        before = snapshot(home)
        pretend = pretend or not _small_enough_to_provision(text)

        result = _commit(home, path, *(["--pretend"] if pretend else []))

        assert result.exit_code in (0, 1, 2), result.output
        hypothesis.event(f"exit {result.exit_code}{' pretend' if pretend else ''}")
        assert "Traceback" not in result.output
        if result.exit_code:
            lines = result.stderr.splitlines()
            assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
        if result.exit_code == 2 or pretend:
            assert snapshot(home) == before


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.binary(max_size=600) | st.text(max_size=600).map(str.encode),
    st.sampled_from([".yaml", ".json", ""]),
)
def test_commit_of_random_bytes_fails_cleanly(data: bytes, suffix: str) -> None:
    _check_commit(data, suffix=suffix, pretend=False)


def _as_text(document: Any, *, form: str, hostile: list[str]) -> bytes:
    if form == "json":
        return json.dumps(document, allow_nan=True).encode()  # NaN and Infinity included
    text = yaml.safe_dump(document, allow_unicode=True)
    for index, snippet in enumerate(hostile):
        text = text.replace("Note: x", f"Note: x\n      Hostile{index}: {snippet}", 1)
    return text.encode()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(st.sampled_from(PATHS), json_values | st.floats()), max_size=3),
    st.sampled_from(["yaml", "json"]),
    st.lists(st.sampled_from(HOSTILE_YAML), max_size=2),
    st.booleans(),
    st.booleans(),
)
def test_commit_of_random_documents_is_all_or_nothing(
    mutations: list[tuple[tuple[str, ...], Any]], form: str, hostile: list[str], two: bool, pretend: bool
) -> None:
    document: Any = good()
    for path, value in mutations:
        document = mutate(document, path, value)
    text = _as_text(document, form=form, hostile=hostile)
    if two and form == "yaml":  # a second document: all of the file is committed, or none of it
        second = good()
        second["metadata"]["name"] = "second"
        text = yaml.safe_dump(second).encode() + b"---\n" + text
    _check_commit(text, suffix=f".{form}", pretend=pretend)
