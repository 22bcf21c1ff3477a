"""Status stays small at any size: counts and conditions, under 16 KiB, ``kubectl describe`` under 100 lines.

In: status computed for groups of 1 to 10,000 instances (worst case: 19-digit IDs, every
instance outdated, long messages), and a Group on a real API server carrying it. Out:
the status's size, ``kubectl describe group``'s line count, and the remote plan made
from the counts alone (``commit --pretend``), compared with the plan from the real
members.
"""

from __future__ import annotations

import json

import pytest

from infrakit.core import instances, planning, specs, status
from tests.clusterfixtures import REPO_ROOT, Cluster
from tests.core.conftest import spec

SIZES = (0, 1, 1000, 10_000)


def members(count: int, *, up_to_date: int = 0, healthy: int | None = None) -> list[planning.Member]:
    healthy = count if healthy is None else healthy
    return [
        planning.Member(
            description=instances.Description(
                id=f"instance-{9_000_000_000_000_000_000 + i}", tags={instances.TAG_CONFIG_SHA: "x" * 32}
            ),
            health=instances.Health.HEALTHY if i < healthy else instances.Health.UNHEALTHY,
            up_to_date=i < up_to_date,
        )
        for i in range(count)
    ]


def compute(count: int, group: specs.GroupSpec | None = None) -> dict[str, object]:
    return status.compute(
        group or spec(size=count), members(count), planning.Plan(), now="2026-11-25T00:00:00Z", generation=7
    )


@pytest.mark.parametrize("count", SIZES)
def test_status_is_under_16_kib_at_any_size(count: int) -> None:
    document = compute(count)
    assert len(json.dumps(document)) < 16 * 1024
    assert document["replicas"] == count
    assert "instances" not in document


def test_a_failure_drops_the_list_an_earlier_version_wrote() -> None:
    legacy = {"replicas": 2, "instances": [{"id": "a"}, {"id": "b"}], "instancesTruncated": False}
    failed = status.with_failure(legacy, status.Failure(reason="ReconcileError", message="boom"), now="t", generation=3)
    assert "instances" not in failed and "instancesTruncated" not in failed
    assert failed["replicas"] == 2


@pytest.mark.parametrize(
    ("live", "outdated", "size"),
    [(10_000, 10_000, 10_000), (10_000, 3, 12_000), (10_000, 0, 9_000), (5, 5, 10), (7, 2, 0)],
)
def test_a_remote_plan_from_counts_is_the_plan_from_the_members(live: int, outdated: int, size: int) -> None:
    """``commit --pretend`` on a cluster: the words from status equal those from the real members."""
    old = spec(size=live, note="v1")
    real = [
        planning.Member(
            description=instances.Description(
                id=f"i-{n}", tags={instances.TAG_CONFIG_SHA: "old" if n < outdated else old.config_sha}
            ),
            health=instances.Health.HEALTHY,
            up_to_date=n >= outdated,
        )
        for n in range(live)
    ]
    document = status.compute(old, real, planning.Plan(), now="t")
    for new in (spec(size=size, note="v1"), spec(size=size, note="v2")):
        # The new spec judges the real members by its own hash, as the operator will.
        judged = [
            planning.Member(
                description=m.description,
                health=m.health,
                up_to_date=m.description.tags[instances.TAG_CONFIG_SHA] == new.config_sha,
            )
            for m in real
        ]
        expected = planning.plan(new, judged).explain(managed=True)
        assert planning.plan(new, status.members_from_status(new, document)).explain(managed=True) == expected


def test_pets_plans_from_counts_too() -> None:
    old = spec(logical_ids=("a", "b", "c"))
    real = members(3, up_to_date=3)
    document = status.compute(old, real, planning.Plan(), now="t")
    document["configHash"] = old.config_sha
    new = spec(logical_ids=("a", "b", "c", "d"), note="v2")
    seen = status.members_from_status(new, document, logical_ids=old.allocation.logical_ids)
    text = planning.plan(new, seen).explain(managed=True)
    assert text == "Performing a rolling update on 3 instances, then adding 1 instances to increase the group size to 4"
    replaced = spec(logical_ids=("a", "b", "d"), note="v1")
    seen = status.members_from_status(replaced, document, logical_ids=old.allocation.logical_ids)
    assert planning.plan(replaced, seen).explain(managed=True).startswith("Replacing logical IDs c with d")


@pytest.mark.cluster
def test_kubectl_describe_stays_short_at_a_thousand_and_ten_thousand(crd_installed: Cluster, namespace: str) -> None:
    crd_installed.kubectl("apply", "-n", namespace, "-f", str(REPO_ROOT / "examples" / "cattle.yaml"))
    for count in (1000, 10_000):
        patch = json.dumps({"status": compute(count)})
        crd_installed.kubectl(
            "patch", "group", "cattle", "-n", namespace, "--subresource=status", "--type=merge",
            "--patch-file=/dev/stdin", input=patch,
        )  # fmt: skip
        got = json.loads(crd_installed.kubectl("get", "group", "cattle", "-n", namespace, "-o", "json").stdout)
        assert got["status"]["replicas"] == count
        assert len(json.dumps(got["status"])) < 16 * 1024
        described = crd_installed.kubectl("describe", "group", "cattle", "-n", namespace).stdout
        assert len(described.splitlines()) < 100, described
        assert "Replicas:" in described and "Conditions:" in described


@pytest.mark.cluster
def test_the_api_server_prunes_a_list_an_earlier_version_wrote(crd_installed: Cluster, namespace: str) -> None:
    """Upgrading: the next status write of the operator leaves no stale list behind."""
    crd_installed.kubectl("apply", "-n", namespace, "-f", str(REPO_ROOT / "examples" / "cattle.yaml"))
    legacy = {"status": {"replicas": 1, "instances": [{"id": "instance-1"}], "instancesTruncated": False}}
    crd_installed.kubectl(
        "patch", "group", "cattle", "-n", namespace, "--subresource=status", "--type=merge",
        "--patch-file=/dev/stdin", input=json.dumps(legacy),
    )  # fmt: skip
    got = json.loads(crd_installed.kubectl("get", "group", "cattle", "-n", namespace, "-o", "json").stdout)
    assert got["status"] == {"replicas": 1}
