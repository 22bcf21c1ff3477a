"""Any :class:`~infrakit.groups.spi.Groups` on the wire: the ``GroupService`` of :mod:`infrakit.rpc.services`.

A thin adapter, and the only one: InfraKit's ``{"ID", "Properties"}`` (or our manifest)
in, the SPI's answers out in the wire's shapes, the group IDs a caller sends checked as
names.  The group daemon (:mod:`infrakit.local.serving`) serves the local store's groups
through it, unchanged: a ``CommitGroup`` answers what ``infrakit-local commit`` prints
after ``Committed NAME:``, a ``DescribeGroup`` what ``describe`` lists.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from infrakit.core import instances, specs
from infrakit.groups import spi

__all__ = ["Served"]

log = logging.getLogger("infrakit.groups")


class Served:
    """``GroupService`` over ``groups``; ``on_change(name)`` is told of every commit, free and destroy (done or not)."""

    def __init__(self, groups: spi.Groups, *, on_change: Callable[[str], None] | None = None) -> None:
        self.groups = groups
        self.on_change = on_change or (lambda name: None)

    def commit(self, document: Mapping[str, Any], *, pretend: bool) -> str:
        spec = specs.parse_document(dict(document))
        if pretend:
            return self.groups.commit(spec, pretend=True)
        try:
            return self.groups.commit(spec, pretend=False)
        finally:
            self.on_change(spec.name)

    def free(self, group_id: str) -> None:
        self._changing(group_id, self.groups.free)

    def destroy(self, group_id: str) -> None:
        self._changing(group_id, self.groups.destroy)

    def _changing(self, group_id: str, change: Callable[[str], object]) -> None:
        name = _known(group_id)
        try:
            change(name)
        finally:
            self.on_change(name)

    def describe(self, group_id: str) -> tuple[list[instances.Description], bool]:
        found = self.groups.describe(_known(group_id))
        return found.instances, found.converged

    def inspect(self) -> list[dict[str, Any]]:
        found = []
        for name in self.groups.ls():
            try:
                found.append(spi.to_infrakit(self.groups.inspect(name).spec))
            except (specs.SpecError, spi.GroupNotFound) as error:  # damaged or gone: this one only
                log.warning("group %s: %s", name, error)
        return found

    def metadata_list(self, path: tuple[str, ...]) -> list[str]:
        from infrakit.core import metadata as paths
        from infrakit.groups import metadata

        return paths.children(metadata.root(self.groups), path)

    def metadata_get(self, path: tuple[str, ...]) -> Any:
        from infrakit.core import metadata as paths
        from infrakit.groups import metadata

        return paths.get(metadata.root(self.groups), path)


def _known(group_id: str) -> str:
    """A group ID as a store name (a bad one is a SpecError naming ID, not a path)."""
    try:
        return specs.validate_name(group_id, field="ID")
    except specs.SpecError as error:
        raise specs.SpecError("ID", error.message) from None
