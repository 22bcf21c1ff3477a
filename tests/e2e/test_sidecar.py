"""A Group whose instance plugin is a daemon beside the operator (the sidecar overlay's set-up).

In: an operator started with ``--plugins-dir D``, and ``infrakit-instance-file --name
instance-sidecar`` listening in ``D`` (a process here; a sidecar container in
``manifests/overlays/sidecar``); a Group naming ``instance-sidecar``.  Out: the
instance files the *daemon* writes in its own directory: made, healed when one is
deleted, removed when the Group is deleted.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import EXAMPLES
from tests.e2e.conftest import EXTERNAL, Groups, Operator, wait_until

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(EXTERNAL, reason="runs its own operator and daemon (the overlay deploys them in a cluster)"),
]


@pytest.fixture
def plugins_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ik-", dir="/tmp"))  # unix socket paths are short
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def sidecar_files(directory: Path, namespace: str) -> dict[str, dict[str, Any]]:
    found = {}
    for path in directory.glob("instance-*"):
        try:
            document = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        tags = document.get("Tags") or {}
        if tags.get("infrakit.group") == "cattle" and tags.get("infrakit.namespace") == namespace:
            found[path.name] = document
    return found


def test_group_through_a_sidecar_plugin(
    operator_factory: Any, groups: Groups, namespace: str, plugins_dir: Path, tmp_path: Path
) -> None:
    sidecar_dir = tmp_path / "sidecar-instances"
    log = (tmp_path / "sidecar.log").open("wb")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "infrakit.daemons", "instance-file", "--name", "instance-sidecar",
         "--dir", str(sidecar_dir)],
        env={**os.environ, "INFRAKIT_PLUGINS_DIR": str(plugins_dir)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_until((plugins_dir / "instance-sidecar").is_socket, timeout=60, what="the sidecar's socket")
        operator: Operator = operator_factory("--plugins-dir", str(plugins_dir))
        document = yaml.safe_load((EXAMPLES / "cattle.yaml").read_text())
        document["spec"]["instance"]["plugin"] = "instance-sidecar"
        manifest = tmp_path / "cattle.yaml"
        manifest.write_text(yaml.safe_dump(document))
        groups.apply(manifest)

        made = wait_until(lambda: len(f := sidecar_files(sidecar_dir, namespace)) == 5 and f, what="5 instances")
        assert operator.instances("cattle") == {}  # none by the built-in plugin
        wait_until(lambda: groups.condition("cattle", "Ready").get("status") == "True", what="Ready")

        victim = sorted(made)[0]
        (sidecar_dir / victim).unlink()
        healed = wait_until(
            lambda: len(f := sidecar_files(sidecar_dir, namespace)) == 5 and victim not in f and f,
            what="the deleted instance replaced",
        )
        assert len(set(healed) - set(made)) == 1

        groups.kubectl("delete", "group", "cattle", "--wait=true", "--timeout=60s")
        wait_until(lambda: sidecar_files(sidecar_dir, namespace) == {}, what="the instances removed")
    finally:
        daemon.terminate()
        try:
            daemon.wait(30)
        finally:
            if daemon.poll() is None:
                daemon.kill()
            log.close()
    assert daemon.returncode == 0
    assert not (plugins_dir / "instance-sidecar").exists()
