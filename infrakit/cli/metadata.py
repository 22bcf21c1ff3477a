"""``infrakit-local metadata ls|cat``: InfraKit's metadata commands, over our two modes.

Paths start with the plugin that serves them, as in InfraKit's CLI:
``group/specs/cattle/Properties/Allocation/Size``, ``group/groups/cattle/Converged``,
and ours, ``group/status/cattle/readyReplicas`` (:mod:`infrakit.groups.metadata`).

Where the values come from: a daemon of that name in the plugins directory
(``Metadata.List`` / ``Metadata.Get``: the group daemon, or any plugin that implements
``Metadata/0.1.0``), or the group daemon a ``tcp://`` remote names; for ``group``
without a daemon, the local store itself; with ``--context``, the cluster's Group
objects (spec and status; the instances from their plugin, as ``describe`` lists them).
The group plugin's tree is the same code in every mode (:func:`infrakit.groups.metadata.root`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Final

import click

from infrakit.cli import render
from infrakit.cli.context import Context

__all__ = ["metadata", "reader"]

GROUP_PLUGIN: Final = "group"


@click.group("metadata", help="Access metadata exposed by infrakit plugins (the store, or the cluster with --context).")
def metadata() -> None:
    pass


@metadata.command("ls")
@click.argument("path", required=False, default="")
@click.option("-l", "--long", "full", is_flag=True, help="Print full paths.")
@click.pass_obj
def list_paths(obj: Context, path: str, full: bool) -> None:
    """List the paths under PATH (the plugins serving metadata, without one)."""
    with render.errors():
        parts = _split(path)
        if not parts:
            names = _plugins(obj)
            for name in names:
                click.echo(name)
            return
        source = _source(obj, parts[0])
        found = source.children(parts[1:])
        if not found and source.get(parts[1:]) is _MISSING:
            raise render.Usage(_missing("/".join(parts)))
        for name in found:
            click.echo("/".join((*parts, name)) if full else name)


@metadata.command("cat")
@click.argument("path")
@click.pass_obj
def cat(obj: Context, path: str) -> None:
    """Print the value at PATH: text as it is, anything else as JSON."""
    with render.errors():
        parts = _split(path)
        if len(parts) < 2:
            raise render.Usage(f"PATH {path!r}: name a plugin and a path in it (e.g. group/specs/cattle)")
        found = _source(obj, parts[0]).get(parts[1:])
        if found is _MISSING:
            raise render.Usage(_missing("/".join(parts)))
        click.echo(found if isinstance(found, str) else json.dumps(found, indent=2))


_MISSING: Final[Any] = object()


def _missing(path: str) -> str:
    parent = path.rpartition("/")[0]
    return f"PATH: nothing at {path}; `infrakit-local metadata ls {parent}` lists what there is"


def _split(path: str) -> tuple[str, ...]:
    return tuple(part for part in path.split("/") if part not in ("", "."))


class _Tree:
    """Metadata from a tree computed here (the store's, the cluster's)."""

    def __init__(self, root: Any) -> None:
        self.root = root

    def children(self, path: tuple[str, ...]) -> list[str]:
        from infrakit.core import metadata as paths

        return paths.children(self.root, path)

    def get(self, path: tuple[str, ...]) -> Any:
        from infrakit.core import metadata as paths

        node = paths.lookup(self.root, path)
        return _MISSING if node is paths.MISSING else paths.value(node)


class _Daemon:
    """Metadata from a plugin daemon (``Metadata.List`` / ``Metadata.Get``)."""

    def __init__(self, address: str, name: str) -> None:
        from infrakit.rpc import client

        self.transport = client.Transport(address=address, name=name, connect_timeout=5.0, timeout=60.0)

    def children(self, path: tuple[str, ...]) -> list[str]:
        answer = self.transport.call("Metadata.List", {"Path": "/".join(path) or "."})
        nodes = answer.get("Nodes") if isinstance(answer, Mapping) else None
        return [str(n) for n in nodes or []]

    def get(self, path: tuple[str, ...]) -> Any:
        answer = self.transport.call("Metadata.Get", {"Path": "/".join(path) or "."})
        value = answer.get("Value") if isinstance(answer, Mapping) else None
        if value is None and path and path[-1] not in self.children(path[:-1]):
            return _MISSING  # InfraKit answers null for a path that is not there
        return value


def _source(obj: Context, plugin: str) -> _Tree | _Daemon:
    if obj.kube_context is not None and plugin != GROUP_PLUGIN:
        raise render.Usage(f"PATH: a cluster serves the group plugin's metadata only (group/...), not {plugin!r}")
    if obj.kube_context is None:
        from infrakit.rpc import discovery

        if plugin == GROUP_PLUGIN and obj.selected is not None and obj.selected.kind == "tcp":
            return _Daemon(obj.reachable() or "", plugin)
        endpoint = discovery.find(plugin, directory=obj.plugins_dir)
        if endpoint is not None and (plugin != GROUP_PLUGIN or discovery.alive(endpoint)):
            return _Daemon(endpoint.address, plugin)
        if plugin != GROUP_PLUGIN:
            raise render.Failure(
                f"plugin {plugin!r} is not running in {obj.plugins_dir}; "
                "`infrakit-local plugin ls` lists the running plugins"
            )
        obj.this_machine("metadata")  # a remote's metadata is never this machine's store
    # The groups where the command works (the cluster's, or with no daemon or a stale socket, the store's).
    from infrakit.groups import metadata as tree

    return _Tree(tree.root(obj.groups()))


def _plugins(obj: Context) -> list[str]:
    if obj.kube_context is not None or obj.group_address is not None:
        return [GROUP_PLUGIN]
    from infrakit.rpc import discovery

    found = {GROUP_PLUGIN}
    for info in discovery.running(directory=obj.plugins_dir):
        if "Metadata/0.1.0" in info.interfaces:
            found.add(info.name)
    return sorted(found)


def reader(obj: Context) -> Callable[[str], Any]:
    """``metadata("group/specs/...")`` for templates: the value at a path, as ``metadata cat`` finds it."""

    def read(path: str) -> Any:
        parts = _split(path)
        if len(parts) < 2:
            raise render.Usage(f"metadata({path!r}): name a plugin and a path in it (e.g. group/specs/cattle)")
        found = _source(obj, parts[0]).get(parts[1:])
        if found is _MISSING:
            raise render.Usage(f"metadata({path!r}): nothing there")
        return found

    return read
