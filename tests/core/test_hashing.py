"""The config hash must equal InfraKit's, byte for byte."""

from __future__ import annotations

import json

import pytest

from infrakit.core import hashing, specs
from infrakit.local import documents
from tests.conftest import EXAMPLES


@pytest.mark.parametrize(
    ("name", "sha"),
    [("cattle", "x4nrsdaibscmj7awpkxzx5vvpt6pilw2"), ("cattle2", "jpfedp4sefvncwye5b6yre5qoz2odtnd")],
)
@pytest.mark.parametrize("ext", ["json", "yaml"])
def test_tutorial_hashes(name: str, sha: str, ext: str) -> None:
    (group,) = documents.load_groups(EXAMPLES / f"{name}.{ext}")
    assert group.config_sha == sha


def test_allocation_and_strategy_do_not_enter_the_hash() -> None:
    base = json.loads((EXAMPLES / "cattle.json").read_text())
    one = specs.parse_document(base)
    base["Properties"]["Allocation"] = {"LogicalIDs": ["a", "b"]}
    two = specs.parse_document(base)
    manifest = one.to_manifest()
    manifest["spec"]["updateStrategy"] = {"maxSurge": 3, "maxUnavailable": 2}
    manifest["spec"]["paused"] = True
    three = specs.parse_document(manifest)
    assert one.config_sha == two.config_sha == three.config_sha


def test_key_order_does_not_matter_but_values_do() -> None:
    a = hashing.config_sha(instance={"Plugin": "p", "Properties": {"a": 1, "b": 2}}, flavor={"Plugin": "f"})
    b = hashing.config_sha(instance={"Properties": {"b": 2, "a": 1}, "Plugin": "p"}, flavor={"Plugin": "f"})
    c = hashing.config_sha(instance={"Plugin": "p", "Properties": {"a": 1, "b": 3}}, flavor={"Plugin": "f"})
    assert a == b != c


@pytest.mark.parametrize(
    ("value", "go"),
    [
        ({}, "{}"),
        ([], "[]"),
        (
            {"b": [1, {"c": None}], "a": True},
            '{\n    "a": true,\n    "b": [\n      1,\n      {\n        "c": null\n      }\n    ]\n  }',
        ),
        (5.0, "5"),
        (1.5, "1.5"),
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (1.5e-7, "1.5e-7"),
        (0.000001, "0.000001"),
        (0.0, "0"),
        (-0.0, "-0"),  # Go: json.Marshal(math.Copysign(0, -1)) is "-0"
        ("<a&b>", '"\\u003ca\\u0026b\\u003e"'),
        ("héllo\n", '"héllo\\n"'),
    ],
)
def test_go_marshal_indent_rendering(value: object, go: str) -> None:
    assert hashing.go_stable_json(value) == go


def test_nan_is_refused() -> None:
    with pytest.raises(ValueError, match="NaN"):
        hashing.go_stable_json(float("nan"))


def test_negative_zero_hashes_as_infrakit() -> None:
    """Computed by Go (json.Unmarshal, json.MarshalIndent(v, "  ", "  "), sha1, base32)."""
    sha = hashing.config_sha(
        instance={"Plugin": "instance-file", "Properties": {"Zero": -0.0, "List": [-0.0, 0.0]}},
        flavor={"Plugin": "flavor-vanilla", "Properties": None},
    )
    assert sha == "vjx6wx2hi5lda4yp4qekiqcr7g4y6cmt"
