"""Parsing: the manifest and InfraKit's JSON are the same Group; the schema is the CRD's."""

from __future__ import annotations

import copy
import datetime

import pytest

from infrakit.core import hashing, specs
from infrakit.local import documents
from tests.conftest import EXAMPLES
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


def test_status_in_a_manifest_is_ignored() -> None:
    document = good()
    document["status"] = {"replicas": 99}
    assert specs.parse_document(document).desired_size == 2


# --- only JSON's values (issue 11, items 4 and 5) ------------------------------------------


def _with_property(value: object) -> dict[str, object]:
    document = good()
    document["spec"]["instance"]["properties"] = {"Keys": value}
    return document


@pytest.mark.parametrize(
    ("value", "field", "words"),
    [
        (b"\x00\x01", "spec.instance.properties.Keys", "binary data"),
        ({"a", "b"}, "spec.instance.properties.Keys", "a set"),
        (frozenset({"a"}), "spec.instance.properties.Keys", "a set"),
        ((("a", 1),), "spec.instance.properties.Keys", "pairs"),
        (datetime.date(2001, 12, 14), "spec.instance.properties.Keys", "a timestamp"),
        (datetime.datetime(2001, 12, 14, tzinfo=datetime.UTC), "spec.instance.properties.Keys", "a timestamp"),
        ({1: "a", "1": "b"}, "spec.instance.properties.Keys", "the key 1 is not a string"),
        ({True: "on"}, "spec.instance.properties.Keys", "the key True is not a string"),
        ({None: "x"}, "spec.instance.properties.Keys", "the key None is not a string"),
        ({("a", "b"): "x"}, "spec.instance.properties.Keys", "is not a string"),
        ([1, [float("inf")]], "spec.instance.properties.Keys[1][0]", "not a finite number"),
        (float("-inf"), "spec.instance.properties.Keys", "not a finite number"),
        (float("nan"), "spec.instance.properties.Keys", "not a finite number"),
        (10**400, "spec.instance.properties.Keys", "too large"),
        ("a\ud800b", "spec.instance.properties.Keys", "unpaired surrogate"),
        ({"\udfff": 1}, "spec.instance.properties.Keys", "unpaired surrogate"),
        (object(), "spec.instance.properties.Keys", "is not JSON"),
    ],
    ids=[
        *["bytes", "set", "frozenset", "pairs", "date", "datetime", "mixed-keys", "bool-key", "null-key"],
        *["tuple-key", "inf-nested", "-inf", "nan", "huge-int", "surrogate", "surrogate-key", "object"],
    ],
)
def test_values_json_cannot_carry_are_refused_by_path(value: object, field: str, words: str) -> None:
    with pytest.raises(specs.SpecError) as caught:
        specs.parse_document(_with_property(value))
    assert caught.value.field == field
    assert words in caught.value.message
    assert "\n" not in str(caught.value)


def test_json_values_are_checked_everywhere_not_only_in_properties() -> None:
    document = good()
    document["metadata"]["labels"] = {"tier": b"web"}
    with pytest.raises(specs.SpecError, match=r"^metadata\.labels\.tier: binary data"):
        specs.parse_document(document)
    infrakit = {
        "ID": "cattle",
        "Properties": {
            "Allocation": {"Size": 1},
            "Instance": {"Plugin": "instance-file", "Properties": {"Big": 2**1024}},
            "Flavor": {"Plugin": "flavor-vanilla"},
        },
    }
    with pytest.raises(specs.SpecError, match=r"^Properties\.Instance\.Properties\.Big: the integer"):
        specs.parse_document(infrakit)


def test_largest_float64_integer_and_negative_zero_are_json() -> None:
    group = specs.parse_document(_with_property([2**1023, -0.0, 1.7976931348623157e308]))
    assert len(group.config_sha) == 32


def test_aliases_cannot_make_a_document_of_billions_of_values() -> None:
    shared: object = ["lol"] * 8
    for _ in range(9):  # 8**10 values once expanded, as a YAML alias bomb within the alias limit
        shared = [shared] * 8
    with pytest.raises(specs.SpecError, match="more than"):
        specs.parse_document(_with_property(shared))


def test_a_spec_that_cannot_be_hashed_fails_at_parse_time(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(**_: object) -> str:
        raise OverflowError("int too large to convert to float")

    monkeypatch.setattr(hashing, "config_sha", broken)
    with pytest.raises(specs.SpecError, match=r"^spec: cannot compute the config hash: int too large"):
        specs.parse_document(good())


# --- "$" is the end of the text, as on the API server (issue 11, item 11) ---------------------


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("metadata", "name"), "cattle\n", "metadata.name"),
        (("metadata", "namespace"), "prod\n", "metadata.namespace"),
        (("spec", "instance", "plugin"), "instance-file\n", "spec.instance.plugin"),
        (("spec", "flavor", "plugin"), "flavor-vanilla\n", "spec.flavor.plugin"),
        (("spec", "allocation"), {"logicalIDs": ["a", "b\n"]}, "spec.allocation.logicalIDs[1]"),
    ],
)
def test_a_trailing_newline_is_not_the_end_of_a_name(path: tuple[str, ...], value: object, field: str) -> None:
    document = good()
    node = document
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(specs.SpecError) as caught:
        specs.parse_document(document)
    assert caught.value.field == field


def test_infrakit_id_with_a_trailing_newline_is_refused() -> None:
    document = {
        "ID": "cattle\n",
        "Properties": {
            "Allocation": {"Size": 1},
            "Instance": {"Plugin": "instance-file"},
            "Flavor": {"Plugin": "flavor-vanilla"},
        },
    }
    with pytest.raises(specs.SpecError, match=r"^metadata\.name: 'cattle\\n' is not a DNS-1123 label"):
        specs.parse_document(document)


@pytest.mark.parametrize(
    ("pattern", "text", "matches"),
    [
        ("^a$", "a", True),
        ("^a$", "a\n", False),
        ("^[$]x$", "$x", True),  # "$" in a class is a dollar sign
        (r"^a\$$", "a$", True),  # so is an escaped one
        (r"^a\$$", "a$\n", False),
        ("^[]$]$", "]", True),  # "]" first in a class is literal: the class holds "]" and "$"
        (r"^\d$", "\u0663", False),  # RE2's \d is ASCII: not ARABIC-INDIC DIGIT THREE
        ("b", "abc", True),  # a search, not a match: unanchored patterns match anywhere
    ],
)
def test_crd_patterns_have_re2_semantics(pattern: str, text: str, matches: bool) -> None:
    assert bool(specs.schema.end_of_text(pattern).search(text)) is matches


_MANIFEST = """apiVersion: infrakit.io/v1alpha1
kind: Group
metadata: {{name: cattle}}
spec:
  allocation: {{size: 1}}
  instance:
    plugin: instance-file
    properties:
      Keys: {value}
  flavor: {{plugin: flavor-vanilla}}
"""


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("!!binary aGVsbG8=", "binary data (!!binary) is not JSON; use a base64 string (line 9, column 13)"),
        ("!!set {a, b}", "a set (!!set) is not JSON; use a list (line 9, column 13)"),
        ("!!omap [a: 1]", "an ordered map (!!omap) is not JSON; use a mapping (line 9, column 13)"),
        ("!!pairs [a: 1]", "pairs (!!pairs) are not JSON; use a mapping (line 9, column 13)"),
        ("!!timestamp 2001-12-14", "a timestamp (!!timestamp) is not JSON; quote it as a string (line 9, column 13)"),
        ("!custom x", "the YAML tag '!custom' has no JSON equivalent; remove it (line 9, column 13)"),
        ("{1: a}", "the key '1' is a number in YAML, and JSON keys are strings: quote it (line 9, column 14)"),
        ("{on: a}", "the key 'on' is a boolean in YAML, and JSON keys are strings: quote it (line 9, column 14)"),
        ("{~: a}", "the key '~' is null in YAML, and JSON keys are strings: quote it (line 9, column 14)"),
        ("{? [a]: b}", "a list as a key is not JSON; keys are strings (line 9, column 16)"),
    ],
)
def test_yaml_only_values_are_refused_with_line_and_column(value: str, message: str) -> None:
    with pytest.raises(specs.SpecError) as caught:
        documents.load_groups("group.yaml", text=_MANIFEST.format(value=value).encode())
    assert caught.value.field == "spec.instance.properties.Keys"
    assert caught.value.message == message


def test_yaml_merge_keys_are_json_once_merged() -> None:
    text = _MANIFEST.format(value="{<<: {a: 1, b: 2}, b: 3}").encode()
    (group,) = documents.load_groups("group.yaml", text=text)
    assert group.instance.properties == {"Keys": {"a": 1, "b": 3}}


_JSON = '{"ID": "c", "Properties": {"Instance": {"Properties": {"x": VALUE}}}}'


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (_MANIFEST.format(value=".inf"), "spec.instance.properties.Keys"),
        (_MANIFEST.format(value="[.NaN]"), "spec.instance.properties.Keys[0]"),
        (_MANIFEST.format(value="1" * 400), "spec.instance.properties.Keys"),
        (_MANIFEST.format(value='"\\ud800"'), "spec.instance.properties.Keys"),
        (_JSON.replace("VALUE", "1e400"), "Properties.Instance.Properties.x"),
        (_JSON.replace("VALUE", '"\\udc00"'), "Properties.Instance.Properties.x"),
        (_JSON.replace("VALUE", "9" * 400), "Properties.Instance.Properties.x"),
    ],
    ids=["inf", "nan", "huge-int", "yaml-surrogate", "json-1e400", "json-surrogate", "json-huge-int"],
)
def test_unencodable_values_are_refused_naming_the_field(text: str, field: str) -> None:
    with pytest.raises(specs.SpecError) as caught:
        documents.load_groups("group.yaml", text=text.encode())
    assert caught.value.field.startswith(field), caught.value
    assert "\n" not in str(caught.value)


def test_deeply_nested_json_is_refused_cleanly() -> None:
    with pytest.raises(specs.SpecError, match="nested too deeply"):
        documents.parse_text(b'{"a": ' + b"[" * 100_000, source="deep.json")


def test_a_cycle_is_refused_in_linear_time() -> None:
    cycle: list[object] = []
    cycle.append(cycle)  # what "&a [*a]" would build
    with pytest.raises(specs.SpecError, match="more than"):
        specs.parse_document(_with_property(cycle))


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (b"a: &a [*a]\n", "the alias *a is inside its own anchor: JSON has no cycles"),
        (b"a: &a {b: [*a]}\n", "the alias *a is inside its own anchor: JSON has no cycles"),
        (b"a: " + b"9" * 5000 + b"\n", "a: the integer 99999999999999999999... is too large"),
        (b'{"a": ' + b"9" * 5000 + b"}", "not valid JSON: the integer 99999999999999999999... is too large"),
        (b"a: {b: 'x\\n', 'c\\nd': [1]}\nx: y\n", ""),
    ],
    ids=["self-alias", "nested-self-alias", "yaml-5000-digits", "json-5000-digits", "control-in-keys"],
)
def test_hostile_text_is_one_clean_line(text: bytes, words: str) -> None:
    try:
        documents.parse_text(text, source="x.yaml")
    except specs.SpecError as error:
        assert words in str(error)
        assert len(str(error).splitlines()) == 1
    else:
        assert not words


def test_keys_that_are_not_plain_text_are_quoted_in_the_path() -> None:
    document = good()
    document["spec"]["allocation"] = {"\r": None}
    with pytest.raises(specs.SpecError) as caught:
        specs.parse_document(document)
    assert str(caught.value).startswith("spec.allocation['\\r']: unknown field")
    document = _with_property({"a.b": {"c\nd": float("inf")}})
    with pytest.raises(specs.SpecError, match=r"^spec\.instance\.properties\.Keys\['a\.b'\]\['c\\nd'\]: inf"):
        specs.parse_document(document)
