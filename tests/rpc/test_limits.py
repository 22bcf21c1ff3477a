"""A daemon keeps answering whatever its peers do: every connection and request is bounded (issue 19, D8).

In: real sockets on loopback and unix sockets: 1,100 idle connections to a daemon run
with ``ulimit -n 1024`` (as the issue's probe), requests whose headers or body never
finish (dripped, or not sent at all), more connections than the cap while all are busy,
bodies beyond the size bound and beyond the daemon's budget for bodies, more event
streams than the bound, and a subscriber that stops reading.  Out: the legitimate call
answered, each offender closed or refused (a one-line HTTP answer) within its bound,
waited for as an event (never a fixed sleep), and the daemon answering after.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shlex
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from infrakit.plugins.instance_file import FilePlugin
from infrakit.rpc import client, discovery, server, wire
from tests.rpc.conftest import Daemon, daemon_command, serving

HANDSHAKE = b'{"jsonrpc":"2.0","method":"Handshake.Implements","params":{},"id":1}'
WAIT = 30.0  # seconds: the longest any test waits for an event that must come


def connect(address: str, *, timeout: float = 5.0) -> socket.socket:
    if address.startswith("tcp://"):
        host, _, port = address.removeprefix("tcp://").rpartition(":")
        return socket.create_connection((host, int(port)), timeout=timeout)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(address)
    return sock


def post(body: bytes, *, length: int | None = None) -> bytes:
    size = len(body) if length is None else length
    head = f"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {size}\r\n\r\n"
    return head.encode() + body


def until_closed(sock: socket.socket, *, limit: float = WAIT) -> bytes:
    """Everything the daemon sends until it closes the connection; fails if it is still open after ``limit``."""
    sock.settimeout(limit)
    received = b""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            return received
        if not data:
            return received
        received += data
    raise AssertionError(f"still open after {limit} s (received {received[:200]!r})")


def answer_of(sock: socket.socket) -> bytes:
    """One HTTP answer's bytes (status line, headers and the body announced), read to its end."""
    sock.settimeout(WAIT)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before an answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "closed in the middle of an answer"
        body += chunk
    return head + b"\r\n\r\n" + body


# -- 1,100 idle connections at nofile 1024 (the probe) -----------------------------------


@pytest.fixture(params=["unix", "tcp"])
def crowded_daemon(request: pytest.FixtureRequest, sockdir: Path, tmp_path: Path) -> Iterator[str]:
    """``infrakit-instance-file`` under ``ulimit -n 1024`` (as a user's shell sets it); its address."""
    plugins = sockdir / "plugins"
    listen = ["--listen", "127.0.0.1:0"] if request.param == "tcp" else []
    command = daemon_command("instance-file", "--dir", str(tmp_path / "inst"), *listen)
    daemon = Daemon(
        ["bash", "-c", f"ulimit -n 1024 && exec {shlex.join(command)}"], env={"INFRAKIT_PLUGINS_DIR": str(plugins)}
    )
    try:
        daemon.wait_for("Listening at:")
        endpoint = discovery.find("instance-file", directory=plugins)
        assert endpoint is not None
        yield endpoint.address
    finally:
        assert daemon.stop() == 0


def persistent_connect(address: str, *, limit: float = 1.0) -> socket.socket | None:
    """A connection, retried while the listen queue is momentarily full (a unix socket says EAGAIN)."""
    deadline = time.monotonic() + limit
    while True:
        try:
            return connect(address, timeout=limit)
        except BlockingIOError:
            if time.monotonic() > deadline:
                return None
            time.sleep(0.001)
        except OSError:  # refused, timed out: the daemon sheds it
            return None


def test_1100_idle_connections_never_stop_a_handshake(crowded_daemon: str) -> None:
    idle: list[socket.socket] = []
    try:
        for _ in range(1100):
            sock = persistent_connect(crowded_daemon)
            if sock is not None:
                idle.append(sock)
        transport = client.Transport(address=crowded_daemon, name="instance-file", connect_timeout=10, timeout=20)
        try:
            assert transport.call("Handshake.Implements", {}) == {"APIs": [{"Name": "Instance", "Version": "0.5.0"}]}
            assert transport.call("Instance.DescribeInstances", {"Tags": {}}) == {"Type": "", "Descriptions": None}
        finally:
            transport.close()
    finally:
        for sock in idle:
            sock.close()


# -- half-sent requests ----------------------------------------------------------------------


@pytest.fixture(params=["unix", "tcp"])
def quick(request: pytest.FixtureRequest, sockdir: Path, tmp_path: Path) -> Iterator[str]:
    """A daemon whose request bounds are 1 s (an idle connection, the headers, the body)."""
    listen = ("127.0.0.1", 0) if request.param == "tcp" else None
    plugin = FilePlugin(directory=tmp_path / "inst")
    limits = server.Limits(idle=1.0, body=1.0)
    with serving([server.instance_service(plugin)], directory=sockdir, listen=listen, limits=limits) as address:
        yield address


@pytest.mark.parametrize(
    "sent",
    [b"", b"POST / HTTP/1.1\r\nHost: local", post(HANDSHAKE, length=len(HANDSHAKE) + 50)],
    ids=["nothing", "half-headers", "half-body"],
)
def test_a_half_sent_request_is_closed_within_the_bound(quick: str, sent: bytes) -> None:
    with connect(quick) as sock:
        sock.sendall(sent)
        until_closed(sock)
    with connect(quick) as sock:  # and the daemon answers the next caller
        sock.sendall(post(HANDSHAKE))
        assert b" 200 OK" in answer_of(sock)


def test_a_dripped_request_is_closed_within_the_bound(quick: str) -> None:
    # Slowloris: one byte of the headers at a time, each well within any per-read timeout.
    with connect(quick) as sock:
        stop = threading.Event()

        def drip() -> None:
            for byte in b"POST / HTTP/1.1\r\nHost: localhost\r\nX-Padding: " + b"a" * 10_000:
                if stop.wait(0.05):
                    return
                try:
                    sock.send(bytes([byte]))
                except OSError:
                    return

        dripping = threading.Thread(target=drip, daemon=True)
        dripping.start()
        try:
            until_closed(sock)
        finally:
            stop.set()
            dripping.join(10)


def test_a_dripped_body_is_closed_within_the_bound(quick: str) -> None:
    with connect(quick) as sock:
        stop = threading.Event()

        def drip() -> None:
            sock.sendall(post(b"", length=10_000))
            for _ in range(10_000):
                if stop.wait(0.05):
                    return
                try:
                    sock.send(b" ")
                except OSError:
                    return

        dripping = threading.Thread(target=drip, daemon=True)
        dripping.start()
        try:
            received = until_closed(sock)
        finally:
            stop.set()
            dripping.join(10)
    assert received == b"" or b" 408 " in received.split(b"\r\n", 1)[0]


# -- the connection cap ----------------------------------------------------------------------


async def _endless() -> AsyncIterator[Any]:
    while True:
        await asyncio.sleep(3600)
        yield {"All": True}


STREAMING = server.Service(interface=wire.INSTANCE, methods={}, examples={}, feeds={"instance/changes": _endless})


def subscribe(address: str) -> socket.socket:
    sock = connect(address)
    sock.sendall(b"GET /events?topic=instance/changes HTTP/1.1\r\nHost: localhost\r\n\r\n")
    sock.settimeout(WAIT)
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 200"), head
    return sock


def test_beyond_the_cap_a_connection_takes_the_place_of_the_longest_idle(sockdir: Path) -> None:
    limits = server.Limits(connections=4, streams=4)
    with serving([STREAMING], directory=sockdir, limits=limits) as address:
        idle = [connect(address) for _ in range(4)]
        try:
            # Each connection is accepted and lets the longest-idle one go: the first is closed.
            with connect(address) as newcomer:
                newcomer.sendall(post(HANDSHAKE))
                assert b" 200 OK" in answer_of(newcomer)
            until_closed(idle[0])
        finally:
            for sock in idle:
                sock.close()


class Blocking:
    """An instance plugin whose describe waits until released: a call under way."""

    name = "blocking"

    def __init__(self) -> None:
        self.entered = threading.Semaphore(0)
        self.released = threading.Event()

    def describe(self, tags: Any) -> list[Any]:
        self.entered.release()
        self.released.wait(WAIT)
        return []


def test_beyond_the_cap_with_every_connection_busy_a_new_one_is_refused_at_once(sockdir: Path) -> None:
    plugin = Blocking()
    service = server.instance_service(plugin, concurrent=True)  # type: ignore[arg-type]
    describe = b'{"jsonrpc":"2.0","method":"Instance.DescribeInstances","params":{},"id":1}'
    with serving([service], directory=sockdir, limits=server.Limits(connections=3)) as address:
        calls = [connect(address) for _ in range(3)]
        try:
            for sock in calls:
                sock.sendall(post(describe))
            for _ in calls:
                assert plugin.entered.acquire(timeout=WAIT)  # three calls under way: every connection busy
            with connect(address) as refused:  # (it sends nothing: a reset could hide the answer)
                received = until_closed(refused)
            assert received.startswith(b"HTTP/1.1 503 ") and b"too many connections" in received, received
            plugin.released.set()
            for sock in calls:
                assert b" 200 OK" in answer_of(sock)
        finally:
            plugin.released.set()
            for sock in calls:
                sock.close()
        with connect(address) as sock:  # calls done, a new connection is answered
            sock.sendall(post(HANDSHAKE))
            assert b" 200 OK" in answer_of(sock)


def test_event_streams_are_bounded(sockdir: Path) -> None:
    limits = server.Limits(connections=10, streams=2)
    with serving([STREAMING], directory=sockdir, limits=limits) as address:
        streams = [subscribe(address) for _ in range(2)]
        try:
            with connect(address) as third:
                third.sendall(b"GET /events?topic=instance/changes HTTP/1.1\r\nHost: localhost\r\n\r\n")
                received = answer_of(third)
            assert received.startswith(b"HTTP/1.1 503 ") and b"too many event streams" in received
            with connect(address) as sock:  # calls are still answered
                sock.sendall(post(HANDSHAKE))
                assert b" 200 OK" in answer_of(sock)
        finally:
            for sock in streams:
                sock.close()


def test_a_subscriber_that_stops_reading_is_let_go(sockdir: Path, caplog: pytest.LogCaptureFixture) -> None:
    big = {"IDs": [f"instance-{i:06d}" for i in range(5000)]}  # ~90 KB an event

    async def flood() -> AsyncIterator[Any]:
        while True:
            yield big
            await asyncio.sleep(0.001)

    service = server.Service(interface=wire.INSTANCE, methods={}, examples={}, feeds={"instance/changes": flood})
    with (
        caplog.at_level(logging.INFO, logger="infrakit.rpc"),
        serving([service], directory=sockdir, limits=server.Limits(write=1.0)) as address,
    ):
        sock = subscribe(address)  # and never read again
        try:
            deadline = time.monotonic() + WAIT
            while "stopped reading" not in caplog.text:
                assert time.monotonic() < deadline, "the stream of a subscriber that stopped reading was kept"
                time.sleep(0.05)
            until_closed(sock)
        finally:
            sock.close()


# -- bodies ------------------------------------------------------------------------------------


def test_a_body_beyond_the_bound_is_refused_before_it_is_read(sockdir: Path) -> None:
    limits = server.Limits(request=1 << 20)
    with serving([STREAMING], directory=sockdir, limits=limits) as address, connect(address) as sock:
        sock.sendall(post(b"", length=(1 << 20) + 1))  # the headers alone: the length says enough
        received = answer_of(sock)
    assert received.startswith(b"HTTP/1.1 413 ") and b"larger than 1 MiB" in received


def test_a_chunked_body_beyond_the_bound_is_refused(sockdir: Path) -> None:
    limits = server.Limits(request=1 << 20)
    with serving([STREAMING], directory=sockdir, limits=limits) as address, connect(address) as sock:
        head = (
            b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        sock.sendall(head)
        chunk = b"x" * 65536
        with contextlib.suppress(OSError):  # the daemon may close while we still send
            for _ in range(20):
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        received = until_closed(sock)
    assert received.startswith(b"HTTP/1.1 413 ") or received == b""


def test_bodies_held_at_once_are_bounded_but_small_calls_still_pass(sockdir: Path) -> None:
    limits = server.Limits(buffered=1 << 20)
    with serving([STREAMING], directory=sockdir, limits=limits) as address:
        holder = connect(address)
        try:
            holder.sendall(post(b"[" + b" " * (900 << 10), length=(900 << 10) + 10))  # 900 KiB held, not finished
            with connect(address) as big:
                big.sendall(post(b" " * (600 << 10) + HANDSHAKE))
                received = until_closed(big)
            assert received.startswith(b"HTTP/1.1 503 ") and b"request bodies" in received
            with connect(address) as small:  # a call of a few bytes always passes
                small.sendall(post(HANDSHAKE))
                assert b" 200 OK" in answer_of(small)
        finally:
            holder.close()
