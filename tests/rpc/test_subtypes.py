"""Plugin sub-types end to end: ``instance-mycloud/large`` dials ``instance-mycloud``, sends ``Type: large`` (K17).

In: groups committed with ``infrakit-local commit`` naming a sub-type of a daemon that
serves it (ours, built with typed plugins as InfraKit's ``PluginServerWithTypes``), of a
daemon that does not, and of a built-in plugin; our clients called with a sub-typed
name against a hand-made plugin.  Out: the sub-type's plugin provisions (with the
config hash InfraKit computes for the spec), every call carries ``Type`` as v0.5's
clients send it (not the handshake), an unknown sub-type is a one-line error naming
``spec.instance.plugin`` (exit 2, nothing written), and the server routes or refuses.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infrakit import plugins
from infrakit.core import instances, specs
from infrakit.plugins import spi
from infrakit.plugins.flavor_vanilla import VanillaPlugin
from infrakit.plugins.instance_file import FilePlugin
from infrakit.rpc import client, server
from tests.conftest import EXAMPLES
from tests.rpc.conftest import FakeHandler, fake_plugin, handshaking, rpc, serving

SUBTYPED_SHA = "irnlmeugyuskr3pxb7hxqfvxccjzkzuz"  # by Go: see tests/core/test_plugin_names.py


def cattle(instance_plugin: str, *, size: int = 2) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((EXAMPLES / "cattle.json").read_text())
    document["Properties"]["Instance"]["Plugin"] = instance_plugin
    document["Properties"]["Allocation"]["Size"] = size
    return document


def local(home: Path, plugins_dir: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "INFRAKIT_HOME": str(home), "INFRAKIT_PLUGINS_DIR": str(plugins_dir)}
    return subprocess.run(
        [sys.executable, "-m", "infrakit.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


@pytest.fixture
def typed_daemon(sockdir: Path, tmp_path: Path) -> Iterator[tuple[Path, Path, Path]]:
    """``instance-mycloud``: a file plugin by default, another for sub-type ``large``; (plugins dir, dirs)."""
    plugins_dir = sockdir / "plugins"
    default, large = tmp_path / "default", tmp_path / "large"
    service = server.instance_service(FilePlugin(directory=default), types={"large": FilePlugin(directory=large)})
    with serving([service], directory=plugins_dir, name="instance-mycloud"):
        yield plugins_dir, default, large


def test_a_sub_type_is_served_by_its_plugin(typed_daemon: tuple[Path, Path, Path], tmp_path: Path) -> None:
    plugins_dir, default, large = typed_daemon
    home = tmp_path / "home"
    done = local(home, plugins_dir, "commit", "-", stdin=json.dumps(cattle("instance-mycloud/large")))
    assert done.returncode == 0, done.stderr
    made = sorted(large.iterdir())
    assert len(made) == 2 and not default.exists()
    for path in made:
        assert json.loads(path.read_text())["Tags"]["infrakit.config_sha"] == SUBTYPED_SHA
    shown = local(home, plugins_dir, "describe", "cattle")
    assert shown.returncode == 0 and all(p.name in shown.stdout for p in made), shown.stdout


def test_an_unknown_sub_type_of_a_daemon_is_refused_at_commit(
    typed_daemon: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    plugins_dir, default, large = typed_daemon
    home = tmp_path / "home"
    done = local(home, plugins_dir, "commit", "-", stdin=json.dumps(cattle("instance-mycloud/huge")))
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "spec.instance.plugin" in line and "'huge'" in line and "large" in line, line
    assert not default.exists() and not large.exists()
    assert not (home / "groups" / "cattle.yaml").exists()


@pytest.mark.parametrize(
    ("field", "document"),
    [
        ("spec.instance.plugin", cattle("instance-file/large")),
        (
            "spec.flavor.plugin",
            {
                **cattle("instance-file"),
                "Properties": {**cattle("instance-file")["Properties"], "Flavor": {"Plugin": "flavor-vanilla/web"}},
            },
        ),
    ],
    ids=["instance", "flavor"],
)
def test_a_built_in_plugin_has_no_sub_types(tmp_path: Path, field: str, document: dict[str, Any]) -> None:
    home = tmp_path / "home"
    for pretend in ([], ["--pretend"]):
        done = local(home, tmp_path / "plugins", "commit", *pretend, "-", stdin=json.dumps(document))
        assert done.returncode == 2, done.stderr
        (line,) = done.stderr.strip().splitlines()
        assert field in line and "built in" in line and "sub-type" in line, line
        assert "Traceback" not in done.stderr
    assert not (home / "instances").exists() or os.listdir(home / "instances") == []
    assert not (home / "groups").exists() or os.listdir(home / "groups") == []


def test_the_registry_names_the_field() -> None:
    registry = plugins.Registry()
    with pytest.raises(specs.SpecError) as refused:
        registry.instance("instance-file/large")
    assert refused.value.field == "spec.instance.plugin"
    with pytest.raises(specs.SpecError) as refused:
        registry.flavor("flavor-vanilla/web")
    assert refused.value.field == "spec.flavor.plugin"
    with pytest.raises(specs.SpecError, match="unknown instance plugin 'instance-nowhere/large'"):
        registry.instance("instance-nowhere/large")


# -- on the wire ---------------------------------------------------------------------------------


def test_every_call_of_a_sub_typed_client_carries_the_type(sockdir: Path) -> None:
    def respond(handler: FakeHandler, request: dict[str, Any]) -> None:
        results = {
            "Instance.Provision": {"Type": "large", "ID": "i-1"},
            "Instance.DescribeInstances": {"Type": "large", "Descriptions": None},
        }
        handler.result(request, results.get(request["method"], {"Type": "large", "OK": True}))

    with fake_plugin(sockdir / "instance-mycloud", handshaking(respond)) as fake:
        remote = client.RemoteInstancePlugin(name="instance-mycloud/large", address=str(sockdir / "instance-mycloud"))
        remote.validate({})
        assert remote.provision(instances.InstanceSpec()) == "i-1"
        remote.label("i-1", {"a": "b"})
        remote.destroy("i-1")
        assert remote.describe({}) == []
    handshake, *calls = fake.requests
    assert handshake["method"] == "Handshake.Implements" and "Type" not in (handshake["params"] or {})
    assert [c["method"].split(".")[1] for c in calls] == [
        "Validate",
        "Provision",
        "Label",
        "Destroy",
        "DescribeInstances",
    ]
    assert all(c["params"]["Type"] == "large" for c in calls)


def test_every_call_of_a_sub_typed_flavor_client_carries_the_type(sockdir: Path) -> None:
    def respond(handler: FakeHandler, request: dict[str, Any]) -> None:
        results = {"Flavor.Prepare": {"Type": "web", "Spec": {}}, "Flavor.Healthy": {"Type": "web", "Health": 1}}
        handler.result(request, results.get(request["method"], {"Type": "web", "OK": True}))

    with fake_plugin(sockdir / "flavor-x", handshaking(respond, interface=("Flavor", "0.1.0"))) as fake:
        remote = client.RemoteFlavorPlugin(name="flavor-x/web", address=str(sockdir / "flavor-x"))
        allocation = specs.Allocation(size=1)
        description = instances.Description(id="i-1")
        remote.validate({}, allocation)
        remote.prepare({}, instances.InstanceSpec(), allocation)
        assert remote.healthy({}, description) is instances.Health.HEALTHY
        remote.drain({}, description)
    assert [c["params"]["Type"] for c in fake.requests[1:]] == ["web"] * 4


def test_the_server_routes_sub_types_and_refuses_an_unknown_one(sockdir: Path, tmp_path: Path) -> None:
    service = server.flavor_service(VanillaPlugin(), types={"web": VanillaPlugin()})
    with serving([service], directory=sockdir, name="flavor-v") as address:
        assert rpc(address, "Handshake.Types", {})["result"] == {"Types": {"Flavor/0.1.0": [".", "web"]}}
        answer = rpc(address, "Flavor.Validate", {"Type": "web", "Properties": {}, "Allocation": {"Size": 1}})
        assert answer["result"] == {"Type": "web", "OK": True}
        answer = rpc(address, "Flavor.Validate", {"Type": "db", "Properties": {}, "Allocation": {"Size": 1}})
        message = answer["error"]["message"]
        assert message.startswith("no-plugin:db") and "has no sub-type 'db'" in message and "web" in message
        remote = client.RemoteFlavorPlugin(name="flavor-v/db", address=address)
        with pytest.raises(specs.SpecError) as refused:
            remote.validate({}, specs.Allocation(size=1))
        assert refused.value.field == "spec.flavor.plugin"
        with pytest.raises(spi.PluginError, match="no-plugin:db"):
            remote.drain({}, instances.Description(id="i-1"))
