"""The owner index and the members memory: which group each instance belongs to, and
which instances each group's controllers last meant it to have.

A change notification names an instance; the index names the group to sync (an
unknown instance means "sync every group").  It also remembers each group's instance
plugin, so the instances of a group that vanished can still be found.

A sync names the instances that were *lost*: members that vanished although no
controller of the group meant to remove them, whichever process removed them.  That
needs a memory of the members that is true for every controller of the group, not
only for this process:

* where several processes act on one group (the local store: ``infrakit-local commit``,
  ``run`` and the group daemon), the store keeps a **ledger** per group
  (:class:`infrakit.runtime.stores.Ledger`): each sync appends what it changed (instances made, instances it
  is about to destroy, before it destroys them; instances found gone or new), and
  every sync first replays what the others appended since it last looked.  So the
  memory a sync starts from is the group's as the last controller left it;
* where one process acts at a time (the operator: only the holder of the Lease acts),
  the process's own memory is the group's, as long as it held the Lease throughout:
  :meth:`Owners.reset` forgets it whenever leadership is (re)gained.

Without a memory (a fresh process, a ledger rotated past what it knew) a sync claims
nothing was lost: it heals, and names no loss it cannot prove.
Thread-safe: syncs run in worker threads (one sync per group at a time).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterable
from typing import Any

from infrakit import plugins
from infrakit.runtime import stores

__all__ = ["Owners"]


@dataclasses.dataclass
class _Known:
    members: frozenset[str] | None  # None: not known (nothing proves what the group had)
    cursor: Any = None


class Owners:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner: dict[str, stores.Key] = {}
        self._known: dict[stores.Key, _Known] = {}
        self._plugins: dict[stores.Key, plugins.InstancePlugin] = {}

    # -- the index: instance -> group ---------------------------------------------------------

    def owner(self, instance_id: str) -> stores.Key | None:
        return self._owner.get(instance_id)

    def add(self, instance_id: str, key: stores.Key) -> None:
        """An instance was just made for ``key`` (before its sync ends)."""
        with self._lock:
            self._owner[instance_id] = key

    def plugin(self, key: stores.Key, plugin: plugins.InstancePlugin) -> None:
        with self._lock:
            self._plugins[key] = plugin

    def plugin_of(self, key: stores.Key) -> plugins.InstancePlugin | None:
        """The instance plugin ``key`` was last synced with, if any."""
        return self._plugins.get(key)

    def using(self, plugin: object) -> list[stores.Key]:
        """The groups last synced with ``plugin``."""
        with self._lock:
            return [key for key, used in self._plugins.items() if used is plugin]

    # -- the members memory ---------------------------------------------------------------------

    def recall(self, key: stores.Key, ledger: stores.Ledger | None) -> frozenset[str] | None:
        """The members ``key``'s controllers last left it with, if that can be known."""
        with self._lock:
            known = self._known.setdefault(key, _Known(members=None))
        if ledger is None:
            return known.members
        entries, cursor, fresh = ledger.read(key, known.cursor)
        members = None if fresh else known.members
        for entry in entries:
            if entry.reset is not None:
                members = entry.reset
            elif members is not None:
                members = (members | entry.added) - entry.removed
        with self._lock:
            known.members, known.cursor = members, cursor
        return members

    def intend(self, key: stores.Key, ledger: stores.Ledger | None, removing: Iterable[str]) -> None:
        """``removing`` are about to be destroyed on purpose: no other controller may call them lost."""
        gone = frozenset(removing)
        if not gone:
            return
        with self._lock:
            known = self._known.setdefault(key, _Known(members=None))
            if known.members is not None:
                known.members -= gone
            members = known.members
        if ledger is not None and members is not None:
            cursor = ledger.append(key, stores.Entry(removed=gone), members=members)
            with self._lock:
                known.cursor = cursor

    def settle(self, key: stores.Key, ledger: stores.Ledger | None, members: Iterable[str]) -> None:
        """``key``'s members at the end of a sync; what else it had is forgotten."""
        current = frozenset(members)
        with self._lock:
            known = self._known.setdefault(key, _Known(members=None))
            before = known.members
            for gone in (before or frozenset()) - current:
                if self._owner.get(gone) == key:
                    del self._owner[gone]
            for instance_id in current:
                self._owner[instance_id] = key
            known.members = current
        if ledger is None or before == current:
            return
        entry = (
            stores.Entry(reset=current)
            if before is None
            else stores.Entry(added=current - before, removed=before - current)
        )
        cursor = ledger.append(key, entry, members=current)
        with self._lock:
            known.cursor = cursor

    def reset(self) -> None:
        """Forget every group's members: another controller may have acted meanwhile
        (this replica regained the Lease).  The index and plugins stay: they are hints."""
        with self._lock:
            self._known.clear()

    def forget(self, key: stores.Key) -> plugins.InstancePlugin | None:
        """Drop ``key``; return its instance plugin (where its instances were), if known."""
        with self._lock:
            known = self._known.pop(key, None)
            for instance_id in known.members if known is not None and known.members else frozenset():
                if self._owner.get(instance_id) == key:
                    del self._owner[instance_id]
            return self._plugins.pop(key, None)

    def keys(self) -> list[stores.Key]:
        with self._lock:
            return [key for key, known in self._known.items() if known.members is not None]

    def __len__(self) -> int:
        return len(self._owner)
