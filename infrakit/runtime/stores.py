"""The store interface the runtime works over: where Groups and their status live.

Two implementations: the local YAML store (``infrakit.local.records``) and the
Kubernetes API (``infrakit.cluster.records``); the tests use an in-memory one
(``infrakit.testing.stores``).  A store hands out :class:`Record` snapshots and takes
the few writes a sync makes; it never decides anything.

Deletion is the API server's model in both: a record being deleted (``deleting``) stays
until the runtime has torn its instances down and calls :meth:`Store.release`.  The
*guard* is what keeps a record from disappearing before that: the ``infrakit.io/instances``
finalizer on a cluster, present only while instances exist; the local store needs none
(it only deletes a record when told to), so it always says guarded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

__all__ = ["Conflict", "Entry", "Gone", "Key", "Ledger", "Record", "Store"]

Key = tuple[str, str]
"""``(namespace, name)``; the local store's namespace is ``""``."""


class Gone(LookupError):
    """The record vanished while being worked on (deleted meanwhile)."""


class Conflict(RuntimeError):
    """A write lost a race with another writer (a stale resourceVersion): sync again soon.

    Routine on a cluster, not a failure: the sync reports nothing and is requeued.
    """


@dataclasses.dataclass(frozen=True, kw_only=True)
class Record:
    """One Group as its store has it now."""

    key: Key
    manifest: Mapping[str, Any]  # apiVersion, kind, metadata, spec: what the core parses
    status: Mapping[str, Any]
    generation: int | None = None
    deleting: bool = False
    guarded: bool = True  # deletion waits for us (a finalizer); see the module docstring
    orphan: bool = False  # on deletion, leave the instances in place (marked so)
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # the instance plugin's, if recorded
    version: str | None = None  # for optimistic concurrency (a resourceVersion)

    @property
    def namespace(self) -> str | None:
        return self.key[0] or None

    @property
    def name(self) -> str:
        return self.key[1]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Entry:
    """One change to a group's members, as a controller made or found it.

    ``reset`` replaces the whole set (a snapshot); else ``added`` are added, then
    ``removed`` removed.
    """

    added: frozenset[str] = frozenset()
    removed: frozenset[str] = frozenset()
    reset: frozenset[str] | None = None


class Ledger(Protocol):
    """A store's shared record of each group's members (see the module docstring).

    Called with the group's session held (one writer at a time).  A cursor is the
    ledger's own opaque position.  A reader whose cursor is ``None`` or no longer holds
    (the ledger was rotated, or removed with its group) starts afresh: it is given
    ``fresh=True`` and everything from the start, which begins with a ``reset`` entry
    (nothing at all if there is no ledger: the members are not known).
    """

    def read(self, key: Key, cursor: Any) -> tuple[Sequence[Entry], Any, bool]:
        """The entries after ``cursor``, the cursor after them, and whether to start afresh."""
        ...

    def append(self, key: Key, entry: Entry, *, members: frozenset[str]) -> Any:
        """Add ``entry``; return the new cursor.  ``members`` is the set after it: a ledger may
        write that snapshot instead (when it rotates, or has no start to add to)."""
        ...


class Store(Protocol):
    """Groups for the runtime; every method may raise (the sync reports it in status)."""

    collects_garbage: bool
    """Whether instances whose group record is gone (and not orphaned on purpose) are
    destroyed: a cluster's Groups can be deleted behind our back, local ones cannot."""

    @property
    def cluster(self) -> str | None:
        """The identity of the cluster whose Groups these are (``infrakit.cluster`` on every
        instance they make), ``None`` for the local store: an instance is a group's only if
        it carries the group's cluster, namespace and name, so a controller never touches
        another cluster's instances, nor a cluster's the local store's (and back)."""
        ...

    @property
    def ledger(self) -> Ledger | None:
        """The shared memory of each group's members, where several processes act on one
        group (the local store); ``None`` where one process acts at a time (a Lease)."""
        ...

    def session(self, key: Key) -> AbstractContextManager[None]:
        """Held around each sync of ``key`` (the local store's lock of that group; nothing on
        a cluster): one sync per group at a time, across processes; other groups go on."""
        ...

    def keys(self) -> list[Key]:
        """Every group this store holds (that this process is responsible for)."""
        ...

    def get(self, key: Key) -> Record | None:
        """The record as it is now; ``None`` if there is none."""
        ...

    def owns(self, key: Key) -> bool:
        """Whether this process is responsible for ``key`` (a namespace it watches)."""
        ...

    def exists(self, key: Key) -> bool:
        """Whether the record exists, asked of the source of truth (not a cache)."""
        ...

    def write_status(self, record: Record, status: Mapping[str, Any]) -> None:
        """Replace the record's status (a no-op if it is gone)."""

    def guard(self, record: Record) -> bool:
        """Make deletion wait for the runtime; ``False`` if the record is gone or going."""
        ...

    def unguard(self, record: Record) -> None:
        """Let the record be deleted without the runtime (it holds no instances)."""

    def release(self, record: Record) -> None:
        """Deletion is done: the instances are gone (or orphaned); let the record go."""

    def event(self, record: Record, *, reason: str, message: str, warning: bool = False, force: bool = False) -> None:
        """Tell the user what happened to this group (an Event; a log line locally).

        A store may aggregate frequent events; ``force`` ones (deletions, failures) never
        wait."""

    def changes(self) -> AsyncIterator[Key | None] | None:
        """Keys of records that changed (``None``: any may have), or ``None`` if the store
        cannot tell (the operator is told by kopf's watch instead)."""
        ...
