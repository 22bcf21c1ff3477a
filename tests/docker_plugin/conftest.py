"""Fixtures for the Docker instance plugin: a real engine (``tests/dockerfixtures.py``), no mocks.

What goes in: the plugin made on that engine, its containers fenced off by a namespace tag
unique to the test (``--namespace-tags``: every container carries it, every describe filters
by it), the busybox images made without a registry.  What comes out: containers, their
labels and states as ``docker`` sees them, and the plugin's answers and one-line errors.
Every container a test made is removed at its end (by that tag, or by its group's label).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from infrakit.plugins import instance_docker

FENCE = "infrakit-test.run"


class Docker:
    """The ``docker`` CLI on the test engine."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def __call__(self, *args: str, check: bool = True) -> str:
        done = self.engine.docker(*args, check=False, timeout=60)
        if check and done.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout.strip()

    def ids(self, *labels: str, all_states: bool = True) -> list[str]:
        args = ["ps", "-q", "--no-trunc"] + (["-a"] if all_states else [])
        for label in labels:
            args += ["--filter", f"label={label}"]
        return self(*args).split()

    def inspect(self, container: str) -> dict[str, Any]:
        found: list[dict[str, Any]] = json.loads(self("inspect", container))
        return found[0]

    def remove_labelled(self, label: str) -> None:
        ids = self.ids(label)
        if ids:
            self("rm", "-f", "-v", *ids, check=False)


@pytest.fixture
def docker(docker_engine: Any) -> Docker:
    return Docker(docker_engine)


@pytest.fixture
def fence() -> str:
    return uuid.uuid4().hex[:12]


@pytest.fixture
def make_plugin(
    docker_host: str, docker: Docker, fence: str, tmp_path: Path
) -> Iterator[Callable[..., instance_docker.DockerPlugin]]:
    """Plugins on the test engine, fenced to this test; their containers removed at the end."""
    made: list[instance_docker.DockerPlugin] = []

    def make(**options: Any) -> instance_docker.DockerPlugin:
        plugin = instance_docker.create(
            {"url": docker_host, "namespace": {FENCE: fence}, "labels_dir": str(tmp_path / "labels"), **options}
        )
        made.append(plugin)
        return plugin

    try:
        yield make
    finally:
        docker.remove_labelled(f"{FENCE}={fence}")
        for plugin in made:
            plugin.close()


@pytest.fixture
def plugin(make_plugin: Callable[..., instance_docker.DockerPlugin]) -> instance_docker.DockerPlugin:
    return make_plugin()


@pytest.fixture
def busybox(busybox_images: dict[str, str]) -> dict[str, Any]:
    """Properties of a container that idles (no port: any number may run at once)."""
    return {"Config": {"Image": busybox_images["1"], "Cmd": ["sleep", "600"]}, "HostConfig": {"NetworkMode": "none"}}


@pytest.fixture
def docker_env(docker_host: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment of CLI and daemon subprocesses: this engine, a private INFRAKIT_HOME."""
    monkeypatch.setenv("DOCKER_HOST", docker_host)
    monkeypatch.setenv("INFRAKIT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("INFRAKIT_INSTANCE_DIR", raising=False)
    return dict(os.environ)


def wait_for(condition: Callable[[], Any], *, timeout: float = 30.0, what: str = "the condition") -> Any:
    """Poll ``condition`` until it is truthy (returned), or fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


class EngineProxy:
    """A unix socket forwarding to the engine's, which the test can take away and bring back
    (an engine that stops and starts, without stopping the shared one)."""

    def __init__(self, target: str, path: Path) -> None:
        self.target = target
        self.path = path
        self._server: socket.socket | None = None
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(self.path))
        server.listen(64)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        with contextlib.suppress(OSError):
            server.shutdown(socket.SHUT_RDWR)
        server.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        with self._lock:
            cut, self._open = self._open, []
        for connection in cut:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(self.target)
            with self._lock:
                self._open += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(1 << 16):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
