"""The vanilla flavor: init lines appended, tags merged (flavor wins), attachments appended."""

from __future__ import annotations

import json

import pytest

from infrakit.core import instances, specs
from infrakit.plugins.flavor_vanilla import VanillaPlugin

ALLOC = specs.Allocation(size=1)


def test_prepare_is_a_pure_transform() -> None:
    base = instances.InstanceSpec(
        properties={"a": 1},
        tags={"tier": "db", "keep": "me"},
        init="#!/bin/sh",
        attachments=(instances.Attachment(id="a0", type="t0"),),
    )
    properties = {"Init": ["one", "two"], "Tags": {"tier": "web"}, "Attachments": [{"ID": "a1", "Type": "t1"}]}
    prepared = VanillaPlugin().prepare(properties, base, ALLOC)
    assert prepared.init == "#!/bin/sh\none\ntwo"
    assert prepared.tags == {"tier": "web", "keep": "me"}
    assert [a.id for a in prepared.attachments] == ["a0", "a1"]
    assert prepared.properties == {"a": 1}
    assert base.tags == {"tier": "db", "keep": "me"} and base.init == "#!/bin/sh"  # input untouched


def test_no_properties_is_identity() -> None:
    base = instances.InstanceSpec(init="x", tags={"a": "b"})
    assert VanillaPlugin().prepare(None, base, ALLOC) == base


def test_always_healthy_and_drain_is_harmless() -> None:
    description = instances.Description(id="instance-1")
    assert VanillaPlugin().healthy({}, description) is instances.Health.HEALTHY
    VanillaPlugin().drain({}, description)


@pytest.mark.parametrize(
    ("properties", "field"),
    [
        ({"Init": [1]}, "Init"),
        ({"Tags": ["a"]}, "Tags"),
        ({"Attachments": [{"ID": "x"}]}, "Attachments[0]"),
        ({"Bogus": 1}, "Bogus"),
        ("text", "spec.flavor.properties"),
    ],
)
def test_validate_names_the_field(properties: object, field: str) -> None:
    with pytest.raises(specs.SpecError) as caught:
        VanillaPlugin().validate(properties, ALLOC)
    assert field in caught.value.field


@pytest.mark.parametrize("char", ["x", "\x01", "é", "\U0001f600"])  # 1, 6, 6 and 12 bytes as JSON
def test_validate_refuses_more_init_than_an_instance_can_carry(char: str) -> None:
    """An init script is measured as it travels (escaped JSON), so every instance plugin can store it."""
    limit = instances.MAX_FLAVOR_BYTES
    per_char = len(json.dumps(char)) - 2
    count = (limit - 6) // per_char  # the quotes, and the empty Tags and Attachments take 2 each
    VanillaPlugin().validate({"Init": [char * count]}, ALLOC)
    with pytest.raises(specs.SpecError) as caught:
        VanillaPlugin().validate({"Init": [char * (count + 1)]}, ALLOC)
    assert caught.value.field == "spec.flavor.properties.Init"
    assert str(limit) in caught.value.message


def test_tags_and_attachments_count_too_naming_the_largest() -> None:
    tags = {f"k{i}": "v" * 100 for i in range(instances.MAX_FLAVOR_BYTES // 200)}  # ~0.6 MB
    attachments = [{"ID": "a" * 200, "Type": "t"} for _ in range(instances.MAX_FLAVOR_BYTES // 300)]  # ~0.8 MB
    VanillaPlugin().validate({"Tags": tags}, ALLOC)
    VanillaPlugin().validate({"Attachments": attachments}, ALLOC)
    with pytest.raises(specs.SpecError) as caught:
        VanillaPlugin().validate({"Tags": tags, "Attachments": attachments, "Init": ["x"]}, ALLOC)
    assert caught.value.field == "spec.flavor.properties.Attachments"
