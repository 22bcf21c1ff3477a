"""HTTP/1.1 over a unix socket: the one connection class of the plugin transport and the Docker engine client."""

from __future__ import annotations

import http.client
import socket


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
