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

The files are YAML, written in its JSON form (indented JSON is valid YAML): every
command reads the store and every sync rewrites a status that lists up to thousands of
instances, and the C JSON codec does that ten to twenty times faster than PyYAML, which
builds its objects in Python even over libyaml.  Any YAML is still read (a file edited
by hand, or written before); a document JSON cannot carry exactly (non-string keys,
NaN) is written as block YAML.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import fcntl
import json
import os
import re
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final

from infrakit import files
from infrakit.core import specs

__all__ = ["ORPHAN_ANNOTATION", "Damaged", "Store", "StoredGroup"]

ORPHAN_ANNOTATION: Final = "infrakit.io/orphan-instances"
_OPTIONS: Final = "instancePluginOptions"


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
            document = _decode(data)
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
        except (RecursionError, specs.SpecError, ValueError, TypeError) as error:
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
        files.atomic_write(self.path(spec.name), _encode(document), durable=True)

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


def _encode(document: Mapping[str, Any]) -> bytes:
    """The document as indented JSON, if YAML reads that text back as the same document; else block YAML."""
    try:
        text = json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False)
        exact = re.search(_NOT_YAML, text) is None and json.loads(text, parse_float=_yaml_float) == document
    except (TypeError, ValueError):  # a type JSON lacks, NaN, a float YAML would read as a string
        exact = False
    if not exact:  # non-string keys or tuples (JSON changes them), characters YAML must escape
        import yaml

        dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml's when PyYAML has it: the same text
        text = yaml.dump(document, Dumper=dumper, sort_keys=False, default_flow_style=False, allow_unicode=True)
    return (text if text.endswith("\n") else text + "\n").encode("utf-8")


def _decode(data: bytes) -> Any:
    """A store file's document: JSON as written, else any YAML (a file edited by hand, say)."""
    if data[:1] == b"{":
        try:
            return json.loads(data, parse_constant=_no_constant)
        except ValueError:
            pass  # YAML's own flow style, or damaged: the YAML parser says which
    import yaml  # lazy: the files we write are JSON; YAML is for those written otherwise

    try:
        return yaml.load(data, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 - a safe loader
    except yaml.YAMLError as error:
        raise ValueError(str(error)) from None


# What YAML 1.1 (PyYAML) would not read back as JSON meant it: raw characters it refuses
# (JSON escapes only those below 0x20), and floats with an exponent but no dot ("1e+16",
# a string to YAML).  Either sends the document to the YAML dumper instead.
_NOT_YAML: Final = "[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"


def _yaml_float(token: str) -> float:
    if "." not in token and ("e" in token or "E" in token):
        raise ValueError(f"{token}: YAML 1.1 reads it as a string")
    return float(token)


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON we wrote")
