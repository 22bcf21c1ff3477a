"""Crash safety of the operator: SIGKILL it at 20 points of a scale-up and of a rolling update.

Each point is an instance-operation count (the ``instance-op`` failpoint). After each
crash a fresh operator (same identity, so it may take its own Lease at once, as a
restarted pod does) must converge to exactly the desired instances on the desired hash,
with no duplicates, no orphan or temp files, and status that lists exactly them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from infrakit import plugins
from infrakit.local import documents
from infrakit.runtime import engine
from tests.conftest import EXAMPLES
from tests.e2e.conftest import EXTERNAL, Groups, Operator, wait_until
from tests.reliability.conftest import SIZE, instance_files, representative

pytestmark = [pytest.mark.cluster, pytest.mark.skipif(EXTERNAL, reason="kills local operator processes")]

IDENTITY = ("--identity", "crash-suite", "--resync", "2")


def manifest(tmp: Path, name: str, *, note: str, size: int) -> Path:
    document = yaml.safe_load((EXAMPLES / "cattle.yaml").read_text())
    document["metadata"]["name"] = name
    document["spec"]["allocation"]["size"] = size
    document["spec"]["instance"]["properties"]["Note"] = note
    path = tmp / f"{name}-{note}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def converged(groups: Groups, operator: Operator, name: str, *, size: int, note: str) -> bool:
    files = operator.instances(name)
    if len(files) != size or any(d["Spec"]["Properties"]["Note"] != note for d in files.values()):
        return False
    body = groups.get(name)
    status = body.get("status") or {}
    return (
        status.get("observedGeneration") == body["metadata"]["generation"]
        and status.get("replicas") == size == status.get("updatedReplicas")
        and status.get("readyReplicas") == size
    )


def crash_and_recover(
    operator_factory: Callable[..., Operator],
    groups: Groups,
    tmp: Path,
    *,
    name: str,
    before: Path | None,
    after: Path,
    point: int,
    size: int,
) -> Operator:
    if before is not None:
        # The starting state, made in-process by the same engine (saves an operator start).
        (spec,) = documents.load_groups(before)
        # As the operator makes them: in this namespace, of this cluster (its identity is the
        # kube-system namespace's UID); an instance that names no cluster is none of its own.
        uid = groups.cluster.kubectl("get", "namespace", "kube-system", "-o", "jsonpath={.metadata.uid}").stdout
        spec = dataclasses.replace(spec, namespace=groups.namespace, cluster=uid.strip())
        registry = plugins.Registry(defaults={"instance-file": {"dir": str(tmp / "instances")}})
        engine.reconcile(spec, engine.resolve(spec, registry))
        groups.apply(before)
    groups.apply(after)
    # Not waiting for "acquired the lease": at an early point it may be dead before anyone looks.
    doomed = operator_factory(*IDENTITY, env={"INFRAKIT_FAILPOINTS": f"instance-op=kill-after:{point}"}, start=False)
    doomed.start(wait=False)
    wait_until(lambda: doomed.process is not None and doomed.process.poll() is not None, timeout=60, what="the kill")
    assert doomed.process is not None
    assert doomed.process.returncode == -9
    instance_files(doomed.instance_dir)  # right after the kill: nothing torn, no temp files
    revived = operator_factory(*IDENTITY)
    note = "v2" if before is not None else "v1"
    wait_until(lambda: converged(groups, revived, name, size=size, note=note), timeout=60, what="convergence")
    files = instance_files(revived.instance_dir)
    mine = {k: v for k, v in files.items() if v["Tags"]["infrakit.group"] == name}
    assert len(mine) == size
    assert len({d["ID"] for d in mine.values()}) == size
    revived.stop()
    # Release our finalizer now, so the namespace teardown need not wait for it.
    groups.kubectl("patch", "group", name, "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
    return revived


@pytest.mark.parametrize("point", representative(SIZE))
def test_scale_up(operator_factory: Callable[..., Operator], groups: Groups, tmp_path: Path, point: int) -> None:
    target = manifest(tmp_path, "crash", note="v1", size=SIZE)
    crash_and_recover(
        operator_factory, groups, tmp_path, name="crash", before=None, after=target, point=point, size=SIZE
    )
    # No orphans: every file in the directory is a counted member (status keeps counts only).
    assert len(instance_files(tmp_path / "instances")) == groups.status("crash")["replicas"] == SIZE


@pytest.mark.parametrize("point", representative(2 * SIZE))
def test_rolling_update(operator_factory: Callable[..., Operator], groups: Groups, tmp_path: Path, point: int) -> None:
    before = manifest(tmp_path, "crash", note="v1", size=SIZE)
    after = manifest(tmp_path, "crash", note="v2", size=SIZE)
    crash_and_recover(
        operator_factory, groups, tmp_path, name="crash", before=before, after=after, point=point, size=SIZE
    )
    assert len(instance_files(tmp_path / "instances")) == groups.status("crash")["replicas"] == SIZE
