"""Every ``examples/<scenario>/README.md`` is run as written, on a real API server, with an operator.

In: the README's ``console`` blocks: each ``$ `` line is a command, the lines after it
its expected output. Commands run in bash from the repository's root with the test's
kubeconfig (its current context set to the module's namespace, so the commands need
no ``-n``), ``$INSTANCES`` the operator's instance directory and the venv's ``kubectl``
and ``infrakit-local`` on ``PATH``. Out: each command's output against the README's,
after :func:`normalise` (ages, instance IDs, hashes, timestamps, spacing); a ``...``
line in the README stands for any lines. The operator converges in the background, so a
read-only command (``kubectl get``, ``describe``...) is run again until its output
matches or a deadline passes; the others run once.

One operator and one namespace serve the whole module: the examples' group names differ.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clusterfixtures import REPO_ROOT, Cluster, _delete_namespace
from tests.e2e.conftest import EXTERNAL, Operator

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(EXTERNAL, reason="runs its own operator on the module's namespace"),
]

EXAMPLES = REPO_ROOT / "examples"
LOCAL = {"07-containers"}  # local mode on a Docker engine: tests/docker_plugin/test_example.py runs it
SCENARIOS = sorted(
    p.name for p in EXAMPLES.iterdir() if p.is_dir() and (p / "README.md").is_file() and p.name not in LOCAL
)
RETRIED = re.compile(r"^(kubectl (get|describe)|infrakit-local|grep|ls)\b")
DEADLINE = 30.0

_NORMAL = [
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"), "UID"),
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z"), "TIME"),
    (re.compile(r"\binstance-\d+\b"), "instance-ID"),
    (re.compile(r"\b[a-z2-7]{32}\b"), "HASH"),  # an infrakit.config_sha
    (re.compile(r"(?<=\s)(\d+[smhd])+(?=\s|$)"), "AGE"),
    (re.compile(r"(?<=\s)(\d+[smhd])+ \(x\d+ over (\d+[smhd])+\)"), "AGE"),
    (re.compile(r"(Resource Version|Generation|Observed Generation):\s+\d+"), r"\1: N"),
]


def normalise(text: str, *, namespace: str) -> list[str]:
    lines = []
    for raw in text.splitlines():
        line = raw.replace(namespace, "default")
        for pattern, replacement in _NORMAL:
            line = pattern.sub(replacement, line)
        lines.append(" ".join(line.split()))
    return lines


def matches(expected: list[str], actual: list[str]) -> bool:
    """``expected`` equals ``actual``, a ``...`` line matching any run of lines (none included)."""
    if not expected:
        return not actual
    head, *rest = expected
    if head == "...":
        return any(matches(rest, actual[i:]) for i in range(len(actual) + 1))
    return bool(actual) and actual[0] == head and matches(rest, actual[1:])


def steps(readme: Path) -> list[tuple[str, list[str]]]:
    """The README's commands and their expected output, in order."""
    found: list[tuple[str, list[str]]] = []
    inside = False
    for line in readme.read_text().splitlines():
        if line.startswith("```"):
            inside = line.strip() == "```console"
            continue
        if not inside:
            continue
        if line.startswith("$ "):
            found.append((line[2:], []))
        elif found:
            found[-1][1].append(line)
    return found


@pytest.fixture(scope="module")
def stage(crd_installed: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], str]]:
    """One namespace, one operator, and the environment the README's commands run in."""
    namespace = f"t-examples-{uuid.uuid4().hex[:6]}"
    crd_installed.kubectl("create", "namespace", namespace)
    root = tmp_path_factory.mktemp("examples")
    kubeconfig = root / "kubeconfig"
    shutil.copy(crd_installed.kubeconfig, kubeconfig)
    env = {
        **crd_installed.env,
        "KUBECONFIG": str(kubeconfig),
        "INSTANCES": str(root / "instances"),
        "INFRAKIT_HOME": str(root / "home"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    subprocess.run(
        ["kubectl", "config", "set-context", "--current", f"--namespace={namespace}"],
        env=env, check=True, capture_output=True,
    )  # fmt: skip
    operator = Operator(
        cluster=crd_installed,
        namespace=namespace,
        instance_dir=root / "instances",
        log=root / "operator.log",
    ).start()
    try:
        yield env, namespace
    finally:
        operator.stop()
        _delete_namespace(crd_installed, namespace)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_example(stage: tuple[dict[str, str], str], scenario: str) -> None:
    env, namespace = stage
    readme = EXAMPLES / scenario / "README.md"
    script = steps(readme)
    assert script, f"{readme} shows no commands"
    for command, expected_text in script:
        expected = normalise("\n".join(expected_text), namespace=namespace)
        deadline = time.monotonic() + (DEADLINE if RETRIED.match(command) else 0)
        while True:
            done = subprocess.run(
                ["bash", "-c", command], check=False, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=90
            )
            actual = normalise(done.stdout + done.stderr, namespace=namespace)
            if matches(expected, actual) or time.monotonic() > deadline:
                break
            time.sleep(0.2)  # polling the eventually consistent state, not an assertion
        assert matches(expected, actual), (
            f"{scenario}: `{command}` (exit {done.returncode})\nexpected:\n"
            + "\n".join(expected)
            + "\nactual:\n"
            + "\n".join(actual)
        )
