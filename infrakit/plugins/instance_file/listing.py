"""What the file plugin's ``describe`` knows of its directory, and how it stays exact.

``describe`` runs on every reconcile of every group, and every group's instances may
share one directory (the operator's volume: 100,000 files for 1,000 groups), so what it
parsed is kept (:class:`Listing`: one :class:`Entry` per instance-named file, keyed by
``(inode, size, mtime, ctime)``, indexed by group) and re-read only when it may have
changed.  :class:`Catalog` is the policy.  A plugin that describes a second time is
long-lived: it listens to the directory (:mod:`.directory`, inotify), drains what
changed at each describe, and re-reads only the files named there (O(changes); what
``provision`` itself just created is not even read back); a lost listener (the queue
overflowed, the directory moved), the directory changing with no event to say so
(another host writing to a network filesystem, which inotify cannot see), or
:data:`REVALIDATE_JOURNALED` seconds passing means listing everything once more.
Without a journal (one-shot commands, no inotify), it goes by timestamps, as git's index
does:

* a file is parsed again only when its inode changed (the plugin and well-behaved
  writers replace files by rename), and at least every :data:`REVALIDATE` seconds its
  full ``(inode, size, mtime, ctime)`` is compared too (an edit in place, a ``chmod``);
* a file that changed less than :data:`RACY_NS` before it was read may change again with
  the same timestamps, so it is read again each time until it is older ("racy" entries);
* when the directory's own mtime is unchanged, settled (older than ``RACY_NS`` when it
  was listed), every entry is trusted and the last full check is recent, the directory
  is not even listed: a describe is then one ``stat`` and a dictionary lookup by group.

While any instance file has hard links, every describe compares every file's stat: a
change made through another name is journaled under that name, or not at all.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import math
import os
import stat
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Final

from infrakit import files
from infrakit.core import instances
from infrakit.plugins import permissions, spi
from infrakit.plugins.instance_file import directory as directories
from infrakit.plugins.instance_file import documents

__all__ = ["RACY_NS", "REVALIDATE", "REVALIDATE_JOURNALED", "UNKNOWN", "Catalog", "Entry", "Listing"]

RACY_NS: Final = 2_000_000_000  # a change this recent may hide behind equal timestamps (FAT: 2 s)
REVALIDATE: Final = 1.0  # seconds between full (stat every file) checks of a directory
REVALIDATE_JOURNALED: Final = 300.0  # the same, for a directory whose changes are journaled
UNKNOWN: Final = (0, 0, 0, 0)  # the key of an entry never stat-ed (untrusted: a full scan reads it)

log = logging.getLogger("infrakit.plugins.instance_file")


@dataclasses.dataclass(slots=True)
class Entry:
    key: tuple[int, int, int, int]  # st_ino, st_size, st_mtime_ns, st_ctime_ns of what was parsed
    description: instances.Description | None  # None: not an instance (undecodable, wrong ID or types)
    trusted: bool  # parsed more than RACY_NS after its last change
    linked: bool = False  # the file has other names (hard links): changes through them name no file of ours

    @classmethod
    def of(cls, info: os.stat_result, description: instances.Description | None, started_ns: int) -> Entry:
        return cls(
            key=_key(info), description=description, trusted=_trusted(info, started_ns), linked=info.st_nlink > 1
        )


class Listing:
    """What ``describe`` last saw in one directory (guarded by its catalog's lock)."""

    def __init__(self, identity: tuple[int, int]) -> None:
        self.identity = identity  # st_dev, st_ino of the directory
        self.entries: dict[str, Entry] = {}
        self.linked: set[str] = set()  # names of entries with hard links (this plugin makes none)
        self.by_group: dict[str | None, dict[str, instances.Description]] = {}  # by the infrakit.group tag
        self._sorted: dict[str | None, list[instances.Description]] = {}  # by_group's values by ID, when asked
        self.mtime_ns = -1  # the directory's mtime when last listed
        self.settled = False  # listed more than RACY_NS after that mtime
        self.racy = 0  # entries parsed too soon after their last change
        self.validated = -math.inf  # time.monotonic() of the last full check
        self.journal: directories.Listener | None = None  # the directory's changes, once listened to
        self.exact = False  # listed (in full) since the journal began: the journal alone keeps it exact
        self.journal_failed = False  # no journal here (not Linux, no inotify watch left): timestamps only

    def replace(self, entries: dict[str, Entry]) -> None:
        self.entries = entries
        self.linked = {name for name, entry in entries.items() if entry.linked}
        by_group: dict[str | None, dict[str, instances.Description]] = collections.defaultdict(dict)
        for name, entry in entries.items():
            if entry.description is not None:
                by_group[entry.description.tags.get(instances.TAG_GROUP)][name] = entry.description
        self.by_group = dict(by_group)
        self._sorted = {}

    def put(self, name: str, entry: Entry | None) -> None:
        """Record what one file holds now (None: nothing, or not an instance)."""
        old = self.entries.pop(name, None)
        self.linked.discard(name)
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
            if entry.linked:
                self.linked.add(name)
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


class Catalog:
    """One directory's listing and the policy that keeps it exact (see the module docstring).

    ``shown`` is the directory as the user named it (for messages), ``mode`` the one it is
    made with; ``warn(name, problem)`` warns once about a file; ``check(info)`` judges the
    directory itself (raising ``PluginError`` for one others could rewrite).  Thread-safe.
    """

    def __init__(
        self,
        directory: directories.Directory,
        *,
        shown: Path,
        mode: int,
        warn: Callable[[str, str], None],
        check: Callable[[os.stat_result], None],
    ) -> None:
        self.directory = directory
        self.root = directory.root
        self.shown = shown  # the directory as the user named it, for messages
        self.mode = mode  # the directory's, when it is made to be watched
        self.uid = os.geteuid()  # only this user's files are instances (see permissions)
        self.warn = warn
        self.check = check
        self.described = False  # described at all (then provisioning keeps a journal)
        self._long_lived = False  # described before: keep a journal of the directory's changes
        self._lock = threading.Lock()  # guards _listing
        self._listing: Listing | None = None

    def describe(self, tags: Mapping[str, str]) -> list[instances.Description]:
        self.described = True
        try:
            info = os.stat(self.root)
        except FileNotFoundError:
            return []  # made on first use
        except OSError as error:
            raise spi.PluginError(f"cannot list the instance directory {self.shown}: {error}") from None
        self.check(info)
        with self._lock:
            listing = self._current(info)
            drained = listing.journal.drain() if listing.journal is not None else None
            # The directory's mtime after the drain: a change this host made since is in the next
            # drain; a change with no event at all (another host's, on a network filesystem, which
            # inotify cannot see) shows as an mtime that moved while the journal says nothing.
            mtime_ns = _mtime_ns(self.root) if drained is not None else -1
            if (
                drained is not None
                and listing.exact
                and (drained.changed or mtime_ns == listing.mtime_ns)
                and time.monotonic() - listing.validated < REVALIDATE_JOURNALED
            ):
                if drained.changed:
                    self._refresh(listing, drained.changed, drained.made)
                    listing.mtime_ns = mtime_ns
                if listing.linked:  # see the module docstring
                    self._scan(listing, info, full=True)
                    listing.mtime_ns = mtime_ns
            elif (self._long_lived or listing.journal is not None) and not listing.journal_failed:
                # Described before, or provisioning: a long-lived plugin (a command that only
                # reads never pays for the journal).  Listen (again, if the listener was lost),
                # then list everything once: from here on, every change is in the journal.  What
                # this plugin created since it listens, and nothing else touched, is not read back.
                if drained is None:
                    listing.close()
                    self._listen(listing)
                    drained = directories.Drained({}, {})
                    mtime_ns = _mtime_ns(self.root)
                known = {n: drained.made[n] for n, m in drained.changed.items() if m == directories.OWN}
                self._scan(listing, info, full=True, known=known)
                listing.mtime_ns = mtime_ns  # as of the drain (or the listening): later changes are journaled
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

    def watching(self) -> bool:
        """A plugin that describes, then provisions, will describe again: keep a journal from now on,
        so that what it creates need not be read back.  Whether the directory is listened to."""
        with self._lock:
            listing = self._listing
            if listing is None:
                if not self.described:
                    return False  # `instance-file provision`: no describe to come
                try:
                    os.makedirs(self.root, mode=self.mode, exist_ok=True)  # now, to be watched
                    info = os.stat(self.root)
                except OSError:
                    return False  # the write will say why
                listing = self._listing = Listing((info.st_dev, info.st_ino))
            if listing.journal is None and not listing.journal_failed:
                self._listen(listing)
            return listing.journal is not None

    def reread(self, name: str) -> None:
        """Read ``name`` again if it is listed (a creation announced for it did not happen)."""
        with self._lock:
            if self._listing is not None and name in self._listing.entries:
                self._refresh(self._listing, {name: directories.SEVERAL}, {})

    def close(self) -> None:
        with self._lock:
            if self._listing is not None:
                self._listing.close()

    def _current(self, info: os.stat_result) -> Listing:
        identity = (info.st_dev, info.st_ino)
        listing = self._listing
        if listing is None or listing.identity != identity:  # first, or another directory
            if listing is not None:
                listing.close()
            listing = self._listing = Listing(identity)
        return listing

    def _listen(self, listing: Listing) -> None:
        try:
            listing.journal = self.directory.listen()
        except OSError as error:  # no inotify here, no watch left (fs.inotify.max_user_watches)
            log.debug("no change journal for %s (%s): timestamps only", self.root, error)
            listing.journal = None
        listing.journal_failed = listing.journal is None

    # -- reading files ----------------------------------------------------------------------

    def _scan(
        self, listing: Listing, info: os.stat_result, *, full: bool, known: Mapping[str, Entry] | None = None
    ) -> None:
        """List the directory again; parse only what is new, changed or racy (or not ``known`` already)."""
        started_ns = time.time_ns()
        old = listing.entries
        entries: dict[str, Entry] = {}
        racy = 0
        try:
            scanned = list(os.scandir(self.root))
        except FileNotFoundError:
            scanned = []
        except OSError as error:  # not a directory, no permission: "no instances" would be a lie
            raise spi.PluginError(f"cannot list the instance directory {self.shown}: {error}") from None
        for entry in scanned:
            name = entry.name
            if not documents.INSTANCE_ID.fullmatch(name):
                continue  # temp files, other programs' files: not instances
            if not entry.is_file(follow_symlinks=False):
                self.warn(name, "is not a regular file (a symlink?); ignored, never followed")
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
            fresh = self.load(entry.path, name, started_ns)
            if fresh is not None:
                entries[name] = fresh
                racy += not fresh.trusted
        listing.racy = racy
        listing.mtime_ns = info.st_mtime_ns
        listing.settled = started_ns - info.st_mtime_ns > RACY_NS
        listing.replace(entries)

    def _refresh(self, listing: Listing, changed: Mapping[str, int], made: Mapping[str, Entry]) -> None:
        """Parse again the files the journal says changed (created, replaced, edited, removed).

        A file this plugin created, whose only event since is that creation (``OWN``), holds
        what ``provision`` wrote: it is not read back.
        """
        started_ns = time.time_ns()
        for name, mask in changed.items():
            if mask == directories.OWN:
                listing.put(name, made[name])
                continue
            path = os.path.join(self.root, name)
            try:
                info = os.lstat(path)
            except OSError:
                listing.put(name, None)  # gone (or the directory is going: the journal will say)
                continue
            if not stat.S_ISREG(info.st_mode):
                self.warn(name, "is not a regular file (a symlink?); ignored, never followed")
                listing.put(name, None)
                continue
            listing.put(name, self.load(path, name, started_ns))

    def load(self, path: str, name: str, started_ns: int) -> Entry | None:
        """Parse one instance file into a cache entry (None: gone, or unreadable for now).

        The owner and mode are judged on the ``fstat`` of what was read, so a file swapped
        after a listing is judged for what it is.
        """
        try:
            data, info = files.read_nofollow_stat(path, limit=documents.MAX_FILE)
        except FileNotFoundError:
            return None
        except files.TooLarge:
            try:
                head, tail, info = files.read_ends_nofollow(path, head=documents.HEAD, tail=documents.TAIL)
            except FileNotFoundError:
                return None
            except OSError as error:
                self.warn(name, f"cannot be read as an instance ({error}); ignored")
                return None
            if (untrusted := self._untrusted(name, info, started_ns)) is not None:
                return untrusted
            problem = f"is larger than the {documents.MAX_FILE} bytes an instance file may be"
        except OSError as error:
            self.warn(name, f"cannot be read as an instance ({error}); ignored")
            return None  # not cached: a permission may be fixed
        else:
            if (untrusted := self._untrusted(name, info, started_ns)) is not None:
                return untrusted
            try:
                document = json.loads(data)
            except Exception as error:  # one file's content never stops describe
                problem = f"is not JSON ({documents.reason(error)})"
                head, tail = data[: documents.HEAD], data[-documents.TAIL :]
            else:
                found = documents.read_description(name, document)
                if isinstance(found, str):
                    self.warn(name, f"{found}; ignored")
                    return Entry.of(info, None, started_ns)
                return Entry.of(info, found, started_ns)
        recovered = documents.recover(name, head, tail)
        if recovered is None:
            self.warn(name, f"cannot be read as an instance: it {problem}; ignored")
        else:
            self.warn(
                name,
                f"cannot be read whole: it {problem}; its tags, recovered from the end of the file, keep it "
                "a member of its group (it is not replaced, and destroying the group removes it)",
            )
        return Entry.of(info, recovered, started_ns)

    def _untrusted(self, name: str, info: os.stat_result, started_ns: int) -> Entry | None:
        """The entry of a file that cannot be an instance of ours (another user's...), warned about; else None."""
        problem = permissions.file_problem(info, uid=self.uid)
        if problem is None:
            return None
        self.warn(name, problem)
        return Entry.of(info, None, started_ns)


def _by_id(description: instances.Description) -> str:
    return description.id


def _mtime_ns(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return -1


def _key(info: os.stat_result) -> tuple[int, int, int, int]:
    return (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def _trusted(info: os.stat_result, started_ns: int) -> bool:
    return started_ns - max(info.st_mtime_ns, info.st_ctime_ns) > RACY_NS
