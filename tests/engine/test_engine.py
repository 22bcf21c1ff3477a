"""The engine carries plans out through real plugins (the in-memory instance plugin).

In: a spec and a plugin holding some instances. Out: the instances after reconcile.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from infrakit.core import instances, planning, specs
from infrakit.plugins import PluginError
from infrakit.plugins.flavor_vanilla import VanillaPlugin
from infrakit.runtime import engine
from infrakit.testing.memory import MemoryPlugin


def group(*, size: int = 5, note: str = "v1", logical_ids: tuple[str, ...] | None = None) -> specs.GroupSpec:
    return specs.GroupSpec(
        name="web",
        allocation=specs.Allocation(size=None if logical_ids else size, logical_ids=logical_ids),
        instance=specs.PluginSpec(plugin="instance-memory", properties={"Note": note}),
        flavor=specs.PluginSpec(
            plugin="flavor-vanilla", properties={"Tags": {"tier": "web", "infrakit.group": "evil"}}
        ),
    )


@pytest.fixture
def plugins() -> engine.Plugins:
    return engine.Plugins(instance=MemoryPlugin(), flavor=VanillaPlugin())


def ids(resolved: engine.Plugins, spec: specs.GroupSpec) -> set[str]:
    return {m.id for m in engine.observe(spec, resolved)}


def test_provision_tags_and_flavor_cannot_steal_group_tags(plugins: engine.Plugins) -> None:
    spec = group()
    outcome = engine.reconcile(spec, plugins)
    assert outcome.plan.converged and len(outcome.members) == 5
    assert [s.action for s in outcome.steps] == ["provision"] * 5
    for description in plugins.instance.describe({}):
        assert description.tags == {
            "infrakit.group": "web",
            "infrakit.config_sha": spec.config_sha,
            "tier": "web",
        }


def test_pets_get_their_logical_ids(plugins: engine.Plugins) -> None:
    spec = group(logical_ids=("a", "b"))
    engine.reconcile(spec, plugins)
    found = sorted((d.logical_id, d.tags["infrakit.logical_id"]) for d in plugins.instance.describe({}))
    assert found == [("a", "a"), ("b", "b")]


@pytest.mark.parametrize("cut_after", range(0, 22, 3))
def test_an_interrupted_rolling_update_resumes(plugins: engine.Plugins, cut_after: int) -> None:
    engine.reconcile(group(size=5, note="v1"), plugins)
    target = group(size=8, note="v2")
    count = 0

    def stop() -> bool:
        return count >= cut_after

    def step(_: engine.Step) -> None:
        nonlocal count
        count += 1

    engine.reconcile(target, plugins, on_step=step, should_stop=stop)  # cut short
    outcome = engine.reconcile(target, plugins)  # a fresh pass, from what is there
    assert outcome.plan.converged
    members = engine.observe(target, plugins)
    assert len(members) == 8 and all(m.up_to_date for m in members)


def test_teardown_destroys_exactly_the_group(plugins: engine.Plugins) -> None:
    web = group()
    other = dataclasses.replace(group(size=2), name="other")
    engine.reconcile(web, plugins)
    engine.reconcile(other, plugins)
    keep = ids(plugins, other)
    steps = engine.teardown(web, plugins)
    assert len(steps) == 5 and ids(plugins, web) == set() and ids(plugins, other) == keep


def test_an_instance_gone_before_destroy_is_fine(plugins: engine.Plugins) -> None:
    spec = group(size=3)
    engine.reconcile(spec, plugins)
    members = engine.observe(spec, plugins)
    assert isinstance(plugins.instance, MemoryPlugin)
    plugins.instance.instances.pop(members[0].id)  # lost between observe and destroy
    outcome = engine.reconcile(dataclasses.replace(spec, allocation=specs.Allocation(size=0)), plugins, members=members)
    assert outcome.plan.converged and plugins.instance.describe({}) == []


class SlowFlavor(VanillaPlugin):
    """New instances are not healthy until told so."""

    def __init__(self) -> None:
        super().__init__()
        self.ready: set[str] = set()

    def healthy(self, properties: Any, description: instances.Description) -> instances.Health:
        if description.tags.get("infrakit.config_sha") == group(note="v1").config_sha or description.id in self.ready:
            return instances.Health.HEALTHY
        return instances.Health.UNKNOWN


def test_a_roll_waits_on_health_and_continues() -> None:
    flavor = SlowFlavor()
    resolved = engine.Plugins(instance=MemoryPlugin(), flavor=flavor)
    engine.reconcile(group(size=3, note="v1"), resolved)
    target = group(size=3, note="v2")
    outcome = engine.reconcile(target, resolved)
    assert outcome.plan.blocked and len(outcome.members) == 4  # surged one, waiting
    flavor.ready |= {m.id for m in outcome.members if m.up_to_date}
    for _ in range(10):
        outcome = engine.reconcile(target, resolved)
        flavor.ready |= {m.id for m in outcome.members if m.up_to_date}
        if outcome.plan.converged:
            break
    assert outcome.plan.converged
    assert all(m.up_to_date for m in engine.observe(target, resolved))
    assert isinstance(outcome.plan, planning.Plan)


# -- bootstrap instances (issue 11, item 12b) ----------------------------------------------------


def made_outside(plugin: MemoryPlugin, *, logical_id: str | None = None) -> str:
    """An instance made outside InfraKit for group ``web`` (InfraKit's bootstrap tag)."""
    tags = {instances.TAG_GROUP: "web", instances.TAG_CONFIG_SHA: instances.BOOTSTRAP_SHA}
    if logical_id is not None:
        tags[instances.TAG_LOGICAL_ID] = logical_id
    return plugin.provision(instances.InstanceSpec(tags=tags, logical_id=logical_id))


def test_a_bootstrap_instance_is_adopted_and_relabelled(plugins: engine.Plugins) -> None:
    assert isinstance(plugins.instance, MemoryPlugin)
    boot = made_outside(plugins.instance)
    spec = group(size=3)
    outcome = engine.reconcile(spec, plugins)
    assert outcome.plan.converged
    assert [(s.action, s.instance_id) for s in outcome.steps[:1]] == [("label", boot)]
    assert [s.action for s in outcome.steps[1:]] == ["provision"] * 2
    tags = {d.id: d.tags for d in plugins.instance.describe({})}
    assert boot in tags and tags[boot][instances.TAG_CONFIG_SHA] == spec.config_sha
    assert {m.description.tags[instances.TAG_CONFIG_SHA] for m in outcome.members} == {spec.config_sha}
    assert engine.reconcile(spec, plugins).steps == []  # labelled once: nothing more to do


def test_a_bootstrap_pet_is_adopted_under_its_logical_id(plugins: engine.Plugins) -> None:
    assert isinstance(plugins.instance, MemoryPlugin)
    boot = made_outside(plugins.instance, logical_id="a")
    outcome = engine.reconcile(group(logical_ids=("a", "b")), plugins)
    assert outcome.plan.converged
    assert sorted((m.logical_id, m.id == boot) for m in outcome.members) == [("a", True), ("b", False)]


def test_a_bootstrap_instance_gone_before_its_label_is_replaced(plugins: engine.Plugins) -> None:
    assert isinstance(plugins.instance, MemoryPlugin)
    boot = made_outside(plugins.instance)
    spec = group(size=2)
    members = engine.observe(spec, plugins)
    plugins.instance.instances.pop(boot)  # lost between observe and label
    outcome = engine.reconcile(spec, plugins, members=members)
    assert outcome.plan.converged and len(plugins.instance.describe({})) == 2
    assert boot not in {m.id for m in outcome.members}


def test_an_orphan_adopted_again_is_unmarked_by_a_counted_label(plugins: engine.Plugins) -> None:
    """Issue 19, B6: the mark kept the collector away for ever, even once the group was gone."""
    assert isinstance(plugins.instance, MemoryPlugin)
    spec = group(size=2)
    engine.reconcile(spec, plugins)
    freed = engine.orphan(spec, plugins)  # `free`: left in place, marked
    assert {d.tags[instances.TAG_ORPHANED] for d in plugins.instance.describe({})} == {"true"}
    outcome = engine.reconcile(spec, plugins)  # a group of that name adopts them
    assert outcome.plan.converged
    assert sorted((s.action, s.instance_id, s.reason) for s in outcome.steps) == sorted(
        ("label", m.id, planning.Reason.READOPTED) for m in freed
    )
    assert {d.tags[instances.TAG_ORPHANED] for d in plugins.instance.describe({})} == {"false"}
    assert {m.description.tags[instances.TAG_ORPHANED] for m in outcome.members} == {"false"}
    assert engine.reconcile(spec, plugins).steps == []  # unmarked once


def test_a_label_that_fails_fails_the_reconcile_and_destroys_nothing(plugins: engine.Plugins) -> None:
    assert isinstance(plugins.instance, MemoryPlugin)
    boot = made_outside(plugins.instance)
    plugins.instance.faults["label"] = PluginError("label refused")
    with pytest.raises(PluginError, match="label refused"):
        engine.reconcile(group(size=1), plugins)
    assert [d.id for d in plugins.instance.describe({})] == [boot]  # kept, as InfraKit did
