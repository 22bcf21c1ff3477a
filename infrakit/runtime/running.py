"""The reconcile runtime: a queue, workers, change watches and a resync, around one sync.

Every mode runs this: ``infrakit-local run``, the group daemon, and the operator (whose
kopf handlers only call :meth:`Runtime.enqueue`).  What wakes a group:

* its record changed (the store's own change feed, or kopf's watch for the operator);
* one of its instances changed: each instance plugin that can report changes
  (``plugins.Watching``) is watched from the moment the registry makes it, and the
  owner index maps the instance to its group (an unknown instance wakes every group);
* the sync asked to be requeued (waiting for health) or failed (per-key backoff);
* its own timer, set at the end of each successful sync: ``poll`` seconds if its
  instance plugin cannot report changes (then polling is how a lost instance is found,
  as InfraKit's group plugin polled every 10 s), ``resync`` seconds if its changes are
  watched (a safety net, as controller-runtime's resync: every change already wakes the
  group).  Each timer is spread by +/-10 %, so a thousand groups never resync at once.

Where the store collects garbage (a cluster), the instances of groups that are gone
are collected at start and every ``resync`` seconds, from every instance plugin the
process may have used: those it made, those its configuration names and the daemons
in its plugins directory (``discover``), so a Group deleted while no operator ran is
collected too.

A plugin whose change feed breaks (its daemon died) may be gone: the groups using it
are synced at once, so their status says ``PluginUnavailable`` within a second rather
than at the next poll, and again when the feed comes back.

Syncs run in worker threads (plugins block); one key is never synced twice at once.
Acting can be switched off (``may_act``: a replica that is not the leader), and a
sync in flight stops between instance operations when it is.  The threads are daemon
threads, not the loop's executor: a process that stops waits for its syncs in flight for a
bound (:meth:`Runtime.drain`), not for a plugin call that hangs (the executor is joined at exit).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import logging
import random
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

from infrakit import logs, plugins
from infrakit.runtime import POLL, RESYNC, queueing, stores, syncing

__all__ = ["Runtime"]

log = logging.getLogger(__name__)

STOP_GRACE = 10.0  # seconds a stopping process waits for its syncs in flight (as `docker stop` waits)


class Runtime:
    def __init__(
        self,
        *,
        syncer: syncing.Syncer,
        workers: int = 2,
        resync: float = RESYNC,
        poll: float = POLL,
        may_act: Callable[[], bool] = lambda: True,
        on_result: Callable[[syncing.Result], None] | None = None,
        discover: Callable[[], list[str]] = list,
    ) -> None:
        self.syncer = syncer
        self.store = syncer.store
        self.registry = syncer.registry
        self.owners = syncer.owners
        self.workers = workers
        self.resync = resync
        self.poll = poll
        self.may_act = may_act
        self.on_result = on_result
        self.discover = discover  # names of instance plugins to collect from, besides those made
        self.queue: queueing.WorkQueue[stores.Key] = queueing.WorkQueue()
        self.synced = 0  # syncs completed (for readiness and tests)
        self._tasks: set[asyncio.Task[None]] = set()
        self._watched: set[int] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._first: set[stores.Key] = set()
        self._ready: asyncio.Event | None = None
        self._collect_soon: asyncio.Event | None = None
        self._inflight: dict[threading.Event, str] = {}  # calls in worker threads, by what they do

    # -- waking groups ----------------------------------------------------------------------

    def enqueue(self, key: stores.Key, *, after: float = 0.0) -> None:
        self.queue.add(key, after=after)

    def elected(self) -> None:
        """This replica (re)gained the right to act: another may have acted meanwhile, so
        what it remembers of the groups' members is forgotten, and every group synced."""
        self.syncer.reset()
        self.enqueue_all()
        if self._loop is not None and self._collect_soon is not None:
            self._loop.call_soon_threadsafe(self._collect_soon.set)  # a Group may have gone meanwhile

    def enqueue_all(self) -> None:
        for key in self._all_keys():
            self.queue.add(key)

    # -- running ----------------------------------------------------------------------------

    async def run(self, *, ready: asyncio.Event | None = None) -> None:
        """Reconcile until cancelled; ``ready`` is set once every group was synced once."""
        self._loop = asyncio.get_running_loop()
        self._ready = ready
        try:
            self._first = set(self.store.keys())
        except Exception as error:
            log.warning("cannot list the groups: %s", error)
            self._first = set()
        self._spawn(self._feed_store(), "store-changes")
        self.registry.subscribe(self._plugin_made)
        for index in range(self.workers):
            self._spawn(self._work(), f"worker-{index}")
        self._spawn(self._resync(), "resync")
        for key in sorted(self._first):
            self.queue.add(key)
        self._check_ready()
        try:
            await asyncio.Event().wait()  # until cancelled
        finally:
            await self.close()

    async def close(self) -> None:
        self.queue.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()

    def _spawn(self, coroutine: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.ensure_future(coroutine)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _check_ready(self) -> None:
        if self._ready is not None and not self._first and not self._ready.is_set():
            self._ready.set()
            log.info("ready")

    async def _work(self) -> None:
        while True:
            key = await self.queue.get()
            try:
                await self._process(key)
            finally:
                self.queue.done(key)
                if key in self._first:
                    self._first.discard(key)
                    self._check_ready()

    async def _process(self, key: stores.Key) -> None:
        if not self.may_act():
            return  # a standby replica: re-enqueued on election
        started = time.monotonic()
        try:
            result = await self._in_thread(_name(key), self.syncer.sync, key, should_stop=lambda: not self.may_act())
        except Exception as error:  # the store itself failed (API down): back off
            delay = self.queue.fail(key)
            log.warning(
                "group %s: %s (retrying in %.2gs)",
                _name(key),
                _one_line(error),
                delay,
                extra=logs.fields(key, error=_one_line(error), delay=delay),
            )
            return
        self.synced += 1
        result = dataclasses.replace(result, elapsed=time.monotonic() - started)
        if self.on_result is not None:
            try:
                self.on_result(result)
            except Exception:
                log.exception("on_result failed")
        if result.gone:
            self.queue.drop(key)
        elif result.failure is not None:
            if result.retry:
                self.queue.fail(key)
            else:  # an invalid spec waits for a change; a plugin's verdict is asked again now and then
                self.queue.add(key, after=self.resync)
        else:
            self.queue.forget(key)
            after = result.requeue_after
            self.queue.add(key, after=self.period(key) if after is None else after)

    def _in_thread(self, what: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        """``call`` in a daemon thread of its own; its future counts as in flight until it ends."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        done = threading.Event()
        self._inflight[done] = what

        def settle(result: Any, error: BaseException | None) -> None:
            if not future.done():
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(result)

        context = contextvars.copy_context()  # as to_thread does

        def target() -> None:
            try:
                result, error = context.run(call, *args, **kwargs), None
            except BaseException as exc:  # handed to the awaiting task, as to_thread does
                result, error = None, exc
            finally:
                done.set()
                self._inflight.pop(done, None)
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody awaits it any more
                loop.call_soon_threadsafe(settle, result, error)

        threading.Thread(target=target, name=f"sync {what}", daemon=True).start()
        return future

    async def drain(self, grace: float) -> list[str]:
        """Wait up to ``grace`` seconds for the syncs in flight (they stop between instance
        operations once acting is off); the groups of those still running, stuck in a plugin call."""
        deadline = time.monotonic() + grace
        while self._inflight and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return sorted(self._inflight.copy().values())  # a copy: threads remove theirs meanwhile

    def period(self, key: stores.Key) -> float:
        """Seconds until ``key`` is synced again if nothing wakes it earlier (see the module docstring)."""
        plugin = self.owners.plugin_of(key)
        watched = plugin is not None and id(plugin) in self._watched
        return (self.resync if watched else self.poll) * random.uniform(0.9, 1.1)

    async def _resync(self) -> None:
        """Collect now, then every ``resync`` seconds, and whenever this replica is elected."""
        self._collect_soon = asyncio.Event()
        while True:
            if self.store.collects_garbage and self.may_act():
                await self._in_thread("collection", self.collect)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._collect_soon.wait(), self.resync)
            self._collect_soon.clear()

    def collect(self) -> int:
        """Collect the dangling instances from every plugin this process may have used."""
        found = {id(p): p for p in self.registry.instance_plugins()}
        try:
            names = self.discover()
        except Exception as error:
            log.warning("cannot list the instance plugins to collect from: %s", _one_line(error))
            names = []
        for name in names:
            try:
                plugin = self.registry.instance(name)
            except Exception as error:
                log.warning("instance plugin %s: %s", name, _one_line(error), extra=logs.fields(error=_one_line(error)))
                continue
            found.setdefault(id(plugin), plugin)
        destroyed = 0
        for plugin in found.values():
            try:
                destroyed += self.syncer.collect_dangling(plugin)
            except Exception as error:
                log.warning(
                    "collecting dangling instances from %s failed: %s",
                    getattr(plugin, "name", "a plugin"),
                    _one_line(error),
                    extra=logs.fields(error=_one_line(error)),
                )
        log.debug("collection pass: %d instance plugins, %d dangling instances destroyed", len(found), destroyed)
        return destroyed

    async def _feed_store(self) -> None:
        changes = self.store.changes()
        if changes is None:
            return
        async for key in changes:
            if key is None:
                self.enqueue_all()
            else:
                self.queue.add(key)

    # -- instance plugins' change feeds -------------------------------------------------------

    def _plugin_made(self, plugin: plugins.InstancePlugin) -> None:
        """Called by the registry, maybe from a worker thread."""
        if self._loop is None or not isinstance(plugin, plugins.Watching):
            return
        self._loop.call_soon_threadsafe(self._watch, plugin)

    def _watch(self, plugin: plugins.Watching) -> None:
        if id(plugin) in self._watched:
            return
        self._watched.add(id(plugin))
        self._spawn(self._feed_instances(plugin), f"watch-{getattr(plugin, 'name', 'plugin')}")

    async def _feed_instances(self, plugin: plugins.Watching) -> None:
        try:
            async for changed in plugin.changes():
                if changed is None:  # anything may have changed (the feed (re)started, or broke)
                    for key in self.owners.using(plugin) or self._all_keys():
                        self.queue.add(key)
                    continue
                owners = {self.owners.owner(i) for i in changed}
                if None in owners:
                    self.enqueue_all()
                    continue
                for owner in owners:
                    if owner is not None:
                        self.queue.add(owner)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.error("the change feed of plugin %s failed: %s", getattr(plugin, "name", "?"), _one_line(error))
        finally:
            self._watched.discard(id(plugin))

    def _all_keys(self) -> list[stores.Key]:
        try:
            return self.store.keys()
        except Exception as error:
            log.warning("cannot list the groups: %s", _one_line(error))
            return []


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def _name(key: stores.Key) -> str:
    return f"{key[0]}/{key[1]}" if key[0] else key[1]
