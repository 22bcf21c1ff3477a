"""Ownership and memory: what a sync may touch, and what it may call lost.

In: two syncers over one store play two processes (``infrakit-local commit`` and the group
daemon; two operator replicas; two clusters' operators sharing one instance plugin).
Out: which instances each touched, and the events each told (issue 19, classes A, B, C, I).
"""

from __future__ import annotations

from typing import Any

from infrakit import plugins
from infrakit.core import instances
from infrakit.runtime import owners, running, syncing
from infrakit.testing import memory, stores
from tests.runtime.conftest import group
from tests.runtime.test_running import eventually, run_with

KEY = ("team", "web")
LOCAL = ("", "web")


def syncer(store: stores.MemoryStore, plugin: memory.MemoryPlugin, **extra: Any) -> syncing.Syncer:
    registry = plugins.Registry(instances={"instance-memory": lambda options: plugin})
    return syncing.Syncer(store=store, registry=registry, index=owners.Owners(), clock=lambda: "T", **extra)


def lost_events(store: stores.MemoryStore) -> list[str]:
    return [message for _, reason, message, _ in store.events if reason == "InstancesLost"]


class Recorder:
    """A publisher that keeps what was published (topic, InstanceID)."""

    def __init__(self) -> None:
        self.published: list[tuple[str, str | None]] = []

    def publish(self, topic: str, *, type: str, data: Any) -> None:
        self.published.append((topic, data.get("InstanceID")))

    def of(self, topic: str) -> list[str | None]:
        return [instance for t, instance in self.published if t == topic]


# -- A: lost means lost, whichever process acted ------------------------------------------------


def local_world() -> tuple[stores.MemoryStore, memory.MemoryPlugin, syncing.Syncer, syncing.Syncer, Recorder]:
    store = stores.MemoryStore(namespaced=False, collects_garbage=False, shared=True)
    plugin = memory.MemoryPlugin()
    daemon_news = Recorder()
    daemon = syncer(store, plugin, publisher=daemon_news)  # type: ignore[arg-type]
    commit = syncer(store, plugin)
    return store, plugin, daemon, commit, daemon_news


def test_what_another_controller_destroyed_on_purpose_is_never_lost() -> None:
    """Was: the group daemon beside `commit` called the 10 instances a roll + scale-down removed lost."""
    store, _plugin, daemon, commit, news = local_world()
    store.apply(group(namespace=None, size=10, note="v1"))
    assert daemon.sync(LOCAL).converged
    store.apply(group(namespace=None, size=6, note="v2"))  # a roll of 6 and a scale-down of 4
    result = commit.sync(LOCAL)
    while not result.converged:
        result = commit.sync(LOCAL)
    assert daemon.sync(LOCAL).converged
    assert lost_events(store) == [] and news.of("web/instance/lost") == []


def test_a_loss_after_another_controller_acted_is_named_once_by_whoever_sees_it() -> None:
    store, plugin, daemon, commit, news = local_world()
    store.apply(group(namespace=None, size=3))
    daemon.sync(LOCAL)
    store.apply(group(namespace=None, size=5))
    commit.sync(LOCAL)  # made two the daemon never saw
    made_by_commit = sorted(plugin.instances)[-1]
    plugin.lose(made_by_commit)
    daemon.sync(LOCAL)
    assert news.of("web/instance/lost") == [made_by_commit]
    assert len(lost_events(store)) == 1 and made_by_commit in lost_events(store)[0]
    commit.sync(LOCAL)  # knows it from the ledger: not lost a second time
    assert len(lost_events(store)) == 1


def test_a_fresh_process_names_a_loss_it_can_prove_from_the_ledger() -> None:
    store, plugin, daemon, _, _ = local_world()
    store.apply(group(namespace=None, size=3))
    daemon.sync(LOCAL)
    victim = sorted(plugin.instances)[0]
    plugin.lose(victim)
    fresh = syncer(store, plugin)  # a new `infrakit-local commit`
    fresh.sync(LOCAL)
    assert len(lost_events(store)) == 1 and victim in lost_events(store)[0]


def test_without_a_memory_nothing_is_called_lost_but_the_group_heals() -> None:
    store, plugin, daemon, commit, news = local_world()
    store.apply(group(namespace=None, size=3))
    daemon.sync(LOCAL)
    store.apply(group(namespace=None, size=2))
    commit.sync(LOCAL)
    assert isinstance(store.ledger, stores.MemoryLedger)
    store.ledger.drop(LOCAL)  # the ledger is gone: nothing proves what the group had
    plugin.lose(sorted(plugin.instances)[0])
    daemon.sync(LOCAL)
    assert len(plugin.instances) == 2
    assert lost_events(store) == [] and news.of("web/instance/lost") == []


def test_a_crash_between_the_intent_and_the_destroy_leaves_no_false_loss() -> None:
    """Destroys are recorded before they happen; one that never happened is simply seen again."""
    store, plugin, daemon, commit, _ = local_world()
    store.apply(group(namespace=None, size=4))
    daemon.sync(LOCAL)
    store.apply(group(namespace=None, size=2))
    plugin.faults["destroy"] = RuntimeError("killed")
    plugin.fault_after["destroy"] = 1  # the first destroy happens, the second "crashes"
    assert commit.sync(LOCAL).failure is not None
    del plugin.faults["destroy"]
    assert daemon.sync(LOCAL).converged
    assert lost_events(store) == []


def test_a_replica_that_regains_the_lease_calls_nothing_lost_that_the_other_replaced() -> None:
    """Was: a replica that led, lost the Lease and got it back named the 8 instances the other rolled."""
    store = stores.MemoryStore()  # a cluster: no ledger, one acting replica at a time
    plugin = memory.MemoryPlugin()
    first, second = syncer(store, plugin), syncer(store, plugin)
    store.apply(group(size=8, note="v1"))
    assert first.sync(KEY).converged
    store.apply(group(size=8, note="v2"))  # rolled by the second while the first was stopped
    while not second.sync(KEY).converged:
        pass
    leader = False
    runtime = running.Runtime(syncer=first, resync=3600, may_act=lambda: leader)

    async def body() -> None:
        nonlocal leader
        leader = True
        runtime.elected()  # what the elector calls when the Lease is back
        await eventually(lambda: runtime.synced >= 1)

    run_with(runtime, body)
    assert lost_events(store) == []
    victim = sorted(plugin.instances)[0]
    plugin.lose(victim)
    first.sync(KEY)
    assert len(lost_events(store)) == 1 and victim in lost_events(store)[0]


def test_an_unhealthy_instance_is_announced_once_not_at_every_sync() -> None:
    """Was: 2 unhealthy instances gave 0, 2, 4 `instance/unhealthy` events over three syncs."""
    store = stores.MemoryStore(namespaced=False, collects_garbage=False, shared=True)
    plugin = memory.MemoryPlugin()
    news = Recorder()
    one = syncer(store, plugin, publisher=news)  # type: ignore[arg-type]
    store.apply(group(namespace=None, size=3))
    one.sync(LOCAL)
    sick = sorted(plugin.instances)[:2]
    health: dict[str, instances.Health] = dict.fromkeys(sick, instances.Health.UNHEALTHY)
    flavor = one.registry.flavor("flavor-vanilla")
    original = flavor.healthy
    flavor.healthy = lambda properties, d: health.get(d.id, original(properties, d))  # type: ignore[method-assign]
    for _ in range(3):
        one.sync(LOCAL)
    assert sorted(i for i in news.of("web/instance/unhealthy") if i) == sick
    health.clear()
    one.sync(LOCAL)
    health.update({sick[0]: instances.Health.UNHEALTHY})  # sick again after being healthy: news again
    one.sync(LOCAL)
    assert sorted(i for i in news.of("web/instance/unhealthy") if i) == sorted([*sick, sick[0]])


# -- B: a cluster touches only its own instances --------------------------------------------------


def test_two_clusters_sharing_one_plugin_never_touch_each_others_instances() -> None:
    """Was: cluster 2's operator found cluster 1's Group 404 and destroyed its 5 instances."""
    plugin = memory.MemoryPlugin()
    one, two = stores.MemoryStore(cluster="uid-1"), stores.MemoryStore(cluster="uid-2")
    first, second = syncer(one, plugin), syncer(two, plugin)
    one.apply(group(size=5))
    assert first.sync(KEY).converged
    mine = set(plugin.instances)
    assert second.sync(KEY).gone  # no such Group in cluster 2: nothing of cluster 1's is collected
    assert second.collect_dangling(plugin) == 0
    assert set(plugin.instances) == mine
    two.apply(group(size=3, note="other"))  # the same namespace and name in cluster 2
    assert second.sync(KEY).converged
    assert first.sync(KEY).converged  # neither adopts, rolls nor scales the other's
    by_cluster: dict[str, set[str]] = {"uid-1": set(), "uid-2": set()}
    for instance_id, (description, _) in plugin.instances.items():
        by_cluster[description.tags["infrakit.cluster"]].add(instance_id)
    assert by_cluster["uid-1"] == mine and len(by_cluster["uid-2"]) == 3
    one.delete(KEY)
    first.sync(KEY)  # tears down its own 5 only
    assert {d.tags["infrakit.cluster"] for d, _ in plugin.instances.values()} == {"uid-2"}


def test_instances_naming_no_cluster_are_never_a_cluster_groups() -> None:
    """An instance of the local store (or of an operator before cluster tags) is not provably ours."""
    plugin = memory.MemoryPlugin()
    store = stores.MemoryStore(cluster="uid-1")
    legacy = plugin.provision(
        instances.InstanceSpec(tags={"infrakit.group": "web", "infrakit.namespace": "team", "infrakit.config_sha": "x"})
    )
    store.apply(group(size=1))
    one = syncer(store, plugin)
    assert one.sync(KEY).converged
    assert legacy in plugin.instances and len(plugin.instances) == 2
    store.delete(KEY)
    one.sync(KEY)
    assert list(plugin.instances) == [legacy]


# -- C: collection reaches every plugin the operator may have used --------------------------------


def test_a_group_deleted_while_no_operator_ran_is_collected_from_a_plugin_not_yet_made() -> None:
    plugin = memory.MemoryPlugin()
    leftovers = [
        plugin.provision(
            instances.InstanceSpec(
                tags={"infrakit.group": "gone", "infrakit.namespace": "team", "infrakit.cluster": "test-cluster"}
            )
        )
        for _ in range(3)
    ]
    kept = plugin.provision(
        instances.InstanceSpec(
            tags={"infrakit.group": "gone", "infrakit.namespace": "team", "infrakit.cluster": "another"}
        )
    )
    store = stores.MemoryStore()
    fresh = syncer(store, plugin)  # a restarted operator: it has made no plugin yet
    assert fresh.registry.instance_plugins() == []
    runtime = running.Runtime(syncer=fresh, resync=3600, discover=lambda: ["instance-memory"])

    async def body() -> None:
        await eventually(lambda: not set(leftovers) & set(plugin.instances))

    run_with(runtime, body)
    assert list(plugin.instances) == [kept]


# -- I: a plugin that goes away shows at once, and recovers ---------------------------------------


def test_a_plugin_whose_feed_breaks_shows_plugin_unavailable_then_recovers() -> None:
    """Was: the instance daemon SIGKILLed, status stayed Ready=True, Converged for minutes."""
    plugin = memory.MemoryPlugin()
    store = stores.MemoryStore()
    one = syncer(store, plugin)
    store.apply(group(size=2))
    runtime = running.Runtime(syncer=one, resync=3600, poll=3600)

    async def body() -> None:
        await eventually(lambda: store.condition(KEY).get("reason") == "Converged")
        plugin.faults["describe"] = plugins.PluginUnavailable("instance-memory: connection refused")
        plugin.unsettle()  # what a daemon's broken event stream tells
        await eventually(lambda: store.condition(KEY).get("reason") == "PluginUnavailable")
        assert "connection refused" in store.condition(KEY)["message"]
        assert store.condition(KEY)["status"] == "False"
        del plugin.faults["describe"]
        plugin.unsettle()  # the stream is back
        await eventually(lambda: store.condition(KEY).get("reason") == "Converged")

    run_with(runtime, body)
