"""Several processes on one local store: who may call an instance lost, who waits for whom,
and what status says when a plugin daemon dies (issue 19, classes A, H and I).

In: real processes on one private ``$INFRAKIT_HOME``: ``infrakit-group-default`` or
``infrakit-local run`` beside ``infrakit-local commit``; failpoints stall or kill them at
an exact instance operation.  Out: the daemon's log (its ``InstancesLost`` warnings),
the files, and ``inspect``.  Nothing sleeps to prove a negative: each test waits for an
event that comes after the one that would show the defect.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.rpc.conftest import Daemon, start_daemon
from tests.rpc.test_group_daemon import wait_until


def manifest(name: str, size: int, note: str) -> str:
    return json.dumps(
        {
            "apiVersion": "infrakit.io/v1alpha1",
            "kind": "Group",
            "metadata": {"name": name},
            "spec": {
                "allocation": {"size": size},
                "instance": {"plugin": "instance-file", "properties": {"Note": note}},
                "flavor": {"plugin": "flavor-vanilla", "properties": {"Tags": {"tier": "web"}}},
            },
        }
    )


def cli(home: Path, *args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "infrakit.cli", *args],
        env={**os.environ, "INFRAKIT_HOME": str(home), **(env or {})},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def commit(home: Path, name: str, size: int, note: str = "v1", **extra: Any) -> Any:
    done = cli(home, "commit", "-", stdin=manifest(name, size, note), **extra)
    return done


def members(home: Path, name: str) -> set[str]:
    found = set()
    for path in (home / "instances").glob("instance-*"):
        try:
            tags = json.loads(path.read_text()).get("Tags") or {}
        except (OSError, ValueError):
            continue
        if tags.get("infrakit.group") == name:
            found.add(path.name)
    return found


def ready(home: Path, name: str) -> dict[str, Any]:
    shown = cli(home, "inspect", name, "-o", "json")
    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout).get("status") or {}
    for condition in status.get("conditions") or []:
        if condition["type"] == "Ready":
            return dict(condition)
    return {}


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.stop()


def lost_lines(daemon: Daemon) -> list[str]:
    return [line for line in daemon.seen if "InstancesLost" in line]


# -- A: lost is judged from what every controller of the group did ---------------------------------


@pytest.mark.parametrize("kill", [False, True], ids=["commit", "commit-killed-mid-way"])
def test_the_group_daemon_beside_commit_calls_lost_only_what_nobody_meant_to_remove(
    home: Path, daemons: list[Daemon], kill: bool
) -> None:
    """Was: a roll of 6 plus a scale-down of 4 by `commit` gave 10 lost events from the daemon."""
    daemon = start_daemon("group-default", "--resync", "600", env={"INFRAKIT_HOME": str(home)})
    daemons.append(daemon)
    daemon.wait_for("Listening at:")
    assert commit(home, "cattle", 10).returncode == 0
    wait_until(lambda: len(members(home, "cattle")) == 10, what="10 instances")
    # A roll of 6 and a scale-down of 4; killed after its 5th destroy-or-provision when asked.
    env = {"INFRAKIT_FAILPOINTS": "instance-op=kill-after:5"} if kill else None
    done = commit(home, "cattle", 6, note="v2", env=env)
    assert done.returncode == (-signal.SIGKILL if kill else 0), done.stderr
    # The daemon finishes whatever the commit left, then settles at 6 on v2.
    wait_until(
        lambda: len(members(home, "cattle")) == 6 and ready(home, "cattle").get("reason") == "Converged",
        what="6 converged instances",
    )
    victim = sorted(members(home, "cattle"))[0]
    (home / "instances" / victim).unlink()
    line = daemon.wait_for("InstancesLost")  # the first lost warning the daemon ever logged
    assert f"lost {victim};" in line, line
    assert lost_lines(daemon) == [line]


# -- H: one group's slow plugin call holds that group only -----------------------------------------


def test_a_group_stuck_in_a_plugin_call_holds_up_no_other_group_nor_a_reader(home: Path, daemons: list[Daemon]) -> None:
    """Was: a sync held the store-wide lock through every plugin call: `ls` took 15 s, and an
    unrelated group's lost instance healed after 22 s."""
    assert commit(home, "slow", 2).returncode == 0
    assert commit(home, "quick", 2).returncode == 0
    # The daemon's first instance operation (the heal of "slow" below) stalls for 10 minutes.
    daemon = start_daemon(
        "group-default",
        "--resync",
        "600",
        env={"INFRAKIT_HOME": str(home), "INFRAKIT_FAILPOINTS": "instance-op=stall-after:1:600"},
    )
    daemons.append(daemon)
    daemon.wait_for("ready")
    stuck = sorted(members(home, "slow"))[0]
    (home / "instances" / stuck).unlink()
    wait_until(lambda: len(members(home, "slow")) == 2, what="slow's replacement (then the stall)")
    # "slow" is now stalled in its sync, holding its lock, in one of the two workers.
    lost = sorted(members(home, "quick"))[0]
    (home / "instances" / lost).unlink()
    wait_until(lambda: len(members(home, "quick")) == 2, what="quick healed by the other worker")
    for args in (["ls"], ["describe", "slow"], ["inspect", "slow"], ["describe", "quick"]):
        shown = cli(home, *args)
        assert shown.returncode == 0, (args, shown.stderr)
    assert commit(home, "quick", 3).returncode == 0  # another group's commit does not wait either
    assert len(members(home, "quick")) == 3
    assert cli(home, "commit", "-", "--pretend", stdin=manifest("slow", 2, "v1")).returncode == 0
    assert daemon.process.poll() is None  # and all the while, "slow" was still stalled
    # Stopped, it waits for "slow" its grace (running.STOP_GRACE), then leaves it (was: never exited).
    assert daemon.stop() == 1
    assert "slow" in daemon.wait_for("stuck in a plugin call")


# -- I: an instance daemon that dies shows, in every mode, and recovers -----------------------------


@pytest.mark.parametrize("runner", ["group-daemon", "local-run"])
def test_a_dead_instance_daemon_is_plugin_unavailable_then_recovers(
    home: Path, daemons: list[Daemon], runner: str
) -> None:
    """Was: the instance daemon SIGKILLed and a file removed: status stayed Ready=True for 173 s."""
    env = {"INFRAKIT_HOME": str(home)}
    instances = start_daemon("instance-file", "--dir", str(home / "instances"), env=env)
    daemons.append(instances)
    instances.wait_for("Listening at:")
    assert commit(home, "cattle", 3).returncode == 0
    if runner == "group-daemon":
        controller = start_daemon("group-default", "--resync", "600", env=env)
    else:
        controller = Daemon([sys.executable, "-m", "infrakit.cli", "run", "--resync", "600"], env=env)
    daemons.append(controller)
    controller.wait_for("ready")
    wait_until(lambda: ready(home, "cattle").get("reason") == "Converged", what="converged")
    instances.process.send_signal(signal.SIGKILL)
    instances.process.wait(10)
    (home / "instances" / sorted(members(home, "cattle"))[0]).unlink()
    wait_until(lambda: ready(home, "cattle").get("reason") == "PluginUnavailable", timeout=15, what="unavailable")
    condition = ready(home, "cattle")
    assert condition["status"] == "False" and "instance-file" in condition["message"]
    back = start_daemon("instance-file", "--dir", str(home / "instances"), env=env)
    daemons.append(back)
    back.wait_for("Listening at:")
    wait_until(lambda: ready(home, "cattle").get("reason") == "Converged", timeout=15, what="recovered")
    assert len(members(home, "cattle")) == 3
