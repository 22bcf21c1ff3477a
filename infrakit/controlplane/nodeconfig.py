"""The files a node runs from: containerd's and the kubelet's configuration, CNI, kubeconfigs, launcher.

Pure rendering (text in, text out), so that node.py only starts, waits and cleans up.
"""

from __future__ import annotations

import base64
import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# What the kubelet checks the host's kernel settings against (setupKernelTunables in
# pkg/kubelet/cm/container_manager_linux.go). With protectKernelDefaults the kubelet never
# writes them, it fails when they differ: in its own mount namespace these files show these
# values, read-only, while the host's settings stay as they are (tests/node checks).
KUBELET_SYSCTLS = {
    "vm/overcommit_memory": "1",
    "vm/panic_on_oom": "0",
    "kernel/panic": "10",
    "kernel/panic_on_oops": "1",
    "kernel/keys/root_maxkeys": "1000000",
    "kernel/keys/root_maxbytes": "25000000",
}
# Directories containerd, the CNI plugins and the kubelet use whatever they are told: each gets
# a tmpfs of its own in the node's mount namespace, so nothing is written to the host's.
PRIVATE_DIRS = ("/run/netns", "/run/containerd", "/var/lib/cni", "/var/log/containers")
SERVICE_HOST = "10.0.0.1"  # the `kubernetes` Service's ClusterIP (first address of SERVICE_CIDR)
KUBELET_PORT = 10250


@dataclass(frozen=True)
class Layout:
    """Names and addresses of one node, all chosen by the run."""

    name: str
    state_dir: Path
    binary: Path
    host_ip: str  # host end of the veth pair; the relay to the apiserver listens here
    node_ip: str  # node end, in the node's network namespace
    pod_cidr: str  # the CNI bridge's range, inside the node's network namespace
    pod_gateway: str
    api_port: int  # the apiserver's port on 127.0.0.1, and the relay's on host_ip
    cgroup: str  # cgroup parent of every pod, e.g. /infrakit-node-1a2b3c

    def path(self, *parts: str) -> Path:
        return self.state_dir.joinpath(*parts)

    @property
    def socket(self) -> Path:
        return self.path("containerd", "containerd.sock")

    @property
    def relay_server(self) -> str:
        return f"https://{self.host_ip}:{self.api_port}"


def containerd_toml(lay: Layout, parts_cni: Path, pause_image: str) -> str:
    """containerd 1.6 (version 2 config): its own root, state and socket; CRI with our CNI and pause."""
    return f"""version = 2
root = "{lay.path("containerd", "root")}"
state = "{lay.path("containerd", "state")}"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "{lay.socket}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause_image}"
  # No CAP_SYS_RESOURCE on these machines: runc cannot lower oom_score_adj.
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{parts_cni}"
    conf_dir = "{lay.path("cni", "net.d")}"
"""


def cni_conflist(lay: Layout) -> str:
    """A bridge in the node's network namespace; host-local addresses from the run's range."""
    conf = {
        "cniVersion": "1.0.0",
        "name": "infrakit-node",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "ikbr0",
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": lay.pod_cidr, "gateway": lay.pod_gateway}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(lay.path("cni", "ipam")),
                },
            }
        ],
    }
    return json.dumps(conf, indent=2) + "\n"


def kubelet_config(lay: Layout, certs: Path) -> str:
    """KubeletConfiguration for cgroup v1 without CAP_SYS_RESOURCE, authenticated by the cluster CA."""
    config: dict[str, Any] = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": lay.node_ip,
        "port": KUBELET_PORT,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "tlsCertFile": str(lay.path("pki", "kubelet.crt")),
        "tlsPrivateKeyFile": str(lay.path("pki", "kubelet.key")),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(certs / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{lay.socket}",
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": False,
        "cgroupsPerQOS": True,
        "cgroupRoot": lay.cgroup,
        "enforceNodeAllocatable": [],
        "protectKernelDefaults": True,
        "oomScoreAdj": 0,
        "failSwapOn": False,
        "hairpinMode": "none",
        "podLogsDir": str(lay.path("pod-logs")),
        "evictionHard": {"memory.available": "1Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False,
        "registerNode": True,
        "maxPods": 30,
    }
    return yaml.safe_dump(config, sort_keys=False)


def kubeconfig(lay: Layout, certs: Path, *, cert: Path, key: Path, user: str) -> str:
    """A kubeconfig to the apiserver through the relay (its serving certificate names localhost)."""

    def b64(path: Path) -> str:
        return base64.b64encode(path.read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "infrakit-node",
                "cluster": {
                    "server": lay.relay_server,
                    "certificate-authority-data": b64(certs / "ca.crt"),
                    "tls-server-name": "localhost",
                },
            }
        ],
        "users": [{"name": user, "user": {"client-certificate-data": b64(cert), "client-key-data": b64(key)}}],
        "contexts": [{"name": "infrakit-node", "context": {"cluster": "infrakit-node", "user": user}}],
        "current-context": "infrakit-node",
    }
    return yaml.safe_dump(config, sort_keys=False)


def launch_script(lay: Layout, certs: Path, pause_tar: Path) -> str:
    """The node's PID 1, in new PID, mount and network namespaces: when it ends, everything does.

    It waits for node.py to wire the network (the file ``network.ready``), makes ``/proc/sys``
    read-only but for ``/proc/sys/net`` (this namespace's own), shows the kubelet the kernel
    settings it checks (KUBELET_SYSCTLS), gives PRIVATE_DIRS tmpfs mounts, then starts the relay
    (in the host's network namespace, open as file descriptor $HOST_NETNS_FD), containerd, the
    pause image, and the Kubernetes parts.
    When one of them ends, or on SIGTERM, it exits and the kernel kills the rest.
    """
    q = shlex.quote
    b, s = q(str(lay.binary)), lay.state_dir
    sysctls = "\n".join(
        f"mount --bind {q(str(s / 'sysctl' / name.replace('/', '.')))} /proc/sys/{name}\n"
        f"mount -o remount,bind,ro /proc/sys/{name}"
        for name in KUBELET_SYSCTLS
    )
    tmpfs = "\n".join(f"mount -t tmpfs -o mode=0700 infrakit-node {d}" for d in PRIVATE_DIRS)
    kubelet = [
        f"--config={s / 'kubelet.yaml'}",
        f"--kubeconfig={s / 'kubelet.kubeconfig'}",
        f"--root-dir={s / 'kubelet'}",
        f"--cert-dir={s / 'pki'}",
        f"--hostname-override={lay.name}",
        f"--node-ip={lay.node_ip}",
    ]
    kcm = [
        f"--kubeconfig={s / 'admin.kubeconfig'}",
        "--leader-elect=false",
        "--secure-port=0",
        f"--service-account-private-key-file={certs / 'sa.key'}",
        f"--root-ca-file={certs / 'ca.crt'}",
        "--controllers=*",
        "--node-monitor-grace-period=40s",
    ]
    scheduler = [f"--kubeconfig={s / 'admin.kubeconfig'}", "--leader-elect=false", "--secure-port=0"]
    return f"""#!/bin/bash
set -euo pipefail
trap 'exit 0' TERM INT
cd {q(str(s))}
for _ in $(seq 600); do [ -e network.ready ] && break; sleep 0.1; done
[ -e network.ready ] || {{ echo "network not wired in 60s" >&2; exit 1; }}
mount --bind /proc/sys /proc/sys
mount -o remount,bind,ro /proc/sys
mount --bind /proc/sys/net /proc/sys/net
mount -o remount,bind,rw /proc/sys/net
{sysctls}
{tmpfs}
nsenter --net="/proc/self/fd/$HOST_NETNS_FD" -- {b} relay --listen={lay.host_ip}:{lay.api_port} \\
  --to=127.0.0.1:{lay.api_port} >logs/relay.log 2>&1 &
eval "exec $HOST_NETNS_FD<&-"
containerd --config containerd.toml >logs/containerd.log 2>&1 &
for _ in $(seq 300); do ctr --address {q(str(lay.socket))} version >/dev/null 2>&1 && break; sleep 0.1; done
ctr --address {q(str(lay.socket))} -n k8s.io images import {q(str(pause_tar))} >logs/images.log 2>&1
{b} kube-controller-manager {" ".join(q(a) for a in kcm)} >logs/kube-controller-manager.log 2>&1 &
{b} kube-scheduler {" ".join(q(a) for a in scheduler)} >logs/kube-scheduler.log 2>&1 &
{b} kubelet {" ".join(q(a) for a in kubelet)} >logs/kubelet.log 2>&1 &
touch started
wait -n
echo "a node process ended: $(jobs -l)" >&2
exit 1
"""
