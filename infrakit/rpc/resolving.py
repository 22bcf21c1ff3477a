"""Plugin names to running daemons: the registry's locator (``plugins.Registry(locate=...)``).

A name resolves to a daemon in the plugins directory when one is there (a socket, or a
TCP address file), else to the built-in in-process plugin.  A stale socket (its daemon
was killed) still resolves to the daemon, whose calls then fail with a clear error,
rather than silently to another plugin.  The locator keeps one client per name and
address, so asking again (the registry does, at every resolve) costs a few ``stat``
calls.  Cheap to import: no aiohttp.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from infrakit import plugins
from infrakit.core import instances
from infrakit.rpc import discovery

__all__ = ["file_properties", "locator", "with_properties"]

_MAX_FILE = 4 << 20


def locator(directory: Path | None = None) -> plugins.Locator:
    """Find ``(group, name)`` among the daemons in ``directory`` (default: the plugins directory)."""
    clients: dict[tuple[str, str, str], Any] = {}
    lock = threading.Lock()

    def locate(group: str, name: str) -> Any:
        endpoint = discovery.find(name, directory=directory)
        if endpoint is None:
            return None
        key = (group, name, endpoint.address)
        with lock:
            found = clients.get(key)
            if found is None:
                from infrakit.rpc import client  # lazy: http.client and ssl, only when a daemon is there

                kind = client.RemoteInstancePlugin if group == plugins.INSTANCE_GROUP else client.RemoteFlavorPlugin
                found = clients[key] = kind(name=name, address=endpoint.address)
            return found

    return locate


def file_properties(directory: Path, description: instances.Description) -> Any:
    """What v0.5's file plugin tells as an instance's ``Properties``: its spec, from its file."""
    from infrakit.rpc import wire

    try:
        with open(Path(directory) / description.id, "rb") as stream:
            document = wire.loads(stream.read(_MAX_FILE))
    except (OSError, wire.ParseError):
        return None  # gone, being rewritten since it was listed, or not one we can read (too deep...)
    return document.get("Spec") if isinstance(document, Mapping) else None


def with_properties(plugin: plugins.InstancePlugin, tags: Mapping[str, str]) -> list[tuple[instances.Description, Any]]:
    """``describe`` with each instance's ``Properties`` (``instance-file describe -p``).

    A daemon is asked for them (``DescribeInstances`` with ``Properties: true``); an
    in-process file plugin's are read from its files; other plugins tell none.
    """
    from infrakit.rpc import client

    if isinstance(plugin, client.RemoteInstancePlugin):
        return plugin.describe_properties(tags)
    directory = getattr(plugin, "directory", None)
    found = plugin.describe(tags)
    if isinstance(directory, Path):
        return [(d, file_properties(directory, d)) for d in found]
    return [(d, None) for d in found]
