"""``instance-docker``: containers on a Docker engine as instances (InfraKit v0.5's docker plugin).

:mod:`.plugin` is the plugin (what it does, and where it differs from v0.5), :mod:`.properties`
what its properties mean, :mod:`.engine` the Engine API client (and why not the ``docker``
SDK), :mod:`.labels` the side store that lets it label containers.  ``create(options)`` is
its factory for the registry; ``infrakit-instance-docker`` serves it as a daemon.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from infrakit.plugins import spi
from infrakit.plugins.instance_docker.plugin import NAME, DockerPlugin

__all__ = ["NAME", "DockerPlugin", "create", "labels_dir", "parse_namespace"]


def create(options: Mapping[str, Any]) -> DockerPlugin:
    """``options`` (all optional): ``url`` (``$DOCKER_HOST``, else ``unix:///var/run/docker.sock``),
    ``version`` (the API version, ``1.25``), ``namespace`` (tags every container carries and every
    describe filters by: a mapping or ``k=v,k=v``), ``labels_dir`` (the side store of labels,
    :func:`labels_dir`), ``pull_timeout`` and ``init_timeout`` (seconds), ``retries``."""
    from infrakit.plugins.instance_docker import engine

    try:
        return DockerPlugin(
            engine=engine.Engine(
                options.get("url") or None, version=str(options.get("version") or engine.DEFAULT_VERSION)
            ),
            namespace=parse_namespace(options.get("namespace")),
            labels_dir=Path(options["labels_dir"]) if options.get("labels_dir") else labels_dir(),
            pull_timeout=float(options.get("pull_timeout", 300.0)),
            init_timeout=float(options.get("init_timeout", 60.0)),
            retries=int(options.get("retries", 2)),
        )
    except (TypeError, ValueError) as error:
        raise spi.PluginError(f"instance-docker options: {error}") from None


def labels_dir() -> Path:
    """``$INFRAKIT_HOME/instance-docker`` (``~/.infrakit/instance-docker``)."""
    home = os.environ.get("INFRAKIT_HOME") or str(Path.home() / ".infrakit")
    return (Path(home).expanduser() / "instance-docker").absolute()


def parse_namespace(value: Any) -> dict[str, str]:
    """``--namespace-tags``: ``k=v`` items (a list, or one comma-separated string), or a mapping."""
    if value is None or value == "":
        return {}
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items()}
    items = value.split(",") if isinstance(value, str) else list(value)
    found = {}
    for item in items:
        key, sep, tag = str(item).partition("=")
        if not sep or not key or "=" in tag:
            raise ValueError(f"namespace tag {item!r} is not key=value")
        found[key] = tag
    return found
