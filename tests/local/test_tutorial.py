"""The InfraKit tutorial, command for command, on the local store (YAML and JSON forms)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES
from tests.local.conftest import Local

SHA1 = "x4nrsdaibscmj7awpkxzx5vvpt6pilw2"
SHA2 = "jpfedp4sefvncwye5b6yre5qoz2odtnd"


def tags(sha: str) -> str:
    return f"infrakit.config_sha={sha},infrakit.group=cattle,project=infrakit,tier=web"


@pytest.fixture(params=["yaml", "json"])
def configs(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, Path]:
    """cattle and cattle2, as the tutorial's JSON or as our manifests."""
    ext = request.param
    for name in ("cattle", "cattle2"):
        shutil.copy(EXAMPLES / f"{name}.{ext}", tmp_path / f"{name}.{ext}")
    return tmp_path / f"cattle.{ext}", tmp_path / f"cattle2.{ext}"


def test_tutorial(
    local: Local, configs: tuple[Path, Path], runner_factory: Callable[[], subprocess.Popen[str]]
) -> None:
    cattle, cattle2 = configs

    assert local("plugin", "ls").stdout.splitlines() == [
        "INTERFACE        LISTEN       NAME",
        "Group/0.1.0      (built-in)   group",
        "Metadata/0.1.0   (built-in)   group",
        "Instance/0.5.0   (built-in)   instance-docker",
        "Instance/0.5.0   (built-in)   instance-file",
        "Flavor/0.1.0     (built-in)   flavor-vanilla",
    ]
    assert local("instance-file", "describe").stdout.split() == ["ID", "LOGICAL", "TAGS"]

    assert local("commit", str(cattle)).stdout == "Committed cattle: Managing 5 instances\n"
    assert local("ls").stdout.split() == ["ID", "cattle"]
    rows = local.rows("describe", "cattle")
    assert len(rows) == 5
    assert all(logical == "-" and tag_text == tags(SHA1) for _, logical, tag_text in rows)
    first_ids = {row[0] for row in rows}
    assert local.files() == first_ids
    assert local.rows("instance-file", "describe") == sorted(rows)
    _assert_instance_file(local.instances / sorted(first_ids)[0], note="Instance properties version 1.0", sha=SHA1)

    # Free: stop managing, instances untouched; a new commit adopts them again.
    assert local("free", "cattle").stdout == "Freed cattle\n"
    assert local("ls", "-q").stdout == ""
    assert local.files() == first_ids
    assert local("commit", str(cattle)).stdout == "Committed cattle: Managing 5 instances\n"
    assert {row[0] for row in local.rows("describe", "cattle")} == first_ids

    # Pretend changes nothing.
    plan = "Performing a rolling update on 5 instances, then adding 5 instances to increase the group size to 10"
    assert local("commit", str(cattle2), "--pretend").stdout == f"Committing cattle would involve: {plan}\n"
    assert local.files() == first_ids

    assert local("commit", str(cattle2)).stdout == f"Committed cattle: {plan}\n"
    rows = local.rows("describe", "cattle")
    assert len(rows) == 10
    assert all(tag_text == tags(SHA2) for _, _, tag_text in rows)
    second_ids = {row[0] for row in rows}
    assert not second_ids & first_ids
    assert local.files() == second_ids
    assert local("commit", str(cattle2)).stdout == "Committed cattle: Noop\n"

    # Self-healing: remove two instance files while `run` watches.
    runner = runner_factory()
    lost = sorted(second_ids)[:2]
    for name in lost:
        (local.instances / name).unlink()
    healed = _wait_for(lambda: len(local.files()) == 10, timeout=10)
    assert healed, "the run loop did not replace the lost instances"
    after = {row[0] for row in local.rows("describe", "cattle")}
    assert after - second_ids and len(after - second_ids) == 2
    assert second_ids - after == set(lost)
    assert all(row[2] == tags(SHA2) for row in local.rows("describe", "cattle"))
    runner.send_signal(2)
    assert runner.wait(timeout=10) == 0

    # Destroy removes exactly this group's instances.
    other = local.home / "other.yaml"
    other.write_text(
        (EXAMPLES / "cattle.yaml").read_text().replace("name: cattle", "name: other").replace("size: 5", "size: 2")
    )
    local("commit", str(other))
    other_ids = {row[0] for row in local.rows("describe", "other")}
    assert local("destroy", "cattle").stdout == "Destroyed cattle: 10 instances\n"
    assert local.files() == other_ids
    assert local("ls").stdout.split() == ["ID", "other"]
    local("describe", "cattle", code=2)


def _assert_instance_file(path: Path, *, note: str, sha: str) -> None:
    document = json.loads(path.read_text())
    assert document["ID"] == path.name
    assert document["LogicalID"] is None
    assert document["Tags"] == {
        "infrakit.config_sha": sha,
        "infrakit.group": "cattle",
        "project": "infrakit",
        "tier": "web",
    }
    spec = document["Spec"]
    assert spec["Properties"] == {"Note": note}
    assert spec["Init"] == "docker pull nginx:alpine\ndocker run -d -p 80:80 nginx-alpine"
    assert spec["Attachments"] == [{"ID": "attachid", "Type": "attachtype"}]
    assert spec["Tags"] == document["Tags"]


def _wait_for(condition: Callable[[], bool], *, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False
