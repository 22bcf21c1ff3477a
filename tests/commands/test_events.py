"""Events: the runtime's broker, what a sync publishes, the group daemon's endpoint and ``event ls|tail``.

In: the in-memory store and plugin (the broker and the sync's topics, no I/O), then the
group daemon as a subprocess over a private home with the CLI tailing it.  Out: events
(topic, type, data), the counters of dropped events, CLI lines.
"""

from __future__ import annotations

import datetime
import json
import os
import threading
import time
from pathlib import Path

import pytest

from infrakit.runtime import events, owners, syncing
from infrakit.testing import memory, stores
from tests.commands.conftest import run, spawn
from tests.rpc.conftest import Daemon, start_daemon
from tests.runtime.conftest import World, group

KEY = ("team", "web")


@pytest.fixture
def world() -> tuple[World, events.Broker]:
    plugin = memory.MemoryPlugin()
    from infrakit import plugins

    registry = plugins.Registry(instances={"instance-memory": lambda options: plugin})
    store = stores.MemoryStore()
    broker = events.Broker()
    syncer = syncing.Syncer(store=store, registry=registry, index=owners.Owners(), clock=lambda: "T", publisher=broker)
    return World(store=store, plugin=plugin, registry=registry, syncer=syncer), broker


# -- the broker -----------------------------------------------------------------------------


def test_a_subscription_gets_its_topic_and_everything_under_it_only() -> None:
    broker = events.Broker()
    with broker.subscribe(["web/instance"]) as mine, broker.subscribe([""]) as everything:
        broker.publish("web/instance/lost", type="Lost", data={"InstanceID": "a"})
        broker.publish("web/error", type="error", data={})
        broker.publish("web2/instance/lost", type="Lost", data={})
        assert [e.topic for e in mine.drain()] == ["web/instance/lost"]
        assert [e.topic for e in everything.drain()] == ["web/instance/lost", "web/error", "web2/instance/lost"]
    assert broker.subscribers == 0


def test_a_slow_subscriber_never_blocks_publishing_and_its_drops_are_counted() -> None:
    broker = events.Broker(capacity=4)
    stuck = broker.subscribe([""])  # never read
    done = threading.Event()

    def publish() -> None:
        for n in range(1000):
            broker.publish("web/instance/provisioned", type="Provisioned", data={"N": n})
        done.set()

    threading.Thread(target=publish, daemon=True).start()
    assert done.wait(30), "publishing blocked on a subscriber that never reads"
    kept = stuck.drain()
    assert [e.data["N"] for e in kept] == [996, 997, 998, 999]  # the newest kept
    assert stuck.dropped == 996 == broker.dropped
    assert broker.published == 1000


def test_topics_are_the_catalogs_and_those_published() -> None:
    broker = events.Broker(catalog=lambda: events.group_topics("web"))
    broker.publish("other/thing", type="x", data={})
    assert "web/instance/lost" in broker.topics() and "web/update/completed" in broker.topics()
    assert "other/thing" in broker.topics()


# -- what a sync publishes ------------------------------------------------------------------


def test_a_sync_publishes_provisioned_lost_and_the_heal(world: tuple[World, events.Broker]) -> None:
    w, broker = world
    sub = broker.subscribe([""])
    w.store.apply(group(size=2))
    w.syncer.sync(KEY)
    made = sub.drain()
    assert [(e.topic, e.type) for e in made] == [("web/instance/provisioned", "Provisioned")] * 2
    assert {e.data["InstanceID"] for e in made} == set(w.members())
    assert made[0].data["Group"] == "web" and made[0].data["Namespace"] == "team"
    assert made[0].data["Reason"] == "ScaleUp"

    victim = w.members()[0]
    w.plugin.lose(victim)
    w.syncer.sync(KEY)
    healed = sub.drain()
    assert [e.topic for e in healed] == ["web/instance/lost", "web/instance/provisioned"]
    assert healed[0].data["InstanceID"] == victim


def test_a_rolling_update_is_started_progressed_and_completed(world: tuple[World, events.Broker]) -> None:
    w, broker = world
    w.store.apply(group(size=2))
    w.syncer.sync(KEY)
    sub = broker.subscribe(["web/update"])
    w.store.apply(group(size=2, note="v2"))
    result = w.syncer.sync(KEY)
    assert result.converged
    kinds = [e.topic for e in sub.drain()]
    assert kinds[0] == "web/update/started" and kinds[-1] == "web/update/completed"
    assert "web/update/progress" in kinds
    w.syncer.sync(KEY)
    assert sub.drain() == []  # converged: nothing new to say


def test_a_failure_is_published_once_per_distinct_failure(world: tuple[World, events.Broker]) -> None:
    from infrakit import plugins

    w, broker = world
    sub = broker.subscribe(["web/error"])
    w.store.apply(group(size=2))
    w.plugin.faults["provision"] = plugins.PluginError("quota exceeded")
    w.syncer.sync(KEY)
    w.syncer.sync(KEY)
    errors = sub.drain()
    assert len(errors) == 1 and errors[0].type == "error"
    assert "quota exceeded" in errors[0].data["Message"] and errors[0].data["Reason"] == "ReconcileError"


def test_a_publisher_that_fails_never_fails_the_sync(world: tuple[World, events.Broker]) -> None:
    w, _ = world

    class Broken:
        def publish(self, topic: str, *, type: str, data: object) -> None:
            raise RuntimeError("broken")

    w.syncer.publisher = Broken()  # type: ignore[assignment]
    w.store.apply(group(size=1))
    assert w.syncer.sync(KEY).converged


# -- the group daemon and the CLI -----------------------------------------------------------


CATTLE = Path(__file__).resolve().parents[2] / "examples" / "cattle.json"


@pytest.fixture
def daemon(short_home: Path) -> tuple[Path, Daemon]:
    process = start_daemon("group-default", "--resync", "60", env={"INFRAKIT_HOME": str(short_home)})
    process.wait_for("Listening at:")
    yield short_home, process
    assert process.stop() == 0


def _commit_through(home: Path) -> None:
    from infrakit.rpc import client

    transport = client.Transport(address=str(home / "plugins" / "group"), name="group")
    try:
        transport.call("Group.CommitGroup", {"Spec": json.loads(CATTLE.read_text()), "Pretend": False})
    finally:
        transport.close()


def _parse(stamp: str) -> float:
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def test_event_tail_shows_a_heal_within_a_second_of_the_deletion(daemon: tuple[Path, Daemon]) -> None:
    home, _ = daemon
    _commit_through(home)  # the daemon's own sync makes them: it knows them, and tells of their loss
    listed = run("event", "ls", "group/cattle")
    assert listed.exit_code == 0
    assert "group/cattle/instance/lost" in listed.output.splitlines()
    assert "group/cattle/update/completed" in listed.output.splitlines()

    tail = spawn("event", "tail", "group/cattle/instance", "-o", "json", "--count", "2")
    try:
        assert tail.stderr is not None and tail.stdout is not None
        assert "Tailing group/cattle/instance" in tail.stderr.readline()
        instances = home / "instances"
        victim = sorted(instances.iterdir())[0]
        deleted = time.time()
        victim.unlink()
        out, err = tail.communicate(timeout=30)  # bounded: two events, then it ends
    finally:
        if tail.poll() is None:
            tail.kill()
    assert tail.returncode == 0, err
    lost, provisioned = (json.loads(line) for line in out.splitlines())
    assert (lost["Topic"], lost["Data"]["InstanceID"]) == ("group/cattle/instance/lost", victim.name)
    assert provisioned["Topic"] == "group/cattle/instance/provisioned"
    assert _parse(provisioned["Timestamp"]) - deleted < 1.0  # healed, and told, within a second
    assert len(os.listdir(home / "instances")) == 5


def test_event_tail_prints_human_lines_and_may_start_before_the_group(daemon: tuple[Path, Daemon]) -> None:
    """The group is committed through the daemon (as InfraKit's CLI does): its sync publishes."""
    home, _ = daemon
    tail = spawn("event", "tail", "group/cattle", "--count", "5")
    try:
        assert tail.stderr is not None
        assert "Tailing group/cattle" in tail.stderr.readline()
        _commit_through(home)
        out, _ = tail.communicate(timeout=30)
    finally:
        if tail.poll() is None:
            tail.kill()
    lines = out.splitlines()
    assert len(lines) == 5 and all("group/cattle/instance/provisioned" in line for line in lines)
    assert all(line.endswith("ScaleUp") for line in lines)


def test_event_tail_without_a_daemon_says_how_to_get_one(short_home: Path) -> None:
    result = run("event", "tail", "group/cattle")
    assert result.exit_code == 1
    assert "plugin 'group' is not running" in result.output and "infrakit-group-default" in result.output


def test_event_tail_of_an_unknown_topic_is_refused(daemon: tuple[Path, Daemon]) -> None:
    result = run("event", "tail", "group/cattle/bogus")  # a group may come later; a topic no group has may not
    assert result.exit_code == 1 and "invalid topic: cattle/bogus" in result.output
    bad = run("event", "tail", "group/Not_A_Group")
    assert bad.exit_code == 1 and "invalid topic: Not_A_Group" in bad.output


def test_event_ls_without_a_daemon_lists_the_store_groups_topics(short_home: Path) -> None:
    assert run("commit", str(CATTLE)).exit_code == 0
    listed = run("event", "ls")
    assert listed.exit_code == 0
    assert listed.output.splitlines() == [f"group/{t}" for t in sorted(events.group_topics("cattle"))]


def test_cluster_events_map_to_group_topics() -> None:
    from types import SimpleNamespace

    from infrakit.cli import events as commands

    item = SimpleNamespace(
        involved_object=SimpleNamespace(name="web", namespace="team"),
        reason="InstancesLost",
        message="lost a; replaced by b",
        type="Warning",
        count=1,
        last_timestamp=datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
        event_time=None,
        first_timestamp=None,
        metadata=SimpleNamespace(uid="u1"),
    )
    converted = commands.cluster_event(item)
    assert converted["Topic"] == "group/web/instance/lost"
    assert converted["Timestamp"] == "2026-01-02T03:04:05Z"
    assert converted["Data"]["Message"] == "lost a; replaced by b"
    assert commands.format_event(converted).startswith("2026-01-02T03:04:05Z  group/web/instance/lost  InstancesLost")
