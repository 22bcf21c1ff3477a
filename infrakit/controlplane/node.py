"""A Kubernetes node beside a local control plane: containerd, kubelet, controller manager, scheduler.

:func:`start` runs them all under one launcher that is PID 1 of new PID, mount and network
namespaces (``unshare``; nodeconfig.launch_script): when it ends, every process of the node ends,
every mount it made goes, and its network namespace (the CNI bridge, the pods' veths) goes with
it. What is left on the host is removed by :meth:`Node.stop`: the pods' cgroups (under
``/infrakit-node-<id>``), the state directory, and the directories made for PRIVATE_DIRS (each
holds a MADE_MARK under its tmpfs; they go when no node runs). What a killed harness left, the
next start or stop removes (:func:`remove_stale`).

The network: a veth pair, the host end ``ikh<id>`` with ``10.250.N.1/30``, the node end
``10.250.N.2/30`` (the node's InternalIP, where the apiserver reaches the kubelet and pods); pods
on a bridge inside, in ``10.250.N.128/25``, routed from the host via the node end. ``N`` is one
that no address or route of the host uses. The node reaches the apiserver (on host loopback)
through a relay on the host end, and pods reach the ``kubernetes`` Service (10.0.0.1:443) by a
DNAT rule to that relay in the node's namespace (there is no kube-proxy). Nothing else is a target.

The host's kernel settings are never written: ``/proc/sys`` is read-only in the node's mount
namespace (but its own ``net``), and the kubelet runs with ``protectKernelDefaults``.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from infrakit.controlplane import nodeconfig
from infrakit.controlplane.build import ControlPlaneError, build
from infrakit.controlplane.nodeconfig import Layout
from infrakit.controlplane.nodeparts import PAUSE_IMAGE, NodeParts, build_parts
from infrakit.controlplane.server import ControlPlane, _request

STATE_FILE = "node.json"
TOOLS = ("containerd", "runc", "ctr", "ip", "iptables", "nsenter", "unshare")
CGROUP_ROOT = Path("/sys/fs/cgroup")
PR_SET_PDEATHSIG = 1
MADE_MARK = ".made-by-infrakit-node"  # in a PRIVATE_DIRS directory a node made (hidden under its tmpfs)


@dataclass
class Node:
    """A running node: its layout, the launcher's pid, and what stop() must undo."""

    layout: Layout
    pid: int  # the `unshare` process; its child is the node's PID 1
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.layout.name

    @property
    def state_dir(self) -> Path:
        return self.layout.state_dir

    def log(self, component: str) -> Path:
        return self.layout.path("logs", f"{component}.log")

    def alive(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        return _alive(self.pid) and _cmdline(self.pid)[0].endswith(b"unshare")

    def netns(self) -> Path:
        """The node's network namespace (of its PID 1)."""
        return Path(f"/proc/{_pid1(self.pid)}/ns/net")

    def in_netns(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` in the node's network namespace (only there)."""
        return subprocess.run(
            ["nsenter", f"--net={self.netns()}", "--", *cmd], capture_output=True, text=True, timeout=60, check=check
        )

    def load_image(self, tar: Path) -> None:
        """Import an image (``docker save`` format) into containerd's k8s.io namespace."""
        cmd = ["ctr", "--address", str(self.layout.socket), "-n", "k8s.io", "images", "import", str(tar)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
        if proc.returncode != 0:
            raise ControlPlaneError(f"ctr images import {tar} failed: {proc.stderr.strip()}")

    def stop(self, *, timeout: float = 20.0, remove: bool = True) -> None:
        """End every process of the node, then remove its cgroups, directories and state."""
        if self.alive():
            pid1 = _pid1(self.pid)
            if pid1:
                _kill(pid1, signal.SIGTERM)
            if not _wait(lambda: not self.alive(), timeout):
                _kill(self.pid, signal.SIGKILL)  # --kill-child: PID 1 goes, and the kernel ends the rest
                _wait(lambda: not self.alive(), 10)
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=5)
        _remove_cgroups(self.layout.cgroup)
        with contextlib.suppress(OSError):
            subprocess.run(["ip", "link", "del", _host_link(self.layout)], capture_output=True, timeout=10, check=False)
        remove_stale()
        if remove:
            shutil.rmtree(self.state_dir, ignore_errors=True)


def start(
    cp: ControlPlane,
    *,
    state_dir: Path,
    binary: Path | None = None,
    parts: NodeParts | None = None,
    detach: bool = False,
    timeout: float = 120.0,
) -> Node:
    """Start a node registered with ``cp`` (started with ``service_accounts=True``); wait until Ready."""
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if os.geteuid() != 0 or missing:
        why = "not root" if os.geteuid() != 0 else f"missing {', '.join(missing)} (tools/docker/install.sh)"
        raise ControlPlaneError(f"cannot run a node: {why}")
    binary = binary or build()
    parts = parts or build_parts()
    node_id = secrets.token_hex(3)
    state_dir = state_dir.resolve()
    existing = load(state_dir)
    if existing is not None and existing.alive():
        raise ControlPlaneError(f"a node already runs from {state_dir} (pid {existing.pid})")
    shutil.rmtree(state_dir, ignore_errors=True)
    n = _free_subnet()
    lay = Layout(
        name=f"infrakit-node-{node_id}",
        state_dir=state_dir,
        binary=binary,
        host_ip=f"10.250.{n}.1",
        node_ip=f"10.250.{n}.2",
        pod_cidr=f"10.250.{n}.128/25",
        pod_gateway=f"10.250.{n}.129",
        api_port=int(cp.server.rsplit(":", 1)[1]),
        cgroup=f"/infrakit-node-{node_id}",
    )
    node = Node(layout=lay, pid=0)
    try:
        _write_files(lay, cp, parts)
        remove_stale()
        for d in nodeconfig.PRIVATE_DIRS:
            if not Path(d).exists():
                Path(d).mkdir(parents=True)
                (Path(d) / MADE_MARK).touch()
        _make_cgroups(lay.cgroup)
        node.process = _launch(lay, cp, parts, detach=detach)
        node.pid = node.process.pid
        _save(node)
        _wire_network(node)
        _wait_ready(node, cp, timeout=timeout)
    except BaseException:
        node.stop(timeout=5, remove=False)
        raise
    if detach:
        node.process = None
    return node


def load(state_dir: Path) -> Node | None:
    """The node recorded in ``state_dir`` (running or not), or None."""
    try:
        state: dict[str, Any] = json.loads((state_dir / STATE_FILE).read_text())
        layout = state["layout"]
        lay = Layout(**{**layout, "state_dir": Path(layout["state_dir"]), "binary": Path(layout["binary"])})
        return Node(layout=lay, pid=int(state["pid"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _save(node: Node) -> None:
    layout = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(node.layout).items()}
    state = {"layout": layout, "pid": node.pid}
    (node.state_dir / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")


def _free_subnet() -> int:
    """An N such that no address or route of the host mentions 10.250.N.*."""
    used = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True, check=True).stdout
    used += subprocess.run(
        ["ip", "-o", "route", "show", "table", "all"], capture_output=True, text=True, check=True
    ).stdout
    candidates = [n for n in range(256) if f"10.250.{n}." not in used and "10.250.0.0/16" not in used]
    if not candidates:
        raise ControlPlaneError("no free 10.250.N.0/24 on this host")
    return random.choice(candidates)


def _host_link(lay: Layout) -> str:
    return "ikh" + lay.cgroup.rsplit("-", 1)[1]


def _write_files(lay: Layout, cp: ControlPlane, parts: NodeParts) -> None:
    for sub in ("logs", "pki", "sysctl", "cni/net.d", "cni/ipam", "kubelet", "pod-logs", "containerd", "volumes"):
        lay.path(sub).mkdir(parents=True, exist_ok=True)
    issue = [str(lay.binary), "issue", f"--ca-dir={cp.certs}", f"--dir={lay.path('pki')}"]
    for args in (
        ["--name=kubelet", f"--cn=system:node:{lay.name}", "--org=system:nodes", f"--ip={lay.node_ip}"],
        ["--name=admin", "--cn=infrakit-node-admin", "--org=system:masters"],
    ):
        proc = subprocess.run([*issue, *args], capture_output=True, text=True, timeout=60, check=False)
        if proc.returncode != 0:
            raise ControlPlaneError(f"cannot issue node certificates: {proc.stderr.strip()}")
    pki = lay.path("pki")
    lay.path("kubelet.kubeconfig").write_text(
        nodeconfig.kubeconfig(lay, cp.certs, cert=pki / "kubelet.crt", key=pki / "kubelet.key", user=lay.name)
    )
    lay.path("admin.kubeconfig").write_text(
        nodeconfig.kubeconfig(lay, cp.certs, cert=pki / "admin.crt", key=pki / "admin.key", user="admin")
    )
    for name, value in nodeconfig.KUBELET_SYSCTLS.items():
        lay.path("sysctl", name.replace("/", ".")).write_text(value + "\n")
    lay.path("containerd.toml").write_text(nodeconfig.containerd_toml(lay, parts.cni, PAUSE_IMAGE))
    lay.path("cni", "net.d", "10-infrakit.conflist").write_text(nodeconfig.cni_conflist(lay))
    lay.path("kubelet.yaml").write_text(nodeconfig.kubelet_config(lay, cp.certs))
    lay.path("launch.sh").write_text(nodeconfig.launch_script(lay, cp.certs, parts.pause_image))
    for path in lay.state_dir.rglob("*"):
        if path.is_file() and path.suffix in (".key", ".kubeconfig"):
            path.chmod(0o600)


def _hierarchies() -> list[Path]:
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        return [CGROUP_ROOT]  # cgroup v2: one hierarchy
    return sorted(p for p in CGROUP_ROOT.iterdir() if p.is_dir() and not p.is_symlink())


def _make_cgroups(cgroup: str) -> None:
    for hierarchy in _hierarchies():
        path = hierarchy / cgroup.lstrip("/")
        path.mkdir(exist_ok=True)
        for name in ("cpuset.cpus", "cpuset.mems"):  # a cpuset cgroup starts empty: copy its parent's
            if (hierarchy / name).exists() and not (path / name).read_text().strip():
                (path / name).write_text((hierarchy / name).read_text())


def _remove_cgroups(cgroup: str, timeout: float = 15.0) -> None:
    """rmdir the node's cgroups bottom-up, waiting while killed processes still leave them."""
    deadline = time.monotonic() + timeout
    for hierarchy in _hierarchies():
        top = hierarchy / cgroup.lstrip("/")
        if not top.is_dir():
            continue
        dirs = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True)
        for path in [*dirs, top]:
            while True:
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise ControlPlaneError(f"cgroup {path} still busy after {timeout:.0f}s") from None
                    for pid in (path / "cgroup.procs").read_text().split():
                        _kill(int(pid), signal.SIGKILL)
                    time.sleep(0.1)


def _live_cgroups() -> set[str]:
    """The cgroups of the nodes whose launcher runs (``unshare ... bash <state>/launch.sh``)."""
    live = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        cmdline = _cmdline(int(proc.name))
        if cmdline[0].endswith(b"unshare") and len(cmdline) > 1 and cmdline[-2].endswith(b"/launch.sh"):
            found = load(Path(os.fsdecode(cmdline[-2])).parent)
            if found is not None:
                live.add(found.layout.cgroup)
    return live


def remove_stale() -> None:
    """Remove what nodes left that no launcher runs for any more (a harness killed before stop()):
    their cgroups; and, once no node runs at all, the PRIVATE_DIRS directories a node made (an
    empty one holding only MADE_MARK; a directory the host had is never touched).

    :func:`start` and :meth:`Node.stop` call it; a harness that snapshots the host calls it first,
    so that the host it compares with is the one without an earlier run's leftovers.
    """
    live = _live_cgroups()
    if not live:
        for d in nodeconfig.PRIVATE_DIRS:
            with contextlib.suppress(OSError):
                if os.listdir(d) == [MADE_MARK]:
                    (Path(d) / MADE_MARK).unlink()
                    Path(d).rmdir()
    hierarchies = _hierarchies()
    if not hierarchies:
        return
    for path in hierarchies[0].glob("infrakit-node-*"):
        if path.is_dir() and f"/{path.name}" not in live:
            with contextlib.suppress(ControlPlaneError, OSError):
                _remove_cgroups(f"/{path.name}", timeout=2)


def _launch(lay: Layout, cp: ControlPlane, parts: NodeParts, *, detach: bool) -> subprocess.Popen[bytes]:
    host_netns = os.open("/proc/self/ns/net", os.O_RDONLY)
    try:
        cmd = [
            "unshare",
            "--net",
            "--mount",
            "--propagation=private",
            "--pid",
            "--fork",
            "--kill-child",
            "--mount-proc",
            "--",
            "bash",
            str(lay.path("launch.sh")),
        ]
        with open(lay.path("logs", "launch.log"), "wb") as log:
            return subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=lay.state_dir,
                env={**os.environ, "HOST_NETNS_FD": str(host_netns)},
                pass_fds=(host_netns,),
                start_new_session=True,
                preexec_fn=None if detach else _die_with_parent,  # noqa: PLW1509 - one prctl, no locks
            )
    finally:
        os.close(host_netns)


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _wire_network(node: Node) -> None:
    lay = node.layout
    if not _wait(lambda: _pid1(node.pid) != 0, 10):
        raise ControlPlaneError(f"the node's launcher did not start; log {node.log('launch')}")
    pid1 = _pid1(node.pid)
    host, peer = _host_link(lay), "ikn" + lay.cgroup.rsplit("-", 1)[1]
    for cmd in (
        ["ip", "link", "add", host, "type", "veth", "peer", "name", peer],
        ["ip", "link", "set", peer, "netns", str(pid1)],
        ["ip", "addr", "add", f"{lay.host_ip}/30", "dev", host],
        ["ip", "link", "set", host, "up"],
        ["ip", "route", "add", lay.pod_cidr, "via", lay.node_ip, "dev", host],
    ):
        _run(cmd)
    ns = ["nsenter", f"--net=/proc/{pid1}/ns/net", "--"]
    for cmd in (
        ["ip", "link", "set", "lo", "up"],
        ["ip", "link", "set", peer, "name", "eth0"],
        ["ip", "addr", "add", f"{lay.node_ip}/30", "dev", "eth0"],
        ["ip", "link", "set", "eth0", "up"],
        ["ip", "route", "add", "default", "via", lay.host_ip],
        ["sysctl", "-qw", "net.ipv4.ip_forward=1"],  # this namespace's own setting
        ["iptables", "-t", "nat", "-A", "PREROUTING", "-d", nodeconfig.SERVICE_HOST, "-p", "tcp", "--dport", "443",
         "-j", "DNAT", "--to-destination", f"{lay.host_ip}:{lay.api_port}"],
        ["iptables", "-t", "nat", "-A", "OUTPUT", "-d", nodeconfig.SERVICE_HOST, "-p", "tcp", "--dport", "443",
         "-j", "DNAT", "--to-destination", f"{lay.host_ip}:{lay.api_port}"],
    ):  # fmt: skip
        _run([*ns, *cmd])
    lay.path("network.ready").touch()


def _wait_ready(node: Node, cp: ControlPlane, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not node.alive():
            raise ControlPlaneError(f"the node ended at startup; logs in {node.layout.path('logs')}:\n{_tails(node)}")
        status, body = _request(cp, "GET", f"/api/v1/nodes/{node.name}")
        if status == 200:
            conditions = json.loads(body).get("status", {}).get("conditions", [])
            if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
                return
        time.sleep(0.5)
    raise ControlPlaneError(f"node {node.name} not Ready after {timeout:.0f}s; logs:\n{_tails(node)}")


def _tails(node: Node, lines: int = 15) -> str:
    out = []
    for log in sorted(node.layout.path("logs").glob("*.log")):
        text = log.read_text(errors="replace").splitlines()[-lines:]
        out.append(f"--- {log.name}\n" + "\n".join(text))
    return "\n".join(out)


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    if proc.returncode != 0:
        raise ControlPlaneError(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")


def _pid1(unshare_pid: int) -> int:
    """The host pid of the node's PID 1 (the child of ``unshare``), or 0."""
    try:
        children = Path(f"/proc/{unshare_pid}/task/{unshare_pid}/children").read_text().split()
    except OSError:
        return 0
    return int(children[0]) if children else 0


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _cmdline(pid: int) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") or [b""]
    except OSError:
        return [b""]


def _kill(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _wait(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return bool(predicate())
