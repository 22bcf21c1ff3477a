"""``manifests/overlays/docker-socket``: the operator reaches the node's engine, and says what that grants."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

OVERLAY = Path(__file__).resolve().parents[2] / "manifests" / "overlays" / "docker-socket"


def test_the_overlay_mounts_the_socket_and_names_it() -> None:
    kubectl = Path(sys.executable).parent / "kubectl"
    rendered = subprocess.run([str(kubectl), "kustomize", str(OVERLAY)], capture_output=True, text=True, check=True)
    documents = {d["kind"]: d for d in yaml.safe_load_all(rendered.stdout) if d}
    pod = documents["Deployment"]["spec"]["template"]["spec"]
    operator = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in operator["env"]}
    assert env["DOCKER_HOST"] == "unix:///var/run/docker.sock"
    assert env["INFRAKIT_HOME"].startswith("/var/lib/infrakit/instances")  # labels outlive the pod
    assert {"name": "docker-socket", "mountPath": "/var/run/docker.sock"} in operator["volumeMounts"]
    (socket,) = [v for v in pod["volumes"] if v["name"] == "docker-socket"]
    assert socket["hostPath"] == {"path": "/var/run/docker.sock", "type": "Socket"}
    labels = documents["Namespace"]["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged"  # a hostPath socket is not "restricted"
    assert "root on the node" in (OVERLAY / "kustomization.yaml").read_text()
