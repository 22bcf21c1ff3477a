"""Crash safety of the local mode: SIGKILL ``infrakit-local commit`` at 20 points.

Each point is an instance operation count (the ``instance-op`` failpoint). After each
crash, ``infrakit-local run``'s unit of work (one reconcile of every stored group)
must leave exactly the desired instances, all on the desired hash, no duplicate
logical IDs, no orphan or temp files, and a store whose status matches.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from infrakit import plugins
from infrakit.core import specs
from infrakit.local import controller, documents, store
from tests.conftest import EXAMPLES
from tests.reliability.conftest import LOCAL_POINTS, SIZE, instance_files, kill_points


def manifest(tmp: Path, *, note: str, size: int | None = None, pets: int | None = None) -> Path:
    document = yaml.safe_load((EXAMPLES / "cattle.yaml").read_text())
    document["spec"]["instance"]["properties"]["Note"] = note
    if pets:
        document["spec"]["allocation"] = {"logicalIDs": [f"pet-{i:03d}" for i in range(pets)]}
    else:
        document["spec"]["allocation"] = {"size": size}
    path = tmp / f"{note}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def commit(home: Path, path: Path, *, kill_after: int | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "INFRAKIT_HOME": str(home)}
    env.pop("INFRAKIT_INSTANCE_DIR", None)
    if kill_after is not None:
        env["INFRAKIT_FAILPOINTS"] = f"instance-op=kill-after:{kill_after}"
    return subprocess.run(
        [sys.executable, "-m", "infrakit.cli", "commit", str(path)],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )


def recover_and_check(home: Path, expected: Path) -> None:
    (spec,) = documents.load_groups(expected)
    before = instance_files(home / "instances")  # nothing torn, no temp files, even right after the kill
    assert all(d["ID"] == name for name, d in before.items())
    registry = plugins.Registry(defaults={"instance-file": {"dir": str(home / "instances")}})
    local = controller.Controller(store=store.Store(home), registry=registry)
    results = local.sync_all()
    assert not any(r.failure for r in results.values()), results
    files = instance_files(home / "instances")
    assert len(files) == spec.desired_size
    assert {d["Tags"]["infrakit.config_sha"] for d in files.values()} == {spec.config_sha}
    assert all(d["Tags"]["infrakit.group"] == "cattle" for d in files.values())
    if spec.is_pets:
        logical = sorted(d["LogicalID"] for d in files.values())
        assert logical == sorted(spec.allocation.logical_ids or ())  # no duplicates, none missing
    stored = local.store.load("cattle")
    assert stored is not None
    assert stored.spec == spec
    assert stored.status["replicas"] == stored.status["updatedReplicas"] == spec.desired_size
    assert stored.status["replicas"] == len(files)  # status keeps counts only; the files are the members


@pytest.mark.parametrize("point", kill_points(SIZE, LOCAL_POINTS))
def test_scale_up(tmp_path: Path, point: int) -> None:
    home = tmp_path / "home"
    target = manifest(tmp_path, note="v1", size=SIZE)
    crashed = commit(home, target, kill_after=point)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    recover_and_check(home, target)


@pytest.mark.parametrize("point", kill_points(2 * SIZE, LOCAL_POINTS))
def test_rolling_update(tmp_path: Path, point: int) -> None:
    home = tmp_path / "home"
    assert commit(home, manifest(tmp_path, note="v1", size=SIZE)).returncode == 0
    target = manifest(tmp_path, note="v2", size=SIZE)
    crashed = commit(home, target, kill_after=point)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    recover_and_check(home, target)


@pytest.mark.parametrize("point", kill_points(2 * (SIZE // 4), LOCAL_POINTS))
def test_rolling_update_of_pets(tmp_path: Path, point: int) -> None:
    home = tmp_path / "home"
    assert commit(home, manifest(tmp_path, note="v1", pets=SIZE // 4)).returncode == 0
    target = manifest(tmp_path, note="v2", pets=SIZE // 4)
    crashed = commit(home, target, kill_after=point)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    recover_and_check(home, target)


def test_the_spec_is_recorded_before_any_instance_changes(tmp_path: Path) -> None:
    """A crash at the first operation still leaves the new intent in the store."""
    home = tmp_path / "home"
    target = manifest(tmp_path, note="v1", size=3)
    assert commit(home, target, kill_after=1).returncode == -signal.SIGKILL
    stored = store.Store(home).load("cattle")
    assert stored is not None
    assert stored.spec == specs.parse_document(yaml.safe_load(target.read_text()))
