"""The group daemon's ``Group/0.1.0`` and ``Metadata/0.1.0``: the local store and runtime, served.

``infrakit-group-default`` (:mod:`infrakit.daemons`) serves :class:`LocalGroups` with
:func:`infrakit.rpc.server.group_services` and runs, in the same event loop, the same
runtime as ``infrakit-local run`` (:mod:`infrakit.runtime.running`) over the same store:
groups committed through the daemon, or by ``infrakit-local`` on the same
``$INFRAKIT_HOME``, are reconciled continuously, healed within milliseconds (the
instance plugin's change feed, in process or through a daemon's event stream).

The calls answer as InfraKit's group plugin does, and do what ``infrakit-local`` does:

* ``CommitGroup``: InfraKit's ``{"ID", "Properties"}``, validated, planned and
  answered with the same plan text as ``infrakit-local commit`` (``Controller.commit``);
  a real commit records the group and makes its first sync *before* answering (the
  instances it needs exist when the answer comes: what a script expects after
  ``group commit``), then leaves waiting for health and later rounds to the runtime,
  answering at once as InfraKit does rather than holding the call for minutes.  A
  first sync that fails answers the failure: the commit is recorded and the runtime
  keeps retrying, as the group's status (``inspect``) says.
* ``FreeGroup`` / ``DestroyGroup``: ``infrakit-local free`` / ``destroy``; destroy
  answers once the instances are gone (v0.5 answered before).
* ``DescribeGroup``: the instances there now, and whether the group has converged.
* ``InspectGroups``: the committed specs, in InfraKit's form.
* Metadata: ``specs/<group>`` (the spec, and paths into it) and ``groups/<group>``
  (the description), as v0.5's group daemon exposes them, and ours, ``status/<group>``
  (:mod:`infrakit.local.metadata`).

Blocking methods: the server runs them in worker threads; the store's lock serialises
them with the runtime's syncs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from infrakit import plugins
from infrakit.core import instances, planning, specs
from infrakit.local import controller as controllers
from infrakit.runtime import running

__all__ = ["LocalGroups", "to_infrakit"]

log = logging.getLogger("infrakit.local")


class LocalGroups:
    """:class:`infrakit.rpc.server.GroupService` over a local controller and its runtime."""

    def __init__(
        self,
        *,
        controller: controllers.Controller,
        runtime: running.Runtime,
        loop: asyncio.AbstractEventLoop,
        options: Callable[[str], Mapping[str, Any]],
    ) -> None:
        self.controller = controller
        self.runtime = runtime
        self.loop = loop
        self.options = options  # the instance plugin's options for a new group (the daemon's --dir)

    def _wake(self, name: str) -> None:
        self.loop.call_soon_threadsafe(self.runtime.enqueue, ("", name))

    def commit(self, document: Mapping[str, Any], *, pretend: bool) -> str:
        spec = specs.parse_document(dict(document))
        options = dict(self.options(spec.instance.plugin))
        if pretend:
            return self.controller.commit(spec, pretend=True, options=options).plan_text + _paused(spec)
        # One commit: its first sync decides (the answer is that plan's words) and acts; waiting
        # for health and later rounds are the runtime's.
        try:
            text = self.controller.commit(spec, wait=False, options=options).plan_text
        except controllers.CommitFailed as error:
            raise plugins.PluginError(f"{error}; the commit is recorded and the group daemon keeps retrying") from None
        finally:
            self._wake(spec.name)
        return text + _paused(spec)

    def free(self, group_id: str) -> None:
        self.controller.free(_known(group_id))
        self._wake(group_id)

    def destroy(self, group_id: str) -> None:
        self.controller.destroy(_known(group_id))
        self._wake(group_id)

    def describe(self, group_id: str) -> tuple[list[instances.Description], bool]:
        stored, members = self._observe(group_id)
        return [m.description for m in members], planning.plan(stored.spec, members).converged

    def inspect(self) -> list[dict[str, Any]]:
        found = []
        for name in self.controller.names():
            try:
                found.append(to_infrakit(self.controller.get(name).spec))
            except (specs.SpecError, controllers.GroupNotFound) as error:  # damaged or gone: this one only
                log.warning("group %s: %s", name, error)
        return found

    def metadata_list(self, path: tuple[str, ...]) -> list[str]:
        from infrakit.core import metadata as paths
        from infrakit.local import metadata

        return paths.children(metadata.root(self.controller), path)

    def metadata_get(self, path: tuple[str, ...]) -> Any:
        from infrakit.core import metadata as paths
        from infrakit.local import metadata

        return paths.get(metadata.root(self.controller), path)

    def _observe(self, group_id: str) -> tuple[Any, list[planning.Member]]:
        return self.controller.observe(_known(group_id))


def _paused(spec: specs.GroupSpec) -> str:
    return " (paused: no changes until spec.paused is false)" if spec.paused else ""


def _known(group_id: str) -> str:
    """A group ID as a store name (a bad one is a SpecError naming ID, not a path)."""
    try:
        return specs.validate_name(group_id, field="ID")
    except specs.SpecError as error:
        raise specs.SpecError("ID", error.message) from None


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
