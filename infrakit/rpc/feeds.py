"""A remote instance plugin's change feed: its daemon's change events, else polling.

:class:`Watcher` is the thread behind :meth:`RemoteInstancePlugin.changes
<infrakit.rpc.client.RemoteInstancePlugin.changes>`: the daemon's ``instance/changes``
events (:data:`~infrakit.rpc.wire.CHANGES_TOPIC`, read by :class:`infrakit.rpc.streams.Stream`,
the one client of event streams) when it publishes them, else a describe every
:data:`~infrakit.rpc.client.POLL_INTERVAL`.  Standard library only (the client path
stays cheap).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Final

from infrakit.rpc import streams, wire

if TYPE_CHECKING:
    from infrakit.rpc import client

__all__ = ["Watcher"]

log = logging.getLogger(__name__)

_RECONNECT: Final = (0.05, 1.0)  # first and longest wait before re-opening a broken change feed


def _changed_ids(data: bytes | None) -> frozenset[str] | None:
    """The IDs a change event names; ``None``: anything may have changed (or we cannot tell)."""
    event = streams.decode(data)
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
        self._stream: streams.Stream | None = None  # the one being read
        self._lock = threading.Lock()

    def stop(self) -> None:
        self.stopped.set()
        with self._lock:
            stream = self._stream
        if stream is not None:
            stream.interrupt()  # wakes the blocked read; the reading thread closes it

    def run(self) -> None:
        delay = _RECONNECT[0]
        failures = 0
        while not self.stopped.is_set():
            try:
                connected = self._stream_changes()
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

    def _stream_changes(self) -> bool | None:
        """Read the event stream until it ends; whether it was opened (``None``: there is none)."""
        try:
            stream = streams.Stream(self.plugin.transport, wire.CHANGES_TOPIC)
        except streams.NoEvents:
            return None
        with self._lock:
            self._stream = stream
        try:
            if self.stopped.is_set() or not self.emit(None):
                return True
            for data in stream.data():
                if self.stopped.is_set() or not self.emit(_changed_ids(data)):
                    return True
            return True
        finally:
            with self._lock:
                self._stream = None
            stream.close()

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
