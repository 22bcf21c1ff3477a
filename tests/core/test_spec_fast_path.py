"""The compiled schema check accepts exactly what jsonschema accepts, so errors never change.

``specs.compile_check`` decides "valid" without importing jsonschema (CLI start-up); anything
it does not accept goes to ``jsonschema.Draft4Validator`` (``infrakit.schemas.violations``),
whose errors the core words.  A document it wrongly accepted would skip validation, so
these tests compare the two on the CRD's own schema, on generated documents near and far
from valid, and on schemas using every keyword it knows (and some it must refuse to compile).
"""

from __future__ import annotations

import copy
import decimal
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infrakit.core import specs
from tests.corpus import good

SCHEMA = specs.validation.spec_schema()
VALIDATOR = jsonschema.Draft4Validator(SCHEMA)
FAST = specs.compile_check(SCHEMA)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-5, max_value=200_000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["", "a", "web", "instance-file", "Flavor-X", "-x", "a" * 64, "10.0.0.1", "x_y.z"]),
    st.text(max_size=5),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["a", "Tags", "plugin", "size"]), inner, max_size=3),
    ),
    max_leaves=8,
)
objects = st.dictionaries(st.text(max_size=3), json_values, max_size=3)
# Each field: a valid value, or anything; about one generated document in five is valid.
good_plugin = st.fixed_dictionaries(
    {"plugin": st.sampled_from(["instance-file", "flavor-vanilla", "a", "x1-y"])}, optional={"properties": objects}
)
any_plugin = st.fixed_dictionaries(
    {},
    optional={
        "plugin": st.one_of(st.sampled_from(["Bad", "", "-a", "a-", "a" * 64, "a" * 63]), json_values),
        "properties": json_values,
        "extra": json_values,
    },
)
good_allocation = st.one_of(
    st.fixed_dictionaries({"size": st.integers(min_value=0, max_value=100_000)}),
    st.fixed_dictionaries({"logicalIDs": st.lists(st.sampled_from(["a", "db-1", "x.y_z", "A" * 63]), max_size=4)}),
)
any_allocation = st.fixed_dictionaries(
    {},
    optional={
        "size": st.one_of(st.sampled_from([-1, 100_001, 1.0, True]), json_values),
        "logicalIDs": st.one_of(st.lists(st.sampled_from(["", "-x", "a" * 64, "a b"]), max_size=3), json_values),
        "other": json_values,
    },
)
strategies = st.fixed_dictionaries(
    {},
    optional={
        "maxSurge": st.one_of(st.integers(-1, 3), json_values),
        "maxUnavailable": st.one_of(st.integers(-1, 3), json_values),
    },
)
spec_documents = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {
            "allocation": st.one_of(good_allocation, good_allocation, any_allocation, json_values),
            "instance": st.one_of(good_plugin, good_plugin, any_plugin, json_values),
            "flavor": st.one_of(good_plugin, good_plugin, any_plugin, json_values),
        },
        optional={
            "updateStrategy": st.one_of(strategies, json_values),
            "paused": st.one_of(st.booleans(), json_values),
            "unknown": json_values,
        },
    ),
)


def jsonschema_accepts(schema: Any, document: Any) -> bool:
    return not list(jsonschema.Draft4Validator(schema).iter_errors(document))


def test_the_crd_schema_compiles() -> None:
    assert FAST is not None  # else every CLI call imports jsonschema again
    assert FAST(good()["spec"])


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec_documents)
def test_same_verdict_as_jsonschema_on_the_crd(document: Any) -> None:
    assert FAST is not None
    assert FAST(document) == (not list(VALIDATOR.iter_errors(document)))


def test_the_errors_are_jsonschemas() -> None:
    document = good()
    document["spec"]["allocation"] = {"size": -1}
    with pytest.raises(specs.SpecError) as caught:
        specs.parse_document(document)
    assert str(caught.value) == "spec.allocation.size: must be at least 0, got -1"


@pytest.mark.parametrize(
    ("schema", "documents"),
    [
        ({"type": "number", "minimum": 1.5, "maximum": 3}, [1, 1.5, 2, 3, 3.0, 3.5, True, "2", None]),
        ({"minimum": 0}, [-1, 0, "x", False, [], None]),
        ({"type": "integer"}, [1, 1.0, True, "1"]),
        ({"type": "boolean"}, [True, 0, "true"]),
        ({"type": "null"}, [None, 0, ""]),
        ({"enum": ["a", 1, None, True]}, ["a", 1, 1.0, None, True, False, 0, "b", [1], {"a": 1}]),
        ({"type": "array", "maxItems": 2, "items": {"type": "string"}}, [[], ["a"], ["a", 1], ["a", "b", "c"], "ab"]),
        ({"maxLength": 2, "minLength": 1, "pattern": "b"}, ["", "b", "ab", "abc", 5, ["b"]]),
        ({"required": ["a"], "properties": {"a": {"type": "integer"}}}, [{}, {"a": 1}, {"a": "1"}, {"b": 1}, []]),
        ({"properties": {"a": {}}, "additionalProperties": False}, [{"a": 1}, {"b": 1}, {1: 1}, "x"]),
    ],
)
def test_same_verdict_on_each_keyword(schema: dict[str, Any], documents: list[Any]) -> None:
    check = specs.compile_check(schema)
    assert check is not None
    for document in documents:
        assert check(document) == jsonschema_accepts(schema, document), document


def test_numbers_it_does_not_know_go_to_jsonschema() -> None:
    check = specs.compile_check({"type": "number", "maximum": 3})
    assert check is not None
    assert check(decimal.Decimal(2)) is False  # "not sure": jsonschema decides (it accepts)
    assert check(float("nan")) is False  # the same: jsonschema decides


@pytest.mark.parametrize(
    "schema",
    [
        {"$ref": "#/definitions/x"},
        {"type": ["string", "null"]},
        {"minimum": 0, "exclusiveMinimum": True},
        {"items": [{"type": "string"}]},
        {"additionalProperties": {"type": "string"}},
        {"anyOf": [{"type": "string"}]},
        {"properties": {"a": {"format": "date-time"}}},
        {"enum": [[1]]},
    ],
)
def test_unknown_keywords_are_left_to_jsonschema(schema: dict[str, Any]) -> None:
    assert specs.compile_check(schema) is None


def test_a_schema_it_cannot_compile_still_validates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(specs.validation, "_fast_check", lambda: None)
    document = copy.deepcopy(good())
    document["spec"]["paused"] = "yes"
    with pytest.raises(specs.SpecError, match=r"spec\.paused: must be true or false"):
        specs.parse_document(document)
    assert specs.parse_document(good()).name == "bad"
