"""The vanilla flavor: init lines appended, tags merged (flavor wins), attachments appended."""

from __future__ import annotations

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
