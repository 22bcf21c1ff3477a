"""The local store: one YAML file per group under ``$INFRAKIT_HOME/groups``.

Each file holds the group's manifest (what was committed), its last status, and what
the API server would keep for a Group object: ``metadata.generation`` (bumped when the
spec changes, so ``status.observedGeneration`` tells whether the status is about the
current spec), ``metadata.deletionTimestamp`` while a deletion is under way (the runtime
finishes it, even after a crash), the orphan annotation of a group freed with its
instances left in place, and the instance plugin's options it was committed with
(``instancePluginOptions``: the file plugin's directory), so that later commands find
its instances without being told ``--dir`` again.

Writes are atomic and durable (temp file, fsync, rename, fsync of the directory); every
reader and writer of the store serialises on an exclusive ``flock`` of
``$INFRAKIT_HOME/.lock`` (re-entrant within a thread), so concurrent ``infrakit-local``
invocations and the workers of ``run`` never interleave their changes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import fcntl
import os
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final

import yaml

from infrakit import files
from infrakit.core import specs

__all__ = ["ORPHAN_ANNOTATION", "Damaged", "Store", "StoredGroup"]

ORPHAN_ANNOTATION: Final = "infrakit.io/orphan-instances"
_OPTIONS: Final = "instancePluginOptions"

# libyaml's safe loader and dumper when PyYAML was built with it: the same documents,
# five times faster (a status lists up to 1,000 instances).
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class Damaged(specs.SpecError):
    """A store file that cannot be read as a group: this group's problem only."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class StoredGroup:
    spec: specs.GroupSpec
    status: Mapping[str, Any]
    manifest: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # as stored, without status
    generation: int = 1
    deleting: bool = False
    orphan: bool = False
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)


class Store:
    """Groups on disk, under ``home``."""

    def __init__(self, home: Path) -> None:
        self.home = Path(home)
        self.groups_dir = self.home / "groups"
        self._held = threading.local()

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the store's exclusive lock (blocking); clean up after killed writers.

        Re-entrant in one thread: a commit holds it across its first sync.
        """
        depth = getattr(self._held, "depth", 0)
        if depth:
            self._held.depth = depth + 1
            try:
                yield
            finally:
                self._held.depth -= 1
            return
        self.groups_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.home / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._held.depth = 1
            files.remove_stale_temps(self.groups_dir)
            yield
        finally:
            self._held.depth = 0
            os.close(fd)  # releases the lock

    def path(self, name: str) -> Path:
        return self.groups_dir / f"{specs.validate_name(name, field='group')}.yaml"

    def names(self) -> list[str]:
        try:
            entries = sorted(os.scandir(self.groups_dir), key=lambda e: e.name)
        except FileNotFoundError:
            return []
        return [e.name[: -len(".yaml")] for e in entries if e.name.endswith(".yaml") and not e.name.startswith(".")]

    def load(self, name: str) -> StoredGroup | None:
        path = self.path(name)
        try:
            data = files.read_nofollow(path, limit=16 << 20)
        except FileNotFoundError:
            return None
        except OSError as error:
            raise Damaged("", f"the store file {path} cannot be read ({error}); fix or delete it") from None
        try:
            document = yaml.load(data, Loader=_Loader)  # noqa: S506 - a safe loader
            if not isinstance(document, Mapping):
                raise Damaged("", "not a mapping")
            manifest = {k: v for k, v in document.items() if k not in ("status", _OPTIONS)}
            spec = specs.parse_document(manifest)
            stored_status = document.get("status") or {}
            if not isinstance(stored_status, Mapping):
                raise Damaged("status", "is not a mapping")
            metadata = manifest.get("metadata") or {}
            generation = metadata.get("generation", 1)
            if not isinstance(generation, int) or isinstance(generation, bool) or generation < 1:
                raise Damaged("metadata.generation", f"must be a positive integer, got {generation!r}")
            options = document.get(_OPTIONS) or {}
            if not isinstance(options, Mapping):
                raise Damaged(_OPTIONS, "is not a mapping")
        except (yaml.YAMLError, RecursionError, specs.SpecError, ValueError, TypeError) as error:
            detail = " ".join(str(error).split())
            raise Damaged("", f"the store file {path} is damaged ({detail}); fix or delete it") from None
        return StoredGroup(
            spec=spec,
            status=stored_status,
            manifest=manifest,
            generation=generation,
            deleting=bool(metadata.get("deletionTimestamp")),
            orphan=(metadata.get("annotations") or {}).get(ORPHAN_ANNOTATION) == "true",
            options=options,
        )

    def save(
        self,
        spec: specs.GroupSpec,
        status: Mapping[str, Any],
        *,
        generation: int = 1,
        deleting: bool = False,
        orphan: bool = False,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        manifest = spec.to_manifest()
        metadata = manifest["metadata"]
        metadata["generation"] = generation
        if deleting:
            metadata["deletionTimestamp"] = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if orphan:
            metadata["annotations"] = {ORPHAN_ANNOTATION: "true"}
        document = {**manifest, "status": dict(status)}
        if options:
            document[_OPTIONS] = dict(options)
        text = yaml.dump(document, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True)
        files.atomic_write(self.path(spec.name), text.encode("utf-8"), durable=True)

    def update(self, stored: StoredGroup, **changes: Any) -> None:
        """Save ``stored`` with some of its fields changed."""
        merged = dataclasses.replace(stored, **changes)
        self.save(
            merged.spec,
            merged.status,
            generation=merged.generation,
            deleting=merged.deleting,
            orphan=merged.orphan,
            options=merged.options,
        )

    def delete(self, name: str) -> bool:
        try:
            self.path(name).unlink()
        except FileNotFoundError:
            return False
        files.fsync_dir(self.groups_dir)
        return True
