"""``infrakit-local metadata ls|cat``: InfraKit's metadata commands, over our two modes.

Paths start with the plugin that serves them, as in InfraKit's CLI:
``group/specs/cattle/Properties/Allocation/Size``, ``group/groups/cattle/Converged``,
and ours, ``group/status/cattle/readyReplicas`` (:mod:`infrakit.local.metadata`).

Where the values come from: a daemon of that name in the plugins directory
(``Metadata.List`` / ``Metadata.Get``: the group daemon, or any plugin that implements
``Metadata/0.1.0``); for ``group`` without a daemon, the local store itself; with
``--context``, the cluster's Group objects (spec and status; the instances are those
the status lists).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Final

import click

from infrakit.commands import _common
from infrakit.commands._common import Context

__all__ = ["cluster_root", "metadata", "reader"]

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
    with _common.errors():
        parts = _split(path)
        if not parts:
            names = _plugins(obj)
            for name in names:
                click.echo(name)
            return
        source = _source(obj, parts[0])
        found = source.children(parts[1:])
        if not found and source.get(parts[1:]) is _MISSING:
            raise _common.Usage(_missing("/".join(parts)))
        for name in found:
            click.echo("/".join((*parts, name)) if full else name)


@metadata.command("cat")
@click.argument("path")
@click.pass_obj
def cat(obj: Context, path: str) -> None:
    """Print the value at PATH: text as it is, anything else as JSON."""
    with _common.errors():
        parts = _split(path)
        if len(parts) < 2:
            raise _common.Usage(f"PATH {path!r}: name a plugin and a path in it (e.g. group/specs/cattle)")
        found = _source(obj, parts[0]).get(parts[1:])
        if found is _MISSING:
            raise _common.Usage(_missing("/".join(parts)))
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
    here = _common.where(obj)
    if here.kube_context is not None:
        if plugin != GROUP_PLUGIN:
            raise _common.Usage(f"PATH: a cluster serves the group plugin's metadata only (group/...), not {plugin!r}")
        return _Tree(cluster_root(here.cluster()))
    from infrakit.rpc import discovery

    if here.group_address is not None and plugin == GROUP_PLUGIN:
        return _Daemon(here.group_address, plugin)
    endpoint = discovery.find(plugin, directory=here.plugins_dir)
    if endpoint is not None and (plugin != GROUP_PLUGIN or discovery.alive(endpoint)):
        return _Daemon(endpoint.address, plugin)
    if plugin == GROUP_PLUGIN:
        here.this_machine("metadata")  # a remote's metadata is never this machine's store
        # No daemon (or a stale socket) on this machine: its store is the truth.
        from infrakit.local import metadata as local

        return _Tree(local.root(obj.controller()))
    raise _common.Failure(
        f"plugin {plugin!r} is not running in {here.plugins_dir}; `infrakit-local plugin ls` lists the running plugins"
    )


def _plugins(obj: Context) -> list[str]:
    here = _common.where(obj)
    if here.kube_context is not None or here.group_address is not None:
        return [GROUP_PLUGIN]
    from infrakit.rpc import discovery

    found = {GROUP_PLUGIN}
    for info in discovery.running(directory=here.plugins_dir):
        if "Metadata/0.1.0" in info.interfaces:
            found.add(info.name)
    return sorted(found)


def cluster_root(cluster: Any) -> dict[str, Any]:
    """The group plugin's metadata tree from the cluster's Group objects (``infrakit.cluster.remote.Remote``)."""
    from infrakit.core import specs
    from infrakit.local import metadata as local
    from infrakit.local import serving

    bodies: dict[str, dict[str, Any]] = {}

    def body(name: str) -> dict[str, Any]:
        if name not in bodies:
            bodies[name] = cluster.get(name)
        return bodies[name]

    def spec(name: str) -> specs.GroupSpec:
        found = body(name)
        return specs.parse_document({k: v for k, v in found.items() if k != "status"}, namespace=cluster.namespace)

    def described(name: str) -> Any:
        status = body(name).get("status") or {}
        ready: Mapping[str, Any] = next(
            (c for c in status.get("conditions") or [] if isinstance(c, Mapping) and c.get("type") == "Ready"), {}
        )
        # Status counts, it does not list: the instances come from their plugin, as `describe` has them.
        found = cluster.describe(name)
        return {
            "Instances": [d.to_json() for d in found] or None,
            "Converged": ready.get("status") == "True" and ready.get("reason") == "Converged",
        }

    def guarded(read: Any, name: str) -> Any:
        def compute() -> Any:
            try:
                return read(name)
            except specs.SpecError as error:
                return {"Error": str(error)}

        return compute

    names = cluster.names()
    return {
        "groups": {n: guarded(described, n) for n in names},
        "specs": {n: guarded(lambda n: serving.to_infrakit(spec(n)), n) for n in names},
        "status": {n: guarded(lambda n: local.status_summary(body(n).get("status") or {}), n) for n in names},
    }


def reader(obj: Context) -> Callable[[str], Any]:
    """``metadata("group/specs/...")`` for templates: the value at a path, as ``metadata cat`` finds it."""

    def read(path: str) -> Any:
        parts = _split(path)
        if len(parts) < 2:
            raise _common.Usage(f"metadata({path!r}): name a plugin and a path in it (e.g. group/specs/cattle)")
        found = _source(obj, parts[0]).get(parts[1:])
        if found is _MISSING:
            raise _common.Usage(f"metadata({path!r}): nothing there")
        return found

    return read
