"""The Group SPI through a group daemon (``Group/0.1.0``): where ``INFRAKIT_HOST`` naming a remote sends the verbs.

InfraKit's CLI commits, lists, describes, frees and destroys groups by calling the group
plugin; with a ``tcp://`` remote (or a ``unix://`` one whose directory has a group
daemon) ours does the same, against that daemon (``infrakit-group-default``, or
InfraKit's own).  A spec goes in InfraKit's own form when it says nothing InfraKit's form
cannot (an update strategy other than the default, ``paused``), else as the manifest,
which our daemon reads.  An error the daemon answers about a group it does not have is
:class:`~infrakit.groups.spi.GroupNotFound`, as in the other modes (its words are the daemon's).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from infrakit import plugins
from infrakit.core import specs
from infrakit.groups import spi
from infrakit.rpc import client, wire

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["GroupClient"]


class GroupClient:
    """:class:`~infrakit.groups.spi.Groups` over ``Group/0.1.0`` at ``address``.

    ``named``: how a failure to reach the daemon is worded (the remote that chose it, and the fix).
    """

    def __init__(self, address: str, *, named: Callable[[str], str] | None = None) -> None:
        self.transport = client.Transport(address=address, name="group")
        self.named = named

    def ls(self) -> list[str]:
        return sorted(str(group.get("ID")) for group in self._groups())

    def prepare(self, groups: Sequence[specs.GroupSpec]) -> None:
        """A file of several groups: each asked as a pretend commit (the daemon checks it) before any is made."""
        if len(groups) > 1:
            for spec in groups:
                self.commit(spec, pretend=True)

    def commit(self, spec: specs.GroupSpec, *, pretend: bool) -> str:
        plain = spec.update_strategy == specs.UpdateStrategy() and not spec.paused
        document = spi.to_infrakit(spec) if plain else spec.to_manifest()
        result = self._call("Group.CommitGroup", {"Spec": document, "Pretend": pretend})
        return str(wire.field(wire.obj(result, "result"), "Details") or "")

    def describe(self, name: str) -> spi.Description:
        result = wire.obj(self._call("Group.DescribeGroup", {"ID": name}, about=name), "result")
        described = wire.obj(wire.field(result, "Description"), "Description")
        found = [wire.description_from_wire(item, "Instances") for item in _items(wire.field(described, "Instances"))]
        return spi.Description(instances=found, converged=wire.boolean(wire.field(described, "Converged"), "Converged"))

    def inspect(self, name: str) -> spi.Inspected:
        for group in self._groups():
            if group.get("ID") == name:
                return spi.Inspected(document=group, status={}, parse=functools.partial(specs.parse_document, group))
        raise spi.GroupNotFound(f"group {name!r} not found; `infrakit-local ls` lists the committed groups")

    def free(self, name: str) -> None:
        self._call("Group.FreeGroup", {"ID": name}, about=name)

    def destroy(self, name: str) -> spi.Destroyed:
        self._call("Group.DestroyGroup", {"ID": name}, about=name)
        return spi.Destroyed(name=name)  # the daemon answers OK, not what it destroyed

    def close(self) -> None:
        self.transport.close()

    def _groups(self) -> list[dict[str, Any]]:
        result = wire.obj(self._call("Group.InspectGroups", {}), "result")
        return [dict(wire.obj(g, "Groups")) for g in _items(wire.field(result, "Groups"))]

    def _call(self, method: str, params: Any, *, about: str | None = None) -> Any:
        try:
            return self.transport.call(method, params)
        except client.RemoteError as error:
            # The daemon's words, verbatim; a group it does not list is GroupNotFound, as everywhere.
            if about is not None and about not in self.ls():
                raise spi.GroupNotFound(error.message) from None
            raise
        except plugins.PluginError as error:
            if self.named is None:
                raise
            raise plugins.PluginError(self.named(str(error))) from None


def _items(value: Any) -> list[Any]:
    """A list on the wire: Go's nil slice is ``null``; anything else is a malformed answer."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise plugins.PluginError(f"the group daemon answered {type(value).__name__} where a list belongs")
    return value
