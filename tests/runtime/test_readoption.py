"""Orphans adopted again are collected like any instance once their group is gone (issue 19, B6).

In: a group freed (its instances left in place, marked ``infrakit.orphaned=true``), a group
of the same name committed again (it adopts them), then that group deleted without its
finalizer running (the record simply vanishes, as after a finalizer removed by hand).
Out: the collector destroys them, as it does for a control group that was never freed;
a group freed and not adopted again keeps its instances.
"""

from __future__ import annotations

from infrakit.core import instances
from tests.runtime.conftest import World, group

KEY = ("team", "web")


def test_an_adopted_then_abandoned_groups_instances_are_collected(world: World) -> None:
    """Before: 2 left behind for ever (the mark kept the collector away) while a control group's 2 went."""
    control = ("team", "control")
    world.store.apply(group(size=2))
    world.store.apply(group(name="control", size=2))
    world.syncer.sync(KEY)
    world.syncer.sync(control)
    world.store.delete(KEY, orphan=True)  # free
    world.syncer.sync(KEY)
    assert {d.tags[instances.TAG_ORPHANED] for d in world.plugin.describe({"infrakit.group": "web"})} == {"true"}

    world.store.apply(group(size=2))  # adopted again
    world.syncer.sync(KEY)
    assert len(world.members()) == 2 and world.plugin.operations == 4  # the same two: labelled, not replaced
    assert {d.tags[instances.TAG_ORPHANED] for d in world.plugin.describe({"infrakit.group": "web"})} == {"false"}
    assert [m for _, reason, m, _ in world.store.events if reason == "Readopted"] == [
        "took back 2 instances left in place on purpose (infrakit.orphaned=true): marked infrakit.orphaned=false"
    ]

    for key in (KEY, control):  # both deleted with their finalizers gone: the instances dangle
        world.store.records.pop(key)
        assert world.syncer.sync(key).gone
    assert world.members() == [] and world.members("control") == []


def test_freed_and_not_adopted_again_they_stay(world: World) -> None:
    world.store.apply(group(size=2))
    world.syncer.sync(KEY)
    world.store.delete(KEY, orphan=True)
    world.syncer.sync(KEY)
    assert world.syncer.collect_dangling(world.plugin) == 0 and len(world.members()) == 2
