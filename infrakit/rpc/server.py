"""Serving plugin objects over InfraKit's plugin protocol (aiohttp; daemons only).

A :class:`Service` is one interface (``Instance/0.5.0``...) bound to one of our plugin
objects: a table of JSON-RPC methods, each decoding its Go-shaped params
(:mod:`infrakit.rpc.wire`), calling the plugin in a worker thread (plugin calls block:
the event loop never does), and encoding the answer.  :func:`make_app` puts services
behind one HTTP endpoint answering as InfraKit v0.5's Go server (gorilla/rpc json2)
does: HTTP 200 with a JSON-RPC error object (code -32000 and the error text) for an
unknown method or a failed call, -32600 for params of the wrong shape,
``Handshake.Implements`` / ``Handshake.Types``, and ``GET /info/api.json`` /
``/info/functions.json``.  A service with change feeds (an instance plugin that can
report changes: the file plugin) also publishes them as InfraKit's event broker does:
``Event.List`` (the topics; not advertised by the handshake, so ``plugin ls`` reads as
InfraKit's) and ``GET /events?topic=...``, a
server-sent event stream (``data: <event JSON>`` and a blank line per event), so a
client (another process's runtime) heals within milliseconds rather than polling.

:func:`serve` listens on a unix socket in the plugins directory (or on TCP, writing
the ``<name>.listen`` discovery file v0.5 writes), never steals a live socket, replaces
a stale one, and removes what it created when stopped; :func:`run` is its blocking
form for daemons (SIGTERM/SIGINT stop cleanly).

The group runtime plugs in through the :class:`GroupService` protocol
(:func:`group_services` serves it as ``Group/0.1.0`` + ``Metadata/0.1.0``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import errno
import fcntl
import ipaddress
import itertools
import json
import logging
import os
import signal
import stat
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Protocol, TypeAlias

from aiohttp import web

from infrakit.core import instances, specs
from infrakit.plugins import spi
from infrakit.rpc import discovery, wire

__all__ = [
    "E_INVALID_REQUEST",
    "E_PARSE",
    "E_SERVER",
    "GroupService",
    "ListenError",
    "Service",
    "flavor_service",
    "group_services",
    "instance_service",
    "make_app",
    "parse_listen",
    "run",
    "serve",
]

log = logging.getLogger(__name__)

# JSON-RPC error codes, as gorilla/rpc's json2 uses them.
E_PARSE: Final = -32700
E_INVALID_REQUEST: Final = -32600
E_SERVER: Final = -32000

_MAX_REQUEST: Final = 16 << 20  # a group document or an instance spec is kilobytes
_SHUTDOWN_GRACE: Final = 10.0  # seconds for calls under way when stopping (v0.5's graceful timeout)

Handler = Callable[[Mapping[str, Any]], dict[str, Any]]
_Entry: TypeAlias = (
    "tuple[threading.Lock | None, Handler]"  # a method: the lock serialising its plugin, and its handler
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Service:
    """One interface served: ``methods`` by wire name (``Provision``), run in a thread.

    ``examples`` gives, per method, the zero-valued params and result v0.5 shows in
    ``/info/api.json``.  Calls are serialised by ``lock`` unless the plugin is known to
    be thread-safe: our plugin objects keep small unsynchronised caches.
    """

    interface: wire.InterfaceSpec
    methods: Mapping[str, Handler]
    examples: Mapping[str, tuple[dict[str, Any], dict[str, Any]]]
    types: tuple[str, ...] = (".",)
    lock: threading.Lock | None = dataclasses.field(default_factory=threading.Lock)
    feeds: Mapping[str, Callable[[], AsyncIterator[Any]]] = dataclasses.field(default_factory=dict)
    """Topic -> a change feed whose items are published as events on that topic."""
    events: EventSource | None = None
    """Events published by the plugin itself (the group runtime's broker), on its own topics."""


class WireEvent(Protocol):
    def to_wire(self) -> dict[str, Any]:
        """The event as InfraKit's ``event.Event`` JSON (Topic, Type, ID, Timestamp, Data)."""
        ...


class EventSubscription(Protocol):
    """One subscriber's bounded buffer (``infrakit.runtime.events.Subscription``)."""

    dropped: int

    def drain(self) -> Sequence[WireEvent]:
        """The events buffered so far; never blocks."""
        ...

    def close(self) -> None: ...


class EventSource(Protocol):
    """Events a plugin publishes (``infrakit.runtime.events.Broker``): topics and subscriptions.

    ``wake`` is called (from any thread, without blocking) when events are buffered.
    """

    def topics(self) -> list[str]: ...

    def accepts(self, topic: str) -> bool:
        """Whether ``topic`` may be subscribed to though none of :meth:`topics` is under it (yet)."""
        ...

    def subscribe(self, topics: Sequence[str], *, wake: Callable[[], None]) -> EventSubscription: ...


class ListenError(RuntimeError):
    """The daemon cannot listen (a live plugin has the name, a bad path...): one line."""


# -- services -------------------------------------------------------------------------------


def _typed(params: Mapping[str, Any]) -> str:
    """The sub-type a request names; we serve only the default one (``"."``)."""
    kind = wire.string(wire.field(params, "Type"), "Type")
    if kind:
        raise spi.PluginError(f"no-plugin:{kind}")
    return kind


_ZERO_SPEC: Final = {"Properties": None, "Tags": None, "Init": "", "LogicalID": None, "Attachments": None}
_ZERO_DESCRIPTION: Final = {"ID": "", "LogicalID": None, "Tags": None}
_ZERO_ALLOCATION: Final = {"Size": 0, "LogicalIDs": None}


def instance_service(
    plugin: spi.InstancePlugin,
    *,
    concurrent: bool = False,
    properties: Callable[[instances.Description], Any] | None = None,
) -> Service:
    """``Instance/0.5.0`` backed by ``plugin``.

    ``properties`` gives an instance's ``Properties`` when ``DescribeInstances`` asks for
    them (v0.5's file plugin answers its spec); a plugin that reports changes
    (``spi.Watching``) has them published on :data:`wire.CHANGES_TOPIC`.
    """

    def validate(params: Mapping[str, Any]) -> dict[str, Any]:
        kind = _typed(params)
        plugin.validate(wire.field(params, "Properties"))
        return {"Type": kind, "OK": True}

    def provision(params: Mapping[str, Any]) -> dict[str, Any]:
        kind = _typed(params)
        instance_id = plugin.provision(wire.spec_from_wire(wire.field(params, "Spec"), "Spec"))
        return {"Type": kind, "ID": instance_id}

    def label(params: Mapping[str, Any]) -> dict[str, Any]:
        kind = _typed(params)
        instance_id = wire.string(wire.field(params, "Instance"), "Instance")
        plugin.label(instance_id, wire.tags(wire.field(params, "Labels"), "Labels"))
        return {"Type": kind, "OK": True}

    def destroy(params: Mapping[str, Any]) -> dict[str, Any]:
        kind = _typed(params)
        plugin.destroy(wire.string(wire.field(params, "Instance"), "Instance"))
        return {"Type": kind, "OK": True}

    def describe(params: Mapping[str, Any]) -> dict[str, Any]:
        kind = _typed(params)
        detailed = wire.boolean(wire.field(params, "Properties"), "Properties")
        found = plugin.describe(wire.tags(wire.field(params, "Tags"), "Tags"))
        listed = []
        for description in found:
            entry = wire.description_to_wire(description)
            if detailed and properties is not None:
                entry["Properties"] = properties(description)
            listed.append(entry)
        return {"Type": kind, "Descriptions": wire.go_list(listed)}

    ok = {"Type": "", "OK": False}
    return Service(
        interface=wire.INSTANCE,
        methods={
            "Validate": validate,
            "Provision": provision,
            "Label": label,
            "Destroy": destroy,
            "DescribeInstances": describe,
        },
        examples={
            "DescribeInstances": (
                {"Type": "", "Tags": None, "Properties": False},
                {"Type": "", "Descriptions": None},
            ),
            "Destroy": ({"Type": "", "Instance": ""}, ok),
            "Label": ({"Type": "", "Instance": "", "Labels": None}, ok),
            "Provision": ({"Type": "", "Spec": _ZERO_SPEC}, {"Type": "", "ID": None}),
            "Validate": ({"Type": "", "Properties": None}, ok),
        },
        lock=None if concurrent else threading.Lock(),
        feeds={wire.CHANGES_TOPIC: _changes_feed(plugin)} if isinstance(plugin, spi.Watching) else {},
    )


def _changes_feed(plugin: spi.Watching) -> Callable[[], AsyncIterator[Any]]:
    async def feed() -> AsyncIterator[Any]:
        async for changed in plugin.changes():
            yield {"All": True} if changed is None else {"IDs": sorted(changed)}

    return feed


def flavor_service(plugin: spi.FlavorPlugin, *, concurrent: bool = False) -> Service:
    """``Flavor/0.1.0`` backed by ``plugin``."""

    def validate(params: Mapping[str, Any]) -> dict[str, Any]:
        kind = _typed(params)
        allocation = wire.allocation_from_wire(wire.field(params, "Allocation"), "Allocation")
        plugin.validate(wire.field(params, "Properties"), allocation)
        return {"Type": kind, "OK": True}

    def prepare(params: Mapping[str, Any]) -> dict[str, Any]:
        kind = _typed(params)
        spec = wire.spec_from_wire(wire.field(params, "Spec"), "Spec")
        allocation = wire.allocation_from_wire(wire.field(params, "Allocation"), "Allocation")
        index = wire.obj(wire.field(params, "Index"), "Index")  # our flavors do not use it: checked only
        wire.string(wire.field(index, "Group"), "Index.Group")
        wire.uint(wire.field(index, "Sequence"), "Index.Sequence")
        prepared = plugin.prepare(wire.field(params, "Properties"), spec, allocation)
        return {"Type": kind, "Spec": wire.spec_to_wire(prepared)}

    def healthy(params: Mapping[str, Any]) -> dict[str, Any]:
        kind = _typed(params)
        description = wire.description_from_wire(wire.field(params, "Instance"), "Instance")
        health = plugin.healthy(wire.field(params, "Properties"), description)
        return {"Type": kind, "Health": wire.health_to_wire(health)}

    def drain(params: Mapping[str, Any]) -> dict[str, Any]:
        kind = _typed(params)
        description = wire.description_from_wire(wire.field(params, "Instance"), "Instance")
        plugin.drain(wire.field(params, "Properties"), description)
        return {"Type": kind, "OK": True}

    ok = {"Type": "", "OK": False}
    on_instance = {"Type": "", "Properties": None, "Instance": _ZERO_DESCRIPTION}
    return Service(
        interface=wire.FLAVOR,
        methods={"Validate": validate, "Prepare": prepare, "Healthy": healthy, "Drain": drain},
        examples={
            "Drain": (on_instance, ok),
            "Healthy": (on_instance, {"Type": "", "Health": 0}),
            "Prepare": (
                {
                    "Type": "",
                    "Properties": None,
                    "Spec": _ZERO_SPEC,
                    "Allocation": _ZERO_ALLOCATION,
                    "Index": {"Group": "", "Sequence": 0},
                },
                {"Type": "", "Spec": _ZERO_SPEC},
            ),
            "Validate": ({"Type": "", "Properties": None, "Allocation": _ZERO_ALLOCATION}, ok),
        },
        lock=None if concurrent else threading.Lock(),
    )


class GroupService(Protocol):
    """What the group runtime offers the ``Group/0.1.0`` and ``Metadata/0.1.0`` servers.

    Methods block (they run in a worker thread) and raise ``SpecError`` for a bad
    document or ``PluginError`` for anything else; the message is what the caller sees.
    """

    def commit(self, document: Mapping[str, Any], *, pretend: bool) -> str:
        """Commit (or with ``pretend``, only plan) InfraKit's ``{"ID", "Properties"}``; the plan text."""
        ...

    def free(self, group_id: str) -> None:
        """Stop managing the group, leaving its instances."""

    def describe(self, group_id: str) -> tuple[list[instances.Description], bool]:
        """The group's instances and whether it has converged."""
        ...

    def destroy(self, group_id: str) -> None:
        """Destroy the group's instances and forget it."""

    def inspect(self) -> list[dict[str, Any]]:
        """The committed specs, as ``[{"ID", "Properties"}]``."""
        ...

    def metadata_list(self, path: tuple[str, ...]) -> list[str]:
        """The children of ``path`` (``()`` is the root), e.g. ``("specs",) -> ["cattle"]``."""
        ...

    def metadata_get(self, path: tuple[str, ...]) -> Any:
        """The value at ``path`` (any JSON), None if there is none."""


def group_services(service: GroupService, *, events: EventSource | None = None) -> list[Service]:
    """``Group/0.1.0`` and ``Metadata/0.1.0`` backed by ``service`` (which must be thread-safe).

    ``events``: the runtime's events, served as InfraKit's event endpoint (``Event.List``
    and ``GET /events?topic=``), not advertised by the handshake (v0.5's group plugin did not).
    """

    def group_id(params: Mapping[str, Any]) -> str:
        value = wire.string(wire.field(params, "ID"), "ID")
        if not value:
            raise spi.PluginError("Group ID must not be blank")  # v0.5's words
        return value

    def commit(params: Mapping[str, Any]) -> dict[str, Any]:
        spec = wire.obj(wire.field(params, "Spec"), "Spec")
        document = {"ID": group_id(spec), "Properties": wire.field(spec, "Properties")}
        pretend = wire.boolean(wire.field(params, "Pretend"), "Pretend")
        return {"Details": service.commit(document, pretend=pretend)}

    def free(params: Mapping[str, Any]) -> dict[str, Any]:
        service.free(group_id(params))
        return {"OK": True}

    def describe(params: Mapping[str, Any]) -> dict[str, Any]:
        found, converged = service.describe(group_id(params))
        listed = wire.go_list([wire.description_to_wire(d) for d in found])
        return {"Description": {"Instances": listed, "Converged": bool(converged)}}

    def destroy(params: Mapping[str, Any]) -> dict[str, Any]:
        service.destroy(group_id(params))
        return {"OK": True}

    def inspect(params: Mapping[str, Any]) -> dict[str, Any]:
        return {"Groups": wire.go_list(service.inspect())}

    def metadata_list(params: Mapping[str, Any]) -> dict[str, Any]:
        path = wire.path_from_wire(wire.field(params, "Path"), "Path")
        return {"Nodes": wire.go_list(sorted(service.metadata_list(path)))}

    def metadata_get(params: Mapping[str, Any]) -> dict[str, Any]:
        path = wire.path_from_wire(wire.field(params, "Path"), "Path")
        return {"Value": service.metadata_get(path)}

    by_id = {"ID": ""}
    ok = {"OK": False}
    return [
        Service(
            interface=wire.GROUP,
            methods={
                "CommitGroup": commit,
                "FreeGroup": free,
                "DescribeGroup": describe,
                "DestroyGroup": destroy,
                "InspectGroups": inspect,
            },
            examples={
                "CommitGroup": ({"Spec": {"ID": "", "Properties": None}, "Pretend": False}, {"Details": ""}),
                "DescribeGroup": (by_id, {"Description": {"Instances": None, "Converged": False}}),
                "DestroyGroup": (by_id, ok),
                "FreeGroup": (by_id, ok),
                "InspectGroups": ({}, {"Groups": None}),
            },
            lock=None,
            events=events,
        ),
        Service(
            interface=wire.METADATA,
            methods={"List": metadata_list, "Get": metadata_get},
            examples={"Get": ({"Path": "."}, {"Value": None}), "List": ({"Path": "."}, {"Nodes": None})},
            lock=None,
        ),
    ]


# -- the HTTP endpoint ----------------------------------------------------------------------


def _go_quote(text: str) -> str:
    """Go's ``%q`` for the method names in its error messages (JSON's quoting, near enough)."""
    return json.dumps(text, ensure_ascii=False)


class _Failure(Exception):
    """A JSON-RPC error to answer."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


def make_app(services: Sequence[Service]) -> web.Application:
    """The aiohttp application answering the plugin protocol for ``services``."""
    table: dict[str, dict[str, _Entry]] = {}
    for service in services:
        table.setdefault(service.interface.name, {}).update(
            {name: (service.lock, handler) for name, handler in service.methods.items()}
        )
    sources = [service.events for service in services if service.events is not None]
    broker = _Broker(
        {topic: feed for service in services for topic, feed in service.feeds.items()},
        source=sources[0] if sources else None,
    )
    if broker.feeds or broker.source is not None:
        # Callable, but not advertised in the handshake: v0.5's file plugin published no
        # events, and `plugin ls` lists what ours implements exactly as the tutorial shows.
        table.setdefault(wire.EVENT.name, {}).update(
            {name: (None, handler) for name, handler in broker.service().methods.items()}
        )
    implements = {"APIs": [s.interface.to_wire() for s in services]}
    types = {"Types": {s.interface.encode(): list(s.types) for s in services}}

    def handshake(result: dict[str, Any]) -> Handler:
        return lambda params: result

    table["Handshake"] = {"Implements": (None, handshake(implements)), "Types": (None, handshake(types))}

    async def rpc(request: web.Request) -> web.StreamResponse:
        if request.method != "POST":
            return web.Response(status=405, text=f"rpc: POST method required, received {request.method}")
        content_type = request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        if content_type and content_type != "application/json":
            return web.Response(status=415, text=f"rpc: unrecognized Content-Type: {content_type}")
        body = await request.read()
        request_id: Any = None
        try:
            try:
                message = json.loads(body)
            except ValueError as error:
                raise _Failure(E_PARSE, f"parse error: {error}") from None
            if not isinstance(message, dict):
                raise _Failure(
                    E_INVALID_REQUEST, "invalid request: expected one JSON object (batches are not supported)"
                )
            request_id = message.get("id")
            if message.get("jsonrpc") != "2.0":
                raise _Failure(E_INVALID_REQUEST, "jsonrpc must be 2.0")
            method = message.get("method")
            if not isinstance(method, str):
                raise _Failure(E_INVALID_REQUEST, "invalid request: method must be a string")
            lock, handler = _lookup(table, method)
            params = _params(message.get("params"))
            result = await asyncio.to_thread(_call, lock, handler, params, method)
        except _Failure as failure:
            if request_id is None and failure.code not in (E_PARSE, E_INVALID_REQUEST):
                return web.Response(status=200)  # a notification: no answer (as Go)
            refusal = {"code": failure.code, "message": failure.message, "data": failure.data}
            return _answer({"jsonrpc": "2.0", "error": refusal, "id": request_id})
        if request_id is None:
            return web.Response(status=200)
        return _answer({"jsonrpc": "2.0", "result": result, "id": request_id})

    def api(request: web.Request) -> web.Response:
        stamp = str(int(time.time()))
        interfaces = []
        for service in services:
            methods = []
            for name in sorted(service.methods):
                params, result = service.examples.get(name, ({}, {}))
                methods.append(
                    {
                        "Request": {
                            "jsonrpc": "2.0",
                            "method": f"{service.interface.name}.{name}",
                            "params": params,
                            "id": stamp,
                        },
                        "Response": {"result": result, "id": stamp},
                    }
                )
            interfaces.append({**service.interface.to_wire(), "Methods": methods})
        info = {"Vendor": None, "Implements": implements["APIs"], "Interfaces": interfaces}
        return web.Response(text=json.dumps(info, separators=(",", ":")), content_type="application/json")

    def functions(request: web.Request) -> web.Response:
        return web.Response(text="{}", content_type="application/json")  # we export no template functions

    async def get_api(request: web.Request) -> web.StreamResponse:
        return api(request)

    async def get_functions(request: web.Request) -> web.StreamResponse:
        return functions(request)

    app = web.Application(client_max_size=_MAX_REQUEST)
    app.router.add_get("/info/api.json", get_api)
    app.router.add_get("/info/functions.json", get_functions)
    if broker.feeds or broker.source is not None:
        app.router.add_get("/events", broker.stream)
        app.on_startup.append(broker.start)
        app.on_shutdown.append(broker.stop)
    app.router.add_route("*", "/{tail:.*}", rpc)
    return app


_QUEUED: Final = 1024  # events kept per subscriber; beyond, it gets one "anything changed"


class _Broker:
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
        self._service: Service | None = None

    def topics(self) -> list[str]:
        return sorted({*self.feeds, *(self.source.topics() if self.source is not None else ())})

    def service(self) -> Service:
        if self._service is None:

            def listing(params: Mapping[str, Any]) -> dict[str, Any]:
                topics = self.topics()
                path = wire.path_from_wire(wire.field(params, "Topic"), "Topic")
                depth = len(path)
                children = {
                    tuple(t.split("/"))[depth]
                    for t in topics
                    if tuple(t.split("/"))[:depth] == path and len(t.split("/")) > depth
                }
                return {"Nodes": wire.go_list(sorted(children))}

            self._service = Service(
                interface=wire.EVENT,
                methods={"List": listing},
                examples={"List": ({"Topic": "."}, {"Nodes": None})},
                lock=None,
            )
        return self._service

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
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "Connection": "keep-alive"}
        )
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
                    await response.write(f"data: {text}\n\n".encode())
                    continue
                if subscription is None:
                    continue
                for event in subscription.drain():
                    await response.write(f"data: {json.dumps(event.to_wire(), separators=(',', ':'))}\n\n".encode())
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
                    await response.write(f"data: {json.dumps(notice, separators=(',', ':'))}\n\n".encode())
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


def _lookup(table: Mapping[str, Mapping[str, _Entry]], method: str) -> _Entry:
    parts = method.split(".")
    if len(parts) != 2:
        raise _Failure(E_SERVER, f"rpc: service/method request ill-formed: {_go_quote(method)}")
    methods = table.get(parts[0])
    if methods is None:
        raise _Failure(E_SERVER, f"rpc: can't find service {_go_quote(method)}")
    found = methods.get(parts[1])
    if found is None:
        raise _Failure(E_SERVER, f"rpc: can't find method {_go_quote(method)}")
    return found


def _params(params: Any) -> Mapping[str, Any]:
    """The request object: params as an object, or (as gorilla accepts) a one-element array."""
    if params is None:
        return {}
    if isinstance(params, list) and len(params) == 1:
        params = params[0]
    if not isinstance(params, dict):
        kind = "array" if isinstance(params, list) else type(params).__name__
        raise _Failure(E_INVALID_REQUEST, f"json: cannot unmarshal {kind} into the request object", params)
    return params


def _call(lock: threading.Lock | None, handler: Handler, params: Mapping[str, Any], method: str) -> dict[str, Any]:
    """Run one plugin call (in a worker thread); every failure becomes a JSON-RPC error."""
    try:
        if lock is None:
            return handler(params)
        with lock:
            return handler(params)
    except wire.WireError as error:
        raise _Failure(E_INVALID_REQUEST, f"json: {error}", params) from None
    except spi.InstanceNotFound as error:
        raise _Failure(E_SERVER, str(error) or "instance not found", {"NotFound": True}) from None
    except (spi.PluginError, specs.SpecError) as error:
        raise _Failure(E_SERVER, str(error) or type(error).__name__) from None
    except Exception as error:
        # A bug in a plugin: the caller gets its text, the daemon's log the traceback.
        log.exception("%s failed", method)
        raise _Failure(E_SERVER, str(error) or type(error).__name__) from None


def _answer(document: dict[str, Any]) -> web.Response:
    # Go's json.Encoder ends the document with a newline.
    text = json.dumps(document, separators=(",", ":")) + "\n"
    return web.Response(
        text=text,
        content_type="application/json",
        charset="utf-8",
        headers={"X-Content-Type-Options": "nosniff"},
    )


# -- listening ------------------------------------------------------------------------------


def parse_listen(text: str) -> tuple[str, int]:
    """``host:port``, ``:port`` or ``port``; a bare port binds loopback. Raise ValueError."""
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = "", text
    host = host.strip("[]") or "127.0.0.1"
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"{text!r} is not host:port (for example 127.0.0.1:24865 or :24865)") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is out of range (0-65535)")
    return host, port


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def serve(
    services: Sequence[Service],
    *,
    name: str,
    stop: asyncio.Event,
    directory: Path | None = None,
    listen: tuple[str, int] | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve ``services`` as plugin ``name`` until ``stop`` is set; clean up what was made.

    Raises :class:`ListenError` (nothing changed) if the name is taken by a live plugin
    or the address cannot be used.  ``on_ready`` gets the address clients dial.
    """
    if not name or "/" in name or name.startswith(".") or name.endswith((".listen", ".pid")):
        raise ListenError(f"--name {name!r}: a plugin name is a file name without '/' (e.g. instance-file)")
    folder = discovery.plugins_dir() if directory is None else Path(directory)
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as error:
        raise ListenError(f"cannot create the plugins directory {folder}: {error.strerror}") from None
    socket_path = folder / name
    listen_path = folder / f"{name}{discovery.LISTEN_SUFFIX}"
    claim = _Claim(folder / f"{name}.pid", name=name)
    runner: web.AppRunner | None = None
    made: Path | None = None
    try:
        claim.acquire()
        _clear(socket_path, name=name)
        _clear(listen_path, name=name)
        runner = web.AppRunner(
            make_app(services), access_log=None, handle_signals=False, shutdown_timeout=_SHUTDOWN_GRACE
        )
        await runner.setup()
        if listen is None:
            if len(os.fsencode(socket_path)) > discovery.MAX_SOCKET_PATH:
                raise ListenError(
                    f"socket path {socket_path} is too long for a unix socket "
                    f"(at most {discovery.MAX_SOCKET_PATH} bytes): set INFRAKIT_PLUGINS_DIR to a shorter directory"
                )
            site: web.BaseSite = web.UnixSite(runner, str(socket_path))
            await _start(site, where=str(socket_path))
            made = socket_path
            address = str(socket_path)
            log.info("Listening at: %s", socket_path)
        else:
            host, port = listen
            if not _is_loopback(host):
                log.warning(
                    "listening on %s:%d, beyond this machine: the plugin protocol has no authentication, "
                    "anyone who can reach this port can provision and destroy instances",
                    host,
                    port,
                )
            site = web.TCPSite(runner, host, port)
            await _start(site, where=f"{host}:{port}")
            bound = runner.addresses[0]
            advertise_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104 - compared, not bound
            if ":" in advertise_host:
                advertise_host = f"[{advertise_host}]"
            address = f"tcp://{advertise_host}:{bound[1]}"
            _write_listen_file(listen_path, address)
            made = listen_path
            log.info("Listening at: %s:%d, discoverable at %s", host, bound[1], listen_path)
        if on_ready is not None:
            on_ready(address)
        await stop.wait()
        log.info("Stopping: %s", name)
    finally:
        if runner is not None:
            await runner.cleanup()
        if made is not None:
            with contextlib.suppress(FileNotFoundError):
                made.unlink()
        claim.release()


async def _start(site: web.BaseSite, *, where: str) -> None:
    try:
        await site.start()
    except OSError as error:
        raise ListenError(f"cannot listen at {where}: {error.strerror or error}") from None


def _write_listen_file(path: Path, address: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(address)
    os.replace(temporary, path)


def _clear(path: Path, *, name: str) -> None:
    """Remove a stale socket or discovery file at ``path``; refuse a live or foreign one."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISSOCK(info.st_mode) or (stat.S_ISREG(info.st_mode) and path.name.endswith(discovery.LISTEN_SUFFIX)):
        endpoint = discovery.endpoint_at(path, name=name)
        if endpoint is not None and discovery.alive(endpoint):
            raise ListenError(
                f"plugin {name!r} is already running at {endpoint.address}; "
                "stop it first, or serve this one under another --name"
            )
        log.info("replacing the stale %s %s (its daemon is gone)", "socket" if endpoint else "file", path)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return
    raise ListenError(f"{path} exists and is not a plugin socket: remove it, or serve under another --name")


class _Claim:
    """The ``<name>.pid`` file, locked while the daemon runs: two of ours never share a name.

    v0.5 writes the same file (without the lock); a lock dies with its process, so a
    killed daemon leaves no claim behind.
    """

    def __init__(self, path: Path, *, name: str) -> None:
        self.path = path
        self.name = name
        self.fd: int | None = None

    def acquire(self) -> None:
        for _ in range(3):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                os.close(fd)
                if error.errno in (errno.EAGAIN, errno.EACCES):
                    holder = _read_pid(self.path)
                    raise ListenError(
                        f"plugin {self.name!r} is already running"
                        + (f" (pid {holder})" if holder else "")
                        + "; stop it first, or serve this one under another --name"
                    ) from None
                raise
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # its owner removed it between our open and our lock: take a fresh one
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
            self.fd = fd
            return
        raise ListenError(f"cannot claim {self.path}: it keeps changing (another daemon starting?)")

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self.fd)
        self.fd = None


def _read_pid(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def run(
    services: Sequence[Service],
    *,
    name: str,
    directory: Path | None = None,
    listen: tuple[str, int] | None = None,
) -> int:
    """Serve until SIGTERM or SIGINT: 0 when stopped, 1 (one line logged) if it cannot listen."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await serve(services, name=name, stop=stop, directory=directory, listen=listen)

    try:
        asyncio.run(main())
    except ListenError as error:
        log.error("%s", error)
        return 1
    return 0
