"""The one broker (``infrakit.rpc.broker``): the topic matcher, ``Event.List``'s children, what a
subscriber that fell behind is told, in each kind of topic's words, on the wire.

In: a broker with a fixed clock, subscriptions too small for what is published.  Out: the event
JSON a stream sends (the server writes ``json.dumps(event, separators=(",", ":"))``), byte for byte.
"""

from __future__ import annotations

import json

from infrakit.rpc import broker, wire
from infrakit.runtime import events


def on_the_wire(taken: list[dict[str, object]]) -> list[str]:
    return [json.dumps(event, separators=(",", ":")) for event in taken]


def test_one_matcher_a_topic_and_everything_under_it() -> None:
    assert broker.matches("", "web/instance/lost")
    assert broker.matches("web", "web/instance/lost") and broker.matches("web/instance/lost", "web/instance/lost")
    assert not broker.matches("web", "web2/instance/lost") and not broker.matches("web/instance/lost", "web")
    assert events.matches is broker.matches


def test_children_are_one_level_under_the_path() -> None:
    topics = ["web/instance/lost", "web/error", "db/error", "instance/changes"]
    assert broker.children(topics, ()) == ["db", "instance", "web"]
    assert broker.children(topics, ("web",)) == ["error", "instance"]
    assert broker.children(topics, ("web", "error")) == []


def test_a_change_feed_subscriber_that_fell_behind_is_told_to_list_everything() -> None:
    """In the words the change feeds' broker used before the brokers were one: ``{"All": true}`` on the topic,
    stamped as the newest event it replaces, and nothing else of that topic."""
    stamps = iter(f"2026-01-02T03:04:05.{n:06d}Z" for n in range(100))
    hub = broker.Broker(capacity=4, clock=lambda: next(stamps))
    hub.declare(wire.CHANGES_TOPIC, resync=wire.CHANGED_ALL)
    behind = hub.subscribe([""])
    for n in range(10):
        hub.publish(wire.CHANGES_TOPIC, type="change", data={"IDs": [f"instance-{n}"]})
    assert on_the_wire(behind.take()) == [
        '{"Topic":"instance/changes","Type":"change","ID":"10","Timestamp":"2026-01-02T03:04:05.000009Z",'
        '"Data":{"All":true}}'
    ]
    assert behind.dropped == 6 == hub.dropped
    hub.publish(wire.CHANGES_TOPIC, type="change", data={"IDs": ["instance-10"]})
    assert json.loads(on_the_wire(behind.take())[0])["Data"] == {"IDs": ["instance-10"]}  # caught up


def test_a_runtime_subscriber_that_fell_behind_gets_the_newest_and_a_count_of_the_rest() -> None:
    hub = events.Broker(capacity=3, clock=lambda: "T")
    behind = hub.subscribe(["web"])
    for n in range(5):
        hub.publish("web/instance/provisioned", type="Provisioned", data={"N": n})
    wired = [json.loads(text) for text in on_the_wire(behind.take())]
    assert [e["Data"] for e in wired[:3]] == [{"N": 2}, {"N": 3}, {"N": 4}]
    assert [e["ID"] for e in wired[:3]] == ["3", "4", "5"]
    assert {k: v for k, v in wired[3].items() if k != "Timestamp"} == {
        "Topic": "web",
        "Type": "dropped",
        "ID": "",
        "Data": {"Dropped": 2},
    }
    assert list(wired[3]) == ["Topic", "Type", "ID", "Timestamp", "Data"]
    hub.publish("web/error", type="error", data={})
    assert [e["Type"] for e in behind.take()] == ["error"]  # told once


def test_the_stamps_keep_their_precision() -> None:
    """The runtime's events to the millisecond, a plugin's change events as Python's isoformat."""
    assert len(broker.milliseconds()) == len("2026-01-02T03:04:05.123Z")
    assert broker.microseconds().endswith("Z") and "+" not in broker.microseconds()
    assert events.Broker().clock is broker.milliseconds
