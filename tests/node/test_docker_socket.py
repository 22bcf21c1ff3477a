"""``manifests/overlays/docker-socket`` on the node: the operator's pod drives a Docker engine
through the mounted socket (issue 22, item 3), as a user applies the overlay.

The test's kustomization takes the overlay unchanged and sets the two values its comments tell
users to set for their node: the socket's path on the node (here the test engine's socket, not
``/var/run/docker.sock``) and DOCKER_GID, the group that owns it.  Checked from outside, through
the engine: the Group's containers carry the cluster's identity and the namespace; a
``docker kill`` is healed from Docker's events; deleting the Group removes exactly its containers.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from infrakit.core import instances
from tests.docker_plugin.conftest import Docker, wait_for
from tests.docker_plugin.test_modes import group
from tests.node.conftest import OPERATOR_NAMESPACE, REPO_ROOT, Deployed


def _kustomization(directory: Path, socket: Path) -> Path:
    """The overlay, with the socket's path and group as this node has them."""
    directory.mkdir()
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "infrakit-operator", "namespace": OPERATOR_NAMESPACE},
        "spec": {
            "template": {
                "spec": {
                    "securityContext": {"supplementalGroups": [socket.stat().st_gid]},
                    "volumes": [{"name": "docker-socket", "hostPath": {"path": str(socket), "type": "Socket"}}],
                }
            }
        },
    }
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        # relative: kustomize takes no absolute root
        "resources": [os.path.relpath(REPO_ROOT / "manifests" / "overlays" / "docker-socket", directory)],
        "patches": [{"path": "node.yaml"}],
    }
    (directory / "node.yaml").write_text(yaml.safe_dump(deployment))
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return directory


def test_the_operator_pod_keeps_heals_and_removes_containers_through_the_socket(
    deploy: Callable[[str], Deployed], docker_engine: Any, busybox_images: dict[str, str], tmp_path: Path
) -> None:
    docker = Docker(docker_engine)
    assert docker_engine.host.startswith("unix://"), f"a socket to mount, not {docker_engine.host}"
    socket = Path(docker_engine.host.removeprefix("unix://"))
    deployed = deploy(str(_kustomization(tmp_path / "docker-socket", socket)))
    cluster = deployed.cluster
    name = "web"
    manifest = group(name, busybox_images["1"], size=3)
    manifest["metadata"]["namespace"] = OPERATOR_NAMESPACE
    mine = (f"{instances.TAG_GROUP}={name}", f"{instances.TAG_NAMESPACE}={OPERATOR_NAMESPACE}")

    def ready() -> bool:
        status = json.loads(cluster.kubectl("get", "group", name, "-n", OPERATOR_NAMESPACE, "-o", "json").stdout)
        conditions = {c["type"]: c for c in status.get("status", {}).get("conditions", [])}
        return conditions.get("Ready", {}).get("status") == "True" and status["status"].get("replicas") == 3

    try:
        cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest))
        wait_for(ready, timeout=90, what="the Group Ready with 3 replicas")
        first = docker.ids(*mine, all_states=False)
        assert len(first) == 3
        labels: dict[str, str] = docker.inspect(first[0])["Config"]["Labels"]
        assert labels.get(instances.TAG_CLUSTER), "a cluster's container carries the cluster's identity"

        killed = time.monotonic()
        docker("kill", first[0])
        healed = wait_for(
            lambda: (now := docker.ids(*mine, all_states=False)) and len(now) == 3 and first[0] not in now and now,
            timeout=30,
            what="the killed container replaced",
        )
        assert set(first[1:]) <= set(healed), "only the killed container was replaced"
        print(f"healed in {time.monotonic() - killed:.2f} s (docker CLI polling included)")

        cluster.kubectl("delete", "group", name, "-n", OPERATOR_NAMESPACE, "--timeout=60s")
        wait_for(lambda: docker.ids(*mine) == [], timeout=30, what="the Group's containers removed")
    finally:
        docker.remove_labelled(f"{instances.TAG_NAMESPACE}={OPERATOR_NAMESPACE}")
