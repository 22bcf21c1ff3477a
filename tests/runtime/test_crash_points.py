"""A sync cut short after any instance operation: the next one, in a new process, converges exactly.

The reliability suites SIGKILL real processes at a few representative points; this
covers every point, in milliseconds, with the same runtime (a crash is an exception
that nothing catches, raised after the Nth provision or destroy; the new process is a
fresh syncer with an empty owner index over the same store and instances).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from infrakit import plugins
from infrakit.core import instances, specs
from infrakit.runtime import owners, syncing
from infrakit.testing import memory, stores
from tests.runtime.conftest import group

KEY = ("team", "web")


class Crash(BaseException):
    """The process dies here (nothing handles it, as nothing handles SIGKILL)."""


class Dying(memory.MemoryPlugin):
    """Dies after ``point`` instance operations (provisions and destroys)."""

    def __init__(self, point: int) -> None:
        super().__init__()
        self.point = point

    def provision(self, spec: instances.InstanceSpec) -> str:
        instance_id = super().provision(spec)
        self._tick()
        return instance_id

    def destroy(self, instance_id: str) -> None:
        super().destroy(instance_id)
        self._tick()

    def _tick(self) -> None:
        if self.operations == self.point:
            raise Crash


def syncer(store: stores.MemoryStore, plugin: Any) -> syncing.Syncer:
    registry = plugins.Registry(instances={"instance-memory": lambda options: plugin})
    return syncing.Syncer(store=store, registry=registry, index=owners.Owners(), clock=lambda: "T")


def survive(before: specs.GroupSpec | None, after: specs.GroupSpec, point: int) -> None:
    store = stores.MemoryStore()
    plugin = Dying(point=10**9)
    if before is not None:
        store.apply(before)
        assert syncer(store, plugin).sync(KEY).converged
    store.apply(after)
    plugin.point = plugin.operations + point
    with pytest.raises(Crash):
        syncer(store, plugin).sync(KEY)
    # What the dying sync left in status never claims convergence.
    ready = store.condition(KEY)
    assert ready.get("status") != "True" or ready.get("observedGeneration") != store.records[KEY].generation

    plugin.point = 10**9
    result = syncer(store, plugin).sync(KEY)  # a new process: nothing remembered but the tags
    assert result.converged
    members = plugin.describe({"infrakit.group": "web"})
    assert len(members) == after.desired_size
    assert {d.tags["infrakit.config_sha"] for d in members} == {after.config_sha}
    if after.is_pets:
        assert sorted(d.logical_id or "" for d in members) == sorted(after.allocation.logical_ids or ())
    assert store.condition(KEY)["status"] == "True"


SIZE = 12


@pytest.mark.parametrize("point", range(1, SIZE + 1))
def test_scale_up(point: int) -> None:
    survive(None, group(size=SIZE), point)


@pytest.mark.parametrize("point", range(1, 2 * SIZE + 1))
def test_rolling_update(point: int) -> None:
    survive(group(size=SIZE, note="v1"), group(size=SIZE, note="v2"), point)


@pytest.mark.parametrize("point", range(1, 2 * SIZE + 1))
def test_rolling_update_with_surge_and_unavailability(point: int) -> None:
    def strategy(spec: specs.GroupSpec) -> specs.GroupSpec:
        return dataclasses.replace(spec, update_strategy=specs.UpdateStrategy(max_surge=3, max_unavailable=2))

    survive(strategy(group(size=SIZE, note="v1")), strategy(group(size=SIZE, note="v2")), point)


PETS = ("a", "b", "c", "d")


@pytest.mark.parametrize("point", range(1, 2 * len(PETS) + 1))
def test_rolling_update_of_pets(point: int) -> None:
    survive(group(logical_ids=PETS, note="v1"), group(logical_ids=PETS, note="v2"), point)


@pytest.mark.parametrize("point", range(1, 6))
def test_scale_down_and_roll_at_once(point: int) -> None:
    survive(group(size=6, note="v1"), group(size=3, note="v2"), point)
