"""Events published by a plugin daemon, as InfraKit's event broker does (aiohttp; daemons only).

``Event.List`` (the topics) and ``GET /events?topic=...``: a server-sent event stream
(``data: <event JSON>`` and a blank line per event).  Two sources feed it: change feeds
of a service (an instance plugin that reports changes publishes them on
:data:`infrakit.rpc.wire.CHANGES_TOPIC`), and an :class:`EventSource` (the group
runtime's broker, ``infrakit.runtime.events``).  :mod:`infrakit.rpc.server` mounts it.
Streams are bounded (:mod:`infrakit.rpc.guarding`): so many at once, and a subscriber
that stops reading is let go.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import itertools
import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Final

from aiohttp import web

from infrakit.rpc import guarding, wire
from infrakit.rpc.services import EventSource, EventSubscription, WireEvent

__all__ = ["Broker", "EventSource", "EventSubscription", "WireEvent"]

log = logging.getLogger(__name__)


_QUEUED: Final = 1024  # events kept per subscriber; beyond, it gets one "anything changed"


class Broker:
    """Change feeds published as InfraKit's broker does: SSE per topic (``/events?topic=``).

    A topic ``a/b`` subscribes to ``a/b`` and every topic under it; the root (``""`` or
    ``.``) to all.  A subscriber that falls behind gets ``{"All": true}`` instead of the
    events it missed: it lists everything again, which is always correct.
    """

    def __init__(
        self, feeds: Mapping[str, Callable[[], AsyncIterator[Any]]], *, source: EventSource | None = None
    ) -> None:
        self.feeds = dict(feeds)
        self.source = source
        self._subscribers: dict[asyncio.Queue[str], str] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._ids = itertools.count(1)

    def topics(self) -> list[str]:
        return sorted({*self.feeds, *(self.source.topics() if self.source is not None else ())})

    def listing(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """``Event.List``: the children of ``params["Topic"]`` among the topics published."""
        topics = self.topics()
        path = wire.path_from_wire(wire.field(params, "Topic"), "Topic")
        depth = len(path)
        children = {
            tuple(t.split("/"))[depth]
            for t in topics
            if tuple(t.split("/"))[:depth] == path and len(t.split("/")) > depth
        }
        return {"Nodes": wire.go_list(sorted(children))}

    async def start(self, app: web.Application) -> None:
        for topic, feed in self.feeds.items():
            self._tasks.append(asyncio.ensure_future(self._pump(topic, feed)))

    async def stop(self, app: web.Application) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        for queue in list(self._subscribers):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait("")  # wakes the stream, which ends
        self._subscribers.clear()

    async def _pump(self, topic: str, feed: Callable[[], AsyncIterator[Any]]) -> None:
        while True:
            try:
                async for data in feed():
                    self.publish(topic, data)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.error("the change feed of %s failed: %s (restarting it)", topic, error)
            self.publish(topic, {"All": True})
            await asyncio.sleep(1.0)

    def publish(self, topic: str, data: Any) -> None:
        event = {
            "Topic": topic,
            "Type": "change",
            "ID": str(next(self._ids)),
            "Timestamp": datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z"),
            "Data": data,
        }
        text = json.dumps(event, separators=(",", ":"))
        for queue, wanted in list(self._subscribers.items()):
            if wanted and topic != wanted and not topic.startswith(f"{wanted}/"):
                continue
            try:
                queue.put_nowait(text)
            except asyncio.QueueFull:
                _drain(queue)
                behind = {**event, "Data": {"All": True}}
                queue.put_nowait(json.dumps(behind, separators=(",", ":")))

    async def stream(self, request: web.Request) -> web.StreamResponse:
        wanted = "/".join(wire.path_from_wire(request.query.get("topic", ""), "topic"))
        topics = self.topics()
        known = any(t == wanted or t.startswith(f"{wanted}/") for t in topics)
        if wanted and not known and not (self.source is not None and self.source.accepts(wanted)):
            return web.Response(status=404, text=f"invalid topic: {wanted} (known: {', '.join(topics)})")
        gate = request.app.get(guarding.GATE)
        if gate is None:
            gate = guarding.Gate(guarding.Limits())
        if gate.streams >= gate.max_streams:
            # Each stream holds a connection for ever: a bound, so that calls always find room.
            return web.Response(status=503, text=f"rpc: too many event streams ({gate.max_streams}); retry later")
        gate.streams += 1
        try:
            with gate.busy(request):
                return await self._stream(request, wanted, timeout=gate.limits.write)
        finally:
            gate.streams -= 1

    async def _stream(self, request: web.Request, wanted: str, *, timeout: float) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "Connection": "keep-alive"}
        )

        async def send(data: bytes) -> None:
            try:
                await asyncio.wait_for(response.write(data), timeout)
            except TimeoutError:
                # Its buffers are full: a subscriber that stopped reading holds memory and a
                # connection for nothing. Aborted, not closed: a close waits for the buffer.
                log.info("an event stream's subscriber stopped reading for %g s: closed", timeout)
                if request.transport is not None:
                    request.transport.abort()
                raise ConnectionResetError from None

        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=_QUEUED)
        self._subscribers[queue] = wanted
        subscription: EventSubscription | None = None
        if self.source is not None:
            loop = asyncio.get_running_loop()

            def wake() -> None:  # from a sync's thread: hand over to the loop, never wait
                loop.call_soon_threadsafe(_nudge, queue)

            subscription = self.source.subscribe([wanted], wake=wake)
        reported = 0
        try:
            await response.prepare(request)  # the headers now: the client knows it is subscribed
            while True:
                text = await queue.get()
                if not text:
                    break
                if text != _WAKE:
                    await send(f"data: {text}\n\n".encode())
                    continue
                if subscription is None:
                    continue
                for event in subscription.drain():
                    await send(f"data: {json.dumps(event.to_wire(), separators=(',', ':'))}\n\n".encode())
                if subscription.dropped > reported:
                    # Said in the stream, so that a tail can say it too: the subscriber was too slow.
                    notice = {
                        "Topic": wanted or ".",
                        "Type": "dropped",
                        "ID": "",
                        "Timestamp": datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z"),
                        "Data": {"Dropped": subscription.dropped - reported},
                    }
                    reported = subscription.dropped
                    await send(f"data: {json.dumps(notice, separators=(',', ':'))}\n\n".encode())
        except ConnectionResetError:
            pass  # the subscriber left
        finally:
            self._subscribers.pop(queue, None)
            if subscription is not None:
                subscription.close()
        return response


_WAKE: Final = "\x00"  # queued for a stream when its event subscription has events


def _nudge(queue: asyncio.Queue[str]) -> None:
    with contextlib.suppress(asyncio.QueueFull):  # a full queue is being drained anyway
        queue.put_nowait(_WAKE)


def _drain(queue: asyncio.Queue[str]) -> None:
    while True:
        try:
            queue.get_nowait()
        except asyncio.QueueEmpty:
            return
