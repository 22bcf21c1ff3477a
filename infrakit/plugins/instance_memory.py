"""An in-memory instance plugin, shipped for tests of the core and of adapters.

Like httpx's ``MockTransport``: a real implementation of the SPI with no I/O, so tests
drive the engine exactly as production does and inspect or break the instances
directly (``plugin.instances``).  Not persistent: every process starts empty.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping
from typing import Any, Final

from infrakit.core import instances
from infrakit.plugins import spi

__all__ = ["MemoryPlugin", "create"]

NAME: Final = "instance-memory"


def create(settings: spi.Settings) -> MemoryPlugin:
    return MemoryPlugin()


class MemoryPlugin:
    """Instances in a dict; IDs are ``instance-1``, ``instance-2``, ... in order."""

    name = NAME

    def __init__(self) -> None:
        self.instances: dict[str, tuple[instances.Description, instances.InstanceSpec]] = {}
        self.clock = itertools.count(1)
        self.operations = 0  # provisions + destroys, for tests that count work

    def validate(self, properties: Any) -> None:
        return None

    def provision(self, spec: instances.InstanceSpec) -> str:
        tick = next(self.clock)
        instance_id = f"instance-{tick}"
        self.instances[instance_id] = (
            instances.Description(id=instance_id, logical_id=spec.logical_id, tags=dict(spec.tags), created=tick),
            spec,
        )
        self.operations += 1
        return instance_id

    def label(self, instance_id: str, labels: Mapping[str, str]) -> None:
        if instance_id not in self.instances:
            raise spi.InstanceNotFound(instance_id)
        description, spec = self.instances[instance_id]
        tags = {**description.tags, **labels}
        self.instances[instance_id] = (dataclasses.replace(description, tags=tags), spec)

    def destroy(self, instance_id: str) -> None:
        if self.instances.pop(instance_id, None) is None:
            raise spi.InstanceNotFound(instance_id)
        self.operations += 1

    def describe(self, tags: Mapping[str, str]) -> list[instances.Description]:
        return [
            description
            for description, _ in self.instances.values()
            if all(description.tags.get(k) == v for k, v in tags.items())
        ]
