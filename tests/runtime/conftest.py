"""Fixtures for the runtime's unit tests: the real sync and runtime over test doubles we own.

In: a store (``infrakit.testing.stores.MemoryStore``, with the API server's rules for
generations, finalizers and deletion) and plugins (the in-memory instance plugin, the
vanilla flavor). Out: the store's records (status, guard), its events, and the
instances in the plugin. No cluster, no files, no sleeps: each test takes milliseconds.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from infrakit import plugins
from infrakit.core import specs
from infrakit.runtime import owners, syncing
from infrakit.testing import memory, stores


@dataclasses.dataclass
class World:
    store: stores.MemoryStore
    plugin: memory.MemoryPlugin
    registry: plugins.Registry
    syncer: syncing.Syncer

    def members(self, name: str = "web", namespace: str = "team") -> list[str]:
        return sorted(
            d.id
            for d in self.plugin.describe({"infrakit.group": name})
            if d.tags.get("infrakit.namespace", "") == namespace
        )


def group(
    *,
    name: str = "web",
    namespace: str | None = "team",
    size: int = 3,
    note: str = "v1",
    logical_ids: tuple[str, ...] | None = None,
    flavor: Any = None,
    instance_plugin: str = "instance-memory",
    paused: bool = False,
) -> specs.GroupSpec:
    return specs.GroupSpec(
        name=name,
        namespace=namespace,
        allocation=specs.Allocation(size=None if logical_ids else size, logical_ids=logical_ids),
        instance=specs.PluginSpec(plugin=instance_plugin, properties={"Note": note}),
        flavor=specs.PluginSpec(plugin="flavor-vanilla", properties=flavor or {"Tags": {"tier": "web"}}),
        paused=paused,
    )


@pytest.fixture
def world() -> World:
    plugin = memory.MemoryPlugin()
    registry = plugins.Registry(instances={"instance-memory": lambda options: plugin})
    store = stores.MemoryStore()
    syncer = syncing.Syncer(store=store, registry=registry, index=owners.Owners(), clock=lambda: "T")
    return World(store=store, plugin=plugin, registry=registry, syncer=syncer)
