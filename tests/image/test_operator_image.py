"""The operator image: it starts, and run as the base Deployment runs it, it does cattle's lifecycle.

The container gets what the Deployment's pod would: its user, read-only root, no capabilities,
no privilege escalation, the default seccomp profile, the instance volume, a tmpfs /tmp, its
args and env, and (for want of a kubelet here) host networking with the probe and metrics ports
moved to free loopback ports, an admin kubeconfig copy readable by its UID, and ``--namespace``
so that it acts on the test's namespace alone.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import tomllib
from pathlib import Path
from typing import Any

import yaml

from tests.clusterfixtures import Cluster
from tests.conftest import EXAMPLES, REPO_ROOT
from tests.deploy.conftest import one, render
from tests.docker.conftest import fetch, free_port
from tests.e2e.conftest import Groups, Operator, wait_until
from tools.docker import engine as engines

VERSION = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]


def _run(engine: engines.Engine, image: str, *args: str, entrypoint: str | None = None) -> str:
    flags = [f"--entrypoint={entrypoint}"] if entrypoint else []
    return engine.docker("run", "--rm", "--network=none", *flags, image, *args, timeout=60).stdout


def test_the_image_starts_and_says_what_it_is(docker_engine: engines.Engine, operator_image: str) -> None:
    assert _run(docker_engine, operator_image, "--help").startswith("Usage: infrakit-operator [OPTIONS]")
    version = _run(docker_engine, operator_image, "--version", entrypoint="infrakit-local")
    assert version.strip() == f"infrakit-local, version {VERSION}"
    config = json.loads(docker_engine.docker("image", "inspect", "--format", "{{json .Config}}", operator_image).stdout)
    assert config["User"] == "65532:65532" and config["Entrypoint"] == ["infrakit-operator"]
    # The client's asyncio twin was dropped; the client itself and kopf import.
    probe = "import importlib.util, kopf, kubernetes.client; print(importlib.util.find_spec('kubernetes.aio'))"
    assert _run(docker_engine, operator_image, "-c", probe, entrypoint="python").strip() == "None"


def _give(path: Path, uid: int, gid: int, *, mode: int) -> None:
    """Make ``path`` the pod user's (as fsGroup would), or, not being root, open to everyone."""
    if os.geteuid() == 0:
        os.chown(path, uid, gid)
        path.chmod(mode & 0o770 if path.is_dir() else 0o400)
    else:
        path.chmod(mode)


def _docker_run_args(
    pod: dict[str, Any], container: dict[str, Any], *, ports: dict[int, int]
) -> tuple[list[str], list[str]]:
    """`docker run` flags for what the pod spec asks of the container (failing on what it cannot map), and its args."""
    sc, pod_sc = container["securityContext"], pod["securityContext"]
    assert sc["runAsNonRoot"] and pod_sc["runAsNonRoot"]
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}  # Docker's default profile
    assert sc["capabilities"] == {"drop": ["ALL"]}
    flags = [f"--user={sc['runAsUser']}:{sc['runAsGroup']}", f"--group-add={pod_sc['fsGroup']}", "--cap-drop=ALL"]
    if sc["readOnlyRootFilesystem"]:
        flags.append("--read-only")
    if sc["allowPrivilegeEscalation"] is False:
        flags.append("--security-opt=no-new-privileges")
    args = []
    for arg in container["args"]:
        # Every address the pod binds, moved to a free loopback port (host networking here).
        match = re.fullmatch(r"(--[a-z-]+=)(http://)?(0\.0\.0\.0)?:(\d+)(/.*)?", arg)
        if match:
            prefix, scheme, _, port, path = match.groups()
            args.append(f"{prefix}{scheme or ''}127.0.0.1:{ports[int(port)]}{path or ''}")
        else:
            args.append(arg)
    return flags, args


def test_the_image_runs_as_the_deployment_runs_it(
    docker_engine: engines.Engine, operator_image: str, crd_installed: Cluster, namespace: str, tmp_path: Path
) -> None:
    deployment = one(render("base"), "Deployment", "infrakit-operator")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    ports = {p["containerPort"]: free_port() for p in container["ports"]}
    flags, args = _docker_run_args(pod, container, ports=ports)
    uid, gid = container["securityContext"]["runAsUser"], container["securityContext"]["runAsGroup"]

    # The volumes: the claim as a host directory owned by fsGroup, the emptyDir as a tmpfs.
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert set(mounts) == set(volumes) == {"instances", "tmp"}
    assert "persistentVolumeClaim" in volumes["instances"] and "emptyDir" in volumes["tmp"]
    instances = tmp_path / "instances"
    instances.mkdir()
    _give(instances, uid, pod["securityContext"]["fsGroup"], mode=0o777)
    size = volumes["tmp"]["emptyDir"]["sizeLimit"].replace("Mi", "m")
    kubeconfig = tmp_path / "kubeconfig"
    shutil.copy(crd_installed.kubeconfig, kubeconfig)
    _give(kubeconfig, uid, gid, mode=0o444)
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"

    started = time.monotonic()
    cid = docker_engine.docker(
        "run", "--detach", "--network=host",
        f"--volume={instances}:{mounts['instances']}",
        f"--tmpfs={mounts['tmp']}:rw,size={size},mode=1777",
        f"--volume={kubeconfig}:/etc/infrakit/kubeconfig:ro",
        "--env=KUBECONFIG=/etc/infrakit/kubeconfig",
        f"--env=POD_NAMESPACE={namespace}", "--env=POD_NAME=infrakit-operator-0",
        *flags, operator_image, *args, f"--namespace={namespace}",
    ).stdout.strip()  # fmt: skip
    try:
        probe = container["readinessProbe"]["httpGet"]
        ready_port = ports[next(p["containerPort"] for p in container["ports"] if p["name"] == probe["port"])]
        wait_until(lambda: fetch(f"http://127.0.0.1:{ready_port}{probe['path']}"), timeout=60, what="/readyz")
        ready_after = time.monotonic() - started

        groups = Groups(cluster=crd_installed, namespace=namespace)
        volume = Operator(cluster=crd_installed, namespace=namespace, instance_dir=instances, log=tmp_path / "log")
        cattle = yaml.safe_load((EXAMPLES / "cattle.yaml").read_text())
        started = time.monotonic()
        groups.apply(EXAMPLES / "cattle.yaml")
        wait_until(lambda: len(volume.instances("cattle")) == 5, timeout=60, what="5 instances")
        to_five = time.monotonic() - started
        assert cattle["spec"]["allocation"]["size"] == 5
        assert all(p.stat().st_uid == uid for p in instances.iterdir())

        lost = sorted(volume.instances("cattle"))[0]
        (instances / lost).unlink()
        wait_until(
            lambda: len(volume.instances("cattle")) == 5 and lost not in volume.instances("cattle"),
            timeout=60, what="the lost instance replaced",
        )  # fmt: skip
        groups.kubectl("scale", "group", "cattle", "--replicas=2")
        wait_until(lambda: len(volume.instances("cattle")) == 2, timeout=60, what="scaled to 2")
        wait_until(lambda: groups.condition("cattle", "Ready").get("status") == "True", timeout=60, what="Ready")

        metrics_port = ports[next(p["containerPort"] for p in container["ports"] if p["name"] == "metrics")]
        metrics = fetch(f"http://127.0.0.1:{metrics_port}/metrics") or ""
        assert re.search(r'^infrakit_group_instances\{[^}]*group="cattle"[^}]*\} 2\.0$', metrics, re.M), metrics[-2000:]

        groups.kubectl("delete", "group", "cattle", "--timeout=60s")
        wait_until(lambda: not volume.instances("cattle"), timeout=60, what="the instances destroyed")
        assert groups.kubectl("get", "group", "cattle", check=False).returncode != 0
        memory = docker_engine.docker("stats", "--no-stream", "--format", "{{.MemUsage}}", cid).stdout.strip()
        print(f"ready in {ready_after:.1f} s, cattle at 5 instance files in {to_five:.2f} s, memory {memory}")
    finally:
        docker_engine.docker("stop", "--time=30", cid, check=False, timeout=60)
        logs = docker_engine.docker("logs", cid, check=False).stderr
        state = docker_engine.docker("inspect", "--format", "{{.State.ExitCode}}", cid, check=False).stdout.strip()
        docker_engine.docker("rm", "--force", cid, check=False)
    assert "Traceback" not in logs, logs[-3000:]
    assert state == "0", logs[-3000:]  # a clean exit on SIGTERM, as in a pod's termination
