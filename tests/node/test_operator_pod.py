"""The operator as users run it: its image, deployed by ``manifests/`` on a real kubelet."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.clusterfixtures import Cluster
from tests.node.conftest import DEPLOYMENT, OPERATOR_NAMESPACE, REPO_ROOT, Deployed, NodeCluster, rollout

LEASE = "lease/infrakit-operator"
SELECTOR = "app.kubernetes.io/name=infrakit-operator"


def _get(cluster: Cluster, *args: str) -> Any:
    return json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)


def _wait(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.2)
    return result


def _instances(directory: Path, group: str) -> dict[str, dict[str, Any]]:
    found = {}
    for path in directory.rglob("instance-*"):
        try:
            document = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if (document.get("Tags") or {}).get("infrakit.group") == group:
            found[path.name] = document
    return found


def test_the_base_rolls_out_ready_serves_metrics_and_is_restricted(
    node_cluster: NodeCluster, deploy: Callable[[str], Deployed]
) -> None:
    deployed = deploy("manifests")
    cluster = deployed.cluster
    pods = _get(cluster, "pods", "-n", OPERATOR_NAMESPACE, "-l", SELECTOR)["items"]
    assert len(pods) == 1
    ready = {c["type"]: c["status"] for c in pods[0]["status"]["conditions"]}
    assert ready["Ready"] == "True"  # the readiness probe passed: Groups cached, Lease known
    assert pods[0]["spec"]["nodeName"] == node_cluster.node.name
    proxy = f"/api/v1/namespaces/{OPERATOR_NAMESPACE}/services/infrakit-operator-metrics:metrics/proxy/metrics"
    metrics = cluster.kubectl("get", "--raw", proxy).stdout
    assert "infrakit_reconcile_duration_seconds_bucket" in metrics
    # The namespace's label enforces the restricted profile: a pod without its security context is refused.
    refused = cluster.kubectl(
        "run", "unconfined", "-n", OPERATOR_NAMESPACE, "--image=infrakit-operator:dev", "--restart=Never", check=False
    )
    assert refused.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in refused.stderr
    print(f"rollout {deployed.rollout_seconds:.1f}s")


def test_e2e_against_the_deployed_operator(deploy: Callable[[str], Deployed], tmp_path: Path) -> None:
    deployed = deploy("manifests")
    env = {
        **deployed.cluster.env,
        "INFRAKIT_TEST_CLUSTER": "external",
        "INFRAKIT_TEST_OPERATOR": "external",
        "INFRAKIT_TEST_INSTANCE_DIR": str(deployed.instance_dir),
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    }
    command = [
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp", str(tmp_path / "e2e"),
        "tests/e2e",
        # The CLI on the host reads the operator's volume as root; the file plugin counts only its own
        # user's files (65532's, the pod's), by design. The kind job runs the pod as the host's user.
        "--deselect", "tests/e2e/test_operator.py::test_cli_reaches_the_cluster",
    ]  # fmt: skip
    proc = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    summary = proc.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "failed" not in summary, summary


def _signal(node_cluster: NodeCluster, pod: str, sig: signal.Signals) -> None:
    """Signal every process of the pod's operator container (found by its cgroup)."""
    statuses = _get(node_cluster.cluster, "pod", "-n", OPERATOR_NAMESPACE, pod)["status"]["containerStatuses"]
    (container,) = [s["containerID"].split("://", 1)[1] for s in statuses if s["name"] == "operator"]
    top = node_cluster.node.layout.cgroup.lstrip("/")
    cgroups = [
        *Path("/sys/fs/cgroup").glob(f"*/{top}/**/{container}"),
        *Path("/sys/fs/cgroup").glob(f"{top}/**/{container}"),
    ]
    pids = {int(pid) for cgroup in cgroups for pid in (cgroup / "cgroup.procs").read_text().split()}
    assert pids, f"no processes of container {container} in {cgroups}"
    for pid in pids:
        os.kill(pid, sig)


def test_the_leader_frozen_hands_over_and_nothing_is_lost(
    node_cluster: NodeCluster, deploy: Callable[[str], Deployed]
) -> None:
    deployed = deploy("manifests")
    cluster = deployed.cluster
    cluster.kubectl("-n", OPERATOR_NAMESPACE, "scale", DEPLOYMENT, "--replicas=2")
    rollout(cluster)
    namespace = f"t-handover-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", namespace)
    cluster.kubectl("apply", "-n", namespace, "-f", str(REPO_ROOT / "examples" / "cattle.yaml"))
    _wait(lambda: len(_instances(deployed.instance_dir, "cattle")) == 5, 60, "5 instances")
    before = set(_instances(deployed.instance_dir, "cattle"))

    lease = _get(cluster, "-n", OPERATOR_NAMESPACE, LEASE)["spec"]
    leader, duration = lease["holderIdentity"], float(lease["leaseDurationSeconds"])
    pods = {p["metadata"]["name"] for p in _get(cluster, "pods", "-n", OPERATOR_NAMESPACE, "-l", SELECTOR)["items"]}
    assert leader in pods and len(pods) == 2
    (standby,) = pods - {leader}
    killed = time.monotonic()
    # Frozen, it neither renews nor releases the Lease (a crash would come back under the same
    # name and renew it): the standby takes it once it expires.
    _signal(node_cluster, leader, signal.SIGSTOP)

    def holder() -> str | None:
        name = _get(cluster, "-n", OPERATOR_NAMESPACE, LEASE)["spec"].get("holderIdentity")
        return str(name) if name and name != leader else None

    assert _wait(holder, duration + 10, "a new leader") == standby
    handover = time.monotonic() - killed
    _signal(node_cluster, leader, signal.SIGKILL)  # the kubelet restarts it: a standby now
    # The old holder renewed at most `duration` ago; the standby retries every few seconds.
    assert handover <= duration + 5, f"hand-over took {handover:.1f}s (lease {duration:.0f}s)"

    lost = sorted(before)[0]
    next(deployed.instance_dir.rglob(lost)).unlink()

    def healed_set() -> set[str] | None:
        found = set(_instances(deployed.instance_dir, "cattle"))
        return found if len(found) == 5 and lost not in found else None

    healed = _wait(healed_set, 60, "the lost instance healed by the new leader")
    assert before - {lost} <= healed  # nothing else lost, nothing duplicated (5 in all)
    status = _wait(
        lambda: (
            (s := _get(cluster, "-n", namespace, "group", "cattle").get("status", {})).get("readyReplicas") == 5 and s
        ),
        60,
        "the Group's status at 5",
    )
    assert status["replicas"] == 5
    assert set(_instances(deployed.instance_dir, "cattle")) == healed
    # A pod deleted (as tests/e2e kills it) says goodbye: the Lease is released, taken at once.
    current = _get(cluster, "-n", OPERATOR_NAMESPACE, LEASE)["spec"]["holderIdentity"]
    deleted = time.monotonic()
    cluster.kubectl("delete", "pod", "-n", OPERATOR_NAMESPACE, current, "--grace-period=0", "--force")
    leader = current
    _wait(holder, duration + 10, "a leader after the pod's deletion")
    released = time.monotonic() - deleted
    assert released <= duration + 5
    print(f"hand-over after a freeze {handover:.1f}s, after a deletion {released:.1f}s (lease {duration:.0f}s)")
    cluster.kubectl("delete", "namespace", namespace, "--wait=false")
