"""InfraKit's Group SPI (v0.5's ``pkg/spi/group``): the one shape of a place that keeps groups.

Three places keep groups, and each offers exactly this: the local store
(:class:`infrakit.local.groups.StoreGroups`), a cluster's Group objects
(:class:`infrakit.cluster.remote.Remote`) and a group daemon reached over the plugin
protocol (:class:`infrakit.groups.client.GroupClient`).  The CLI picks one, once
(``infrakit.cli.context``); the group daemon serves the local one on the wire as it is
(:mod:`infrakit.groups.serving`); the metadata tree is made from any of them
(:mod:`infrakit.groups.metadata`).

The verbs are InfraKit's: ``CommitGroup`` (``pretend`` says what it would do and changes
nothing), ``DescribeGroup``, ``InspectGroups``, ``FreeGroup``, ``DestroyGroup``, plus
``ls`` (InfraKit's CLI lists the IDs of ``InspectGroups``) and ``prepare`` (a file of
several groups is checked whole before any is committed).  Failures are the same
classes everywhere: :class:`GroupNotFound` (bad input, exit 2), ``SpecError`` for a spec
(exit 2), ``PluginError`` for a plugin or daemon that failed (exit 1).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from infrakit.core import instances, specs

__all__ = ["Description", "Destroyed", "GroupNotFound", "Groups", "Inspected", "to_infrakit"]


class GroupNotFound(LookupError):
    """No group of that name where the command works; the message says where to list them."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Description:
    """``DescribeGroup``'s answer: the group's instances as they are, and whether it has converged."""

    instances: list[instances.Description]
    converged: bool


@dataclasses.dataclass(frozen=True, kw_only=True)
class Inspected:
    """A committed group: the document ``inspect`` prints, its last status, and its spec.

    The spec is parsed when asked for: ``inspect`` prints an object whatever it holds.
    """

    document: dict[str, Any]
    status: Mapping[str, Any]
    parse: Callable[[], specs.GroupSpec]

    @property
    def spec(self) -> specs.GroupSpec:
        return self.parse()


@dataclasses.dataclass(frozen=True, kw_only=True)
class Destroyed:
    """``DestroyGroup``'s outcome: ``count`` instances gone when the back end knows, or ``pending``
    when they go after the answer (a cluster's operator removes them)."""

    name: str
    count: int | None = None
    pending: bool = False


class Groups(Protocol):
    """Where groups are kept; every method blocks and may raise the errors the module names."""

    def ls(self) -> list[str]:
        """The names of the groups being managed, sorted."""
        ...

    def prepare(self, groups: Sequence[specs.GroupSpec]) -> None:
        """Check every group of a file before any is committed; ``SpecError`` names the first bad one."""

    def commit(self, spec: specs.GroupSpec, *, pretend: bool) -> str:
        """Record ``spec`` and converge towards it; with ``pretend``, only say what that would do.

        The answer is InfraKit's ``CommitGroup`` details: the words of the plan decided (and a
        note when the group is paused), what ``commit`` prints after ``Committed NAME:``.
        """
        ...

    def describe(self, name: str) -> Description: ...

    def inspect(self, name: str) -> Inspected: ...

    def free(self, name: str) -> None:
        """Stop managing the group; its instances are left as they are (a later commit adopts them)."""

    def destroy(self, name: str) -> Destroyed:
        """Destroy exactly the group's instances, then forget it."""
        ...


def to_infrakit(spec: specs.GroupSpec) -> dict[str, Any]:
    """A spec in InfraKit's group form, ``{"ID", "Properties": {"Allocation", "Instance", "Flavor"}}``."""
    allocation: dict[str, Any] = (
        {"LogicalIDs": list(spec.allocation.logical_ids)}
        if spec.allocation.logical_ids is not None
        else {"Size": spec.allocation.size}
    )
    return {
        "ID": spec.name,
        "Properties": {
            "Allocation": allocation,
            "Instance": spec.instance.as_infrakit(),
            "Flavor": spec.flavor.as_infrakit(),
        },
    }


def paused_note(spec: specs.GroupSpec) -> str:
    """What a commit's answer adds for a paused group, in every mode."""
    return " (paused: no changes until spec.paused is false)" if spec.paused else ""
