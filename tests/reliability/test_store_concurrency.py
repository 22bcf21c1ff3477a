"""The store under 50 concurrent ``infrakit-local commit`` processes, some SIGKILLed mid-write.

The store always parses, no committed group is lost, a group ends as one committed spec
whole (never a mix), the last writer of a group wins, and no temp file survives the next
command that takes the lock.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import yaml

from infrakit import plugins
from infrakit.local import controller, store
from tests.conftest import EXAMPLES
from tests.reliability.conftest import instance_files

PROCESSES = 50


def group_file(tmp: Path, *, name: str, note: str) -> Path:
    document = yaml.safe_load((EXAMPLES / "cattle.yaml").read_text())
    document["metadata"]["name"] = name
    document["spec"]["allocation"]["size"] = 1
    document["spec"]["instance"]["properties"]["Note"] = note
    path = tmp / f"{name}-{note}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def start(home: Path, path: Path, *, failpoint: str | None = None) -> subprocess.Popen[str]:
    env = {**os.environ, "INFRAKIT_HOME": str(home)}
    env.pop("INFRAKIT_INSTANCE_DIR", None)
    if failpoint:
        env["INFRAKIT_FAILPOINTS"] = failpoint
    return subprocess.Popen(
        [sys.executable, "-m", "infrakit.cli", "commit", str(path)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_fifty_concurrent_commits_with_kills(tmp_path: Path) -> None:
    rng = random.Random(20261125)
    home = tmp_path / "home"
    jobs = []
    for index in range(PROCESSES):
        shared = index % 2 == 0  # half on one group, half on their own
        name = "shared" if shared else f"own-{index:02d}"
        path = group_file(tmp_path, name=name, note=f"n{index:02d}")
        # One in five dies in the middle of its first atomic write (temp written, not renamed).
        failpoint = "atomic-write=kill-after:1" if rng.random() < 0.2 else None
        jobs.append((name, f"n{index:02d}", failpoint, start(home, path, failpoint=failpoint)))
    outcomes = []
    for name, note, failpoint, process in jobs:
        out, err = process.communicate(timeout=300)
        outcomes.append((name, note, failpoint, process.returncode, out, err))

    killed = [o for o in outcomes if o[3] == -signal.SIGKILL]
    committed = [o for o in outcomes if o[3] == 0]
    assert killed, "the failpoint should have killed some writers"
    assert len(killed) + len(committed) == PROCESSES, [o for o in outcomes if o[3] not in (0, -signal.SIGKILL)]
    assert all(o[2] for o in killed)

    the_store = store.Store(home)
    registry = plugins.Registry(defaults={"instance-file": {"dir": str(home / "instances")}})
    local = controller.Controller(store=the_store, registry=registry)
    for name in the_store.names():  # every store file parses and is a whole Group
        assert the_store.load(name) is not None
    for name, _, _, _, _, _ in committed:
        assert the_store.load(name) is not None, f"committed group {name} was lost"
    shared = the_store.load("shared")
    assert shared is not None
    assert shared.spec.instance.properties["Note"] in {note for name, note, *_ in committed if name == "shared"}

    local.sync_all()  # takes the lock: cleans what killed writers left
    assert not [p for p in the_store.groups_dir.iterdir() if p.name.endswith(".tmp")]
    files = instance_files(home / "instances")
    for name in the_store.names():
        group = the_store.load(name)
        assert group is not None
        mine = [d for d in files.values() if d["Tags"]["infrakit.group"] == name]
        assert len(mine) == 1
        assert mine[0]["Tags"]["infrakit.config_sha"] == group.spec.config_sha


def test_the_last_writer_wins(tmp_path: Path) -> None:
    home = tmp_path / "home"
    for note in ("first", "second", "third"):
        assert start(home, group_file(tmp_path, name="g", note=note)).wait(timeout=60) == 0
    stored = store.Store(home).load("g")
    assert stored is not None
    assert stored.spec.instance.properties["Note"] == "third"
