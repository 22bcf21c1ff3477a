"""Ownership under the operator: only its cluster's instances, from every plugin it may have
used, and a plugin that goes away shows in status (issue 19, classes B, C and I).

In: operators on the Go-built control plane (and, for two clusters, a second one started
here) sharing one instance directory; plugin daemons as processes.  Out: the instance
files by cluster (``infrakit.cluster``, the UID of each cluster's kube-system namespace),
and the Groups' status.  Negatives are proved by waiting for the operator's own passes
(its debug log says when a collection pass ran), never by sleeping.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from infrakit.controlplane import server
from tests.clusterfixtures import CRD_DIR, Cluster
from tests.conftest import EXAMPLES
from tests.e2e.conftest import EXTERNAL, Groups, Operator, wait_until

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(EXTERNAL, reason="runs its own operators, control planes and daemons"),
]


def cluster_uid(cluster: Cluster) -> str:
    return cluster.kubectl("get", "namespace", "kube-system", "-o", "jsonpath={.metadata.uid}").stdout.strip()


def files_by_cluster(directory: Path, group: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in directory.glob("instance-*"):
        try:
            tags = json.loads(path.read_text()).get("Tags") or {}
        except (OSError, ValueError):
            continue
        if tags.get("infrakit.group") == group:
            found.setdefault(str(tags.get("infrakit.cluster")), set()).add(path.name)
    return found


def passes(operator: Operator) -> int:
    return operator.log.read_text().count("collection pass:")


def cattle(tmp_path: Path, size: int, *, plugin: str = "instance-file") -> Path:
    document = yaml.safe_load((EXAMPLES / "cattle.yaml").read_text())
    document["spec"]["allocation"] = {"size": size}
    document["spec"]["instance"]["plugin"] = plugin
    path = tmp_path / f"cattle-{size}-{plugin}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture
def second_cluster(controlplane_binary: Path, crd_installed: Cluster, namespace: str) -> Iterator[Cluster]:
    """Another control plane (another cluster, its own kube-system UID), with the CRD and ``namespace``."""
    state = Path(tempfile.mkdtemp(prefix="ik-cp2-"))
    plane = server.start(state_dir=state, binary=controlplane_binary)
    try:
        env = {**crd_installed.env, "KUBECONFIG": str(plane.kubeconfig), "KUBECACHEDIR": str(state / "cache")}
        other = Cluster(kubeconfig=str(plane.kubeconfig), env=env, kubectl_path=crd_installed.kubectl_path)
        other.kubectl("apply", "-f", str(CRD_DIR))
        other.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(CRD_DIR))
        other.kubectl("create", "namespace", namespace)
        yield other
    finally:
        plane.stop()
        shutil.rmtree(state, ignore_errors=True)


def test_two_clusters_whose_operators_share_a_directory_never_touch_each_others_instances(
    operator_factory: Any, groups: Groups, namespace: str, second_cluster: Cluster, tmp_path: Path
) -> None:
    """Was: cluster 2's operator got 404 for cluster 1's Group and destroyed its instances (5 -> 0 in 12 s)."""
    first: Operator = operator_factory("--resync", "2")
    groups.apply(cattle(tmp_path, 3))
    uid1, uid2 = cluster_uid(groups.cluster), cluster_uid(second_cluster)
    assert uid1 and uid2 and uid1 != uid2
    wait_until(lambda: len(files_by_cluster(first.instance_dir, "cattle").get(uid1, ())) == 3, what="3 in cluster 1")
    mine = files_by_cluster(first.instance_dir, "cattle")[uid1]

    second = Operator(
        cluster=second_cluster,
        namespace=namespace,
        instance_dir=first.instance_dir,  # the same volume
        log=tmp_path / "operator-cluster-2.log",
        extra=["--resync", "2", "--log", "5"],
    ).start()
    try:
        wait_until(lambda: passes(second) >= 2, what="two collection passes of cluster 2's operator")
        assert files_by_cluster(first.instance_dir, "cattle")[uid1] == mine
        # The same namespace and name in cluster 2: a group of its own, beside cluster 1's.
        second_cluster.kubectl("apply", "-n", namespace, "-f", str(cattle(tmp_path, 2)))
        wait_until(lambda: len(files_by_cluster(first.instance_dir, "cattle").get(uid2, ())) == 2, what="2 of its own")
        seen = passes(second)
        wait_until(lambda: passes(second) >= seen + 2, what="two more passes")
        assert files_by_cluster(first.instance_dir, "cattle")[uid1] == mine
        assert groups.condition("cattle", "Ready").get("status") == "True"
        second_cluster.kubectl("delete", "group", "cattle", "-n", namespace, "--wait=true", "--timeout=60s")
        wait_until(lambda: uid2 not in files_by_cluster(first.instance_dir, "cattle"), what="cluster 2's gone")
        assert files_by_cluster(first.instance_dir, "cattle") == {uid1: mine}
    finally:
        second.stop()


def test_a_group_deleted_while_no_operator_ran_is_collected_on_restart(
    operator_factory: Any, groups: Groups, namespace: str, tmp_path: Path
) -> None:
    """Was: a restarted operator with no live Group on instance-file never listed that plugin."""
    operator: Operator = operator_factory("--lease-duration", "3")  # the restart waits for it to lapse
    groups.apply(cattle(tmp_path, 3))
    wait_until(lambda: len(operator.instances("cattle")) == 3, what="3 instances")
    operator.kill()
    groups.kubectl("delete", "group", "cattle", "--wait=false")
    groups.kubectl("patch", "group", "cattle", "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
    wait_until(lambda: groups.kubectl("get", "group", "cattle", check=False).returncode != 0, what="the Group gone")
    assert len(operator.instances("cattle")) == 3  # nothing ran: they are still there
    restarted = Operator(
        cluster=operator.cluster,
        namespace=namespace,
        instance_dir=operator.instance_dir,
        log=tmp_path / "restarted.log",
        extra=["--resync", "300"],  # collected at start, not at some resync
    ).start()
    try:
        wait_until(lambda: operator.instances("cattle") == {}, what="the dangling instances collected")
    finally:
        restarted.stop()


@pytest.fixture
def plugins_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ik-", dir="/tmp"))  # unix socket paths are short
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_a_dead_plugin_daemon_is_plugin_unavailable_then_recovers(
    operator_factory: Any, groups: Groups, plugins_dir: Path, tmp_path: Path
) -> None:
    """Was: the instance daemon SIGKILLed: status stayed Ready=True, Converged (16 s in the operator)."""
    directory = tmp_path / "sidecar"

    def daemon() -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [sys.executable, "-m", "infrakit.daemons", "instance-file", "--name", "instance-sidecar",
             "--dir", str(directory)],
            env={**os.environ, "INFRAKIT_PLUGINS_DIR": str(plugins_dir)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_until((plugins_dir / "instance-sidecar").is_socket, timeout=60, what="the daemon's socket")
        return process

    sidecar = daemon()
    try:
        operator_factory("--plugins-dir", str(plugins_dir))
        groups.apply(cattle(tmp_path, 2, plugin="instance-sidecar"))
        wait_until(lambda: groups.condition("cattle", "Ready").get("reason") == "Converged", what="converged")
        sidecar.send_signal(signal.SIGKILL)
        sidecar.wait(10)
        next(directory.glob("instance-*")).unlink()
        wait_until(
            lambda: groups.condition("cattle", "Ready").get("reason") == "PluginUnavailable",
            timeout=15,
            what="PluginUnavailable",
        )
        assert "instance-sidecar" in groups.condition("cattle", "Ready")["message"]
        sidecar = daemon()
        wait_until(
            lambda: groups.condition("cattle", "Ready").get("reason") == "Converged", timeout=15, what="recovered"
        )
        assert len(list(directory.glob("instance-*"))) == 2
    finally:
        sidecar.kill()
        sidecar.wait(10)
