"""Reading a plugin's event stream: chunked HTTP and server-sent events, bounded; change feeds.

A daemon publishes events as server-sent events (``data: <JSON>`` and a blank line per
event, :mod:`infrakit.rpc.publishing`) in a response that never ends, chunked.
:class:`EventReader` turns the raw bytes into the ``data`` of each event, as they come,
holding at most :data:`~infrakit.rpc.wire.MAX_EVENT` bytes of an event: a longer one is
skipped unread (reported as ``None``), so a peer that never ends an event cannot fill
the memory.  :func:`decode` parses one event (``None`` for one we cannot read: never a
``RecursionError``).  Both ``event tail`` (:mod:`infrakit.rpc.streams`) and
:class:`Watcher` use them.

:class:`Watcher` is the thread behind :meth:`RemoteInstancePlugin.changes
<infrakit.rpc.client.RemoteInstancePlugin.changes>`: the daemon's change events when it
publishes them, else a describe every :data:`~infrakit.rpc.client.POLL_INTERVAL`.
Standard library only (the client path stays cheap).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

from infrakit.plugins import spi
from infrakit.rpc import wire

if TYPE_CHECKING:
    from infrakit.rpc import client

__all__ = ["CHUNK", "EventReader", "Watcher", "decode"]

log = logging.getLogger(__name__)

CHUNK: Final = 1 << 16  # bytes read at a time from a stream
_MAX_CHUNK_LINE: Final = 1024  # a chunk-size line is a few hex digits
_RECONNECT: Final = (0.05, 1.0)  # first and longest wait before re-opening a broken change feed


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


def _changed_ids(data: bytes | None) -> frozenset[str] | None:
    """The IDs a change event names; ``None``: anything may have changed (or we cannot tell)."""
    event = decode(data)
    payload = wire.field(event, "Data") if event is not None else None
    ids = wire.field(payload, "IDs") if isinstance(payload, Mapping) else None
    if isinstance(ids, list) and all(isinstance(i, str) for i in ids):
        return frozenset(ids)
    return None


class Watcher:
    """The thread behind :meth:`RemoteInstancePlugin.changes`: an event stream, or polling.

    A stream that breaks (the daemon was killed) is re-opened with a bounded backoff;
    each (re)connection yields ``None`` (anything may have changed meanwhile).
    """

    def __init__(
        self, plugin: client.RemoteInstancePlugin, *, emit: Callable[[frozenset[str] | None], bool], poll: float
    ) -> None:
        self.plugin = plugin
        self.emit = emit
        self.poll = poll
        self.stopped = threading.Event()
        self._sock: socket.socket | None = None  # of the stream being read
        self._lock = threading.Lock()

    def stop(self) -> None:
        self.stopped.set()
        with self._lock:
            sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked read

    def run(self) -> None:
        delay = _RECONNECT[0]
        failures = 0
        while not self.stopped.is_set():
            try:
                connected = self._stream()
                if connected is None:  # the plugin publishes no change events
                    connected = self._poll()
                if connected:
                    delay, failures = _RECONNECT[0], 0
                    if not self.stopped.is_set():
                        # The stream ended: the daemon may be gone. Its groups look now (and
                        # say PluginUnavailable if it is), not at their next poll.
                        self.emit(None)
            except Exception as error:  # a dead daemon, a malformed stream: try again, never give up
                failures += 1
                if failures == 1:
                    log.info("change feed of plugin %r: %s (retrying)", self.plugin.name, error)
                    self.emit(None)  # its groups look now: their status says what is wrong
            self.stopped.wait(delay)
            delay = min(delay * 2, _RECONNECT[1])

    def _stream(self) -> bool | None:
        """Read the event stream until it ends; whether it was opened (``None``: there is none)."""
        transport = self.plugin.transport
        connection = transport.connection()
        # Kept: a stream without a length (read until closed) takes the socket from the connection.
        sock = connection.sock
        assert sock is not None
        with self._lock:
            self._sock = sock
        try:
            if self.stopped.is_set():
                return False
            headers = {**transport.headers, "Accept": "text/event-stream"}
            connection.request("GET", f"/events?topic={wire.CHANGES_TOPIC}", headers=headers)
            response = connection.getresponse()
            if response.status != 200:  # 404, or 405 from a server that knows only POST: no events
                return None
            sock.settimeout(None)  # events come when they come; the kernel tells of a dead peer
            if not self.emit(None):
                return True
            reader = EventReader(chunked=bool(response.chunked))
            while not self.stopped.is_set():
                # The raw stream (http.client's own chunked reading does not take a stream
                # that never ends), de-chunked here.
                chunk = response.fp.read1(CHUNK) if response.fp is not None else b""
                if not chunk:
                    return True
                for data in reader.feed(chunk):
                    if not self.emit(_changed_ids(data)):
                        return True
            return True
        finally:
            with self._lock:
                self._sock = None
            connection.close()
            sock.close()

    def _poll(self) -> bool:
        """Describe every ``poll`` seconds, telling what differs; until a failure."""
        seen: dict[str, Mapping[str, str]] | None = None
        while not self.stopped.is_set():
            now = {d.id: d.tags for d in self.plugin.describe({})}
            if seen is None:
                if not self.emit(None):
                    return True
            else:
                changed = {i for i in now.keys() | seen.keys() if now.get(i) != seen.get(i)}
                if changed and not self.emit(frozenset(changed)):
                    return True
            seen = now
            self.stopped.wait(self.poll)
        return True
