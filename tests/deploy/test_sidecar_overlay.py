"""``manifests/overlays/sidecar``: a plugin daemon beside the operator, sharing the plugins directory.

Rendered (no API server): the operator resolves plugin names in the emptyDir the
sidecar listens in, both containers stay locked down, the sidecar serves under the
name a Group uses.  On the API server: a server-side dry run accepts it, with no Pod
Security warning.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from tests.clusterfixtures import Cluster
from tests.deploy.conftest import MANIFESTS, SYSTEM_NAMESPACE, kubectl_binary, one

SIDECAR = MANIFESTS / "overlays" / "sidecar"
PLUGINS = "/var/run/infrakit/plugins"


def rendered() -> list[dict[str, Any]]:
    import subprocess

    proc = subprocess.run(
        [kubectl_binary(), "kustomize", str(SIDECAR)], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def containers() -> dict[str, dict[str, Any]]:
    pod = one(rendered(), "Deployment", "infrakit-operator")["spec"]["template"]["spec"]
    return {c["name"]: c for c in pod["containers"]} | {"_volumes": {v["name"]: v for v in pod["volumes"]}}


def mounts(container: dict[str, Any]) -> dict[str, str]:
    return {m["name"]: m["mountPath"] for m in container.get("volumeMounts", [])}


def test_the_operator_finds_plugins_where_the_sidecar_listens() -> None:
    found = containers()
    operator, sidecar, volumes = found["operator"], found["instance-sidecar"], found["_volumes"]
    assert f"--plugins-dir={PLUGINS}" in operator["args"]
    assert mounts(operator)["plugins"] == PLUGINS == mounts(sidecar)["plugins"]
    assert "emptyDir" in volumes["plugins"]
    assert sidecar["command"] == ["infrakit-instance-file"]
    assert "--name=instance-sidecar" in sidecar["args"]
    assert {"name": "INFRAKIT_PLUGINS_DIR", "value": PLUGINS} in sidecar["env"]
    # Its instances on the instance volume, in a directory of its own.
    assert mounts(sidecar)["instances"] == "/var/lib/infrakit/instances"
    assert any(a.startswith("--dir=/var/lib/infrakit/instances/") for a in sidecar["args"])


def test_both_containers_are_locked_down() -> None:
    found = containers()
    for name in ("operator", "instance-sidecar"):
        context = found[name]["securityContext"]
        assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False, name
        assert context["capabilities"] == {"drop": ["ALL"]} and context["runAsNonRoot"] is True, name
        assert set(found[name]["resources"]) == {"requests", "limits"}, name
        assert found[name].get("readinessProbe"), name
        assert mounts(found[name])["tmp"] == "/tmp", name  # the one other writable path


@pytest.mark.cluster
def test_server_dry_run_accepts_the_sidecar(operator_rbac: Cluster) -> None:
    proc = operator_rbac.kubectl("apply", "--dry-run=server", "-k", str(SIDECAR))
    assert "deployment.apps/infrakit-operator" in proc.stdout
    labels = json.loads(operator_rbac.kubectl("get", "namespace", SYSTEM_NAMESPACE, "-o", "json").stdout)
    if labels["metadata"].get("labels", {}).get("pod-security.kubernetes.io/warn") == "restricted":
        assert not [line for line in proc.stderr.splitlines() if "PodSecurity" in line], proc.stderr
