"""Serving plugin objects over InfraKit's plugin protocol (aiohttp; daemons only).

A :class:`~infrakit.rpc.services.Service` is one interface (``Instance/0.5.0``...)
bound to one of our plugin objects (:mod:`infrakit.rpc.services`, re-exported here:
``instance_service``, ``flavor_service``, ``group_services``); its calls run in worker
threads (plugin calls block: the event loop never does).  :func:`make_app` puts services
behind one HTTP endpoint answering as InfraKit v0.5's Go server (gorilla/rpc json2)
does: HTTP 200 with a JSON-RPC error object (code -32000 and the error text) for an
unknown method or a failed call, -32600 for params of the wrong shape, -32602 for
values JSON cannot carry (a lone surrogate, NaN, 1e400: what no plugin could write and
read back), -32700 for a body that is not JSON or nests deeper than ``wire.MAX_DEPTH``,
``Handshake.Implements`` / ``Handshake.Types``, and ``GET /info/api.json`` /
``/info/functions.json``.  A service with change feeds (an instance plugin that can
report changes: the file plugin) also publishes them as InfraKit's event broker does:
``Event.List`` (the topics; not advertised by the handshake, so ``plugin ls`` reads as
InfraKit's) and ``GET /events?topic=...`` (:mod:`infrakit.rpc.publishing`), so a client
(another process's runtime) heals within milliseconds rather than polling.

:func:`serve` serves the services as a named plugin (:mod:`infrakit.rpc.listening`:
the socket, the TCP port, the discovery files); :func:`run` is its blocking form for
daemons (SIGTERM/SIGINT stop cleanly).

Every request passes :mod:`infrakit.rpc.guarding` first: who may call (no cross-site
request, an optional token on TCP) and what a peer may hold (time, bytes, connections).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, TypeAlias

from aiohttp import web

from infrakit.core import specs
from infrakit.plugins import spi
from infrakit.rpc import guarding, listening, publishing, wire
from infrakit.rpc.guarding import Access, Limits
from infrakit.rpc.listening import ListenError, parse_listen
from infrakit.rpc.services import GroupService, Handler, Service, flavor_service, group_services, instance_service

__all__ = [
    "E_INVALID_PARAMS",
    "E_INVALID_REQUEST",
    "E_PARSE",
    "E_SERVER",
    "Access",
    "GroupService",
    "Limits",
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
E_INVALID_PARAMS: Final = -32602
E_SERVER: Final = -32000

_Entry: TypeAlias = (
    "tuple[threading.Lock | None, Handler]"  # a method: the lock serialising its plugin, and its handler
)


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


def make_app(
    services: Sequence[Service], *, access: guarding.Access | None = None, limits: guarding.Limits | None = None
) -> web.Application:
    """The aiohttp application answering the plugin protocol for ``services``.

    Every request passes :mod:`infrakit.rpc.guarding`'s checks first (``access``: the
    token and ``Host`` names a daemon was given) and is held to its bounds (``limits``,
    kept in the application's :data:`~infrakit.rpc.guarding.GATE`, which
    :mod:`infrakit.rpc.listening` puts in front of every connection).
    """
    gate = guarding.Gate(limits or guarding.Limits())
    table: dict[str, dict[str, _Entry]] = {}
    for service in services:
        table.setdefault(service.interface.name, {}).update(
            {name: (service.lock, handler) for name, handler in service.methods.items()}
        )
    sources = [service.events for service in services if service.events is not None]
    feeds = {topic: feed for service in services for topic, feed in service.feeds.items()}
    events = publishing.Publishing(feeds, events=sources[0] if sources else None) if feeds or sources else None
    if events is not None:
        # Callable, but not advertised in the handshake: v0.5's file plugin published no
        # events, and `plugin ls` lists what ours implements exactly as the tutorial shows.
        table.setdefault(wire.EVENT.name, {}).update({"List": (None, events.listing)})
    implements = {"APIs": [s.interface.to_wire() for s in services]}
    types = {"Types": {s.interface.encode(): list(s.types) for s in services}}

    def handshake(result: dict[str, Any]) -> Handler:
        return lambda params: result

    table["Handshake"] = {"Implements": (None, handshake(implements)), "Types": (None, handshake(types))}

    async def rpc(request: web.Request) -> web.StreamResponse:
        if request.method != "POST":
            return web.Response(status=405, text=f"rpc: POST method required, received {request.method}")
        try:
            body, charged = await gate.read_body(request)
        except guarding.Refused as refused:
            return await refused.answer(request)
        try:
            with gate.busy(request):  # from here to the answer written: never closed to make room
                response = await _respond(table, body)
                await response.prepare(request)
                await response.write_eof()
                return response
        finally:
            gate.release(charged)

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

    app = web.Application(
        client_max_size=gate.limits.request, middlewares=[guarding.middleware(access or guarding.Access())]
    )
    app[guarding.GATE] = gate
    app.router.add_get("/info/api.json", get_api)
    app.router.add_get("/info/functions.json", get_functions)
    if events is not None:
        app.router.add_get("/events", events.stream)
        app.on_startup.append(events.start)
        app.on_shutdown.append(events.stop)
    app.router.add_route("*", "/{tail:.*}", rpc)
    return app


async def _respond(table: Mapping[str, Mapping[str, _Entry]], body: bytes) -> web.Response:
    """The answer to one JSON-RPC request ``body`` (a plugin call in a worker thread)."""
    request_id: Any = None
    try:
        try:
            message = wire.loads(body)
        except wire.ParseError as error:
            raise _Failure(E_PARSE, f"parse error: {error}") from None
        if not isinstance(message, dict):
            raise _Failure(E_INVALID_REQUEST, "invalid request: expected one JSON object (batches are not supported)")
        request_id = message.get("id")
        if message.get("jsonrpc") != "2.0":
            raise _Failure(E_INVALID_REQUEST, "jsonrpc must be 2.0")
        method = message.get("method")
        if not isinstance(method, str):
            raise _Failure(E_INVALID_REQUEST, "invalid request: method must be a string")
        lock, handler = _lookup(table, method)
        params = _params(message.get("params"))
        try:
            # What a plugin is given must be JSON it can write and read back: JSON's
            # parsers take lone surrogates, NaN and 1e400, which no strict writer takes.
            specs.check_json(params)
        except specs.SpecError as error:
            raise _Failure(E_INVALID_PARAMS, f"invalid params: {error}") from None
        result = await asyncio.to_thread(_call, lock, handler, params, method)
    except _Failure as failure:
        if request_id is None and failure.code not in (E_PARSE, E_INVALID_REQUEST):
            return web.Response(status=200)  # a notification: no answer (as Go)
        refusal = {"code": failure.code, "message": failure.message, "data": failure.data}
        return _answer({"jsonrpc": "2.0", "error": refusal, "id": request_id})
    if request_id is None:
        return web.Response(status=200)
    return _answer({"jsonrpc": "2.0", "result": result, "id": request_id})


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


# -- serving --------------------------------------------------------------------------------


async def serve(
    services: Sequence[Service],
    *,
    name: str,
    stop: asyncio.Event,
    directory: Path | None = None,
    listen: tuple[str, int] | None = None,
    on_ready: Callable[[str], None] | None = None,
    access: Access | None = None,
    limits: Limits | None = None,
) -> None:
    """Serve ``services`` as plugin ``name`` until ``stop`` is set (:func:`infrakit.rpc.listening.serve`).

    ``access``: the token TCP callers must send, if any (:mod:`infrakit.rpc.guarding`);
    the host of ``listen``, when a name, is one callers may use in ``Host``.  ``limits``:
    what peers may hold of the daemon (the defaults of :class:`Limits` if not given).
    """
    access = access or Access()
    if listen is not None and listen[0]:
        access = dataclasses.replace(access, hosts=access.hosts | {listen[0]})
    await listening.serve(
        make_app(services, access=access, limits=limits),
        name=name,
        stop=stop,
        directory=directory,
        listen=listen,
        on_ready=on_ready,
        token=bool(access.token),
    )


def run(
    services: Sequence[Service],
    *,
    name: str,
    directory: Path | None = None,
    listen: tuple[str, int] | None = None,
    access: Access | None = None,
) -> int:
    """Serve until SIGTERM or SIGINT: 0 when stopped, 1 (one line logged) if it cannot listen."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await serve(services, name=name, stop=stop, directory=directory, listen=listen, access=access)

    try:
        asyncio.run(main())
    except ListenError as error:
        log.error("%s", error)
        return 1
    return 0
