"""Plugins by name: the built-in ones and any a third party registers.

Plugins are found through the entry-point groups ``infrakit.instance`` and
``infrakit.flavor``; each entry point names a factory ``create(settings) -> plugin``.
A third party adds a plugin by declaring such an entry point in its own distribution,
without touching this repository.  The built-ins are also known directly, so a source
checkout works before it is installed.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
from collections.abc import Callable
from typing import Any, Final

from infrakit.core import specs
from infrakit.plugins import spi
from infrakit.plugins.spi import FlavorPlugin, InstanceNotFound, InstancePlugin, PluginError, Settings

__all__ = [
    "FlavorPlugin",
    "InstanceNotFound",
    "InstancePlugin",
    "PluginError",
    "Settings",
    "available",
    "flavor_plugin",
    "instance_plugin",
    "refresh",
]

INSTANCE_GROUP: Final = "infrakit.instance"
FLAVOR_GROUP: Final = "infrakit.flavor"

_BUILTIN: Final = {
    INSTANCE_GROUP: {
        "instance-file": "infrakit.plugins.instance_file:create",
        "instance-memory": "infrakit.plugins.instance_memory:create",
    },
    FLAVOR_GROUP: {"flavor-vanilla": "infrakit.plugins.flavor_vanilla:create"},
}


def available(group: str) -> dict[str, str]:
    """Plugin name -> ``module:factory`` for an entry-point group (a copy)."""
    return dict(_available(group))


def refresh() -> None:
    """Forget the entry points seen so far (after installing a plugin into a running process)."""
    _available.cache_clear()


@functools.cache
def _available(group: str) -> dict[str, str]:
    # Scanning every distribution's metadata costs milliseconds, and entry points do not
    # change while a process runs: once per process is enough.
    found = dict(_BUILTIN[group])
    for entry in importlib.metadata.entry_points(group=group):
        found[entry.name] = entry.value
    return dict(sorted(found.items()))


def instance_plugin(name: str, settings: spi.Settings) -> spi.InstancePlugin:
    plugin: spi.InstancePlugin = _factory(INSTANCE_GROUP, name, field="spec.instance.plugin")(settings)
    return plugin


def flavor_plugin(name: str, settings: spi.Settings) -> spi.FlavorPlugin:
    plugin: spi.FlavorPlugin = _factory(FLAVOR_GROUP, name, field="spec.flavor.plugin")(settings)
    return plugin


def _factory(group: str, name: str, *, field: str) -> Callable[[spi.Settings], Any]:
    known = _available(group)
    if name not in known:
        kind = group.rsplit(".", 1)[-1]
        raise specs.SpecError(field, f"unknown {kind} plugin {name!r}; available: {', '.join(known)}")
    module_name, _, attribute = known[name].partition(":")
    factory: Callable[[spi.Settings], Any] = getattr(importlib.import_module(module_name), attribute)
    return factory
