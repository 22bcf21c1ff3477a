"""Containers (``instance-docker``) on the test engine: provisioning, healing, rolling.

* ``docker-provision``: a group of N containers committed with ``infrakit-local``, against N plain
  ``docker run -d`` of the same image and command, one after the other (the CLI, as a person
  would script it); both checked: N containers running.
* ``docker-heal``: ``infrakit-local run`` keeps a group; containers are killed one at a time
  (``docker kill``); each latency is read on Docker's own clock, from the engine's ``kill``
  event of the victim to the ``create`` event of its replacement (and from its ``die``, which
  is when anything can know); checked: the group is back to its size.
* ``docker-roll``: a group of 20 rolled to another image tag (surge 1), against a fresh
  provision of 20; checked: every container up to date, none of the old left.

The engine is ``tools.docker``'s (``$DOCKER_HOST``, the default socket, or our own dockerd) and
the images are made without a registry (``tools.docker.images``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from bench import measure
from bench.measure import Row, Sizes, Workdir

S = "9. containers"


def _engine() -> tuple[Any, Any, dict[str, str]]:
    from tools.docker import engine as engines
    from tools.docker import images

    lease = engines.acquire()
    return lease, lease.engine, images.busybox_images(lease.engine)


def _group(name: str, image: str, size: int) -> dict[str, Any]:
    return {
        "apiVersion": "infrakit.io/v1alpha1",
        "kind": "Group",
        "metadata": {"name": name},
        "spec": {
            "allocation": {"size": size},
            "instance": {
                "plugin": "instance-docker",
                "properties": {
                    "Config": {"Image": image, "Cmd": ["sleep", "3600"]},
                    "HostConfig": {"NetworkMode": "none", "AutoRemove": True},
                },
            },
            "flavor": {"plugin": "flavor-vanilla", "properties": {}},
            "updateStrategy": {"maxSurge": 1, "maxUnavailable": 0},
        },
    }


def _cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "infrakit.cli", *args], env=env, capture_output=True, text=True, timeout=600, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"infrakit-local {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def _env(engine: Any, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFRAKIT_")}
    return {**env, "DOCKER_HOST": engine.host, "INFRAKIT_HOME": str(home)}


def _running(engine: Any, label: str) -> list[str]:
    return engine.docker("ps", "-q", "--filter", f"label={label}").stdout.split()


def _clean(engine: Any, label: str) -> None:
    """Remove what carries ``label``, ten at a time.

    Debian's dockerd 20.10 wedged here (every later call hung) when one ``docker rm -f`` took
    100 containers started with ``--rm``: the kills never reported an exit.  Hence no ``--rm``
    for the plain runs, and small batches.
    """
    found = engine.docker("ps", "-aq", "--filter", f"label={label}").stdout.split()
    for start in range(0, len(found), 10):
        engine.docker("rm", "-f", *found[start : start + 10], check=False)


def _write(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(json.dumps(document))
    return path


def provision(workdir: Workdir, sizes: Sizes) -> list[Row]:
    lease, engine, images = _engine()
    count = 5 if sizes.smoke else 100
    base = workdir.fresh("docker-provision")
    name = f"bench{uuid.uuid4().hex[:6]}"
    plain = f"bench-plain={name}"
    try:
        env = _env(engine, base / "home")
        manifest = _write(base / "g.json", _group(name, images["1"], count))
        ours = measure.timed(lambda: _cli(env, "commit", str(manifest)))
        if len(_running(engine, f"infrakit.group={name}")) != count:
            raise RuntimeError("the group's containers are not all running")
        started = time.perf_counter()
        for _ in range(count):
            engine.docker("run", "-d", "--network", "none", "-l", plain, images["1"], "sleep", "3600")
        theirs = time.perf_counter() - started
        if len(_running(engine, plain)) != count:
            raise RuntimeError("the plain docker runs are not all running")
    finally:
        _clean(engine, f"infrakit.group={name}")
        _clean(engine, plain)
        lease.release()
    return [
        Row(S, f"`infrakit-local commit` of a group of {count} containers (one process, sequential)", "s",
            measure.stats([ours])),
        Row(S, f"{count} plain `docker run -d` of the same image and command, one after the other", "s",
            measure.stats([theirs])),
        Row(S, "group commit / plain docker runs", "x", measure.stats([ours / theirs])),
    ]  # fmt: skip


def heal(workdir: Workdir, sizes: Sizes) -> list[Row]:
    lease, engine, images = _engine()
    kills = 3 if sizes.smoke else 30
    base = workdir.fresh("docker-heal")
    name = f"bench{uuid.uuid4().hex[:6]}"
    env = _env(engine, base / "home")
    log = base / "run.log"
    try:
        _cli(env, "commit", str(_write(base / "g.json", _group(name, images["1"], 5))))
        with log.open("wb") as out:
            runner = subprocess.Popen([sys.executable, "-m", "infrakit.cli", "run"], env=env, stdout=out,
                                      stderr=subprocess.STDOUT)  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while "ready" not in log.read_text():
                if time.monotonic() > deadline:
                    raise RuntimeError("run never became ready")
                time.sleep(0.05)
            since = str(int(time.time()) - 1)
            victims = []
            for _ in range(kills):
                before = _running(engine, f"infrakit.group={name}")
                victim = before[0]
                engine.docker("kill", victim)
                victims.append(victim)
                deadline = time.monotonic() + 30
                while True:
                    now = _running(engine, f"infrakit.group={name}")
                    if len(now) == 5 and victim not in now:
                        break
                    if time.monotonic() > deadline:
                        raise RuntimeError("a killed container was not replaced within 30 s")
                    time.sleep(0.02)
        finally:
            runner.terminate()
            runner.wait(15)
        events = engine.docker(
            "events", "--since", since, "--until", str(int(time.time()) + 1),
            "--filter", f"label=infrakit.group={name}", "--format", "{{.TimeNano}} {{.Action}} {{.Actor.ID}}",
        ).stdout.split("\n")  # fmt: skip
    finally:
        _clean(engine, f"infrakit.group={name}")
        lease.release()
    parsed = [(int(t), action, actor) for t, action, actor in (e.split() for e in events if e.count(" ") == 2)]
    from_kill, from_die = [], []
    for victim in victims:
        killed = min(t for t, a, i in parsed if a == "kill" and i.startswith(victim))
        died = min(t for t, a, i in parsed if a == "die" and i.startswith(victim))
        created = min(t for t, a, _ in parsed if a == "create" and t > died)
        from_kill.append((created - killed) / 1e6)
        from_die.append((created - died) / 1e6)
    kill_stats, die_stats = measure.stats(from_kill), measure.stats(from_die)
    return [
        Row(S, f"heal under `infrakit-local run`: engine's kill event → replacement's create event ({kills} kills, "
            "group of 5, Docker's clock)", "ms", kill_stats).judge(
            lambda v: v < 100, value=kill_stats.quantile(0.99), what="p99", target="p99 < 100 ms", smoke=sizes.smoke),
        Row(S, "the same, from the victim's die event (the first moment anything can know)", "ms", die_stats),
    ]  # fmt: skip


def roll(workdir: Workdir, sizes: Sizes) -> list[Row]:
    lease, engine, images = _engine()
    count = 3 if sizes.smoke else 20
    base = workdir.fresh("docker-roll")
    name, fresh = f"bench{uuid.uuid4().hex[:6]}", f"bench{uuid.uuid4().hex[:6]}"
    env = _env(engine, base / "home")
    try:
        _cli(env, "commit", str(_write(base / "v1.json", _group(name, images["1"], count))))
        old = set(_running(engine, f"infrakit.group={name}"))
        rolled = measure.timed(
            lambda: _cli(env, "commit", str(_write(base / "v2.json", _group(name, images["2"], count))))
        )
        now = _running(engine, f"infrakit.group={name}")
        images_now = {engine.docker("inspect", "-f", "{{.Config.Image}}", c).stdout.strip() for c in now}
        if len(now) != count or old & set(now) or images_now != {images["2"]}:
            raise RuntimeError(f"the roll did not end with {count} new containers of {images['2']}")
        provisioned = measure.timed(
            lambda: _cli(env, "commit", str(_write(base / "f.json", _group(fresh, images["2"], count))))
        )
        if len(_running(engine, f"infrakit.group={fresh}")) != count:
            raise RuntimeError("the fresh group's containers are not all running")
    finally:
        _clean(engine, f"infrakit.group={name}")
        _clean(engine, f"infrakit.group={fresh}")
        lease.release()
    return [
        Row(S, f"roll of {count} containers to another image (maxSurge 1, `infrakit-local commit`)", "s",
            measure.stats([rolled])),
        Row(S, f"fresh provision of {count} containers of that image", "s", measure.stats([provisioned])),
        Row(S, "roll / fresh provision", "x", measure.stats([rolled / provisioned])),
    ]  # fmt: skip
