"""The file instance plugin: one JSON file per instance in a directory.

InfraKit's ``instance-file``: an instance is a file named by its ID
(``instance-<random 63-bit integer>``) holding ``ID``, ``LogicalID``, ``Tags`` and the
full ``Spec`` it was provisioned from.  Deleting the file is losing the instance, which
is how the tutorial demonstrates self-healing.

The directory may be shared with other groups and other programs, so the plugin is
careful: it never follows a symlink, never writes outside the directory, only
destroys files whose name is an instance ID, and skips (warning once) files it cannot
use.  One file never stops anything: whatever one file holds (nesting 200,000 deep, a
401-digit number, bytes that are not UTF-8, a list where a string belongs), it is a
warning about that file and describe goes on with the others; only well-typed
descriptions (string IDs, logical IDs and tags) ever reach the planner.

What it writes it reads back (limits agree end to end, or a group would provision again
on every pass and fill the disk):

* ``validate`` refuses properties whose rendering in an instance file would take more
  than ``MAX_PROPERTIES`` bytes (measured as ``provision`` renders them: indented JSON,
  where every nesting level costs two bytes on every line), nested deeper than the core
  allows, or that are not JSON;
* ``provision`` and ``label`` refuse (``PluginError``, nothing written) a file larger
  than ``MAX_FILE``, the read limit, which leaves ``MAX_FILE - MAX_PROPERTIES`` for what
  the flavor adds (init script, tags, attachments: at most
  ``infrakit.core.instances.MAX_FLAVOR_BYTES`` as compact JSON, which a flavor's
  ``validate`` checks; indented, and the tags twice, they take at most 3.5 times that);
  ``provision`` refuses a spec of the wrong types (``SpecError`` naming the field).

A file named as an instance that cannot be decoded (larger than the read limit, damaged
in the middle, written by an older version with other limits) may still be one of ours,
and forgetting it would make its group provision a replacement on every pass.  Our files
are ``json.dumps(indent=2, sort_keys=True)`` of ``CreatedAt, ID, LogicalID, Spec,
Tags``: the head names the instance and the last member is its ``Tags``.  So when the
first ``_HEAD`` bytes are exactly that head (with the file's own name as ``ID``) and the
last ``_TAIL`` bytes end in exactly ``"Tags": {...}`` (strings to strings), the file is
described from those two ends: a member of its group, never replaced, removed by the
group's ``destroy`` (which needs only its name), warned about once.  Anything else
(truncated at the end, another format, a decodable document of the wrong types) is not
a member: its group provisions one replacement, once, and the file is left alone.

``describe`` runs on every reconcile of every group, and every group's instances may
share one directory (the operator's volume: 100,000 files for 1,000 groups), so what it
parsed is kept by the plugin object (the runtime keeps one per directory), indexed by
group, and re-read only when it may have changed.  A plugin that describes a second time
is long-lived: it keeps a journal of the directory (``_Journal``, inotify), drained at
each describe, and re-reads only the files named there (O(changes); what ``provision``
itself just created is not even read back); the journal overflowing, the directory
moving, the directory changing with no event to say so (another host writing to a
network filesystem, which inotify cannot see), or ``REVALIDATE_JOURNALED`` seconds
passing means listing everything once more.  Without a journal (one-shot commands, no
inotify), it goes by timestamps, as git's index does:

* a file is parsed again only when its inode changed (the plugin and well-behaved
  writers replace files by rename), and at least every ``REVALIDATE`` seconds its full
  ``(inode, size, mtime, ctime)`` is compared too (an edit in place, a ``chmod``);
* a file that changed less than ``RACY_NS`` before it was read may change again with the
  same timestamps, so it is read again each time until it is older ("racy" entries);
* when the directory's own mtime is unchanged, settled (older than ``RACY_NS`` when it
  was listed), every entry is trusted and the last full check is recent, the directory
  is not even listed: a describe is then one ``stat`` and a dictionary lookup by group.

``changes`` tells the runtime which instances changed (filesystem notifications,
debounced), and survives the directory being removed and re-created.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import logging
import math
import os
import re
import stat
import sys
import threading
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from infrakit import files
from infrakit.core import instances, specs
from infrakit.plugins import spi

if TYPE_CHECKING:
    import asyncio
    import concurrent.futures

__all__ = ["MAX_FILE", "MAX_PROPERTIES", "RACY_NS", "REVALIDATE", "FilePlugin", "create"]

NAME: Final = "instance-file"
_ID = re.compile(r"instance-[0-9]{1,19}")  # always fullmatch: "$" would let a trailing newline in

MAX_FILE: Final = 8 << 20  # bytes: the read limit, so also the largest file provision or label writes
MAX_PROPERTIES: Final = 4 << 20  # bytes the properties may take in a file; the rest is the flavor's
_MAX_DEPTH: Final = specs.MAX_PROPERTY_DEPTH  # what the core accepts; deeper risks the encoder's recursion

RACY_NS: Final = 2_000_000_000  # a change this recent may hide behind equal timestamps (FAT: 2 s)
STALE_TEMP_SECONDS: Final = 300.0  # a temp file this old is no live writer's
REVALIDATE: Final = 1.0  # seconds between full (stat every file) checks of a directory
REVALIDATE_JOURNALED: Final = 300.0  # the same, for a directory whose changes are journaled

_HEAD: Final = 8192  # bytes read to recover an undecodable file's identity (ID, LogicalID, CreatedAt)
_TAIL: Final = 65536  # bytes read to recover its Tags
_MAX_WARNED: Final = 4096  # (file, problem) pairs remembered so each is warned about once

# What changes() waits for: the same debounce as the controllers' watchers.
_DEBOUNCE_MS: Final = 200  # at most this long collecting a burst of changes
_STEP_MS: Final = 10  # a burst ends after this long without changes
_CHECK_MS: Final = 1000  # between checks that the watched directory is still the same one

log = logging.getLogger(__name__)


def create(options: Mapping[str, Any]) -> FilePlugin:
    """``options``: ``dir`` (the instance directory, required) and ``fsync`` (bool).

    The registry (``infrakit.plugins.Registry``) keeps the plugin for the process, so
    its describe cache and its warnings live as long as it does.
    """
    directory = options.get("dir")
    if not directory:
        raise spi.PluginError("instance-file needs a directory: give --dir (or $INFRAKIT_INSTANCE_DIR)")
    # What writers killed mid-write left (the directory is shared: only what is old enough
    # to be no live writer's).
    with contextlib.suppress(OSError):
        files.remove_stale_temps(Path(directory), older_than=STALE_TEMP_SECONDS)
    return FilePlugin(directory=Path(directory), durable=bool(options.get("fsync", False)))


class FilePlugin:
    """Instances as files in ``directory`` (created on first use).

    Long-lived: one object per directory per process keeps what ``describe`` parsed.
    Safe to share between threads.
    """

    name = NAME

    def __init__(self, *, directory: Path, durable: bool = False) -> None:
        self.directory = Path(directory)
        self.durable = durable
        self._root = os.path.abspath(self.directory)
        self._warned: set[tuple[str, str]] = set()
        self._lock = threading.Lock()  # guards _listing
        self._listing: _Listing | None = None
        self._long_lived = False  # described before: keep a journal of the directory's changes
        self._described = False  # described at all (then provisioning keeps a journal)
        self._own: dict[str, _Entry] = {}  # provisioned since the journal was last drained (guarded by _lock)
        self._feeds = 0  # change feeds running (guarded by _lock)
        self._announced: set[str] = set()  # provisioned, not yet seen by the change feeds (guarded by _lock)
        self._spec: _Rendering | None = None  # the spec provision rendered last
        self._renderings: dict[str, str] = {}  # compact JSON -> its indented rendering, nested one level
        self._validated: tuple[str, int] = ("", 0)  # the compact JSON validate measured last, and its size

    def validate(self, properties: Any) -> None:
        """Any JSON document is a valid property set (stored verbatim) if the plugin can read it back."""
        try:
            depth, indentation = _measure(properties, base=_PROPERTIES_INDENT)
            if depth > _MAX_DEPTH:
                raise specs.SpecError(_PROPERTIES, f"nested more than {_MAX_DEPTH} levels deep; flatten the properties")
            compact = _compact.encode(properties)
        except specs.SpecError:
            raise
        except Exception as error:  # not JSON: a set, bytes, keys of mixed types, a cycle...
            raise specs.SpecError(_PROPERTIES, f"cannot be written as JSON ({_reason(error)})") from None
        if compact == self._validated[0]:
            size = self._validated[1]
        else:
            size = len(compact) + indentation
            self._validated = (compact, size)
        if size > MAX_PROPERTIES:
            raise specs.SpecError(
                _PROPERTIES,
                f"take {size} bytes in an instance file, more than the {MAX_PROPERTIES} the instance-file "
                "plugin allows (every nesting level costs 2 bytes of indentation on each line); make them smaller",
            )

    def provision(self, spec: instances.InstanceSpec) -> str:
        import secrets  # lazy: hmac and OpenSSL (~3 ms) only for a command that provisions

        rendering = self._render(spec)
        for _ in range(4):
            instance_id = f"instance-{secrets.randbits(63)}"
            created = time.time()
            data = _encode_new(
                created=created,
                instance_id=instance_id,
                logical_id=spec.logical_id,
                spec=rendering.spec_text,
                tags=rendering.tags_text,
            )
            if len(data) > MAX_FILE:
                raise spi.PluginError(_too_large(len(data), "instance spec (properties, init script, tags)"))
            # What the journal will report as this file's creation is known: no need to read it
            # back, unless anything else happens to it first (see _refresh).  Recorded before the
            # file exists, so that a describe in another thread, which may drain the creation
            # before this one returns, finds it (and none is left behind, never drained).
            if self._journal_for_provision():
                description = instances.Description(
                    id=instance_id, logical_id=spec.logical_id, tags=dict(rendering.tags), created=created
                )
                with self._lock:
                    self._own[instance_id] = _Entry(key=_UNKNOWN, description=description, trusted=False)
                    if self._feeds:
                        self._announced.add(instance_id)
            try:
                self._write(instance_id, data, new=True)
            except BaseException as error:
                with self._lock:
                    self._own.pop(instance_id, None)
                    self._announced.discard(instance_id)
                    if self._listing is not None and instance_id in self._listing.entries:
                        # A describe took our entry for a file someone else made under this name
                        # meanwhile (one chance in 2**63): read what is really there.
                        self._refresh(self._listing, {instance_id: _SEVERAL})
                if isinstance(error, FileExistsError):  # one chance in 2**63: draw another ID
                    continue
                raise
            return instance_id
        raise spi.PluginError(f"cannot find a free instance ID in {self.directory}")

    def label(self, instance_id: str, labels: Mapping[str, str]) -> None:
        path = self._path(instance_id)
        document = self._read(path)
        if document is None:
            raise spi.InstanceNotFound(f"instance {instance_id} not found in {self.directory}")
        instances.check_spec(instances.InstanceSpec(tags=labels))  # never write what describe would skip
        document["Tags"] = {**(document.get("Tags") or {}), **labels}
        data = json.dumps(document, indent=2, sort_keys=True).encode("utf-8")
        if len(data) > MAX_FILE:
            raise spi.PluginError(_too_large(len(data), "labels"))
        self._write(instance_id, data)

    def destroy(self, instance_id: str) -> None:
        if not isinstance(instance_id, str) or not _ID.fullmatch(instance_id):
            raise spi.InstanceNotFound(f"{instance_id!r} is not an instance ID (instance-<digits>)")
        path = os.path.join(self._root, instance_id)  # strings: a roll destroys as often as it provisions
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            raise spi.InstanceNotFound(f"instance {instance_id} not found in {self.directory}") from None
        if not stat.S_ISREG(info.st_mode):
            raise spi.PluginError(f"refusing to destroy {path}: not a regular file (symlinks are never followed)")
        try:
            os.unlink(path)
        except FileNotFoundError:
            raise spi.InstanceNotFound(f"instance {instance_id} not found in {self.directory}") from None
        if self.durable:
            files.fsync_dir(self.directory)

    def describe(self, tags: Mapping[str, str]) -> list[instances.Description]:
        self._described = True
        try:
            info = os.stat(self._root)
        except FileNotFoundError:
            return []  # made on first use
        except OSError as error:
            raise spi.PluginError(f"cannot list the instance directory {self.directory}: {error}") from None
        with self._lock:
            identity = (info.st_dev, info.st_ino)
            listing = self._listing
            if listing is None or listing.identity != identity:  # first, or another directory
                if listing is not None:
                    listing.close()
                listing = self._listing = _Listing(identity)
            changed = listing.journal.drain() if listing.journal is not None else None
            # The directory's mtime after the drain: a change this host made since is in the next
            # drain; a change with no event at all (another host's, on a network filesystem, which
            # inotify cannot see) shows as an mtime that moved while the journal says nothing.
            mtime_ns = _mtime_ns(self._root) if changed is not None else -1
            if (
                changed is not None
                and listing.exact
                and (changed or mtime_ns == listing.mtime_ns)
                and time.monotonic() - listing.validated < REVALIDATE_JOURNALED
            ):
                if changed:
                    self._refresh(listing, changed)
                    listing.mtime_ns = mtime_ns
            elif (self._long_lived or listing.journal is not None) and not listing.journal_failed:
                # Described before, or provisioning: a long-lived plugin (a command that only
                # reads never pays for the journal).  Arm the journal if it is not (again, if the
                # directory moved or the journal overflowed), then list everything once: from
                # here on, every change is in the journal.  What this plugin created since the
                # journal was armed, and nothing else touched, is not read back.
                if changed is None:
                    self._own.clear()  # their creations may be among what the journal lost
                    listing.close()  # an overflowed journal, if any; what was parsed is reused
                    listing.journal = _Journal.open(self._root)
                    listing.journal_failed = listing.journal is None
                    changed = {}
                    mtime_ns = _mtime_ns(self._root)
                known = {n: self._own[n] for n, events in changed.items() if events == _JUST_CREATED and n in self._own}
                self._own.clear()
                self._scan(listing, info, full=True, known=known)
                listing.mtime_ns = mtime_ns  # as of the drain (or the arming): later changes are journaled
                listing.validated = time.monotonic()
                listing.exact = listing.journal is not None
            else:
                self._long_lived = True
                now = time.monotonic()
                stale = now - listing.validated >= REVALIDATE
                if stale or listing.racy or not listing.settled or listing.mtime_ns != info.st_mtime_ns:
                    self._scan(listing, info, full=stale)
                    if stale:
                        listing.validated = now
            group = tags.get(instances.TAG_GROUP)
            candidates = listing.everything() if group is None else listing.members(group)
            if len(tags) == (group is not None):
                return list(candidates)
            return [d for d in candidates if all(d.tags.get(k) == v for k, v in tags.items())]

    async def changes(self) -> AsyncIterator[frozenset[str] | None]:
        """The IDs of the instances whose files changed (created, modified, deleted), as they change.

        The creation of an instance this plugin provisioned is not reported (its caller
        knows: the sync that made it), unless something else happened to it in the same
        burst (a deletion, an edit; a rename over it in the same burst cannot be told
        from the creation, and is seen at the next describe).

        ``None`` means anything may have changed (list everything again): it comes first,
        once the watch is armed, and again each time the watch had to be re-established
        because the directory was removed, replaced or renamed (the directory's parent,
        or the nearest ancestor that exists, is watched until it is back).  Changes come
        in debounced bursts; temp files and the ``#<inode>`` names of unnamed files being
        written are not instances and never reported.  Ends when the consumer stops
        iterating (``aclose``), taking its watch thread with it.
        """
        import asyncio  # lazy: only the long-running controllers watch
        import concurrent.futures

        from watchfiles._rust_notify import RustNotify

        stop = threading.Event()
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="infrakit-watch")
        with self._lock:
            self._feeds += 1
        try:
            while True:
                identity = _directory(self._root)
                if identity is None:
                    await self._until_directory(pool, stop)
                    continue
                try:
                    notify = RustNotify([self._root], False, False, 300, False, True)
                except FileNotFoundError:
                    continue  # removed meanwhile
                except OSError as error:  # out of inotify watches, say: try again, slowly
                    self._warn(self._root, f"cannot be watched ({error}); retrying")
                    await asyncio.sleep(_CHECK_MS / 1000)
                    continue
                with notify:
                    if _directory(self._root) != identity:
                        continue  # replaced while the watch was armed
                    with self._lock:
                        self._announced.clear()  # the None covers them
                    yield None
                    while True:
                        raw = await _watch(notify, pool, stop, timeout_ms=_CHECK_MS)
                        if isinstance(raw, str):  # "timeout" ("signal" and "stop" do not happen in a thread)
                            if _directory(self._root) != identity:
                                break
                            continue
                        kinds: dict[str, set[int]] = {}
                        lost = False
                        for change, path in raw:
                            parent, name = os.path.split(path)
                            if parent == self._root and _ID.fullmatch(name):
                                kinds.setdefault(name, set()).add(change)
                            elif path == self._root and change == _DELETED:
                                lost = True  # a new directory may reuse the inode: the identity cannot tell
                        if lost or _directory(self._root) != identity:
                            break  # what happened since is covered by the None of the next watch
                        with self._lock:
                            announced = {n for n in kinds if n in self._announced}
                            self._announced -= announced
                        changed = {n for n, k in kinds.items() if n not in announced or k != _JUST_ADDED}
                        if changed:
                            yield frozenset(changed)
        finally:
            with self._lock:
                self._feeds -= 1
                if not self._feeds:
                    self._announced.clear()
            stop.set()
            pool.shutdown(wait=True)  # the watch thread has returned or is returning ("stop")

    async def _until_directory(self, pool: concurrent.futures.ThreadPoolExecutor, stop: threading.Event) -> None:
        """Wait until the instance directory exists, watching the nearest ancestor that does."""
        import asyncio

        from watchfiles._rust_notify import RustNotify

        while _directory(self._root) is None:
            ancestor = os.path.dirname(self._root)
            while ancestor != os.path.dirname(ancestor) and _directory(ancestor) is None:
                ancestor = os.path.dirname(ancestor)
            try:
                notify = RustNotify([ancestor], False, False, 300, False, True)
            except OSError:  # the ancestor went too, or no watch can be had: look again later
                await asyncio.sleep(_CHECK_MS / 1000)
                continue
            with notify:
                while _directory(self._root) is None and _directory(ancestor) is not None:
                    deeper = os.path.dirname(self._root)
                    while deeper != ancestor and _directory(deeper) is None:
                        deeper = os.path.dirname(deeper)
                    if deeper != ancestor:
                        break  # a closer ancestor appeared: watch it instead
                    await _watch(notify, pool, stop, timeout_ms=_CHECK_MS)

    # -- helpers -------------------------------------------------------------------------

    def _journal_for_provision(self) -> bool:
        """A plugin that describes, then provisions, will describe again: keep a journal from now on,
        so that what it creates need not be read back (see describe).  Whether one is kept."""
        with self._lock:
            listing = self._listing
            if listing is None:
                if not self._described:
                    return False  # `instance-file provision`: no describe to come
                try:
                    os.makedirs(self._root, exist_ok=True)  # made on first use: now, to be watched
                    info = os.stat(self._root)
                except OSError:
                    return False  # the write will say why
                listing = self._listing = _Listing((info.st_dev, info.st_ino))
            if listing.journal is None and not listing.journal_failed:
                listing.journal = _Journal.open(self._root)
                listing.journal_failed = listing.journal is None
            return listing.journal is not None

    def _scan(
        self, listing: _Listing, info: os.stat_result, *, full: bool, known: Mapping[str, _Entry] | None = None
    ) -> None:
        """List the directory again; parse only what is new, changed or racy (or not ``known`` already)."""
        started_ns = time.time_ns()
        old = listing.entries
        entries: dict[str, _Entry] = {}
        racy = 0
        try:
            scanned = list(os.scandir(self._root))
        except FileNotFoundError:
            scanned = []
        except OSError as error:  # not a directory, no permission: "no instances" would be a lie
            raise spi.PluginError(f"cannot list the instance directory {self.directory}: {error}") from None
        for entry in scanned:
            name = entry.name
            if not _ID.fullmatch(name):
                continue  # temp files, other programs' files: not instances
            if not entry.is_file(follow_symlinks=False):
                self._warn(name, "is not a regular file (a symlink?); ignored, never followed")
                continue
            if known and name in known:
                entries[name] = known[name]
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
        listing.racy = racy
        listing.mtime_ns = info.st_mtime_ns
        listing.settled = started_ns - info.st_mtime_ns > RACY_NS
        listing.replace(entries)

    def _refresh(self, listing: _Listing, changed: Mapping[str, int]) -> None:
        """Parse again the files the journal says changed (created, replaced, edited, removed).

        A file this plugin created, whose only event since is that creation, holds what
        ``provision`` wrote: it is not read back.
        """
        started_ns = time.time_ns()
        for name, events in changed.items():
            own = self._own.pop(name, None)
            if own is not None and events == _JUST_CREATED:
                listing.put(name, own)
                continue
            path = os.path.join(self._root, name)
            try:
                info = os.lstat(path)
            except OSError:
                listing.put(name, None)  # gone (or the directory is going: the journal will say)
                continue
            if not stat.S_ISREG(info.st_mode):
                self._warn(name, "is not a regular file (a symlink?); ignored, never followed")
                listing.put(name, None)
                continue
            listing.put(name, self._load(path, name, started_ns))

    def _load(self, path: str, name: str, started_ns: int) -> _Entry | None:
        """Parse one instance file into a cache entry (None: gone, or unreadable for now)."""
        try:
            data, info = files.read_nofollow_stat(path, limit=MAX_FILE)
        except FileNotFoundError:
            return None
        except files.TooLarge:
            try:
                head, tail, info = files.read_ends_nofollow(path, head=_HEAD, tail=_TAIL)
            except FileNotFoundError:
                return None
            except OSError as error:
                self._warn(name, f"cannot be read as an instance ({error}); ignored")
                return None
            problem = f"is larger than the {MAX_FILE} bytes an instance file may be"
        except OSError as error:
            self._warn(name, f"cannot be read as an instance ({error}); ignored")
            return None  # not cached: a permission may be fixed
        else:
            try:
                document = json.loads(data)
            except Exception as error:  # one file's content never stops describe
                problem = f"is not JSON ({_reason(error)})"
                head, tail = data[:_HEAD], data[-_TAIL:]
            else:
                found = _description(name, document)
                if isinstance(found, str):
                    self._warn(name, f"{found}; ignored")
                    return _Entry(key=_key(info), description=None, trusted=_trusted(info, started_ns))
                return _Entry(key=_key(info), description=found, trusted=_trusted(info, started_ns))
        recovered = _recover(name, head, tail)
        if recovered is None:
            self._warn(name, f"cannot be read as an instance: it {problem}; ignored")
        else:
            self._warn(
                name,
                f"cannot be read whole: it {problem}; its tags, recovered from the end of the file, keep it "
                "a member of its group (it is not replaced, and destroying the group removes it)",
            )
        return _Entry(key=_key(info), description=recovered, trusted=_trusted(info, started_ns))

    def _render(self, spec: instances.InstanceSpec) -> _Rendering:
        """The spec's JSON, rendered once for all the instances provisioned from it."""
        rendering = self._spec
        if rendering is not None and rendering.spec is spec and rendering.tags == spec.tags:
            return rendering  # the engine provisions a reconcile's instances from one (frozen) spec
        instances.check_spec(spec)
        if _measure(spec.properties, base=_PROPERTIES_INDENT)[0] > _MAX_DEPTH:
            raise specs.SpecError("Properties", f"nested more than {_MAX_DEPTH} levels deep; flatten them")
        tags = dict(spec.tags)
        try:
            rendering = _Rendering(
                spec=spec, tags=tags, spec_text=self._nested(spec.to_json()), tags_text=self._nested(tags)
            )
        except Exception as error:  # not JSON: a set, bytes, keys of mixed types, a cycle...
            raise specs.SpecError("Properties", f"cannot be written as JSON ({_reason(error)})") from None
        self._spec = rendering
        return rendering

    def _nested(self, value: dict[str, Any]) -> str:
        """``value`` as ``json.dumps(indent=2, sort_keys=True)`` renders it one level deep."""
        compact = _compact.encode(value)
        text = self._renderings.get(compact)
        if text is None:
            # Inside the document, every line of a member's rendering is indented once more
            # (JSON strings never contain a raw newline, so these are all structural).
            text = json.dumps(value, indent=2, sort_keys=True).replace("\n", "\n  ")
            if len(self._renderings) >= 256:
                self._renderings.clear()
            self._renderings[compact] = text
        return text

    def _path(self, instance_id: str) -> Path:
        if not isinstance(instance_id, str) or not _ID.fullmatch(instance_id):
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
        """The instance document at ``path`` if it is one describe would list, else None (warned)."""
        try:
            document = json.loads(files.read_nofollow(path, limit=MAX_FILE))
        except FileNotFoundError:
            return None
        except Exception as error:  # one file's content never stops anything
            self._warn(path.name, f"cannot be read as an instance ({_reason(error)}); ignored")
            return None
        found = _description(path.name, document)
        if isinstance(found, str):
            self._warn(path.name, f"{found}; ignored")
            return None
        result: dict[str, Any] = document
        return result

    def _warn(self, name: str, problem: str) -> None:
        if (name, problem) not in self._warned:
            if len(self._warned) >= _MAX_WARNED:  # a long-lived plugin on a churning directory
                self._warned.clear()
            self._warned.add((name, problem))
            log.warning("instance directory %s: %s %s", self.directory, name, problem)


# -- reading -------------------------------------------------------------------------------

_DELETED: Final = 3  # watchfiles.Change.deleted (the raw notifier reports ints)
_JUST_ADDED: Final = {1}  # watchfiles.Change.added alone: a creation (or a rename onto the name)


def _description(name: str, document: Any) -> instances.Description | str:
    """The description an instance document gives, or what is wrong with it.

    Only well-typed values pass: the planner compares logical IDs and tags as strings,
    and the operator writes them into the Group's status.
    """
    if type(document) is not dict or document.get("ID") != name:
        return "is not an instance document (a JSON object whose ID is its name)"
    logical_id = document.get("LogicalID")
    if logical_id is not None and not _text(logical_id):
        return f"has a LogicalID that {_not_text(logical_id)}, not a string or null"
    tags = document.get("Tags")
    if tags is None:
        tags = {}
    elif type(tags) is not dict:
        return f"has Tags that are {instances.kind(tags)}, not a mapping of strings to strings"
    for key, value in tags.items():
        if not _text(value):  # keys of a decoded JSON object are strings
            return f"has a tag {key!r} whose value {_not_text(value)}, not a string"
        if not _text(key):
            return "has a tag whose key is not UTF-8 text"
    created = document.get("CreatedAt")
    if created is None:
        created = 0.0
    elif type(created) is float or type(created) is int:
        if type(created) is int and not -(2**53) <= created <= 2**53:
            return "has a CreatedAt that is not a time (seconds since the epoch)"
        created = float(created)
        if not math.isfinite(created):
            return "has a CreatedAt that is not a time (seconds since the epoch)"
    else:
        return f"has a CreatedAt that is {instances.kind(created)}, not a number"
    return instances.Description(
        id=name,
        logical_id=logical_id,
        tags={sys.intern(k): sys.intern(v) for k, v in tags.items()},
        created=created,
    )


def _not_text(value: Any) -> str:
    """What a value :func:`_text` refuses is, for a warning (a string refused holds a lone surrogate)."""
    if type(value) is str:
        return "holds an unpaired surrogate (not valid Unicode)"
    return f"is {instances.kind(value)}"


def _text(value: Any) -> bool:
    """A string that can be written anywhere (UTF-8: no lone surrogates from ``\\udXXX`` escapes)."""
    if type(value) is not str:
        return False
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# The head of a file this plugin wrote (sort_keys, indent=2): what makes it an instance.
_HEAD_FORMAT = re.compile(
    rb'\{\n  "CreatedAt": ([-+.0-9eE]{1,40}|null),\n  "ID": "(instance-[0-9]{1,19})",'
    rb'\n  "LogicalID": (null|"(?:[^"\\\n]|\\.)*"),\n'
)
_TAGS_MEMBER: Final = b'\n  "Tags": '  # the last member at the top level (a nested one is indented more)


def _recover(name: str, head: bytes, tail: bytes) -> instances.Description | None:
    """Describe an undecodable file from its two ends, if they are exactly what this plugin writes."""
    match = _HEAD_FORMAT.match(head)
    if match is None or match[2].decode() != name:
        return None
    at = tail.rfind(_TAGS_MEMBER)
    rest = tail[at + len(_TAGS_MEMBER) :].rstrip() if at >= 0 else b""
    if not rest.endswith(b"\n}"):
        return None
    try:
        created = 0.0 if match[1] == b"null" else float(match[1])
        document = {
            "ID": name,
            "CreatedAt": created if math.isfinite(created) else 0.0,
            "LogicalID": json.loads(match[3]),
            "Tags": json.loads(rest[:-2]),
        }
    except Exception:  # not what we write after all
        return None
    found = _description(name, document)
    return found if isinstance(found, instances.Description) else None


def _reason(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def _too_large(size: int, what: str) -> str:
    return (
        f"the instance file would be {size} bytes, larger than the {MAX_FILE} the instance-file plugin "
        f"reads back; make the {what} smaller"
    )


# -- describe's cache ----------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class _Entry:
    key: tuple[int, int, int, int]  # st_ino, st_size, st_mtime_ns, st_ctime_ns of what was parsed
    description: instances.Description | None  # None: not an instance (undecodable, wrong ID or types)
    trusted: bool  # parsed more than RACY_NS after its last change


class _Listing:
    """What ``describe`` last saw in the directory (guarded by the plugin's lock)."""

    def __init__(self, identity: tuple[int, int]) -> None:
        self.identity = identity  # st_dev, st_ino of the directory
        self.entries: dict[str, _Entry] = {}
        self.by_group: dict[str | None, dict[str, instances.Description]] = {}  # by the infrakit.group tag
        self._sorted: dict[str | None, list[instances.Description]] = {}  # by_group's values by ID, when asked
        self.mtime_ns = -1  # the directory's mtime when last listed
        self.settled = False  # listed more than RACY_NS after that mtime
        self.racy = 0  # entries parsed too soon after their last change
        self.validated = -math.inf  # time.monotonic() of the last full check
        self.journal: _Journal | None = None  # the directory's changes, once armed
        self.exact = False  # listed (in full) since the journal was armed: the journal alone keeps it exact
        self.journal_failed = False  # no journal here (not Linux, no inotify watch left): timestamps only

    def replace(self, entries: dict[str, _Entry]) -> None:
        self.entries = entries
        by_group: dict[str | None, dict[str, instances.Description]] = collections.defaultdict(dict)
        for name, entry in entries.items():
            if entry.description is not None:
                by_group[entry.description.tags.get(instances.TAG_GROUP)][name] = entry.description
        self.by_group = dict(by_group)
        self._sorted = {}

    def put(self, name: str, entry: _Entry | None) -> None:
        """Record what one file holds now (None: nothing, or not an instance)."""
        old = self.entries.pop(name, None)
        if old is not None and old.description is not None:
            group = old.description.tags.get(instances.TAG_GROUP)
            members = self.by_group.get(group)
            if members is not None:
                members.pop(name, None)
                if not members:
                    del self.by_group[group]
            self._sorted.pop(group, None)
        if entry is not None:
            self.entries[name] = entry
            if entry.description is not None:
                group = entry.description.tags.get(instances.TAG_GROUP)
                self.by_group.setdefault(group, {})[name] = entry.description
                self._sorted.pop(group, None)

    def members(self, group: str) -> list[instances.Description]:
        """The instances tagged with ``group``, sorted by ID."""
        found = self._sorted.get(group)
        if found is None:
            found = self._sorted[group] = sorted(self.by_group.get(group, {}).values(), key=_by_id)
        return found

    def everything(self) -> list[instances.Description]:
        return sorted((d for members in self.by_group.values() for d in members.values()), key=_by_id)

    def close(self) -> None:
        if self.journal is not None:
            self.journal.close()
            self.journal = None


_UNKNOWN: Final = (0, 0, 0, 0)  # the key of an entry never stat-ed (untrusted: a full scan reads it)
_SEVERAL: Final = -1  # a name with more than one event since the last drain
_JUST_CREATED: Final = 0x100  # IN_CREATE alone: what linking a new file in (provision) makes


def _mtime_ns(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return -1


def _by_id(description: instances.Description) -> str:
    return description.id


class _Journal:
    """The names that changed in a directory since the last ``drain``: inotify, read without waiting.

    The kernel queues an inotify event inside the very system call that changes the
    directory (a create, rename, unlink, write or chmod), so a ``drain`` sees every
    change made before it began: the listing stays exact at O(changes) per describe,
    where timestamps need a listing of the whole directory after any change and a
    ``stat`` of every file every ``REVALIDATE`` seconds (at 100,000 instances, most of
    a core).  ``None`` from ``drain``: the queue overflowed, or the directory itself was
    removed or moved; list everything again.
    """

    def __init__(self, notify: Any, flags: Any) -> None:
        self._notify = notify
        self._lost = flags.Q_OVERFLOW | flags.IGNORED | flags.DELETE_SELF | flags.MOVE_SELF | flags.UNMOUNT

    @classmethod
    def open(cls, root: str) -> _Journal | None:
        try:
            import inotify_simple  # lazy: only a long-lived plugin keeps a journal
        except ImportError:  # not Linux
            return None
        flags = inotify_simple.flags
        mask = (
            flags.CREATE | flags.DELETE | flags.MOVED_FROM | flags.MOVED_TO | flags.MODIFY | flags.CLOSE_WRITE
            | flags.ATTRIB | flags.DELETE_SELF | flags.MOVE_SELF | flags.ONLYDIR | flags.DONT_FOLLOW
            | flags.EXCL_UNLINK
        )  # fmt: skip
        notify = None
        try:
            notify = inotify_simple.INotify(nonblocking=True)
            notify.add_watch(root, mask)
        except OSError as error:  # no watch left (fs.inotify.max_user_watches), not a directory...
            log.debug("no change journal for %s (%s): timestamps only", root, error)
            if notify is not None:
                notify.close()
            return None
        return cls(notify, flags)

    def drain(self) -> dict[str, int] | None:
        """The instance names that changed: each with its event's mask, or ``_SEVERAL`` (-1)."""
        changed: dict[str, int] = {}
        try:
            events = self._notify.read(timeout=0)
        except OSError:
            return None
        for event in events:
            if event.mask & self._lost:
                return None
            if _ID.fullmatch(event.name):
                changed[event.name] = _SEVERAL if event.name in changed else event.mask
        return changed

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._notify.close()


def _key(info: os.stat_result) -> tuple[int, int, int, int]:
    return (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def _trusted(info: os.stat_result, started_ns: int) -> bool:
    return started_ns - max(info.st_mtime_ns, info.st_ctime_ns) > RACY_NS


def _directory(path: str) -> tuple[int, int] | None:
    """The (st_dev, st_ino) of the directory at ``path``, None if there is none."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_dev, info.st_ino) if stat.S_ISDIR(info.st_mode) else None


async def _watch(
    notify: Any, pool: concurrent.futures.ThreadPoolExecutor, stop: threading.Event, *, timeout_ms: int
) -> set[tuple[int, str]] | str:
    """One debounced burst of changes from ``notify`` (or ``"timeout"``), waited for in ``pool``."""
    import asyncio

    future = asyncio.get_running_loop().run_in_executor(pool, notify.watch, _DEBOUNCE_MS, _STEP_MS, timeout_ms, stop)
    try:
        result: set[tuple[int, str]] | str = await asyncio.shield(future)
    except BaseException:  # cancelled: the thread must return before the notifier is closed
        stop.set()
        await _settle(future)
        raise
    return result


async def _settle(future: asyncio.Future[Any]) -> None:
    import asyncio

    while not future.done():
        try:
            await asyncio.wait([future])
        except asyncio.CancelledError:
            continue  # cancelled again: still wait, the thread is stopping (``stop`` is set)


# -- writing -------------------------------------------------------------------------------

_PROPERTIES: Final = "spec.instance.properties"
_PROPERTIES_INDENT: Final = 4  # in a file, the properties' lines are indented 4 more than on their own


@dataclasses.dataclass(frozen=True, slots=True)
class _Rendering:
    spec: instances.InstanceSpec
    tags: dict[str, str]  # a copy: what the spec's tags were when rendered
    spec_text: str
    tags_text: str


def _measure(value: Any, *, base: int) -> tuple[int, int]:
    """``(depth, indentation)``: how deep ``value`` nests, and the bytes ``json.dumps(indent=2)``
    adds to its rendering with separators ``(",", ": ")`` when nested ``base`` spaces deep.

    A non-empty container at depth ``d`` puts each of its ``n`` members on a line of
    its own, indented ``base + 2(d + 1)``, and its closing bracket on one indented
    ``base + 2d``.  Iterative (no recursion), and it stops past ``_MAX_DEPTH``, so a
    cycle or a hostile nesting ends too.
    """
    deepest = 0  # the depth of the deepest value (the top one is at 0), as the core counts it
    indentation = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            members: Any = node.values()
        elif isinstance(node, list | tuple):
            members = node
        else:
            continue
        if not members:
            deepest = max(deepest, depth)
            continue
        if depth >= deepest:
            deepest = depth + 1
            if deepest > _MAX_DEPTH:
                break
        indentation += len(members) * (1 + base + 2 * (depth + 1)) + 1 + base + 2 * depth
        stack.extend((member, depth + 1) for member in members if isinstance(member, dict | list | tuple))
    return deepest, indentation


def _encode_new(*, created: float, instance_id: str, logical_id: str | None, spec: str, tags: str) -> bytes:
    """``json.dumps(document, indent=2, sort_keys=True)``, byte for byte, at C-encoder speed.

    The pure-Python indenting encoder cost more than writing the file; ``spec`` and
    ``tags`` come rendered by :meth:`FilePlugin._nested`, once for all the instances that
    share them.
    """
    return (
        f'{{\n  "CreatedAt": {_scalar(created)},\n  "ID": "{instance_id}",\n'
        f'  "LogicalID": {_scalar(logical_id)},\n  "Spec": {spec},\n  "Tags": {tags}\n}}'
    ).encode()


def _scalar(value: float | str | None) -> str:
    if type(value) is float and math.isfinite(value):
        return float.__repr__(value)  # what json writes for a float
    return json.dumps(value)


_compact = json.JSONEncoder(sort_keys=True, separators=(",", ": "))  # one encoder, C speed (no indent)
