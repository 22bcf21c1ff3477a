"""The one client of a plugin's event stream (``GET /events?topic=``), as InfraKit's broker client reads it.

A daemon publishes events as server-sent events (``data: <JSON>`` and a blank line per
event, :mod:`infrakit.rpc.publishing`) in a response that never ends, chunked.
:class:`Stream` opens one over a :class:`~infrakit.rpc.transport.Transport` (the
plugin's address and token) and gives each event's ``data`` as it comes
(:meth:`Stream.data`: what a change feed reads, :mod:`infrakit.rpc.feeds`) or the events
decoded (iterating it: ``event tail``).  :class:`EventReader` turns the raw bytes into
the ``data`` of each event, holding at most :data:`~infrakit.rpc.wire.MAX_EVENT` bytes
of an event: a longer one is skipped unread (reported as ``None``), so a peer that never
ends an event cannot fill the memory.  :func:`decode` parses one event (``None`` for one
we cannot read: never a ``RecursionError``).  Standard library only.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import urllib.parse
from collections.abc import Iterator, Mapping
from typing import Any, Final

from infrakit.plugins import spi
from infrakit.rpc import wire
from infrakit.rpc.transport import Transport

__all__ = ["CHUNK", "EventReader", "NoEvents", "Stream", "decode", "subscribe"]

CHUNK: Final = 1 << 16  # bytes read at a time from a stream
_MAX_CHUNK_LINE: Final = 1024  # a chunk-size line is a few hex digits


class NoEvents(spi.PluginError):
    """The plugin publishes no events on that topic (an HTTP status other than 200)."""


class Stream:
    """An open event stream of ``topic`` (``""``: all); :meth:`close` it (from any thread) to stop.

    ``PluginError`` (one line naming the plugin) if it cannot be opened; :class:`NoEvents`
    if the plugin answers but publishes nothing there.
    """

    def __init__(self, transport: Transport, topic: str) -> None:
        self.topic = topic
        self.label = f"plugin {transport.name!r} at {transport.address}"
        # One-line errors: not running, stale socket, refused.
        self._connection: http.client.HTTPConnection = transport.connection()
        # Kept: a stream without a length (read until closed) takes the socket from the connection.
        self._sock = self._connection.sock
        query = urllib.parse.urlencode({"topic": topic})
        try:
            headers = {**transport.headers, "Accept": "text/event-stream"}
            self._connection.request("GET", f"/events?{query}", headers=headers)
            self._response = self._connection.getresponse()
        except (OSError, http.client.HTTPException) as error:
            self.close()
            raise spi.PluginError(f"{self.label}: cannot subscribe to {topic or '.'}: {error}") from None
        if self._response.status != 200:  # 404, or 405 from a server that knows only POST
            text = self._response.read(4096).decode("utf-8", "replace").strip()
            self.close()
            if self._response.status == 404 and text.startswith("invalid topic"):
                raise NoEvents(f"{self.label}: {text}")
            raise NoEvents(f"{self.label}: publishes no events (HTTP {self._response.status})")
        assert self._sock is not None
        self._sock.settimeout(None)  # events come when they come; the kernel tells of a dead peer

    def data(self) -> Iterator[bytes | None]:
        """Each event's ``data`` (``None``: one too long to read) until the stream ends.

        ``OSError`` if the connection breaks, ``PluginError`` if the stream is not chunked HTTP.
        """
        # The raw stream (http.client's own chunked reading does not take a stream that
        # never ends), de-chunked here.
        reader = EventReader(chunked=bool(self._response.chunked))
        while True:
            chunk = self._response.fp.read1(CHUNK) if self._response.fp is not None else b""
            if not chunk:
                return
            yield from reader.feed(chunk)

    def __iter__(self) -> Iterator[Mapping[str, Any]]:
        """The events decoded, until the stream ends or is closed (one it cannot read is skipped)."""
        found = self.data()
        while True:
            try:
                data = next(found)
            except (StopIteration, OSError, ValueError, AttributeError):
                return  # ended, or closed (by close(), or the daemon stopped)
            except spi.PluginError as error:
                raise spi.PluginError(f"{self.label}: {error}") from None
            event = decode(data)  # None: too deep, too long, not JSON: not ours to guess at
            if event is not None:
                yield event

    def interrupt(self) -> None:
        """End the stream from another thread: a blocked read returns (the reader then closes it)."""
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.interrupt()
        self._connection.close()
        if self._sock is not None:
            self._sock.close()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def subscribe(*, address: str, topic: str, name: str, connect_timeout: float = 5.0) -> Stream:
    """Open the stream of ``topic`` (``""``: all) of the plugin at ``address``; raise ``PluginError``."""
    return Stream(Transport(address=address, name=name, connect_timeout=connect_timeout), topic)


class _Dechunker:
    """HTTP/1.1 chunked transfer coding, decoded incrementally: a chunk's bytes as they come.

    Only the chunk-size line is ever buffered (bounded), never a whole chunk, so a peer
    announcing a chunk of 2^60 bytes costs nothing but the bytes it actually sends.
    """

    def __init__(self) -> None:
        self.pending = b""
        self.left = 0  # bytes of the current chunk still to come, its closing CRLF included

    def feed(self, data: bytes) -> bytes:
        self.pending += data
        out = []
        while self.pending:
            if self.left > 0:
                taken = min(self.left, len(self.pending))
                out.append(self.pending[: min(taken, max(0, self.left - 2))])  # the data, not the CRLF
                self.pending = self.pending[taken:]
                self.left -= taken
                continue
            line_end = self.pending.find(b"\r\n")
            if line_end < 0:
                if len(self.pending) > _MAX_CHUNK_LINE:
                    raise spi.PluginError("the event stream is not valid chunked HTTP (a chunk-size line never ends)")
                break
            try:
                size = int(self.pending[:line_end].split(b";", 1)[0].strip() or b"0", 16)
            except ValueError:
                raise spi.PluginError("the event stream is not valid chunked HTTP") from None
            if size == 0:  # the last chunk: the stream is over
                self.pending = b""
                break
            self.pending = self.pending[line_end + 2 :]
            self.left = size + 2
        return b"".join(out)


class EventReader:
    """Server-sent events out of a stream's bytes: :meth:`feed` gives each event's ``data``.

    An event without ``data`` lines (a comment, a keep-alive) gives nothing; one longer
    than :data:`~infrakit.rpc.wire.MAX_EVENT` gives ``None`` once and its remaining bytes
    are dropped as they come.
    """

    def __init__(self, *, chunked: bool) -> None:
        self._body = _Dechunker() if chunked else None
        self._buffer = b""
        self._skipping = False

    def feed(self, chunk: bytes) -> list[bytes | None]:
        data = self._body.feed(chunk) if self._body is not None else chunk
        found: list[bytes | None] = []
        if self._skipping:
            # The end of an event is a blank line; a "\r" or "\n" kept back may start one.
            self._buffer = (self._buffer + data).replace(b"\r\n", b"\n")
            end = self._buffer.find(b"\n\n")
            if end < 0:
                self._buffer = self._buffer[-1:]
                return found
            self._skipping = False
            data, self._buffer = self._buffer[end + 2 :], b""
        *blocks, self._buffer = (self._buffer + data).replace(b"\r\n", b"\n").split(b"\n\n")
        for block in blocks:
            if len(block) > wire.MAX_EVENT:
                found.append(None)
                continue
            lines = [line[5:].strip() for line in block.split(b"\n") if line.startswith(b"data:")]
            if lines:
                found.append(b"\n".join(lines))
        if len(self._buffer) > wire.MAX_EVENT:
            found.append(None)
            self._skipping = True
            self._buffer = self._buffer[-1:]
        return found


def decode(data: bytes | None) -> Mapping[str, Any] | None:
    """One event's JSON object (InfraKit's ``event.Event``), or ``None`` if it is not one we read."""
    if data is None:
        return None
    try:
        event = wire.loads(data)
    except wire.ParseError:
        return None
    return event if isinstance(event, Mapping) else None
