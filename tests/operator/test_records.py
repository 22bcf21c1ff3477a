"""The operator's store: a replica that lost the Lease writes nothing; the cache wakes only on what matters."""

from __future__ import annotations

from typing import Any

import pytest

from infrakit.cluster import records
from infrakit.runtime import stores


class FakeGroups:
    """Records what the store asks of the API (the real calls are tested on the API server)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def patch_status(self, namespace: str, name: str, status: Any) -> bool:
        self.calls.append(("status", status))
        return True

    def set_finalizers(
        self, namespace: str, name: str, finalizers: list[str], *, resource_version: str
    ) -> dict[str, Any] | None:
        self.calls.append(("finalizers", finalizers))
        return body(finalizers=tuple(finalizers), version=str(int(resource_version) + 1))

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        return {"metadata": {"resourceVersion": "9", "finalizers": ["infrakit.io/instances"]}}

    def post_event(self, body: Any, **event: Any) -> None:
        self.calls.append(("event", event["reason"]))


def body(
    *, generation: int = 1, finalizers: tuple[str, ...] = (), status: Any = None, version: str = "7"
) -> dict[str, Any]:
    return {
        "apiVersion": "infrakit.io/v1alpha1",
        "kind": "Group",
        "metadata": {
            "namespace": "team",
            "name": "web",
            "uid": "u1",
            "generation": generation,
            "resourceVersion": version,
            "finalizers": list(finalizers),
        },
        "spec": {},
        "status": status or {},
    }


def test_a_replica_that_lost_the_lease_writes_nothing() -> None:
    """Was: a replica that lost the Lease still wrote."""
    leader = True
    groups = FakeGroups()
    store = records.ClusterStore(groups, cluster="c1", may_write=lambda: leader)  # type: ignore[arg-type]
    store.observe(body())
    record = store.get(("team", "web"))
    assert record is not None
    leader = False
    for write in (
        lambda: store.write_status(record, {"replicas": 1}),
        lambda: store.guard(record),
        lambda: store.unguard(record),
        lambda: store.release(record),
    ):
        with pytest.raises(records.NotLeader):
            write()
    store.event(record, reason="Provisioned", message="x", force=True)
    assert groups.calls == []
    leader = True
    store.write_status(record, {"replicas": 1})
    assert groups.calls == [("status", {"replicas": 1})]


def test_only_what_matters_wakes_a_group() -> None:
    store = records.ClusterStore(FakeGroups(), cluster="c1")  # type: ignore[arg-type]
    assert store.observe(body())[1]  # new
    assert not store.observe(body(status={"replicas": 3}))[1]  # our own status write coming back
    assert store.observe(body(generation=2))[1]  # a spec change
    assert store.observe(body(generation=2, finalizers=("infrakit.io/instances",)))[1]
    assert store.observe(body(), deleted=True) == (("team", "web"), True)
    assert store.get(("team", "web")) is None


def test_our_own_finalizer_edit_wakes_nothing_but_what_follows_does() -> None:
    """The guard's edit came back as a watch event and synced every group a second time, for nothing."""
    store = records.ClusterStore(FakeGroups(), cluster="c1")  # type: ignore[arg-type]
    store.observe(body())
    record = store.get(("team", "web"))
    assert record is not None and store.guard(record)
    guarded = store.get(("team", "web"))
    assert guarded is not None and guarded.guarded and guarded.version == "8"  # the next sync starts from it
    assert not store.observe(body(finalizers=("infrakit.io/instances",), version="8"))[1]
    assert store.observe(body(generation=2, finalizers=("infrakit.io/instances",), version="9"))[1]


def test_a_patch_response_never_replaces_a_newer_watch_event() -> None:
    """The watch may bring a later version before the patch's response is read: the cache keeps the later one."""
    store = records.ClusterStore(FakeGroups(), cluster="c1")  # type: ignore[arg-type]

    class Racing(FakeGroups):
        def set_finalizers(
            self, namespace: str, name: str, finalizers: list[str], *, resource_version: str
        ) -> dict[str, Any] | None:
            store.observe(body(generation=2, finalizers=tuple(finalizers), version="9"))  # a spec change, already
            return super().set_finalizers(namespace, name, finalizers, resource_version=resource_version)

    store.groups = Racing()  # type: ignore[assignment]
    store.observe(body())
    record = store.get(("team", "web"))
    assert record is not None and store.guard(record)
    latest = store.get(("team", "web"))
    assert latest is not None and latest.version == "9" and latest.generation == 2


def test_namespace_globs_decide_what_is_ours() -> None:
    store = records.ClusterStore(FakeGroups(), cluster="c1", namespaces=("team-*", "ops"))  # type: ignore[arg-type]
    assert store.owns(("team-a", "x")) and store.owns(("ops", "x"))
    assert not store.owns(("other", "x")) and not store.owns(("opsx", "x"))
    assert records.ClusterStore(FakeGroups(), cluster="c1").owns(("anything", "x"))  # type: ignore[arg-type]


def test_a_stale_finalizer_write_is_a_conflict_not_a_failure() -> None:
    from infrakit.cluster import kubeapi

    class Conflicting(FakeGroups):
        def set_finalizers(
            self, namespace: str, name: str, finalizers: list[str], *, resource_version: str
        ) -> dict[str, Any] | None:
            raise kubeapi.ApiException(status=409, reason="Conflict")

    store = records.ClusterStore(Conflicting(), cluster="c1")  # type: ignore[arg-type]
    store.observe(body())
    record = store.get(("team", "web"))
    assert record is not None
    with pytest.raises(stores.Conflict):
        store.guard(record)
