"""The group plugin's metadata over the local store, as InfraKit's group plugin exposed it, plus ours.

* ``specs/<group>``: the committed spec in InfraKit's form (``{"ID", "Properties"}``);
* ``groups/<group>``: its description, ``{"Instances", "Converged"}`` (asks the instance plugin);
* ``status/<group>``: ours, the status the runtime wrote: counts (``replicas``,
  ``readyReplicas``, ``updatedReplicas``, ``desiredReplicas``), ``conditions``,
  ``configHash``, ``observedGeneration``.

Served by the group daemon (``Metadata.List`` / ``Metadata.Get``), read directly by
``infrakit-local metadata`` when no daemon runs.  A damaged group shows its error
under its name, and only there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from infrakit import plugins
from infrakit.core import planning, specs
from infrakit.local import controller as controllers

__all__ = ["STATUS_HIDDEN", "root", "status_summary"]

STATUS_HIDDEN: Final = frozenset({"instances", "instancesTruncated"})
"""Status fields left out of ``status/<group>``: the instances are under ``groups/<group>``."""


def status_summary(status: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in status.items() if k not in STATUS_HIDDEN}


def root(controller: controllers.Controller) -> dict[str, Any]:
    """The tree (see :mod:`infrakit.core.metadata`): group names now, values when read."""
    from infrakit.local import serving

    names = controller.names()

    def guarded(read: Callable[[str], Any], name: str) -> Callable[[], Any]:
        def compute() -> Any:
            try:
                return read(name)
            except (controllers.GroupNotFound, specs.SpecError, plugins.PluginError) as error:
                return {"Error": str(error)}

        return compute

    def spec(name: str) -> Any:
        return serving.to_infrakit(controller.get(name).spec)

    def description(name: str) -> Any:
        stored, members = controller.observe(name)
        return {
            "Instances": [m.description.to_json() for m in members] or None,
            "Converged": planning.plan(stored.spec, members).converged,
        }

    def status(name: str) -> Any:
        return status_summary(controller.get(name).status)

    return {
        "groups": {n: guarded(description, n) for n in names},
        "specs": {n: guarded(spec, n) for n in names},
        "status": {n: guarded(status, n) for n in names},
    }
