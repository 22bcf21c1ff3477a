"""HTTP/1.1 over a unix socket, and idle connections kept for reuse (the plugin transport, the Docker client)."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Callable


class UnixHTTPConnection(http.client.HTTPConnection):
    """An :class:`http.client.HTTPConnection` to the unix socket at ``path``.

    ``host`` is only what the ``Host`` header says (a unix socket has no host name): each peer
    expects its own (Docker's client sends ``docker``, InfraKit's plugins ``localhost``).
    """

    def __init__(self, path: str, *, host: str = "localhost", timeout: float) -> None:
        super().__init__(host, timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.unix_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class Kept:
    """Idle HTTP connections kept for reuse (thread-safe): at most ``size``, each for ``reuse`` seconds.

    :meth:`take` gives the most recently kept connection still fit for use (``usable`` says
    whether the peer may still be listening on it), closing the stale ones it passes; ``None``
    when there is none, so the caller connects anew.  :meth:`give` keeps one, or closes it
    when ``size`` are kept already.
    """

    def __init__(self, *, size: int, reuse: float) -> None:
        self.size = size
        self.reuse = reuse
        self._idle: list[tuple[http.client.HTTPConnection, float]] = []
        self._lock = threading.Lock()

    def take(self, usable: Callable[[http.client.HTTPConnection], bool]) -> http.client.HTTPConnection | None:
        while True:
            with self._lock:
                if not self._idle:
                    return None
                connection, since = self._idle.pop()
            if time.monotonic() - since < self.reuse and usable(connection):
                return connection
            connection.close()

    def give(self, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._idle) < self.size:
                self._idle.append((connection, time.monotonic()))
                return
        connection.close()

    def close(self) -> None:
        """Close every kept connection (the owner stays usable: it connects again)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for connection, _ in idle:
            connection.close()
