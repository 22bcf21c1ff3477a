"""Metadata: InfraKit's group plugin paths plus ours (status), from the store, the daemon and Group objects.

In: groups committed to a private home (the group daemon as a subprocess for the served
case), Group objects as the cluster returns them.  Out: ``metadata ls|cat`` lines and
exit codes, and the Metadata/0.1.0 answers.
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


def test_metadata_from_the_store_without_a_daemon(commands: None, short_home: Path) -> None:
    assert run("commit", str(CATTLE)).exit_code == 0
    _check_cattle()


def test_metadata_served_by_the_group_daemon(commands: None, short_home: Path) -> None:
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


def test_a_path_under_an_unknown_plugin_says_what_runs(commands: None, short_home: Path) -> None:
    result = run("metadata", "cat", "instance-aws/x")
    assert result.exit_code == 1 and "plugin 'instance-aws' is not running" in result.output
    short = run("metadata", "cat", "group")
    assert short.exit_code == 2 and "name a plugin and a path" in short.output


class FakeCluster:
    namespace = "team"

    def __init__(self, bodies: dict[str, dict[str, Any]]) -> None:
        self.bodies = bodies

    def names(self) -> list[str]:
        return sorted(self.bodies)

    def get(self, name: str) -> dict[str, Any]:
        return self.bodies[name]

    def describe(self, name: str) -> list[Any]:
        from infrakit.core import instances

        return [instances.Description(id="i-1", tags={"infrakit.group": name})] if name == "web" else []


def test_metadata_from_group_objects() -> None:
    from infrakit.commands import metadata

    body = {
        "apiVersion": "infrakit.io/v1alpha1",
        "kind": "Group",
        "metadata": {"name": "web", "namespace": "team"},
        "spec": {
            "allocation": {"size": 2},
            "instance": {"plugin": "instance-file", "properties": {"Note": "x"}},
            "flavor": {"plugin": "flavor-vanilla", "properties": {}},
        },
        "status": {
            "replicas": 2,
            "readyReplicas": 1,
            "configHash": "abc",
            "conditions": [{"type": "Ready", "status": "False", "reason": "WaitingForHealth"}],
        },
    }
    root = metadata.cluster_root(FakeCluster({"web": body, "bad": {"metadata": {"name": "bad"}}}))
    assert paths.get(root, ("specs", "web", "Properties", "Allocation")) == {"Size": 2}
    assert paths.get(root, ("status", "web")) == {
        "replicas": 2,
        "readyReplicas": 1,
        "configHash": "abc",
        "conditions": [{"type": "Ready", "status": "False", "reason": "WaitingForHealth"}],
    }
    described = paths.get(root, ("groups", "web"))
    assert described["Converged"] is False and [i["ID"] for i in described["Instances"]] == ["i-1"]
    assert "Error" in paths.get(root, ("specs", "bad"))  # a bad object affects only itself
