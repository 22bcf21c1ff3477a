"""The namespaced and sidecar overlays of ``manifests/`` on the node, as users apply them."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from tests.node.conftest import OPERATOR_NAMESPACE, REPO_ROOT, Deployed


def _group(name: str, plugin: str) -> str:
    group: dict[str, Any] = yaml.safe_load((REPO_ROOT / "examples" / "cattle.yaml").read_text())
    group["metadata"] = {"name": name, "namespace": OPERATOR_NAMESPACE}
    group["spec"]["instance"]["plugin"] = plugin
    return json.dumps(group)


def _files(directory: Path, group: str) -> set[Path]:
    found = set()
    for path in directory.rglob("instance-*"):
        try:
            if json.loads(path.read_text()).get("Tags", {}).get("infrakit.group") == group:
                found.add(path)
        except (OSError, ValueError):
            continue
    return found


def _wait_for(deployed: Deployed, group: str, count: int) -> set[Path]:
    deadline = time.monotonic() + 60
    while len(found := _files(deployed.instance_dir, group)) != count:
        assert time.monotonic() < deadline, f"{group}: {len(found)} instance files, not {count}"
        time.sleep(0.2)
    status = deployed.cluster.kubectl("get", "group", group, "-n", OPERATOR_NAMESPACE, "-o", "json").stdout
    deadline = time.monotonic() + 30
    while json.loads(status).get("status", {}).get("readyReplicas") != count:
        assert time.monotonic() < deadline, f"{group}: status {status}"
        time.sleep(0.2)
        status = deployed.cluster.kubectl("get", "group", group, "-n", OPERATOR_NAMESPACE, "-o", "json").stdout
    return found


def test_the_namespaced_overlay_serves_its_own_namespace(deploy: Callable[[str], Deployed]) -> None:
    deployed = deploy("manifests/overlays/namespaced")
    cluster = deployed.cluster
    assert cluster.kubectl("get", "clusterrole", "infrakit-operator", check=False).returncode != 0
    cluster.kubectl("apply", "-f", "-", input=_group("cattle", "instance-file"))
    _wait_for(deployed, "cattle", 5)


def test_the_sidecar_overlay_serves_a_group_from_the_sidecar(deploy: Callable[[str], Deployed]) -> None:
    deployed = deploy("manifests/overlays/sidecar")
    deployed.cluster.kubectl("apply", "-f", "-", input=_group("herd", "instance-sidecar"))
    found = _wait_for(deployed, "herd", 5)
    # Written by the sidecar, in its own directory of the shared volume.
    assert {path.parent for path in found} == {deployed.instance_dir / "sidecar"}
