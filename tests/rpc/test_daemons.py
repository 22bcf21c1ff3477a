"""The daemons as users run them: start, announce, refuse to steal, replace stale, stop clean."""

from __future__ import annotations

import importlib.metadata
import json
import os
import socket
import subprocess
from pathlib import Path

import pytest

from infrakit import daemons
from infrakit.core import instances
from infrakit.rpc import client, discovery
from tests.rpc.conftest import daemon_command, start_daemon


def test_console_scripts_are_declared() -> None:
    scripts = {e.name: e.value for e in importlib.metadata.entry_points(group="console_scripts")}
    assert scripts["infrakit-instance-file"] == "infrakit.daemons:instance_file_main"
    assert scripts["infrakit-flavor-vanilla"] == "infrakit.daemons:flavor_vanilla_main"
    assert scripts["infrakit-group-default"] == "infrakit.daemons:group_default_main"
    assert callable(daemons.instance_file_main) and callable(daemons.flavor_vanilla_main)
    assert callable(daemons.group_default_main)


def test_instance_file_daemon_lifecycle(plugins_env: Path, tmp_path: Path) -> None:
    process = start_daemon("instance-file", "--dir", str(tmp_path / "inst"))
    try:
        line = process.wait_for("Listening at:")
        socket_path = plugins_env / "instance-file"
        assert line.rstrip().endswith(f"Listening at: {socket_path}") and line.startswith("INFO")
        remote = client.RemoteInstancePlugin(name="instance-file", address=str(socket_path))
        iid = remote.provision(instances.InstanceSpec(tags={"infrakit.group": "g"}))
        assert (tmp_path / "inst" / iid).is_file()
        assert (plugins_env / "instance-file.pid").read_text() == str(process.pid)
        remote.close()
    finally:
        code = process.stop()
    assert code == 0
    assert sorted(p.name for p in plugins_env.iterdir()) == []  # socket and pid file removed


def test_a_stale_socket_is_replaced(plugins_env: Path) -> None:
    plugins_env.mkdir()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(plugins_env / "flavor-vanilla"))  # a killed daemon's leftover
    (plugins_env / "flavor-vanilla.pid").write_text("999999")  # and its pid file, unlocked
    process = start_daemon("flavor-vanilla")
    try:
        process.wait_for("replacing the stale socket")
        process.wait_for("Listening at:")
        endpoint = discovery.find("flavor-vanilla")
        assert endpoint is not None and discovery.alive(endpoint)
    finally:
        assert process.stop() == 0


def test_a_live_daemon_is_never_stolen(plugins_env: Path) -> None:
    first = start_daemon("flavor-vanilla")
    try:
        first.wait_for("Listening at:")
        second = subprocess.run(
            daemon_command("flavor-vanilla"), capture_output=True, text=True, timeout=60, check=False
        )
        assert second.returncode == 1
        (line,) = second.stderr.splitlines()
        assert "plugin 'flavor-vanilla' is already running" in line and f"pid {first.pid}" in line
        endpoint = discovery.find("flavor-vanilla")
        assert endpoint is not None and discovery.alive(endpoint)  # still the first one's
    finally:
        assert first.stop() == 0


def test_a_live_foreign_socket_is_never_stolen(plugins_env: Path) -> None:
    # Another program (a Go plugin, say) listens under the name, without our pid lock.
    plugins_env.mkdir()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as other:
        other.bind(str(plugins_env / "flavor-vanilla"))
        other.listen(1)
        second = subprocess.run(
            daemon_command("flavor-vanilla"), capture_output=True, text=True, timeout=60, check=False
        )
        assert second.returncode == 1
        (line,) = second.stderr.splitlines()
        assert "is already running at" in line and "another --name" in line
        assert (plugins_env / "flavor-vanilla").is_socket()


def test_another_name_and_tcp(plugins_env: Path) -> None:
    process = start_daemon("flavor-vanilla", "--name", "flavor-tcp", "--listen", "127.0.0.1:0", "--log-format", "json")
    try:
        line = process.wait_for("Listening at:")
        entry = json.loads(line)
        assert entry["level"] == "info" and "discoverable at" in entry["msg"]
        address = (plugins_env / "flavor-tcp.listen").read_text()
        assert address.startswith("tcp://127.0.0.1:") and not address.endswith(":0")
        endpoint = discovery.find("flavor-tcp")
        assert endpoint is not None and endpoint.address == address
        remote = client.RemoteFlavorPlugin(name="flavor-tcp", address=address)
        description = instances.Description(id="i")
        assert remote.healthy(None, description) is instances.Health.HEALTHY
        remote.close()
    finally:
        assert process.stop() == 0
    assert not (plugins_env / "flavor-tcp.listen").exists()


def test_binding_beyond_loopback_warns(plugins_env: Path) -> None:
    process = start_daemon("flavor-vanilla", "--listen", "0.0.0.0:0")
    try:
        line = process.wait_for("no authentication")
        assert line.startswith("WARN")
        process.wait_for("Listening at:")
        address = (plugins_env / "flavor-vanilla.listen").read_text()
        assert address.startswith("tcp://127.0.0.1:")  # dialled locally
    finally:
        assert process.stop() == 0


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--listen", "host:port"], "--listen"),
        (["--listen", "70000"], "--listen"),
        (["--log", "9"], "--log"),
        (["--log-format", "xml"], "--log-format"),
    ],
)
def test_bad_options_exit_2_naming_the_option(plugins_env: Path, args: list[str], needle: str) -> None:
    done = subprocess.run(
        daemon_command("flavor-vanilla", *args), capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2 and needle in done.stderr and "Traceback" not in done.stderr
    assert not plugins_env.exists() or list(plugins_env.iterdir()) == []


def test_a_name_that_is_not_a_file_name(plugins_env: Path) -> None:
    done = subprocess.run(
        daemon_command("flavor-vanilla", "--name", "a/b"), capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1 and "--name 'a/b'" in done.stderr and "Traceback" not in done.stderr


def test_a_socket_path_too_long(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 100)
    done = subprocess.run(
        daemon_command("flavor-vanilla"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "INFRAKIT_PLUGINS_DIR": str(deep)},
    )
    assert done.returncode == 1 and "too long" in done.stderr and "INFRAKIT_PLUGINS_DIR" in done.stderr
    assert list(deep.iterdir()) == []  # the pid claim was released and removed
