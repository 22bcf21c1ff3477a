"""The local store as the runtime sees it: records, status writes, a change feed.

Adapts ``infrakit.local.store`` to ``infrakit.runtime.stores.Store``.  Local keys are
``("", name)``.  Events are log lines.  Nothing is collected: a local group's instances
go only when the group is destroyed (its record is kept, marked deleting, until they
are), and a freed group's instances are meant to stay.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractContextManager
from typing import Any

from infrakit import files
from infrakit.core import specs
from infrakit.local import ledger as ledgers
from infrakit.local import store as stores_
from infrakit.runtime import stores

__all__ = ["LocalStore"]

log = logging.getLogger("infrakit.local")


class LocalStore:
    collects_garbage = False
    cluster = None  # local instances name no cluster (nor namespace), as InfraKit's

    def __init__(self, store: stores_.Store, *, verbose: bool = False) -> None:
        self.store = store
        # Several processes act on one group here (commit, run, the group daemon): they
        # share what each group's members are through the ledger.
        self.ledger: stores.Ledger | None = ledgers.FileLedger(store)
        # ``run`` logs what happens (as the operator posts Events); a one-shot command prints
        # its own result and error line, so its events are debug.
        self.verbose = verbose

    def session(self, key: stores.Key) -> AbstractContextManager[None]:
        return self.store.lock(key[1])

    def keys(self) -> list[stores.Key]:
        return [("", name) for name in self.store.names()]

    def owns(self, key: stores.Key) -> bool:
        return key[0] == ""

    def get(self, key: stores.Key) -> stores.Record | None:
        stored = self.store.load(key[1])
        if stored is None:
            return None
        return stores.Record(
            key=key,
            manifest=stored.manifest,
            status=stored.status,
            generation=stored.generation,
            deleting=stored.deleting,
            orphan=stored.orphan,
            options=stored.options,
        )

    def record(
        self, spec: specs.GroupSpec, *, status: Mapping[str, Any], generation: int, options: Mapping[str, Any]
    ) -> stores.Record:
        """The record a commit of ``spec`` makes, as :meth:`get` would read it back (without a read)."""
        manifest = spec.to_manifest()
        manifest["metadata"]["generation"] = generation
        return stores.Record(
            key=("", spec.name), manifest=manifest, status=status, generation=generation, options=dict(options)
        )

    def exists(self, key: stores.Key) -> bool:
        return self.store.path(key[1]).exists()

    def write_status(self, record: stores.Record, status: Mapping[str, Any]) -> None:
        """Within the sync's session the record is what the store holds (every writer of a
        group holds its lock): it is written back with its new status, not parsed again.
        Unless it is not the one stored: a commit that failed (or was interrupted) before it
        recorded its spec leaves the store as it was, status included."""
        if self.store.generation(record.name) != record.generation:
            return
        self.store.write(record.name, record.manifest, status, options=record.options)

    def guard(self, record: stores.Record) -> bool:
        return True

    def unguard(self, record: stores.Record) -> None:
        return None

    def release(self, record: stores.Record) -> None:
        self.store.delete(record.name)

    def event(
        self, record: stores.Record, *, reason: str, message: str, warning: bool = False, force: bool = False
    ) -> None:
        level = (logging.WARNING if warning else logging.INFO) if self.verbose else logging.DEBUG
        log.log(level, "group %s: %s: %s", record.name, reason, message)

    def changes(self) -> AsyncIterator[stores.Key | None]:
        return self._changes()

    async def _changes(self) -> AsyncIterator[stores.Key | None]:
        """Names of group files that changed, from one inotify watch of the groups directory.

        ``None`` ("any group may have changed") comes first, once the watch is in place, so
        that a group committed between the runtime's first listing and the watch is not
        missed; then again after an overflow, or when the directory was replaced.
        """
        import asyncio  # lazy: only a controller watches the store; ls and describe never load it

        import inotify_simple

        flags = inotify_simple.flags
        wanted = flags.CLOSE_WRITE | flags.MOVED_TO | flags.MOVED_FROM | flags.DELETE | flags.ONLYDIR
        gone = flags.Q_OVERFLOW | flags.IGNORED | flags.DELETE_SELF | flags.MOVE_SELF
        loop = asyncio.get_running_loop()
        notify = inotify_simple.INotify(nonblocking=True)
        readable = asyncio.Event()
        loop.add_reader(notify.fileno(), readable.set)
        try:
            while True:
                directory = self.store.groups_dir
                directory.mkdir(parents=True, exist_ok=True)
                watch = notify.add_watch(directory, wanted | flags.DELETE_SELF | flags.MOVE_SELF)
                yield None
                rearm = False
                while not rearm:
                    await readable.wait()
                    readable.clear()
                    names = set()
                    for event in notify.read(timeout=0):
                        if event.mask & gone:
                            rearm = True
                        elif _group_file(event.name):
                            names.add(event.name.removesuffix(".yaml"))
                    for name in sorted(names):
                        yield ("", name)
                with contextlib.suppress(OSError):
                    notify.rm_watch(watch)
        finally:
            loop.remove_reader(notify.fileno())
            notify.close()


def _group_file(name: str) -> bool:
    return name.endswith(".yaml") and not name.startswith(".") and not name.endswith(files.TEMP_SUFFIX)
