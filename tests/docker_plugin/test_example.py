"""``examples/07-containers/README.md`` run as written, on the local store and the test engine.

As ``tests/e2e/test_examples.py`` runs the cluster examples (same parsing and comparison), but
with no cluster: bash from the repository's root, ``$DOCKER_HOST`` the test engine, a fresh
``$INFRAKIT_HOME``, the venv first on ``PATH``.  A read-only command (``pages.sh``, ``grep``,
``docker ps``) is run again until its output matches or a deadline passes: the controller
heals in the background.  Whatever the README leaves running or made is stopped and removed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.docker_plugin.conftest import Docker
from tests.e2e.test_examples import EXAMPLES, matches, normalise, steps

REPO_ROOT = EXAMPLES.parent
RETRIED = ("examples/07-containers/pages.sh", "grep ", "docker ps")
DEADLINE = 30.0


@pytest.mark.timeout(300)
def test_the_containers_example(
    docker_host: str, busybox_images: dict[str, str], docker: Docker, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {
        **os.environ,
        "DOCKER_HOST": docker_host,
        "INFRAKIT_HOME": str(home),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    env.pop("INFRAKIT_INSTANCE_DIR", None)
    script = steps(EXAMPLES / "07-containers" / "README.md")
    assert len(script) >= 10
    try:
        for command, expected_text in script:
            expected = normalise("\n".join(expected_text), namespace="-")
            deadline = time.monotonic() + (DEADLINE if command.startswith(RETRIED) else 0)
            while True:
                done = subprocess.run(
                    ["bash", "-c", command], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
                    check=False,
                )  # fmt: skip
                actual = normalise(done.stdout + done.stderr, namespace="-")
                if matches(expected, actual) or time.monotonic() > deadline:
                    break
                time.sleep(0.2)  # polling the healing in the background, not an assertion
            assert matches(expected, actual), (
                f"`{command}` (exit {done.returncode})\nexpected:\n" + "\n".join(expected) + "\nactual:\n"
                + "\n".join(actual)
            )  # fmt: skip
    finally:
        pid = home / "run.pid"
        if pid.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid.read_text()), signal.SIGTERM)
        docker.remove_labelled("infrakit.group=web")
