"""Plugins by name: the built-in ones and any a third party registers, kept for the process.

Plugins are found through the entry-point groups ``infrakit.instance`` and
``infrakit.flavor``; each entry point names a factory ``create(options) -> plugin``.
A third party adds a plugin by declaring such an entry point in its own distribution,
without touching this repository.  The built-ins are also known directly, so a source
checkout works before it is installed.

A name may carry a sub-type, as InfraKit's do (``instance-aws/ec2``): only a plugin
daemon serves one (the locator finds ``instance-aws`` and its client sends ``Type:
ec2``); a plugin in this process has none, and asking for one is a ``SpecError``.

A :class:`Registry` owns the plugin objects of one process: it creates a plugin the
first time its name (and options) is asked for and hands out that same object after,
so plugins are long-lived, as InfraKit's daemons are.  The runtime subscribes to it to
start a plugin's change watch when the plugin is first made.
"""

from __future__ import annotations

import functools
import importlib
import json
import threading
from collections.abc import Callable, Mapping
from typing import Any, Final

from infrakit.core import specs
from infrakit.plugins.spi import (
    FlavorFactory,
    FlavorPlugin,
    InstanceFactory,
    InstanceNotFound,
    InstancePlugin,
    PluginError,
    PluginUnavailable,
    Watching,
)

__all__ = [
    "FLAVOR_GROUP",
    "INSTANCE_GROUP",
    "VIA",
    "FlavorFactory",
    "FlavorPlugin",
    "InstanceFactory",
    "InstanceNotFound",
    "InstancePlugin",
    "Locator",
    "PluginError",
    "PluginUnavailable",
    "Registry",
    "Watching",
    "available",
    "refresh",
]

INSTANCE_GROUP: Final = "infrakit.instance"
FLAVOR_GROUP: Final = "infrakit.flavor"

_BUILTIN: Final = {
    INSTANCE_GROUP: {
        "instance-file": "infrakit.plugins.instance_file:create",
        "instance-docker": "infrakit.plugins.instance_docker:create",
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
    import importlib.metadata  # lazy: ~10 ms to import, for the commands that use a plugin

    found = dict(_BUILTIN[group])
    for entry in importlib.metadata.entry_points(group=group):
        found[entry.name] = entry.value
    return dict(sorted(found.items()))


Locator = Callable[[str, str], Any]
"""``(group, name) -> plugin or None``: a plugin found outside the process (a daemon)."""

_REMOTE: Final = "<remote>"
VIA: Final = "via"
"""An option: ``{"via": "daemon"}`` says a group's plugin is the daemon of that name, never
the built-in of the same name (recorded with groups committed through a daemon)."""


class Registry:
    """The plugin objects of one process, by name and options.

    ``defaults`` are per plugin name (the file plugin's ``dir`` from ``--dir``, say);
    the options a caller passes are laid over them.  ``instances``/``flavors`` add
    factories that win over entry points (tests register the in-memory plugin so).
    """

    def __init__(
        self,
        *,
        defaults: Mapping[str, Mapping[str, Any]] | None = None,
        instances: Mapping[str, InstanceFactory] | None = None,
        flavors: Mapping[str, FlavorFactory] | None = None,
        locate: Locator | None = None,
    ) -> None:
        self.defaults = {name: dict(options) for name, options in (defaults or {}).items()}
        self.locate = locate
        self._factories: dict[str, dict[str, Callable[[Mapping[str, Any]], Any]]] = {
            INSTANCE_GROUP: dict(instances or {}),
            FLAVOR_GROUP: dict(flavors or {}),
        }
        self._made: dict[tuple[str, str, str], Any] = {}
        self._daemons: set[tuple[str, str]] = set()  # names that resolved to a daemon in this process
        self._lock = threading.Lock()
        self._subscribers: list[Callable[[InstancePlugin], None]] = []

    def close(self) -> None:
        """Let go of every plugin (remote ones hold connections)."""
        with self._lock:
            made = list(self._made.values())
            self._made.clear()
        for plugin in made:
            close = getattr(plugin, "close", None)
            if callable(close):
                close()

    def names(self, group: str) -> list[str]:
        """Every plugin name of ``group`` this registry can make."""
        return sorted({*available(group), *self._factories[group]})

    def options(self, name: str, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The options a plugin is made with: the defaults for ``name``, then ``options``."""
        return {**self.defaults.get(name, {}), **(options or {})}

    def instance(self, name: str, options: Mapping[str, Any] | None = None) -> InstancePlugin:
        plugin: InstancePlugin = self._get(INSTANCE_GROUP, name, options, field="spec.instance.plugin")
        return plugin

    def flavor(self, name: str, options: Mapping[str, Any] | None = None) -> FlavorPlugin:
        plugin: FlavorPlugin = self._get(FLAVOR_GROUP, name, options, field="spec.flavor.plugin")
        return plugin

    def instance_plugins(self) -> list[InstancePlugin]:
        """The instance plugins made so far."""
        with self._lock:
            return [plugin for (group, _, _), plugin in self._made.items() if group == INSTANCE_GROUP]

    def subscribe(self, callback: Callable[[InstancePlugin], None]) -> None:
        """Call ``callback`` with every instance plugin made, those made so far included."""
        with self._lock:
            self._subscribers.append(callback)
            made = [plugin for (group, _, _), plugin in self._made.items() if group == INSTANCE_GROUP]
        for plugin in made:
            callback(plugin)

    def daemon(self, group: str, name: str) -> bool:
        """Whether ``name`` is (or was, in this process) served by a daemon."""
        return (group, name) in self._daemons or (self.locate is not None and self.locate(group, name) is not None)

    def _get(self, group: str, name: str, options: Mapping[str, Any] | None, *, field: str) -> Any:
        merged = self.options(name, options)
        key = (group, name, json.dumps(merged, sort_keys=True, default=str))
        # A running daemon of that name wins over the built-in (its options are its own).  Asked
        # every time (a few stat calls; the locator keeps one client per address), so a daemon
        # restarted or moved while this process runs is followed.  But once a name was a
        # daemon's (in this process, or recorded so: ``via``), a daemon that is gone is
        # unavailable, never replaced by the built-in: that one lists another directory, and
        # the group would call every instance lost and make them again there.
        remote = self.locate(group, name) if self.locate is not None else None
        with self._lock:
            if remote is None and ((group, name) in self._daemons or merged.get(VIA) == "daemon"):
                raise PluginUnavailable(
                    f"plugin {name!r}: its daemon is not running (nothing listens under that name in the plugins "
                    "directory): start it again"
                )
            if remote is not None:
                self._daemons.add((group, name))
                key = (group, name, f"{_REMOTE}{id(remote)}")
                if key in self._made:
                    return remote
                plugin = self._made[key] = remote
            else:
                plugin = self._made.get(key)
                if plugin is not None:
                    return plugin
                plugin = self._made[key] = self._factory(group, name, field=field)(merged)
            subscribers = list(self._subscribers) if group == INSTANCE_GROUP else []
        for callback in subscribers:
            callback(plugin)
        return plugin

    def _factory(self, group: str, name: str, *, field: str) -> Callable[[Mapping[str, Any]], Any]:
        lookup, slash, kind = name.partition("/")
        if slash and (lookup in self._factories[group] or lookup in _BUILTIN[group] or lookup in _available(group)):
            # InfraKit's "lookup/type" names a sub-type a plugin *daemon* serves (sent as the Type of
            # every call); a plugin in this process is one object, with no sub-types.
            raise specs.SpecError(
                field,
                f"{lookup!r} is built in or installed in this process, and such a plugin has no sub-type "
                f"({kind!r} asked): remove '/{kind}', or run a plugin daemon named {lookup!r} that serves it",
            )
        own = self._factories[group].get(name)
        if own is not None:
            return own
        # The built-ins are known without scanning every installed distribution's entry
        # points (~20 ms of a command's start-up); a third party's plugin takes another name.
        known = _BUILTIN[group] if name in _BUILTIN[group] else _available(group)
        if name not in known:
            kind = group.rsplit(".", 1)[-1]
            names = ", ".join(self.names(group))
            raise specs.SpecError(field, f"unknown {kind} plugin {name!r}; available: {names}")
        module_name, _, attribute = known[name].partition(":")
        factory: Callable[[Mapping[str, Any]], Any] = getattr(importlib.import_module(module_name), attribute)
        return factory
