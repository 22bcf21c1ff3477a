"""Interop with InfraKit v0.5's own binaries: ``make interop`` (never in CI: it needs the original build).

Build them first: ``bash ../shared/tools/build-infrakit-v0.5.sh GIT_DIR`` (into
``~/.cache/infrakit-orig/bin``, or ``$IKBIN``).  On the test engine (``tests/dockerfixtures.py``):

* InfraKit's CLI (``infrakit instance-docker provision|describe|destroy``) drives our daemon;
* our group daemon drives InfraKit's original ``infrakit-instance-docker`` (and heals through it);
* containers made by either are adopted by the other: same labels, same ``infrakit.config_sha``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

IKBIN = Path(os.environ.get("IKBIN") or Path.home() / ".cache" / "infrakit-orig" / "bin")
OURS = Path(sys.executable).parent


@pytest.fixture
def stage(docker_host: str, busybox_images: dict[str, str]) -> Iterator[Stage]:
    if not (IKBIN / "infrakit-instance-docker").exists():
        pytest.fail(f"no InfraKit v0.5 binaries in {IKBIN}: run ../shared/tools/build-infrakit-v0.5.sh GIT_DIR first")
    root = Path(tempfile.mkdtemp(prefix="ikop-", dir="/tmp"))  # short: unix socket paths
    made = Stage(root=root, docker_host=docker_host, image=busybox_images["1"])
    try:
        yield made
    finally:
        made.close()
        shutil.rmtree(root, ignore_errors=True)


class Stage:
    """A plugins directory, the daemons started there (stopped by PID at the end), the groups made."""

    def __init__(self, *, root: Path, docker_host: str, image: str) -> None:
        self.root = root
        self.image = image
        self.env = {
            **os.environ,
            "DOCKER_HOST": docker_host,
            "INFRAKIT_PLUGINS_DIR": str(root / "plugins"),
            "INFRAKIT_HOME": str(root / "home"),
        }
        self.env.pop("INFRAKIT_INSTANCE_DIR", None)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.groups: list[str] = []

    def start(self, name: str, *command: str) -> None:
        with open(self.root / f"{name}.log", "wb") as log:
            self.processes[name] = subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        socket = self.root / "plugins" / name.removeprefix("orig-").removeprefix("our-")
        wait_for(socket.exists, what=f"{name}'s socket")

    def stop(self, name: str) -> None:
        process = self.processes.pop(name)
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for stale in (self.root / "plugins").glob(f"{name.split('-', 1)[1]}*"):
            stale.unlink(missing_ok=True)

    def run(self, *command: str, check: bool = True) -> str:
        done = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=120, check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(command)}: exit {done.returncode}: {done.stdout}{done.stderr}")
        return done.stdout

    def docker(self, *args: str) -> str:
        return self.run("docker", *args)

    def containers(self, group: str) -> list[str]:
        return sorted(self.docker("ps", "-q", "--filter", f"label=infrakit.group={group}").split())

    def group(self, name: str, size: int = 2) -> tuple[Path, Path]:
        """The same group as our manifest and as InfraKit's JSON."""
        self.groups.append(name)
        properties = {"Config": {"Image": self.image, "Cmd": ["sleep", "600"]}, "HostConfig": {"NetworkMode": "none"}}
        flavor = {"Init": ["echo hi > /www/init.txt"]}
        manifest = {
            "apiVersion": "infrakit.io/v1alpha1",
            "kind": "Group",
            "metadata": {"name": name},
            "spec": {
                "allocation": {"size": size},
                "instance": {"plugin": "instance-docker", "properties": properties},
                "flavor": {"plugin": "flavor-vanilla", "properties": flavor},
            },
        }
        ours = self.root / f"{name}.yaml"
        ours.write_text(yaml.safe_dump(manifest))
        theirs = self.root / f"{name}.json"
        theirs.write_text(
            json.dumps(
                {
                    "ID": name,
                    "Properties": {
                        "Allocation": {"Size": size},
                        "Instance": {"Plugin": "instance-docker", "Properties": properties},
                        "Flavor": {"Plugin": "flavor-vanilla", "Properties": flavor},
                    },
                }
            )
        )
        return ours, theirs

    def close(self) -> None:
        for name in list(self.processes):
            self.stop(name)
        for group in self.groups:
            found = self.docker("ps", "-aq", "--filter", f"label=infrakit.group={group}").split()
            if found:
                self.run("docker", "rm", "-f", *found, check=False)


def wait_for(condition: Callable[[], Any], *, timeout: float = 30.0, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)
    return value


def test_infrakits_cli_drives_our_daemon(stage: Stage) -> None:
    stage.start("our-instance-docker", str(OURS / "infrakit-instance-docker"))
    group = f"iop{uuid.uuid4().hex[:6]}"
    stage.groups.append(group)
    spec = stage.root / "spec.json"
    spec.write_text(json.dumps({
        "Properties": {"Config": {"Image": stage.image, "Cmd": ["sleep", "600"]},
                       "HostConfig": {"NetworkMode": "none"}},
        "Tags": {"infrakit.group": group}, "Init": "echo hello > /www/init.txt",
    }))  # fmt: skip
    assert "instance-docker" in stage.run(str(IKBIN / "infrakit"), "plugin", "ls")
    made = stage.run(str(IKBIN / "infrakit"), "instance-docker", "provision", f"file://{spec}").strip()
    assert stage.containers(group)
    assert stage.containers(group)[0].startswith(made)
    assert stage.docker("exec", made, "cat", "/www/init.txt").strip() == "hello"  # the Init, inside
    listed = stage.run(str(IKBIN / "infrakit"), "instance-docker", "describe", "--tags", f"infrakit.group={group}")
    assert made in listed
    assert f"infrakit.group={group}" in listed
    assert stage.run(str(IKBIN / "infrakit"), "instance-docker", "destroy", made).strip() == f"destroyed {made}"
    assert stage.containers(group) == []


def test_our_group_daemon_drives_infrakits_plugin_and_heals_through_it(stage: Stage) -> None:
    stage.start("orig-instance-docker", str(IKBIN / "infrakit-instance-docker"), "--url", stage.env["DOCKER_HOST"])
    stage.start("our-group", str(OURS / "infrakit-group-default"))
    name = f"iop{uuid.uuid4().hex[:6]}"
    ours, _ = stage.group(name)
    assert (
        stage.run(str(OURS / "infrakit-local"), "commit", str(ours)).strip()
        == f"Committed {name}: Managing 2 instances"
    )
    first = stage.containers(name)
    assert len(first) == 2
    stage.docker("kill", first[0])
    healed = wait_for(lambda: (c := stage.containers(name)) and len(c) == 2 and first[0] not in c and c,
                      what="our group to replace the container through InfraKit's plugin")  # fmt: skip
    assert first[1] in healed


def test_each_adopts_what_the_other_made(stage: Stage) -> None:
    ik = str(IKBIN / "infrakit")
    # InfraKit's group makes the containers; ours (its built-in plugin, no daemon) adopts them as they are.
    stage.start("orig-instance-docker", str(IKBIN / "infrakit-instance-docker"), "--url", stage.env["DOCKER_HOST"])
    stage.start("orig-flavor-vanilla", str(IKBIN / "infrakit-flavor-vanilla"))
    stage.start("orig-group", str(IKBIN / "infrakit-group-default"))
    theirs_name = f"iop{uuid.uuid4().hex[:6]}"
    ours_spec, theirs_spec = stage.group(theirs_name)
    assert (
        stage.run(ik, "group", "commit", f"file://{theirs_spec}").strip()
        == f"Committed {theirs_name}: Managing 2 instances"
    )
    made = wait_for(lambda: (c := stage.containers(theirs_name)) and len(c) == 2 and c, what="InfraKit's group")
    shas = {stage.docker("inspect", "-f", '{{index .Config.Labels "infrakit.config_sha"}}', c).strip() for c in made}
    for name in ("orig-group", "orig-flavor-vanilla", "orig-instance-docker"):
        stage.stop(name)
    pretend = stage.run(str(OURS / "infrakit-local"), "commit", str(ours_spec), "--pretend").strip()
    assert pretend == f"Committing {theirs_name} would involve: Managing 2 instances"
    stage.run(str(OURS / "infrakit-local"), "commit", str(ours_spec))
    assert stage.containers(theirs_name) == made  # adopted: nothing replaced
    status = yaml.safe_load(stage.run(str(OURS / "infrakit-local"), "inspect", theirs_name))["status"]
    assert {status["configHash"]} == shas  # the same config hash
    # Ours makes the containers; InfraKit's group adopts them.
    mine = f"iop{uuid.uuid4().hex[:6]}"
    ours_spec, theirs_spec = stage.group(mine)
    stage.run(str(OURS / "infrakit-local"), "commit", str(ours_spec))
    mine_made = stage.containers(mine)
    stage.start("orig-instance-docker", str(IKBIN / "infrakit-instance-docker"), "--url", stage.env["DOCKER_HOST"])
    stage.start("orig-flavor-vanilla", str(IKBIN / "infrakit-flavor-vanilla"))
    stage.start("orig-group", str(IKBIN / "infrakit-group-default"))
    assert (
        stage.run(ik, "group", "commit", f"file://{theirs_spec}").strip() == f"Committed {mine}: Managing 2 instances"
    )
    # InfraKit's group made its first pass before it answered the commit: nothing was replaced.
    described = stage.run(ik, "group", "describe", mine)
    assert all(c[:12] in described for c in mine_made)
    assert stage.containers(mine) == mine_made
    with contextlib.suppress(Exception):
        stage.run(ik, "group", "free", mine, check=False)
