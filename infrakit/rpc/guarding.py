"""Who may call a plugin daemon: the checks every request passes first (aiohttp; daemons only).

The plugin protocol has no authentication (InfraKit's had none), so a daemon is as safe
as who can reach it: a unix socket in a 0700 directory, or a TCP port.  A TCP port on
loopback is reachable by every web page the machine's browser opens, and a page may
send, without asking (no CORS preflight), a ``POST`` whose Content-Type is missing,
``text/plain`` or a form's: gorilla/rpc (InfraKit v0.5's server) took such a body as
JSON-RPC, and so did we.  A page may also make its own DNS name resolve to 127.0.0.1
after it loaded (DNS rebinding) and then read the answers.  So every request, on every
listener, is refused before any handler runs when:

* it is a ``POST`` whose Content-Type is not ``application/json`` (415): a page cannot
  send that type cross-site without a preflight, which we never answer;
* it carries an ``Origin`` header (403): browsers put one on every cross-site request
  and on every ``POST``; no plugin client sends one (InfraKit's Go client, ours, curl);
* on TCP, its ``Host`` is a DNS name other than ``localhost``, this machine's host name
  or the name given to ``--listen`` (403): a rebound page names its own domain.  IP
  literals are accepted (they cannot be rebound), and so is a missing ``Host``
  (HTTP/1.0: no browser).  A unix socket accepts any ``Host`` (no browser dials one,
  and clients name it as they like: InfraKit's Go client sends ``h``);
* on TCP, with a token configured (``--token-file``; off by default so InfraKit's own
  CLI keeps working), it lacks ``Authorization: Bearer <token>`` (401), compared in
  constant time.  Our clients send the token of ``$INFRAKIT_TOKEN_FILE``.

What this does not do: encrypt (use a unix socket, or a tunnel), or tell one local user
from another on a loopback port without a token.

And what a peer may hold of a daemon is bounded (:class:`Limits`), so that no peer, idle
or slow or hostile, stops it answering the others:

* headers must arrive within ``idle`` seconds of the connection's opening or of its
  last answer (aiohttp's keep-alive timer, which also closes idle connections), and a
  body within ``body`` seconds of its headers (408); so a request is received whole
  within ``idle + body`` seconds, or its connection is closed;
* a body is at most ``request`` bytes (413, refused from its Content-Length before it
  is read), and the bodies held at once beyond 64 KiB each at most ``buffered`` bytes
  (503): a small call always passes;
* at most ``connections`` are open (fewer if the file descriptor limit is low: a
  daemon never runs out of them).  aiohttp has no such cap (its listen backlog only
  queues), so :class:`Gate` admits each connection: at the cap, the connection idle
  the longest (waiting for a request, or still sending one) is closed to make room, and
  only when every connection is busy (a plugin call or an event stream under way) is a
  new one refused with a 503;
* event streams are at most ``streams`` (and half the connections), and a subscriber
  that does not take an event within ``write`` seconds is let go.

A plugin call itself is not bounded here: it runs in a thread to its end (a thread
cannot be cancelled), and the caller gives up on its own (our client after 120 s).

aiohttp's own knobs do what they can: ``keepalive_timeout`` (set to ``idle``; aiohttp
arms it at ``connection_made`` and after each answer, and it fires while the handler
waits for a request, so it bounds idle connections and unfinished headers alike),
``lingering_time`` (a refused body is read for at most 5 s), ``client_max_size`` (set to
``request``), the listen backlog (128, aiohttp's).  ``handler_cancellation`` stays off:
cancelling a handler whose client left would not stop its plugin call, which runs in a
thread.  What aiohttp lacks, done here: a body timeout (:meth:`Gate.read_body`), a
budget for bodies held at once, and a connection cap (:class:`Gate`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import ipaddress
import logging
import resource
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Final

from aiohttp import web
from aiohttp.typedefs import Middleware

__all__ = ["GATE", "Access", "Gate", "Limits", "Refused", "connection_cap", "middleware"]

log = logging.getLogger(__name__)

_JSON: Final = "application/json"
_FREE: Final = 64 << 10  # bytes of each body never counted against Limits.buffered: small calls always pass
_RESERVED_FDS: Final = 64  # file descriptors a daemon keeps for itself (files, logs, inotify, the loop)
_LINGER: Final = 5.0  # seconds a refused request's remaining body is read (so that its sender reads the refusal)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Access:
    """What a daemon accepts beyond the fixed checks: a token for TCP, and ``Host`` names."""

    token: str | None = None
    """Required on TCP listeners as ``Authorization: Bearer <token>`` when set."""
    hosts: frozenset[str] = frozenset()
    """DNS names accepted in ``Host`` on TCP, besides localhost and this machine's name."""


_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def middleware(access: Access) -> Middleware:
    """The aiohttp middleware refusing what :class:`Access` and the fixed checks refuse."""
    names = {name.lower().rstrip(".") for name in access.hosts} | {"localhost", socket.gethostname().lower()}
    expected = f"Bearer {access.token}".encode() if access.token else None

    @web.middleware
    async def guard(request: web.Request, handler: _Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is not None:
            return _refuse(
                403,
                f"refused: the request carries an Origin header ({_quote(origin)}), as a web page's "
                "cross-site request does; plugin clients send none",
            )
        sockname = request.transport.get_extra_info("sockname") if request.transport is not None else None
        tcp = isinstance(sockname, tuple)
        host = request.headers.get("Host")
        if tcp and host is not None and not _host_allowed(host, names):
            return _refuse(
                403,
                f"refused: Host {_quote(host)} is not this daemon's (a page rebinding its DNS name would send "
                "its own): dial an IP address, localhost, or the name given to --listen",
            )
        if tcp and expected is not None:
            given = request.headers.get("Authorization", "").encode("utf-8", "replace")
            if not hmac.compare_digest(given, expected):
                return _refuse(
                    401,
                    "this daemon requires its token (Authorization: Bearer ...): set INFRAKIT_TOKEN_FILE "
                    "to the file given to its --token-file",
                    headers={"WWW-Authenticate": 'Bearer realm="infrakit"'},
                )
        if request.method == "POST":
            kind = request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
            if kind != _JSON:
                # gorilla's words, then why: a body of another type could come from a web page.
                return _refuse(415, f"unrecognized Content-Type: {_quote(kind) if kind else '(none)'}; send {_JSON}")
        return await handler(request)

    return guard


def _host_allowed(header: str, names: set[str]) -> bool:
    host = header.strip().lower()
    if host.startswith("["):  # [::1]:8080
        end = host.find("]")
        name = host[1:end] if end > 0 else host
    else:
        name = host.rpartition(":")[0] if host.count(":") == 1 else host
    name = name.rstrip(".")
    if not name:
        return False
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return name in names
    return True  # an IP address cannot be rebound


def _quote(text: str) -> str:
    """A header's value for a one-line message: as it is when plain, else ``repr`` (cut at 100)."""
    return text if text.isprintable() and len(text) <= 100 else repr(text[:100])


def _refuse(status: int, message: str, *, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=f"rpc: {message}", headers=headers)


# -- bounds ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class Limits:
    """What peers may hold of one daemon (seconds, counts, bytes); see the module's docstring."""

    idle: float = 30.0
    """Seconds a connection may wait for, or send, a request's headers (from its opening or last answer)."""
    body: float = 30.0
    """Seconds to send a request's body once its headers are in."""
    write: float = 30.0
    """Seconds an event stream's subscriber may take to accept an event."""
    connections: int = 256
    """Connections open at once (fewer if RLIMIT_NOFILE is low)."""
    streams: int = 64
    """Event streams open at once (at most half the connections)."""
    request: int = 16 << 20
    """Bytes of one request's body (a group document or an instance spec is kilobytes)."""
    buffered: int = 64 << 20
    """Bytes of bodies held at once, beyond the first 64 KiB of each."""

    def runner_options(self) -> dict[str, Any]:
        """aiohttp's own knobs (``web.AppRunner``) that enforce part of these bounds."""
        # keepalive_timeout: aiohttp starts it at connection_made and after every answer, and it
        # fires while the handler waits for a request: it is both the idle and the header timeout.
        return {"keepalive_timeout": self.idle, "lingering_time": _LINGER}


def connection_cap(wanted: int) -> int:
    """``wanted``, lowered so that connections never take the file descriptors the daemon needs."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return min(wanted, max(8, soft - _RESERVED_FDS))


class Refused(Exception):
    """A request refused before its handler ran (status and one line); :meth:`answer` sends it."""

    def __init__(self, status: int, message: str, *, linger: bool = True) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.linger = linger

    async def answer(self, request: web.Request) -> web.StreamResponse:
        response = web.Response(status=self.status, text=f"rpc: {self.message}")
        response.force_close()  # the rest of this connection is not worth reading
        await response.prepare(request)
        await response.write_eof()
        if not self.linger and request.protocol is not None:
            request.protocol.force_close()  # a peer that drips its body gets no lingering either
        return response


class Gate:
    """The connections of one daemon: admitted up to a cap, busy or idle, and the bodies they hold.

    :meth:`admit` wraps aiohttp's protocol factory (:mod:`infrakit.rpc.listening`
    passes it to the event loop), since aiohttp has no connection cap of its own: its
    listen backlog only queues, and a peer holding every file descriptor stops
    ``accept`` for everyone.
    """

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.cap = connection_cap(limits.connections)
        self.max_streams = max(1, min(limits.streams, self.cap // 2))
        self.buffered = 0
        self.streams = 0
        self.evicted = 0
        self.refused = 0
        self._busy: dict[object, int] = {}  # a connection's handler -> calls or streams under way
        self._since: dict[Any, float] = {}  # every connection open -> when it last became idle

    def admit(self, server: web.Server) -> asyncio.Protocol:
        """The protocol factory's product for a new connection (see :class:`_Admission`)."""
        return _Admission(self, server)

    def _enter(self, server: web.Server) -> Any:
        """aiohttp's handler for a connection just made, after making room; None to refuse it."""
        if len(self._since) >= self.cap:
            idle = [h for h in self._since if h not in self._busy and h.transport is not None]
            if not idle:
                self.refused += 1
                if self.refused == 1 or self.refused % 1000 == 0:
                    log.warning("%d connections open, each busy: refused a new one (%d so far)", self.cap, self.refused)
                return None
            oldest = min(idle, key=lambda handler: self._since[handler])
            oldest.force_close()
            self._since.pop(oldest, None)
            self.evicted += 1
            if self.evicted == 1 or self.evicted % 1000 == 0:
                log.info("%d connections open: closed the one idle the longest (%d so far)", self.cap, self.evicted)
        handler = server()
        self._since[handler] = time.monotonic()
        return handler

    def _leave(self, handler: object) -> None:
        self._since.pop(handler, None)

    @contextlib.contextmanager
    def busy(self, request: web.BaseRequest) -> Iterator[None]:
        """Mark the request's connection busy (never closed to make room) while in the block."""
        handler = request.protocol
        self._busy[handler] = self._busy.get(handler, 0) + 1
        try:
            yield
        finally:
            left = self._busy.pop(handler) - 1
            if left:
                self._busy[handler] = left
            if handler in self._since:
                self._since[handler] = time.monotonic()

    async def read_body(self, request: web.Request) -> tuple[bytes, int]:
        """The body within the bounds, and the bytes of it charged to :attr:`buffered` (see :meth:`release`)."""
        limits = self.limits
        declared = request.content_length
        if declared is not None and declared > limits.request:
            raise Refused(413, f"the request body is larger than {_size(limits.request)} ({declared} bytes)")
        chunks: list[bytes] = []
        size = charged = 0
        try:
            async with asyncio.timeout(limits.body):
                async for chunk in request.content.iter_any():
                    size += len(chunk)
                    if size > limits.request:
                        raise Refused(413, f"the request body is larger than {_size(limits.request)}")
                    over = max(0, size - _FREE) - charged
                    if over:
                        if self.buffered + over > limits.buffered:
                            raise Refused(
                                503,
                                f"busy: {_size(limits.buffered)} of request bodies already held; retry",
                            )
                        self.buffered += over
                        charged += over
                    chunks.append(chunk)
        except TimeoutError:
            raise Refused(408, f"the request body did not arrive within {limits.body:g} s", linger=False) from None
        except BaseException:
            self.release(charged)
            raise
        return b"".join(chunks), charged

    def release(self, charged: int) -> None:
        self.buffered -= charged


GATE: Final = web.AppKey("infrakit.gate", Gate)
"""The application's :class:`Gate` (set by :func:`infrakit.rpc.server.make_app`)."""


class _Admission(asyncio.Protocol):
    """One connection: admitted (or refused) by the gate once made, then aiohttp's handler's.

    The decision waits for ``connection_made``: the loop calls the protocol factory for
    a whole batch of accepted connections before any of them is made, so only then is
    the count of open connections exact.  A refused connection gets one 503 line and is
    closed at once (it holds a descriptor only that long); an admitted one is handed to
    aiohttp's handler, to which every later event is forwarded as it comes.
    """

    def __init__(self, gate: Gate, server: web.Server) -> None:
        self.gate = gate
        self.server = server
        self.handler: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.handler = self.gate._enter(self.server)
        if self.handler is not None:
            self.handler.connection_made(transport)
            return
        assert isinstance(transport, asyncio.WriteTransport)
        message = f"rpc: too many connections ({self.gate.cap}, each busy with a call or a stream); retry\n".encode()
        head = (
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Connection: close\r\nContent-Length: {len(message)}\r\n\r\n"
        )
        transport.write(head.encode() + message)
        transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.handler is not None:
            self.gate._leave(self.handler)
            self.handler.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.handler is not None:
            self.handler.data_received(data)

    def eof_received(self) -> bool | None:
        return self.handler.eof_received() if self.handler is not None else None

    def pause_writing(self) -> None:
        if self.handler is not None:
            self.handler.pause_writing()

    def resume_writing(self) -> None:
        if self.handler is not None:
            self.handler.resume_writing()


def _size(count: int) -> str:
    return f"{count >> 20} MiB" if count >= 1 << 20 and count % (1 << 20) == 0 else f"{count} bytes"
