"""The manifests on a real API server: accepted as they are, RBAC exact, and enough.

Enough means the operator, run with a token of its own service account (not the
tests' admin), does the tutorial without a single 403: watch, finalizers, status,
events and the Lease, both with the cluster-wide ClusterRoles of the base and with
the one namespaced Role of overlays/namespaced.
"""

from __future__ import annotations

import json
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from infrakit.core import specs
from tests.clusterfixtures import Cluster
from tests.conftest import EXAMPLES
from tests.deploy.conftest import (
    OVERLAYS,
    SA_USER,
    SERVICE_ACCOUNT,
    SYSTEM_NAMESPACE,
    apply_docs,
    find,
    render,
)
from tests.e2e.conftest import EXTERNAL, Groups, Operator, wait_until

pytestmark = pytest.mark.cluster

FORBIDDEN = re.compile(r"\b403\b|forbidden", re.IGNORECASE)
LEASE = "infrakit-operator"


# -- 1. every overlay is accepted by the API server ------------------------------------


@pytest.mark.parametrize("overlay", list(OVERLAYS))
def test_server_dry_run_accepts(operator_rbac: Cluster, overlay: str) -> None:
    # Server-side: schema validation of every field, admission, Pod Security warnings.
    proc = operator_rbac.kubectl("apply", "--dry-run=server", "-k", str(OVERLAYS[overlay]))
    assert "deployment.apps/infrakit-operator" in proc.stdout
    # infrakit-system enforces and warns about the "restricted" Pod Security Standard: the
    # base complies; kind and dev break it with their hostPath volume and nothing else.
    labels = json.loads(operator_rbac.kubectl("get", "namespace", SYSTEM_NAMESPACE, "-o", "json").stdout)
    if labels["metadata"].get("labels", {}).get("pod-security.kubernetes.io/warn") != "restricted":
        return  # a namespace made otherwise, on an external cluster: no warnings to read
    warnings = [line for line in proc.stderr.splitlines() if "PodSecurity" in line]
    if overlay in ("kind", "dev"):
        assert len(warnings) == 1 and warnings[0].endswith(
            'restricted volume types (volume "instances" uses restricted volume type "hostPath")'
        ), proc.stderr
    else:
        assert not warnings, proc.stderr


# -- 2. RBAC: what the service account may and may not do ---------------------------------


def _can(cluster: Cluster, check: tuple[str, ...]) -> bool:
    proc = cluster.kubectl("auth", "can-i", *check, f"--as={SA_USER}", check=False)
    assert proc.stdout.strip() in ("yes", "no"), f"kubectl auth can-i {' '.join(check)}: {proc.stderr}"
    return proc.stdout.strip() == "yes"


def _checks(cluster: Cluster, checks: list[tuple[str, ...]]) -> dict[tuple[str, ...], bool]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(checks, pool.map(lambda c: _can(cluster, c), checks), strict=True))


def test_service_account_may_do_what_the_operator_does(operator_rbac: Cluster, namespace: str) -> None:
    ns, system = ("-n", namespace), ("-n", SYSTEM_NAMESPACE)
    needed = [
        # kopf's watch, cluster-wide (the base) and per namespace
        *[(verb, "groups.infrakit.io", "-A") for verb in ("list", "watch")],
        *[(verb, "groups.infrakit.io", *ns) for verb in ("get", "list", "watch", "patch")],
        ("patch", "groups.infrakit.io", "--subresource=status", *ns),
        ("create", "events", *ns),
        ("create", "events", *system),
        # kopf's scanning: the CRD appearing late, namespaces matching globs
        *[(verb, "customresourcedefinitions.apiextensions.k8s.io") for verb in ("list", "watch")],
        *[(verb, "namespaces") for verb in ("list", "watch")],
        # the cluster's identity: the kube-system namespace's UID
        ("get", "namespaces/kube-system"),
        # the Lease, in the operator's namespace
        ("create", "leases.coordination.k8s.io", *system),
        ("get", f"leases.coordination.k8s.io/{LEASE}", *system),
        ("update", f"leases.coordination.k8s.io/{LEASE}", *system),
    ]
    answers = _checks(operator_rbac, needed)
    assert [c for c, allowed in answers.items() if not allowed] == []


def test_service_account_may_do_nothing_else(operator_rbac: Cluster, namespace: str) -> None:
    ns, system = ("-n", namespace), ("-n", SYSTEM_NAMESPACE)
    denied = [
        ("*", "*", "-A"),
        ("*", "*", *system),
        *[(verb, "secrets", *where) for verb in ("get", "list", "watch") for where in (("-A",), system)],
        *[(verb, "configmaps", *system) for verb in ("get", "list", "create")],
        *[(verb, "pods", *where) for verb in ("get", "list", "create", "delete") for where in (ns, system)],
        ("create", "pods", "--subresource=exec", *system),
        ("create", "serviceaccounts", "--subresource=token", *system),
        *[(verb, "groups.infrakit.io", *ns) for verb in ("create", "update", "delete", "deletecollection")],
        ("update", "groups.infrakit.io", "--subresource=status", *ns),
        ("patch", "groups.infrakit.io", "--subresource=scale", *ns),
        ("update", "groups.infrakit.io", "--subresource=scale", *ns),
        ("create", "customresourcedefinitions.apiextensions.k8s.io"),
        ("update", "customresourcedefinitions.apiextensions.k8s.io/groups.infrakit.io"),
        ("get", "customresourcedefinitions.apiextensions.k8s.io/groups.infrakit.io"),
        ("delete", "customresourcedefinitions.apiextensions.k8s.io/groups.infrakit.io"),
        ("get", "namespaces/default"),
        ("create", "namespaces"),
        *[(verb, "events", *ns) for verb in ("list", "patch", "update", "delete")],
        ("create", "events.events.k8s.io", *ns),
        # Leases: only ours, only in its namespace.
        ("list", "leases.coordination.k8s.io", *system),
        ("delete", f"leases.coordination.k8s.io/{LEASE}", *system),
        ("update", "leases.coordination.k8s.io/kube-controller-manager", "-n", "kube-system"),
        ("get", "leases.coordination.k8s.io/kube-scheduler", "-n", "kube-system"),
        ("create", "leases.coordination.k8s.io", "-n", "kube-node-lease"),
        ("update", "leases.coordination.k8s.io/other", *system),
        ("create", "leases.coordination.k8s.io", *ns),
        ("get", f"leases.coordination.k8s.io/{LEASE}", *ns),
        ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
        ("create", "rolebindings.rbac.authorization.k8s.io", *system),
        ("escalate", "clusterroles.rbac.authorization.k8s.io"),
        ("bind", "clusterroles.rbac.authorization.k8s.io"),
        ("impersonate", "users"),
        ("impersonate", "serviceaccounts", *system),
        ("get", "nodes"),
        ("create", "deployments.apps", *system),
    ]
    answers = _checks(operator_rbac, denied)
    assert [c for c, allowed in answers.items() if allowed] == []


# -- 3. the operator under its own identity ---------------------------------------------


def _token_kubeconfig(cluster: Cluster, *, namespace: str, path: Path) -> Path:
    """A kubeconfig for the service account ``namespace/infrakit-operator``: a bound token."""
    token = cluster.kubectl("create", "token", SERVICE_ACCOUNT, "-n", namespace, "--duration=1h").stdout.strip()
    assert token.count(".") == 2, "not a JWT"
    admin = json.loads(cluster.kubectl("config", "view", "--minify", "--raw", "-o", "json").stdout)
    server = admin["clusters"][0]["cluster"]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "cluster", "cluster": server}],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": "cluster", "user": "operator"}}],
        "current-context": "operator",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    whoami = subprocess.run(
        [cluster.kubectl_path, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"],
        env={**cluster.env, "KUBECONFIG": str(path)}, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    if "doesn't have a resource type" not in whoami.stderr:  # SelfSubjectReview: Kubernetes >= 1.28
        assert whoami.stdout == f"system:serviceaccount:{namespace}:{SERVICE_ACCOUNT}", whoami.stderr
    return path


def _identity(cluster: Cluster, kind: str, namespace: str) -> str:
    """Grant ``kind``'s permissions; return the namespace of the service account to use."""
    if kind == "cluster":
        # The base's account in infrakit-system, its ClusterRole; the Lease in the test's
        # namespace through a RoleBinding to the leader-election ClusterRole there (what
        # --lease-namespace elsewhere needs).
        binding = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "infrakit-operator-leader-election", "namespace": namespace},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "infrakit-operator-leader-election",
            },
            "subjects": [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": SYSTEM_NAMESPACE}],
        }
        apply_docs(cluster, [binding])
        return SYSTEM_NAMESPACE
    # overlays/namespaced, moved into the test's namespace: account, Role, RoleBinding only.
    docs: list[dict[str, Any]] = []
    for doc in find(render("namespaced"), "ServiceAccount") + find(render("namespaced"), "Role"):
        docs.append(doc)
    for doc in find(render("namespaced"), "RoleBinding"):
        for subject in doc["subjects"]:
            subject["namespace"] = namespace
        docs.append(doc)
    for doc in docs:
        doc["metadata"]["namespace"] = namespace
    apply_docs(cluster, docs)
    return namespace


def _config_sha(example: str) -> str:
    return specs.parse_document(yaml.safe_load((EXAMPLES / example).read_text()), namespace="x").config_sha


def _converged(groups: Groups, operator: Operator, *, size: int, sha: str) -> bool:
    tags = [d["Tags"]["infrakit.config_sha"] for d in operator.instances("cattle").values()]
    if tags != [sha] * size:
        return False
    group = groups.get("cattle")
    status = group.get("status") or {}
    return status.get("observedGeneration") == group["metadata"]["generation"] and status.get("readyReplicas") == size


@pytest.mark.skipif(EXTERNAL, reason="runs its own operator process; the external one has its own identity")
@pytest.mark.parametrize("kind", ["cluster", "namespaced"])
def test_operator_under_its_service_account(operator_rbac: Cluster, namespace: str, tmp_path: Path, kind: str) -> None:
    cluster = operator_rbac
    account_namespace = _identity(cluster, kind, namespace)
    kubeconfig = _token_kubeconfig(cluster, namespace=account_namespace, path=tmp_path / "operator.kubeconfig")
    # The base watches every namespace: so does this operator, but never on a cluster of
    # others, where it would act on their Groups.
    everywhere = kind == "cluster" and not cluster.external
    operator = Operator(
        cluster=cluster,
        namespace=namespace,  # --namespace (unless -A) and --lease-namespace
        instance_dir=tmp_path / "instances",
        log=tmp_path / "operator.log",
        # --log 5: kopf's watch-stream lines; --no-scanning as the namespaced overlay runs it
        extra=[
            "--log",
            "5",
            *(["--all-namespaces"] if everywhere else []),
            *(["--no-scanning", "--cluster-id-source=service-account"] if kind == "namespaced" else []),
        ],
        env={"KUBECONFIG": str(kubeconfig)},
    )
    groups = Groups(cluster=cluster, namespace=namespace)
    sha1, sha2 = _config_sha("cattle.yaml"), _config_sha("cattle2.yaml")
    operator.start()  # waits for "acquired the lease"
    try:
        groups.apply(EXAMPLES / "cattle.yaml")
        wait_until(lambda: _converged(groups, operator, size=5, sha=sha1), what="5 instances at the first hash")
        assert "infrakit.io/instances" in groups.get("cattle")["metadata"]["finalizers"]

        groups.apply(EXAMPLES / "cattle2.yaml")
        wait_until(lambda: _converged(groups, operator, size=10, sha=sha2), what="10 instances at the new hash")

        lost = sorted(operator.instances("cattle"))[:2]
        for name in lost:
            (operator.instance_dir / name).unlink()
        wait_until(
            lambda: len(operator.instances("cattle")) == 10 and not set(lost) & set(operator.instances("cattle")),
            timeout=10,
            what="the lost instances replaced",
        )

        groups.kubectl("delete", "group", "cattle", "--timeout=30s")
        assert operator.instances("cattle") == {}
        events = groups.events()
        reasons = {e["reason"] for e in events if (e.get("source") or {}).get("component") == "infrakit-operator"}
        assert {"Provisioned", "RollingUpdate", "Destroyed"} <= reasons
        lease = json.loads(groups.kubectl("get", "lease", LEASE, "-o", "json").stdout)
        assert lease["spec"]["holderIdentity"]
    finally:
        operator.stop()
    log = operator.log.read_text()
    assert not FORBIDDEN.findall(log), f"permission errors in the operator's log:\n{log}"
    assert "acquired the lease" in log
    assert ("cluster-wide" if everywhere else f"in '{namespace}'") in log  # kopf's watch-stream line


@pytest.mark.skipif(EXTERNAL, reason="runs its own operator process")
def test_an_operator_that_may_not_read_its_clusters_identity_says_how_and_exits_2(
    operator_rbac: Cluster, namespace: str, tmp_path: Path
) -> None:
    """The namespaced overlay's account may not read kube-system: without --cluster-id-source it
    stops at once, naming the fixes, rather than run without a provable identity."""
    account_namespace = _identity(operator_rbac, "namespaced", namespace)
    kubeconfig = _token_kubeconfig(operator_rbac, namespace=account_namespace, path=tmp_path / "operator.kubeconfig")
    result = subprocess.run(
        [
            *Operator(
                cluster=operator_rbac, namespace=namespace, instance_dir=tmp_path / "i", log=tmp_path / "log"
            ).command(),
        ],
        env={**operator_rbac.env, "KUBECONFIG": str(kubeconfig)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "kube-system" in result.stderr and "--cluster-id-source=service-account" in result.stderr
