"""Labels Docker cannot hold: a side store of the labels added to containers after their creation.

Docker's labels are fixed when a container is created, and v0.5's plugin refused ``Label``.
But the group labels instances on two paths that must not fail: adopting a bootstrap
instance (its ``infrakit.config_sha`` becomes the group's) and orphaning (``infrakit.orphaned``
set when a group is freed on a cluster, unset when a group adopts the instances again).
Re-creating the container would lose what runs in it and change its ID; refusing would leave
a freed Group stuck Terminating.  So a label is recorded here, by container ID, and every
describe lays the recorded labels over the container's own.

One JSON file per engine (``labels-<engine ID>.json``: two engines never mix), under a
directory of the plugin's user (``$INFRAKIT_HOME/instance-docker`` unless told), written
atomically under an exclusive lock so that processes sharing it (``infrakit-local``, the
group daemon) see one another's labels, and pruned of containers that are gone at each
write.  What it does not give: processes that do not share the directory (an operator in a
pod and a CLI on the host) do not see each other's labels; InfraKit's own plugin ignores
them; ``docker inspect`` shows the labels the container was created with.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Final

from infrakit import files
from infrakit.plugins import spi

__all__ = ["LabelStore"]

MAX_FILE: Final = 16 << 20


class LabelStore:
    """Recorded labels by full container ID, in ``path`` (thread- and process-safe)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._key: tuple[int, int, int] | None = None  # (inode, size, mtime) of what _cached was read from
        self._cached: dict[str, dict[str, str]] = {}

    def overlay(self) -> dict[str, dict[str, str]]:
        """The recorded labels (read again only when the file changed)."""
        with self._lock:
            try:
                info = os.stat(self.path)
            except FileNotFoundError:
                self._key, self._cached = None, {}
                return self._cached
            except OSError as error:
                raise spi.PluginError(f"cannot read the labels of the Docker plugin in {self.path}: {error}") from None
            key = (info.st_ino, info.st_size, info.st_mtime_ns)
            if key != self._key:
                self._cached = self._read()
                self._key = key
            return self._cached

    def record(self, container: str, labels: Mapping[str, str], *, live: Callable[[], Iterable[str]]) -> None:
        """Merge ``labels`` into what is recorded for ``container``; forget containers not in ``live()``."""
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with open(self.path.with_suffix(".lock"), "a", encoding="utf-8") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                with self._lock:
                    recorded = self._read()
                    alive = set(live())
                    recorded = {k: v for k, v in recorded.items() if k in alive}
                    recorded[container] = {**recorded.get(container, {}), **labels}
                    data = json.dumps(recorded, indent=1, sort_keys=True).encode("utf-8")
                    if len(data) > MAX_FILE:
                        raise spi.PluginError(
                            f"the Docker plugin's labels in {self.path} would exceed {MAX_FILE} bytes"
                        )
                    files.atomic_write(self.path, data, durable=True, mode=0o600)
                    self._key = None
        except OSError as error:
            raise spi.PluginError(f"cannot record labels in {self.path}: {error.strerror or error}") from None

    def _read(self) -> dict[str, dict[str, str]]:
        try:
            data = files.read_nofollow(self.path, limit=MAX_FILE)
        except FileNotFoundError:
            return {}
        except OSError as error:
            raise spi.PluginError(f"cannot read the Docker plugin's labels in {self.path}: {error}") from None
        try:
            document = json.loads(data)
        except ValueError as error:
            raise spi.PluginError(
                f"the Docker plugin's labels in {self.path} are not JSON ({error}); move the file away"
            ) from None
        if not isinstance(document, dict):
            return {}
        return {
            str(k): {str(a): b for a, b in v.items()}
            for k, v in document.items()
            if isinstance(v, dict) and all(isinstance(b, str) for b in v.values())
        }
