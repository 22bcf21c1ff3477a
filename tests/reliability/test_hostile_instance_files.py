"""Hostile instance files: what the file plugin writes it reads back, and one file never stops anything.

Issue 11, items 1-3.  In: instance files of every bad shape (too big, truncated,
nested 200,000 deep, numbers that overflow, wrong types, bytes that are not UTF-8) next
to a good member, and specs the plugin must refuse.  Out: describe lists exactly the
good members and warns once per bad file; a file the plugin wrote is always read back
(so a group never provisions in a loop); an unreadable file that carries a group's tags
is still that group's member (never replaced, removed by ``destroy``); bad specs are
refused naming the field, nothing written.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from infrakit import cli
from infrakit.core import instances, specs
from infrakit.plugins import InstanceNotFound, PluginError, instance_file
from infrakit.plugins.flavor_vanilla import VanillaPlugin
from infrakit.plugins.instance_file import FilePlugin
from tests.conftest import snapshot

GROUP = {instances.TAG_GROUP: "g"}


def spec(**changes: Any) -> instances.InstanceSpec:
    fields: dict[str, Any] = {"properties": {"Note": "n"}, "tags": {**GROUP, "infrakit.config_sha": "abc"}}
    fields.update(changes)
    return instances.InstanceSpec(**fields)


def rows(count: int) -> dict[str, Any]:
    """Properties whose indented rendering is about 5 times their compact JSON."""
    return {"Rows": [{"k": 0} for _ in range(count)]}


def deep_zeros(count: int, *, depth: int = 20) -> Any:
    """Properties whose indented rendering is about 25 times their compact JSON."""
    value: Any = [0] * count
    for _ in range(depth):
        value = {"a": value}
    return value


def run(home: Path, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli.cli, ["--home", str(home), *args], input=stdin)
    return result.exit_code, result.stdout, result.stderr


def ids(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir() if p.name.startswith("instance-")} if directory.exists() else set()


# -- item 1: limits agree end to end ---------------------------------------------------------


@pytest.mark.parametrize("count", [10, 30_000, 60_000, 120_000, 240_000])
def test_what_validate_accepts_is_provisioned_and_read_back(tmp_path: Path, count: int) -> None:
    """Before: 30,000 rows (~270 KB of JSON) made a 1.3 MB file the plugin then never read: no members, ever."""
    plugin = FilePlugin(directory=tmp_path)
    properties = rows(count)
    try:
        plugin.validate(properties)
    except specs.SpecError as error:
        assert error.field == "spec.instance.properties"
        assert count >= 120_000, "refused properties that fit"  # 4.5 MB rendered and more
        return
    assert count < 120_000, "accepted properties over the budget"
    iid = plugin.provision(spec(properties=properties))
    assert [d.id for d in plugin.describe(GROUP)] == [iid], "wrote an instance it cannot read back"
    assert plugin.describe(GROUP)[0].tags == spec().tags


def test_validate_measures_exactly_what_provision_writes(tmp_path: Path) -> None:
    plugin = FilePlugin(directory=tmp_path)
    limit = instance_file.MAX_PROPERTIES
    # Find, by bisection, the largest row count validate accepts: its file is within the
    # budget, one more row is refused.  The budget is what the rendered properties take.
    low, high = 1, 150_000
    while high - low > 1:
        middle = (low + high) // 2
        try:
            plugin.validate(rows(middle))
            low = middle
        except specs.SpecError:
            high = middle
    empty = len(json.dumps({"Spec": {"Properties": None}}, indent=2))  # what null takes in the file
    for count, fits in ((low, True), (high, False)):
        text = json.dumps({"Spec": {"Properties": rows(count)}}, indent=2, sort_keys=True)
        assert (len(text) - empty + len("null") <= limit) is fits


def test_provision_never_writes_a_file_it_could_not_read(tmp_path: Path) -> None:
    """The flavor may add Init and tags after validation: provision checks the whole file."""
    plugin = FilePlugin(directory=tmp_path)
    with pytest.raises(PluginError, match="larger than"):
        plugin.provision(spec(init="x" * instance_file.MAX_FILE))
    assert ids(tmp_path) == set()


def test_a_too_big_spec_is_refused_at_commit_and_never_provisioned_in_a_loop(tmp_path: Path) -> None:
    """Before: commit said Managing 1 instances, wrote a 7 MB file it could not read, and each pass wrote another."""
    home = tmp_path / "home"
    document = {
        "apiVersion": "infrakit.io/v1alpha1",
        "kind": "Group",
        "metadata": {"name": "big"},
        "spec": {
            "allocation": {"size": 1},
            "instance": {"plugin": "instance-file", "properties": deep_zeros(150_000)},
            "flavor": {"plugin": "flavor-vanilla", "properties": {}},
        },
    }
    text = json.dumps(document, separators=(",", ":"))
    assert len(text) < 400_000  # a legal document
    path = tmp_path / "big.json"
    path.write_text(text)
    for _ in range(2):
        code, _, err = run(home, "commit", str(path))
        assert code == 2, err
        assert "spec.instance.properties" in err and "Traceback" not in err
        assert ids(home / "instances") == set()


def _flavor_at_its_limit(shape: str) -> dict[str, Any]:
    """Vanilla properties adding as much as a flavor may, in the shape that costs a file most."""
    limit = instances.MAX_FLAVOR_BYTES - 4  # what the two empty parts take
    if shape == "init-escapes":  # every byte escaped: 6 bytes of JSON each
        return {"Init": ["\x01" * ((limit - 2) // 6)]}
    if shape == "tiny-tags":  # indented and written twice (Spec.Tags and Tags): 3.5 times their JSON
        tags: dict[str, str] = {}
        size = 2
        while size + len(f'"{len(tags):x}": "", ') <= limit:
            size += len(f'"{len(tags):x}": "", ')
            tags[f"{len(tags):x}"] = ""
        return {"Tags": tags}
    return {"Attachments": [{"ID": "", "Type": ""}] * ((limit - 2) // len('{"ID": "", "Type": ""}, '))}


@pytest.mark.parametrize("shape", ["init-escapes", "tiny-tags", "attachments"])
def test_what_flavor_and_instance_validation_accept_together_is_written_and_read_back(
    tmp_path: Path, shape: str
) -> None:
    """The flavor's budget and the properties' budget together fit the read limit, worst shapes included."""
    file_plugin, vanilla = FilePlugin(directory=tmp_path), VanillaPlugin()
    properties = {"s": "a" * (instance_file.MAX_PROPERTIES - 21)}  # exactly the budget, rendered
    file_plugin.validate(properties)
    with pytest.raises(specs.SpecError):
        file_plugin.validate({"s": "a" * (instance_file.MAX_PROPERTIES - 20)})
    flavor = _flavor_at_its_limit(shape)
    allocation = specs.Allocation(logical_ids=("l" * 63,))
    vanilla.validate(flavor, allocation)
    longest = {
        instances.TAG_GROUP: "g" * 63,
        instances.TAG_NAMESPACE: "n" * 63,
        instances.TAG_CONFIG_SHA: "c" * 64,
        instances.TAG_LOGICAL_ID: "l" * 63,
    }
    base = instances.InstanceSpec(properties=properties, tags=longest, logical_id="l" * 63)
    iid = file_plugin.provision(vanilla.prepare(flavor, base, allocation))
    assert (tmp_path / iid).stat().st_size <= instance_file.MAX_FILE
    assert [d.id for d in file_plugin.describe(longest)] == [iid]


def test_an_init_script_too_big_for_any_instance_is_refused_at_commit(tmp_path: Path) -> None:
    """Before: YAML aliases made a 9.6 MB init script from a legal document; commit saved the
    group, then every provision failed (exit 1, and `run` retried it for ever)."""
    home = tmp_path / "home"
    chunk = "x" * 600_000
    group = tmp_path / "init.yaml"
    group.write_text(
        "apiVersion: infrakit.io/v1alpha1\nkind: Group\nmetadata: {name: init}\n"
        "spec:\n  allocation: {size: 1}\n  instance: {plugin: instance-file, properties: {Note: n}}\n"
        f"  flavor:\n    plugin: flavor-vanilla\n    properties:\n      Init: [&a {chunk}{', *a' * 15}]\n"
    )
    for args in (("commit", "--pretend"), ("commit",), ("commit",)):
        code, _, err = run(home, *args, str(group))
        assert code == 2, err
        assert "spec.flavor.properties.Init" in err and len(err.splitlines()) == 1
        assert not (home / "groups" / "init.yaml").exists() and ids(home / "instances") == set()


def _inflate(path: Path, *, extra: int) -> None:
    """Rewrite an instance file, in the plugin's own format, with ``extra`` bytes of properties."""
    document = json.loads(path.read_text())
    document["Spec"]["Properties"] = {"Blob": "x" * extra}
    path.write_text(json.dumps(document, indent=2, sort_keys=True))


def _scramble_middle(path: Path) -> None:
    """Keep the head and the tail, replace the middle with garbage."""
    data = path.read_bytes()
    head, tail = data.index(b'"Spec"'), data.rindex(b'\n  "Tags"')
    path.write_bytes(data[:head] + b"\x00\xff not json [[[" + data[tail:])


@pytest.mark.parametrize(
    "damage",
    [
        lambda path: _inflate(path, extra=instance_file.MAX_FILE),
        _scramble_middle,
        lambda path: path.write_bytes(path.read_bytes().replace(b'"Spec": {', b'"Spec": {' + b"[" * 200_000, 1)),
    ],
    ids=["too-big", "garbage-middle", "deep-middle"],
)
def test_an_unreadable_member_is_never_replaced_and_destroy_removes_it(
    tmp_path: Path, damage: Callable[[Path], None]
) -> None:
    """Before: a member grown beyond the read limit was invisible: replaced on each commit, never destroyed."""
    home = tmp_path / "home"
    group = tmp_path / "one.yaml"
    group.write_text(
        "apiVersion: infrakit.io/v1alpha1\nkind: Group\nmetadata: {name: one}\n"
        "spec:\n  allocation: {size: 1}\n  instance: {plugin: instance-file, properties: {Note: n}}\n"
        "  flavor: {plugin: flavor-vanilla, properties: {}}\n"
    )
    code, _, err = run(home, "commit", str(group))
    assert code == 0, err
    (member,) = ids(home / "instances")
    damage(home / "instances" / member)
    for _ in range(2):
        code, _, err = run(home, "commit", str(group))
        assert code == 0, err
        assert "Traceback" not in err
        assert ids(home / "instances") == {member}
    code, out, err = run(home, "destroy", "one")
    assert code == 0, err
    assert out == "Destroyed one: 1 instances\n"
    assert ids(home / "instances") == set()


def test_a_truncated_member_is_replaced_once_not_in_a_loop(tmp_path: Path) -> None:
    plugin = FilePlugin(directory=tmp_path)
    iid = plugin.provision(spec())
    data = (tmp_path / iid).read_bytes()
    (tmp_path / iid).write_bytes(data[: len(data) // 2])
    assert plugin.describe(GROUP) == []  # its tags are gone with its end: not a member
    replacement = plugin.provision(spec())
    assert [d.id for d in plugin.describe(GROUP)] == [replacement]


# -- items 2 and 3: one file never stops anything, wrong types are not members ------------------

NAME = "instance-42"


def _document(**changes: Any) -> bytes:
    document: dict[str, Any] = {"CreatedAt": 1.5, "ID": NAME, "LogicalID": None, "Spec": {}, "Tags": dict(GROUP)}
    document.update(changes)
    return json.dumps(document).encode()


HOSTILE: dict[str, bytes] = {
    "nested-brackets": b"[" * 200_000,
    "nested-objects": b'{"a":' * 100_000,
    "created-401-digits": _document().replace(b"1.5", b"9" * 401),
    "created-1e400": _document().replace(b"1.5", b"1e400"),
    "created-NaN": _document().replace(b"1.5", b"NaN"),
    "created-string": _document(CreatedAt="yesterday"),
    "created-bool": _document(CreatedAt=True),
    "integer-5000-digits": _document().replace(b"1.5", b"1" * 5000),
    "not-utf8": _document().replace(b"null", b'"\xff\xfe"'),
    "lone-surrogate": _document(LogicalID="\ud800"),
    "null": b"null",
    "a-list": b"[]",
    "a-string": b'"instance-42"',
    "id-number": _document(ID=42),
    "logical-id-list": _document(LogicalID=["a"]),
    "logical-id-map": _document(LogicalID={"a": "b"}),
    "logical-id-number": _document(LogicalID=7),
    "logical-id-bool": _document(LogicalID=True),
    "tags-list": _document(Tags=[["infrakit.group", "g"]]),
    "tags-string": _document(Tags="infrakit.group=g"),
    "tag-value-number": _document(Tags={**GROUP, "n": 1}),
    "tag-value-null": _document(Tags={**GROUP, "n": None}),
    "tag-value-map": _document(Tags={**GROUP, "n": {}}),
    "empty": b"",
    "nul-bytes": b"\x00" * 1000,
}


@pytest.mark.parametrize("content", HOSTILE.values(), ids=HOSTILE.keys())
def test_one_bad_file_is_warned_about_once_and_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes
) -> None:
    """Before: RecursionError, OverflowError and non-string logical IDs escaped describe (every group stopped)."""
    plugin = FilePlugin(directory=tmp_path)
    good = plugin.provision(spec(logical_id="a"))
    (tmp_path / NAME).write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="infrakit.plugins.instance_file"):
        for _ in range(3):
            found = plugin.describe(GROUP)
            assert [d.id for d in found] == [good]
            assert plugin.describe({}) == found
    for description in plugin.describe({}):  # what reaches the planner is well typed
        assert type(description.logical_id) is str or description.logical_id is None
        assert all(type(k) is str and type(v) is str for k, v in description.tags.items())
    about = [r.getMessage() for r in caplog.records if NAME in r.getMessage()]
    assert len(about) == 1, about
    with pytest.raises(InstanceNotFound):
        plugin.label(NAME, {"x": "y"})
    assert (tmp_path / NAME).read_bytes() == content  # never rewritten
    plugin.destroy(NAME)  # its name is an instance ID: it can be removed on purpose


@pytest.mark.parametrize("content", [HOSTILE["nested-brackets"], HOSTILE["created-401-digits"]])
def test_the_cli_describes_the_other_instances(tmp_path: Path, content: bytes) -> None:
    """Before: every local command exited with a traceback."""
    home = tmp_path / "home"
    (home / "instances").mkdir(parents=True)
    (home / "instances" / NAME).write_bytes(content)
    code, out, err = run(home, "instance-file", "describe")
    assert code == 0, err
    assert "Traceback" not in err and NAME in err
    assert out.split() == ["ID", "LOGICAL", "TAGS"]


BAD_SPECS: list[tuple[dict[str, Any], str]] = [
    ({"LogicalID": ["a"]}, "LogicalID: must be a string or null, got a list"),
    ({"LogicalID": {"a": 1}}, "LogicalID: must be a string or null, got a mapping"),
    ({"LogicalID": 7}, "LogicalID: must be a string or null, got a number"),
    ({"LogicalID": False}, "LogicalID: must be a string or null, got a boolean"),
    ({"Tags": ["a"]}, "Tags: must be a mapping of strings to strings, got a list"),
    ({"Tags": {"a": 1}}, "Tags.a: must be a string, got a number"),
    ({"Tags": {"a": None}}, "Tags.a: must be a string, got null"),
    ({"Init": ["echo"]}, "Init: must be a string, got a list"),
    ({"Attachments": {"ID": "a"}}, "Attachments: must be a list, got a mapping"),
    ({"Attachments": ["vol"]}, "Attachments[0]: must be a mapping with ID and Type, got a string"),
    ({"Attachments": [{"ID": "a"}]}, "Attachments[0].Type: must be a string, got nothing"),
    ({"Attachments": [{"ID": 1, "Type": "t"}]}, "Attachments[0].ID: must be a string, got a number"),
]


@pytest.mark.parametrize(("document", "message"), BAD_SPECS, ids=[m.split(":")[0] for _, m in BAD_SPECS])
def test_instance_specs_of_the_wrong_types_are_refused(tmp_path: Path, document: dict[str, Any], message: str) -> None:
    """Before: `instance-file provision` wrote a file with a list as LogicalID, which crashed describe."""
    with pytest.raises(specs.SpecError) as caught:
        instances.InstanceSpec.from_json({"Properties": {}, **document})
    assert str(caught.value) == message
    home = tmp_path / "home"
    code, out, err = run(home, "instance-file", "provision", "-", stdin=json.dumps(document))
    assert (code, out) == (2, ""), err
    assert message in err and "Traceback" not in err
    assert snapshot(home / "instances") == {}


@pytest.mark.parametrize(
    "changes",
    [
        {"logical_id": ["a"]},
        {"tags": {**GROUP, "n": 1}},
        {"tags": {1: "a"}},
        {"init": None},
        {"attachments": ("vol",)},
    ],
)
def test_provision_refuses_a_spec_of_the_wrong_types(tmp_path: Path, changes: dict[str, Any]) -> None:
    with pytest.raises(specs.SpecError):
        FilePlugin(directory=tmp_path).provision(spec(**changes))
    assert ids(tmp_path) == set()


def test_valid_specs_still_load() -> None:
    document = {
        "Properties": {"a": [1]},
        "Tags": {"t": "v"},
        "Init": "echo",
        "LogicalID": "db",
        "Attachments": [{"ID": "a", "Type": "t"}],
    }
    loaded = instances.InstanceSpec.from_json(document)
    assert loaded.to_json() == document
    assert instances.InstanceSpec.from_json({"LogicalID": None, "Tags": None, "Init": None}) == instances.InstanceSpec()
