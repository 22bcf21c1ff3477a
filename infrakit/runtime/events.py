"""The group runtime's events: a small in-process broker (InfraKit's Event SPI, ``Event/0.1.0``).

The sync (:mod:`infrakit.runtime.syncing`) publishes what it did and saw, from what it
already computes (its steps, the instances found lost, the members' health, failures),
on topics relative to the group plugin, as an InfraKit plugin's broker names them
(InfraKit's CLI shows them under the plugin's name: ``group/cattle/instance/lost``):

* ``<group>/instance/provisioned|destroyed|lost|unhealthy``: one event per instance,
  ``Data`` naming it (``InstanceID``, ``LogicalID``) and why (``Reason``);
* ``<group>/update/started|progress|completed``: a rolling update to a new config;
* ``<group>/error``: a failed sync (once per distinct failure), ``Data.Reason`` and ``Message``.

Subscribers (the group daemon's ``/events`` streams, tests) each get a bounded buffer:
``publish`` never waits for one, so a slow or vanished subscriber never slows a sync;
when a buffer is full its oldest event is dropped and the subscription's ``dropped``
counter (and the broker's) says how many were lost.  Thread-safe: syncs run in worker
threads, subscribers in an event loop (their ``wake`` callback must not block: the
server's hands the wake-up to its loop).
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import itertools
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final, Protocol

from infrakit.core import specs

__all__ = [
    "CAPACITY",
    "TOPICS",
    "Broker",
    "Event",
    "Publisher",
    "Subscription",
    "group_topics",
    "matches",
]

CAPACITY: Final = 1024
"""Events kept per subscriber before the oldest are dropped."""

TOPICS: Final = (
    "instance/provisioned",
    "instance/destroyed",
    "instance/lost",
    "instance/unhealthy",
    "update/started",
    "update/progress",
    "update/completed",
    "error",
)
"""The topics every group publishes, under its name."""


def group_topics(name: str) -> list[str]:
    """The topics group ``name`` publishes (``cattle/instance/lost``...)."""
    return [f"{name}/{topic}" for topic in TOPICS]


def matches(wanted: str, topic: str) -> bool:
    """Whether a subscription to ``wanted`` receives ``topic``: itself and everything under it; ``""`` all."""
    return not wanted or topic == wanted or topic.startswith(f"{wanted}/")


def _timestamp() -> str:
    # Milliseconds: a heal takes a fraction of a second, and tails compare them.
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


class Publisher(Protocol):
    """What the sync publishes to (a :class:`Broker`)."""

    def publish(self, topic: str, *, type: str, data: Mapping[str, Any]) -> Event | None:
        """Publish without blocking on any subscriber."""
        ...


class Subscription:
    """One subscriber's bounded buffer of events, on some topics (and everything under them)."""

    def __init__(
        self, *, broker: Broker, topics: Sequence[str], capacity: int, wake: Callable[[], None] | None
    ) -> None:
        self.broker = broker
        self.topics = tuple(t.strip("/") for t in topics) or ("",)
        self.capacity = max(1, capacity)
        self.dropped = 0
        self._wake = wake
        self._buffer: collections.deque[Event] = collections.deque()
        self._lock = threading.Lock()
        self._ready = threading.Event()

    def wants(self, topic: str) -> bool:
        return any(matches(wanted, topic) for wanted in self.topics)

    def offer(self, event: Event) -> bool:
        """Buffer ``event``; ``False`` if an older one had to be dropped for it."""
        with self._lock:
            kept = len(self._buffer) < self.capacity
            if not kept:
                self._buffer.popleft()
                self.dropped += 1
            self._buffer.append(event)
            self._ready.set()
        if self._wake is not None:
            self._wake()
        return kept

    def drain(self) -> list[Event]:
        """The events buffered so far (and forget them); never blocks."""
        with self._lock:
            taken = list(self._buffer)
            self._buffer.clear()
            self._ready.clear()
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


class Broker:
    """Publishes events to the subscriptions that want them; see the module docstring.

    ``catalog`` gives the topics known before anything is published (every group's, so
    that ``event ls`` shows them from the start); published topics are added to them.
    """

    def __init__(
        self,
        *,
        capacity: int = CAPACITY,
        catalog: Callable[[], Iterable[str]] | None = None,
        clock: Callable[[], str] = _timestamp,
    ) -> None:
        self.capacity = capacity
        self.catalog = catalog
        self.clock = clock
        self.dropped = 0  # events dropped for slow subscribers, all told
        self.published = 0
        self._subscriptions: list[Subscription] = []
        self._seen: set[str] = set()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

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
        """Whether a subscription to ``topic`` makes sense before anything is published there:
        any group's topics (a tail may start before the group is committed)."""
        name, _, rest = topic.strip("/").partition("/")
        try:
            specs.validate_name(name, field="group")
        except specs.SpecError:
            return False
        return not rest or any(matches(rest, t) for t in TOPICS)

    def topics(self) -> list[str]:
        """Every topic known: the catalog's and those published so far."""
        known = set(self.catalog()) if self.catalog is not None else set()
        with self._lock:
            known |= self._seen
        return sorted(known)
