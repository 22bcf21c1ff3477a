"""Who may call a daemon: no cross-site request, no rebound Host, an optional token (issue 19, F12).

In: the request a web page can send without a CORS preflight (``POST`` with no or a
``text/plain`` Content-Type, an ``Origin`` header, a foreign ``Host``: DNS rebinding),
sent to ``infrakit-group-default --listen`` (as in the issue) and to our daemons on TCP
and on unix sockets; a token required with ``--token-file``.  Out: each refused with one
line (HTTP 4xx), nothing done (the group is still there); the calls InfraKit v0.5's CLI
makes (a Go client built from the same code) and our own clients still answered.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infrakit.core import instances
from infrakit.plugins import spi
from infrakit.plugins.instance_file import FilePlugin
from infrakit.rpc import client, discovery, server, streams
from tests.conftest import EXAMPLES
from tests.rpc.conftest import Daemon, daemon_command, http_request, serving, start_daemon
from tests.rpc.test_conformance import FakeGroups

CATTLE = json.loads((EXAMPLES / "cattle.json").read_text())
DESTROY = json.dumps({"jsonrpc": "2.0", "method": "Group.DestroyGroup", "params": {"ID": "cattle"}, "id": 1}).encode()
INSPECT = json.dumps({"jsonrpc": "2.0", "method": "Group.InspectGroups", "params": {}, "id": 2}).encode()


def tcp_request(address: str, body: bytes, headers: dict[str, str], *, method: str = "POST", path: str = "/") -> Any:
    """One raw HTTP request to ``tcp://host:port``, headers exactly as given (http.client adds Host
    and Content-Length unless given): status and body."""
    host, _, port = address.removeprefix("tcp://").rpartition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.putrequest(method, path, skip_host="Host" in headers, skip_accept_encoding=True)
        for key, value in headers.items():
            connection.putheader(key, value)
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.fixture
def group_daemon(sockdir: Path) -> Iterator[tuple[str, Path, Daemon]]:
    """``infrakit-group-default --listen 127.0.0.1:0`` over a private home, with the cattle group committed."""
    home = sockdir / "home"
    daemon = start_daemon(
        "group-default", "--listen", "127.0.0.1:0", "--resync", "60", env={"INFRAKIT_HOME": str(home)}
    )
    try:
        daemon.wait_for("Listening at:")
        endpoint = discovery.find("group", directory=home / "plugins")
        assert endpoint is not None and endpoint.protocol == "tcp"
        transport = client.Transport(address=endpoint.address, name="group")
        transport.call("Group.CommitGroup", {"Spec": CATTLE, "Pretend": False})
        transport.close()
        yield endpoint.address, home, daemon
    finally:
        assert daemon.stop() == 0


def inspected(address: str) -> Any:
    status, body = tcp_request(address, INSPECT, {"Content-Type": "application/json"})
    assert status == 200, body
    return json.loads(body)["result"]["Groups"]


CROSS_SITE = {
    "no-content-type": ({}, 415, b"Content-Type"),
    "text-plain": ({"Content-Type": "text/plain"}, 415, b"Content-Type"),
    "form": ({"Content-Type": "application/x-www-form-urlencoded"}, 415, b"Content-Type"),
    "origin": ({"Content-Type": "application/json", "Origin": "http://evil.example"}, 403, b"Origin"),
    "origin-null": ({"Content-Type": "application/json", "Origin": "null"}, 403, b"Origin"),
    "foreign-host": ({"Content-Type": "application/json", "Host": "evil.example:80"}, 403, b"Host"),
    "all-three": ({"Origin": "http://evil.example", "Host": "evil.example"}, 403, b"Origin"),
}


@pytest.mark.parametrize("case", list(CROSS_SITE))
def test_a_cross_site_destroy_is_refused_by_the_group_daemon(group_daemon: tuple[str, Path, Daemon], case: str) -> None:
    address, home, daemon = group_daemon
    headers, status, words = CROSS_SITE[case]
    got, body = tcp_request(address, DESTROY, headers)
    assert (got, words in body, b"\n" not in body.strip()) == (status, True, True), body
    assert [g["ID"] for g in inspected(address) or []] == ["cattle"]  # nothing destroyed
    assert len(os.listdir(home / "instances")) == 5
    # The same call as a plugin client makes it is answered.
    assert tcp_request(address, DESTROY, {"Content-Type": "application/json"})[0] == 200
    assert inspected(address) is None
    assert daemon.process.poll() is None


# -- every listener: unix sockets too -----------------------------------------------------------


@pytest.fixture
def groups_unix(sockdir: Path) -> Iterator[tuple[str, FakeGroups]]:
    groups = FakeGroups()
    groups.commit({"ID": "cattle", "Properties": CATTLE["Properties"]}, pretend=False)
    with serving(server.group_services(groups), directory=sockdir, name="group") as address:
        yield address, groups


@pytest.mark.parametrize("case", ["no-content-type", "text-plain", "origin", "origin-null"])
def test_a_cross_site_destroy_is_refused_on_a_unix_socket(groups_unix: tuple[str, FakeGroups], case: str) -> None:
    address, groups = groups_unix
    headers, status, words = CROSS_SITE[case]
    got, _, body = http_request(address, body=DESTROY, headers=headers)
    assert (got, words in body) == (status, True), body
    assert list(groups.groups) == ["cattle"]


def test_on_a_unix_socket_any_host_is_accepted(groups_unix: tuple[str, FakeGroups]) -> None:
    # No browser dials a unix socket, and clients name it as they like: InfraKit's Go client
    # sends "h", ours "localhost", curl --unix-socket whatever its URL says.
    address, _ = groups_unix
    for host in ("h", "localhost", "rpc", "evil.example"):
        status, _, body = http_request(
            address, body=INSPECT, headers={"Content-Type": "application/json", "Host": host}
        )
        assert status == 200, body


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST", "[::1]:{port}", "10.1.2.3:{port}", "{hostname}:{port}", None],
)
def test_hosts_a_client_of_this_machine_may_name_are_accepted(sockdir: Path, host: str | None) -> None:
    with serving(server.group_services(FakeGroups()), directory=sockdir, listen=("127.0.0.1", 0)) as address:
        port = address.rpartition(":")[2]
        headers = {"Content-Type": "application/json"}
        if host is not None:
            headers["Host"] = host.format(port=port, hostname=socket.gethostname())
        assert tcp_request(address, INSPECT, headers)[0] == 200


@pytest.mark.parametrize("host", ["evil.example", "127.0.0.1.evil.example:80", "localhost.evil.example", "x"])
def test_names_a_page_could_rebind_are_refused(sockdir: Path, host: str) -> None:
    with serving(server.group_services(FakeGroups()), directory=sockdir, listen=("127.0.0.1", 0)) as address:
        status, body = tcp_request(address, INSPECT, {"Content-Type": "application/json", "Host": host})
    assert status == 403 and b"Host" in body


def test_get_endpoints_refuse_an_origin_or_a_foreign_host(sockdir: Path) -> None:
    plugin = FilePlugin(directory=sockdir / "inst")
    with serving([server.instance_service(plugin)], directory=sockdir, listen=("127.0.0.1", 0)) as address:
        for path in ("/info/api.json", "/events?topic=instance/changes"):
            assert tcp_request(address, b"", {"Origin": "http://evil.example"}, method="GET", path=path)[0] == 403
            assert tcp_request(address, b"", {"Host": "evil.example"}, method="GET", path=path)[0] == 403
        assert tcp_request(address, b"", {}, method="GET", path="/info/api.json")[0] == 200


# -- InfraKit v0.5's CLI still works --------------------------------------------------------------


def test_infrakit_v05_client_calls_are_answered_on_tcp_and_unix(sockdir: Path, goclient: Path) -> None:
    services = server.group_services(FakeGroups())
    with serving(services, directory=sockdir, name="group-unix") as unix:
        done = subprocess.run(
            [goclient, unix, "Group.InspectGroups", "{}"], capture_output=True, text=True, timeout=60, check=False
        )
        assert (done.returncode, json.loads(done.stdout)) == (0, {"Groups": None}), done.stderr
    with serving(services, directory=sockdir, name="group-tcp", listen=("127.0.0.1", 0)) as tcp:
        done = subprocess.run(
            [goclient, tcp, "Group.InspectGroups", "{}"], capture_output=True, text=True, timeout=60, check=False
        )
        assert (done.returncode, json.loads(done.stdout)) == (0, {"Groups": None}), done.stderr
        listen_file = sockdir / "group-tcp.listen"  # as v0.5's CLI finds a TCP plugin
        done = subprocess.run(
            [goclient, str(listen_file), "Handshake.Implements", "{}"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0 and "Group" in done.stdout, done.stderr


# -- the token ----------------------------------------------------------------------------------


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text("s3cret-token-of-some-length\n")
    path.chmod(0o600)
    return path


def test_a_token_is_required_on_tcp_when_configured(
    sockdir: Path, token_file: Path, monkeypatch: pytest.MonkeyPatch, goclient: Path
) -> None:
    access = server.Access(token="s3cret-token-of-some-length")
    plugin = FilePlugin(directory=sockdir / "inst")
    json_only = {"Content-Type": "application/json"}
    with serving([server.instance_service(plugin)], directory=sockdir, listen=("127.0.0.1", 0), access=access) as tcp:
        body = json.dumps({"jsonrpc": "2.0", "method": "Instance.DescribeInstances", "params": {}, "id": 1}).encode()
        for headers in (json_only, {**json_only, "Authorization": "Bearer wrong"}, {**json_only, "Authorization": "x"}):
            status, answer = tcp_request(tcp, body, headers)
            assert status == 401 and b"token" in answer
        auth = {**json_only, "Authorization": "Bearer s3cret-token-of-some-length"}
        assert tcp_request(tcp, body, auth)[0] == 200
        assert tcp_request(tcp, b"", {}, method="GET", path="/info/api.json")[0] == 401

        # Our client, without the token: one line saying what to do; with it (from the env): works.
        monkeypatch.delenv("INFRAKIT_TOKEN_FILE", raising=False)
        with pytest.raises(spi.PluginError, match=r"HTTP 401.*INFRAKIT_TOKEN_FILE"):
            client.RemoteInstancePlugin(name="instance-file", address=tcp).describe({})
        monkeypatch.setenv("INFRAKIT_TOKEN_FILE", str(token_file))
        remote = client.RemoteInstancePlugin(name="instance-file", address=tcp)
        made = remote.provision(instances.InstanceSpec(tags={"infrakit.group": "g"}))
        assert [d.id for d in remote.describe({})] == [made]
        with streams.subscribe(address=tcp, topic="instance", name="instance-file"):
            pass  # subscribed: the stream carries the token too
        remote.close()

        # InfraKit's CLI has no token: it cannot call a daemon that requires one.
        done = subprocess.run(
            [goclient, tcp, "Handshake.Implements", "{}"], capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 1

    # A unix socket is guarded by its directory's mode: no token there.
    with serving([server.instance_service(plugin)], directory=sockdir, name="unix", access=access) as unix:
        monkeypatch.delenv("INFRAKIT_TOKEN_FILE")
        assert client.RemoteInstancePlugin(name="instance-file", address=unix).describe({}) != []


def test_the_daemons_take_a_token_file(sockdir: Path, token_file: Path, tmp_path: Path) -> None:
    plugins = sockdir / "plugins"
    env = {"INFRAKIT_PLUGINS_DIR": str(plugins)}
    daemon = start_daemon(
        "instance-file",
        "--dir",
        str(tmp_path / "inst"),
        "--listen",
        "127.0.0.1:0",
        "--token-file",
        str(token_file),
        env=env,
    )
    try:
        daemon.wait_for("Listening at:")
        endpoint = discovery.find("instance-file", directory=plugins)
        assert endpoint is not None
        body = json.dumps({"jsonrpc": "2.0", "method": "Handshake.Implements", "params": {}, "id": 1}).encode()
        assert tcp_request(endpoint.address, body, {"Content-Type": "application/json"})[0] == 401
        auth = {"Content-Type": "application/json", "Authorization": "Bearer s3cret-token-of-some-length"}
        assert tcp_request(endpoint.address, body, auth)[0] == 200
    finally:
        assert daemon.stop() == 0


@pytest.mark.parametrize(
    ("content", "words"),
    [(None, "cannot read"), ("", "empty"), ("short", "at least 16")],
    ids=["missing", "empty", "short"],
)
def test_a_bad_token_file_is_a_bad_option(tmp_path: Path, content: str | None, words: str) -> None:
    path = tmp_path / "token"
    if content is not None:
        path.write_text(content)
    done = subprocess.run(
        [*daemon_command("flavor-vanilla"), "--token-file", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "INFRAKIT_PLUGINS_DIR": str(tmp_path / "plugins")},
    )
    assert done.returncode == 2 and "--token-file" in done.stderr and words in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
