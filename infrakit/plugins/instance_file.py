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
is long-lived: it keeps a journal of the directory (``listings.Journal``, inotify), drained at
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

import contextlib
import dataclasses
import json
import logging
import os
import stat
import threading
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from infrakit import files
from infrakit.core import instances, specs
from infrakit.plugins import instance_documents as documents
from infrakit.plugins import instance_listings as listings
from infrakit.plugins import permissions, spi
from infrakit.plugins.instance_listings import RACY_NS

if TYPE_CHECKING:
    import asyncio
    import concurrent.futures

__all__ = ["MAX_FILE", "MAX_PROPERTIES", "RACY_NS", "REVALIDATE", "FilePlugin", "create", "stored_spec"]

NAME: Final = "instance-file"

MAX_FILE: Final = 8 << 20  # bytes: the read limit, so also the largest file provision or label writes
MAX_PROPERTIES: Final = 4 << 20  # bytes the properties may take in a file; the rest is the flavor's

STALE_TEMP_SECONDS: Final = 300.0  # a temp file this old is no live writer's
REVALIDATE: Final = 1.0  # seconds between full (stat every file) checks of a directory
REVALIDATE_JOURNALED: Final = 300.0  # the same, for a directory whose changes are journaled

_HEAD: Final = 8192  # bytes read to recover an undecodable file's identity (ID, LogicalID, CreatedAt)
_TAIL: Final = 65536  # bytes read to recover its Tags
_MAX_WARNED: Final = 4096  # (file, problem) pairs remembered so each is warned about once
_PROPERTIES: Final = "spec.instance.properties"

# What changes() waits for: the same debounce as the controllers' watchers.
_DEBOUNCE_MS: Final = 200  # at most this long collecting a burst of changes
_STEP_MS: Final = 10  # a burst ends after this long without changes
_CHECK_MS: Final = 1000  # between checks that the watched directory is still the same one

log = logging.getLogger(__name__)


def create(options: Mapping[str, Any]) -> FilePlugin:
    """``options``: ``dir`` (the instance directory, required), ``fsync`` (bool) and ``file_mode``
    (an int or octal text: ``0600`` unless given, see :mod:`infrakit.plugins.permissions`).

    The registry (``infrakit.plugins.Registry``) keeps the plugin for the process, so
    its describe cache and its warnings live as long as it does.
    """
    directory = options.get("dir")
    if not directory:
        raise spi.PluginError("instance-file needs a directory: give --dir (or $INFRAKIT_INSTANCE_DIR)")
    file_mode = options.get("file_mode", permissions.DEFAULT_FILE_MODE)
    try:
        if isinstance(file_mode, str):
            file_mode = permissions.parse_file_mode(file_mode)
        elif type(file_mode) is int:
            permissions.check_file_mode(file_mode)
        else:
            raise ValueError(f"{file_mode!r} is not a mode; give one such as 0600 or 0640")
    except ValueError as error:
        raise spi.PluginError(f"instance-file option file_mode: {error}") from None
    # What writers killed mid-write left (the directory is shared: only what is old enough
    # to be no live writer's).
    with contextlib.suppress(OSError):
        files.remove_stale_temps(Path(directory), older_than=STALE_TEMP_SECONDS)
    return FilePlugin(directory=Path(directory), durable=bool(options.get("fsync", False)), file_mode=file_mode)


def stored_spec(directory: Path, instance_id: str) -> Any:
    """The ``Spec`` an instance's file holds (v0.5's ``Properties`` of a description), or None.

    None too for a file that is not an instance of ours (see :mod:`~infrakit.plugins.permissions`),
    a symlink (never followed), or one gone or being rewritten since it was listed.
    """
    if not isinstance(instance_id, str) or not documents.INSTANCE_ID.fullmatch(instance_id):
        return None
    try:
        data, info = files.read_nofollow_stat(os.path.join(directory, instance_id), limit=MAX_FILE)
        if permissions.file_problem(info, uid=os.geteuid()) is not None:
            return None
        document = json.loads(data)
    except Exception:  # gone, unreadable, not JSON: no properties to tell
        return None
    return document.get("Spec") if type(document) is dict and document.get("ID") == instance_id else None


class FilePlugin:
    """Instances as files in ``directory`` (created on first use).

    Long-lived: one object per directory per process keeps what ``describe`` parsed.
    Safe to share between threads.  Only files of the process's own user are instances,
    in a directory others cannot rewrite; ``file_mode`` is what files are written with
    (see :mod:`infrakit.plugins.permissions`).
    """

    name = NAME

    def __init__(
        self, *, directory: Path, durable: bool = False, file_mode: int = permissions.DEFAULT_FILE_MODE
    ) -> None:
        permissions.check_file_mode(file_mode)
        self.directory = Path(directory)
        self.durable = durable
        self.file_mode = file_mode
        self._directory_mode = permissions.directory_mode(file_mode)
        self._uid = os.geteuid()
        self._gid = os.getegid()
        self._root = os.path.abspath(self.directory)
        self._warned: set[tuple[str, str]] = set()
        self._lock = threading.Lock()  # guards _listing
        self._listing: listings.Listing | None = None
        self._long_lived = False  # described before: keep a journal of the directory's changes
        self._described = False  # described at all (then provisioning keeps a journal)
        self._own: dict[str, listings.Entry] = {}  # provisioned since the journal was last drained (guarded by _lock)
        self._feeds = 0  # change feeds running (guarded by _lock)
        self._announced: set[str] = set()  # provisioned, not yet seen by the change feeds (guarded by _lock)
        self._spec: _Rendering | None = None  # the spec provision rendered last
        self._renderings: dict[str, str] = {}  # compact JSON -> its indented rendering, nested one level
        self._validated: tuple[str, int] = ("", 0)  # the compact JSON validate measured last, and its size

    def validate(self, properties: Any) -> None:
        """Any JSON document is a valid property set (stored verbatim) if the plugin can read it back."""
        try:
            depth, indentation = documents.measure(properties, base=documents.PROPERTIES_INDENT)
            if depth > documents.MAX_DEPTH:
                raise specs.SpecError(
                    _PROPERTIES, f"nested more than {documents.MAX_DEPTH} levels deep; flatten the properties"
                )
            compact = documents.compact.encode(properties)
        except specs.SpecError:
            raise
        except Exception as error:  # not JSON: a set, bytes, keys of mixed types, a cycle...
            raise specs.SpecError(_PROPERTIES, f"cannot be written as JSON ({_reason(error)})") from None
        if compact == self._validated[0]:
            size = self._validated[1]
        else:
            size = len(compact) + indentation
            if size <= MAX_PROPERTIES:  # (else refused below, for their size)
                instances.check_json(properties, field=_PROPERTIES)  # no NaN, no 1e400, no lone surrogate
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
            data = documents.encode_new(
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
                    self._own[instance_id] = listings.Entry(
                        key=listings.UNKNOWN, description=description, trusted=False
                    )
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
                        self._refresh(self._listing, {instance_id: listings.SEVERAL})
                if isinstance(error, FileExistsError):  # one chance in 2**63: draw another ID
                    continue
                raise
            return instance_id
        raise spi.PluginError(f"cannot find a free instance ID in {self.directory}")

    def label(self, instance_id: str, labels: Mapping[str, str]) -> None:
        path = self._path(instance_id)
        instances.check_spec(instances.InstanceSpec(tags=labels))  # never write what describe would skip
        instances.check_json(dict(labels), field="Tags")
        self._checked_directory()
        document = self._read(path)
        if document is None:
            raise spi.InstanceNotFound(f"instance {instance_id} not found in {self.directory}")
        document["Tags"] = {**(document.get("Tags") or {}), **labels}
        data = json.dumps(document, indent=2, sort_keys=True).encode("utf-8")
        if len(data) > MAX_FILE:
            raise spi.PluginError(_too_large(len(data), "labels"))
        self._write(instance_id, data)

    def destroy(self, instance_id: str) -> None:
        if not isinstance(instance_id, str) or not documents.INSTANCE_ID.fullmatch(instance_id):
            raise spi.InstanceNotFound(f"{instance_id!r} is not an instance ID (instance-<digits>)")
        path = os.path.join(self._root, instance_id)  # strings: a roll destroys as often as it provisions
        self._checked_directory()
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            raise spi.InstanceNotFound(f"instance {instance_id} not found in {self.directory}") from None
        if not stat.S_ISREG(info.st_mode):
            raise spi.PluginError(f"refusing to destroy {path}: not a regular file (symlinks are never followed)")
        problem = permissions.file_problem(info, uid=self._uid)
        if problem is not None:
            raise spi.PluginError(f"refusing to destroy {path}: it {problem}")
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
        self._check_directory(info)
        with self._lock:
            identity = (info.st_dev, info.st_ino)
            listing = self._listing
            if listing is None or listing.identity != identity:  # first, or another directory
                if listing is not None:
                    listing.close()
                listing = self._listing = listings.Listing(identity)
            changed = listing.journal.drain() if listing.journal is not None else None
            # The directory's mtime after the drain: a change this host made since is in the next
            # drain; a change with no event at all (another host's, on a network filesystem, which
            # inotify cannot see) shows as an mtime that moved while the journal says nothing.
            mtime_ns = listings.mtime_ns(self._root) if changed is not None else -1
            if (
                changed is not None
                and listing.exact
                and (changed or mtime_ns == listing.mtime_ns)
                and time.monotonic() - listing.validated < REVALIDATE_JOURNALED
            ):
                if changed:
                    self._refresh(listing, changed)
                    listing.mtime_ns = mtime_ns
                if listing.linked:
                    # A change made through another name of a file (a hard link) is journaled
                    # under that name, or not at all (outside the directory): while there are
                    # such files, compare every file's stat, as without a journal.
                    self._scan(listing, info, full=True)
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
                    listing.journal = listings.Journal.open(self._root)
                    listing.journal_failed = listing.journal is None
                    changed = {}
                    mtime_ns = listings.mtime_ns(self._root)
                known = {
                    n: self._own[n]
                    for n, events in changed.items()
                    if events == listings.JUST_CREATED and n in self._own
                }
                self._own.clear()
                self._scan(listing, info, full=True, known=known)
                listing.mtime_ns = mtime_ns  # as of the drain (or the arming): later changes are journaled
                listing.validated = time.monotonic()
                listing.exact = listing.journal is not None
            else:
                self._long_lived = True
                now = time.monotonic()
                stale = now - listing.validated >= REVALIDATE or bool(listing.linked)  # see above
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
                identity = listings.identity(self._root)
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
                    if listings.identity(self._root) != identity:
                        continue  # replaced while the watch was armed
                    with self._lock:
                        self._announced.clear()  # the None covers them
                    yield None
                    while True:
                        raw = await _watch(notify, pool, stop, timeout_ms=_CHECK_MS)
                        if isinstance(raw, str):  # "timeout" ("signal" and "stop" do not happen in a thread)
                            if listings.identity(self._root) != identity:
                                break
                            continue
                        kinds: dict[str, set[int]] = {}
                        lost = False
                        for change, path in raw:
                            parent, name = os.path.split(path)
                            if parent == self._root and documents.INSTANCE_ID.fullmatch(name):
                                kinds.setdefault(name, set()).add(change)
                            elif path == self._root and change == _DELETED:
                                lost = True  # a new directory may reuse the inode: the identity cannot tell
                        if lost or listings.identity(self._root) != identity:
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

        while listings.identity(self._root) is None:
            ancestor = os.path.dirname(self._root)
            while ancestor != os.path.dirname(ancestor) and listings.identity(ancestor) is None:
                ancestor = os.path.dirname(ancestor)
            try:
                notify = RustNotify([ancestor], False, False, 300, False, True)
            except OSError:  # the ancestor went too, or no watch can be had: look again later
                await asyncio.sleep(_CHECK_MS / 1000)
                continue
            with notify:
                while listings.identity(self._root) is None and listings.identity(ancestor) is not None:
                    deeper = os.path.dirname(self._root)
                    while deeper != ancestor and listings.identity(deeper) is None:
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
                    os.makedirs(self._root, mode=self._directory_mode, exist_ok=True)  # now, to be watched
                    info = os.stat(self._root)
                except OSError:
                    return False  # the write will say why
                listing = self._listing = listings.Listing((info.st_dev, info.st_ino))
            if listing.journal is None and not listing.journal_failed:
                listing.journal = listings.Journal.open(self._root)
                listing.journal_failed = listing.journal is None
            return listing.journal is not None

    def _scan(
        self,
        listing: listings.Listing,
        info: os.stat_result,
        *,
        full: bool,
        known: Mapping[str, listings.Entry] | None = None,
    ) -> None:
        """List the directory again; parse only what is new, changed or racy (or not ``known`` already)."""
        started_ns = time.time_ns()
        old = listing.entries
        entries: dict[str, listings.Entry] = {}
        racy = 0
        try:
            scanned = list(os.scandir(self._root))
        except FileNotFoundError:
            scanned = []
        except OSError as error:  # not a directory, no permission: "no instances" would be a lie
            raise spi.PluginError(f"cannot list the instance directory {self.directory}: {error}") from None
        for entry in scanned:
            name = entry.name
            if not documents.INSTANCE_ID.fullmatch(name):
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
                        if listings.key_of(entry.stat(follow_symlinks=False)) == cached.key:
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
        listing.settled = started_ns - info.st_mtime_ns > listings.RACY_NS
        listing.replace(entries)

    def _refresh(self, listing: listings.Listing, changed: Mapping[str, int]) -> None:
        """Parse again the files the journal says changed (created, replaced, edited, removed).

        A file this plugin created, whose only event since is that creation, holds what
        ``provision`` wrote: it is not read back.
        """
        started_ns = time.time_ns()
        for name, events in changed.items():
            own = self._own.pop(name, None)
            if own is not None and events == listings.JUST_CREATED:
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

    def _load(self, path: str, name: str, started_ns: int) -> listings.Entry | None:
        """Parse one instance file into a cache entry (None: gone, or unreadable for now).

        The owner and mode are judged on the ``fstat`` of what was read, so a file swapped
        after a listing is judged for what it is.
        """
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
            if (untrusted := self._untrusted(name, info, started_ns)) is not None:
                return untrusted
            problem = f"is larger than the {MAX_FILE} bytes an instance file may be"
        except OSError as error:
            self._warn(name, f"cannot be read as an instance ({error}); ignored")
            return None  # not cached: a permission may be fixed
        else:
            if (untrusted := self._untrusted(name, info, started_ns)) is not None:
                return untrusted
            try:
                document = json.loads(data)
            except Exception as error:  # one file's content never stops describe
                problem = f"is not JSON ({_reason(error)})"
                head, tail = data[:_HEAD], data[-_TAIL:]
            else:
                found = documents.read_description(name, document)
                if isinstance(found, str):
                    self._warn(name, f"{found}; ignored")
                    return listings.Entry.of(info, None, started_ns)
                return listings.Entry.of(info, found, started_ns)
        recovered = documents.recover(name, head, tail)
        if recovered is None:
            self._warn(name, f"cannot be read as an instance: it {problem}; ignored")
        else:
            self._warn(
                name,
                f"cannot be read whole: it {problem}; its tags, recovered from the end of the file, keep it "
                "a member of its group (it is not replaced, and destroying the group removes it)",
            )
        return listings.Entry.of(info, recovered, started_ns)

    def _untrusted(self, name: str, info: os.stat_result, started_ns: int) -> listings.Entry | None:
        """The entry of a file that cannot be an instance of ours (another user's...), warned about; else None."""
        problem = permissions.file_problem(info, uid=self._uid)
        if problem is None:
            return None
        self._warn(name, problem)
        return listings.Entry.of(info, None, started_ns)

    def _render(self, spec: instances.InstanceSpec) -> _Rendering:
        """The spec's JSON, rendered once for all the instances provisioned from it."""
        rendering = self._spec
        if rendering is not None and rendering.spec is spec and rendering.tags == spec.tags:
            return rendering  # the engine provisions a reconcile's instances from one (frozen) spec
        instances.check_spec(spec)
        if documents.measure(spec.properties, base=documents.PROPERTIES_INDENT)[0] > documents.MAX_DEPTH:
            raise specs.SpecError("Properties", f"nested more than {documents.MAX_DEPTH} levels deep; flatten them")
        documents.check_readable(spec)
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
        compact = documents.compact.encode(value)
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
        if not isinstance(instance_id, str) or not documents.INSTANCE_ID.fullmatch(instance_id):
            raise spi.InstanceNotFound(f"{instance_id!r} is not an instance ID (instance-<digits>)")
        return self.directory / instance_id

    def _write(self, instance_id: str, data: bytes, *, new: bool = False) -> None:
        """Write the instance file atomically: ``new`` ones are created, never replaced.

        Created with the plugin's file mode (``0600``): the temp or unnamed file is never
        readable by more users than the file will be.
        """
        path = os.path.join(self._root, instance_id)
        write = files.create_new if new else files.atomic_write
        self._checked_directory(create=True)
        try:
            try:
                write(path, data, durable=self.durable, mode=self.file_mode)
            except FileNotFoundError:  # the directory was removed meanwhile: made again
                self._checked_directory(create=True)
                write(path, data, durable=self.durable, mode=self.file_mode)
        except FileExistsError:
            raise
        except OSError as error:
            raise spi.PluginError(f"cannot write instance {instance_id} in {self.directory}: {error}") from error

    def _checked_directory(self, *, create: bool = False) -> None:
        """Refuse a directory others could rewrite (see :mod:`~infrakit.plugins.permissions`); ``create``
        it (private) if missing.  A missing one is left to the operation to report."""
        try:
            info = os.stat(self._root)
        except FileNotFoundError:
            if not create:
                return
            try:
                os.makedirs(self._root, mode=self._directory_mode, exist_ok=True)
                info = os.stat(self._root)
            except OSError as error:
                raise spi.PluginError(f"cannot create the instance directory {self.directory}: {error}") from None
        except OSError as error:
            raise spi.PluginError(f"cannot use the instance directory {self.directory}: {error}") from None
        self._check_directory(info)

    def _check_directory(self, info: os.stat_result) -> None:
        if stat.S_ISDIR(info.st_mode):  # not a directory: listing or writing says so
            warning = permissions.check_directory(str(self.directory), info, uid=self._uid, gid=self._gid)
            if warning is not None:
                self._warn_once(("", warning), f"instance directory {self.directory}: {warning}")

    def _read(self, path: Path) -> dict[str, Any] | None:
        """The instance document at ``path`` if it is one describe would list, else None (warned).

        ``InstanceNotFound`` for a file that is not ours (another user's, or anyone's to rewrite).
        """
        try:
            data, info = files.read_nofollow_stat(path, limit=MAX_FILE)
        except FileNotFoundError:
            return None
        except Exception as error:  # one file's content never stops anything
            self._warn(path.name, f"cannot be read as an instance ({_reason(error)}); ignored")
            return None
        problem = permissions.file_problem(info, uid=self._uid)
        if problem is not None:
            raise spi.InstanceNotFound(f"{path.name} in {self.directory} {problem}")
        try:
            document = json.loads(data)
        except Exception as error:
            self._warn(path.name, f"cannot be read as an instance ({_reason(error)}); ignored")
            return None
        found = documents.read_description(path.name, document)
        if isinstance(found, str):
            self._warn(path.name, f"{found}; ignored")
            return None
        result: dict[str, Any] = document
        return result

    def _warn(self, name: str, problem: str) -> None:
        self._warn_once((name, problem), f"instance directory {self.directory}: {name} {problem}")

    def _warn_once(self, key: tuple[str, str], message: str) -> None:
        if key not in self._warned:
            if len(self._warned) >= _MAX_WARNED:  # a long-lived plugin on a churning directory
                self._warned.clear()
            self._warned.add(key)
            log.warning("%s", message)


# -- helpers -------------------------------------------------------------------------------

_DELETED: Final = 3  # watchfiles.Change.deleted (the raw notifier reports ints)
_JUST_ADDED: Final = {1}  # watchfiles.Change.added alone: a creation (or a rename onto the name)


@dataclasses.dataclass(frozen=True, slots=True)
class _Rendering:
    spec: instances.InstanceSpec
    tags: dict[str, str]  # a copy: what the spec's tags were when rendered
    spec_text: str
    tags_text: str


def _reason(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def _too_large(size: int, what: str) -> str:
    return (
        f"the instance file would be {size} bytes, larger than the {MAX_FILE} the instance-file plugin "
        f"reads back; make the {what} smaller"
    )


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
