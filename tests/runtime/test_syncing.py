"""One sync, in every mode: status never lies, deletion never leaks, failures stay per group.

Each test drives ``Syncer.sync`` over the in-memory store and plugin; several reproduce
defects of the operator's old hand-built runtime (named in the docstrings).
"""

from __future__ import annotations

import dataclasses

import pytest

from infrakit import plugins
from infrakit.core import instances
from infrakit.runtime import stores
from tests.runtime.conftest import World, group

KEY = ("team", "web")


def test_converges_and_reports_from_what_it_observed(world: World) -> None:
    world.store.apply(group(size=3))
    result = world.syncer.sync(KEY)
    assert result.converged and len(world.members()) == 3
    record = world.store.records[KEY]
    assert record.guarded  # the finalizer came before the first instance
    assert record.status["replicas"] == record.status["readyReplicas"] == 3
    assert world.store.condition(KEY) | {"lastTransitionTime": "T"} == {
        "type": "Ready",
        "status": "True",
        "reason": "Converged",
        "message": "3 of 3 instances up to date and healthy",
        "lastTransitionTime": "T",
        "observedGeneration": 1,
    }


def test_a_failing_plugin_shows_ready_false_with_the_cause_and_recovers(world: World) -> None:
    """Was: a read-only or full volume left Ready=True, Converged and no Warning event."""
    world.store.apply(group(size=2))
    world.syncer.sync(KEY)
    world.store.apply(group(size=4))
    world.plugin.faults["provision"] = plugins.PluginError("cannot write instance: No space left on device")
    result = world.syncer.sync(KEY)
    assert result.failure is not None and result.retry
    ready = world.store.condition(KEY)
    assert (ready["status"], ready["reason"]) == ("False", "ReconcileError")
    assert "No space left on device" in ready["message"]
    assert ready["observedGeneration"] == 2
    assert world.store.records[KEY].status["replicas"] == 2  # observed, not planned
    assert any(reason == "ReconcileError" and warning for _, reason, _, warning in world.store.events)

    del world.plugin.faults["provision"]
    assert world.syncer.sync(KEY).converged
    assert world.store.condition(KEY)["status"] == "True"
    assert world.store.records[KEY].status["replicas"] == 4


def test_counts_come_from_the_members_even_when_a_sync_fails_half_way(world: World) -> None:
    world.store.apply(group(size=5))
    world.plugin.faults["provision"] = plugins.PluginError("quota exceeded")
    world.plugin.fault_after["provision"] = 2  # two succeed, the third fails
    world.syncer.sync(KEY)
    status = world.store.records[KEY].status
    assert status["replicas"] == 2 == len(world.members())
    assert world.store.condition(KEY)["reason"] == "ReconcileError"


def test_a_failing_describe_is_a_reconcile_error_not_an_empty_group(world: World) -> None:
    world.store.apply(group(size=2))
    world.syncer.sync(KEY)
    world.plugin.faults["describe"] = OSError(5, "Input/output error")
    result = world.syncer.sync(KEY)
    assert result.failure is not None and "Input/output error" in result.failure.message
    assert len(world.plugin.instances) == 2  # nothing provisioned on a blind pass
    assert world.store.records[KEY].status["replicas"] == 2  # the last counts seen stand


def test_an_interrupted_sync_never_leaves_a_status_claiming_convergence(world: World) -> None:
    """Was: Ctrl-C mid-roll left Ready=True Converged while instances had the old hash."""
    world.store.apply(group(size=4, note="v1"))
    world.syncer.sync(KEY)
    world.store.apply(group(size=4, note="v2"))
    world.plugin.faults["provision"] = KeyboardInterrupt()
    world.plugin.fault_after["provision"] = 1
    with pytest.raises(KeyboardInterrupt):
        world.syncer.sync(KEY)
    ready = world.store.condition(KEY)
    assert ready["status"] == "False" and "interrupted" in ready["reason"] + ready["message"]
    assert world.store.records[KEY].status["updatedReplicas"] == 1


def test_an_invalid_spec_is_reported_and_nothing_is_touched(world: World) -> None:
    world.store.apply(group(size=2))
    world.syncer.sync(KEY)
    world.store.apply(group(size=2, flavor={"Tags": {"tier": 1}}))  # vanilla tags must be strings
    before = dict(world.plugin.instances)
    result = world.syncer.sync(KEY)
    assert result.failure is not None and not result.retry
    ready = world.store.condition(KEY)
    assert (ready["status"], ready["reason"], ready["observedGeneration"]) == ("False", "InvalidSpec", 2)
    assert "spec.flavor.properties.Tags" in ready["message"]
    assert world.plugin.instances == before
    assert [e for e in world.store.events if e[1] == "InvalidSpec" and e[3]]


def test_an_unknown_plugin_is_invalid_spec(world: World) -> None:
    world.store.apply(group(instance_plugin="instance-nope"))
    world.syncer.sync(KEY)
    assert world.store.condition(KEY)["reason"] == "InvalidSpec"
    assert "instance-nope" in world.store.condition(KEY)["message"]


def test_a_damaged_manifest_is_invalid_spec_for_that_group_only(world: World) -> None:
    world.store.put(("team", "broken"), {"apiVersion": "infrakit.io/v1alpha1", "kind": "Group", "spec": {}})
    world.store.apply(group(size=1))
    world.syncer.sync(("team", "broken"))
    assert world.store.condition(("team", "broken"))["reason"] == "InvalidSpec"
    assert world.syncer.sync(KEY).converged


def test_deletion_destroys_exactly_the_group_then_releases(world: World) -> None:
    world.store.apply(group(size=3))
    world.store.apply(group(name="other", size=2))
    world.syncer.sync(KEY)
    world.syncer.sync(("team", "other"))
    world.store.delete(KEY)
    result = world.syncer.sync(KEY)
    assert result.released and KEY not in world.store.records
    assert world.members() == [] and len(world.members("other")) == 2
    assert any(reason == "Destroyed" for _, reason, _, _ in world.store.events)


def test_deletion_with_invalid_flavor_properties_still_destroys_the_instances(world: World) -> None:
    """Was: the Group was released with all its instances left behind."""
    world.store.apply(group(size=2))
    world.syncer.sync(KEY)
    world.store.apply(group(size=2, flavor={"Nonsense": True}))
    world.store.delete(KEY)
    world.syncer.sync(KEY)
    assert KEY not in world.store.records and world.members() == []


def test_orphaned_deletion_marks_the_instances_and_leaves_them(world: World) -> None:
    world.store.apply(group(size=2))
    world.syncer.sync(KEY)
    world.store.delete(KEY, orphan=True)
    world.syncer.sync(KEY)
    assert KEY not in world.store.records
    left = world.plugin.describe({"infrakit.group": "web"})
    assert len(left) == 2 and all(d.tags[instances.TAG_ORPHANED] == "true" for d in left)
    assert any(reason == "Orphaned" for _, reason, _, _ in world.store.events)
    # The collector leaves them alone...
    assert world.syncer.collect_dangling(world.plugin) == 0
    # ... and a new group of that name adopts them.
    world.store.apply(group(size=2))
    world.syncer.sync(KEY)
    assert len(world.members()) == 2 and world.plugin.operations == 2


def test_a_group_deleted_before_it_could_be_guarded_gets_no_instance(world: World) -> None:
    """Was: the 404 from adding the finalizer was ignored and the group provisioned anyway."""
    world.store.apply(group(size=3))
    stale = world.store.records[KEY]
    world.store.delete(KEY)  # unguarded: gone at once
    world.store.records[KEY] = stale  # ... but the cache still has it
    world.store.guard = lambda record: False  # type: ignore[method-assign]
    result = world.syncer.sync(KEY)
    assert result.gone and world.plugin.instances == {}


def test_dangling_instances_of_a_vanished_group_are_collected(world: World) -> None:
    """Was: 11-18 of 20 Groups created and deleted within milliseconds left their instances forever."""
    world.store.apply(group(size=3))
    world.syncer.sync(KEY)
    world.store.apply(group(name="keep", size=1))
    world.syncer.sync(("team", "keep"))
    world.store.records.pop(KEY)  # deleted with our finalizer somehow gone: the instances dangle
    result = world.syncer.sync(KEY)  # the watch's DELETED event wakes the key
    assert result.gone and world.members() == []
    assert len(world.members("keep")) == 1


def test_the_resync_sweep_collects_only_what_is_truly_gone_and_ours(world: World) -> None:
    spec = group(size=1)
    ours = {"infrakit.cluster": "test-cluster"}
    for name, namespace, cluster in [
        ("gone", "team", ours),
        ("alive", "team", ours),
        ("elsewhere", "", ours),
        ("gone-elsewhere", "team", {"infrakit.cluster": "another-cluster"}),  # another cluster's: never ours
        ("gone-untagged", "team", {}),  # names no cluster: not provably ours
    ]:
        world.plugin.provision(
            instances.InstanceSpec(
                tags={"infrakit.group": name, **({"infrakit.namespace": namespace} if namespace else {}), **cluster}
            )
        )
    world.store.apply(dataclasses.replace(spec, name="alive"))
    world.store.hidden.add(("team", "alive"))  # the cache has not seen it yet: the server has
    assert world.syncer.collect_dangling(world.plugin) == 1
    left = {d.tags["infrakit.group"] for d in world.plugin.describe({})}
    assert left == {"alive", "elsewhere", "gone-elsewhere", "gone-untagged"}


def test_nothing_is_collected_where_the_store_says_so(world: World) -> None:
    world.store.collects_garbage = False
    world.plugin.provision(instances.InstanceSpec(tags={"infrakit.group": "x", "infrakit.namespace": "team"}))
    assert world.syncer.collect_dangling(world.plugin) == 0 and len(world.plugin.instances) == 1


def test_a_local_group_never_takes_a_cluster_groups_instances(world: World) -> None:
    """Was: local `cattle` adopted, rolled and destroyed every cluster group named `cattle`."""
    world.store.namespaced = False
    cluster_spec = group(name="cattle", size=5)
    for _ in range(5):
        world.plugin.provision(instances.InstanceSpec(tags={"infrakit.group": "cattle", "infrakit.namespace": "team"}))
    world.store.apply(group(name="cattle", namespace=None, size=2))
    world.syncer.sync(("", "cattle"))
    assert len(world.plugin.instances) == 7
    world.store.delete(("", "cattle"))
    world.syncer.sync(("", "cattle"))
    assert len(world.plugin.describe({"infrakit.namespace": "team"})) == cluster_spec.desired_size


def test_a_heal_names_what_was_lost_and_what_replaced_it(world: World) -> None:
    world.store.apply(group(size=3))
    world.syncer.sync(KEY)
    lost = world.members()[0]
    world.plugin.lose(lost)
    result = world.syncer.sync(KEY)
    made = [s.instance_id for s in result.steps if s.action == "provision"]
    messages = [m for _, reason, m, _ in world.store.events if reason == "InstancesLost"]
    assert messages == [f"lost {lost}; replaced by {made[0]}"]


def test_paused_groups_are_observed_never_changed(world: World) -> None:
    world.store.apply(group(size=2, paused=True))
    world.syncer.sync(KEY)
    assert world.plugin.instances == {}
    assert world.store.condition(KEY)["reason"] == "Paused"


def test_a_write_race_requeues_without_reporting_a_failure(world: World) -> None:
    world.store.apply(group(size=1))

    def conflict(record: stores.Record) -> bool:
        raise stores.Conflict("changed meanwhile")

    world.store.guard = conflict  # type: ignore[method-assign]
    result = world.syncer.sync(KEY)
    assert result.failure is None and result.requeue_after is not None
    assert world.plugin.instances == {} and world.store.condition(KEY) == {}


def test_a_store_that_cannot_write_status_raises_for_the_runtime_to_retry(world: World) -> None:
    world.store.apply(group(size=1))
    world.store.fail_writes = RuntimeError("API server unavailable")
    with pytest.raises(RuntimeError):
        world.syncer.sync(KEY)


def test_the_guard_is_dropped_when_no_instance_is_left(world: World) -> None:
    world.store.apply(group(size=2))
    world.syncer.sync(KEY)
    assert world.store.records[KEY].guarded
    world.store.apply(group(size=0))
    world.syncer.sync(KEY)  # destroys the two
    world.syncer.sync(KEY)  # sees none: lets the record go without us
    assert not world.store.records[KEY].guarded


def test_a_bootstrap_instance_is_adopted_with_an_event_and_counted_in_status(world: World) -> None:
    """Was: an instance tagged infrakit.config_sha=bootstrap (made outside InfraKit) was destroyed."""
    tags = {
        "infrakit.group": "web",
        "infrakit.namespace": "team",
        "infrakit.cluster": "test-cluster",
        "infrakit.config_sha": "bootstrap",
    }
    boot = world.plugin.provision(instances.InstanceSpec(tags=tags))
    world.store.apply(group(size=2))
    result = world.syncer.sync(KEY)
    assert result.converged and boot in world.members() and len(world.members()) == 2
    sha = result.spec.config_sha if result.spec else ""
    assert world.plugin.instances[boot][0].tags["infrakit.config_sha"] == sha
    messages = [m for _, reason, m, _ in world.store.events if reason == "Adopted"]
    assert messages == [
        f"adopted 1 instances made outside InfraKit (infrakit.config_sha=bootstrap): labelled with config {sha}"
    ]
    assert world.store.condition(KEY)["reason"] == "Converged"
