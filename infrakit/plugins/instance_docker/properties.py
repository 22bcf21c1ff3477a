"""What the Docker plugin's properties mean: validation, the container to create, a container's state.

The properties are InfraKit v0.5's ``CreateInstanceRequest``, taken as they are::

    Config:             Docker's container config (Image required), passed to the engine verbatim
    HostConfig:         Docker's host config, verbatim
    Tags:               labels for every container (beside the instance spec's tags)
    NetworkAttachments: [{Name, Driver}]: networks to connect each container to

Pure functions, no I/O: the plugin (:mod:`.plugin`) calls the engine with what they say.
Differences from v0.5, each because v0.5 did something the group could not take back:

* a label is ``Config.Labels``, then ``Tags``, then the spec's tags (the group's own win);
  ``infrakit.*`` keys in ``Config.Labels`` or ``Tags`` are refused (v0.5 let ``Tags``
  overwrite ``infrakit.group``, making a container another group's, and dropped
  ``Config.Labels`` altogether);
* a network attachment names a network that exists (v0.5 created a missing one: a
  network outlives any container, and a provision that fails half-way would leave it).

A container's state becomes the ``infrakit.health`` tag of its description
(:func:`health_of`), which the flavor reads (``spi.TAG_HEALTH``).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from typing import Any, Final

from infrakit.core import instances, specs

__all__ = [
    "FIELD",
    "LIVE_STATES",
    "MAX_PROPERTIES",
    "Request",
    "container_body",
    "health_of",
    "image_reference",
    "parse",
]

FIELD: Final = "spec.instance.properties"
KNOWN: Final = ("Config", "HostConfig", "Tags", "NetworkAttachments")
MAX_PROPERTIES: Final = 1 << 20  # bytes of compact JSON: Docker's own limit on a create is far above any config
MAX_DEPTH: Final = 64
NAME: Final = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")  # Docker's container names

LIVE_STATES: Final = frozenset({"created", "running", "paused", "restarting"})
"""States of a container that is an instance; ``exited``, ``dead`` and ``removing`` ones are
remains (v0.5 listed ``created`` and ``running`` only: a paused or restarting container
would have been replaced while Docker still held it)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Request:
    """Properties parsed: what every container of the group is made from."""

    config: Mapping[str, Any]
    host_config: Mapping[str, Any] | None
    labels: Mapping[str, str]  # Config.Labels, then Tags
    networks: tuple[str, ...]

    @property
    def image(self) -> str:
        image: str = self.config["Image"]
        return image


def parse(properties: Any) -> Request:
    """The request ``properties`` describe; ``SpecError`` naming the first bad field."""
    if not isinstance(properties, Mapping):
        raise specs.SpecError(FIELD, f"must be a mapping with Config (and HostConfig, Tags), got {_kind(properties)}")
    _check_size(properties)
    unknown = sorted(str(k) for k in properties if k not in KNOWN)
    if unknown:
        raise specs.SpecError(f"{FIELD}.{unknown[0]}", f"unknown property; allowed: {', '.join(KNOWN)}")
    config = properties.get("Config")
    if not isinstance(config, Mapping):
        raise specs.SpecError(f"{FIELD}.Config", f"must be Docker's container config (a mapping), got {_kind(config)}")
    image = config.get("Image")
    if not isinstance(image, str) or not image.strip() or image != image.strip():
        raise specs.SpecError(f"{FIELD}.Config.Image", "must name an image (such as busybox:1.36)")
    host_config = properties.get("HostConfig")
    if host_config is not None and not isinstance(host_config, Mapping):
        raise specs.SpecError(
            f"{FIELD}.HostConfig", f"must be Docker's host config (a mapping), got {_kind(host_config)}"
        )
    labels = {**_labels(config.get("Labels"), "Config.Labels"), **_labels(properties.get("Tags"), "Tags")}
    networks = []
    attachments = properties.get("NetworkAttachments")
    if attachments is not None and not isinstance(attachments, list):
        raise specs.SpecError(f"{FIELD}.NetworkAttachments", f"must be a list, got {_kind(attachments)}")
    for index, attachment in enumerate(attachments or ()):
        field = f"{FIELD}.NetworkAttachments[{index}]"
        if not isinstance(attachment, Mapping) or not isinstance(attachment.get("Name"), str):
            raise specs.SpecError(f"{field}.Name", "must name a network (a mapping with a string Name)")
        if not attachment["Name"]:
            raise specs.SpecError(f"{field}.Name", "must name a network, not be empty")
        networks.append(attachment["Name"])
    return Request(config=config, host_config=host_config, labels=labels, networks=tuple(networks))


def container_body(request: Request, tags: Mapping[str, str]) -> dict[str, Any]:
    """The body of ``POST /containers/create``: the config, its labels and the host config."""
    body = {k: v for k, v in request.config.items() if k != "Labels"}
    body["Labels"] = {**request.labels, **tags}
    if request.host_config is not None:
        body["HostConfig"] = dict(request.host_config)
    return body


def check_name(logical_id: str) -> None:
    """A pet's container is named by its logical ID (as v0.5): one Docker can take."""
    if not NAME.fullmatch(logical_id) or len(logical_id) > 255:
        raise specs.SpecError(
            "LogicalID",
            f"{logical_id!r} cannot name a container (letters, digits, '_', '.', '-', starting with a letter or "
            "digit): choose logical IDs Docker accepts as container names",
        )


def image_reference(image: str) -> tuple[str, str]:
    """``(fromImage, tag)`` for ``POST /images/create``: a tag or digest is always given, or
    Docker would pull every tag of the repository."""
    if "@" in image:
        repository, _, digest = image.partition("@")
        return repository, digest
    slash = image.rfind("/")
    colon = image.rfind(":")
    if colon > slash:
        return image[:colon], image[colon + 1 :]
    return image, "latest"


def health_of(container: Mapping[str, Any]) -> str:
    """``healthy``, ``unhealthy`` or ``starting``, from a ``GET /containers/json`` entry.

    Running with no healthcheck is healthy; with one, its verdict (Docker's ``Status``
    reads ``Up 3 seconds (healthy)``, ``(unhealthy)``, ``(health: starting)``).  Created
    (not started yet) is starting; paused or restarting (Docker's restart policy is
    bringing it back) is unhealthy.
    """
    state = container.get("State")
    status = container.get("Status")
    text = status if isinstance(status, str) else ""
    if state == "running":
        if "(unhealthy)" in text:
            return "unhealthy"
        if "(health: starting)" in text:
            return "starting"
        return "healthy"
    if state == "created":
        return "starting"
    return "unhealthy"


def _labels(value: Any, field: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise specs.SpecError(f"{FIELD}.{field}", "must be a mapping of strings to strings (quote numbers)")
    for key in value:
        if key.startswith("infrakit."):
            raise specs.SpecError(
                f"{FIELD}.{field}.{key}",
                "infrakit.* labels are the group's own (its name, config hash...): use another key",
            )
    return dict(value)


def _check_size(properties: Mapping[str, Any]) -> None:
    depth = 0
    stack: list[tuple[Any, int]] = [(properties, 1)]
    while stack:
        node, level = stack.pop()
        depth = max(depth, level)
        if depth > MAX_DEPTH:
            raise specs.SpecError(FIELD, f"nested more than {MAX_DEPTH} levels deep; a Docker config is far flatter")
        if isinstance(node, Mapping):
            stack.extend((child, level + 1) for child in node.values())
        elif isinstance(node, list):
            stack.extend((child, level + 1) for child in node)
    instances.check_json(dict(properties), field=FIELD)
    size = len(json.dumps(properties, separators=(",", ":")))
    if size > MAX_PROPERTIES:
        raise specs.SpecError(FIELD, f"take {size} bytes as JSON, more than the {MAX_PROPERTIES} allowed; trim them")


def _kind(value: Any) -> str:
    return instances.kind(value)


def short(text: str, limit: int = 240) -> str:
    """``text`` on one line, at most ``limit`` characters (Docker's words in our one-line errors)."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
