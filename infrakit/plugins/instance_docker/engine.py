"""The Docker Engine API, over its socket, with the standard library: bounded calls, one-line errors.

Why not the ``docker`` SDK: it brings ``requests`` and ``urllib3`` (about 60 ms more to
import, for a plugin that ``infrakit-local`` may build just to list), its streaming calls
(events, pulls, exec output) cannot be given a deadline for the whole answer, and what
this plugin needs is a dozen JSON endpoints.  ``http.client`` speaks them over a unix
socket or TCP in a few lines, with the bounds this project puts on every peer: a
connect timeout, a deadline per call, a size limit on every answer.

:class:`Engine` is thread-safe (a small pool of kept-open connections).  Its failures are
:class:`~infrakit.plugins.spi.PluginUnavailable` when the engine cannot be reached (no
socket, refused, reset, timed out: its groups say ``PluginUnavailable``), else
:class:`EngineError` carrying Docker's HTTP status and its own message, on one line.
Addresses are ``DOCKER_HOST``'s: ``unix:///path``, ``tcp://host:port`` (TLS when
``$DOCKER_TLS_VERIFY`` is set, with the certificates of ``$DOCKER_CERT_PATH``, as the
docker CLI), or a bare socket path.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final

from infrakit.plugins import spi
from infrakit.unixhttp import Kept, UnixHTTPConnection

if TYPE_CHECKING:
    import asyncio
    import ssl

__all__ = ["DEFAULT_URL", "DEFAULT_VERSION", "Engine", "EngineError", "default_url"]

DEFAULT_URL: Final = "unix:///var/run/docker.sock"
DEFAULT_VERSION: Final = "1.25"  # InfraKit v0.5's; Docker 17.03 and later serve it
CONNECT_TIMEOUT: Final = 5.0
CALL_TIMEOUT: Final = 60.0  # seconds for one whole answer (a create, a start, a remove)
MAX_ANSWER: Final = 32 << 20  # bytes: a listing of thousands of containers fits
MAX_LINE: Final = 1 << 20  # bytes of one line of a stream (an event, a pull progress line)
_POOL: Final = 8
_REUSE: Final = 10.0  # seconds a kept connection may idle and still be used


def default_url() -> str:
    """``$DOCKER_HOST``, else Docker's default socket."""
    return os.environ.get("DOCKER_HOST") or DEFAULT_URL


class EngineError(spi.PluginError):
    """Docker answered with an error: ``status`` is the HTTP status, ``message`` Docker's words."""

    def __init__(self, text: str, *, status: int, message: str) -> None:
        super().__init__(text)
        self.status = status
        self.message = message


class Engine:
    """One Docker engine, at ``url`` (``DOCKER_HOST``'s forms), spoken to in API ``version``."""

    def __init__(self, url: str | None = None, *, version: str = DEFAULT_VERSION) -> None:
        self.url = url or default_url()
        self.version = version.removeprefix("v")
        if self.version and not all(part.isdigit() for part in self.version.split(".")):
            raise spi.PluginError(f"--version {version!r}: not a Docker API version (such as 1.25)")
        self._unix: str | None = None
        self._host, self._port = "", 0
        self._tls: ssl.SSLContext | None = None
        parsed = urllib.parse.urlsplit(self.url if "://" in self.url else f"unix://{self.url}")
        if parsed.scheme == "unix":
            self._unix = parsed.path or parsed.netloc
        elif parsed.scheme in ("tcp", "http", "https"):
            try:
                self._host, self._port = parsed.hostname or "127.0.0.1", parsed.port or 2375
            except ValueError:
                raise spi.PluginError(f"Docker URL {self.url}: not host:port") from None
            if parsed.scheme == "https" or os.environ.get("DOCKER_TLS_VERIFY"):
                self._tls = _tls_context()
        else:
            raise spi.PluginError(
                f"Docker URL {self.url}: unsupported scheme {parsed.scheme!r}; use unix:///path or tcp://host:port"
            )
        self._kept = Kept(size=_POOL, reuse=_REUSE)

    def __repr__(self) -> str:
        return f"Engine({self.url})"

    def close(self) -> None:
        self._kept.close()

    # -- calls ------------------------------------------------------------------------------

    def get(self, path: str, *, query: Mapping[str, Any] | None = None, timeout: float = CALL_TIMEOUT) -> Any:
        return self.call("GET", path, query=query, timeout=timeout)

    def post(
        self, path: str, body: Any = None, *, query: Mapping[str, Any] | None = None, timeout: float = CALL_TIMEOUT
    ) -> Any:
        return self.call("POST", path, body=body, query=query, timeout=timeout)

    def delete(self, path: str, *, query: Mapping[str, Any] | None = None, timeout: float = CALL_TIMEOUT) -> Any:
        return self.call("DELETE", path, query=query, timeout=timeout)

    def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        raw: bytes | None = None,
        content_type: str = "application/json",
        query: Mapping[str, Any] | None = None,
        timeout: float = CALL_TIMEOUT,
        decode: bool = True,
    ) -> Any:
        """Docker's JSON answer (None for an empty one; the bytes unless ``decode``); raise
        ``EngineError`` or ``PluginUnavailable``."""
        target = self._target(path, query)
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode("utf-8"))
        headers = {"Content-Type": content_type} if data is not None else {}
        for attempt in range(2):
            connection, reused = self._take(timeout)
            deadline = time.monotonic() + timeout
            try:
                connection.request(method, target, body=data, headers=headers)
                response = connection.getresponse()
                answer = _read(response, deadline=deadline, limit=MAX_ANSWER, connection=connection)
            except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected) as error:
                connection.close()
                if attempt == 0 and reused:
                    continue  # a kept connection the engine had closed: once more, on a fresh one
                raise self._unavailable(f"{method} {path}: the connection closed ({_describe(error)})") from None
            except TimeoutError:
                connection.close()
                raise spi.PluginUnavailable(
                    f"Docker engine at {self.url}: {method} {path}: no answer within {timeout:g} s"
                ) from None
            except OSError as error:
                connection.close()
                raise self._unavailable(f"{method} {path}: {_describe(error)}") from None
            except http.client.HTTPException as error:
                connection.close()
                raise spi.PluginError(f"Docker engine at {self.url}: {method} {path}: not HTTP ({error!r})") from None
            if response.will_close:
                connection.close()
            else:
                self._kept.give(connection)
            if not decode and response.status < 300:
                return answer
            return self._result(method, path, response.status, answer)
        raise AssertionError("unreachable")  # pragma: no cover

    def stream(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: Mapping[str, Any] | None = None,
        timeout: float,
        headers: Mapping[str, str] | None = None,
    ) -> Iterator[bytes]:
        """The lines of a streamed answer (a pull's progress, an exec's output), each at most
        :data:`MAX_LINE` bytes, until it ends or ``timeout`` seconds pass (``PluginError``)."""
        connection = self._new(timeout)
        deadline = time.monotonic() + timeout
        try:
            try:
                data = None if body is None else json.dumps(body).encode("utf-8")
                sent = {**(headers or {}), **({"Content-Type": "application/json"} if data is not None else {})}
                connection.request(method, self._target(path, query), body=data, headers=sent)
                response = connection.getresponse()
            except TimeoutError:  # the engine answers a pull only once it has reached the registry
                raise spi.PluginError(
                    f"Docker engine at {self.url}: {method} {path}: not done within {timeout:g} s"
                ) from None
            except (OSError, http.client.HTTPException) as error:
                raise self._unavailable(f"{method} {path}: {_describe(error)}") from None
            if response.status >= 300:
                answer = _read(response, deadline=deadline, limit=MAX_ANSWER, connection=connection)
                self._result(method, path, response.status, answer)
            pending = b""
            while True:
                _arm(connection, deadline, what=f"{method} {path}")
                try:
                    chunk = response.read1(1 << 16)
                except TimeoutError:
                    raise spi.PluginError(
                        f"Docker engine at {self.url}: {method} {path}: not done within {timeout:g} s"
                    ) from None
                except (OSError, http.client.HTTPException) as error:
                    raise self._unavailable(f"{method} {path}: the stream broke ({_describe(error)})") from None
                if not chunk:
                    if pending:
                        yield pending
                    return
                *lines, pending = (pending + chunk).split(b"\n")
                yield from (line for line in lines if line.strip())
                if len(pending) > MAX_LINE:
                    raise spi.PluginError(f"Docker engine at {self.url}: {method} {path}: a line over {MAX_LINE} bytes")
        finally:
            connection.close()

    async def open_stream(
        self, path: str, *, query: Mapping[str, Any] | None = None
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Open a never-ending GET (the events), past its headers: its lines are then read as they come.

        HTTP/1.0, so the body comes as it is written, neither chunked nor with a length; a
        line may be at most :data:`MAX_LINE` bytes.  ``PluginUnavailable`` if the engine cannot
        be reached, ``PluginError`` if it refuses.
        """
        import asyncio

        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                if self._unix is not None:
                    reader, writer = await asyncio.open_unix_connection(self._unix, limit=MAX_LINE)
                else:
                    reader, writer = await asyncio.open_connection(
                        self._host, self._port, ssl=self._tls, limit=MAX_LINE
                    )
        except (TimeoutError, OSError) as error:
            raise self._unavailable(f"GET {path}: cannot connect ({_describe(error)})") from None
        try:
            async with asyncio.timeout(CALL_TIMEOUT):
                writer.write(f"GET {self._target(path, query)} HTTP/1.0\r\nHost: docker\r\n\r\n".encode("ascii"))
                await writer.drain()
                first = await reader.readline()
                while (await reader.readline()).strip():
                    pass  # the headers
        except (TimeoutError, OSError, ValueError, asyncio.IncompleteReadError) as error:
            writer.close()
            raise self._unavailable(f"GET {path}: no answer ({_describe(error)})") from None
        status = first.split(b" ")
        if len(status) < 2 or status[1] != b"200":
            writer.close()
            text = first.decode("latin-1").strip() or "the connection closed"
            raise spi.PluginError(f"Docker engine at {self.url}: GET {path}: {text}")
        return reader, writer

    # -- connections ------------------------------------------------------------------------

    def _target(self, path: str, query: Mapping[str, Any] | None) -> str:
        prefix = f"/v{self.version}" if self.version else ""
        encoded = urllib.parse.urlencode({k: v for k, v in (query or {}).items() if v is not None})
        return f"{prefix}{path}" + (f"?{encoded}" if encoded else "")

    def _socket(self, timeout: float) -> socket.socket:
        try:
            if self._unix is not None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(timeout)
                try:
                    sock.connect(self._unix)
                except BaseException:
                    sock.close()
                    raise
                return sock
            plain = socket.create_connection((self._host, self._port), timeout=timeout)
            if self._tls is None:
                return plain
            return self._tls.wrap_socket(plain, server_hostname=self._host)
        except (TimeoutError, OSError) as error:
            raise self._unavailable(f"cannot connect ({_describe(error)})") from None

    def _new(self, timeout: float) -> http.client.HTTPConnection:
        connection: http.client.HTTPConnection
        if self._unix is not None:
            connection = UnixHTTPConnection(self._unix, host="docker", timeout=min(timeout, CONNECT_TIMEOUT))
        elif self._tls is not None:
            connection = http.client.HTTPSConnection(
                self._host, self._port, timeout=min(timeout, CONNECT_TIMEOUT), context=self._tls
            )
        else:
            connection = http.client.HTTPConnection(self._host, self._port, timeout=min(timeout, CONNECT_TIMEOUT))
        try:
            connection.connect()
        except (TimeoutError, OSError) as error:
            connection.close()
            raise self._unavailable(f"cannot connect ({_describe(error)})") from None
        if connection.sock is not None:
            connection.sock.settimeout(timeout)
        return connection

    def _take(self, timeout: float) -> tuple[http.client.HTTPConnection, bool]:
        connection = self._kept.take(lambda kept: kept.sock is not None)
        if connection is None:
            return self._new(timeout), False
        assert connection.sock is not None
        connection.sock.settimeout(timeout)
        return connection, True

    def _unavailable(self, what: str) -> spi.PluginUnavailable:
        hint = ""
        if self._unix is not None and not os.path.exists(self._unix):
            hint = ": no socket there; is dockerd running? (set DOCKER_HOST or --url to its address)"
        return spi.PluginUnavailable(f"Docker engine at {self.url}: {what}{hint}")

    def _result(self, method: str, path: str, status: int, answer: bytes) -> Any:
        if status >= 300:
            message = _message(answer)
            raise EngineError(
                f"Docker engine at {self.url}: {method} {path}: {status} {message}", status=status, message=message
            )
        if not answer.strip():
            return None
        try:
            return json.loads(answer)
        except ValueError:
            return answer.decode("utf-8", "replace")


def _read(
    response: http.client.HTTPResponse, *, deadline: float, limit: int, connection: http.client.HTTPConnection
) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        _arm(connection, deadline, what="the answer")
        chunk = response.read1(1 << 16)
        if not chunk or response.length == 0:
            chunks.append(chunk)
            # Read to its length, a response is not marked done (read1 of 0 bytes never is):
            # closing it frees the connection for the next request.
            response.close()
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise spi.PluginError(f"the Docker engine's answer is larger than {limit >> 20} MiB")
        chunks.append(chunk)


def _arm(connection: http.client.HTTPConnection, deadline: float, *, what: str) -> None:
    """Give the next read what is left of the deadline (``TimeoutError`` if nothing is)."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError(what)
    if connection.sock is not None:
        connection.sock.settimeout(remaining)


def _message(answer: bytes) -> str:
    """Docker's own error text (``{"message": ...}``), on one line, bounded."""
    text = answer.decode("utf-8", "replace")
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    if isinstance(document, dict) and isinstance(document.get("message"), str):
        text = document["message"]
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:297] + "..."


def _describe(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "timed out"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__


def _tls_context() -> ssl.SSLContext:
    """As the docker CLI: ``$DOCKER_CERT_PATH`` (default ``~/.docker``) holds ca.pem, cert.pem, key.pem."""
    import ssl

    directory = os.environ.get("DOCKER_CERT_PATH") or os.path.expanduser("~/.docker")
    try:
        context = ssl.create_default_context(cafile=os.path.join(directory, "ca.pem"))
        context.load_cert_chain(os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem"))
    except (OSError, ssl.SSLError) as error:
        raise spi.PluginError(
            f"$DOCKER_TLS_VERIFY is set, but the certificates in {directory} (ca.pem, cert.pem, key.pem) "
            f"cannot be used: {_describe(error)}; set DOCKER_CERT_PATH"
        ) from None
    return context
