"""The Group spec as values: what a parsed document becomes, frozen.

:class:`GroupSpec` is the desired state of one group; its allocation says how many
instances (cattle) or which logical IDs (pets), its plugins name what provisions and
prepares them.  :meth:`GroupSpec.to_manifest` gives back the document
(``infrakit.core.specs.parsing`` reads it again into an equal spec).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from typing import Any, Final

__all__ = ["API_GROUP", "API_VERSION", "KIND", "Allocation", "GroupSpec", "PluginSpec", "UpdateStrategy"]

API_GROUP: Final = "infrakit.io"
API_VERSION: Final = "infrakit.io/v1alpha1"
KIND: Final = "Group"


@dataclasses.dataclass(frozen=True, kw_only=True)
class PluginSpec:
    """A plugin by name, with its properties passed through verbatim (opaque to us)."""

    plugin: str
    properties: Any = None

    def as_infrakit(self) -> dict[str, Any]:
        """InfraKit's ``{"Plugin", "Properties"}`` form, the input of the config hash."""
        return {"Plugin": self.plugin, "Properties": self.properties}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Allocation:
    """Exactly one of ``size`` (cattle) or ``logical_ids`` (pets)."""

    size: int | None = None
    logical_ids: tuple[str, ...] | None = None

    @property
    def desired(self) -> int:
        return len(self.logical_ids) if self.logical_ids is not None else (self.size or 0)


@dataclasses.dataclass(frozen=True, kw_only=True)
class UpdateStrategy:
    """Bounds of a rolling update, as a Deployment's: never above size+max_surge,
    never fewer than size-max_unavailable healthy instances."""

    max_surge: int = 1
    max_unavailable: int = 0


@dataclasses.dataclass(frozen=True, kw_only=True)
class GroupSpec:
    """The desired state of one group."""

    name: str
    namespace: str | None = None
    # Not part of the document: the identity of the cluster whose controller holds the
    # spec (``infrakit.cluster`` on its instances); ``None`` for the local store.
    cluster: str | None = None
    allocation: Allocation
    instance: PluginSpec
    flavor: PluginSpec
    update_strategy: UpdateStrategy = UpdateStrategy()
    paused: bool = False

    @functools.cached_property
    def config_sha(self) -> str:
        from infrakit.core import hashing  # lazy: hashlib and decimal, for the commands that act only

        return hashing.config_sha(instance=self.instance.as_infrakit(), flavor=self.flavor.as_infrakit())

    @property
    def desired_size(self) -> int:
        return self.allocation.desired

    @property
    def is_pets(self) -> bool:
        return self.allocation.logical_ids is not None

    def to_manifest(self) -> dict[str, Any]:
        """The Kubernetes manifest of this spec; ``parse_document`` of it gives it back."""
        allocation: dict[str, Any] = (
            {"logicalIDs": list(self.allocation.logical_ids)}
            if self.allocation.logical_ids is not None
            else {"size": self.allocation.size}
        )
        metadata: dict[str, Any] = {"name": self.name}
        if self.namespace:
            metadata["namespace"] = self.namespace
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": metadata,
            "spec": {
                "allocation": allocation,
                "instance": _plugin_manifest(self.instance),
                "flavor": _plugin_manifest(self.flavor),
                "updateStrategy": {
                    "maxSurge": self.update_strategy.max_surge,
                    "maxUnavailable": self.update_strategy.max_unavailable,
                },
                "paused": self.paused,
            },
        }


def _plugin_manifest(spec: PluginSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"plugin": spec.plugin}
    if spec.properties is not None:
        out["properties"] = copy.deepcopy(spec.properties)
    return out
