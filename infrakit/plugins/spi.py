"""The plugin SPIs: small interfaces, opaque properties (InfraKit's instance and flavor SPIs).

An instance plugin provisions and destroys instances and describes them by tags; a
flavor plugin shapes an instance spec before provisioning and judges health.  Plugin
properties travel as opaque JSON-like values, so these interfaces never grow.

Plugins are long-lived objects: a process creates one per plugin name and options
(``infrakit.plugins.Registry``) and keeps it, so a plugin may cache, watch and warn
once.  A factory is ``create(options) -> plugin``; ``options`` is the plugin's own
configuration (the file plugin's directory, say), a mapping the runtime passes through.

An instance plugin may also report changes (:class:`Watching`): an async iterator of
the IDs of instances that changed, so the runtime heals without polling.  The file
plugin does it with its directory watch; the runtime never knows about directories.

Validation failures raise :class:`infrakit.core.specs.SpecError` naming the field;
runtime failures raise :class:`PluginError`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Final, Protocol, runtime_checkable

from infrakit.core import instances, specs

__all__ = [
    "TAG_HEALTH",
    "FlavorFactory",
    "FlavorPlugin",
    "InstanceFactory",
    "InstanceNotFound",
    "InstancePlugin",
    "PluginError",
    "PluginUnavailable",
    "Watching",
]

TAG_HEALTH: Final = "infrakit.health"
"""A tag an instance plugin may report in its descriptions: the instance's health as the
plugin observes it (``healthy``, ``unhealthy`` or ``starting``; the Docker plugin reports a
container's state and healthcheck so).  It is an observation, never stored: a flavor
judges health, and the vanilla flavor takes this verdict when it is there."""


class PluginError(RuntimeError):
    """A plugin could not do what was asked (I/O failure, refused operation...)."""


class PluginUnavailable(PluginError):
    """The plugin, or what it drives, cannot be reached now (its daemon is down, its socket
    gone, its API refuses connections): groups using it say ``PluginUnavailable``, and
    recover by themselves once it is back."""


class InstanceNotFound(PluginError):
    """The instance to destroy or label does not exist (any more)."""


class InstancePlugin(Protocol):
    """Instance/0.5.0: provisions the resources a group is made of.

    Example, the in-memory plugin shipped for tests (``infrakit.testing``)::

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


@runtime_checkable
class Watching(Protocol):
    """An optional capability of an instance plugin: tell when instances change.

    ``changes()`` yields the IDs of instances that changed (created, changed, lost), or
    ``None`` when anything may have changed (after its watch was re-established, say).
    It runs until the consumer closes it.
    """

    def changes(self) -> AsyncIterator[frozenset[str] | None]: ...


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


InstanceFactory = Callable[[Mapping[str, Any]], InstancePlugin]
FlavorFactory = Callable[[Mapping[str, Any]], FlavorPlugin]
