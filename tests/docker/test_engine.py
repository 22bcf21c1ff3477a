"""Our dockerd: it starts, answers, is shared, stops with its last holder, and leaves the host as it was."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests import hoststate
from tests.docker.conftest import fetch, free_port
from tests.dockerfixtures import _unavailable
from tests.e2e.conftest import wait_until
from tools.docker import engine as engines
from tools.docker import images

REPO_ROOT = Path(__file__).resolve().parents[2]


def _proc_sys_read_only(pid: int) -> bool:
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == "/proc/sys":
            return "ro" in fields[5].split(",")
    return False


def test_our_daemon_leaves_the_host_as_it_found_it(own_state_dir: Path) -> None:
    before = hoststate.snapshot()
    lease = engines.acquire(state_dir=own_state_dir, external=False)
    try:
        engine, daemon = lease.engine, engines.Daemon(own_state_dir)
        pid = daemon.pid()
        assert pid is not None and engine.own
        # Its own mount namespace, in which /proc/sys is read-only; the host's is not.
        assert os.readlink(f"/proc/{pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt")
        assert _proc_sys_read_only(pid) and not _proc_sys_read_only(os.getpid())
        # A container serving HTTP on the host's loopback, as issue 22's web servers will.
        tags = images.busybox_images(engine, timings=images.Timings(log=lambda _: None))
        port = free_port()
        serve = ["httpd", "-f", "-p", f"127.0.0.1:{port}", "-h", "/www"]
        engine.docker("run", "--detach", "--network=host", tags["1"], *serve)
        body = wait_until(lambda: fetch(f"http://127.0.0.1:{port}/"), timeout=30, what="busybox httpd")
        assert body == "infrakit-test/busybox:1\n"
        during = hoststate.snapshot()
        # While it runs: no setting, network or host mount changed; its cgroups are under ours alone.
        found = hoststate.changes(before, during)
        assert [c for c in found if not c.startswith("cgroups +")] == []
        assert {c.rsplit("/", 1)[-1] for c in found} <= {daemon.cgroup_parent}
    finally:
        lease.release()
    assert hoststate.changes(before, hoststate.snapshot()) == []
    assert hoststate.processes_mentioning(str(own_state_dir)) == []
    assert not daemon.socket.exists()


def test_leases_share_one_daemon_and_the_last_one_stops_it(own_state_dir: Path) -> None:
    daemon = engines.Daemon(own_state_dir)
    first = engines.acquire(state_dir=own_state_dir, external=False)
    second = engines.acquire(state_dir=own_state_dir, external=False)
    pid = daemon.pid()
    # A holder killed without releasing counts as gone.
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from tools.docker.engine import acquire\n"
        "lease = acquire(state_dir=Path(sys.argv[1]), external=False)\n"
        "print('held', flush=True)\n"
        "time.sleep(600)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(own_state_dir)], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        assert daemon.pid() == pid and len(daemon.holders()) == 3
        tags = images.busybox_images(first.engine, timings=images.Timings(log=lambda _: None))
        first.engine.docker("create", "--network=none", tags["1"])
        first.release()
        assert daemon.answering() and daemon.pid() == pid
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert second._path is not None and daemon.holders() == [second._path.name]
    second.release()
    assert daemon.pid() is None and not daemon.answering()
    assert hoststate.processes_mentioning(str(own_state_dir)) == []
    # The last holder removed every container: a new start finds none.
    with engines.acquire(state_dir=own_state_dir, external=False) as engine:
        assert engine.docker("ps", "--all", "--quiet").stdout.split() == []
        assert daemon.pid() != pid


@pytest.mark.parametrize("cli", ["/usr/bin/docker", "/usr/local/bin/docker"])
def test_either_client_negotiates_the_daemons_api_version(docker_engine: engines.Engine, cli: str) -> None:
    if not Path(cli).is_file():
        pytest.skip(f"no {cli} on this machine")
    proc = subprocess.run(
        [cli, "version", "--format", "{{json .}}"],
        env=docker_engine.env, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    version = json.loads(proc.stdout)
    assert version["Client"]["ApiVersion"] == version["Server"]["ApiVersion"], version


def test_a_docker_host_that_does_not_answer_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    host = f"unix://{tmp_path}/nothing.sock"
    monkeypatch.setenv("DOCKER_HOST", host)
    with pytest.raises(engines.DockerError, match=f"DOCKER_HOST={host} does not answer"):
        engines.acquire(state_dir=tmp_path / "state")
    assert not (tmp_path / "state").exists()  # nothing of ours was started instead
    proc = subprocess.run(
        [sys.executable, "-m", "tools.docker", "images", "--no-python"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "DOCKER_HOST": host},
    )  # fmt: skip
    assert proc.returncode == 1
    expected = f"error: DOCKER_HOST={host} does not answer: start that engine, or unset DOCKER_HOST"
    assert proc.stderr.strip().splitlines() == [expected]


def test_install_script_does_nothing_once_installed() -> None:
    script = REPO_ROOT / "tools" / "docker" / "install.sh"
    first = subprocess.run([str(script)], capture_output=True, text=True, timeout=600, check=False)  # may install
    if "warning:" in first.stderr:
        _unavailable(first.stderr.strip())
    proc = subprocess.run([str(script)], capture_output=True, text=True, timeout=600, check=False)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
