"""The kopf handlers: watch events feed a cache and a queue; workers sync groups.

kopf watches Groups and calls :func:`group_event` for every change; it only records the
latest object and enqueues its key when something that matters changed (spec
generation, deletion, finalizers, annotations), never for our own status writes.  The
workers, started at operator start-up with the instance-directory watcher, the resync
timer and the leader election, take keys and sync (``reconciling.Syncer``).

We use ``on.event`` rather than kopf's daemons and timers on purpose: those make kopf
put its own finalizer on every Group at once, while ours must exist only while
instances do; and kopf stores no per-object progress for ``on.event``, so its
bookkeeping never grows with the spec.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

import kopf
import prometheus_client
import watchfiles

from infrakit import files, kubeapi, plugins
from infrakit.operator import leadership, metrics, queueing, reconciling

__all__ = ["Config", "Runtime"]

log = logging.getLogger(__name__)

Key = tuple[str, str]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config:
    """The operator's options (see ``infrakit-operator --help``)."""

    instance_dir: Path
    durable: bool = False
    resync: float = 30.0
    workers: int = 2
    metrics_port: int = 9090
    leader_election: bool = True
    lease_namespace: str = "default"
    lease_name: str = "infrakit-operator"
    lease_duration: float = 15.0
    identity: str = dataclasses.field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")


class Runtime:
    """Everything the operator holds in memory: caches and tasks, nothing essential."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.cache: dict[Key, dict[str, Any]] = {}
        self.owners: dict[str, Key] = {}  # instance ID -> group, from the last syncs
        self.members_of: dict[Key, set[str]] = {}
        self.queue: queueing.WorkQueue[Key] = queueing.WorkQueue()
        self.tasks: list[asyncio.Task[None]] = []
        self.elector: leadership.Elector | None = None
        self.syncer: reconciling.Syncer | None = None

    def may_act(self) -> bool:
        return self.elector is None or self.elector.is_leader()

    def enqueue_all(self) -> None:
        for key in list(self.cache):
            self.queue.add(key)

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        api = kubeapi.connect()
        settings = plugins.Settings(instance_dir=self.config.instance_dir, durable=self.config.durable)
        self.config.instance_dir.mkdir(parents=True, exist_ok=True)
        files.remove_stale_temps(self.config.instance_dir)
        self.syncer = reconciling.Syncer(groups=kubeapi.Groups(api), settings=settings)
        if self.config.leader_election:
            self.elector = leadership.Elector(
                api,
                namespace=self.config.lease_namespace,
                name=self.config.lease_name,
                identity=self.config.identity,
                duration=self.config.lease_duration,
                renew=min(2.0, self.config.lease_duration / 5),
                on_elected=self.enqueue_all,
            )
            self.tasks.append(asyncio.create_task(self.elector.run(), name="leader-election"))
        if self.config.metrics_port:
            prometheus_client.start_http_server(self.config.metrics_port)
        self.tasks.append(asyncio.create_task(self._watch_instances(), name="instance-watcher"))
        self.tasks.append(asyncio.create_task(self._resync(), name="resync"))
        self.tasks += [asyncio.create_task(self._work(), name=f"worker-{i}") for i in range(self.config.workers)]

    async def stop(self) -> None:
        self.queue.close()
        for task in reversed(self.tasks):
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.tasks.clear()

    # -- tasks ----------------------------------------------------------------------------

    async def _work(self) -> None:
        backoff: dict[Key, float] = {}
        while True:
            key = await self.queue.get()
            try:
                delay = await self._sync(key)
                backoff.pop(key, None)
            except Exception as error:
                delay = backoff[key] = min(30.0, backoff.get(key, 0.25) * 2)
                kind = type(error).__name__
                metrics.ERRORS.labels(key[0], key[1], kind).inc()
                metrics.RECONCILES.labels(key[0], key[1], "error").inc()
                message = kubeapi.error_text(error) if isinstance(error, kubeapi.ApiException) else str(error)
                log.warning("group %s/%s: %s: %s (retrying in %.1fs)", key[0], key[1], kind, message, delay)
            finally:
                self.queue.done(key)
            if delay is not None:
                self.queue.add(key, after=delay)

    async def _sync(self, key: Key) -> float | None:
        body = self.cache.get(key)
        if body is None or self.syncer is None:
            return None
        if not self.may_act():
            return None  # the leader acts; we are re-enqueued when elected
        started = time.monotonic()
        result = await asyncio.to_thread(self.syncer.sync, body, should_stop=lambda: not self.may_act())
        metrics.RECONCILE_SECONDS.observe(time.monotonic() - started)
        metrics.RECONCILES.labels(key[0], key[1], "error" if result.error else "ok").inc()
        if result.actions:
            log.info("group %s/%s: %d instance operations", key[0], key[1], result.actions)
        current = {m.id for m in result.members}
        for gone in self.members_of.get(key, set()) - current:
            if not (self.config.instance_dir / gone).exists():  # its deletion was seen already
                self.owners.pop(gone, None)
        self.members_of[key] = current
        for member in result.members:
            self.owners[member.id] = key
        if result.members or not result.deleted:
            ready = sum(m.healthy for m in result.members)
            updated = sum(m.up_to_date for m in result.members)
            states = (
                ("desired", result.desired),
                ("current", len(result.members)),
                ("ready", ready),
                ("up_to_date", updated),
            )
            for state, value in states:
                metrics.INSTANCES.labels(key[0], key[1], state).set(value)
        return result.requeue_after

    async def _watch_instances(self) -> None:
        """Wake the owners of changed instance files (all groups if the owner is unknown)."""
        async for changes in watchfiles.awatch(
            self.config.instance_dir, debounce=200, step=10, watch_filter=_instance_file, recursive=False
        ):
            names = {Path(path).name for _, path in changes}
            keys = {self.owners.get(name) for name in names}
            for name in names:  # forget instances that are gone for good (destroyed by us)
                owner = self.owners.get(name)
                if owner is not None and name not in self.members_of.get(owner, ()):
                    del self.owners[name]
            if None in keys:
                self.enqueue_all()
            else:
                for key in keys:
                    if key is not None and key in self.cache:
                        self.queue.add(key)

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.config.resync)
            self.enqueue_all()


def _instance_file(change: watchfiles.Change, path: str) -> bool:
    name = Path(path).name
    return name.startswith("instance-") and not name.endswith(files.TEMP_SUFFIX)


def _significant(body: dict[str, Any]) -> tuple[Any, ...]:
    meta = body.get("metadata") or {}
    return (
        meta.get("generation"),
        meta.get("deletionTimestamp"),
        tuple(meta.get("finalizers") or ()),
        (meta.get("annotations") or {}).get(kubeapi.ORPHAN_ANNOTATION),
    )


# -- kopf handlers ---------------------------------------------------------------------------


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime = memo.runtime
    settings.posting.level = logging.WARNING
    settings.scanning.disabled = True  # no CRD/namespace watching: fewer permissions, fixed namespaces
    settings.watching.server_timeout = 300
    settings.networking.error_backoffs = [1, 2, 5, 10]
    await runtime.start()


@kopf.on.cleanup()
async def shutdown(memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime = memo.runtime
    await runtime.stop()


@kopf.on.probe(id="leader")
def leader_probe(memo: kopf.Memo, **_: Any) -> bool:
    runtime: Runtime = memo.runtime
    return runtime.may_act()


@kopf.on.event(kubeapi.GROUP, kubeapi.VERSION, kubeapi.PLURAL)
def group_event(event: kopf.RawEvent, memo: Any, **_: Any) -> None:
    runtime: Runtime = memo.runtime
    raw: dict[str, Any] = dict(event.get("object") or {})
    meta = raw.get("metadata") or {}
    key = (meta.get("namespace", ""), meta.get("name", ""))
    if event.get("type") == "DELETED":
        runtime.cache.pop(key, None)
        return
    old = runtime.cache.get(key)
    runtime.cache[key] = raw
    if old is None or _significant(old) != _significant(raw):
        runtime.queue.add(key)
