"""The owner index: which group each instance belongs to, kept in one place.

A change notification names an instance; the index names the group to sync (an
unknown instance means "sync every group").  It also remembers each group's members
as last seen, so a sync can name the instances that were *lost* (gone without us
destroying them), and each group's instance plugin, so the instances of a group that
vanished can still be found.  Rebuilt from syncs: nothing here is essential state.
Thread-safe: syncs run in worker threads.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from infrakit import plugins
from infrakit.runtime import stores

__all__ = ["Owners"]


class Owners:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner: dict[str, stores.Key] = {}
        self._members: dict[stores.Key, frozenset[str]] = {}
        self._plugins: dict[stores.Key, plugins.InstancePlugin] = {}

    def owner(self, instance_id: str) -> stores.Key | None:
        return self._owner.get(instance_id)

    def add(self, instance_id: str, key: stores.Key) -> None:
        """An instance was just made for ``key`` (before its sync ends)."""
        with self._lock:
            self._owner[instance_id] = key

    def set(self, key: stores.Key, members: Iterable[str]) -> None:
        """``key``'s members at the end of a sync; the rest of its old ones are forgotten."""
        current = frozenset(members)
        with self._lock:
            for gone in self._members.get(key, frozenset()) - current:
                if self._owner.get(gone) == key:
                    del self._owner[gone]
            for instance_id in current:
                self._owner[instance_id] = key
            self._members[key] = current

    def lost(self, key: stores.Key, observed: Iterable[str]) -> list[str]:
        """Members at the end of the last sync that are not observed now, sorted."""
        with self._lock:
            return sorted(self._members.get(key, frozenset()) - set(observed))

    def plugin(self, key: stores.Key, plugin: plugins.InstancePlugin) -> None:
        with self._lock:
            self._plugins[key] = plugin

    def plugin_of(self, key: stores.Key) -> plugins.InstancePlugin | None:
        """The instance plugin ``key`` was last synced with, if any."""
        return self._plugins.get(key)

    def forget(self, key: stores.Key) -> plugins.InstancePlugin | None:
        """Drop ``key``; return its instance plugin (where its instances were), if known."""
        with self._lock:
            for instance_id in self._members.pop(key, frozenset()):
                if self._owner.get(instance_id) == key:
                    del self._owner[instance_id]
            return self._plugins.pop(key, None)

    def keys(self) -> list[stores.Key]:
        with self._lock:
            return list(self._members)

    def __len__(self) -> int:
        return len(self._owner)
