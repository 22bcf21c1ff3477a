"""The plugin SPIs: small interfaces, opaque properties (InfraKit's instance and flavor SPIs).

An instance plugin provisions and destroys instances and describes them by tags; a
flavor plugin shapes an instance spec before provisioning and judges health.  Plugin
properties travel as opaque JSON-like values, so these interfaces never grow.

Validation failures raise :class:`infrakit.core.specs.SpecError` naming the field;
runtime failures raise :class:`PluginError`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from infrakit.core import instances, specs

__all__ = ["FlavorPlugin", "InstanceNotFound", "InstancePlugin", "PluginError", "Settings"]


class PluginError(RuntimeError):
    """A plugin could not do what was asked (I/O failure, refused operation...)."""


class InstanceNotFound(PluginError):
    """The instance to destroy or label does not exist (any more)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
    """What an adapter tells plugin factories about the environment."""

    instance_dir: Path
    durable: bool = True  # fsync instance files (and their directory) on write


class InstancePlugin(Protocol):
    """Instance/0.5.0: provisions the resources a group is made of.

    Example, the in-memory plugin shipped for tests::

        plugin = MemoryPlugin()
        iid = plugin.provision(InstanceSpec(tags={"infrakit.group": "g"}))
        assert [d.id for d in plugin.describe({"infrakit.group": "g"})] == [iid]
    """

    name: str

    def validate(self, properties: Any) -> None:
        """Raise ``SpecError`` if ``properties`` cannot be provisioned."""

    def provision(self, spec: instances.InstanceSpec) -> str:
        """Create one instance; return its ID."""
        ...

    def label(self, instance_id: str, labels: Mapping[str, str]) -> None:
        """Merge ``labels`` into the instance's tags."""

    def destroy(self, instance_id: str) -> None:
        """Remove the instance; raise ``InstanceNotFound`` if it is gone already."""

    def describe(self, tags: Mapping[str, str]) -> list[instances.Description]:
        """Every instance carrying all of ``tags``."""
        ...


class FlavorPlugin(Protocol):
    """Flavor/0.1.0: what an instance is for, and whether it is well."""

    name: str

    def validate(self, properties: Any, allocation: specs.Allocation) -> None:
        """Raise ``SpecError`` if ``properties`` are not usable."""

    def prepare(
        self, properties: Any, spec: instances.InstanceSpec, allocation: specs.Allocation
    ) -> instances.InstanceSpec:
        """A pure transform of the instance spec (init lines, tags, attachments)."""
        ...

    def healthy(self, properties: Any, description: instances.Description) -> instances.Health:
        """The instance's health as far as this flavor can tell."""
        ...

    def drain(self, properties: Any, description: instances.Description) -> None:
        """Prepare the instance for removal (move work away); called before destroy."""
