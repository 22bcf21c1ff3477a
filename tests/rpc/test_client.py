"""Our client: the SPIs over the protocol, and every way a plugin can fail it.

Against our own server (round trips), and against hand-made plugins that answer wrong
(:class:`~tests.rpc.conftest.FakePlugin`): each failure must be one ``PluginError`` line
naming the plugin and what happened, never a traceback and never a hang.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infrakit.core import instances, specs
from infrakit.plugins import spi
from infrakit.plugins.flavor_vanilla import VanillaPlugin
from infrakit.plugins.instance_file import FilePlugin
from infrakit.rpc import client, server
from tests.rpc.conftest import FakeHandler, fake_plugin, handshaking, serving
from tests.rpc.test_conformance import Broken

SPEC = instances.InstanceSpec(
    properties={"Note": "n"},
    tags={"infrakit.group": "g", "tier": "web"},
    init="echo hi",
    logical_id="db-1",
    attachments=(instances.Attachment(id="vol", type="ebs"),),
)


@pytest.fixture
def file_plugin(sockdir: Path, tmp_path: Path) -> Iterator[client.RemoteInstancePlugin]:
    with serving([server.instance_service(FilePlugin(directory=tmp_path / "inst"))], directory=sockdir) as address:
        remote = client.RemoteInstancePlugin(name="instance-file", address=address)
        yield remote
        remote.close()


def test_instance_round_trip(file_plugin: client.RemoteInstancePlugin) -> None:
    file_plugin.validate({"any": "thing"})
    iid = file_plugin.provision(SPEC)
    (found,) = file_plugin.describe({"tier": "web"})
    assert (found.id, found.logical_id, dict(found.tags)) == (iid, "db-1", dict(SPEC.tags))
    file_plugin.label(iid, {"extra": "1"})
    assert [d.id for d in file_plugin.describe({"extra": "1"})] == [iid]
    file_plugin.destroy(iid)
    assert file_plugin.describe({}) == []
    with pytest.raises(spi.InstanceNotFound, match=r"instance-file.*not found"):
        file_plugin.destroy(iid)


def test_flavor_round_trip(sockdir: Path) -> None:
    local = VanillaPlugin()
    properties = {"Init": ["echo flavor"], "Tags": {"role": "worker"}}
    allocation = specs.Allocation(logical_ids=("a", "b"))
    with serving([server.flavor_service(VanillaPlugin())], directory=sockdir) as address:
        remote = client.RemoteFlavorPlugin(name="flavor-vanilla", address=address)
        remote.validate(properties, allocation)
        assert remote.prepare(properties, SPEC, allocation) == local.prepare(properties, SPEC, allocation)
        description = instances.Description(id="i-1", tags={"a": "b"})
        assert remote.healthy(properties, description) is instances.Health.HEALTHY
        remote.drain(properties, description)
        with pytest.raises(specs.SpecError) as refused:
            remote.validate({"Init": 3}, allocation)
        assert (refused.value.field, refused.value.message) == (
            "spec.flavor.properties.Init",
            "must be a list of strings (shell lines)",
        )


def test_validation_refusals_name_the_field(sockdir: Path) -> None:
    with serving([server.instance_service(Broken())], directory=sockdir) as address:
        remote = client.RemoteInstancePlugin(name="broken", address=address)
        with pytest.raises(specs.SpecError) as refused:
            remote.validate({})
        assert refused.value.field == "spec.instance.properties.Size"
        with pytest.raises(spi.PluginError, match=r"^plugin 'broken' at .*: Instance.Provision: quota exceeded$"):
            remote.provision(SPEC)
        with pytest.raises(spi.InstanceNotFound):
            remote.label("i", {})
        with pytest.raises(client.RemoteError, match="division by zero"):
            remote.destroy("i")


def test_a_foreign_refusal_is_a_spec_error_on_the_properties(sockdir: Path) -> None:
    def respond(handler: FakeHandler, request: dict[str, Any]) -> None:
        error = {"code": -32000, "message": "unknown region 'mars'", "data": None}
        handler.answer(f'{{"jsonrpc":"2.0","error":{_json(error)},"id":{request["id"]}}}'.encode())

    with fake_plugin(sockdir / "aws", handshaking(respond)):
        remote = client.RemoteInstancePlugin(name="instance-aws", address=str(sockdir / "aws"))
        with pytest.raises(specs.SpecError) as refused:
            remote.validate({"Region": "mars"})
    assert refused.value.field == "spec.instance.properties"
    assert "unknown region 'mars'" in refused.value.message


def _json(value: Any) -> str:
    import json

    return json.dumps(value)


def test_one_connection_is_kept_for_many_calls(sockdir: Path) -> None:
    def respond(handler: FakeHandler, request: dict[str, Any]) -> None:
        handler.result(request, {"Type": "", "Descriptions": None})

    with fake_plugin(sockdir / "p", handshaking(respond)) as fake:
        remote = client.RemoteInstancePlugin(name="p", address=str(sockdir / "p"))
        for _ in range(50):
            assert remote.describe({}) == []
        assert fake.connections == 1
        assert len(fake.requests) == 51  # the handshake, once, then the calls
        assert fake.requests[0]["method"] == "Handshake.Implements"


def test_a_kept_connection_the_plugin_closed_is_not_an_error(sockdir: Path) -> None:
    # Provision is not repeated blindly: a closed kept connection is noticed before sending, or
    # refuses the request unread (EPIPE, reset): either way the plugin never acted on it.
    def respond(handler: FakeHandler, request: dict[str, Any]) -> None:
        handler.result(request, {"Type": "", "ID": f"i-{len(handler.server.requests)}"})
        handler.close_connection = True  # and no "Connection: close" header: the client learns by itself

    with fake_plugin(sockdir / "p", respond) as fake:
        transport = client.Transport(address=str(sockdir / "p"))
        first = transport.call("Instance.Provision", {"Spec": {}})
        assert fake.closed.wait(30)  # closed by now, while kept by the client
        second = transport.call("Instance.Provision", {"Spec": {}})
        assert (first, second) == ({"Type": "", "ID": "i-1"}, {"Type": "", "ID": "i-2"})
        assert fake.connections == 2 and len(fake.requests) == 2


def test_calls_from_many_threads(file_plugin: client.RemoteInstancePlugin) -> None:
    made: list[str] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(10):
            iid = file_plugin.provision(SPEC)
            with lock:
                made.append(iid)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(d.id for d in file_plugin.describe({"tier": "web"})) == sorted(made)
    assert len(set(made)) == 40


# -- failures ---------------------------------------------------------------------------------


def test_no_socket(sockdir: Path) -> None:
    remote = client.RemoteInstancePlugin(name="gone", address=str(sockdir / "gone"))
    with pytest.raises(
        spi.PluginError, match=r"^plugin 'gone' at .*/gone: no socket there: the plugin is not running$"
    ):
        remote.describe({})


def test_stale_socket(sockdir: Path) -> None:
    path = sockdir / "stale"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(path))  # bound, never listening, closed: what a killed daemon leaves
    remote = client.RemoteInstancePlugin(name="stale", address=str(path))
    with pytest.raises(spi.PluginError, match=r"connection refused .*stale socket"):
        remote.describe({})


def test_refused_tcp() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # free now, and nobody listens
    remote = client.RemoteInstancePlugin(name="far", address=f"tcp://127.0.0.1:{port}")
    with pytest.raises(spi.PluginError, match=r"connection refused .*is the plugin running"):
        remote.describe({})


def test_a_daemon_killed_between_calls(sockdir: Path) -> None:
    # The kept connection dies with the daemon: the next call says so, once, clearly.
    script = (
        "import asyncio, sys\n"
        "from pathlib import Path\n"
        "from infrakit.testing.memory import MemoryPlugin\n"
        "from infrakit.rpc import server\n"
        "async def main():\n"
        "    await server.serve([server.instance_service(MemoryPlugin())], name='mem', stop=asyncio.Event(),"
        " directory=Path(sys.argv[1]), on_ready=lambda a: print(a, flush=True))\n"
        "asyncio.run(main())\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script, str(sockdir)], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        address = process.stdout.readline().strip()
        remote = client.RemoteInstancePlugin(name="mem", address=address)
        remote.provision(SPEC)
        process.kill()
        process.wait(30)
        with pytest.raises(spi.PluginError, match=r"plugin 'mem'.*(refused|closed)"):
            remote.provision(SPEC)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(30)
        if process.stdout is not None:
            process.stdout.close()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"jsonrpc":', "closed in the middle of the answer"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", "the answer is not JSON: hello"),
        (b"SSH-2.0-OpenSSH_9.6\r\n", "the answer is not HTTP"),
        (b"", "the connection closed before a complete answer"),
        (
            b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops",
            "HTTP 500 Internal Server Error: oops",
        ),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "empty answer"),
        (b'HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{"foo":1}', "not a JSON-RPC response"),
        (b'HTTP/1.1 200 OK\r\nContent-Length: 31\r\n\r\n{"jsonrpc":"2.0","result":null}', "the result is null"),
        (b'HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n{"jsonrpc":"2.0","result":{},"id":99999}', "another request"),
        (b'HTTP/1.1 200 OK\r\nContent-Length: 28\r\n\r\n{"jsonrpc":"2.0","error":42}', ": 42"),
    ],
)
def test_bad_answers(sockdir: Path, raw: bytes, expected: str) -> None:
    def respond(handler: FakeHandler, request: dict[str, Any]) -> None:
        handler.wfile.write(raw)
        handler.wfile.flush()
        handler.close_connection = True

    with fake_plugin(sockdir / "bad", respond):
        transport = client.Transport(address=str(sockdir / "bad"), name="bad")
        with pytest.raises(spi.PluginError) as failed:
            transport.call("Instance.Provision", {})
    message = str(failed.value)
    assert message.startswith("plugin 'bad' at ") and "Instance.Provision" in message
    assert expected in message and "\n" not in message


def test_malformed_results_are_plugin_errors(sockdir: Path) -> None:
    results = {
        "Instance.Provision": {"ID": None},
        "Instance.DescribeInstances": {"Descriptions": [{"ID": 5}]},
    }

    def respond(handler: FakeHandler, request: dict[str, Any]) -> None:
        handler.result(request, results[request["method"]])

    with fake_plugin(sockdir / "odd", handshaking(respond)):
        remote = client.RemoteInstancePlugin(name="odd", address=str(sockdir / "odd"))
        with pytest.raises(spi.PluginError, match="Provision: malformed result: no instance ID"):
            remote.provision(SPEC)
        with pytest.raises(spi.PluginError, match=r"DescribeInstances: malformed result: Descriptions\[0\].ID"):
            remote.describe({})


def test_a_plugin_that_never_answers_times_out(sockdir: Path) -> None:
    release = threading.Event()

    def respond(handler: FakeHandler, request: dict[str, Any]) -> None:
        release.wait(60)

    with fake_plugin(sockdir / "slow", respond):
        transport = client.Transport(address=str(sockdir / "slow"), name="slow", timeout=0.2)
        try:
            with pytest.raises(spi.PluginError, match=r"no answer within 0.2 s"):
                transport.call("Instance.Provision", {})
        finally:
            release.set()


def test_a_plugin_that_never_accepts_times_out_connecting() -> None:
    # A listening TCP socket whose backlog is full: connecting hangs until the timeout.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        address = listener.getsockname()
        fillers = []
        try:
            for _ in range(8):
                filler = socket.socket()
                filler.setblocking(False)
                filler.connect_ex(address)
                fillers.append(filler)
            transport = client.Transport(address=f"tcp://127.0.0.1:{address[1]}", name="full", connect_timeout=0.2)
            with pytest.raises(spi.PluginError, match=r"plugin 'full'.*(no connection within 0.2 s|no answer)"):
                transport.call("Handshake.Implements", {})
        finally:
            for filler in fillers:
                filler.close()


def test_the_wrong_interface_is_refused_before_any_call(sockdir: Path) -> None:
    def respond(handler: FakeHandler, request: dict[str, Any]) -> None:
        raise AssertionError("no call may be made")

    with fake_plugin(sockdir / "f", handshaking(respond, interface=("Flavor", "0.1.0"))) as fake:
        remote = client.RemoteInstancePlugin(name="f", address=str(sockdir / "f"))
        with pytest.raises(spi.PluginError, match=r"implements Flavor/0.1.0, not Instance/0.5.0"):
            remote.describe({})
        assert [r["method"] for r in fake.requests] == ["Handshake.Implements"]


def test_a_plugin_without_the_v05_handshake(sockdir: Path) -> None:
    def respond(handler: FakeHandler, request: dict[str, Any]) -> None:
        message = f'rpc: can\'t find service \\"{request["method"]}\\"'
        handler.answer(
            f'{{"jsonrpc":"2.0","error":{{"code":-32000,"message":"{message}"}},"id":{request["id"]}}}'.encode()
        )

    with fake_plugin(sockdir / "old", respond):
        remote = client.RemoteInstancePlugin(name="old", address=str(sockdir / "old"))
        with pytest.raises(spi.PluginError, match=r"does not answer Handshake.Implements"):
            remote.describe({})


def test_sub_types_travel_in_the_type_field(sockdir: Path) -> None:
    def respond(handler: FakeHandler, request: dict[str, Any]) -> None:
        handler.result(request, {"Type": request["params"]["Type"], "Descriptions": None})

    with fake_plugin(sockdir / "aws", handshaking(respond)) as fake:
        remote = client.RemoteInstancePlugin(name="aws/ec2-instance", address=str(sockdir / "aws"))
        assert remote.describe({}) == []
        assert fake.requests[-1]["params"] == {"Type": "ec2-instance", "Tags": {}, "Properties": False}


def test_the_client_path_does_not_import_aiohttp() -> None:
    code = (
        "import sys\n"
        "from infrakit.rpc import client, discovery\n"
        "assert 'aiohttp' not in sys.modules, sorted(m for m in sys.modules if m.startswith('aiohttp'))\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
