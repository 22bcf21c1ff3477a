"""A Docker engine for the tests and ``make image``: one that answers already, or our own dockerd.

:func:`acquire` returns a :class:`Lease` on an :class:`Engine`. In order, it uses:

1. ``$DOCKER_HOST`` when set (and fails, naming it, when it does not answer);
2. the default socket ``/var/run/docker.sock`` when a daemon answers there (a user's engine);
3. **our own dockerd** (:class:`Daemon`), started on first use under a state directory,
   ``$INFRAKIT_DOCKER_STATE`` or ``~/.cache/infrakit/docker``: its data-root (images are kept
   across runs), exec-root (its own managed containerd), pid file, log and socket all live there.

Our dockerd leaves the host as it found it:

- no bridge, no iptables rules, no IP forwarding or masquerading (``--bridge=none
  --iptables=false --ip-forward=false --ip-masq=false``): containers get ``--network host`` (bind
  127.0.0.1 and distinct ports) or ``none``; never ``docker network create``, whose bridge would
  put private-range addresses on the host;
- it runs in a mount namespace of its own (``unshare --mount``) whose ``/proc/sys`` is read-only,
  so neither it nor its containerd can change a kernel setting, and every mount it makes (overlay
  layers, container /dev/shm) dies with it;
- containers' cgroups live under ``/infrakit-docker-<hash>``, removed when it stops.

Several processes (test sessions in several worktrees, ``make image``) share one daemon: each
holds a lease (a file under ``users/`` that it keeps ``flock``-ed, so a crashed holder counts as
gone). The last one to release removes every container and stops the daemon; ``up`` holds a
lease named ``manual`` until ``down``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

__all__ = ["DEFAULT_HOST", "Daemon", "DockerError", "Engine", "Lease", "acquire", "client", "default_state_dir"]

DEFAULT_HOST = "unix:///var/run/docker.sock"
STATE_ENV = "INFRAKIT_DOCKER_STATE"
CLIENT_ENV = "INFRAKIT_DOCKER_CLI"
MANUAL = "manual"  # the lease of `python -m tools.docker up`, held until `down`
SOCKET_PATH_MAX = 100  # sun_path is 108 bytes; containerd's socket sits deeper than ours
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
# The directories containerd 1.6 puts its shims' sockets in, whatever its state dir (a
# constant in containerd): left empty by our runs, removed when empty.
SHIM_SOCKET_DIRS = (Path("/run/containerd/s"), Path("/run/containerd"))
ENGINE_PROCESSES = ("dockerd", "containerd", "runc", "docker-")  # /proc/PID/comm prefixes


class DockerError(Exception):
    """No engine can be had, or a docker command failed; the message says which and why."""


def default_state_dir() -> Path:
    """``$INFRAKIT_DOCKER_STATE``, else ``$XDG_CACHE_HOME/infrakit/docker`` (``~/.cache/...``)."""
    if os.environ.get(STATE_ENV):
        return Path(os.environ[STATE_ENV]).expanduser().resolve()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return (cache / "infrakit" / "docker").resolve()


def client() -> str:
    """The docker CLI: ``$INFRAKIT_DOCKER_CLI``, else Debian's ``/usr/bin/docker``, else ``docker`` on PATH.

    Debian's client is the daemon's own version (20.10, API 1.41). A newer one (28.x, API 1.50)
    works as well: it negotiates the API version down to the daemon's (tests/docker checks both).
    """
    chosen = os.environ.get(CLIENT_ENV)
    if chosen:
        if shutil.which(chosen) is None:
            raise DockerError(f"{CLIENT_ENV}={chosen} is not an executable: point it at a docker client")
        return chosen
    debian = Path("/usr/bin/docker")
    if debian.is_file() and os.access(debian, os.X_OK):
        return str(debian)
    found = shutil.which("docker")
    if found is None:
        raise DockerError("no docker client found: run tools/docker/install.sh (Debian) or install Docker")
    return found


def ping(host: str, *, timeout: float = 3.0) -> bool:
    """Whether a Docker daemon answers ``GET /_ping`` at ``host`` (``unix://`` directly, others via the CLI)."""
    if host.startswith("unix://"):
        path = host.removeprefix("unix://")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout)
                sock.connect(path)
                sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
                reply = b""
                while chunk := sock.recv(4096):
                    reply += chunk
                    if len(reply) > 65536:
                        break
        except OSError:
            return False
        head, _, body = reply.partition(b"\r\n\r\n")
        return head.startswith((b"HTTP/1.0 200", b"HTTP/1.1 200")) and body.strip() == b"OK"
    try:
        proc = subprocess.run(
            [client(), "--host", host, "version", "--format", "{{.Server.APIVersion}}"],
            capture_output=True,
            timeout=timeout + 10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired, DockerError):
        return False
    return proc.returncode == 0


@dataclass(frozen=True)
class Engine:
    """A reachable Docker engine: its ``DOCKER_HOST``, the client to drive it, and whether it is ours."""

    host: str
    cli: str
    state_dir: Path | None = None  # set when the engine is our own dockerd

    @property
    def own(self) -> bool:
        return self.state_dir is not None

    @property
    def env(self) -> dict[str, str]:
        """The environment for a docker client (or SDK) aimed at this engine."""
        env = {k: v for k, v in os.environ.items() if k != "DOCKER_CONTEXT"}
        env["DOCKER_HOST"] = self.host
        return env

    def docker(
        self,
        *args: str,
        stdin: IO[Any] | None = None,
        input: str | None = None,
        timeout: float = 120.0,
        check: bool = True,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run the docker client against this engine, output captured as text."""
        cmd = [self.cli, *args]
        try:
            proc = subprocess.run(
                cmd,
                stdin=stdin,
                input=input,
                env={**self.env, **(env or {})},
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as err:
            raise DockerError(f"`docker {' '.join(args[:3])}` did not finish within {timeout:.0f}s") from err
        if check and proc.returncode != 0:
            what = " ".join(args[:3])
            raise DockerError(f"`docker {what}` failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
        return proc

    def image_exists(self, ref: str) -> bool:
        return self.docker("image", "inspect", "--format", "{{.Id}}", ref, check=False).returncode == 0

    def label(self, ref: str, key: str) -> str | None:
        """A label of a local image, or None when the image or the label is missing."""
        proc = self.docker("image", "inspect", "--format", f'{{{{index .Config.Labels "{key}"}}}}', ref, check=False)
        value = proc.stdout.strip()
        return value if proc.returncode == 0 and value not in ("", "<no value>") else None


@dataclass
class Daemon:
    """Our dockerd, all of whose files live under ``state_dir``."""

    state_dir: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def data_root(self) -> Path:
        return self.state_dir / "data"

    @property
    def exec_root(self) -> Path:
        return self.state_dir / "run"

    @property
    def socket(self) -> Path:
        return self.state_dir / "docker.sock"

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    @property
    def pidfile(self) -> Path:
        return self.state_dir / "dockerd.pid"

    @property
    def log(self) -> Path:
        return self.state_dir / "dockerd.log"

    @property
    def users(self) -> Path:
        return self.state_dir / "users"

    @property
    def cgroup_parent(self) -> str:
        """Unique per state dir, so that two of our daemons never share a cgroup."""
        return "infrakit-docker-" + hashlib.sha256(str(self.state_dir).encode()).hexdigest()[:10]

    def engine(self) -> Engine:
        return Engine(host=self.host, cli=client(), state_dir=self.state_dir)

    def args(self) -> list[str]:
        return [
            "dockerd",
            f"--config-file={self.state_dir / 'daemon.json'}",  # never /etc/docker/daemon.json
            f"--data-root={self.data_root}",
            f"--exec-root={self.exec_root}",
            f"--pidfile={self.pidfile}",
            f"--host={self.host}",
            "--bridge=none",
            "--iptables=false",
            "--ip6tables=false",
            "--ip-forward=false",
            "--ip-masq=false",
            "--userland-proxy=false",
            f"--cgroup-parent=/{self.cgroup_parent}",
            "--exec-opt=native.cgroupdriver=cgroupfs",
            # The default (-500) needs CAP_SYS_RESOURCE, which these machines do not grant.
            "--oom-score-adjust=0",
            "--shutdown-timeout=5",
        ]

    def pid(self) -> int | None:
        """The pid of our running dockerd (checked against its command line), else None."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _cmdline_mentions(pid, str(self.data_root)) and not _zombie(pid) else None

    def answering(self) -> bool:
        return self.socket.exists() and ping(self.host)

    def start(self, *, timeout: float = START_TIMEOUT) -> None:
        """Start dockerd (which starts its own containerd) and wait until it answers."""
        if os.geteuid() != 0:
            raise DockerError("starting our own dockerd needs root; or set DOCKER_HOST to an engine you can use")
        for tool in ("dockerd", "containerd", "runc", "unshare"):
            if shutil.which(tool) is None:
                raise DockerError(f"{tool} not found: run tools/docker/install.sh (Debian's docker.io)")
        containerd_socket = self.exec_root / "containerd" / "containerd.sock"
        if len(str(containerd_socket)) > SOCKET_PATH_MAX:
            raise DockerError(f"state directory {self.state_dir} is too long for unix socket paths: use a shorter one")
        for directory in (self.state_dir, self.data_root, self.exec_root, self.users):
            directory.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "daemon.json").write_text("{}\n")
        self.socket.unlink(missing_ok=True)
        # A private mount namespace with a read-only /proc/sys: mounts die with the daemon and no
        # kernel setting can change. `exec` keeps one pid from unshare to dockerd.
        command = [
            "unshare", "--mount", "--propagation", "private", "--",
            "sh", "-c", 'mount --bind -o ro /proc/sys /proc/sys && exec "$@"', "infrakit-dockerd",
            *self.args(),
        ]  # fmt: skip
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while not self.answering():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                why = "exited" if self.process.poll() is not None else f"did not answer within {timeout:.0f}s"
                raise DockerError(f"dockerd {why}; its log ({self.log}) ends with:\n{_tail(self.log)}")
            time.sleep(0.1)

    def stop(self, *, timeout: float = STOP_TIMEOUT, remove_containers: bool = True) -> None:
        """Remove every container (unless told not to), stop dockerd and containerd, clean up after them."""
        pid = self.pid() or (self.process.pid if self.process is not None and self.process.poll() is None else None)
        if pid is not None and remove_containers and self.answering():
            with contextlib.suppress(DockerError, OSError):
                engine = self.engine()
                ids = engine.docker("ps", "--all", "--quiet", timeout=30).stdout.split()
                if ids:
                    engine.docker("rm", "--force", "--volumes", *ids, timeout=60)
                # Untagged images a week old: replaced builds. Younger ones are kept, as the last
                # build's stages (untagged, yet its cache) are among them.
                engine.docker("image", "prune", "--force", "--filter=until=168h", timeout=120)
        if pid is not None:
            _signal(pid, signal.SIGTERM)
            if not _wait_gone(pid, timeout):
                _signal(pid, signal.SIGKILL)
                _wait_gone(pid, 5)
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=5)
        # containerd and its shims exit with dockerd; whatever a killed daemon left is killed here.
        for straggler in _pids_mentioning(str(self.exec_root)):
            _signal(straggler, signal.SIGKILL)
            _wait_gone(straggler, 5)
        self._remove_cgroups()
        for directory in SHIM_SOCKET_DIRS:
            with contextlib.suppress(OSError):
                directory.rmdir()  # only when empty: another containerd's files are never touched
        self.socket.unlink(missing_ok=True)
        self.pidfile.unlink(missing_ok=True)

    def _remove_cgroups(self) -> None:
        root = Path("/sys/fs/cgroup")
        if not root.is_dir():
            return
        for hierarchy in [root, *root.iterdir()]:
            top = hierarchy / self.cgroup_parent
            if not top.is_dir():
                continue
            for directory, _, _ in sorted(os.walk(top), key=lambda entry: -len(entry[0])):
                with contextlib.suppress(OSError):
                    os.rmdir(directory)  # empty once its processes are gone

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Serialize start, stop and lease changes between processes."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.state_dir / "lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def holders(self) -> list[str]:
        """The leases held now; files of processes that are gone are removed."""
        if not self.users.is_dir():
            return []
        held = []
        for path in sorted(self.users.iterdir()):
            if path.name == MANUAL:
                held.append(path.name)
                continue
            try:
                with open(path, "rb") as handle:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # granted only if its holder is gone
            except BlockingIOError:
                held.append(path.name)
                continue
            except OSError:
                continue
            path.unlink(missing_ok=True)
        return held

    def ensure_running(self) -> None:
        """Start the daemon unless ours answers already (call with :meth:`locked` held)."""
        if self.answering():
            return
        if self.pid() is not None:
            self.stop(remove_containers=False)  # hung: nobody can use it anyway
        self.start()


@dataclass
class Lease:
    """One user's hold on an engine; :meth:`release` stops our daemon when the last one lets go."""

    engine: Engine
    daemon: Daemon | None = None
    _handle: IO[bytes] | None = field(default=None, repr=False)
    _path: Path | None = None

    def release(self) -> None:
        if self.daemon is None or self._handle is None:
            return
        with self.daemon.locked():
            if self._path is not None:
                self._path.unlink(missing_ok=True)
            self._handle.close()
            self._handle = None
            if not self.daemon.holders():
                self.daemon.stop()

    def __enter__(self) -> Engine:
        return self.engine

    def __exit__(self, *exc: object) -> None:
        self.release()


def acquire(*, state_dir: Path | None = None, external: bool = True) -> Lease:
    """A lease on an engine: ``$DOCKER_HOST``, the default socket, or our own dockerd (see module doc).

    ``external=False`` skips the first two: always our own daemon (under ``state_dir``).
    """
    if external:
        host = os.environ.get("DOCKER_HOST")
        if host:
            if not ping(host):
                raise DockerError(f"DOCKER_HOST={host} does not answer: start that engine, or unset DOCKER_HOST")
            return Lease(engine=Engine(host=host, cli=client()))
        if ping(DEFAULT_HOST):
            return Lease(engine=Engine(host=DEFAULT_HOST, cli=client()))
    daemon = Daemon(state_dir or default_state_dir())
    with daemon.locked():
        daemon.holders()  # drops the leases of processes that died
        daemon.ensure_running()
        path = daemon.users / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        handle = open(path, "wb")  # noqa: SIM115 - held open for the lease's lifetime
        fcntl.flock(handle, fcntl.LOCK_EX)
    return Lease(engine=daemon.engine(), daemon=daemon, _handle=handle, _path=path)


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _cmdline_mentions(pid: int, text: str) -> bool:
    return any(text in part for part in _cmdline(pid))


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def _pids_mentioning(text: str) -> list[int]:
    """Engine processes (dockerd, containerd, shims, runc) whose command line mentions ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            name = (entry / "comm").read_text().strip()
        except OSError:
            continue
        pid = int(entry.name)
        if name.startswith(ENGINE_PROCESSES) and _cmdline_mentions(pid, text) and not _zombie(pid):
            found.append(pid)
    return found


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        if _zombie(pid):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)  # ours: reap it
            return True
        time.sleep(0.05)
    return False
