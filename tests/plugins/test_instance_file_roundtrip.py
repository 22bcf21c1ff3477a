"""What the file plugin writes can always be read back (issue 19, J16, the plugin's side).

In: instance specs and labels holding what JSON cannot carry (lone surrogates, NaN,
±Infinity, integers beyond float64) in every field (properties and their keys, tags,
init, logical ID, attachments), given in process (the RPC layer refuses them too, with
-32602; the plugin must be safe for any caller), and random specs (hypothesis).  Out:
``provision``/``label``/``validate`` refuse them with a ``SpecError`` naming the field,
nothing written; whatever they accept is strict JSON (no NaN, valid UTF-8) and
``describe`` then finds exactly it (same tags, same logical ID, the same spec back).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import hypothesis
import hypothesis.strategies as st
import pytest

from infrakit.core import instances, specs
from infrakit.plugins import InstanceNotFound, PluginError
from infrakit.plugins.instance_file import FilePlugin

GROUP = {instances.TAG_GROUP: "g"}
LONE = "\ud800"


def spec(**changes: Any) -> instances.InstanceSpec:
    fields: dict[str, Any] = {"properties": {"Note": "n"}, "tags": dict(GROUP), "logical_id": "a", "init": "echo"}
    fields.update(changes)
    return instances.InstanceSpec(**fields)


def strict(data: bytes) -> Any:
    """Parse as any JSON reader would: UTF-8, no NaN or Infinity, numbers a float64 holds."""

    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON")

    def number(text: str) -> float:
        value = float(text)
        if not math.isfinite(value):
            raise ValueError(f"{text} does not fit a float64")
        return value

    def integer(text: str) -> int:
        number(text)
        return int(text)

    return json.loads(data.decode("utf-8"), parse_constant=refuse, parse_float=number, parse_int=integer)


BAD: dict[str, tuple[dict[str, Any], str]] = {
    "properties-nan": ({"properties": {"a": [1, math.nan]}}, "Properties.a[1]"),
    "properties-infinity": ({"properties": {"a": math.inf}}, "Properties.a"),
    "properties-minus-infinity": ({"properties": -math.inf}, "Properties"),
    "properties-1e400": ({"properties": {"big": float("1e400")}}, "Properties.big"),
    "properties-huge-integer": ({"properties": {"big": 10**400}}, "Properties.big"),
    "properties-lone-surrogate": ({"properties": {"s": "a" + LONE}}, "Properties.s"),
    "properties-surrogate-key": ({"properties": {LONE: 1}}, "Properties"),
    "tag-value-surrogate": ({"tags": {**GROUP, "t": LONE}}, "Tags.t"),
    "tag-key-surrogate": ({"tags": {**GROUP, LONE: "v"}}, "Tags"),
    "init-surrogate": ({"init": "echo " + LONE}, "Init"),
    "logical-id-surrogate": ({"logical_id": LONE}, "LogicalID"),
    "attachment-surrogate": ({"attachments": (instances.Attachment(id=LONE, type="t"),)}, "Attachments[0].ID"),
}


@pytest.mark.parametrize(("changes", "field"), BAD.values(), ids=BAD.keys())
def test_provision_refuses_what_it_could_not_read_back(tmp_path: Path, changes: dict[str, Any], field: str) -> None:
    """Before: written (NaN as `NaN`, a surrogate as `\\ud800`): not JSON to any other reader, and a
    member whose tags or logical ID describe then skipped (invisible, so provisioned again and again)."""
    plugin = FilePlugin(directory=tmp_path)
    with pytest.raises(specs.SpecError) as caught:
        plugin.provision(spec(**changes))
    assert caught.value.field == field and "\n" not in str(caught.value), caught.value
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "properties", [math.nan, {"a": math.inf}, [10**400], {"s": LONE}, {LONE: 1}], ids=["nan", "inf", "big", "s", "k"]
)
def test_validate_refuses_them_too(tmp_path: Path, properties: Any) -> None:
    with pytest.raises(specs.SpecError, match=r"spec\.instance\.properties"):
        FilePlugin(directory=tmp_path).validate(properties)


@pytest.mark.parametrize(
    ("labels", "field"), [({"t": LONE}, "Tags.t"), ({LONE: "v"}, "Tags"), ({"n": math.nan}, "Tags.n")]
)
def test_label_refuses_what_it_could_not_read_back(tmp_path: Path, labels: dict[str, Any], field: str) -> None:
    plugin = FilePlugin(directory=tmp_path)
    made = plugin.provision(spec())
    before = (tmp_path / made).read_bytes()
    with pytest.raises(specs.SpecError) as caught:
        plugin.label(made, labels)
    assert caught.value.field == field
    assert (tmp_path / made).read_bytes() == before
    assert [d.id for d in plugin.describe(GROUP)] == [made]


def test_a_surrogate_in_a_file_is_named_for_what_it_is(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Before: "has a tag 't' whose value is a string, not a string"."""
    (tmp_path / "instance-1").write_text(json.dumps({"ID": "instance-1", "Tags": {**GROUP, "t": LONE}}))
    (tmp_path / "instance-2").write_text(json.dumps({"ID": "instance-2", "LogicalID": LONE, "Tags": GROUP}))
    with caplog.at_level(logging.WARNING):
        assert FilePlugin(directory=tmp_path).describe({}) == []
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "a string, not a string" not in messages
    assert messages.count("unpaired surrogate") == 2, messages


# -- what is written is read back, for any value -----------------------------------------------

any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=8)  # surrogates included
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.integers(-(10**400), 10**400),
    st.floats(),  # NaN and infinities too
    any_text,
)
json_like = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=20,
)
specs_drawn = st.builds(
    instances.InstanceSpec,
    properties=json_like,
    tags=st.dictionaries(any_text, any_text, max_size=4).map(lambda t: {**t, **GROUP}),
    init=any_text,
    logical_id=st.none() | any_text,
    attachments=st.lists(st.builds(instances.Attachment, id=any_text, type=any_text), max_size=2).map(tuple),
)


@hypothesis.given(specs_drawn, st.dictionaries(any_text, any_text, max_size=3))
@hypothesis.settings(
    max_examples=300, deadline=None, suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture]
)
def test_what_is_written_is_always_read_back(tmp_path_factory: pytest.TempPathFactory, drawn: Any, labels: Any) -> None:
    directory = tmp_path_factory.mktemp("roundtrip")
    plugin = FilePlugin(directory=directory)
    try:
        made = plugin.provision(drawn)
    except specs.SpecError:
        hypothesis.event("refused")
        assert list(directory.iterdir()) == []  # refused: nothing written
        return
    hypothesis.event("written")
    document = strict((directory / made).read_bytes())
    assert document["Spec"] == json.loads(json.dumps(drawn.to_json()))  # the spec back, as JSON carries it
    (found,) = plugin.describe(GROUP)
    assert (found.id, found.logical_id, dict(found.tags)) == (made, drawn.logical_id, dict(drawn.tags))
    try:
        plugin.label(made, labels)
    except specs.SpecError:
        assert strict((directory / made).read_bytes()) == document  # refused: unchanged
        return
    except (InstanceNotFound, PluginError) as error:  # never: the file is ours and whole
        raise AssertionError(error) from None
    (found,) = FilePlugin(directory=directory).describe(GROUP)
    assert dict(found.tags) == {**drawn.tags, **labels}
    strict((directory / made).read_bytes())
