"""The one event broker: topics, bounded subscriptions, one overflow rule (standard library only).

InfraKit's event model (``pkg/broker``): an event (``Topic``, ``Type``, ``ID``,
``Timestamp``, ``Data``) is published on a topic, a path (``cattle/instance/lost``); a
subscription to a topic receives it and everything under it, the root (``""``) all
(:func:`matches`, the one topic matcher).  One :class:`Broker` serves both sources of
events: the group runtime's (:mod:`infrakit.runtime.events` publishes a sync's news on
it, from worker threads) and a plugin's change feeds (:mod:`infrakit.rpc.publishing`
pumps them into it); the daemons' ``/events`` streams read its subscriptions.

``publish`` never waits for a subscriber: each subscription holds at most ``capacity``
events, and when it is full the oldest goes and is counted (the one overflow rule).  A
stream tells its subscriber what it lost (:meth:`Subscription.take`), in the words of
the topic: on a topic declared with ``resync`` words (a change feed's ``{"All": true}``,
"anything may have changed"), its events still held are replaced by one event carrying
those words; elsewhere a ``dropped`` notice counts what was lost.  Thread-safe; a
subscription's ``wake`` is called, from the publishing thread, whenever it gets an
event (it must not block: a server hands it to its event loop).
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import itertools
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final

__all__ = [
    "CAPACITY",
    "Broker",
    "Event",
    "Subscription",
    "children",
    "matches",
    "microseconds",
    "milliseconds",
]

CAPACITY: Final = 1024
"""Events kept per subscriber before the oldest are dropped."""


def matches(wanted: str, topic: str) -> bool:
    """Whether a subscription to ``wanted`` receives ``topic``: itself and everything under it; ``""`` all."""
    return not wanted or topic == wanted or topic.startswith(f"{wanted}/")


def children(topics: Iterable[str], path: Sequence[str]) -> list[str]:
    """The names one level under ``path`` among ``topics`` (``Event.List``), sorted."""
    depth = len(path)
    found = set()
    for topic in topics:
        parts = topic.split("/")
        if len(parts) > depth and parts[:depth] == list(path):
            found.add(parts[depth])
    return sorted(found)


def microseconds() -> str:
    """Now, as a plugin's change events are stamped (Python's ``isoformat``: microseconds unless 0)."""
    return datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")


def milliseconds() -> str:
    """Now, to the millisecond (the runtime's events: a heal takes a fraction of a second, and tails compare)."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Event:
    """One event, as InfraKit's ``event.Event`` (``Topic``, ``Type``, ``ID``, ``Timestamp``, ``Data``)."""

    topic: str
    type: str
    id: str
    time: str
    data: Mapping[str, Any]

    def to_wire(self) -> dict[str, Any]:
        return {"Topic": self.topic, "Type": self.type, "ID": self.id, "Timestamp": self.time, "Data": dict(self.data)}


class Subscription:
    """One subscriber's bounded buffer of events, on some topics (and everything under them)."""

    def __init__(
        self, *, broker: Broker, topics: Sequence[str], capacity: int, wake: Callable[[], None] | None
    ) -> None:
        self.broker = broker
        self.topics = tuple(t.strip("/") for t in topics) or ("",)
        self.capacity = max(1, capacity)
        self.dropped = 0  # all told
        self._wake = wake
        self._buffer: collections.deque[Event] = collections.deque()
        self._lost: dict[str, tuple[int, Event]] = {}  # topic -> (dropped since taken, the last of them)
        self._lock = threading.Lock()
        self._ready = threading.Event()

    def wants(self, topic: str) -> bool:
        return any(matches(wanted, topic) for wanted in self.topics)

    def offer(self, event: Event) -> bool:
        """Buffer ``event``; ``False`` if an older one had to be dropped for it."""
        with self._lock:
            kept = len(self._buffer) < self.capacity
            if not kept:
                old = self._buffer.popleft()
                self.dropped += 1
                self._lost[old.topic] = (self._lost.get(old.topic, (0, old))[0] + 1, old)
            self._buffer.append(event)
            self._ready.set()
        if self._wake is not None:
            self._wake()
        return kept

    def drain(self) -> list[Event]:
        """The events buffered so far (and forget them); never blocks."""
        return self._take()[0]

    def take(self) -> list[dict[str, Any]]:
        """The events buffered so far as InfraKit's event JSON, with what was lost told (see the module)."""
        events, lost = self._take()
        resync = self.broker.resync
        replaced: dict[str, Event] = {}  # topic -> the newest of its events, lost or held
        for topic, (_, last) in lost.items():
            if topic in resync:
                replaced[topic] = last
        for event in events:
            if event.topic in replaced:
                replaced[event.topic] = event
        taken = [{**last.to_wire(), "Data": dict(resync[topic])} for topic, last in replaced.items()]
        taken += [event.to_wire() for event in events if event.topic not in replaced]
        dropped = sum(count for topic, (count, _) in lost.items() if topic not in resync)
        if dropped:
            # Said in the stream, so that a tail can say it too: the subscriber was too slow.
            wanted = self.topics[0] if len(self.topics) == 1 else ""
            notice = {"Topic": wanted or ".", "Type": "dropped", "ID": "", "Timestamp": microseconds()}
            taken.append({**notice, "Data": {"Dropped": dropped}})
        return taken

    def get(self, *, timeout: float | None = None) -> list[Event]:
        """The events buffered, waiting up to ``timeout`` seconds for one (for threads and tests)."""
        self._ready.wait(timeout)
        return self.drain()

    def close(self) -> None:
        self.broker.unsubscribe(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _take(self) -> tuple[list[Event], dict[str, tuple[int, Event]]]:
        with self._lock:
            taken = list(self._buffer)
            self._buffer.clear()
            self._ready.clear()
            lost, self._lost = self._lost, {}
        return taken, lost


class Broker:
    """Publishes events to the subscriptions that want them; see the module docstring.

    ``catalog`` gives the topics known before anything is published (every group's, so
    that ``event ls`` shows them from the start); declared and published topics are added
    to them.  ``accepts`` says whether a topic none of them is under may be subscribed to
    (a group not committed yet); ``clock`` stamps each event.
    """

    def __init__(
        self,
        *,
        capacity: int = CAPACITY,
        catalog: Callable[[], Iterable[str]] | None = None,
        accepts: Callable[[str], bool] | None = None,
        clock: Callable[[], str] = milliseconds,
    ) -> None:
        self.capacity = capacity
        self.catalog = catalog
        self.clock = clock
        self.resync: dict[str, Mapping[str, Any]] = {}  # topic -> the words that tell a subscriber to list again
        self.dropped = 0  # events dropped for slow subscribers, all told
        self.published = 0
        self._accepts = accepts
        self._subscriptions: list[Subscription] = []
        self._seen: set[str] = set()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def declare(self, topic: str, *, resync: Mapping[str, Any] | None = None) -> None:
        """Make ``topic`` known before anything is published on it; ``resync``: see the module docstring."""
        with self._lock:
            self._seen.add(topic)
            if resync is not None:
                self.resync[topic] = resync

    def publish(self, topic: str, *, type: str, data: Mapping[str, Any]) -> Event:
        event = Event(topic=topic.strip("/"), type=type, id=str(next(self._ids)), time=self.clock(), data=data)
        with self._lock:
            self._seen.add(event.topic)
            self.published += 1
            wanting = [s for s in self._subscriptions if s.wants(event.topic)]
        for subscription in wanting:
            if not subscription.offer(event):
                with self._lock:
                    self.dropped += 1
        return event

    def subscribe(
        self, topics: Sequence[str] = ("",), *, capacity: int | None = None, wake: Callable[[], None] | None = None
    ) -> Subscription:
        """A subscription to ``topics`` (``""``: all); close it when done."""
        subscription = Subscription(
            broker=self, topics=topics, capacity=capacity if capacity is not None else self.capacity, wake=wake
        )
        with self._lock:
            self._subscriptions.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            if subscription in self._subscriptions:
                self._subscriptions.remove(subscription)

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._subscriptions)

    def accepts(self, topic: str) -> bool:
        """Whether a subscription to ``topic`` makes sense though no topic known is under it (yet)."""
        return self._accepts is not None and self._accepts(topic)

    def topics(self) -> list[str]:
        """Every topic known: the catalog's, and those declared or published so far."""
        known = set(self.catalog()) if self.catalog is not None else set()
        with self._lock:
            known |= self._seen
        return sorted(known)
