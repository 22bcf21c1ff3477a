"""Parsing: the manifest and InfraKit's JSON are the same Group; the schema is the CRD's."""

from __future__ import annotations

import copy

import pytest
import yaml

from infrakit.core import specs
from infrakit.local import documents
from tests.conftest import EXAMPLES, REPO_ROOT
from tests.corpus import good


@pytest.mark.parametrize("name", ["cattle", "cattle2"])
def test_yaml_and_json_forms_are_the_same_group(name: str) -> None:
    (from_yaml,) = documents.load_groups(EXAMPLES / f"{name}.yaml")
    (from_json,) = documents.load_groups(EXAMPLES / f"{name}.json")
    assert from_yaml == from_json
    assert from_yaml.name == "cattle"
    assert from_yaml.update_strategy == specs.UpdateStrategy(max_surge=1, max_unavailable=0)
    assert from_yaml.paused is False


def test_manifest_round_trip() -> None:
    (group,) = documents.load_groups(EXAMPLES / "cattle.yaml")
    assert specs.parse_document(group.to_manifest()) == group


def test_pets_and_size_zero() -> None:
    pets = good()
    pets["spec"]["allocation"] = {"logicalIDs": ["10.0.0.1", "db-a", "db_b"]}
    group = specs.parse_document(pets)
    assert group.is_pets and group.desired_size == 3
    zero = good()
    zero["spec"]["allocation"] = {"size": 0}
    assert specs.parse_document(zero).desired_size == 0


def test_infrakit_json_with_null_logical_ids() -> None:
    document = {
        "ID": "mygroup",
        "Properties": {
            "Allocation": {"LogicalIDs": None, "Size": 3},
            "Instance": {"Plugin": "instance-file", "Properties": {"a": 1}},
            "Flavor": {"Plugin": "flavor-vanilla"},
        },
    }
    group = specs.parse_document(document)
    assert group.allocation.size == 3 and group.flavor.properties is None


def test_properties_are_opaque_and_verbatim() -> None:
    document = good()
    odd = {"nested": {"deep": [1, 2.5, None, {"x": "2001-12-14"}]}, "UpperCase": True}
    document["spec"]["instance"]["properties"] = copy.deepcopy(odd)
    assert specs.parse_document(document).instance.properties == odd


def test_yaml_timestamps_stay_strings() -> None:
    text = (
        (EXAMPLES / "cattle.yaml").read_bytes().replace(b"Note: Instance properties version 1.0", b"Note: 2001-12-14")
    )
    (group,) = documents.load_groups("x.yaml", text=text)
    assert group.instance.properties == {"Note": "2001-12-14"}


def test_namespace_default_for_the_operator() -> None:
    assert specs.parse_document(good(), namespace="prod").namespace == "prod"
    explicit = good()
    explicit["metadata"]["namespace"] = "dev"
    assert specs.parse_document(explicit, namespace="prod").namespace == "dev"


def test_local_schema_is_the_crd_schema() -> None:
    crd = yaml.safe_load((REPO_ROOT / "crds" / "infrakit.io_groups.yaml").read_text())
    assert specs.crd_schema() == crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_status_in_a_manifest_is_ignored() -> None:
    document = good()
    document["status"] = {"replicas": 99}
    assert specs.parse_document(document).desired_size == 2
