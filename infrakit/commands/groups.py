"""The group verbs through a group daemon: what ``INFRAKIT_HOST`` naming a ``tcp://`` remote means for them.

InfraKit's CLI commits, lists, describes, frees and destroys groups by calling the group
plugin (``Group/0.1.0``); with a ``tcp://`` remote ours does the same, against that daemon
(``infrakit-group-default --listen``), and prints what the local commands print.  A spec
goes in InfraKit's own form when it says nothing InfraKit's form cannot (an update
strategy other than the default, ``paused``), else as the manifest, which our daemon reads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from infrakit import plugins
from infrakit.core import instances, specs
from infrakit.local import serving
from infrakit.rpc import client, wire

if TYPE_CHECKING:
    from infrakit.commands import remotes

__all__ = ["GroupDaemon"]


class GroupDaemon:
    """The group verbs over ``Group/0.1.0``; a failure to reach it names the ``remote`` that chose it."""

    def __init__(self, address: str, *, remote: remotes.Target | None = None) -> None:
        self.transport = _Named(client.Transport(address=address, name="group"), remote)

    def commit(self, spec: specs.GroupSpec, *, pretend: bool) -> str:
        plain = spec.update_strategy == specs.UpdateStrategy() and not spec.paused
        document = serving.to_infrakit(spec) if plain else spec.to_manifest()
        result = self.transport.call("Group.CommitGroup", {"Spec": document, "Pretend": pretend})
        return str(wire.field(wire.obj(result, "result"), "Details") or "")

    def names(self) -> list[str]:
        return sorted(str(group.get("ID")) for group in self._groups())

    def inspect(self, name: str) -> dict[str, Any]:
        for group in self._groups():
            if group.get("ID") == name:
                return dict(group)
        raise specs.SpecError("group", f"{name!r} is not committed on the group daemon; `ls` lists them")

    def describe(self, name: str) -> list[instances.Description]:
        result = wire.obj(self.transport.call("Group.DescribeGroup", {"ID": name}), "result")
        described = wire.obj(wire.field(result, "Description"), "Description")
        return [wire.description_from_wire(item, "Instances") for item in _items(wire.field(described, "Instances"))]

    def free(self, name: str) -> None:
        self.transport.call("Group.FreeGroup", {"ID": name})

    def destroy(self, name: str) -> None:
        self.transport.call("Group.DestroyGroup", {"ID": name})

    def _groups(self) -> list[dict[str, Any]]:
        result = wire.obj(self.transport.call("Group.InspectGroups", {}), "result")
        return [dict(wire.obj(g, "Groups")) for g in _items(wire.field(result, "Groups"))]


def _items(value: Any) -> list[Any]:
    """A list on the wire: Go's nil slice is ``null``; anything else is a malformed answer."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise plugins.PluginError(f"the group daemon answered {type(value).__name__} where a list belongs")
    return value


class _Named:
    """A transport whose connection failures say which remote (``INFRAKIT_HOST``) they are about."""

    def __init__(self, transport: client.Transport, remote: remotes.Target | None) -> None:
        self.transport = transport
        self.remote = remote

    def call(self, method: str, params: Any) -> Any:
        try:
            return self.transport.call(method, params)
        except client.RemoteError:
            raise  # the daemon answered: its own words
        except plugins.PluginError as error:
            if self.remote is None:
                raise
            raise plugins.PluginError(f"{self.remote.selection}: {error}; {self.remote.fix}") from None
