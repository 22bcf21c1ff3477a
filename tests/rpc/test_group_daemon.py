"""``infrakit-group-default`` on the wire: Group/0.1.0 and Metadata/0.1.0 as InfraKit's group plugin.

In: JSON-RPC calls as InfraKit's CLI makes them, to the daemon run as a subprocess over
a private ``INFRAKIT_HOME``, with the built-in plugins.  Out: the answers, the store
(shared with ``infrakit-local``), the instance files, and its self-healing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from infrakit.rpc import client
from tests.conftest import EXAMPLES
from tests.rpc.conftest import Daemon, start_daemon


def wait_until(condition: Callable[[], Any], *, timeout: float = 30.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)
    return result


@pytest.fixture
def group(sockdir: Path) -> Iterator[tuple[client.Transport, Path, Daemon]]:
    home = sockdir / "home"
    daemon = start_daemon("group-default", "--resync", "60", env={"INFRAKIT_HOME": str(home)})
    line = daemon.wait_for("Listening at:")
    assert line.rstrip().endswith(f"Listening at: {home / 'plugins' / 'group'}")
    transport = client.Transport(address=str(home / "plugins" / "group"), name="group")
    try:
        yield transport, home, daemon
    finally:
        transport.close()
        assert daemon.stop() == 0
    assert not (home / "plugins" / "group").exists()


def test_group_plugin_calls(group: tuple[client.Transport, Path, Daemon]) -> None:
    rpc, home, _ = group
    instances = home / "instances"
    assert rpc.call("Handshake.Implements", {}) == {
        "APIs": [{"Name": "Group", "Version": "0.1.0"}, {"Name": "Metadata", "Version": "0.1.0"}]
    }
    assert rpc.call("Group.InspectGroups", {}) == {"Groups": None}
    cattle = json.loads((EXAMPLES / "cattle.json").read_text())
    assert rpc.call("Group.CommitGroup", {"Spec": cattle, "Pretend": True}) == {"Details": "Managing 5 instances"}
    assert not (home / "groups" / "cattle.yaml").exists()  # pretend: nothing recorded
    assert rpc.call("Group.CommitGroup", {"Spec": cattle, "Pretend": False}) == {"Details": "Managing 5 instances"}
    files = {p.name for p in instances.iterdir()}
    assert len(files) == 5  # made before the answer came

    description = rpc.call("Group.DescribeGroup", {"ID": "cattle"})["Description"]
    assert description["Converged"] is True and {d["ID"] for d in description["Instances"]} == files
    assert rpc.call("Group.InspectGroups", {}) == {"Groups": [cattle]}

    assert rpc.call("Metadata.List", {"Path": "."}) == {"Nodes": ["groups", "specs", "status"]}
    assert rpc.call("Metadata.List", {"Path": "specs"}) == {"Nodes": ["cattle"]}
    assert rpc.call("Metadata.Get", {"Path": "specs/cattle"}) == {"Value": cattle}
    assert rpc.call("Metadata.Get", {"Path": "specs/cattle/Properties/Allocation/Size"}) == {"Value": 5}
    assert rpc.call("Metadata.Get", {"Path": "groups/cattle/Converged"}) == {"Value": True}
    assert rpc.call("Metadata.Get", {"Path": "specs/nothing"}) == {"Value": None}

    # Healing by the daemon's own runtime (the built-in file plugin's change feed).
    victim = sorted(files)[0]
    (instances / victim).unlink()
    wait_until(lambda: len(set(os.listdir(instances)) - {victim}) == 5, what="the lost instance replaced")

    # The store is infrakit-local's: it sees the group the daemon committed.
    shown = subprocess.run(
        [sys.executable, "-m", "infrakit.cli", "ls", "-q"],
        env={**os.environ, "INFRAKIT_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert shown.stdout.split() == ["cattle"]

    assert rpc.call("Group.FreeGroup", {"ID": "cattle"}) == {"OK": True}
    assert rpc.call("Group.InspectGroups", {}) == {"Groups": None}
    assert len(os.listdir(instances)) == 5  # freed: left in place
    assert rpc.call("Group.CommitGroup", {"Spec": cattle, "Pretend": False}) == {"Details": "Managing 5 instances"}
    assert rpc.call("Group.DestroyGroup", {"ID": "cattle"}) == {"OK": True}
    assert os.listdir(instances) == []


@pytest.mark.parametrize(
    ("method", "params", "needle"),
    [
        ("Group.DescribeGroup", {"ID": "nothing"}, "group 'nothing' not found"),
        ("Group.DestroyGroup", {"ID": "nothing"}, "group 'nothing' not found"),
        ("Group.FreeGroup", {"ID": ""}, "Group ID must not be blank"),
        ("Group.DescribeGroup", {"ID": "../etc"}, "ID"),
        ("Group.CommitGroup", {"Spec": {"ID": "g", "Properties": {}}, "Pretend": False}, "Properties.Allocation"),
        (
            "Group.CommitGroup",
            {
                "Spec": {
                    "ID": "g",
                    "Properties": {
                        "Allocation": {"Size": 1},
                        "Instance": {"Plugin": "instance-nowhere"},
                        "Flavor": {"Plugin": "flavor-vanilla"},
                    },
                },
                "Pretend": False,
            },
            "unknown instance plugin 'instance-nowhere'",
        ),
    ],
)
def test_refusals_are_one_line_errors(
    group: tuple[client.Transport, Path, Daemon], method: str, params: dict[str, Any], needle: str
) -> None:
    rpc, home, daemon = group
    with pytest.raises(client.RemoteError) as refused:
        rpc.call(method, params)
    assert needle in refused.value.message and "\n" not in refused.value.message
    assert refused.value.code == -32000
    assert not (home / "groups" / "g.yaml").exists()  # nothing recorded
    assert daemon.process.poll() is None
