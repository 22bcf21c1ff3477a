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

from infrakit.core import specs

# The one rule for what a plugin stores or sends (an instance file, an RPC answer) is the
# documents' rule: written, a value JSON cannot carry is not JSON to other readers, or
# comes back as something else.  Re-exported for the plugins, which speak of instances.
from infrakit.core.specs import check_json

__all__ = [
    "BOOTSTRAP_SHA",
    "MAX_FLAVOR_BYTES",
    "TAG_CLUSTER",
    "TAG_CONFIG_SHA",
    "TAG_GROUP",
    "TAG_LOGICAL_ID",
    "TAG_NAMESPACE",
    "TAG_ORPHANED",
    "Attachment",
    "Description",
    "Health",
    "InstanceSpec",
    "check_json",
    "check_spec",
    "format_tags",
    "kind",
]

TAG_GROUP: Final = "infrakit.group"
TAG_CONFIG_SHA: Final = "infrakit.config_sha"
TAG_LOGICAL_ID: Final = "infrakit.logical_id"
TAG_NAMESPACE: Final = "infrakit.namespace"
# The cluster a namespaced group's instances belong to (the operator's ``--cluster-id``,
# by default the UID of the cluster's kube-system namespace): two clusters whose
# operators share an instance plugin never take each other's instances.
TAG_CLUSTER: Final = "infrakit.cluster"
# Set ("true") on the instances of a group deleted with its instances left in place on
# purpose (InfraKit's "free"), so that no collector of dangling instances takes them; set
# to "false" when a group of that name adopts them again (a label merges tags, it cannot
# remove one), so that they are collected like any other once that group is gone.
TAG_ORPHANED: Final = "infrakit.orphaned"
# The config hash of an instance made outside InfraKit to join a group (the first manager
# of a swarm, which must exist before any group can be committed): InfraKit adopts it as
# up to date and labels it with the group's hash, never replaces it.
BOOTSTRAP_SHA: Final = "bootstrap"

MAX_FLAVOR_BYTES: Final = 1 << 20
"""Bytes a flavor may add to an instance spec (init script, tags, attachments), measured as
compact ASCII JSON (``json.dumps`` defaults: escapes count).  A flavor's ``validate``
refuses more; every instance plugin must store a spec carrying this much besides its
properties (the file plugin leaves room for it: ``infrakit.plugins.instance_file``)."""


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
        """The spec an InfraKit JSON document describes; ``SpecError`` naming the first bad field.

        Nothing is coerced: a number where a string belongs is refused, not turned into
        one, so what is provisioned is what the document says.
        """
        if not isinstance(document, Mapping):
            raise specs.SpecError("", f"an instance spec must be a mapping, got {kind(document)}")
        tags = document.get("Tags")
        if tags is not None and not isinstance(tags, Mapping):
            raise specs.SpecError("Tags", f"must be a mapping of strings to strings, got {kind(tags)}")
        attachments = document.get("Attachments")
        if attachments is not None and not isinstance(attachments, list):
            raise specs.SpecError("Attachments", f"must be a list, got {kind(attachments)}")
        for index, attachment in enumerate(attachments or ()):
            if not isinstance(attachment, Mapping):
                raise specs.SpecError(
                    f"Attachments[{index}]", f"must be a mapping with ID and Type, got {kind(attachment)}"
                )
            for key in ("ID", "Type"):
                if type(attachment.get(key)) is not str:
                    got = kind(attachment[key]) if key in attachment else "nothing"
                    raise specs.SpecError(f"Attachments[{index}].{key}", f"must be a string, got {got}")
        init = document.get("Init")
        spec = cls(
            properties=document.get("Properties"),
            tags=dict(tags or {}),
            init="" if init is None else init,
            logical_id=document.get("LogicalID"),
            attachments=tuple(Attachment(id=a["ID"], type=a["Type"]) for a in attachments or ()),
        )
        check_spec(spec)
        return spec


def check_spec(spec: InstanceSpec) -> None:
    """Raise ``SpecError`` naming the first field of ``spec`` that is not of InfraKit's types.

    Plugins call it before provisioning: a spec is a frozen dataclass, but nothing stops
    a caller (a flavor, a document) from putting a list where a string belongs.
    """
    if spec.logical_id is not None and type(spec.logical_id) is not str:
        raise specs.SpecError("LogicalID", f"must be a string or null, got {kind(spec.logical_id)}")
    if not isinstance(spec.tags, Mapping):
        raise specs.SpecError("Tags", f"must be a mapping of strings to strings, got {kind(spec.tags)}")
    for key, value in spec.tags.items():
        if type(key) is not str:
            raise specs.SpecError("Tags", f"keys must be strings, got {kind(key)} ({key!r})")
        if type(value) is not str:
            raise specs.SpecError(f"Tags.{key}", f"must be a string, got {kind(value)}")
    if type(spec.init) is not str:
        raise specs.SpecError("Init", f"must be a string, got {kind(spec.init)}")
    if not isinstance(spec.attachments, tuple):
        raise specs.SpecError("Attachments", f"must be a list, got {kind(spec.attachments)}")
    for index, attachment in enumerate(spec.attachments):
        if not isinstance(attachment, Attachment):
            raise specs.SpecError(
                f"Attachments[{index}]", f"must be a mapping with ID and Type, got {kind(attachment)}"
            )
        for key, value in (("ID", attachment.id), ("Type", attachment.type)):
            if type(value) is not str:
                raise specs.SpecError(f"Attachments[{index}].{key}", f"must be a string, got {kind(value)}")


def kind(value: Any) -> str:
    """What a JSON-like value is, for error messages ("got a list")."""
    return _KINDS.get(specs.json_type(value)) or f"a {type(value).__name__}"


_KINDS: Final[dict[str | None, str]] = {
    "null": "null",
    "boolean": "a boolean",
    "number": "a number",
    "string": "a string",
    "object": "a mapping",
    "array": "a list",
}


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
