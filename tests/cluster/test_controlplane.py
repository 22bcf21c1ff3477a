"""The local control plane is a real, RBAC-enforcing kube-apiserver, and its CLI works."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

import yaml

from infrakit.controlplane.build import kubernetes_version, source_dir
from tests.clusterfixtures import REPO_ROOT, Cluster, _delete_namespace


def test_server_version(cluster: Cluster) -> None:
    version = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    server = version["serverVersion"]["gitVersion"]
    assert server.startswith("v1.")
    if not cluster.external:
        assert server == kubernetes_version(source_dir())


def test_bound_to_loopback_with_admin_context(cluster: Cluster) -> None:
    if cluster.external:
        return
    config = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    assert config["current-context"] == "infrakit-test"
    assert urlparse(config["clusters"][0]["cluster"]["server"]).hostname == "127.0.0.1"


def test_admin_can_do_everything(cluster: Cluster) -> None:
    assert cluster.kubectl("auth", "can-i", "*", "*").stdout.strip() == "yes"
    assert cluster.kubectl("auth", "whoami", "-o", "jsonpath={.status.userInfo.groups}").stdout.count("system:masters")


def test_default_namespace_exists(cluster: Cluster) -> None:
    cluster.kubectl("get", "namespace", "default")


def test_rbac_is_enforced(cluster: Cluster, namespace: str) -> None:
    denied = cluster.kubectl("get", "configmaps", "-n", namespace, "--as=someone", check=False)
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower()
    can = cluster.kubectl("auth", "can-i", "list", "configmaps", "-n", namespace, "--as=someone", check=False)
    assert can.stdout.strip() == "no"

    cluster.kubectl("create", "role", "cm-reader", "--verb=get,list", "--resource=configmaps", "-n", namespace)
    cluster.kubectl("create", "rolebinding", "someone-reads", "--role=cm-reader", "--user=someone", "-n", namespace)
    # the RBAC authorizer sees new bindings through an informer: allow it a moment
    deadline = time.monotonic() + 10
    while (allowed := cluster.kubectl("get", "configmaps", "-n", namespace, "--as=someone", check=False)).returncode:
        assert time.monotonic() < deadline, allowed.stderr
        time.sleep(0.1)
    # ...but only what the role grants, and only in that namespace.
    for verb, ns in (("delete", namespace), ("list", "default")):
        can = cluster.kubectl("auth", "can-i", verb, "configmaps", "-n", ns, "--as=someone", check=False)
        assert can.stdout.strip() == "no"


def test_objects_round_trip(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("create", "configmap", "c", "--from-literal=k=v", "-n", namespace)
    got = cluster.kubectl("get", "configmap", "c", "-n", namespace, "-o", "jsonpath={.data.k}")
    assert got.stdout == "v"


def _cli(*args: str, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "infrakit.controlplane", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=REPO_ROOT,
    )


def test_cli_up_status_down(controlplane_binary: Path, cluster: Cluster, tmp_path: Path) -> None:
    env = dict(os.environ, INFRAKIT_HOME=str(tmp_path), PYTHONPATH=str(REPO_ROOT))
    state = tmp_path / "controlplane"
    try:
        up = _cli("up", env=env)
        assert up.returncode == 0, up.stderr
        kubeconfig = up.stdout.strip()
        assert Path(kubeconfig) == state / "kubeconfig"
        assert f"export KUBECONFIG={kubeconfig}" in up.stderr
        pid = int((state / "pid").read_text())

        status = _cli("status", env=env)
        assert status.returncode == 0, status.stdout + status.stderr
        assert status.stdout.startswith("running")

        kube_env = dict(cluster.env, KUBECONFIG=kubeconfig)
        ns = subprocess.run(
            [cluster.kubectl_path, "get", "namespace", "default", "-o", "name"],
            env=kube_env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert ns.stdout.strip() == "namespace/default"

        again = _cli("up", env=env)
        assert again.returncode == 0
        assert again.stdout.strip() == kubeconfig
        assert "already running" in again.stderr
    finally:
        down = _cli("down", env=env)
    assert down.returncode == 0, down.stderr
    assert not state.exists()
    assert not Path(f"/proc/{pid}").exists() or _zombie(pid)
    stopped = _cli("status", env=env)
    assert stopped.returncode == 1
    assert stopped.stdout.strip() == "stopped"


def test_cli_build_prints_cached_binary(controlplane_binary: Path) -> None:
    out = _cli("build", env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)), timeout=60)
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()) == controlplane_binary


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z"
    except OSError:
        return True


def test_namespace_cleanup_removes_everything(cluster: Cluster) -> None:
    """The ``namespace`` fixture's teardown leaves no Terminating namespace or orphans behind."""
    name = f"cleanup-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", name)
    cluster.kubectl("create", "configmap", "plain", "-n", name)
    held = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "held", "finalizers": ["example.com/nobody-removes-this"]},
    }
    cluster.kubectl("apply", "-n", name, "-f", "-", input=json.dumps(held))
    _delete_namespace(cluster, name)
    if cluster.external:
        return
    gone = cluster.kubectl("get", "namespace", name, check=False)
    assert gone.returncode != 0
    assert "NotFound" in gone.stderr
    # nothing orphaned in etcd: a namespace of the same name starts empty
    cluster.kubectl("create", "namespace", name)
    try:
        assert cluster.kubectl("get", "configmaps", "-n", name, "-o", "name").stdout == ""
    finally:
        _delete_namespace(cluster, name)


def test_a_stop_is_graceful_while_a_client_watches(controlplane_binary: Path, tmp_path: Path) -> None:
    """SIGTERM ends the control plane though a watch is open (an operator's always is): it drains the
    watch instead of waiting for it until stop() gives up and kills it (20 s each time, and no clean etcd)."""
    from infrakit.controlplane import server

    cp = server.start(state_dir=tmp_path / "cp", binary=controlplane_binary)
    env = dict(os.environ, KUBECONFIG=str(cp.kubeconfig))
    watch = subprocess.Popen(["kubectl", "get", "namespaces", "--watch", "-o", "name"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # fmt: skip
    try:
        assert watch.stdout is not None
        assert watch.stdout.readline().startswith("namespace/")  # the watch is established
        cp.stop()
        assert cp.process is not None
        assert cp.process.returncode != -signal.SIGKILL, "SIGTERM did not end it: stop() killed it"
    finally:
        watch.kill()
        watch.wait()
        cp.stop(remove=True)
