"""A node starts, runs pods as any cluster does, and leaves the host as it found it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from infrakit.controlplane import node as nodemod
from infrakit.controlplane import nodeconfig
from infrakit.controlplane.nodeparts import PAUSE_IMAGE, NodeParts
from tests import hoststate
from tests.clusterfixtures import Cluster
from tests.dockerfixtures import DockerImages
from tests.node.conftest import REPO_ROOT, NodeCluster, start_node_cluster

# What the kubelet would set (and did, before node.py): the host's must stay as they are.
KERNEL = ("vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops", "vm/panic_on_oom")


def _pod(name: str, namespace: str, image: str, command: list[str] | None = None) -> str:
    container: dict[str, object] = {"name": "main", "image": image, "imagePullPolicy": "Never"}
    if command:
        container["command"] = command
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"restartPolicy": "Never", "containers": [container], "terminationGracePeriodSeconds": 1},
    }
    return json.dumps(pod)


def test_a_node_runs_a_pod_and_leaves_the_host_as_it_found_it(
    controlplane_binary: Path, node_parts: NodeParts, tmp_path: Path
) -> None:
    nodemod.remove_stale()  # an earlier, killed run's cgroups: start() removes them, so they are not ours to count
    before, dirs = hoststate.snapshot(), _private_dirs()
    cp, node = start_node_cluster(controlplane_binary, node_parts, tmp_path)
    try:
        cluster = Cluster(kubeconfig=str(cp.kubeconfig), env=dict(os.environ, KUBECONFIG=str(cp.kubeconfig)),
                          kubectl_path="kubectl")  # fmt: skip
        cluster.kubectl("apply", "-f", "-", input=_pod("pause", "default", PAUSE_IMAGE))
        cluster.kubectl("wait", "--for=condition=Ready", "pod/pause", "--timeout=60s")
        # The kubelet has checked its kernel settings (it is Ready and ran a pod): none was written.
        during = hoststate.sysctls()
        assert {k: during[f"/proc/sys/{k}"] for k in KERNEL} == {k: before.sysctls[f"/proc/sys/{k}"] for k in KERNEL}
        # Nor any other (the host end of the node's veth adds its own, net.*.conf.ikh<id>.*).
        assert {k: v for k, v in before.sysctls.items() if during.get(k, v) != v} == {}
    finally:
        node.stop()
        cp.stop(remove=True)
    assert hoststate.changes(before, hoststate.snapshot()) == []
    assert _private_dirs() == dirs  # made (with a mark) where missing, removed when no node runs
    assert hoststate.processes_mentioning(str(tmp_path)) == []


# A harness of its own, in a process the test kills: a control plane and a node, then "up".
HARNESS = """
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[4])
from infrakit.controlplane.nodeparts import NodeParts
from tests.node.conftest import start_node_cluster
start_node_cluster(Path(sys.argv[1]), NodeParts(root=Path(sys.argv[2])), Path(sys.argv[3]))
print("up", flush=True)
time.sleep(600)
"""


def _private_dirs() -> list[str]:
    return [d for d in nodeconfig.PRIVATE_DIRS if Path(d).exists()]


def test_a_harness_killed_mid_run_leaves_nothing_the_next_run_does_not_remove(
    controlplane_binary: Path, node_parts: NodeParts, tmp_path: Path
) -> None:
    """SIGKILL of the harness: the kernel ends the node with it (PID 1 of its namespaces, tied to
    its parent); its cgroups and the directories it made are what remove_stale() takes."""
    nodemod.remove_stale()
    before, dirs = hoststate.snapshot(), _private_dirs()
    args = [str(controlplane_binary), str(node_parts.root), str(tmp_path / "run"), str(REPO_ROOT)]
    harness = subprocess.Popen([sys.executable, "-c", HARNESS, *args], stdout=subprocess.PIPE, text=True)
    try:
        assert harness.stdout is not None
        assert harness.stdout.readline() == "up\n"
    finally:
        harness.kill()
        harness.wait()
    deadline = time.monotonic() + 30
    while left := hoststate.processes_mentioning(str(tmp_path)):
        assert time.monotonic() < deadline, f"still running after the harness was killed: {left}"
        time.sleep(0.1)
    nodemod.remove_stale()
    assert hoststate.changes(before, hoststate.snapshot()) == []
    assert _private_dirs() == dirs


def test_the_cgroups_a_killed_run_left_are_removed_and_a_live_nodes_kept(node_cluster: NodeCluster) -> None:
    """A harness killed before stop() leaves /infrakit-node-<id> (with the kubelet's tree) in every hierarchy."""
    hierarchies = [h for h in Path("/sys/fs/cgroup").iterdir() if h.is_dir() and not h.is_symlink()]
    if (Path("/sys/fs/cgroup") / "cgroup.controllers").exists():
        hierarchies = [Path("/sys/fs/cgroup")]  # cgroup v2
    planted = [h / "infrakit-node-fffff0" for h in hierarchies]
    for path in planted:
        (path / "kubepods" / "besteffort").mkdir(parents=True)
    live = [h / node_cluster.node.layout.cgroup.lstrip("/") for h in hierarchies]
    assert planted and all(p.is_dir() for p in planted + live)
    nodemod.remove_stale()
    assert [str(p) for p in planted if p.exists()] == []
    assert [str(p) for p in live if not p.is_dir()] == []


# In-cluster configuration as any client reads it: the Service's address from the environment,
# the token and the cluster's CA from the mounted account. The apiserver names who it saw.
WHO_AM_I = """
import json, os, ssl, urllib.request as request
sa = "/var/run/secrets/kubernetes.io/serviceaccount/"
ns = open(sa + "namespace").read()
url = "https://%s:%s/api/v1/namespaces/%s/serviceaccounts/default" % (
    os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"], ns)
req = request.Request(url, headers={"Authorization": "Bearer " + open(sa + "token").read()})
try:
    request.urlopen(req, context=ssl.create_default_context(cafile=sa + "ca.crt"))
except request.HTTPError as err:
    print(err.code, json.loads(err.read())["message"])
"""


def test_a_pod_gets_its_token_the_service_address_and_its_logs(
    node_cluster: NodeCluster, load_image: Callable[[str], None], docker_images: DockerImages
) -> None:
    cluster = node_cluster.cluster
    load_image(docker_images.python)
    namespace = f"t-pod-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", namespace)
    cluster.kubectl(
        "apply", "-f", "-", input=_pod("probe", namespace, docker_images.python, ["python", "-c", WHO_AM_I])
    )
    cluster.kubectl("wait", "-n", namespace, "--for=jsonpath={.status.phase}=Succeeded", "pod/probe", "--timeout=50s")
    # The token was accepted (403, not 401) as this pod's account; the logs came from the kubelet.
    logs = cluster.kubectl("logs", "-n", namespace, "probe").stdout
    assert logs.startswith(
        f'403 serviceaccounts "default" is forbidden: User "system:serviceaccount:{namespace}:default"'
    )
    cluster.kubectl("delete", "namespace", namespace, "--wait=false")
