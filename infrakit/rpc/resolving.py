"""Plugin names to running daemons: the registry's locator (``plugins.Registry(locate=...)``).

A name resolves to a daemon in the plugins directory when one is there (a socket, or a
TCP address file), else to the built-in in-process plugin.  A stale socket (its daemon
was killed) still resolves to the daemon, whose calls then fail with a clear error,
rather than silently to another plugin.  Cheap to import: no aiohttp.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from infrakit import plugins
from infrakit.rpc import client, discovery

__all__ = ["locator"]


def locator(directory: Path | None = None) -> plugins.Locator:
    """Find ``(group, name)`` among the daemons in ``directory`` (default: the plugins directory)."""

    def locate(group: str, name: str) -> Any:
        endpoint = discovery.find(name, directory=directory)
        if endpoint is None:
            return None
        if group == plugins.INSTANCE_GROUP:
            return client.RemoteInstancePlugin(name=name, address=endpoint.address)
        return client.RemoteFlavorPlugin(name=name, address=endpoint.address)

    return locate
