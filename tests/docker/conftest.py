"""The Docker harness itself: installing the engine, starting and sharing our dockerd, the images.

In: ``tools/docker`` (install.sh, the engine, the images). Out: a daemon that answers, is shared
by leases and stopped by the last one, leaves the host's kernel settings, mounts, network and
cgroups as they were, and images that run as their tags say. Tests that start a daemon of their
own use a fresh state directory (:func:`own_state_dir`), never the shared one.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dockerfixtures import _unavailable
from tools.docker import engine as engines


@pytest.fixture
def own_state_dir() -> Iterator[Path]:
    """A fresh, short state directory for a daemon of the test's own (unix socket paths are short)."""
    if os.geteuid() != 0:
        pytest.skip("our own dockerd needs root (the other Docker tests use the engine at DOCKER_HOST)")
    if shutil.which("dockerd") is None:
        _unavailable("no dockerd: run tools/docker/install.sh (Debian's docker.io)")
    path = Path(tempfile.mkdtemp(prefix="ikd-", dir="/tmp"))
    try:
        yield path
    finally:
        engines.Daemon(path).stop()  # whatever a failed test left running there
        shutil.rmtree(path, ignore_errors=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fetch(url: str) -> str | None:
    """The body at ``url`` (loopback only), or None while nothing answers there."""
    assert url.startswith("http://127.0.0.1:"), url
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through a proxy
    try:
        with opener.open(url, timeout=2) as reply:
            return str(reply.read().decode())
    except OSError:
        return None
