"""Start, find and stop a local control plane (kube-apiserver + embedded etcd).

:func:`start` generates certificates into a fresh state directory, runs the
binary on free 127.0.0.1 ports, writes an admin kubeconfig (context
``infrakit-test``), waits for ``/readyz`` and the ``default`` namespace, and
returns a :class:`ControlPlane` handle. :func:`load` re-attaches to one started
detached (``infrakit-controlplane up``) from its ``state.json``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

from infrakit.controlplane.build import ControlPlaneError, build

CONTEXT = "infrakit-test"
STATE_FILE = "state.json"
SERVICE_CIDR = "10.0.0.0/24"
# Admission plugins that need controllers this control plane does not run.
DISABLED_ADMISSION = ("ServiceAccount",)
PORT_ATTEMPTS = 3


@dataclass
class ControlPlane:
    """A running control plane: its kubeconfig, endpoint and process."""

    state_dir: Path
    server: str
    pid: int
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def log(self) -> Path:
        return self.state_dir / "controlplane.log"

    @property
    def certs(self) -> Path:
        return self.state_dir / "certs"

    def alive(self) -> bool:
        """Whether the process still runs (and is ours, not a reused pid)."""
        if self.process is not None:
            return self.process.poll() is None
        return _is_ours(self.pid, self.state_dir)

    def ready(self, *, timeout: float = 2.0) -> bool:
        """Whether ``/readyz`` answers ``ok``."""
        try:
            status, body = _request(self, "GET", "/readyz", timeout=timeout)
        except (OSError, ControlPlaneError):
            return False
        return status == 200 and body.strip() == b"ok"

    def stop(self, *, timeout: float = 20.0, remove: bool = False) -> None:
        """Terminate the process group (SIGTERM, then SIGKILL); optionally remove the state dir."""
        if self.alive():
            _signal_group(self.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while self.alive() and time.monotonic() < deadline:
                time.sleep(0.1)
            if self.alive():
                _signal_group(self.pid, signal.SIGKILL)
                deadline = time.monotonic() + 5
                while self.alive() and time.monotonic() < deadline:
                    time.sleep(0.05)
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=5)
        (self.state_dir / "pid").unlink(missing_ok=True)
        if remove:
            remove_state_dir(self.state_dir)


def start(
    *,
    state_dir: Path,
    binary: Path | None = None,
    detach: bool = False,
    timeout: float = 120.0,
    service_accounts: bool = False,
) -> ControlPlane:
    """Start a fresh control plane whose files all live in ``state_dir``.

    ``state_dir`` must not hold a running control plane; its old data is wiped.
    With ``detach`` the process outlives the caller (used by ``up``); otherwise it
    shuts itself down once the calling process is gone (``--exit-with-parent``).
    With ``service_accounts`` the ServiceAccount admission plugin is on: pods get tokens, for a
    node (node.py) whose controller manager makes the accounts; without one it would refuse pods.
    """
    binary = binary or build()
    state_dir = state_dir.resolve()
    existing = load(state_dir)
    if existing is not None and existing.alive():
        raise ControlPlaneError(f"a control plane already runs from {state_dir} (pid {existing.pid})")
    for attempt in range(1, PORT_ATTEMPTS + 1):
        try:
            return _start_once(
                state_dir=state_dir, binary=binary, detach=detach, timeout=timeout, service_accounts=service_accounts
            )
        except _PortTakenError:
            if attempt == PORT_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


class _PortTakenError(ControlPlaneError):
    """A port picked as free was taken before the server bound it."""


def _start_once(*, state_dir: Path, binary: Path, detach: bool, timeout: float, service_accounts: bool) -> ControlPlane:
    remove_state_dir(state_dir)
    certs = state_dir / "certs"
    state_dir.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run([str(binary), "certs", f"--dir={certs}"], check=True, capture_output=True, timeout=60)
    except subprocess.CalledProcessError as err:
        raise ControlPlaneError(f"{binary} certs failed: {err.stderr.decode(errors='replace')}") from err
    except (OSError, subprocess.TimeoutExpired) as err:
        raise ControlPlaneError(f"cannot run {binary}: {err}") from err
    port, etcd_client, etcd_peer = _free_ports(3)
    server = f"https://127.0.0.1:{port}"
    args = [
        str(binary),
        "serve",
        f"--data-dir={state_dir / 'etcd'}",
        f"--client-url=http://127.0.0.1:{etcd_client}",
        f"--peer-url=http://127.0.0.1:{etcd_peer}",
        *([] if detach else ["--exit-with-parent"]),
        "--",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={port}",
        f"--cert-dir={state_dir / 'apiserver-certs'}",
        f"--tls-cert-file={certs / 'serving.crt'}",
        f"--tls-private-key-file={certs / 'serving.key'}",
        f"--client-ca-file={certs / 'ca.crt'}",
        f"--service-account-key-file={certs / 'sa.pub'}",
        f"--service-account-signing-key-file={certs / 'sa.key'}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--authorization-mode=Node,RBAC",  # Node: what a kubelet may read and write
        *([] if service_accounts else [f"--disable-admission-plugins={','.join(DISABLED_ADMISSION)}"]),
        # The apiserver's identity towards kubelets (logs, exec, port-forward): the admin's.
        f"--kubelet-client-certificate={certs / 'admin.crt'}",
        f"--kubelet-client-key={certs / 'admin.key'}",
        "--kubelet-preferred-address-types=InternalIP",
        "--endpoint-reconciler-type=none",  # 127.0.0.1 cannot be an endpoint
        "--allow-privileged=true",
        "--profiling=false",
        # SIGTERM drains open watches (an operator always has one) within 2 s; without it the
        # apiserver waits for them to end on their own, and stop() kills it after 20 s.
        "--shutdown-watch-termination-grace-period=2s",
    ]
    _write_kubeconfig(state_dir / "kubeconfig", server=server, certs=certs)
    log: IO[bytes]
    with open(state_dir / "controlplane.log", "wb") as log:
        process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=state_dir,
            start_new_session=True,
        )
    cp = ControlPlane(state_dir=state_dir, server=server, pid=process.pid, process=process)
    (state_dir / "pid").write_text(f"{process.pid}\n")
    (state_dir / STATE_FILE).write_text(
        json.dumps({"server": server, "pid": process.pid, "binary": str(binary), "args": args}, indent=2) + "\n"
    )
    try:
        _wait_ready(cp, timeout=timeout)
        _ensure_namespace(cp, "default")
    except BaseException as err:
        cp.stop(timeout=5)
        if isinstance(err, ControlPlaneError) and "address already in use" in _tail(cp.log, 200):
            raise _PortTakenError(str(err)) from err
        raise
    if detach:
        cp.process = None  # the caller may exit; the child lives on in its own session
    return cp


def restart(cp: ControlPlane, *, timeout: float = 120.0) -> ControlPlane:
    """Stop ``cp`` and start it again on the same ports with the same data (etcd kept).

    For fault tests: clients keep their kubeconfig and must reconnect on their own.
    """
    state = json.loads((cp.state_dir / STATE_FILE).read_text())
    cp.stop()
    with open(cp.log, "ab") as log:
        process = subprocess.Popen(
            [str(a) for a in state["args"]],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cp.state_dir,
            start_new_session=True,
        )
    again = ControlPlane(state_dir=cp.state_dir, server=cp.server, pid=process.pid, process=process)
    (cp.state_dir / "pid").write_text(f"{process.pid}\n")
    (cp.state_dir / STATE_FILE).write_text(json.dumps({**state, "pid": process.pid}, indent=2) + "\n")
    _wait_ready(again, timeout=timeout)
    return again


def load(state_dir: Path) -> ControlPlane | None:
    """The control plane recorded in ``state_dir`` (running or not), or None."""
    try:
        state = json.loads((state_dir / STATE_FILE).read_text())
        return ControlPlane(state_dir=state_dir.resolve(), server=str(state["server"]), pid=int(state["pid"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remove_state_dir(state_dir: Path) -> None:
    """Delete a state dir, refusing anything that does not look like one of ours."""
    if not state_dir.exists():
        return
    ours = {STATE_FILE, "pid", "kubeconfig", "certs", "etcd", "controlplane.log", "apiserver-certs"}
    strangers = [p.name for p in state_dir.iterdir() if p.name not in ours]
    if strangers:
        raise ControlPlaneError(f"refusing to delete {state_dir}: it holds {', '.join(sorted(strangers))}")
    shutil.rmtree(state_dir)


def _free_ports(count: int) -> list[int]:
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, sig)


def _is_ours(pid: int, state_dir: Path) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not Path("/proc/self").is_dir():
        return True  # no procfs: trust the pid
    proc = Path(f"/proc/{pid}")
    try:
        cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        if (proc / "stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z":
            return False  # a zombie is as good as gone
    except (OSError, IndexError):
        return False
    return b"serve" in cmdline and any(str(state_dir).encode() in part for part in cmdline)


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _write_kubeconfig(path: Path, *, server: str, certs: Path) -> None:
    config: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": CONTEXT,
                "cluster": {"server": server, "certificate-authority-data": _b64(certs / "ca.crt")},
            }
        ],
        "users": [
            {
                "name": "admin",
                "user": {
                    "client-certificate-data": _b64(certs / "admin.crt"),
                    "client-key-data": _b64(certs / "admin.key"),
                },
            }
        ],
        "contexts": [{"name": CONTEXT, "context": {"cluster": CONTEXT, "user": "admin"}}],
        "current-context": CONTEXT,
        "preferences": {},
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)


def _ssl_context(cp: ControlPlane) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(cp.certs / "ca.crt"))
    ctx.load_cert_chain(str(cp.certs / "admin.crt"), str(cp.certs / "admin.key"))
    return ctx


def _request(cp: ControlPlane, method: str, path: str, *, body: Any = None, timeout: float = 5.0) -> tuple[int, bytes]:
    if not cp.server.startswith("https://127.0.0.1:"):
        raise ControlPlaneError(f"unexpected control-plane URL {cp.server!r}")
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(cp.server + path, data=data, method=method)  # noqa: S310 - https only, checked
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, context=_ssl_context(cp), timeout=timeout) as resp:  # noqa: S310
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as err:
        return int(err.code), bytes(err.read())


def _wait_ready(cp: ControlPlane, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not cp.alive():
            raise ControlPlaneError(f"control plane exited at startup; log {cp.log}:\n{_tail(cp.log)}")
        if cp.ready(timeout=2):
            return
        time.sleep(0.2)
    raise ControlPlaneError(f"control plane not ready after {timeout:.0f}s; log {cp.log}:\n{_tail(cp.log)}")


def _ensure_namespace(cp: ControlPlane, name: str) -> None:
    """Create ``name`` unless the apiserver's own controller already did."""
    status, _ = _request(cp, "GET", f"/api/v1/namespaces/{name}")
    if status == 200:
        return
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    status, text = _request(cp, "POST", "/api/v1/namespaces", body=body)
    if status not in (201, 409):
        raise ControlPlaneError(f"cannot create namespace {name}: HTTP {status} {text[:300]!r}")


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "".join(path.read_text(errors="replace").splitlines(keepends=True)[-lines:])
    except OSError:
        return "(no log)"
