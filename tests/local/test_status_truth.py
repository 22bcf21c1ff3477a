"""Status never lies in the local mode: a failing volume shows as Ready=False, and clears.

Was: the local status kept claiming convergence (the store only learnt about successes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.conftest import EXAMPLES
from tests.local.conftest import Local
from tests.volumes import full, read_only


def ready(local: Local) -> dict[str, Any]:
    status = yaml.safe_load(local("inspect", "cattle").stdout)["status"]
    return next(c for c in status["conditions"] if c["type"] == "Ready") | {"replicas": status["replicas"]}


def scaled(tmp_path: Path, size: int) -> Path:
    path = tmp_path / f"cattle-{size}.yaml"
    path.write_text((EXAMPLES / "cattle.yaml").read_text().replace("size: 5", f"size: {size}"))
    return path


def test_a_read_only_volume_is_ready_false_and_recovers(local: Local, tmp_path: Path) -> None:
    local("commit", str(scaled(tmp_path, 2)))
    with read_only(local.instances):
        failed = local("commit", str(scaled(tmp_path, 4)), code=1)
        assert "Operation not permitted" in failed.stderr and len(failed.stderr.splitlines()) == 1
        condition = ready(local)
        assert (condition["status"], condition["reason"], condition["replicas"]) == ("False", "ReconcileError", 2)
        assert "Operation not permitted" in condition["message"]
    local("commit", str(scaled(tmp_path, 4)))
    condition = ready(local)
    assert (condition["status"], condition["reason"], condition["replicas"]) == ("True", "Converged", 4)


def test_a_full_volume_is_ready_false_and_recovers(local: Local, tmp_path: Path) -> None:
    local.instances.mkdir(parents=True)
    with full(local.instances):
        failed = local("commit", str(scaled(tmp_path, 3)), code=1)
        assert "No space left on device" in failed.stderr
        condition = ready(local)
        assert (condition["status"], condition["reason"]) == ("False", "ReconcileError")
        assert "No space left on device" in condition["message"]
        assert condition["replicas"] == len(list(local.instances.glob("instance-*")))
    local("commit", str(scaled(tmp_path, 3)))
    assert ready(local)["status"] == "True"
