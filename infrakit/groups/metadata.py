"""The group plugin's metadata, as InfraKit's exposed it (plus ours), from any :class:`~infrakit.groups.spi.Groups`.

* ``specs/<group>``: the committed spec in InfraKit's form (``{"ID", "Properties"}``);
* ``groups/<group>``: its description, ``{"Instances", "Converged"}`` (asks the instance plugin);
* ``status/<group>``: ours, the last status written: counts (``replicas``,
  ``readyReplicas``, ``updatedReplicas``, ``desiredReplicas``), ``conditions``,
  ``configHash``, ``observedGeneration``.

One tree for every mode: the group daemon serves the local store's (``Metadata.List`` /
``Metadata.Get``), ``infrakit-local metadata`` reads the store's when no daemon runs and
a cluster's with ``--context``.  A damaged group shows its error under its name, and only there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from infrakit import plugins
from infrakit.core import specs
from infrakit.groups import spi

__all__ = ["STATUS_HIDDEN", "root", "status_summary"]

STATUS_HIDDEN: Final = frozenset({"instances", "instancesTruncated"})
"""Status fields left out of ``status/<group>``: the instances are under ``groups/<group>``."""


def status_summary(status: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in status.items() if k not in STATUS_HIDDEN}


def root(groups: spi.Groups) -> dict[str, Any]:
    """The tree (see :mod:`infrakit.core.metadata`): group names now, values when read (each read once)."""
    names = groups.ls()
    inspected: dict[str, spi.Inspected] = {}

    def inspect(name: str) -> spi.Inspected:
        if name not in inspected:
            inspected[name] = groups.inspect(name)
        return inspected[name]

    def guarded(read: Callable[[str], Any], name: str) -> Callable[[], Any]:
        def compute() -> Any:
            try:
                return read(name)
            except (spi.GroupNotFound, specs.SpecError, plugins.PluginError) as error:
                return {"Error": str(error)}

        return compute

    def description(name: str) -> Any:
        found = groups.describe(name)
        return {"Instances": [d.to_json() for d in found.instances] or None, "Converged": found.converged}

    return {
        "groups": {n: guarded(description, n) for n in names},
        "specs": {n: guarded(lambda n: spi.to_infrakit(inspect(n).spec), n) for n in names},
        "status": {n: guarded(lambda n: status_summary(inspect(n).status), n) for n in names},
    }
