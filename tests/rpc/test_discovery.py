"""The plugins directory: names to endpoints, as InfraKit v0.5 lays it out, and ``plugin ls``."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from infrakit.plugins.flavor_vanilla import VanillaPlugin
from infrakit.rpc import discovery, server
from infrakit.testing.memory import MemoryPlugin
from tests.rpc.conftest import serving


def test_the_directory_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("INFRAKIT_PLUGINS_DIR", raising=False)
    monkeypatch.delenv("INFRAKIT_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert discovery.plugins_dir() == tmp_path / ".infrakit" / "plugins"
    monkeypatch.setenv("INFRAKIT_HOME", str(tmp_path / "home"))
    assert discovery.plugins_dir() == tmp_path / "home" / "plugins"
    monkeypatch.setenv("INFRAKIT_PLUGINS_DIR", str(tmp_path / "elsewhere"))
    assert discovery.plugins_dir() == tmp_path / "elsewhere"


def test_find_sockets_and_tcp_files(plugins_env: Path) -> None:
    plugins_env.mkdir()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(plugins_env / "instance-file"))
    (plugins_env / "group.listen").write_text("tcp://127.0.0.1:24864")  # what a v0.5 daemon on TCP writes
    (plugins_env / "flavor-x").write_text("tcp://10.0.0.1:9000\n")  # a plain file with an address
    (plugins_env / "group.pid").write_text("123")  # not an endpoint
    (plugins_env / "README").write_text("hello")  # nor this
    (plugins_env / "sub").mkdir()

    found = discovery.find("instance-file")
    assert found is not None and (found.protocol, found.address) == ("unix", str(plugins_env / "instance-file"))
    group = discovery.find("group")
    assert group is not None and (group.protocol, group.address) == ("tcp", "tcp://127.0.0.1:24864")
    typed = discovery.find("flavor-x/some-type")  # the sub-type is not part of the lookup
    assert typed is not None and (typed.name, typed.address) == ("flavor-x", "tcp://10.0.0.1:9000")
    for missing in ("README", "group.pid", "sub", "nothing", "", "../etc"):
        assert discovery.find(missing) is None, missing
    assert [(e.name, e.protocol) for e in discovery.endpoints()] == [
        ("flavor-x", "tcp"),
        ("group", "tcp"),
        ("instance-file", "unix"),
    ]


def test_no_directory_no_plugins(tmp_path: Path) -> None:
    assert discovery.endpoints(directory=tmp_path / "absent") == []
    assert discovery.find("x", directory=tmp_path / "absent") is None


def test_running_plugins_with_their_interfaces(plugins_env: Path) -> None:
    with (
        serving([server.instance_service(MemoryPlugin())], directory=plugins_env, name="instance-memory"),
        serving(
            [server.flavor_service(VanillaPlugin())], directory=plugins_env, name="flavor-tcp", listen=("127.0.0.1", 0)
        ),
    ):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.bind(str(plugins_env / "dead"))  # a stale socket
        listed = discovery.running()
        by_name = {p.name: p for p in listed}
        assert [p.name for p in listed] == ["dead", "flavor-tcp", "instance-memory"]
        assert by_name["instance-memory"].interfaces == ("Instance/0.5.0",)
        assert by_name["instance-memory"].listen == str(plugins_env / "instance-memory")
        assert by_name["flavor-tcp"].interfaces == ("Flavor/0.1.0",)
        assert by_name["flavor-tcp"].listen.startswith("tcp://127.0.0.1:")
        assert by_name["dead"].interfaces == () and "connection refused" in (by_name["dead"].error or "")
        endpoint = discovery.find("dead")
        assert endpoint is not None and not discovery.alive(endpoint)
        live = discovery.find("instance-memory")
        assert live is not None and discovery.alive(live)
