"""The file instance plugin: one JSON file per instance in a directory.

InfraKit's ``instance-file``: an instance is a file named by its ID
(``instance-<random 63-bit integer>``) holding ``ID``, ``LogicalID``, ``Tags`` and the
full ``Spec`` it was provisioned from.  Deleting the file is losing the instance, which
is how the tutorial demonstrates self-healing.

The directory may be shared with other groups and other programs, so the plugin is
careful: it never follows a symlink, never writes outside the directory, only
destroys files whose name is an instance ID, and skips (warning once) files it cannot
decode.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import stat
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from infrakit import files
from infrakit.core import instances
from infrakit.plugins import spi

__all__ = ["FilePlugin", "create"]

NAME: Final = "instance-file"
_ID = re.compile(r"^instance-[0-9]{1,19}$")
_MAX_FILE = 1 << 20

log = logging.getLogger(__name__)


def create(settings: spi.Settings) -> FilePlugin:
    return FilePlugin(directory=settings.instance_dir, durable=settings.durable)


class FilePlugin:
    """Instances as files in ``directory`` (created on first use)."""

    name = NAME

    def __init__(self, *, directory: Path, durable: bool = False) -> None:
        self.directory = Path(directory)
        self.durable = durable
        self._warned: set[tuple[str, str]] = set()

    def validate(self, properties: Any) -> None:
        # Any JSON document is a valid file-instance property set: it is stored verbatim.
        return None

    def provision(self, spec: instances.InstanceSpec) -> str:
        self.directory.mkdir(parents=True, exist_ok=True)
        instance_id = f"instance-{secrets.randbits(63)}"
        document = {
            "ID": instance_id,
            "LogicalID": spec.logical_id,
            "Tags": dict(spec.tags),
            "Spec": spec.to_json(),
            "CreatedAt": time.time(),
        }
        self._write(instance_id, document)
        return instance_id

    def label(self, instance_id: str, labels: Mapping[str, str]) -> None:
        document = self._read(self._path(instance_id))
        if document is None:
            raise spi.InstanceNotFound(f"instance {instance_id} not found in {self.directory}")
        document["Tags"] = {**document.get("Tags", {}), **labels}
        self._write(instance_id, document)

    def destroy(self, instance_id: str) -> None:
        path = self._path(instance_id)
        try:
            info = path.lstat()
        except FileNotFoundError:
            raise spi.InstanceNotFound(f"instance {instance_id} not found in {self.directory}") from None
        if not stat.S_ISREG(info.st_mode):
            raise spi.PluginError(f"refusing to destroy {path}: not a regular file (symlinks are never followed)")
        path.unlink()
        if self.durable:
            files.fsync_dir(self.directory)

    def describe(self, tags: Mapping[str, str]) -> list[instances.Description]:
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            return []
        found = []
        for entry in entries:
            if not _ID.match(entry.name):
                continue  # temp files, other programs' files: not instances
            if not entry.is_file(follow_symlinks=False):
                self._warn(entry.name, "is not a regular file (a symlink?); ignored, never followed")
                continue
            document = self._read(Path(entry.path))
            if document is None:
                continue
            found_tags = document.get("Tags") or {}
            if not isinstance(found_tags, dict) or any(found_tags.get(k) != v for k, v in tags.items()):
                continue
            found.append(
                instances.Description(
                    id=entry.name,
                    logical_id=document.get("LogicalID"),
                    tags={str(k): str(v) for k, v in found_tags.items()},
                    created=float(document.get("CreatedAt") or 0.0),
                )
            )
        return sorted(found, key=lambda d: d.id)

    # -- helpers -------------------------------------------------------------------------

    def _path(self, instance_id: str) -> Path:
        if not _ID.match(instance_id):
            raise spi.InstanceNotFound(f"{instance_id!r} is not an instance ID (instance-<digits>)")
        return self.directory / instance_id

    def _write(self, instance_id: str, document: dict[str, Any]) -> None:
        data = json.dumps(document, indent=2, sort_keys=True).encode("utf-8")
        try:
            files.atomic_write(self._path(instance_id), data, durable=self.durable)
        except OSError as error:
            raise spi.PluginError(f"cannot write instance {instance_id} in {self.directory}: {error}") from error

    def _read(self, path: Path) -> dict[str, Any] | None:
        try:
            document = json.loads(files.read_nofollow(path, limit=_MAX_FILE))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:
            self._warn(path.name, f"cannot be read as an instance ({error}); ignored")
            return None
        if not isinstance(document, dict) or document.get("ID") != path.name:
            self._warn(path.name, "is not an instance document (its ID does not match its name); ignored")
            return None
        return document

    def _warn(self, name: str, problem: str) -> None:
        if (name, problem) not in self._warned:
            self._warned.add((name, problem))
            log.warning("instance directory %s: %s %s", self.directory, name, problem)
