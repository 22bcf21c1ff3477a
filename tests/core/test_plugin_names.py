"""Plugin names with a sub-type, ``lookup/type``, as InfraKit names them (issue 19, K17).

In: Group documents (our manifests and InfraKit's JSON) naming ``instance-mycloud/large``
and malformed variants.  Out: the form accepted by the local parser and by the CRD's
schema alike (one pattern: the CRD is the local schema), the name kept verbatim, and the
config hash InfraKit v0.5 computes for such a spec (computed by Go: its
``InstanceHash``, ``stableFormat`` and ``plugin.Name``'s JSON); anything else refused
naming the field.
"""

from __future__ import annotations

import copy
import json
import re

import pytest
import yaml

from infrakit.core import specs
from tests.conftest import EXAMPLES, REPO_ROOT
from tests.corpus import good


def with_plugins(instance: str, flavor: str = "flavor-vanilla") -> dict[str, object]:
    document = copy.deepcopy(good())
    document["spec"]["instance"]["plugin"] = instance
    document["spec"]["flavor"]["plugin"] = flavor
    return document


@pytest.mark.parametrize(
    "name",
    [
        "instance-mycloud/large",
        "instance-file/json",
        "i/B",
        "instance-aws/ec2-instance",
        "x/a_b.c-d9",
        "a" * 63 + "/" + "b" * 63,
    ],
)
def test_a_sub_type_is_accepted_and_kept_verbatim(name: str) -> None:
    group = specs.parse_document(with_plugins(name, flavor="flavor-vanilla/web"))
    assert (group.instance.plugin, group.flavor.plugin) == (name, "flavor-vanilla/web")
    assert group.to_manifest()["spec"]["instance"]["plugin"] == name
    assert group.instance.as_infrakit()["Plugin"] == name  # what the config hash is computed from


@pytest.mark.parametrize(
    "name",
    [
        "instance-mycloud/",
        "/large",
        "instance-mycloud/large/more",
        "instance-mycloud/..",
        "instance-mycloud/.large",
        "instance-mycloud/large-",
        "Instance-mycloud/large",
        "instance-mycloud/lar ge",
        "instance-mycloud/large\n",
        "../../bin/sh",
        "a" * 64 + "/b",
        "a/" + "b" * 64,
    ],
)
@pytest.mark.parametrize("kind", ["instance", "flavor"])
def test_a_malformed_name_is_refused_naming_the_field(name: str, kind: str) -> None:
    document = with_plugins(name) if kind == "instance" else with_plugins("instance-file", flavor=name)
    with pytest.raises(specs.SpecError) as refused:
        specs.parse_document(document)
    assert refused.value.field == f"spec.{kind}.plugin"
    assert "\n" not in str(refused.value)


def test_the_crd_and_the_local_schema_share_the_pattern() -> None:
    crd = yaml.safe_load((REPO_ROOT / "crds" / "infrakit.io_groups.yaml").read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    instance, flavor = spec["instance"]["properties"]["plugin"], spec["flavor"]["properties"]["plugin"]
    assert instance["pattern"] == flavor["pattern"]
    assert re.fullmatch(instance["pattern"].strip("^$"), "instance-mycloud/large")
    assert instance["maxLength"] == flavor["maxLength"] == 127


def test_the_hash_of_a_sub_typed_spec_is_infrakits() -> None:
    """Computed by Go from examples/cattle.json with Instance.Plugin "instance-mycloud/large"
    (InstanceHash: stableFormat of Instance and Flavor, sha1, base32, lower, unpadded)."""
    document = json.loads((EXAMPLES / "cattle.json").read_text())
    document["Properties"]["Instance"]["Plugin"] = "instance-mycloud/large"
    assert specs.parse_document(document).config_sha == "irnlmeugyuskr3pxb7hxqfvxccjzkzuz"
