"""Metadata: InfraKit's group plugin paths plus ours (status), from the store, the daemon and Group objects.

In: groups committed to a private home (the group daemon as a subprocess for the served
case).  Out: ``metadata ls|cat`` lines and exit codes, and the Metadata/0.1.0 answers.
(The same tree from a cluster's Groups: ``tests/groups/test_conformance.py``.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from infrakit.core import metadata as paths
from tests.commands.conftest import run
from tests.rpc.conftest import Daemon, start_daemon

CATTLE = Path(__file__).resolve().parents[2] / "examples" / "cattle.json"


def test_paths_compute_only_what_is_read() -> None:
    computed: list[str] = []

    def leaf(name: str) -> Any:
        def compute() -> Any:
            computed.append(name)
            return {"Size": 5, "IDs": ["a", "b"]}

        return compute

    root = {"specs": {"one": leaf("one"), "two": leaf("two")}}
    assert paths.children(root, ()) == ["specs"]
    assert paths.children(root, ("specs",)) == ["one", "two"]
    assert computed == []  # listing names computes no value
    assert paths.get(root, ("specs", "one", "Size")) == 5
    assert paths.get(root, ("specs", "one", "IDs", "1")) == "b"
    assert paths.children(root, ("specs", "one", "IDs")) == ["0", "1"]
    assert computed == ["one", "one", "one"]
    assert paths.get(root, ("specs", "three")) is None
    assert paths.lookup(root, ("specs", "one", "Nope")) is paths.MISSING


def _check_cattle(prefix: tuple[str, ...] = ()) -> None:
    assert run(*prefix, "metadata", "ls").output.splitlines() == ["group"]
    assert run(*prefix, "metadata", "ls", "group").output.splitlines() == ["groups", "specs", "status"]
    assert run(*prefix, "metadata", "ls", "-l", "group/specs").output.splitlines() == ["group/specs/cattle"]
    size = run(*prefix, "metadata", "cat", "group/specs/cattle/Properties/Allocation/Size")
    assert (size.exit_code, size.output) == (0, "5\n")
    spec = run(*prefix, "metadata", "cat", "group/specs/cattle")
    assert json.loads(spec.output) == json.loads(CATTLE.read_text())
    assert run(*prefix, "metadata", "cat", "group/groups/cattle/Converged").output == "true\n"
    assert len(json.loads(run(*prefix, "metadata", "cat", "group/groups/cattle/Instances").output)) == 5
    assert run(*prefix, "metadata", "cat", "group/status/cattle/readyReplicas").output == "5\n"
    ready = json.loads(run(*prefix, "metadata", "cat", "group/status/cattle/conditions/0").output)
    assert (ready["type"], ready["status"]) == ("Ready", "True")
    config = run(*prefix, "metadata", "cat", "group/status/cattle/configHash").output.strip()
    assert (
        config and config == json.loads(run(*prefix, "inspect", "cattle", "-o", "json").output)["status"]["configHash"]
    )
    assert "instances" not in run(*prefix, "metadata", "ls", "group/status/cattle").output.split()
    missing = run(*prefix, "metadata", "cat", "group/specs/nothing")
    assert missing.exit_code == 2
    assert "nothing at group/specs/nothing" in missing.output and "metadata ls group/specs" in missing.output


def test_metadata_from_the_store_without_a_daemon(short_home: Path) -> None:
    assert run("commit", str(CATTLE)).exit_code == 0
    _check_cattle()


def test_metadata_served_by_the_group_daemon(short_home: Path) -> None:
    from infrakit.rpc import client

    daemon: Daemon = start_daemon("group-default", "--resync", "60", env={"INFRAKIT_HOME": str(short_home)})
    try:
        daemon.wait_for("Listening at:")
        assert run("commit", str(CATTLE)).exit_code == 0
        _check_cattle()
        transport = client.Transport(address=str(short_home / "plugins" / "group"), name="group")
        assert transport.call("Metadata.List", {"Path": "status/cattle"})["Nodes"][:2] == [
            "conditions",
            "configHash",
        ]
        transport.close()
    finally:
        assert daemon.stop() == 0


def test_a_path_under_an_unknown_plugin_says_what_runs(short_home: Path) -> None:
    result = run("metadata", "cat", "instance-aws/x")
    assert result.exit_code == 1 and "plugin 'instance-aws' is not running" in result.output
    short = run("metadata", "cat", "group")
    assert short.exit_code == 2 and "name a plugin and a path" in short.output


def test_one_damaged_group_affects_only_its_own_paths(short_home: Path) -> None:
    """The tree of any Group SPI (here the store's): a group that cannot be read shows its error, the rest reads."""
    from infrakit import plugins
    from infrakit.groups import metadata
    from infrakit.local import groups, store

    assert run("commit", str(CATTLE)).exit_code == 0
    (short_home / "groups" / "bad.yaml").write_text("kind: Group\nmetadata: {name: bad}\n")
    registry = plugins.Registry()
    kept = groups.StoreGroups(store=store.Store(short_home), plugin_registry=registry, options=lambda name: {})
    root = metadata.root(kept)
    assert paths.children(root, ("specs",)) == ["bad", "cattle"]
    assert paths.get(root, ("specs", "cattle", "Properties", "Allocation")) == {"Size": 5}
    assert paths.get(root, ("status", "cattle"))["replicas"] == 5
    described = paths.get(root, ("groups", "cattle"))
    assert described["Converged"] is True and len(described["Instances"]) == 5
    for tree in ("specs", "status", "groups"):
        assert "damaged" in paths.get(root, (tree, "bad"))["Error"]
