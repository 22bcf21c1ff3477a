"""``manifests/`` and its overlays, the image recipe, CI and Tilt, read without a cluster.

What the rendered objects must say (security settings, exact RBAC, labels and paths
that other files rely on), and that every YAML file and the Tiltfile parse.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.clusterfixtures import REPO_ROOT
from tests.deploy.conftest import (
    MANIFESTS,
    OVERLAYS,
    RBAC_KINDS,
    SERVICE_ACCOUNT,
    SYSTEM_NAMESPACE,
    find,
    one,
    operator_container,
    render,
)

INSTANCE_DIR = "/var/lib/infrakit/instances"
POD_LABEL = ("app.kubernetes.io/name", "infrakit-operator")
# What the operator calls (infrakit/kubeapi.py, infrakit/operator/leadership.py, kopf's
# watches and events), rule by rule. A new API call means a new line here, on purpose.
CLUSTER_RULES = [
    {"apiGroups": ["infrakit.io"], "resources": ["groups"], "verbs": ["get", "list", "watch", "patch"]},
    {"apiGroups": ["infrakit.io"], "resources": ["groups/status"], "verbs": ["patch"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
    {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"], "verbs": ["list", "watch"]},
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
    {"apiGroups": [""], "resources": ["namespaces"], "resourceNames": ["kube-system"], "verbs": ["get"]},
]
LEASE_RULES = [
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
    {
        "apiGroups": ["coordination.k8s.io"],
        "resources": ["leases"],
        "resourceNames": ["infrakit-operator"],
        "verbs": ["get", "update"],
    },
]
HARDENED = ("base", "kind", "namespaced")  # dev differs from kind only by a writable root


def _rbac(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] in RBAC_KINDS]


def _deployment(overlay: str) -> dict[str, Any]:
    return one(render(overlay), "Deployment", "infrakit-operator")


# -- the Deployment ----------------------------------------------------------------------


@pytest.mark.parametrize("overlay", HARDENED)
def test_deployment_is_locked_down(overlay: str) -> None:
    pod = _deployment(overlay)["spec"]["template"]["spec"]
    container = operator_container(render(overlay))
    pod_sc, sc = pod.get("securityContext") or {}, container.get("securityContext") or {}
    missing = []
    if not (sc.get("runAsNonRoot") or pod_sc.get("runAsNonRoot")):
        missing.append("runAsNonRoot")
    uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
    if not isinstance(uid, int) or uid == 0:
        missing.append("a numeric non-root runAsUser")
    if sc.get("readOnlyRootFilesystem") is not True:
        missing.append("readOnlyRootFilesystem")
    if sc.get("allowPrivilegeEscalation") is not False:
        missing.append("allowPrivilegeEscalation: false")
    if (sc.get("capabilities") or {}).get("drop") != ["ALL"] or (sc.get("capabilities") or {}).get("add"):
        missing.append("capabilities: drop [ALL], add none")
    seccomp = sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}
    if seccomp.get("type") != "RuntimeDefault":
        missing.append("seccompProfile RuntimeDefault")
    if sc.get("privileged"):
        missing.append("not privileged")
    resources = container.get("resources") or {}
    for part in ("requests", "limits"):
        for what in ("cpu", "memory"):
            if what not in (resources.get(part) or {}):
                missing.append(f"resources.{part}.{what}")
    for probe in ("livenessProbe", "readinessProbe"):
        if not container.get(probe):
            missing.append(probe)
    if pod.get("hostNetwork") or pod.get("hostPID") or pod.get("hostIPC"):
        missing.append("no host namespaces")
    assert not missing, f"{overlay}: the operator's Deployment lacks {', '.join(missing)}"


@pytest.mark.parametrize("overlay", HARDENED)
def test_writable_paths_are_volumes(overlay: str) -> None:
    """Read-only root: the instance directory and /tmp must be mounted volumes."""
    pod = _deployment(overlay)["spec"]["template"]["spec"]
    container = operator_container(render(overlay))
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert set(mounts) == {INSTANCE_DIR, "/tmp"}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    instances = volumes[mounts[INSTANCE_DIR]]
    expected = "hostPath" if overlay == "kind" else "persistentVolumeClaim"
    assert set(instances) == {"name", expected}
    assert f"--dir={INSTANCE_DIR}" in container["args"]


@pytest.mark.parametrize("overlay", HARDENED)
def test_probes_env_and_ports(overlay: str) -> None:
    container = operator_container(render(overlay))
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"health": 8080, "ready": 8081, "metrics": 9090}
    liveness = container["livenessProbe"]["httpGet"]
    assert (liveness["path"], ports[liveness["port"]]) == ("/healthz", 8080)
    assert "--liveness=http://0.0.0.0:8080/healthz" in container["args"]
    # Readiness is its own endpoint (the Groups cached and synced, the Lease known), not liveness.
    readiness = container["readinessProbe"]["httpGet"]
    assert (readiness["path"], ports[readiness["port"]]) == ("/readyz", 8081)
    assert "--readiness=http://0.0.0.0:8081/readyz" in container["args"]
    # The default is loopback: the pod must ask for every interface, or the Service scrapes nothing.
    assert "--metrics-bind-address=:9090" in container["args"]
    env = {e["name"]: e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") for e in container["env"]}
    assert env["POD_NAMESPACE"] == "metadata.namespace"  # the Lease's namespace
    assert env["POD_NAME"] == "metadata.name"  # this replica's identity in it
    assert container["image"] == "infrakit-operator:dev"


@pytest.mark.parametrize("overlay", HARDENED)
def test_pod_label_service_and_account(overlay: str) -> None:
    docs = render(overlay)
    deployment = one(docs, "Deployment", "infrakit-operator")
    assert deployment["metadata"]["namespace"] == SYSTEM_NAMESPACE
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels[POD_LABEL[0]] == POD_LABEL[1]
    assert deployment["spec"]["selector"]["matchLabels"] == {POD_LABEL[0]: POD_LABEL[1]}
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == SERVICE_ACCOUNT
    service = one(docs, "Service")
    assert service["spec"]["selector"] == {POD_LABEL[0]: POD_LABEL[1]}
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(9090, "metrics")]
    one(docs, "ServiceAccount", SERVICE_ACCOUNT)
    one(docs, "Namespace", SYSTEM_NAMESPACE)
    one(docs, "CustomResourceDefinition", "groups.infrakit.io")


def test_e2e_kills_the_pod_by_its_label() -> None:
    """tests/e2e in external mode deletes the operator's pod by this selector."""
    conftest = (REPO_ROOT / "tests" / "e2e" / "conftest.py").read_text()
    assert f"{POD_LABEL[0]}={POD_LABEL[1]}" in conftest
    assert f'"{SYSTEM_NAMESPACE}"' in conftest


def test_dev_overlay_only_unlocks_the_root_filesystem() -> None:
    dev, kind = render("dev"), render("kind")
    operator_container(dev)  # exactly one container
    container = one(dev, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is False
    container["securityContext"]["readOnlyRootFilesystem"] = True
    assert dev == kind


# -- RBAC ------------------------------------------------------------------------------


def _walk(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _walk(v)]
    if isinstance(value, list):
        return [s for v in value for s in _walk(v)]
    return [value] if isinstance(value, str) else []


@pytest.mark.parametrize("overlay", list(OVERLAYS))
def test_no_wildcards_no_secrets(overlay: str) -> None:
    for role in find(render(overlay), "ClusterRole") + find(render(overlay), "Role"):
        strings = _walk(role["rules"])
        assert not [s for s in strings if "*" in s], f"wildcard in {role['kind']} {role['metadata']['name']}"
        assert "secrets" not in strings
        assert all("nonResourceURLs" not in rule for rule in role["rules"])
        assert "aggregationRule" not in role


def test_cluster_rbac_is_exact() -> None:
    docs = render("base")
    assert one(docs, "ClusterRole", "infrakit-operator")["rules"] == CLUSTER_RULES
    assert one(docs, "ClusterRole", "infrakit-operator-leader-election")["rules"] == LEASE_RULES
    subject = [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": SYSTEM_NAMESPACE}]
    binding = one(docs, "ClusterRoleBinding", "infrakit-operator")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "infrakit-operator",
    }
    assert binding["subjects"] == subject
    # The Lease permission is granted in the operator's namespace only, never cluster-wide.
    lease = one(docs, "RoleBinding", "infrakit-operator-leader-election")
    assert lease["metadata"]["namespace"] == SYSTEM_NAMESPACE
    assert lease["roleRef"]["name"] == "infrakit-operator-leader-election"
    assert lease["subjects"] == subject
    assert {(d["kind"], d["metadata"]["name"]) for d in _rbac(docs)} == {
        ("ClusterRole", "infrakit-operator"),
        ("ClusterRoleBinding", "infrakit-operator"),
        ("ClusterRole", "infrakit-operator-leader-election"),
        ("RoleBinding", "infrakit-operator-leader-election"),
    }


def test_namespaced_overlay_has_no_cluster_permissions() -> None:
    docs = render("namespaced")
    assert {(d["kind"], d["metadata"]["name"]) for d in _rbac(docs)} == {
        ("Role", "infrakit-operator"),
        ("RoleBinding", "infrakit-operator"),
    }
    role = one(docs, "Role", "infrakit-operator")
    assert role["metadata"]["namespace"] == SYSTEM_NAMESPACE
    # Only the namespaced rules: no CRD or namespace scanning (kopf falls back to its start-up
    # listing and says so once; a CRD installed later is served after a restart).
    assert role["rules"] == CLUSTER_RULES[:3] + LEASE_RULES
    binding = one(docs, "RoleBinding", "infrakit-operator")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "infrakit-operator"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": SYSTEM_NAMESPACE}]
    assert operator_container(docs)["args"][-3:] == [
        "--namespace=$(POD_NAMESPACE)",
        "--no-scanning",
        "--cluster-id-source=service-account",  # it may not read the kube-system namespace
    ]
    assert not any("--namespace" in arg for arg in operator_container(render("base"))["args"])


# -- kind, Make, CI ----------------------------------------------------------------------


def _kind_config() -> dict[str, Any]:
    return dict(yaml.safe_load((OVERLAYS["kind"] / "kind-config.yaml").read_text()))


def test_kind_overlay_uses_the_mounted_host_directory() -> None:
    docs = render("kind")
    assert not find(docs, "PersistentVolumeClaim")
    volumes = {v["name"]: v for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    host_path = volumes["instances"]["hostPath"]["path"]
    config = _kind_config()
    assert config["kind"] == "Cluster" and config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    mounts = [m for node in config["nodes"] for m in node.get("extraMounts", [])]
    assert [m["containerPath"] for m in mounts] == [host_path]
    assert len(config["nodes"]) == 1  # a hostPath is per node: one node sees every file
    # make kind-up creates that host directory and make kind-e2e reads instances there.
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert re.search(rf"^KIND_HOST_DIR \?= {re.escape(mounts[0]['hostPath'])}\s*$", makefile, re.MULTILINE)


def test_makefile_targets() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text()
    for target in ("image", "kind-up", "kind-e2e", "kind-down", "dev"):
        assert re.search(rf"^{target}:", makefile, re.MULTILINE), target
    phony = re.search(r"^\.PHONY:((?:.*\\\n)*.*)$", makefile, re.MULTILINE)
    assert phony is not None
    assert {"image", "kind-up", "kind-e2e", "kind-down", "dev"} <= set(phony.group(1).replace("\\", " ").split())


def _workflow() -> dict[Any, Any]:
    return dict(yaml.safe_load((REPO_ROOT / ".github" / "workflows" / "ci.yaml").read_text()))


def test_ci_jobs_and_pinned_actions() -> None:
    workflow = _workflow()
    jobs = workflow["jobs"]
    assert {"lint", "test", "kind"} <= set(jobs)
    uses = [step["uses"] for job in jobs.values() for step in job["steps"] if "uses" in step]
    assert uses
    for action in uses:
        assert re.fullmatch(r"[\w.-]+/[\w./-]+@(v\d+\.\d+\.\d+|[0-9a-f]{40})", action), f"unpinned: {action}"
    kind = "\n".join(step.get("run", "") for step in jobs["kind"]["steps"])
    assert "make kind-up" in kind and "make kind-e2e" in kind
    assert "make test" in "\n".join(step.get("run", "") for step in jobs["test"]["steps"])


# -- the image ---------------------------------------------------------------------------


def _stages(dockerfile: str) -> dict[str, list[str]]:
    stages: dict[str, list[str]] = {}
    current: list[str] = []
    joined = re.sub(r"\\\n", " ", dockerfile)
    for raw in joined.splitlines():
        line = raw.strip()
        match = re.match(r"FROM\s+\S+(?:\s+AS\s+(\S+))?", line, re.IGNORECASE)
        if match:
            current = stages.setdefault(match.group(1) or f"stage{len(stages)}", [])
        elif line and not line.startswith("#"):
            current.append(line)
    return stages


def test_image_runs_the_operator_as_the_pods_user() -> None:
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    stages = _stages(dockerfile)
    final = list(stages.values())[-1]  # what `docker build` makes without --target
    user = [line.split()[1] for line in final if line.startswith("USER ")]
    uid = operator_container(render("base"))["securityContext"]["runAsUser"]
    assert user == [f"{uid}:{uid}"]
    assert 'ENTRYPOINT ["infrakit-operator"]' in final
    # The project itself is installed (from make image's wheels when there are any: "$@").
    assert any(re.search(r"\bpip (--python \S+ )?install (\"\$@\" )?\.( |$)", line) for line in stages["build"])
    assert "PYTHONDONTWRITEBYTECODE=1" in dockerfile
    assert "dev" in stages  # the Tiltfile's target
    patterns = [line for line in (REPO_ROOT / ".dockerignore").read_text().splitlines() if line and line[0] != "#"]
    assert patterns[0] == "*"  # an allow-list: no .venv, .git or caches in the context
    assert {"!pyproject.toml", "!README.md", "!crds/", "!infrakit/"} <= set(patterns)


# -- syntax ------------------------------------------------------------------------------


def _yaml_files() -> list[Path]:
    roots = [REPO_ROOT / ".github" / "workflows", MANIFESTS]
    return sorted(p for root in roots for p in root.rglob("*") if p.suffix in (".yaml", ".yml"))


@pytest.mark.parametrize("path", _yaml_files(), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_yaml_parses(path: Path) -> None:
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert documents and all(isinstance(d, dict) for d in documents)


def test_crds_kustomization_parses_and_is_not_applied_by_kubectl_f() -> None:
    crds = REPO_ROOT / "crds"
    kustomization = yaml.safe_load((crds / "Kustomization").read_text())
    assert kustomization["resources"] == sorted(p.name for p in crds.glob("*.yaml"))
    # `kubectl apply -f crds/` (tests, README) reads *.yaml, *.yml and *.json only.
    assert not [p for p in crds.iterdir() if p.suffix in (".yml", ".json") or p.name == "kustomization.yaml"]


def test_tiltfile_parses() -> None:
    tiltfile = (REPO_ROOT / "Tiltfile").read_text()
    tree = ast.parse(tiltfile, filename="Tiltfile")  # Starlark is a subset of Python's syntax
    strings = {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)}
    assert "manifests/overlays/dev" in strings
    assert (REPO_ROOT / "manifests" / "overlays" / "dev" / "kustomization.yaml").is_file()
    assert "infrakit-operator" in strings
