"""The group runtime's events: its topics on the one broker (InfraKit's Event SPI, ``Event/0.1.0``).

The sync (:mod:`infrakit.runtime.syncing`) publishes what it did and saw, from what it
already computes (its steps, the instances found lost, the members' health, failures),
on topics relative to the group plugin, as an InfraKit plugin's broker names them
(InfraKit's CLI shows them under the plugin's name: ``group/cattle/instance/lost``):

* ``<group>/instance/provisioned|destroyed|lost|unhealthy``: one event per instance,
  ``Data`` naming it (``InstanceID``, ``LogicalID``) and why (``Reason``);
* ``<group>/update/started|progress|completed``: a rolling update to a new config;
* ``<group>/error``: a failed sync (once per distinct failure), ``Data.Reason`` and ``Message``.

The broker is :mod:`infrakit.rpc.broker`'s, the one that also carries the plugins'
change feeds: each subscriber (the group daemon's ``/events`` streams, tests) has a
bounded buffer, ``publish`` never waits for one (a slow or vanished subscriber never
slows a sync), and when a buffer is full its oldest event is dropped and counted
(``dropped``, the subscription's and the broker's).  Here: the topics a group
publishes, which topics may be subscribed to before a group exists, and the stamps
(milliseconds).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, Protocol

from infrakit.core import specs
from infrakit.rpc import broker
from infrakit.rpc.broker import CAPACITY, Event, Subscription, matches

__all__ = [
    "CAPACITY",
    "TOPICS",
    "Broker",
    "Event",
    "Publisher",
    "Subscription",
    "accepts",
    "group_topics",
    "matches",
]

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


def accepts(topic: str) -> bool:
    """Whether a subscription to ``topic`` makes sense before anything is published there:
    any group's topics (a tail may start before the group is committed)."""
    name, _, rest = topic.strip("/").partition("/")
    try:
        specs.validate_name(name, field="group")
    except specs.SpecError:
        return False
    return not rest or any(matches(rest, t) for t in TOPICS)


class Publisher(Protocol):
    """What the sync publishes to (a :class:`Broker`)."""

    def publish(self, topic: str, *, type: str, data: Mapping[str, Any]) -> Event | None:
        """Publish without blocking on any subscriber."""
        ...


class Broker(broker.Broker):
    """The runtime's broker: :class:`infrakit.rpc.broker.Broker` accepting any group's topics, stamped
    to the millisecond.  ``catalog`` gives the topics known before anything is published."""

    def __init__(
        self,
        *,
        capacity: int = CAPACITY,
        catalog: Callable[[], Iterable[str]] | None = None,
        clock: Callable[[], str] = broker.milliseconds,
    ) -> None:
        super().__init__(capacity=capacity, catalog=catalog, accepts=accepts, clock=clock)
