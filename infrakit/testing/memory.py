"""An in-memory instance plugin, for tests of the core, the runtime and the adapters.

Like httpx's ``MockTransport``: a real implementation of the SPI with no I/O, so tests
drive the engine exactly as production does and inspect or break the instances
directly (``plugin.instances``).  Not persistent, and not an installed plugin: a test
registers it (``Registry(instances={"instance-memory": create})``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import AsyncIterator, Mapping
from typing import Any, Final

from infrakit.core import instances
from infrakit.plugins import spi

__all__ = ["MemoryPlugin", "create"]

NAME: Final = "instance-memory"


def create(options: Mapping[str, Any]) -> MemoryPlugin:
    return MemoryPlugin()


class MemoryPlugin:
    """Instances in a dict; IDs are ``instance-1``, ``instance-2``, ... in order.

    Tests break it on purpose: ``faults[method]`` is raised by that method (``provision``,
    ``destroy``, ``describe``, ``label``) once ``fault_after[method]`` more calls have
    succeeded (0 by default: at once).  :meth:`lose` removes an instance behind the
    group's back and reports it on :meth:`changes`, as the file plugin's watch does.
    """

    name = NAME

    def __init__(self) -> None:
        self.instances: dict[str, tuple[instances.Description, instances.InstanceSpec]] = {}
        self.clock = itertools.count(1)
        self.operations = 0  # provisions + destroys, for tests that count work
        self.faults: dict[str, BaseException] = {}
        self.fault_after: dict[str, int] = {}
        self._feeds: list[asyncio.Queue[frozenset[str] | None]] = []

    def lose(self, *instance_ids: str) -> None:
        """Instances vanish (a crashed machine, a deleted file); watchers are told."""
        for instance_id in instance_ids:
            self.instances.pop(instance_id, None)
        for feed in self._feeds:
            feed.put_nowait(frozenset(instance_ids))

    def unsettle(self) -> None:
        """Tell watchers that anything may have changed (a feed that broke, as a dead daemon's)."""
        for feed in self._feeds:
            feed.put_nowait(None)

    async def changes(self) -> AsyncIterator[frozenset[str] | None]:
        feed: asyncio.Queue[frozenset[str] | None] = asyncio.Queue()
        self._feeds.append(feed)
        try:
            while True:
                yield await feed.get()
        finally:
            self._feeds.remove(feed)

    def _maybe_fail(self, method: str) -> None:
        fault = self.faults.get(method)
        if fault is None:
            return
        remaining = self.fault_after.get(method, 0)
        if remaining > 0:
            self.fault_after[method] = remaining - 1
            return
        raise fault

    def validate(self, properties: Any) -> None:
        return None

    def provision(self, spec: instances.InstanceSpec) -> str:
        self._maybe_fail("provision")
        tick = next(self.clock)
        instance_id = f"instance-{tick}"
        self.instances[instance_id] = (
            instances.Description(id=instance_id, logical_id=spec.logical_id, tags=dict(spec.tags), created=tick),
            spec,
        )
        self.operations += 1
        return instance_id

    def label(self, instance_id: str, labels: Mapping[str, str]) -> None:
        self._maybe_fail("label")
        if instance_id not in self.instances:
            raise spi.InstanceNotFound(instance_id)
        description, spec = self.instances[instance_id]
        tags = {**description.tags, **labels}
        self.instances[instance_id] = (dataclasses.replace(description, tags=tags), spec)

    def destroy(self, instance_id: str) -> None:
        self._maybe_fail("destroy")
        if self.instances.pop(instance_id, None) is None:
            raise spi.InstanceNotFound(instance_id)
        self.operations += 1

    def describe(self, tags: Mapping[str, str]) -> list[instances.Description]:
        self._maybe_fail("describe")
        return [
            description
            for description, _ in self.instances.values()
            if all(description.tags.get(k) == v for k, v in tags.items())
        ]
