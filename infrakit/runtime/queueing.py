"""A work queue of group keys, as client-go's workqueue: deduplicated, one worker per key.

Watch events, change notifications and the resync timer only *add keys*; workers take
a key, sync that group from its latest state, and mark it done.  A key added while it
is being processed is processed again afterwards, never twice at once.  Delayed adds
implement requeue-after; :meth:`WorkQueue.fail` gives each key its own exponential
backoff (reset by :meth:`WorkQueue.forget` after a success), as client-go's
rate-limiting queue does.

Single event loop: every method but :meth:`WorkQueue.add_threadsafe` must be called from
the loop that runs :meth:`WorkQueue.get`.
"""

from __future__ import annotations

import asyncio
from typing import Final, Generic, TypeVar

__all__ = ["BACKOFF_BASE", "BACKOFF_MAX", "WorkQueue"]

K = TypeVar("K")

BACKOFF_BASE: Final = 0.25
BACKOFF_MAX: Final = 30.0


class WorkQueue(Generic[K]):
    def __init__(self, *, base: float = BACKOFF_BASE, cap: float = BACKOFF_MAX) -> None:
        self._queue: asyncio.Queue[K] = asyncio.Queue()
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        self._timers: dict[K, asyncio.TimerHandle] = {}
        self._failures: dict[K, int] = {}
        self._base = base
        self._cap = cap
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    def add(self, key: K, *, after: float = 0.0) -> None:
        """Queue ``key`` now, or in ``after`` seconds (the earliest of several wins)."""
        if self._closed:
            return
        loop = self._loop = self._loop or asyncio.get_running_loop()
        if after > 0:
            timer = self._timers.get(key)
            when = loop.time() + after
            if timer is not None:
                if timer.when() <= when:
                    return
                timer.cancel()
            self._timers[key] = loop.call_at(when, self._fire, key)
            return
        if key in self._dirty:
            return
        self._dirty.add(key)
        if key not in self._processing:
            self._queue.put_nowait(key)

    def add_threadsafe(self, key: K) -> None:
        """:meth:`add` from another thread (a plugin's callback, say)."""
        if self._loop is not None and not self._closed:
            self._loop.call_soon_threadsafe(self.add, key)

    def fail(self, key: K) -> float:
        """Count a failure of ``key``; requeue it after its backoff; return the delay."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        delay = float(min(self._cap, self._base * (2**failures)))
        self.add(key, after=delay)
        return delay

    def forget(self, key: K) -> None:
        """``key`` succeeded: its next failure starts the backoff again."""
        self._failures.pop(key, None)

    def failures(self, key: K) -> int:
        return self._failures.get(key, 0)

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self.add(key)

    async def get(self) -> K:
        self._loop = self._loop or asyncio.get_running_loop()
        key = await self._queue.get()
        self._dirty.discard(key)
        self._processing.add(key)
        return key

    def done(self, key: K) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.put_nowait(key)

    def drop(self, key: K) -> None:
        """Forget everything about ``key`` (its group is gone)."""
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        self._failures.pop(key, None)

    def __len__(self) -> int:
        return len(self._dirty)

    @property
    def busy(self) -> bool:
        """Keys queued, being processed or waiting on a timer."""
        return bool(self._dirty or self._processing or self._timers)

    def close(self) -> None:
        self._closed = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
