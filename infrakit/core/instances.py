"""Instances as the core sees them: what plugins provision and what they describe.

These mirror InfraKit's ``instance.Spec`` and ``instance.Description``; plugins
(``infrakit.plugins``) take and return them, the planner reads them.  The tags written
on every instance are the only memory a group has of its instances.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any, Final

__all__ = [
    "TAG_CONFIG_SHA",
    "TAG_GROUP",
    "TAG_LOGICAL_ID",
    "TAG_NAMESPACE",
    "TAG_ORPHANED",
    "Attachment",
    "Description",
    "Health",
    "InstanceSpec",
    "format_tags",
]

TAG_GROUP: Final = "infrakit.group"
TAG_CONFIG_SHA: Final = "infrakit.config_sha"
TAG_LOGICAL_ID: Final = "infrakit.logical_id"
TAG_NAMESPACE: Final = "infrakit.namespace"
# Set on the instances of a group deleted with its instances left in place on purpose
# (InfraKit's "free"), so that no collector of dangling instances takes them.
TAG_ORPHANED: Final = "infrakit.orphaned"


class Health(enum.Enum):
    """A flavor's verdict on one instance (InfraKit's flavor.Health)."""

    UNKNOWN = "Unknown"
    HEALTHY = "Healthy"
    UNHEALTHY = "Unhealthy"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Attachment:
    """Something attached to an instance at provision time (a volume, a network...)."""

    id: str
    type: str

    def to_json(self) -> dict[str, str]:
        return {"ID": self.id, "Type": self.type}


@dataclasses.dataclass(frozen=True, kw_only=True)
class InstanceSpec:
    """What to provision; a flavor's ``prepare`` turns one into another."""

    properties: Any = None
    tags: Mapping[str, str] = dataclasses.field(default_factory=dict)
    init: str = ""
    logical_id: str | None = None
    attachments: tuple[Attachment, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """InfraKit's JSON form of ``instance.Spec``."""
        return {
            "Properties": self.properties,
            "Tags": dict(self.tags),
            "Init": self.init,
            "LogicalID": self.logical_id,
            "Attachments": [a.to_json() for a in self.attachments],
        }

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> InstanceSpec:
        tags = document.get("Tags") or {}
        attachments = document.get("Attachments") or []
        return cls(
            properties=document.get("Properties"),
            tags={str(k): str(v) for k, v in tags.items()},
            init=str(document.get("Init") or ""),
            logical_id=document.get("LogicalID"),
            attachments=tuple(Attachment(id=str(a["ID"]), type=str(a["Type"])) for a in attachments),
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class Description:
    """An instance as observed: its ID, logical ID and tags (InfraKit's Description).

    ``created`` (seconds since the epoch) orders instances for scale-down; 0 if unknown.
    """

    id: str
    logical_id: str | None = None
    tags: Mapping[str, str] = dataclasses.field(default_factory=dict)
    created: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"ID": self.id, "LogicalID": self.logical_id, "Tags": dict(self.tags)}


def format_tags(tags: Mapping[str, str]) -> str:
    """InfraKit's ``k=v,k=v`` rendering, sorted by key."""
    return ",".join(f"{k}={tags[k]}" for k in sorted(tags))
