"""instance-docker in every local mode: ``infrakit-local commit`` and ``run``, the daemons, the runtime's
statuses, a roll with surge while serving, a container removed behind a roll's back.

(The operator's mode: ``tests/e2e/test_docker_operator.py``; InfraKit's own binaries: ``make interop``.)
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from infrakit.core import instances, specs
from infrakit.plugins import Registry, instance_docker
from infrakit.runtime import engine
from tests.docker_plugin.conftest import Docker, EngineProxy, wait_for

BIN = Path(sys.executable).parent
PORTS = list(range(18181, 18187))


def group(name: str, image: str, *, size: int = 2, serve: bool = False) -> dict[str, Any]:
    init = []
    if serve:  # each container serves /www on the first free port (host networking: distinct ports)
        ports = " ".join(map(str, PORTS))
        init = [f"for p in {ports}; do httpd -p 127.0.0.1:$p -h /www && exit 0; done; exit 1"]
    return {
        "apiVersion": "infrakit.io/v1alpha1",
        "kind": "Group",
        "metadata": {"name": name},
        "spec": {
            "allocation": {"size": size},
            "instance": {
                "plugin": "instance-docker",
                "properties": {
                    "Config": {"Image": image, "Cmd": ["sleep", "600"]},
                    "HostConfig": {"NetworkMode": "host" if serve else "none", "AutoRemove": True},
                },
            },
            "flavor": {"plugin": "flavor-vanilla", "properties": {"Init": init}},
            "updateStrategy": {"maxSurge": 1, "maxUnavailable": 0},
        },
    }


def cli(*args: str, env: dict[str, str], check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(BIN / "infrakit-local"), *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        raise AssertionError(f"infrakit-local {' '.join(args)}: exit {done.returncode}: {done.stderr}")
    return done


def write(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(document))
    return path


def members(env: dict[str, str], name: str) -> list[str]:
    out = cli("describe", name, "-q", env=env, check=False).stdout
    return sorted(line.split()[0] for line in out.splitlines() if line.strip())


def ready(env: dict[str, str], name: str) -> dict[str, Any]:
    status = yaml.safe_load(cli("inspect", name, env=env).stdout)["status"]
    return next(c for c in status["conditions"] if c["type"] == "Ready")


@contextlib.contextmanager
def background(*command: str, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def name(docker: Docker) -> Iterator[str]:
    """A group name of this test's own; its containers are removed at the end."""
    chosen = f"d{uuid.uuid4().hex[:8]}"
    try:
        yield chosen
    finally:
        docker.remove_labelled(f"{instances.TAG_GROUP}={chosen}")


def test_commit_then_run_heals_a_killed_container(
    docker_env: dict[str, str], busybox_images: dict[str, str], docker: Docker, name: str, tmp_path: Path
) -> None:
    done = cli("commit", str(write(tmp_path / "g.yaml", group(name, busybox_images["1"]))), env=docker_env)
    assert done.stdout.strip() == f"Committed {name}: Managing 2 instances"
    first = members(docker_env, name)
    assert len(first) == 2
    assert ready(docker_env, name)["reason"] == "Converged"
    with background(str(BIN / "infrakit-local"), "run", env=docker_env, log=tmp_path / "run.log"):
        wait_for(lambda: "ready" in (tmp_path / "run.log").read_text(), what="run to be ready")
        docker("kill", first[0])
        healed = wait_for(
            lambda: (m := members(docker_env, name)) and len(m) == 2 and first[0] not in m and m,
            what="the killed container to be replaced",
        )
    assert first[1] in healed
    assert "InstancesLost: lost " + first[0] in (tmp_path / "run.log").read_text()


def test_through_the_daemons_a_killed_container_is_healed(
    docker_env: dict[str, str], busybox_images: dict[str, str], docker: Docker, name: str, tmp_path: Path
) -> None:
    plugins_dir = Path(f"/tmp/ik-{uuid.uuid4().hex[:8]}")  # a short path: unix sockets are limited to 107 bytes
    env = {**docker_env, "INFRAKIT_PLUGINS_DIR": str(plugins_dir)}
    try:
        with (
            background(str(BIN / "infrakit-instance-docker"), env=env, log=tmp_path / "docker.log"),
            background(str(BIN / "infrakit-group-default"), env=env, log=tmp_path / "group.log"),
        ):
            wait_for(lambda: (plugins_dir / "instance-docker").exists() and (plugins_dir / "group").exists(),
                     what="the daemons' sockets")  # fmt: skip
            listed = cli("plugin", "ls", "-q", env=env).stdout
            assert "instance-docker" in listed and str(plugins_dir) in listed
            cli("commit", str(write(tmp_path / "g.yaml", group(name, busybox_images["1"]))), env=env)
            first = members(env, name)
            assert len(first) == 2
            docker("kill", first[0])
            wait_for(
                lambda: (m := members(env, name)) and len(m) == 2 and first[0] not in m,
                what="the group daemon to heal through the instance daemon's events",
            )
            described = cli("instance-docker", "describe", "-q", env=env).stdout
            assert first[1] in described
    finally:
        subprocess.run(["rm", "-rf", str(plugins_dir)], check=False)


def test_an_engine_that_is_down_is_plugin_unavailable_and_recovers(
    docker_env: dict[str, str], docker_host: str, busybox_images: dict[str, str], name: str, tmp_path: Path
) -> None:
    proxy = EngineProxy(docker_host.removeprefix("unix://"), tmp_path / "docker.sock")
    env = {**docker_env, "DOCKER_HOST": f"unix://{proxy.path}"}
    manifest = write(tmp_path / "g.yaml", group(name, busybox_images["1"]))
    # A commit that cannot even list the instances fails before it records anything.
    done = cli("commit", str(manifest), env=env, check=False)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and f"Docker engine at unix://{proxy.path}" in done.stderr
    assert "is dockerd running?" in done.stderr
    assert name not in cli("ls", "-q", env=env).stdout
    proxy.start()
    try:
        cli("commit", str(manifest), env=env)
        with background(str(BIN / "infrakit-local"), "run", env=env, log=tmp_path / "run.log"):
            wait_for(lambda: "ready" in (tmp_path / "run.log").read_text(), what="run to be ready")
            proxy.stop()  # the engine goes while run watches it: its event stream says so at once
            condition = wait_for(
                lambda: (c := ready(env, name))["reason"] == "PluginUnavailable" and c, what="PluginUnavailable"
            )
            assert condition["status"] == "False" and "is dockerd running?" in condition["message"]
            proxy.start()
            wait_for(lambda: ready(env, name)["reason"] == "Converged", what="the group to recover by itself")
            assert len(members(env, name)) == 2
    finally:
        proxy.stop()


def test_an_invalid_config_is_refused_at_commit_naming_the_field(
    docker_env: dict[str, str], busybox_images: dict[str, str], docker: Docker, name: str, tmp_path: Path
) -> None:
    document = group(name, busybox_images["1"])
    document["spec"]["instance"]["properties"]["Tags"] = {"infrakit.group": "someone-else"}
    done = cli("commit", str(write(tmp_path / "g.yaml", document)), env=docker_env, check=False)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "spec.instance.properties.Tags.infrakit.group" in done.stderr
    assert docker.ids(f"{instances.TAG_GROUP}={name}") == []
    assert cli("ls", "-q", env=docker_env).stdout.strip() == ""  # nothing recorded either


def _serving() -> list[str]:
    pages = []
    for port in PORTS:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as answer:
                pages.append(answer.read().decode().strip())
        except OSError:
            continue
    return pages


def test_a_roll_with_surge_keeps_every_server_answering(
    docker_env: dict[str, str], busybox_images: dict[str, str], name: str, tmp_path: Path
) -> None:
    busy = _serving()
    if busy:
        pytest.fail(f"ports {PORTS[0]}-{PORTS[-1]} are in use on this machine: {busy}")
    v1 = group(name, busybox_images["1"], size=3, serve=True)
    cli("commit", str(write(tmp_path / "v1.yaml", v1)), env=docker_env)
    assert sorted(_serving()) == [busybox_images["1"]] * 3
    v2 = group(name, busybox_images["2"], size=3, serve=True)
    samples: list[list[str]] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            samples.append(_serving())

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        done = cli("commit", str(write(tmp_path / "v2.yaml", v2)), env=docker_env)
    finally:
        stop.set()
        poller.join(30)
    assert done.stdout.strip() == f"Committed {name}: Performing a rolling update on 3 instances"
    assert sorted(_serving()) == [busybox_images["2"]] * 3
    assert len(samples) >= 3
    fewest = min(len(s) for s in samples)
    assert fewest >= 3, f"at some point only {fewest} servers answered"
    assert any(busybox_images["1"] in s and busybox_images["2"] in s for s in samples)  # seen mid-roll


def test_a_container_removed_behind_a_rolls_back(
    docker_host: str, busybox_images: dict[str, str], docker: Docker, name: str, tmp_path: Path
) -> None:
    registry = Registry(defaults={"instance-docker": {"url": docker_host, "labels_dir": str(tmp_path / "l")}})
    try:
        old = specs.parse_document(group(name, busybox_images["1"], size=3))
        resolved = engine.resolve(old, registry)
        engine.reconcile(old, resolved)
        before = {m.id for m in engine.observe(old, resolved)}
        new = specs.parse_document(group(name, busybox_images["2"], size=3))
        removed: list[str] = []

        def behind_its_back(step: engine.Step) -> None:
            if step.action == "provision" and not removed:  # mid-roll: an outdated one vanishes
                outdated = sorted(before - set(removed))
                victim = outdated[-1]
                docker("rm", "-f", victim)
                removed.append(victim)

        outcome = engine.reconcile(new, engine.resolve(new, registry), on_step=behind_its_back)
        assert removed
        assert outcome.plan.converged
        after = engine.observe(new, engine.resolve(new, registry))
        assert len(after) == 3 and all(m.up_to_date for m in after)
        assert not before & {m.id for m in after}
    finally:
        registry.close()


def test_the_cli_plugin_verbs_and_their_errors(
    docker_env: dict[str, str], busybox_images: dict[str, str], docker: Docker, name: str, tmp_path: Path
) -> None:
    spec = {
        "Properties": {"Config": {"Image": busybox_images["1"], "Cmd": ["sleep", "600"]},
                       "HostConfig": {"NetworkMode": "none"}},
        "Tags": {instances.TAG_GROUP: name},
    }  # fmt: skip
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    made = cli("instance-docker", "provision", str(tmp_path / "spec.json"), env=docker_env)
    container = made.stdout.strip().split()[-1]
    assert docker.ids(f"{instances.TAG_GROUP}={name}")[0].startswith(container)
    assert container in cli("instance-docker", "describe", "-q", env=docker_env).stdout
    cli("instance-docker", "destroy", container, env=docker_env)
    assert docker.ids(f"{instances.TAG_GROUP}={name}") == []
    gone = cli("instance-docker", "destroy", container, env=docker_env, check=False)
    assert gone.returncode == 2 and gone.stderr.count("\n") == 1  # as instance-file: a bad ID is bad input
    (tmp_path / "p.json").write_text(json.dumps({"Config": {}}))
    bad = cli("instance-docker", "validate", str(tmp_path / "p.json"), env=docker_env, check=False)
    assert bad.returncode == 2 and "Config.Image" in bad.stderr and bad.stderr.count("\n") == 1
    assert json.loads(json.dumps(instance_docker.parse_namespace("a=b,c=d"))) == {"a": "b", "c": "d"}
    assert os.environ.get("DOCKER_HOST")  # (the CLI found the engine by $DOCKER_HOST)
