"""A plugin daemon SIGKILLed mid-roll, then restarted: the group converges exactly.

In: ``infrakit-instance-file`` run with the ``atomic-write`` failpoint (it kills itself
on its Nth instance write: mid-roll), driven by the group daemon (a ``CommitGroup``
call) or by ``infrakit-local commit``.  Out: while it is down, the group's status says
``Ready=False, PluginUnavailable`` naming the dead socket; once it is back, the right
number of instances, all on the new hash, no duplicates, no temp files, Ready.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from infrakit.rpc import client
from tests.conftest import EXAMPLES
from tests.rpc.conftest import Daemon, start_daemon

SHA2 = "jpfedp4sefvncwye5b6yre5qoz2odtnd"


def wait_until(condition: Callable[[], Any], *, timeout: float = 30.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def ready(home: Path) -> dict[str, Any]:
    document = yaml.safe_load((home / "groups" / "cattle.yaml").read_text())
    conditions = (document.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == "Ready"), {})


def files(directory: Path) -> dict[str, dict[str, Any]]:
    """The instance files as they are now (one the daemon removes meanwhile is not there)."""
    found = {}
    for path in directory.iterdir():
        if path.name.startswith("instance-"):
            with contextlib.suppress(FileNotFoundError):
                found[path.name] = json.loads(path.read_text())
    return found


def converged(directory: Path, size: int) -> bool:
    found = files(directory)
    shas = {d["Tags"].get("infrakit.config_sha") for d in found.values()}
    return len(found) == size and shas == {SHA2}


@pytest.mark.parametrize("driver", ["group-daemon", "infrakit-local"])
def test_instance_daemon_killed_mid_roll(sockdir: Path, driver: str) -> None:
    home, instances_dir, plugins_dir = sockdir / "home", sockdir / "inst", sockdir / "plugins"
    env = {"INFRAKIT_HOME": str(home), "INFRAKIT_PLUGINS_DIR": str(plugins_dir)}
    socket_path = plugins_dir / "instance-file"
    started: list[Daemon] = []

    def instance_daemon(failpoints: str = "") -> Daemon:
        daemon = start_daemon(
            "instance-file", "--dir", str(instances_dir), env={**env, "INFRAKIT_FAILPOINTS": failpoints}
        )
        started.append(daemon)
        daemon.wait_for("Listening at:")
        return daemon

    def local(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "infrakit.cli", *args],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    group_rpc = client.Transport(address=str(plugins_dir / "group"), name="group")
    try:
        if driver == "group-daemon":
            group = start_daemon("group-default", "--resync", "60", env=env)
            started.append(group)
            group.wait_for("Listening at:")
        first = instance_daemon()
        assert local("commit", str(EXAMPLES / "cattle.json")).returncode == 0
        wait_until(lambda: len(files(instances_dir)) == 5, what="5 instances")
        assert first.stop() == 0

        # The roll (5 replaced, 5 added) kills the daemon at its 4th instance write.
        dying = instance_daemon("atomic-write=kill-after:4")
        if driver == "group-daemon":
            cattle2 = json.loads((EXAMPLES / "cattle2.json").read_text())
            with pytest.raises(client.RemoteError) as refused:
                group_rpc.call("Group.CommitGroup", {"Spec": cattle2, "Pretend": False})
            message = refused.value.message
            assert "the group daemon keeps retrying" in message
        else:
            done = local("commit", str(EXAMPLES / "cattle2.json"))
            assert done.returncode == 1 and "Traceback" not in done.stderr
            message = done.stderr.strip().splitlines()[-1]
        assert str(socket_path) in message
        assert dying.process.wait(30) == -signal.SIGKILL
        assert 3 <= len(files(instances_dir)) <= 9  # mid-roll, really

        # Down: the status says so, naming the dead socket (the group daemon keeps retrying).
        condition = wait_until(
            lambda: (c := ready(home)).get("reason") == "PluginUnavailable" and str(socket_path) in c["message"] and c,
            what="Ready=False PluginUnavailable",
        )
        assert condition["status"] == "False"

        # Back: converges exactly (the group daemon by itself; infrakit-local by a new commit).
        instance_daemon()
        if driver == "infrakit-local":
            again = local("commit", str(EXAMPLES / "cattle2.json"))
            assert again.returncode == 0, again.stderr
        wait_until(lambda: converged(instances_dir, 10), timeout=60, what="10 instances on the new hash")
        wait_until(lambda: ready(home).get("status") == "True", what="Ready=True")
        found = files(instances_dir)
        assert len({d["ID"] for d in found.values()}) == 10
        assert sorted(p.name for p in instances_dir.iterdir() if not p.name.startswith("instance-")) == []
        if driver == "group-daemon":
            described = group_rpc.call("Group.DescribeGroup", {"ID": "cattle"})["Description"]
            assert described["Converged"] is True
            assert {d["ID"] for d in described["Instances"]} == set(found)
    finally:
        group_rpc.close()
        for daemon in reversed(started):
            daemon.stop()
