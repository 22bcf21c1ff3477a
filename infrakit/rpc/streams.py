"""Reading a plugin's event stream (``GET /events?topic=``), as InfraKit's broker client does.

A blocking iterator of decoded events (InfraKit's ``event.Event`` JSON: ``Topic``,
``Type``, ``ID``, ``Timestamp``, ``Data``) from one plugin address, for the CLI's
``event tail``.  The server frames each event as a server-sent event (``data: <JSON>``
and a blank line, :mod:`infrakit.rpc.server`), chunked: the chunks are decoded here as
the change-feed watcher does (:mod:`infrakit.rpc.client`).  Standard library only.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import urllib.parse
from collections.abc import Iterator, Mapping
from typing import Any, Final

from infrakit.plugins import spi
from infrakit.rpc import client

__all__ = ["Stream", "subscribe"]

_CHUNK: Final = 1 << 16


class Stream:
    """An open event stream; iterate for events, :meth:`close` (from any thread) to stop."""

    def __init__(self, *, address: str, topic: str, name: str, connect_timeout: float = 5.0) -> None:
        self.address = address
        self.topic = topic
        self.label = f"plugin {name!r} at {address}"
        transport = client.Transport(address=address, name=name, connect_timeout=connect_timeout)
        unix = address.removeprefix("unix://") if not address.startswith(("tcp://", "http://")) else None
        if unix is not None:
            self._connection: http.client.HTTPConnection = client._UnixConnection(unix, timeout=connect_timeout)
        else:
            host, port = transport._host, transport._port
            self._connection = http.client.HTTPConnection(host, port, timeout=connect_timeout)
        transport._connect(self._connection)  # one-line errors: not running, stale socket, refused
        query = urllib.parse.urlencode({"topic": topic})
        try:
            self._connection.request("GET", f"/events?{query}", headers={"Accept": "text/event-stream"})
            self._response = self._connection.getresponse()
        except (OSError, http.client.HTTPException) as error:
            self.close()
            raise spi.PluginError(f"{self.label}: cannot subscribe to {topic or '.'}: {error}") from None
        if self._response.status != 200:
            text = self._response.read(4096).decode("utf-8", "replace").strip()
            self.close()
            if self._response.status == 404 and text.startswith("invalid topic"):
                raise spi.PluginError(f"{self.label}: {text}")
            raise spi.PluginError(f"{self.label}: publishes no events (HTTP {self._response.status})")
        assert self._connection.sock is not None
        self._connection.sock.settimeout(None)  # events come when they come

    def __iter__(self) -> Iterator[Mapping[str, Any]]:
        body = client._Dechunker() if self._response.chunked else None
        buffer = b""
        while True:
            try:
                chunk = self._response.fp.read1(_CHUNK) if self._response.fp is not None else b""
            except (OSError, ValueError, AttributeError):
                return  # closed (by close(), or the daemon stopped)
            if not chunk:
                return
            buffer += body.feed(chunk) if body is not None else chunk
            *blocks, buffer = buffer.replace(b"\r\n", b"\n").split(b"\n\n")
            for block in blocks:
                data = b"\n".join(line[5:].strip() for line in block.split(b"\n") if line.startswith(b"data:"))
                if not data:
                    continue
                try:
                    event = json.loads(data)
                except ValueError:
                    continue  # not ours to guess at
                if isinstance(event, Mapping):
                    yield event

    def close(self) -> None:
        sock = self._connection.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes a blocked read
        self._connection.close()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def subscribe(*, address: str, topic: str, name: str, connect_timeout: float = 5.0) -> Stream:
    """Open the stream of ``topic`` (``""``: all) of the plugin at ``address``; raise ``PluginError``."""
    return Stream(address=address, topic=topic, name=name, connect_timeout=connect_timeout)
