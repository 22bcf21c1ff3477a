"""An in-memory group store for unit tests of the runtime, with the API server's rules.

It keeps records as the API server keeps objects: ``apply`` bumps the generation when
the spec changes, ``delete`` of a guarded record (our finalizer) only marks it deleting
and :meth:`MemoryStore.release` completes it, an unguarded one goes at once.  Tests can
break it (``fail_writes``) and read what a sync wrote (``records``, ``events``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractContextManager
from typing import Any

from infrakit.core import specs
from infrakit.runtime import stores

__all__ = ["MemoryLedger", "MemoryStore"]


class MemoryStore:
    """``cluster``: the identity its groups' instances carry (``None``: a local store's).
    ``shared``: keep a members ledger, as a store several processes act on does (give
    two syncers the same store to play two processes)."""

    def __init__(
        self,
        *,
        collects_garbage: bool = True,
        namespaced: bool = True,
        cluster: str | None = "test-cluster",
        shared: bool = False,
    ) -> None:
        self.collects_garbage = collects_garbage
        self.namespaced = namespaced
        self.cluster = cluster if namespaced else None
        self.ledger: stores.Ledger | None = MemoryLedger() if shared else None
        self.records: dict[stores.Key, stores.Record] = {}
        self.events: list[tuple[stores.Key, str, str, bool]] = []
        self.status_writes = 0
        self.fail_writes: Exception | None = None  # raised by every write while set
        self.hidden: set[stores.Key] = set()  # in the store, but not (yet) in its listing (a lagging cache)
        self._lock = threading.Lock()

    # -- what tests do ---------------------------------------------------------------------

    def apply(self, spec: specs.GroupSpec, *, orphan: bool = False) -> stores.Key:
        """Create or update a record from ``spec`` (``metadata.namespace`` picks the key)."""
        key = (spec.namespace or "", spec.name)
        manifest = spec.to_manifest()
        old = self.records.get(key)
        generation = 1
        if old is not None:
            same = {k: v for k, v in old.manifest.items() if k != "metadata"} == {
                k: v for k, v in manifest.items() if k != "metadata"
            }
            generation = (old.generation or 1) + (0 if same else 1)
        self.records[key] = stores.Record(
            key=key,
            manifest=manifest,
            status=old.status if old else {},
            generation=generation,
            guarded=old.guarded if old else False,
            orphan=orphan,
            version=str(int(old.version or 0) + 1) if old else "1",
        )
        return key

    def put(self, key: stores.Key, manifest: Mapping[str, Any]) -> None:
        """Store a raw manifest (possibly invalid)."""
        old = self.records.get(key)
        self.records[key] = stores.Record(
            key=key,
            manifest=dict(manifest),
            status=old.status if old else {},
            generation=(old.generation or 0) + 1 if old else 1,
            guarded=old.guarded if old else False,
            version="1",
        )

    def delete(self, key: stores.Key, *, orphan: bool = False) -> None:
        record = self.records[key]
        if record.guarded:
            self.records[key] = dataclasses.replace(record, deleting=True, orphan=orphan or record.orphan)
        else:
            del self.records[key]

    def condition(self, key: stores.Key, kind: str = "Ready") -> dict[str, Any]:
        for condition in self.records[key].status.get("conditions") or []:
            if condition["type"] == kind:
                return dict(condition)
        return {}

    # -- stores.Store ------------------------------------------------------------------------

    def session(self, key: stores.Key) -> AbstractContextManager[None]:
        return contextlib.nullcontext()

    def keys(self) -> list[stores.Key]:
        return [key for key in self.records if key not in self.hidden]

    def owns(self, key: stores.Key) -> bool:
        return bool(key[0]) == self.namespaced

    def get(self, key: stores.Key) -> stores.Record | None:
        return self.records.get(key)

    def exists(self, key: stores.Key) -> bool:
        return key in self.records

    def write_status(self, record: stores.Record, status: Mapping[str, Any]) -> None:
        self._check()
        current = self.records.get(record.key)
        if current is not None:
            self.records[record.key] = dataclasses.replace(current, status=dict(status))
            self.status_writes += 1

    def guard(self, record: stores.Record) -> bool:
        self._check()
        current = self.records.get(record.key)
        if current is None or current.deleting:
            return False
        self.records[record.key] = dataclasses.replace(current, guarded=True)
        return True

    def unguard(self, record: stores.Record) -> None:
        self._check()
        current = self.records.get(record.key)
        if current is not None and not current.deleting:
            self.records[record.key] = dataclasses.replace(current, guarded=False)

    def release(self, record: stores.Record) -> None:
        self._check()
        self.records.pop(record.key, None)
        if isinstance(self.ledger, MemoryLedger):
            self.ledger.drop(record.key)

    def event(
        self, record: stores.Record, *, reason: str, message: str, warning: bool = False, force: bool = False
    ) -> None:
        with self._lock:
            self.events.append((record.key, reason, message, warning))

    def changes(self) -> AsyncIterator[stores.Key | None] | None:
        return None

    def _check(self) -> None:
        if self.fail_writes is not None:
            raise self.fail_writes


class MemoryLedger:
    """:class:`infrakit.runtime.stores.Ledger` in a list per group; a cursor is an index.

    ``rotate(key)`` starts a group's ledger anew (a snapshot), as the file ledger does
    past its size; ``drop(key)`` removes it, as the local store does with its group.
    """

    def __init__(self) -> None:
        self.entries: dict[stores.Key, list[stores.Entry]] = {}
        self.epochs: dict[stores.Key, int] = {}

    def read(self, key: stores.Key, cursor: Any) -> tuple[list[stores.Entry], Any, bool]:
        entries = self.entries.get(key)
        if not entries:
            return [], None, True
        epoch = self.epochs.get(key, 0)
        fresh = not (isinstance(cursor, tuple) and cursor[0] == epoch and cursor[1] <= len(entries))
        start = 0 if fresh else cursor[1]
        return entries[start:], (epoch, len(entries)), fresh

    def append(self, key: stores.Key, entry: stores.Entry, *, members: frozenset[str]) -> Any:
        entries = self.entries.get(key)
        if not entries or entry.reset is not None:
            self.epochs[key] = self.epochs.get(key, 0) + 1
            self.entries[key] = entries = [stores.Entry(reset=members)]
        else:
            entries.append(entry)
        return (self.epochs[key], len(entries))

    def rotate(self, key: stores.Key, members: frozenset[str]) -> None:
        self.epochs[key] = self.epochs.get(key, 0) + 1
        self.entries[key] = [stores.Entry(reset=members)]

    def drop(self, key: stores.Key) -> None:
        self.entries.pop(key, None)
        self.epochs[key] = self.epochs.get(key, 0) + 1
