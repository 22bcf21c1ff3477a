"""Groups on a cluster as the runtime sees them: the operator's store.

Adapts the Kubernetes API to ``infrakit.runtime.stores.Store``.  Records come from a
cache that the operator's watch keeps (kopf calls :meth:`ClusterStore.observe` for
every event), so a sync costs no read; writes go to the API server with optimistic
concurrency where it matters (finalizers carry the resourceVersion they were decided
on).  Whether a group is really gone is asked of the API server, never of the cache.

Writes are fenced: when ``may_write`` says no (this replica lost the Lease), every
write raises :class:`NotLeader` instead of reaching the server.

Events are aggregated: at most one per group and reason every ``EVENT_INTERVAL``
seconds, counts summed, except ``force`` ones (deletions, failures), which never wait.
"""

from __future__ import annotations

import collections
import contextlib
import fnmatch
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Final

from infrakit import logs
from infrakit.cluster import kubeapi
from infrakit.runtime import stores

__all__ = ["EVENT_INTERVAL", "ClusterStore", "NotLeader"]

log = logging.getLogger(__name__)

EVENT_INTERVAL: Final = 5.0
COMPONENT: Final = "infrakit-operator"


class NotLeader(RuntimeError):
    """This replica may not write: it does not hold the Lease (any more)."""


class ClusterStore:
    collects_garbage = True
    # One process acts at a time (the Lease): its own memory of the members is the group's,
    # as long as it kept the Lease (the runtime forgets it on every election).
    ledger = None

    def __init__(
        self,
        groups: kubeapi.Groups,
        *,
        cluster: str,
        namespaces: Sequence[str] = (),
        may_write: Callable[[], bool] = lambda: True,
    ) -> None:
        self.groups = groups
        self.cluster = cluster  # this cluster's identity, on every instance its groups make
        self.namespaces = tuple(namespaces)  # globs; empty: every namespace
        self.may_write = may_write
        self.cache: dict[stores.Key, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._last_event: dict[tuple[str, str, str], float] = {}
        self._pending: collections.Counter[tuple[str, str, str]] = collections.Counter()

    # -- the cache, fed by the watch --------------------------------------------------------------

    def observe(self, body: Mapping[str, Any], *, deleted: bool = False) -> tuple[stores.Key, bool]:
        """Record what the watch saw; return the key and whether a sync is called for.

        Our own status writes come back as events too: they change nothing that matters
        (generation, deletion, finalizers, annotations), so they wake nothing.
        """
        meta = body.get("metadata") or {}
        key = (str(meta.get("namespace", "")), str(meta.get("name", "")))
        with self._lock:
            if deleted:
                self.cache.pop(key, None)
                self._forget_events(key)
                return key, True
            old = self.cache.get(key)
            self.cache[key] = dict(body)
        return key, old is None or _significant(old) != _significant(body)

    # -- stores.Store ----------------------------------------------------------------------------

    def session(self, key: stores.Key) -> AbstractContextManager[None]:
        return contextlib.nullcontext()

    def keys(self) -> list[stores.Key]:
        with self._lock:
            return list(self.cache)

    def owns(self, key: stores.Key) -> bool:
        return not self.namespaces or any(fnmatch.fnmatchcase(key[0], pattern) for pattern in self.namespaces)

    def get(self, key: stores.Key) -> stores.Record | None:
        with self._lock:
            body = self.cache.get(key)
        if body is None:
            return None
        meta = body.get("metadata") or {}
        generation = meta.get("generation")
        return stores.Record(
            key=key,
            manifest={k: v for k, v in body.items() if k != "status"},
            status=body.get("status") or {},
            generation=generation if isinstance(generation, int) else None,
            deleting=bool(meta.get("deletionTimestamp")),
            guarded=kubeapi.FINALIZER in (meta.get("finalizers") or []),
            orphan=(meta.get("annotations") or {}).get(kubeapi.ORPHAN_ANNOTATION) == "true",
            version=meta.get("resourceVersion"),
        )

    def exists(self, key: stores.Key) -> bool:
        return self.groups.get(key[0], key[1]) is not None

    def write_status(self, record: stores.Record, status: Mapping[str, Any]) -> None:
        self._fence()
        if self.groups.patch_status(record.key[0], record.key[1], status):
            with self._lock:  # what we wrote is what the next sync starts from
                body = self.cache.get(record.key)
                if body is not None and (body.get("metadata") or {}).get("uid") == _uid(record):
                    self.cache[record.key] = {**body, "status": dict(status)}

    def guard(self, record: stores.Record) -> bool:
        if record.deleting:
            return False
        self._fence()
        finalizers = list((record.manifest.get("metadata") or {}).get("finalizers") or [])
        return self._set_finalizers(record, [*finalizers, kubeapi.FINALIZER])

    def unguard(self, record: stores.Record) -> None:
        self._fence()
        fresh = self.groups.get(record.key[0], record.key[1])
        if fresh is None or fresh["metadata"].get("deletionTimestamp"):
            return  # gone, or going: deletion releases it
        remaining = [f for f in fresh["metadata"].get("finalizers") or [] if f != kubeapi.FINALIZER]
        try:
            self.groups.set_finalizers(
                record.key[0], record.key[1], remaining, resource_version=fresh["metadata"]["resourceVersion"]
            )
        except kubeapi.ApiException as error:
            if error.status == 409:
                raise stores.Conflict(f"{record.key[0]}/{record.key[1]} changed meanwhile") from None
            raise

    def release(self, record: stores.Record) -> None:
        self._fence()
        finalizers = (record.manifest.get("metadata") or {}).get("finalizers") or []
        self._set_finalizers(record, [f for f in finalizers if f != kubeapi.FINALIZER])

    def event(
        self, record: stores.Record, *, reason: str, message: str, warning: bool = False, force: bool = False
    ) -> None:
        key = (record.key[0], record.key[1], reason)
        if warning:
            log.warning(
                "group %s/%s: %s: %s", key[0], key[1], reason, message, extra=logs.fields(record.key, reason=reason)
            )
        now = time.monotonic()
        with self._lock:
            self._pending[key] += 1
            if not force and now - self._last_event.get(key, -EVENT_INTERVAL) < EVENT_INTERVAL:
                return
            count = self._pending.pop(key)
            self._last_event[key] = now
        if not self.may_write():
            return
        text = message if count == 1 else f"{message} (and {count - 1} more like it)"
        try:
            self.groups.post_event(
                {**record.manifest, "metadata": record.manifest.get("metadata") or {}},
                reason=reason,
                message=text,
                warning=warning,
                component=COMPONENT,
            )
        except Exception as error:
            log.warning(
                "could not post event %s on %s/%s: %s",
                reason,
                key[0],
                key[1],
                error,
                extra=logs.fields(record.key, reason=reason, error=str(error)),
            )

    def changes(self) -> AsyncIterator[stores.Key | None] | None:
        return None  # kopf's watch calls observe(); the operator enqueues

    # -- helpers ---------------------------------------------------------------------------------

    def _fence(self) -> None:
        if not self.may_write():
            raise NotLeader("not the leader (the Lease is held by another replica): no writes")

    def _set_finalizers(self, record: stores.Record, finalizers: list[str]) -> bool:
        if record.version is None:
            return False
        try:
            patched = self.groups.set_finalizers(
                record.key[0], record.key[1], finalizers, resource_version=record.version
            )
        except kubeapi.ApiException as error:
            if error.status == 409:
                raise stores.Conflict(f"{record.key[0]}/{record.key[1]} changed meanwhile") from None
            raise
        if patched is None:
            return False
        with self._lock:
            # The patch was conditional on record.version: the object as patched is the version
            # right after it, so its watch event need not wake another sync.  Unless the watch
            # has already brought something newer (then the cache stays as it is).
            body = self.cache.get(record.key)
            if body is not None and (body.get("metadata") or {}).get("resourceVersion") == record.version:
                self.cache[record.key] = patched
        return True

    def _forget_events(self, key: stores.Key) -> None:
        for event_key in [k for k in self._last_event if k[:2] == key]:
            self._last_event.pop(event_key, None)
            self._pending.pop(event_key, None)


def _significant(body: Mapping[str, Any]) -> tuple[Any, ...]:
    meta = body.get("metadata") or {}
    return (
        meta.get("uid"),
        meta.get("generation"),
        meta.get("deletionTimestamp"),
        tuple(meta.get("finalizers") or ()),
        (meta.get("annotations") or {}).get(kubeapi.ORPHAN_ANNOTATION),
    )


def _uid(record: stores.Record) -> Any:
    return (record.manifest.get("metadata") or {}).get("uid")
