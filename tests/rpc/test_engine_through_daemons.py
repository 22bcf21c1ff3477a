"""Our engine converging groups through plugin daemons: ours, and one written in Go.

The group controller must not care where a plugin runs: through our ``instance-file``
daemon the instance files are the same as in-process; through the Go test plugin
(built from ``goplugin/main.go``) the group converges, stays converged, and heals.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infrakit.core import instances, specs, status
from infrakit.plugins import spi
from infrakit.plugins.flavor_vanilla import VanillaPlugin
from infrakit.plugins.instance_file import FilePlugin
from infrakit.rpc import client, discovery
from infrakit.runtime import engine
from tests.rpc.conftest import Daemon, start_daemon


def group(size: int) -> specs.GroupSpec:
    return specs.parse_document(
        {
            "ID": "cattle",
            "Properties": {
                "Allocation": {"Size": size},
                "Instance": {"Plugin": "instance-file", "Properties": {"Note": "Instance properties"}},
                "Flavor": {
                    "Plugin": "flavor-vanilla",
                    "Properties": {"Init": ["docker pull nginx:alpine"], "Tags": {"tier": "web"}},
                },
            },
        }
    )


def files(directory: Path) -> list[dict[str, Any]]:
    """The instance files, less what differs by nature (random IDs, creation times)."""
    found = []
    for path in sorted(directory.glob("instance-*")):
        document = json.loads(path.read_text())
        assert document.pop("ID") == path.name
        document.pop("CreatedAt")
        found.append(document)
    return sorted(found, key=lambda d: json.dumps(d, sort_keys=True))


def converge(spec: specs.GroupSpec, resolved: engine.Plugins) -> engine.Outcome:
    resolved.instance.validate(spec.instance.properties)
    resolved.flavor.validate(spec.flavor.properties, spec.allocation)
    outcome = engine.reconcile(spec, resolved)
    assert outcome.plan.empty and len(outcome.members) == spec.desired_size
    return outcome


def test_through_our_instance_file_daemon_the_files_are_the_same(plugins_env: Path, tmp_path: Path) -> None:
    daemon = start_daemon("instance-file", "--dir", str(tmp_path / "remote"))
    try:
        daemon.wait_for("Listening at:")
        endpoint = discovery.find("instance-file")
        assert endpoint is not None
        remote = engine.Plugins(
            instance=client.RemoteInstancePlugin(name="instance-file", address=endpoint.address),
            flavor=VanillaPlugin(),
        )
        local = engine.Plugins(instance=FilePlugin(directory=tmp_path / "local"), flavor=VanillaPlugin())
        for size in (5, 3):
            converge(group(size), remote)
            converge(group(size), local)
            assert len(files(tmp_path / "remote")) == size
            assert files(tmp_path / "remote") == files(tmp_path / "local")
        assert engine.reconcile(group(3), remote).steps == []  # converged stays converged
    finally:
        assert daemon.stop() == 0


@pytest.fixture
def go_socket(goplugin: Path, sockdir: Path) -> Iterator[str]:
    path = sockdir / "instance-go"
    daemon = Daemon([str(goplugin), "-socket", str(path)])
    try:
        daemon.wait_for("Listening at:")
        yield str(path)
    finally:
        assert daemon.stop() == 0
    assert not path.exists()


def test_the_go_plugin_through_our_client(go_socket: str) -> None:
    remote = client.RemoteInstancePlugin(name="instance-go", address=go_socket)
    remote.validate({"any": "object"})
    with pytest.raises(specs.SpecError) as refused:
        remote.validate(["not", "an", "object"])
    assert refused.value.field == "spec.instance.properties"
    assert "properties must be a JSON object" in refused.value.message

    web = remote.provision(instances.InstanceSpec(tags={"infrakit.group": "g", "tier": "web"}, logical_id="w1"))
    other = remote.provision(instances.InstanceSpec(tags={"infrakit.group": "g"}))
    assert sorted(d.id for d in remote.describe({"infrakit.group": "g"})) == sorted([web, other])
    (found,) = remote.describe({"tier": "web"})
    assert (found.id, found.logical_id, dict(found.tags)) == (web, "w1", {"infrakit.group": "g", "tier": "web"})
    assert remote.describe({"tier": "db"}) == []  # Go's nil slice

    remote.label(other, {"tier": "web"})
    assert sorted(d.id for d in remote.describe({"tier": "web"})) == sorted([web, other])

    remote.destroy(web)
    assert [d.id for d in remote.describe({})] == [other]
    with pytest.raises(spi.InstanceNotFound, match=f"instance {web} not found"):
        remote.destroy(web)
    with pytest.raises(spi.InstanceNotFound):
        remote.label(web, {"a": "b"})
    with pytest.raises(spi.PluginError, match=r"^plugin 'instance-go' at .*: Instance.Provision: out of capacity$"):
        remote.provision(instances.InstanceSpec(properties={"Fail": "out of capacity"}))


def test_our_engine_converges_and_heals_through_the_go_plugin(go_socket: str) -> None:
    spec = group(5)
    resolved = engine.Plugins(
        instance=client.RemoteInstancePlugin(name="instance-go", address=go_socket), flavor=VanillaPlugin()
    )
    outcome = converge(spec, resolved)
    described = resolved.instance.describe(status.membership_tags(spec))
    assert sorted(d.id for d in described) == sorted(m.id for m in outcome.members)
    assert all(d.tags["tier"] == "web" and d.tags[instances.TAG_CONFIG_SHA] == spec.config_sha for d in described)
    assert engine.reconcile(spec, resolved).steps == []

    resolved.instance.destroy(described[0].id)  # lost behind the group's back
    healed = engine.reconcile(spec, resolved)
    assert [step.action for step in healed.steps] == ["provision"]
    assert len(resolved.instance.describe(status.membership_tags(spec))) == 5

    assert len(engine.teardown(spec, resolved)) == 5
    assert resolved.instance.describe({}) == []
