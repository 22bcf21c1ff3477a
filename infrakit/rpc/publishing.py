"""A daemon's events on the wire, as InfraKit's event broker serves them (aiohttp; daemons only).

``Event.List`` (the topics) and ``GET /events?topic=...``: a server-sent event stream
(``data: <event JSON>`` and a blank line per event) of one subscription to the daemon's
:class:`~infrakit.rpc.broker.Broker`, the one broker of its events: the group runtime's
(``infrakit.runtime.events``, given by a service), and the change feeds of a service
(an instance plugin that reports changes publishes them on
:data:`infrakit.rpc.wire.CHANGES_TOPIC`), pumped into it here.  :mod:`infrakit.rpc.server`
mounts it.  Streams are bounded (:mod:`infrakit.rpc.guarding`): so many at once, and a
subscriber that stops reading is let go.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Final

from aiohttp import web

from infrakit.rpc import broker, guarding, wire

__all__ = ["Publishing"]

log = logging.getLogger(__name__)

_RESTART: Final = 1.0  # seconds before a change feed that ended or failed is started again


class Publishing:
    """The event endpoint of a daemon: ``broker`` (a fresh one if None) and the change ``feeds``
    published on it (topic -> a feed whose items are each one event's ``Data``)."""

    def __init__(
        self, feeds: Mapping[str, Callable[[], AsyncIterator[Any]]], *, events: broker.Broker | None = None
    ) -> None:
        self.feeds = dict(feeds)
        self.broker = events if events is not None else broker.Broker(clock=broker.microseconds)
        for topic in self.feeds:
            self.broker.declare(topic, resync=wire.CHANGED_ALL)
        self._tasks: list[asyncio.Task[None]] = []
        self._streams: set[asyncio.Event] = set()  # each stream's wake-up
        self._closing = False

    def listing(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """``Event.List``: the children of ``params["Topic"]`` among the topics published."""
        path = wire.path_from_wire(wire.field(params, "Topic"), "Topic")
        return {"Nodes": wire.go_list(broker.children(self.broker.topics(), path))}

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
        self._closing = True
        for woken in self._streams:
            woken.set()  # each stream sees it is closing, and ends

    async def _pump(self, topic: str, feed: Callable[[], AsyncIterator[Any]]) -> None:
        while True:
            try:
                async for data in feed():
                    self.broker.publish(topic, type="change", data=data)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.error("the change feed of %s failed: %s (restarting it)", topic, error)
            self.broker.publish(topic, type="change", data=wire.CHANGED_ALL)
            await asyncio.sleep(_RESTART)

    async def stream(self, request: web.Request) -> web.StreamResponse:
        wanted = "/".join(wire.path_from_wire(request.query.get("topic", ""), "topic"))
        topics = self.broker.topics()
        known = any(broker.matches(wanted, t) for t in topics)
        if wanted and not known and not self.broker.accepts(wanted):
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

        async def send(event: Mapping[str, Any]) -> None:
            data = f"data: {json.dumps(event, separators=(',', ':'))}\n\n".encode()
            try:
                await asyncio.wait_for(response.write(data), timeout)
            except TimeoutError:
                # Its buffers are full: a subscriber that stopped reading holds memory and a
                # connection for nothing. Aborted, not closed: a close waits for the buffer.
                log.info("an event stream's subscriber stopped reading for %g s: closed", timeout)
                if request.transport is not None:
                    request.transport.abort()
                raise ConnectionResetError from None

        loop = asyncio.get_running_loop()
        woken = asyncio.Event()

        def wake() -> None:  # from a sync's thread, or the loop's: hand over to the loop, never wait
            with contextlib.suppress(RuntimeError):  # the loop is closed: the stream is over
                loop.call_soon_threadsafe(woken.set)

        subscription = self.broker.subscribe([wanted], wake=wake)
        self._streams.add(woken)
        try:
            await response.prepare(request)  # the headers now: the client knows it is subscribed
            while not self._closing:
                await woken.wait()
                woken.clear()
                for event in subscription.take():
                    await send(event)
        except ConnectionResetError:
            pass  # the subscriber left
        finally:
            self._streams.discard(woken)
            subscription.close()
        return response
