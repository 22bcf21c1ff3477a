"""A hostile peer gets a clean error, never a traceback: every JSON parse of peer input (issue 19, D10).

In: bodies and answers nested far deeper than any parser's recursion (100,000 ``[``),
nested deeper than our bound but within the parser's, and event streams whose events
are deep or never end; sent to our server, answered to our client (as a Go plugin
would), streamed to ``event tail`` and to a remote plugin's change feed, and written
as an instance file whose ``Properties`` are shown.  Out: JSON-RPC -32700 from the
server (which answers the next call), one ``PluginError`` line from the client, a
skipped event from a stream, ``None`` for the properties; memory bounded for a stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infrakit.core import instances
from infrakit.plugins import spi
from infrakit.plugins.instance_file import FilePlugin
from infrakit.rpc import client, resolving, server, streams, wire
from tests.rpc.conftest import FakeHandler, fake_plugin, handshaking, http_request, rpc, serving

DEEP = 100_000


@pytest.fixture
def instance_socket(sockdir: Path, tmp_path: Path) -> Iterator[str]:
    with serving([server.instance_service(FilePlugin(directory=tmp_path / "inst"))], directory=sockdir) as address:
        yield address


def _raw(address: str, body: bytes) -> tuple[int, dict[str, Any]]:
    status, headers, data = http_request(address, body=body)
    assert headers["Content-Type"].startswith("application/json"), data
    answer: dict[str, Any] = json.loads(data)
    return status, answer


# -- the server ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"[" * DEEP,
        b'{"a":' * DEEP,
        b'{"jsonrpc":"2.0","method":"Instance.Validate","params":{"Properties":' + b"[" * DEEP + b"]" * DEEP + b"}}",
    ],
    ids=["lists", "objects", "in-params-closed"],
)
def test_a_body_nested_100000_deep_is_a_parse_error(instance_socket: str, body: bytes) -> None:
    status, answer = _raw(instance_socket, body)
    assert status == 200
    assert answer["error"]["code"] == -32700, answer
    assert "nested" in answer["error"]["message"] and "\n" not in answer["error"]["message"]
    # ... and the daemon answers the next call.
    assert rpc(instance_socket, "Handshake.Types", {})["result"] == {"Types": {"Instance/0.5.0": ["."]}}


def test_a_body_nested_deeper_than_the_bound_but_within_the_parser_is_refused(instance_socket: str) -> None:
    depth = wire.MAX_DEPTH + 5
    properties = "[" * depth + "]" * depth
    body = f'{{"jsonrpc":"2.0","method":"Instance.Validate","params":{{"Properties":{properties}}},"id":7}}'
    status, answer = _raw(instance_socket, body.encode())
    assert (status, answer["error"]["code"]) == (200, -32700)
    assert f"more than {wire.MAX_DEPTH} levels" in answer["error"]["message"]


def test_nesting_within_the_bound_is_accepted(instance_socket: str) -> None:
    depth = wire.MAX_DEPTH - 2  # the envelope takes 2 levels: the message and its params
    deep = "[" * depth + "]" * depth  # under a key the method ignores, as Go ignores unknown keys
    body = f'{{"jsonrpc":"2.0","method":"Instance.DescribeInstances","params":{{"Extra":{deep}}},"id":7}}'
    assert _raw(instance_socket, body.encode())[1]["result"] == {"Type": "", "Descriptions": None}


# -- the client: answers of a plugin (ours, InfraKit's, a Go plugin...) ----------------------


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (b"[" * DEEP, "nested"),
        (b'{"jsonrpc":"2.0","result":' + b"[" * DEEP + b"]" * DEEP + b',"id":2}', "nested"),
        (
            b'{"jsonrpc":"2.0","result":' + b"[" * (wire.MAX_DEPTH + 1) + b"]" * (wire.MAX_DEPTH + 1) + b',"id":2}',
            "nested",
        ),
    ],
    ids=["unclosed", "closed", "beyond-the-bound"],
)
def test_a_deep_answer_is_one_plugin_error(sockdir: Path, answer: bytes, words: str) -> None:
    def respond(handler: FakeHandler, request: dict[str, Any]) -> None:
        handler.answer(answer)

    with fake_plugin(sockdir / "deep", handshaking(respond)):
        remote = client.RemoteInstancePlugin(name="instance-deep", address=str(sockdir / "deep"))
        with pytest.raises(spi.PluginError) as failed:
            remote.describe({})
    message = str(failed.value)
    assert message.startswith(f"plugin 'instance-deep' at {sockdir / 'deep'}: Instance.DescribeInstances: ")
    assert words in message and "\n" not in message
    assert not isinstance(failed.value, RecursionError)


def test_a_deep_handshake_answer_is_one_plugin_error(sockdir: Path) -> None:
    def respond(handler: FakeHandler, request: dict[str, Any]) -> None:
        handler.answer(b'{"jsonrpc":"2.0","result":{"APIs":' + b"[" * DEEP + b"]" * DEEP + b'},"id":1}')

    with fake_plugin(sockdir / "deep", respond):
        remote = client.RemoteInstancePlugin(name="instance-deep", address=str(sockdir / "deep"))
        with pytest.raises(spi.PluginError, match="nested"):
            remote.describe({})


# -- event streams -----------------------------------------------------------------------------


@contextlib.contextmanager
def sse_peer(path: Path, chunks: list[bytes]) -> Iterator[threading.Event]:
    """A peer on ``path`` answering ``GET /events`` with ``chunks`` (raw SSE), then holding the stream open."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(8)
    done = threading.Event()
    accepted: list[socket.socket] = []

    def serve() -> None:
        while not done.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            accepted.append(connection)
            request = b""
            while b"\r\n\r\n" not in request:
                data = connection.recv(4096)
                if not data:
                    break
                request += data
            with contextlib.suppress(OSError):
                connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n")
                for chunk in chunks:
                    connection.sendall(chunk)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield done
    finally:
        done.set()
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # wakes the accept (close alone does not)
        listener.close()
        for connection in accepted:
            connection.close()
        thread.join(10)


GOOD_EVENT = b'data: {"Topic":"instance/changes","Type":"change","ID":"1","Data":{"IDs":["i-1"]}}\n\n'


def test_event_tail_skips_a_deep_event(sockdir: Path) -> None:
    deep = b"data: " + b"[" * DEEP + b"\n\n"
    with (
        sse_peer(sockdir / "p", [deep, GOOD_EVENT]),
        streams.subscribe(address=str(sockdir / "p"), topic="", name="p") as stream,
    ):
        first = next(iter(stream))
    assert first["Data"] == {"IDs": ["i-1"]}


def test_event_tail_skips_an_event_larger_than_the_bound_in_bounded_memory(sockdir: Path) -> None:
    # 16 bounds' worth of one event that never ends, then a good one: what is kept of the
    # endless one stays near the bound (the old reader kept all of it, several times over).
    size = 16 * wire.MAX_EVENT
    chunks = [b"data: "] + [b"x" * 65536] * (size // 65536) + [b"\n\n", GOOD_EVENT]
    with sse_peer(sockdir / "p", chunks), streams.subscribe(address=str(sockdir / "p"), topic="", name="p") as stream:
        tracemalloc.start()
        try:
            first = next(iter(stream))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert first["Data"] == {"IDs": ["i-1"]}
    assert peak < 4 * wire.MAX_EVENT, f"{peak} bytes held for an endless event"


def test_a_change_feed_takes_a_deep_or_huge_event_as_anything_changed(sockdir: Path) -> None:
    deep = b"data: " + b"[" * DEEP + b"\n\n"
    huge = b"data: " + b"x" * (wire.MAX_EVENT + 1) + b"\n\n"

    async def scenario(address: str) -> list[frozenset[str] | None]:
        remote = client.RemoteInstancePlugin(name="p", address=address)
        changes = remote.changes()
        try:
            return [await asyncio.wait_for(changes.__anext__(), 10) for _ in range(4)]
        finally:
            await changes.aclose()

    with sse_peer(sockdir / "p", [deep, huge, GOOD_EVENT]):
        seen = asyncio.run(scenario(str(sockdir / "p")))
    # Subscribed (anything), the deep one and the huge one (anything: cannot tell what), then the IDs.
    assert seen == [None, None, None, frozenset({"i-1"})]


# -- an instance file's properties (describe -p) -----------------------------------------------


def test_properties_of_a_deep_instance_file_are_none(tmp_path: Path) -> None:
    (tmp_path / "instance-1").write_bytes(b'{"ID":"instance-1","Spec":' + b"[" * DEEP + b"]" * DEEP + b"}")
    description = instances.Description(id="instance-1")
    assert resolving.file_properties(tmp_path, description) is None
    (tmp_path / "instance-2").write_text('{"ID":"instance-2","Spec":{"Properties":{"a":1}}}')
    assert resolving.file_properties(tmp_path, instances.Description(id="instance-2")) == {"Properties": {"a": 1}}
