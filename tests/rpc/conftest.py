"""Fixtures for the plugin protocol: servers in threads, fake plugins, the Go test plugin.

What goes in: our services served in-process (:func:`serving`), hand-made HTTP answers
(:class:`FakePlugin`: the misbehaving plugins a client must survive), daemons started as
subprocesses, a Go plugin built from ``goplugin/main.go`` and a Go client making its
calls as InfraKit v0.5's CLI does (``goclient/main.go``).  What comes out: raw
JSON-RPC answers (:func:`rpc`) or our client's results and errors.

Unix socket paths are limited to 107 bytes, so sockets live in a short directory under
``/tmp`` rather than pytest's long ``tmp_path``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import http.client
import http.server
import json
import os
import queue
import shutil
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from infrakit.rpc import server

GOPLUGIN_SOURCE = Path(__file__).parent / "goplugin" / "main.go"
GOCLIENT_SOURCE = Path(__file__).parent / "goclient" / "main.go"


@pytest.fixture
def sockdir() -> Iterator[Path]:
    """A short private directory for sockets (the plugins directory of one test)."""
    path = Path(tempfile.mkdtemp(prefix="ik-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def plugins_env(sockdir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``$INFRAKIT_PLUGINS_DIR`` pointed at a fresh directory (returned)."""
    directory = sockdir / "plugins"
    monkeypatch.setenv("INFRAKIT_PLUGINS_DIR", str(directory))
    return directory


@contextlib.contextmanager
def serving(
    services: Sequence[server.Service],
    *,
    directory: Path,
    name: str = "plugin",
    listen: tuple[str, int] | None = None,
    **options: Any,
) -> Iterator[str]:
    """Serve ``services`` from a thread with its own event loop; yield the address to dial.

    ``options`` go to :func:`infrakit.rpc.server.serve` (``access``, ``limits``).
    """
    ready = threading.Event()
    found: dict[str, Any] = {}

    def target() -> None:
        async def main() -> None:
            found["stop"] = asyncio.Event()
            found["loop"] = asyncio.get_running_loop()

            def on_ready(address: str) -> None:
                found["address"] = address
                ready.set()

            await server.serve(
                services,
                name=name,
                stop=found["stop"],
                directory=directory,
                listen=listen,
                on_ready=on_ready,
                **options,
            )

        try:
            asyncio.run(main())
        except BaseException as error:  # surfaced to the test below
            found["error"] = error
            ready.set()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    ready.wait(30)
    if "error" in found:
        raise found["error"]
    try:
        yield found["address"]
    finally:
        found["loop"].call_soon_threadsafe(found["stop"].set)
        thread.join(30)


class _UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=30)
        self.unix_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(self.unix_path)


def http_request(
    address: str, *, method: str = "POST", path: str = "/", body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One raw HTTP request to a unix socket: status, headers, body."""
    connection = _UnixHTTP(address)
    try:
        connection.request(method, path, body, headers if headers is not None else {"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def rpc(address: str, method: str, params: Any = None, *, request_id: Any = 1) -> dict[str, Any]:
    """A JSON-RPC 2.0 call as the Go client makes it; the decoded answer (HTTP 200 asserted)."""
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params, "id": request_id}
    status, _, body = http_request(address, body=json.dumps(message).encode())
    assert status == 200, body
    answer: dict[str, Any] = json.loads(body)
    return answer


# -- fake plugins: answers written by hand ---------------------------------------------------

Responder = Callable[["FakeHandler", dict[str, Any]], None]


class FakeHandler(http.server.BaseHTTPRequestHandler):
    """One connection to a :class:`FakePlugin`; ``respond`` decides what each request gets."""

    protocol_version = "HTTP/1.1"  # keep connections open, as Go's server does
    server: FakeServer

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        request = json.loads(self.rfile.read(length))
        self.server.requests.append(request)
        self.server.responder(self, request)

    def answer(self, body: bytes, *, status: int = 200, close: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        if close:  # close without saying so (no "Connection: close"): a kept connection dies
            self.close_connection = True

    def result(self, request: dict[str, Any], result: Any) -> None:
        self.answer(json.dumps({"jsonrpc": "2.0", "result": result, "id": request["id"]}).encode())

    def setup(self) -> None:
        super().setup()
        self.server.connections += 1

    def log_message(self, format: str, *args: Any) -> None:
        pass


class FakeServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str, responder: Responder) -> None:
        self.responder = responder
        self.requests: list[dict[str, Any]] = []
        self.connections = 0
        self.closed = threading.Event()
        super().__init__(path, FakeHandler)

    def shutdown_request(self, request: Any) -> None:
        super().shutdown_request(request)
        self.closed.set()  # a connection is closed: tests wait for it rather than sleep

    def get_request(self) -> tuple[Any, Any]:
        request, _ = super().get_request()
        return request, ("local", 0)  # http.server wants a (host, port) client address


def handshaking(respond: Responder, *, interface: tuple[str, str] = ("Instance", "0.5.0")) -> Responder:
    """A responder that answers ``Handshake.Implements`` itself and passes the rest on."""

    def responder(handler: FakeHandler, request: dict[str, Any]) -> None:
        if request["method"] == "Handshake.Implements":
            handler.result(request, {"APIs": [{"Name": interface[0], "Version": interface[1]}]})
        else:
            respond(handler, request)

    return responder


@contextlib.contextmanager
def fake_plugin(path: Path, respond: Responder) -> Iterator[FakeServer]:
    fake = FakeServer(str(path), respond)
    thread = threading.Thread(target=fake.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.shutdown()
        fake.server_close()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


# -- subprocesses --------------------------------------------------------------------------


class Daemon:
    """A daemon run as a subprocess, its stderr read line by line in a thread."""

    def __init__(self, command: list[str], *, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.pid = self.process.pid
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, needle: str, *, limit: float = 60.0) -> str:
        """The first line (from now) containing ``needle``; bounded, so a silent daemon fails the test."""
        deadline = time.monotonic() + limit
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:
                raise AssertionError(f"{needle!r} never appeared; stderr was:\n{''.join(self.seen)}")
            self.seen.append(line)
            if needle in line:
                return line

    def stop(self) -> int:
        """SIGTERM and wait (bounded); the exit code."""
        if self.process.poll() is None:
            self.process.terminate()
        try:
            return self.process.wait(30)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(30)


def daemon_command(kind: str, *args: str) -> list[str]:
    """The command line of one of our daemons (run from this interpreter, installed or not)."""
    return [sys.executable, "-m", "infrakit.daemons", kind, *args]


def start_daemon(kind: str, *args: str, env: dict[str, str] | None = None) -> Daemon:
    return Daemon(daemon_command(kind, *args), env=env)


# -- the Go plugin -------------------------------------------------------------------------


def _go_build(source: Path, name: str) -> Path:
    """``source`` built with the Go toolchain (standard library only), cached under ~/.cache/infrakit by hash."""
    go = shutil.which("go")
    if go is None:
        pytest.skip(f"the Go toolchain is not installed: cannot build the Go test {name}")
    version = subprocess.run([go, "version"], capture_output=True, text=True, check=True).stdout
    digest = hashlib.sha256(source.read_bytes() + version.encode()).hexdigest()[:16]
    cached = Path.home() / ".cache" / "infrakit" / name / digest / name
    if cached.exists():
        return cached
    cached.parent.mkdir(parents=True, exist_ok=True)
    scratch = cached.parent / f".{name}-{os.getpid()}"
    env = {**os.environ, "GOPROXY": "off", "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local", "CGO_ENABLED": "0"}
    built = subprocess.run(
        [go, "build", "-o", str(scratch), str(source)], capture_output=True, text=True, env=env, check=False
    )
    assert built.returncode == 0, built.stderr
    os.replace(scratch, cached)
    return cached


@pytest.fixture(scope="session")
def goplugin() -> Path:
    """The Go test plugin, built from source (cached under ~/.cache/infrakit by source hash)."""
    return _go_build(GOPLUGIN_SOURCE, "goplugin")


@pytest.fixture(scope="session")
def goclient() -> Path:
    """A client making its calls as InfraKit v0.5's CLI does (``goclient/main.go``), built from source."""
    return _go_build(GOCLIENT_SOURCE, "goclient")
