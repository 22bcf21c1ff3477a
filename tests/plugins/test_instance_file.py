"""The file instance plugin against its SPI, including a hostile directory."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import hypothesis
import hypothesis.strategies
import pytest

from infrakit.core import instances
from infrakit.plugins import InstanceNotFound, PluginError
from infrakit.plugins.instance_file import FilePlugin
from infrakit.plugins.instance_file import documents as instance_documents

SPEC = instances.InstanceSpec(
    properties={"Note": "n"},
    tags={"infrakit.group": "g", "tier": "web"},
    init="echo hi",
    logical_id="db-1",
    attachments=(instances.Attachment(id="vol", type="ebs"),),
)


def test_provision_describe_label_destroy(tmp_path: Path) -> None:
    plugin = FilePlugin(directory=tmp_path / "dir")
    iid = plugin.provision(SPEC)
    assert iid.startswith("instance-") and 0 <= int(iid.removeprefix("instance-")) < 2**63
    document = json.loads((tmp_path / "dir" / iid).read_text())
    assert document["ID"] == iid and document["LogicalID"] == "db-1"
    assert document["Spec"] == SPEC.to_json()
    (described,) = plugin.describe({"infrakit.group": "g"})
    assert (described.id, described.logical_id, dict(described.tags)) == (iid, "db-1", dict(SPEC.tags))
    assert plugin.describe({"infrakit.group": "other"}) == []
    plugin.label(iid, {"extra": "1"})
    assert plugin.describe({"extra": "1"})[0].id == iid
    plugin.destroy(iid)
    assert plugin.describe({}) == []
    with pytest.raises(InstanceNotFound):
        plugin.destroy(iid)


def test_durable_mode_writes_the_same(tmp_path: Path) -> None:
    plugin = FilePlugin(directory=tmp_path, durable=True)
    iid = plugin.provision(SPEC)
    assert json.loads((tmp_path / iid).read_text())["Tags"] == dict(SPEC.tags)


def test_hostile_directory(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.json"
    secret.write_text(json.dumps({"ID": "instance-1", "Tags": {"infrakit.group": "g"}}))
    directory = tmp_path / "dir"
    plugin = FilePlugin(directory=directory)
    ours = plugin.provision(SPEC)
    (directory / "instance-1").symlink_to(secret)  # a link posing as an instance
    (directory / "instance-2").write_text("not json{")  # garbage
    (directory / "instance-3").write_text(json.dumps({"ID": "instance-999"}))  # lies about its ID
    (directory / "README").write_text("not ours")  # another program's file
    unreadable = directory / "instance-4"
    unreadable.write_text(json.dumps({"ID": "instance-4", "Tags": {"infrakit.group": "g"}}))
    unreadable.chmod(0)

    with caplog.at_level(logging.WARNING):
        found = plugin.describe({"infrakit.group": "g"})
        plugin.describe({"infrakit.group": "g"})  # warned once per file, not per pass
    ids = {d.id for d in found}
    assert ours in ids and "instance-1" not in ids and "instance-2" not in ids and "instance-3" not in ids
    if os.geteuid() != 0:  # root reads anything
        assert "instance-4" not in ids
    warnings = [r.getMessage() for r in caplog.records]
    assert any("instance-1" in w and "symlink" in w for w in warnings)
    assert any("instance-2" in w for w in warnings)
    assert len(warnings) == len(set(warnings))

    with pytest.raises(PluginError, match="not a regular file"):
        plugin.destroy("instance-1")
    assert secret.exists() and (directory / "instance-1").is_symlink()
    with pytest.raises(InstanceNotFound):
        plugin.destroy("../outside/secret.json")
    assert (directory / "README").exists()


def test_label_never_writes_through_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_text(json.dumps({"ID": "instance-5", "Tags": {}}))
    directory = tmp_path / "dir"
    directory.mkdir()
    (directory / "instance-5").symlink_to(target)
    with pytest.raises(InstanceNotFound):
        FilePlugin(directory=directory).label("instance-5", {"a": "b"})
    assert json.loads(target.read_text()) == {"ID": "instance-5", "Tags": {}}


def test_missing_directory_describes_nothing(tmp_path: Path) -> None:
    assert FilePlugin(directory=tmp_path / "nope").describe({}) == []


json_values = hypothesis.strategies.recursive(
    hypothesis.strategies.none()
    | hypothesis.strategies.booleans()
    | hypothesis.strategies.integers()
    | hypothesis.strategies.floats(allow_nan=False, allow_infinity=False)
    | hypothesis.strategies.text(max_size=5),
    lambda children: (
        hypothesis.strategies.lists(children, max_size=4)
        | hypothesis.strategies.dictionaries(hypothesis.strategies.text(max_size=3), children, max_size=4)
    ),
    max_leaves=30,
)


@hypothesis.given(json_values)
@hypothesis.settings(max_examples=300, deadline=None)
def test_validate_measures_the_properties_as_the_file_renders_them(properties: Any) -> None:
    """The size validate checks is exactly what the properties take in the file provision writes."""
    depth, indentation = instance_documents.measure(properties, base=4)
    in_file = json.dumps({"Spec": {"Properties": properties}}, indent=2, sort_keys=True)
    without = json.dumps({"Spec": {"Properties": None}}, indent=2)
    assert len(instance_documents.compact.encode(properties)) + indentation == len(in_file) - len(without) + len("null")
    assert depth <= 32


def test_a_directory_that_cannot_be_listed_is_an_error_not_an_empty_group(tmp_path: Path) -> None:
    """Before: a regular file where the directory belongs raised NotADirectoryError (a traceback)."""
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(PluginError, match="cannot list the instance directory"):
        FilePlugin(directory=tmp_path / "file").describe({})
    with pytest.raises(PluginError, match="cannot list the instance directory"):
        FilePlugin(directory=tmp_path / "file" / "below").describe({})
