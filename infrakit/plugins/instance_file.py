"""The file instance plugin: one JSON file per instance in a directory.

InfraKit's ``instance-file``: an instance is a file named by its ID
(``instance-<random 63-bit integer>``) holding ``ID``, ``LogicalID``, ``Tags`` and the
full ``Spec`` it was provisioned from.  Deleting the file is losing the instance, which
is how the tutorial demonstrates self-healing.

The directory may be shared with other groups and other programs, so the plugin is
careful: it never follows a symlink, never writes outside the directory, only
destroys files whose name is an instance ID, and skips (warning once) files it cannot
decode.

``describe`` runs on every reconcile of every group, and every group's instances may
share one directory (the operator's volume), so what it parsed is cached per directory
(shared by every plugin object in the process) and re-read only when it may have
changed, as git's index does:

* a file is parsed again only when its inode changed (the plugin and well-behaved
  writers replace files by rename), and at least every ``REVALIDATE`` seconds its full
  ``(inode, size, mtime, ctime)`` is compared too (an edit in place, a ``chmod``);
* a file that changed less than ``RACY_NS`` before it was read may change again with the
  same timestamps, so it is read again each time until it is older ("racy" entries);
* when the directory's own mtime is unchanged, settled (older than ``RACY_NS`` when it
  was listed), every entry is trusted and the last full check is recent, the directory
  is not even listed: a describe is then one ``stat`` and a dictionary lookup by group.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import math
import os
import re
import secrets
import stat
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from infrakit import files
from infrakit.core import instances
from infrakit.plugins import spi

__all__ = ["RACY_NS", "REVALIDATE", "FilePlugin", "create"]

NAME: Final = "instance-file"
_ID = re.compile(r"^instance-[0-9]{1,19}$")
_MAX_FILE = 1 << 20

RACY_NS: Final = 2_000_000_000  # a change this recent may hide behind equal timestamps (FAT: 2 s)
REVALIDATE: Final = 1.0  # seconds between full (stat every file) checks of a directory
_MAX_DIRECTORIES: Final = 32  # directories whose listings are kept

log = logging.getLogger(__name__)


def create(options: Mapping[str, Any]) -> FilePlugin:
    """``options``: ``dir`` (the instance directory, required) and ``fsync`` (bool)."""
    directory = options.get("dir")
    if not directory:
        raise spi.PluginError("instance-file needs a directory: give --dir (or $INFRAKIT_INSTANCE_DIR)")
    return FilePlugin(directory=Path(directory), durable=bool(options.get("fsync", False)))


class FilePlugin:
    """Instances as files in ``directory`` (created on first use)."""

    name = NAME

    def __init__(self, *, directory: Path, durable: bool = False) -> None:
        self.directory = Path(directory)
        self.durable = durable
        self._root = os.path.abspath(self.directory)
        self._warned: set[tuple[str, str]] = set()
        self._rendered: tuple[instances.InstanceSpec, str, str, dict[str, str]] | None = None

    def validate(self, properties: Any) -> None:
        # Any JSON document is a valid file-instance property set: it is stored verbatim.
        return None

    def provision(self, spec: instances.InstanceSpec) -> str:
        rendered = self._rendered
        if rendered is None or rendered[0] is not spec or rendered[3] != spec.tags:
            # The engine provisions a reconcile's instances from one (frozen, never mutated)
            # spec: its JSON is rendered once.
            tags = dict(spec.tags)
            rendered = self._rendered = (spec, _nested(spec.to_json()), _nested(tags), tags)
        for _ in range(4):
            instance_id = f"instance-{secrets.randbits(63)}"
            data = _encode_new(
                created=time.time(),
                instance_id=instance_id,
                logical_id=spec.logical_id,
                spec=rendered[1],
                tags=rendered[2],
            )
            try:
                self._write(instance_id, data, new=True)
            except FileExistsError:  # one chance in 2**63: draw another ID
                continue
            return instance_id
        raise spi.PluginError(f"cannot find a free instance ID in {self.directory}")

    def label(self, instance_id: str, labels: Mapping[str, str]) -> None:
        document = self._read(self._path(instance_id))
        if document is None:
            raise spi.InstanceNotFound(f"instance {instance_id} not found in {self.directory}")
        document["Tags"] = {**document.get("Tags", {}), **labels}
        self._write(instance_id, json.dumps(document, indent=2, sort_keys=True).encode("utf-8"))

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
            info = os.stat(self._root)
        except FileNotFoundError:
            return []
        listing = _listing(self._root, (info.st_dev, info.st_ino))
        with listing.lock:
            now = time.monotonic()
            stale = now - listing.validated >= REVALIDATE
            if stale or listing.racy or not listing.settled or listing.mtime_ns != info.st_mtime_ns:
                self._scan(listing, info, full=stale)
                if stale:
                    listing.validated = now
            group = tags.get(instances.TAG_GROUP)
            candidates = listing.everything if group is None else listing.by_group.get(group, ())
            return [d for d in candidates if all(d.tags.get(k) == v for k, v in tags.items())]

    # -- helpers -------------------------------------------------------------------------

    def _scan(self, listing: _Listing, info: os.stat_result, *, full: bool) -> None:
        """List the directory again; parse only what is new, changed or racy."""
        started_ns = time.time_ns()
        old = listing.entries
        entries: dict[str, _Entry] = {}
        racy = 0
        try:
            scanned = list(os.scandir(self._root))
        except FileNotFoundError:
            scanned = []
        for entry in scanned:
            name = entry.name
            if not _ID.match(name):
                continue  # temp files, other programs' files: not instances
            if not entry.is_file(follow_symlinks=False):
                self._warn(name, "is not a regular file (a symlink?); ignored, never followed")
                continue
            cached = old.get(name)
            if cached is not None and cached.trusted:
                if not full:
                    if entry.inode() == cached.key[0]:
                        entries[name] = cached
                        continue
                else:
                    try:
                        if _key(entry.stat(follow_symlinks=False)) == cached.key:
                            entries[name] = cached
                            continue
                    except FileNotFoundError:
                        continue
            fresh = self._load(entry.path, name, started_ns)
            if fresh is not None:
                entries[name] = fresh
                racy += not fresh.trusted
        listing.entries = entries
        listing.racy = racy
        listing.mtime_ns = info.st_mtime_ns
        listing.settled = started_ns - info.st_mtime_ns > RACY_NS
        everything = sorted((e.description for e in entries.values() if e.description is not None), key=lambda d: d.id)
        by_group: dict[str, list[instances.Description]] = collections.defaultdict(list)
        for description in everything:
            group = description.tags.get(instances.TAG_GROUP)
            if group is not None:
                by_group[group].append(description)
        listing.everything = everything
        listing.by_group = dict(by_group)

    def _load(self, path: str, name: str, started_ns: int) -> _Entry | None:
        """Parse one instance file into a cache entry (None: gone, or unreadable for now)."""
        try:
            data, info = files.read_nofollow_stat(path, limit=_MAX_FILE)
        except FileNotFoundError:
            return None
        except OSError as error:
            self._warn(name, f"cannot be read as an instance ({error}); ignored")
            return None  # not cached: a permission may be fixed, a file may shrink
        key = _key(info)
        trusted = started_ns - max(info.st_mtime_ns, info.st_ctime_ns) > RACY_NS
        try:
            document = json.loads(data)
        except ValueError as error:
            self._warn(name, f"cannot be read as an instance ({error}); ignored")
            return _Entry(key=key, description=None, trusted=trusted)
        if not isinstance(document, dict) or document.get("ID") != name:
            self._warn(name, "is not an instance document (its ID does not match its name); ignored")
            return _Entry(key=key, description=None, trusted=trusted)
        found_tags = document.get("Tags") or {}
        if not isinstance(found_tags, dict):
            return _Entry(key=key, description=None, trusted=trusted)  # matches no tags
        try:
            created = float(document.get("CreatedAt") or 0.0)
        except (TypeError, ValueError):
            created = 0.0
        description = instances.Description(
            id=name,
            logical_id=document.get("LogicalID"),
            tags={sys.intern(str(k)): sys.intern(str(v)) for k, v in found_tags.items()},
            created=created,
        )
        return _Entry(key=key, description=description, trusted=trusted)

    def _path(self, instance_id: str) -> Path:
        if not _ID.match(instance_id):
            raise spi.InstanceNotFound(f"{instance_id!r} is not an instance ID (instance-<digits>)")
        return self.directory / instance_id

    def _write(self, instance_id: str, data: bytes, *, new: bool = False) -> None:
        """Write the instance file atomically: ``new`` ones are created, never replaced."""
        path = os.path.join(self._root, instance_id)
        write = files.create_new if new else files.atomic_write
        try:
            try:
                write(path, data, durable=self.durable)
            except FileNotFoundError:  # the directory is made on first use (or was removed)
                os.makedirs(self._root, exist_ok=True)
                write(path, data, durable=self.durable)
        except FileExistsError:
            raise
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


# -- describe's cache ----------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class _Entry:
    key: tuple[int, int, int, int]  # st_ino, st_size, st_mtime_ns, st_ctime_ns of what was parsed
    description: instances.Description | None  # None: not an instance (undecodable, wrong ID)
    trusted: bool  # parsed more than RACY_NS after its last change


class _Listing:
    """What ``describe`` last saw in one directory (guarded by ``lock``)."""

    def __init__(self, identity: tuple[int, int]) -> None:
        self.identity = identity  # st_dev, st_ino of the directory
        self.lock = threading.Lock()
        self.entries: dict[str, _Entry] = {}
        self.everything: list[instances.Description] = []  # sorted by ID
        self.by_group: dict[str, list[instances.Description]] = {}  # by the infrakit.group tag, sorted by ID
        self.mtime_ns = -1  # the directory's mtime when last listed
        self.settled = False  # listed more than RACY_NS after that mtime
        self.racy = 0  # entries parsed too soon after their last change
        self.validated = -math.inf  # time.monotonic() of the last full check


_listings: collections.OrderedDict[str, _Listing] = collections.OrderedDict()
_listings_lock = threading.Lock()


def _listing(root: str, identity: tuple[int, int]) -> _Listing:
    with _listings_lock:
        listing = _listings.get(root)
        if listing is None or listing.identity != identity:  # new, or another directory by that name
            listing = _listings[root] = _Listing(identity)
            while len(_listings) > _MAX_DIRECTORIES:
                _listings.popitem(last=False)
        _listings.move_to_end(root)
        return listing


def _key(info: os.stat_result) -> tuple[int, int, int, int]:
    return (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


# -- writing -------------------------------------------------------------------------------

_rendered: dict[str, str] = {}  # compact JSON -> its indented rendering, nested one level


def _encode_new(*, created: float, instance_id: str, logical_id: str | None, spec: str, tags: str) -> bytes:
    """``json.dumps(document, indent=2, sort_keys=True)``, byte for byte, at C-encoder speed.

    The pure-Python indenting encoder cost more than writing the file; ``spec`` and
    ``tags`` come rendered by :func:`_nested`, once for all the instances that share them.
    """
    return (
        f'{{\n  "CreatedAt": {_scalar(created)},\n  "ID": "{instance_id}",\n'
        f'  "LogicalID": {_scalar(logical_id)},\n  "Spec": {spec},\n  "Tags": {tags}\n}}'
    ).encode()


def _scalar(value: float | str | None) -> str:
    if type(value) is float and math.isfinite(value):
        return float.__repr__(value)  # what json writes for a float
    return json.dumps(value)


_compact = json.JSONEncoder(sort_keys=True)  # one encoder: json.dumps(..., sort_keys=True) builds one per call


def _nested(value: dict[str, Any]) -> str:
    """``value`` as ``json.dumps(indent=2, sort_keys=True)`` renders it one level deep."""
    compact = _compact.encode(value)
    text = _rendered.get(compact)
    if text is None:
        # Inside the document, every line of a member's rendering is indented once more
        # (JSON strings never contain a raw newline, so these are all structural).
        text = json.dumps(value, indent=2, sort_keys=True).replace("\n", "\n  ")
        if len(_rendered) >= 256:
            _rendered.clear()
        _rendered[compact] = text
    return text
