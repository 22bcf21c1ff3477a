"""Fixtures for the operator end to end: a real API server, kubectl, and the operator.

In: what a user does (``kubectl apply/scale/patch/delete``, deleting instance files,
killing the operator). Out: instance files on the volume and the Group's status.

By default each test runs its own ``infrakit-operator`` process, scoped to the test's
namespace, with its own instance directory and Lease, against the Go-built control
plane.  To run the same tests against an operator deployed in another cluster (kind in
CI): ``INFRAKIT_TEST_CLUSTER=external KUBECONFIG=... INFRAKIT_TEST_OPERATOR=external
INFRAKIT_TEST_INSTANCE_DIR=<where the operator's instance volume is visible here>``;
"killing the operator" then deletes its pod.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.clusterfixtures import Cluster

EXTERNAL = os.environ.get("INFRAKIT_TEST_OPERATOR") == "external"


def wait_until(condition: Callable[[], Any], *, timeout: float = 30.0, interval: float = 0.05, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(interval)


@dataclass
class Operator:
    """An operator watching ``namespace``; ``instances()`` reads its volume."""

    cluster: Cluster
    namespace: str
    instance_dir: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None
    extra: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "infrakit.operator",
            "--dir", str(self.instance_dir),
            "--namespace", self.namespace,
            "--lease-namespace", self.namespace,
            "--lease-name", "infrakit-operator",
            "--metrics-bind-address", "0", "--liveness", "", "--readiness", "",
            "--resync", "5",
            *self.extra,
        ]  # fmt: skip

    def start(self, *, wait: bool = True) -> Operator:
        if EXTERNAL:
            return self
        command = self.command()
        with self.log.open("ab") as log:
            env = {**self.cluster.env, **self.env}
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        if wait:
            wait_until(
                lambda: "acquired the lease" in self.log.read_text() or self._dead(), timeout=60, what="the lease"
            )
            assert not self._dead(), self.log.read_text()
        return self

    def _dead(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def kill(self) -> None:
        """SIGKILL: no clean-up, no lease release."""
        if EXTERNAL:
            self.cluster.kubectl(
                "delete",
                "pod",
                "-n",
                "infrakit-system",
                "-l",
                "app.kubernetes.io/name=infrakit-operator",
                "--grace-period=0",
                "--force",
            )
            return
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def instances(self, group: str) -> dict[str, dict[str, Any]]:
        """The group's instance files (ID -> document) as the file plugin wrote them."""
        found = {}
        for path in self.instance_dir.glob("instance-*"):
            try:
                document = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # being replaced right now
            tags = document.get("Tags") or {}
            if tags.get("infrakit.group") == group and tags.get("infrakit.namespace") == self.namespace:
                found[path.name] = document
        return found


@pytest.fixture
def operator_factory(crd_installed: Cluster, namespace: str, tmp_path: Path) -> Iterator[Callable[..., Operator]]:
    made: list[Operator] = []
    instance_dir = Path(os.environ["INFRAKIT_TEST_INSTANCE_DIR"]) if EXTERNAL else tmp_path / "instances"

    def make(*extra: str, start: bool = True, env: dict[str, str] | None = None) -> Operator:
        operator = Operator(
            cluster=crd_installed,
            namespace=namespace,
            instance_dir=instance_dir,
            log=tmp_path / f"operator-{len(made)}.log",
            extra=list(extra),
            env=env or {},
        )
        made.append(operator)
        return operator.start() if start else operator

    yield make
    for operator in made:
        operator.stop()


@pytest.fixture
def operator(operator_factory: Callable[..., Operator]) -> Operator:
    return operator_factory()


@dataclass
class Groups:
    """kubectl on Groups in the test's namespace."""

    cluster: Cluster
    namespace: str

    def kubectl(self, *args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return self.cluster.kubectl(*args, "-n", self.namespace, check=check, input=input)

    def apply(self, path: Path | str) -> None:
        self.kubectl("apply", "-f", str(path))

    def get(self, name: str) -> dict[str, Any]:
        return dict(json.loads(self.kubectl("get", "group", name, "-o", "json").stdout))

    def status(self, name: str) -> dict[str, Any]:
        return dict(self.get(name).get("status") or {})

    def condition(self, name: str, kind: str) -> dict[str, Any]:
        return next((c for c in self.status(name).get("conditions", []) if c["type"] == kind), {})

    def events(self) -> list[dict[str, Any]]:
        return list(json.loads(self.kubectl("get", "events", "-o", "json").stdout)["items"])


@pytest.fixture
def groups(crd_installed: Cluster, namespace: str) -> Groups:
    return Groups(cluster=crd_installed, namespace=namespace)
