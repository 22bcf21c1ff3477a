"""The runtime: change feeds wake the owner, failures back off, a standby never acts."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from infrakit import plugins
from infrakit.core import instances
from infrakit.runtime import running, syncing
from tests.runtime.conftest import World, group

KEY = ("team", "web")


async def eventually(condition: Callable[[], bool], *, timeout: float = 10.0) -> None:
    """Poll ``condition``: a bound against hanging, never a speed assertion."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


def run_with(runtime: running.Runtime, body: Callable[[], Coroutine[Any, Any, None]]) -> None:
    async def main() -> None:
        ready = asyncio.Event()
        task = asyncio.ensure_future(runtime.run(ready=ready))
        try:
            await asyncio.wait_for(ready.wait(), 10)
            await body()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())


def test_every_group_is_synced_once_before_ready(world: World) -> None:
    world.store.apply(group(size=2))
    world.store.apply(group(name="db", size=1))
    runtime = running.Runtime(syncer=world.syncer, resync=3600)

    async def body() -> None:
        assert len(world.members()) == 2 and len(world.members("db")) == 1

    run_with(runtime, body)


def test_a_lost_instance_wakes_its_group_through_the_plugins_change_feed(world: World) -> None:
    world.store.apply(group(size=3))
    world.store.apply(group(name="db", size=1))
    results: list[syncing.Result] = []
    runtime = running.Runtime(syncer=world.syncer, resync=3600, on_result=results.append)

    async def body() -> None:
        lost = world.members()[0]
        before = len(results)
        world.plugin.lose(lost)
        await eventually(lambda: len(world.members()) == 3 and lost not in world.members())
        woken = {r.key for r in results[before:]}
        assert woken == {KEY}  # the owner only, not every group

    run_with(runtime, body)


def test_a_failing_group_backs_off_and_never_blocks_the_others(world: World) -> None:
    world.store.apply(group(size=1))
    world.store.apply(group(name="db", size=1, instance_plugin="instance-broken"))
    broken = _Broken()
    world.registry._factories["infrakit.instance"]["instance-broken"] = lambda options: broken
    runtime = running.Runtime(syncer=world.syncer, resync=3600)

    async def body() -> None:
        await eventually(lambda: runtime.queue.failures(("team", "db")) >= 2)  # retried, by itself
        assert world.store.condition(("team", "db"))["reason"] == "ReconcileError"
        assert world.store.condition(KEY)["status"] == "True"
        lost = world.members()[0]
        world.plugin.lose(lost)
        await eventually(lambda: len(world.members()) == 1 and lost not in world.members())

    run_with(runtime, body)


def test_a_standby_replica_never_acts(world: World) -> None:
    world.store.apply(group(size=2))
    leader = False
    runtime = running.Runtime(syncer=world.syncer, resync=3600, may_act=lambda: leader)

    async def body() -> None:
        nonlocal leader
        await asyncio.sleep(0.05)
        assert world.plugin.instances == {} and world.store.records[KEY].status == {}
        leader = True
        runtime.enqueue_all()  # what the election does when it wins
        await eventually(lambda: len(world.members()) == 2)

    run_with(runtime, body)


def test_a_group_waiting_for_health_is_requeued(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing wakes a roll blocked on an unhealthy new instance but the requeue (every mode alike)."""
    monkeypatch.setattr(syncing, "WAIT_FOR_HEALTH", 0.01)
    world.store.apply(group(size=1, note="v1"))
    world.syncer.sync(KEY)
    (old,) = world.members()
    flavor = world.registry.flavor("flavor-vanilla")
    well = False

    def healthy(properties: Any, description: instances.Description) -> instances.Health:
        return instances.Health.HEALTHY if well or description.id == old else instances.Health.UNHEALTHY

    monkeypatch.setattr(flavor, "healthy", healthy)
    world.store.apply(group(size=1, note="v2"))
    runtime = running.Runtime(syncer=world.syncer, resync=3600)

    async def body() -> None:
        nonlocal well
        await eventually(lambda: len(world.members()) == 2)  # surged; the old one must wait
        assert world.store.condition(KEY)["reason"] == "RollingOut"
        well = True  # the new instance becomes healthy: no event says so
        await eventually(lambda: world.members() != [] and old not in world.members() and len(world.members()) == 1)
        await eventually(lambda: world.store.condition(KEY).get("status") == "True")

    run_with(runtime, body)


def test_a_group_whose_plugin_cannot_report_changes_is_polled(world: World) -> None:
    """No change feed: polling every ``poll`` seconds is how a lost instance is found (as InfraKit did)."""
    world.store.apply(group(size=2, instance_plugin="instance-blind"))
    blind = _Blind(world.plugin)
    world.registry._factories["infrakit.instance"]["instance-blind"] = lambda options: blind
    results: list[syncing.Result] = []
    runtime = running.Runtime(syncer=world.syncer, resync=3600, poll=0.05, on_result=results.append)

    async def body() -> None:
        lost = world.members()[0]
        world.plugin.lose(lost)  # the memory plugin's feed is not watched: only the poll can find it
        await eventually(lambda: len(world.members()) == 2 and lost not in world.members())
        assert all(r.key == KEY for r in results)
        assert 0.045 <= runtime.period(KEY) <= 0.055

    run_with(runtime, body)


def test_a_watched_group_is_not_polled(world: World) -> None:
    """Its changes wake it: only the (rare, spread) resync syncs it again; a thousand idle groups cost nothing."""
    world.store.apply(group(size=2))
    results: list[syncing.Result] = []
    runtime = running.Runtime(syncer=world.syncer, resync=3600, poll=0.01, on_result=results.append)

    async def body() -> None:
        await eventually(lambda: id(world.plugin) in runtime._watched)
        runtime.enqueue(KEY)  # one sync now that the feed runs: its timer is the resync's
        await eventually(lambda: not runtime.queue._dirty and not runtime.queue._processing)
        before = len(results)
        await asyncio.sleep(0.2)  # twenty polls' worth
        assert len(results) == before, "a watched group was polled"
        assert 3240 <= runtime.period(KEY) <= 3960  # spread by +/-10 %
        lost = world.members()[0]
        world.plugin.lose(lost)
        await eventually(lambda: len(world.members()) == 2 and lost not in world.members())

    run_with(runtime, body)


class _Blind:
    """An instance plugin without a change feed (a daemon that serves no events, say)."""

    name = "instance-blind"

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def validate(self, properties: Any) -> None:
        self.inner.validate(properties)

    def describe(self, tags: Any) -> list[Any]:
        return list(self.inner.describe(tags))

    def provision(self, spec: Any) -> str:
        return str(self.inner.provision(spec))

    def label(self, instance_id: str, labels: Any) -> None:
        self.inner.label(instance_id, labels)

    def destroy(self, instance_id: str) -> None:
        self.inner.destroy(instance_id)


class _Broken:
    name = "instance-broken"

    def __init__(self) -> None:
        self.calls = 0

    def validate(self, properties: Any) -> None:
        return None

    def describe(self, tags: Any) -> list[Any]:
        self.calls += 1
        raise plugins.PluginError("the plugin's socket is gone")

    def provision(self, spec: Any) -> str:
        raise AssertionError("never reached")

    def label(self, instance_id: str, labels: Any) -> None:
        raise AssertionError("never reached")

    def destroy(self, instance_id: str) -> None:
        raise AssertionError("never reached")
