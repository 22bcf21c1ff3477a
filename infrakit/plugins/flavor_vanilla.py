"""The vanilla flavor plugin: init lines, tags and attachments; healthy unless the instance plugin says not.

Properties (InfraKit's ``vanilla.Spec``)::

    Init: [shell lines]            appended to the instance's init script, newline-joined
    Tags: {key: value}             merged into the instance's tags (the flavor wins)
    Attachments: [{ID, Type}]      appended to the instance's attachments
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any, Final

from infrakit.core import instances, specs
from infrakit.plugins import spi

__all__ = ["VanillaPlugin", "create"]

NAME: Final = "flavor-vanilla"
_FIELD = "spec.flavor.properties"
_KNOWN = ("Init", "Tags", "Attachments")


def create(options: Mapping[str, Any]) -> VanillaPlugin:
    return VanillaPlugin()


class VanillaPlugin:
    name = NAME

    def __init__(self) -> None:
        # The last properties parsed, by identity: a reconcile prepares many instances
        # from the same (never mutated) properties object.
        self._parsed: tuple[Any, tuple[list[str], dict[str, str], tuple[instances.Attachment, ...]]] | None = None

    def validate(self, properties: Any, allocation: specs.Allocation) -> None:
        init, tags, attachments = _parse(properties)
        # What prepare adds travels in every instance spec: as big as instance plugins
        # can store, or a group would validate and then fail to provision on every pass.
        sizes = {
            "Init": len(json.dumps("\n".join(init))),
            "Tags": len(json.dumps(tags)),
            "Attachments": len(json.dumps([a.to_json() for a in attachments])),
        }
        total = sum(sizes.values())
        if total > instances.MAX_FLAVOR_BYTES:
            largest = max(sizes, key=lambda part: sizes[part])
            raise specs.SpecError(
                f"{_FIELD}.{largest}",
                f"Init, Tags and Attachments take {total} bytes as JSON, more than the "
                f"{instances.MAX_FLAVOR_BYTES} a flavor may add to an instance; make them smaller "
                "(fetch a large init script from the instance instead)",
            )

    def prepare(
        self, properties: Any, spec: instances.InstanceSpec, allocation: specs.Allocation
    ) -> instances.InstanceSpec:
        # Read the cache once: the plugin is long-lived and workers call it from several threads.
        parsed = self._parsed
        if parsed is None or parsed[0] is not properties:
            parsed = self._parsed = (properties, _parse(properties))
        init, tags, attachments = parsed[1]
        lines = ([spec.init] if spec.init else []) + init
        return dataclasses.replace(
            spec,
            init="\n".join(lines),
            tags={**spec.tags, **tags},
            attachments=spec.attachments + attachments,
        )

    def healthy(self, properties: Any, description: instances.Description) -> instances.Health:
        # What the instance plugin observed, when it says (the Docker plugin: the container's
        # state and healthcheck); otherwise healthy, as InfraKit's vanilla flavor.
        observed = description.tags.get(spi.TAG_HEALTH)
        if observed == "unhealthy":
            return instances.Health.UNHEALTHY
        if observed == "starting":
            return instances.Health.UNKNOWN
        return instances.Health.HEALTHY

    def drain(self, properties: Any, description: instances.Description) -> None:
        return None


def _parse(properties: Any) -> tuple[list[str], dict[str, str], tuple[instances.Attachment, ...]]:
    if properties is None:
        return [], {}, ()
    if not isinstance(properties, Mapping):
        raise specs.SpecError(_FIELD, "must be a mapping with Init, Tags and Attachments")
    unknown = sorted(set(properties) - set(_KNOWN))
    if unknown:
        raise specs.SpecError(f"{_FIELD}.{unknown[0]}", f"unknown vanilla property; allowed: {', '.join(_KNOWN)}")
    init = properties.get("Init") or []
    if not isinstance(init, list) or not all(isinstance(line, str) for line in init):
        raise specs.SpecError(f"{_FIELD}.Init", "must be a list of strings (shell lines)")
    tags = properties.get("Tags") or {}
    if not isinstance(tags, Mapping) or not all(isinstance(v, str) for v in tags.values()):
        raise specs.SpecError(f"{_FIELD}.Tags", "must be a mapping of strings to strings (quote numbers)")
    attachments = []
    for index, item in enumerate(properties.get("Attachments") or []):
        if (
            not isinstance(item, Mapping)
            or not isinstance(item.get("ID"), str)
            or not isinstance(item.get("Type"), str)
        ):
            raise specs.SpecError(f"{_FIELD}.Attachments[{index}]", "must be a mapping with string ID and Type")
        attachments.append(instances.Attachment(id=item["ID"], type=item["Type"]))
    return init, {str(k): v for k, v in tags.items()}, tuple(attachments)
