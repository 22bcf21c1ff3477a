"""What the file plugin's ``describe`` last saw in its directory, and the directory's journal.

:class:`Listing` holds one :class:`Entry` per instance-named file (what was parsed, keyed
by ``(inode, size, mtime, ctime)``) and indexes the instances by group;
:class:`Journal` (inotify, read without waiting) names the files that changed since the
last describe, so that a long-lived plugin re-reads O(changes) files.  The policy (when
to trust an entry, when to list everything again) is :mod:`infrakit.plugins.instance_file`'s.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import math
import os
import stat
from typing import Any, Final

from infrakit.core import instances
from infrakit.plugins import instance_documents as documents

__all__ = [
    "JUST_CREATED",
    "RACY_NS",
    "SEVERAL",
    "UNKNOWN",
    "Entry",
    "Journal",
    "Listing",
    "identity",
    "key_of",
    "mtime_ns",
    "trusted",
]

RACY_NS: Final = 2_000_000_000  # a change this recent may hide behind equal timestamps (FAT: 2 s)

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
            key=key_of(info), description=description, trusted=trusted(info, started_ns), linked=info.st_nlink > 1
        )


class Listing:
    """What ``describe`` last saw in the directory (guarded by the plugin's lock)."""

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
        self.journal: Journal | None = None  # the directory's changes, once armed
        self.exact = False  # listed (in full) since the journal was armed: the journal alone keeps it exact
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


UNKNOWN: Final = (0, 0, 0, 0)  # the key of an entry never stat-ed (untrusted: a full scan reads it)
SEVERAL: Final = -1  # a name with more than one event since the last drain
JUST_CREATED: Final = 0x100  # IN_CREATE alone: what linking a new file in (provision) makes


def mtime_ns(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return -1


def _by_id(description: instances.Description) -> str:
    return description.id


class Journal:
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
    def open(cls, root: str) -> Journal | None:
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
        """The instance names that changed: each with its event's mask, or ``SEVERAL`` (-1)."""
        changed: dict[str, int] = {}
        try:
            events = self._notify.read(timeout=0)
        except OSError:
            return None
        for event in events:
            if event.mask & self._lost:
                return None
            if documents.INSTANCE_ID.fullmatch(event.name):
                changed[event.name] = SEVERAL if event.name in changed else event.mask
        return changed

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._notify.close()


def key_of(info: os.stat_result) -> tuple[int, int, int, int]:
    return (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def trusted(info: os.stat_result, started_ns: int) -> bool:
    return started_ns - max(info.st_mtime_ns, info.st_ctime_ns) > RACY_NS


def identity(path: str) -> tuple[int, int] | None:
    """The (st_dev, st_ino) of the directory at ``path``, None if there is none."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_dev, info.st_ino) if stat.S_ISDIR(info.st_mode) else None
