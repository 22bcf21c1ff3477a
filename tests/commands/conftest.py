"""Fixtures for the commands event, metadata, remote, template and playbook of ``infrakit-local``.

What goes in: command lines (``infrakit.cli.cli`` in process, or ``python -m
infrakit.cli``), a private ``$INFRAKIT_HOME`` and a short plugins directory, daemons run
as subprocesses.  What comes out: exit codes, stdout and stderr.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from infrakit import cli

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def short_home(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private ``$INFRAKIT_HOME`` under /tmp (unix socket paths are short)."""
    path = Path(tempfile.mkdtemp(prefix="ikc-", dir="/tmp"))
    monkeypatch.setenv("INFRAKIT_HOME", str(path))
    monkeypatch.delenv("INFRAKIT_PLUGINS_DIR", raising=False)
    monkeypatch.delenv("INFRAKIT_INSTANCE_DIR", raising=False)
    monkeypatch.delenv("INFRAKIT_HOST", raising=False)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def run(*args: str, input: str | None = None) -> Result:
    """``infrakit-local ARGS`` in process."""
    return CliRunner().invoke(cli.cli, list(args), input=input, catch_exceptions=False)


def spawn(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """``infrakit-local ARGS`` as a subprocess, stdout and stderr piped."""
    import os

    return subprocess.Popen(
        [sys.executable, "-m", "infrakit.cli", *args],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def web(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A plain-HTTP server on 127.0.0.1 serving a fresh directory: (base URL, the directory)."""
    import functools
    import http.server
    import threading

    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def secure_web(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    """An HTTPS server on 127.0.0.1 with a self-signed certificate the process trusts (``SSL_CERT_FILE``)."""
    import functools
    import http.server
    import shutil
    import ssl
    import subprocess
    import threading

    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make the test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # what urllib's default context trusts
    root = tmp_path / "www-tls"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


class Site:
    """A loopback HTTP server whose answers a test scripts: ``routes[path](handler)``; every request logged.

    ``requests`` holds each path asked for (query included), in order: what a template
    sent to this origin, so a test can show that nothing leaked to it.
    """

    def __init__(self) -> None:
        import http.server
        import threading

        self.routes: dict[str, Callable[[http.server.BaseHTTPRequestHandler], None]] = {}
        self.requests: list[str] = []
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                site.requests.append(self.path)
                route = site.routes.get(self.path.partition("?")[0])
                if route is None:
                    self.send_error(404)
                    return
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up: a bound held
                    route(self)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def text(self, path: str, body: str) -> None:
        """Serve ``body`` at ``path``."""

        def answer(handler: Any) -> None:
            data = body.encode("utf-8")
            handler.send_response(200)
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)

        self.routes[path] = answer

    def redirect(self, path: str, location: str) -> None:
        def answer(handler: Any) -> None:
            handler.send_response(302)
            handler.send_header("Location", location)
            handler.send_header("Content-Length", "0")
            handler.end_headers()

        self.routes[path] = answer

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def site() -> Iterator[Site]:
    made = Site()
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def other_site() -> Iterator[Site]:
    """A second origin (another port), where a hostile template would send what it read."""
    made = Site()
    try:
        yield made
    finally:
        made.close()
