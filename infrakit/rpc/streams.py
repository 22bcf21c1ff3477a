"""Reading a plugin's event stream (``GET /events?topic=``), as InfraKit's broker client does.

A blocking iterator of decoded events (InfraKit's ``event.Event`` JSON: ``Topic``,
``Type``, ``ID``, ``Timestamp``, ``Data``) from one plugin address, for the CLI's
``event tail``.  The server frames each event as a server-sent event (``data: <JSON>``
and a blank line, :mod:`infrakit.rpc.server`), chunked: the chunks are decoded here as
the change-feed watcher does (:mod:`infrakit.rpc.feeds`: bounded, never a traceback).  Standard library only.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import urllib.parse
from collections.abc import Iterator, Mapping
from typing import Any

from infrakit.plugins import spi
from infrakit.rpc import client, feeds

__all__ = ["Stream", "subscribe"]


class Stream:
    """An open event stream; iterate for events, :meth:`close` (from any thread) to stop."""

    def __init__(self, *, address: str, topic: str, name: str, connect_timeout: float = 5.0) -> None:
        self.address = address
        self.topic = topic
        self.label = f"plugin {name!r} at {address}"
        transport = client.Transport(address=address, name=name, connect_timeout=connect_timeout)
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
        if self._response.status != 200:
            text = self._response.read(4096).decode("utf-8", "replace").strip()
            self.close()
            if self._response.status == 404 and text.startswith("invalid topic"):
                raise spi.PluginError(f"{self.label}: {text}")
            raise spi.PluginError(f"{self.label}: publishes no events (HTTP {self._response.status})")
        assert self._sock is not None
        self._sock.settimeout(None)  # events come when they come

    def __iter__(self) -> Iterator[Mapping[str, Any]]:
        reader = feeds.EventReader(chunked=bool(self._response.chunked))
        while True:
            try:
                chunk = self._response.fp.read1(feeds.CHUNK) if self._response.fp is not None else b""
                found = reader.feed(chunk)
            except (OSError, ValueError, AttributeError):
                return  # closed (by close(), or the daemon stopped)
            except spi.PluginError as error:
                raise spi.PluginError(f"{self.label}: {error}") from None
            if not chunk:
                return
            for data in found:
                event = feeds.decode(data)  # None: too deep, too long, not JSON: not ours to guess at
                if event is not None:
                    yield event

    def close(self) -> None:
        sock = self._sock
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
