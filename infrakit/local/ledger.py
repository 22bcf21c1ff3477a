"""The local store's members ledger: one file per group, shared by every process.

``infrakit-local commit``, ``run`` and the group daemon may all act on one group (under
its lock, one at a time).  So that none of them calls "lost" an instance another one
destroyed on purpose (or misses one another one made), each sync appends to
``groups/.NAME.members`` what it changed, and replays what the others appended since
it last looked (:mod:`infrakit.runtime.owners`).

JSON lines: the first is a snapshot, ``{"reset": [ids]}``; the others are changes,
``{"add": [ids], "remove": [ids]}``.  Appends cost O(change); past :data:`ROTATE`
bytes the next write is a fresh snapshot (a new file, renamed in), and a reader whose
cursor was in the old file starts again from the snapshot.  Not fsynced: it is advice
(which losses to name), never the source of truth (the instances are); a line torn by
a crash is skipped.  A cursor is ``(device, inode, offset)``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any, Final

from infrakit import files
from infrakit.local import store as stores_
from infrakit.runtime import stores

__all__ = ["ROTATE", "FileLedger"]

ROTATE: Final = 1 << 20
"""Bytes of changes after which the ledger starts anew from a snapshot."""
_MAX_READ: Final = 64 << 20
"""A ledger larger than this is not read (a snapshot of ~2 million IDs): the members are not known."""

_READ: Final = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_APPEND: Final = os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC


class FileLedger:
    """:class:`infrakit.runtime.stores.Ledger` over the local store's group directory."""

    def __init__(self, store: stores_.Store) -> None:
        self.store = store

    def read(self, key: stores.Key, cursor: Any) -> tuple[Sequence[stores.Entry], Any, bool]:
        path = self.store.ledger_path(key[1])
        try:
            fd = os.open(path, _READ)
        except (FileNotFoundError, OSError):
            return [], None, True  # none (or a link, or unreadable): nothing proves what the group had
        try:
            info = os.fstat(fd)
            where = (info.st_dev, info.st_ino)
            fresh = not (isinstance(cursor, tuple) and cursor[:2] == where and cursor[2] <= info.st_size)
            offset = 0 if fresh else cursor[2]
            if info.st_size - offset > _MAX_READ:
                return [], None, True
            os.lseek(fd, offset, os.SEEK_SET)
            data = _read_all(fd, info.st_size - offset)
        finally:
            os.close(fd)
        complete = data.rfind(b"\n") + 1  # a torn last line is left for later (or for ever)
        entries = [entry for line in data[:complete].splitlines() if (entry := _entry(line)) is not None]
        if fresh and (not entries or entries[0].reset is None):
            return [], None, True  # no snapshot to start from
        return entries, (*where, offset + complete), fresh

    def append(self, key: stores.Key, entry: stores.Entry, *, members: frozenset[str]) -> Any:
        path = self.store.ledger_path(key[1])
        try:
            fd = os.open(path, _APPEND)
        except FileNotFoundError:
            return self._snapshot(path, members)
        try:
            info = os.fstat(fd)
            if entry.reset is not None or info.st_size >= ROTATE:
                return self._snapshot(path, members)
            line = _line({"add": sorted(entry.added), "remove": sorted(entry.removed)})
            if info.st_size and _last_byte(path, info.st_size) != b"\n":
                line = b"\n" + line  # after a torn line: never glue to it
            while line:
                line = line[os.write(fd, line) :]
            return (info.st_dev, info.st_ino, os.fstat(fd).st_size)
        finally:
            os.close(fd)

    def _snapshot(self, path: os.PathLike[str], members: frozenset[str]) -> Any:
        data = _line({"reset": sorted(members)})
        files.atomic_write(path, data, durable=False, mode=0o600)
        info = os.stat(path, follow_symlinks=False)
        return (info.st_dev, info.st_ino, len(data))


def _line(document: dict[str, list[str]]) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode() + b"\n"


def _entry(line: bytes) -> stores.Entry | None:
    try:
        document = json.loads(line)
    except (ValueError, RecursionError):
        return None
    if not isinstance(document, dict):
        return None
    lists = {k: v for k, v in document.items() if isinstance(v, list) and all(isinstance(i, str) for i in v)}
    if "reset" in lists:
        return stores.Entry(reset=frozenset(lists["reset"]))
    if set(document) == {"add", "remove"} and len(lists) == 2:
        return stores.Entry(added=frozenset(lists["add"]), removed=frozenset(lists["remove"]))
    return None


def _read_all(fd: int, size: int) -> bytes:
    chunks = []
    while size > 0:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _last_byte(path: os.PathLike[str], size: int) -> bytes:
    fd = os.open(path, _READ)
    try:
        return os.pread(fd, 1, size - 1)
    finally:
        os.close(fd)
