"""Status stays small: 1,000 instances under 256 KiB, 10,000 still accepted by the API server."""

from __future__ import annotations

import json

import pytest

from infrakit.core import instances, planning, status
from tests.clusterfixtures import REPO_ROOT, Cluster
from tests.core.conftest import member, spec


def members(count: int) -> list[planning.Member]:
    # Worst case for size: 19-digit IDs, every instance outdated (its own hash spelled out).
    return [
        planning.Member(
            description=instances.Description(
                id=f"instance-{9_000_000_000_000_000_000 + i}", tags={instances.TAG_CONFIG_SHA: "x" * 32}
            ),
            health=instances.Health.HEALTHY,
            up_to_date=False,
        )
        for i in range(count)
    ]


def compute(count: int) -> dict[str, object]:
    return status.compute(spec(size=count), members(count), planning.Plan(), now="2026-11-25T00:00:00Z", generation=7)


def test_a_thousand_instances_fit_in_256_kib() -> None:
    document = compute(1000)
    assert len(document["instances"]) == 1000  # type: ignore[arg-type]
    assert document["instancesTruncated"] is False
    assert len(json.dumps(document)) < 256 * 1024


def test_ten_thousand_are_capped_and_say_so() -> None:
    document = compute(10_000)
    assert len(document["instances"]) == status.MAX_LISTED_INSTANCES  # type: ignore[arg-type]
    assert document["instancesTruncated"] is True
    assert document["replicas"] == 10_000
    assert len(json.dumps(document)) < 256 * 1024


def test_members_round_trip_through_status() -> None:
    group = spec(size=2)
    mixed = [member("instance-1"), member("instance-2", up_to_date=False)]
    mixed[0] = planning.Member(
        description=instances.Description(id="instance-1", tags={instances.TAG_CONFIG_SHA: group.config_sha}),
        health=instances.Health.HEALTHY,
        up_to_date=True,
    )
    document = status.compute(group, mixed, planning.Plan(), now="t")
    back = status.members_from_status(group, document)
    assert [(m.id, m.up_to_date, m.health) for m in back] == [(m.id, m.up_to_date, m.health) for m in mixed]


@pytest.mark.cluster
def test_the_api_server_accepts_a_ten_thousand_instance_status(crd_installed: Cluster, namespace: str) -> None:
    crd_installed.kubectl("apply", "-n", namespace, "-f", str(REPO_ROOT / "examples" / "cattle.yaml"))
    patch = json.dumps({"status": compute(10_000)})
    crd_installed.kubectl(
        "patch",
        "group",
        "cattle",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "--patch-file=/dev/stdin",
        input=patch,
    )
    got = json.loads(crd_installed.kubectl("get", "group", "cattle", "-n", namespace, "-o", "json").stdout)
    assert got["status"]["replicas"] == 10_000
    assert len(got["status"]["instances"]) == status.MAX_LISTED_INSTANCES
    assert got["status"]["instances"][0]["configHash"] == "x" * 32  # nothing pruned
