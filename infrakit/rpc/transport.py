"""One plugin address, called over JSON-RPC: connections, requests, answers (standard library only).

A :class:`Transport` makes JSON-RPC calls to one plugin daemon (a unix socket, or
``tcp://host:port``) over HTTP/1.1 connections it keeps open and reuses (a small pool,
so threads do not queue), checking a kept connection is still open (and not idle so
long the plugin may be closing it) before reusing it, and retrying once on a fresh one
only what is safe to repeat (describe, validate, health, handshake).  Every failure is
one :class:`~infrakit.plugins.spi.PluginError` line naming the plugin, its address and
what happened: a missing or stale socket, a refused connection, a timeout (connecting,
and a deadline for the whole answer: never a hang), a connection closed mid-answer, an
HTTP error, an answer that is not JSON (or nests too deep: :func:`~infrakit.rpc.wire.loads`)
or not JSON-RPC, or the plugin's own JSON-RPC error (:class:`RemoteError`, verbatim).
Params JSON cannot carry (NaN, a lone surrogate) are never sent.  A TCP plugin is sent
the token of ``$INFRAKIT_TOKEN_FILE`` when set (:func:`read_token`).
:mod:`infrakit.rpc.client` builds the SPI clients on it.
"""

from __future__ import annotations

import errno
import http.client
import itertools
import json
import os
import select
import time
from collections.abc import Mapping
from typing import Any, Final

from infrakit.core import specs
from infrakit.plugins import spi
from infrakit.rpc import wire
from infrakit.unixhttp import Kept, UnixHTTPConnection

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "MIN_TOKEN",
    "TOKEN_ENV",
    "RemoteError",
    "Transport",
    "read_token",
]

TOKEN_ENV: Final = "INFRAKIT_TOKEN_FILE"  # noqa: S105 - the name of a variable, not a secret
"""A file holding the token TCP daemons started with ``--token-file`` require (sent to every TCP plugin)."""
MIN_TOKEN: Final = 16  # characters: a token is a secret, not a password to remember
_MAX_TOKEN_FILE: Final = 4096

DEFAULT_CONNECT_TIMEOUT: Final = 5.0  # seconds to open a connection
DEFAULT_TIMEOUT: Final = 120.0  # seconds for a whole answer (cloud provisioning can be slow)


_MAX_ANSWER: Final = 64 << 20
_POOL: Final = 8  # idle connections kept per plugin
_REUSE: Final = 15.0  # seconds a kept connection may be idle and still be reused
_CHUNK: Final = 1 << 16
# Methods that change nothing: repeated on a fresh connection if a kept one died under them.
_IDEMPOTENT: Final = frozenset(
    {
        "Instance.Validate",
        "Instance.DescribeInstances",
        "Flavor.Validate",
        "Flavor.Prepare",
        "Flavor.Healthy",
        wire.HANDSHAKE_IMPLEMENTS,
        wire.HANDSHAKE_TYPES,
        "Group.DescribeGroup",
        "Group.InspectGroups",
        "Metadata.List",
        "Metadata.Get",
    }
)


class RemoteError(spi.PluginError):
    """The plugin answered with a JSON-RPC error object (``message`` is its text)."""

    def __init__(self, prefix: str, *, code: Any, message: str, data: Any) -> None:
        super().__init__(f"{prefix}: {message}")
        self.code = code
        self.message = message
        self.data = data


class _Broken(Exception):
    """A connection failed; ``retry`` says whether the request surely did not reach the plugin,
    ``garbled`` that the plugin answered, but not as a plugin answers (else the connection
    went: the plugin is unavailable, for now)."""

    def __init__(self, message: str, *, retry: bool, garbled: bool = False) -> None:
        super().__init__(message)
        self.retry = retry
        self.garbled = garbled


def read_token(path: str | os.PathLike[str]) -> str:
    """The token in ``path`` (one line, at least :data:`MIN_TOKEN` characters); ``ValueError`` saying why not."""
    try:
        with open(path, "rb") as stream:
            raw = stream.read(_MAX_TOKEN_FILE + 1)
    except OSError as error:
        raise ValueError(f"cannot read {path}: {error.strerror or error}") from None
    try:
        token = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not a token: printable ASCII on one line") from None
    if not token:
        raise ValueError(f"{path} is empty: write a token into it (for example: openssl rand -hex 32)")
    if len(raw) > _MAX_TOKEN_FILE or not token.isprintable() or " " in token:
        raise ValueError(f"{path} is not a token: printable ASCII on one line, without spaces")
    if len(token) < MIN_TOKEN:
        raise ValueError(f"the token in {path} is too short: at least {MIN_TOKEN} characters (openssl rand -hex 32)")
    return token


class Transport:
    """JSON-RPC calls to one plugin address over kept-open HTTP/1.1 connections (thread-safe).

    ``address`` is a unix socket path (optionally ``unix://``), ``tcp://host:port`` or
    ``http://host:port``, as :mod:`infrakit.rpc.discovery` finds them.  ``token`` is sent
    to a TCP address as ``Authorization: Bearer``; by default, the one in
    ``$INFRAKIT_TOKEN_FILE`` if set (a unix socket needs none: its directory guards it).
    """

    def __init__(
        self,
        *,
        address: str,
        name: str | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        timeout: float = DEFAULT_TIMEOUT,
        token: str | None = None,
    ) -> None:
        self.address = address
        self.name = name or address
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self._label = f"plugin {self.name!r} at {address}" if name else f"plugin at {address}"
        self._ids = itertools.count(1)
        self._kept = Kept(size=_POOL, reuse=_REUSE)
        self.headers: dict[str, str] = {}
        """Sent with every request (and stream) to the plugin."""
        self._unix: str | None = None
        self._host = ""
        self._port = 0
        if address.startswith(("tcp://", "http://")):
            hostport = address.split("://", 1)[1].rstrip("/")
            host, _, port = hostport.rpartition(":")
            try:
                self._host, self._port = host.strip("[]") or "127.0.0.1", int(port)
            except ValueError:
                raise spi.PluginError(f"{self._label}: not a host:port address") from None
            token_file = os.environ.get(TOKEN_ENV) if token is None else None
            if token_file:
                try:
                    token = read_token(token_file)
                except ValueError as error:
                    raise spi.PluginError(f"{self._label}: ${TOKEN_ENV}: {error}") from None
            if token:
                self.headers["Authorization"] = f"Bearer {token}"
        else:
            self._unix = address.removeprefix("unix://")

    def __repr__(self) -> str:
        return f"Transport({self._label})"

    def call(self, method: str, params: Mapping[str, Any]) -> Any:
        """The ``result`` of ``method``; raise ``RemoteError`` or ``PluginError``."""
        request_id = next(self._ids)
        message = {"jsonrpc": "2.0", "method": method, "params": params, "id": request_id}
        try:
            # Strictly: no NaN or infinity, and UTF-8 that refuses lone surrogates; a plugin
            # could not write such values and read them back (ours refuse them: -32602).
            body = json.dumps(message, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
        except (ValueError, TypeError):
            raise spi.PluginError(f"{self._label}: {method}: {_unsendable(params)}; not sent") from None
        for attempt in range(2):
            connection, reused = self._take()
            try:
                status, reason, data, keep = self._exchange(connection, body)
            except _Broken as broken:
                connection.close()
                if attempt == 0 and reused and (broken.retry or method in _IDEMPOTENT):
                    continue  # a kept connection the plugin had closed: once more on a fresh one
                failure = spi.PluginError if broken.garbled else spi.PluginUnavailable
                raise failure(f"{self._label}: {method}: {broken}") from None
            if keep:
                self._kept.give(connection)
            else:
                connection.close()
            return self._result(method, request_id, status, reason, data)
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        """Close the kept connections (the transport stays usable: it reconnects)."""
        self._kept.close()

    # -- connections ----------------------------------------------------------------------

    def connection(self) -> http.client.HTTPConnection:
        """A new connection to the plugin, connected (for a stream); ``PluginError`` if it cannot be."""
        connection = self._new()
        self._connect(connection)
        return connection

    def _new(self) -> http.client.HTTPConnection:
        if self._unix is not None:
            return UnixHTTPConnection(self._unix, timeout=self.connect_timeout)
        return http.client.HTTPConnection(self._host, self._port, timeout=self.connect_timeout)

    def _take(self) -> tuple[http.client.HTTPConnection, bool]:
        # Not one idle so long the plugin may be closing it as we send (ours close after 30 s).
        connection = self._kept.take(lambda kept: not _dropped(kept))
        return (self._new(), False) if connection is None else (connection, True)

    def _exchange(self, connection: http.client.HTTPConnection, body: bytes) -> tuple[int, str, bytes, bool]:
        """Send one request, read the whole answer before a deadline."""
        deadline = time.monotonic() + self.timeout
        if connection.sock is None:
            self._connect(connection)
        sock = connection.sock
        assert sock is not None
        try:
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            connection.request("POST", "/", body, {**self.headers, "Content-Type": "application/json"})
        except (TimeoutError, OSError) as error:
            # The request did not get through whole: the plugin cannot have acted on it.
            raise _Broken(f"cannot send the request ({_describe(error)})", retry=True) from None
        try:
            try:
                response = connection.getresponse()
            except http.client.RemoteDisconnected:
                raise  # a clean close: the plugin may have read the request, and acted on it
            except ConnectionResetError as error:
                # Reset before any answer: the plugin closed the connection with our request
                # unread (a kept connection it had just closed), so it did not act on it.
                raise _Broken(f"the connection was reset ({_describe(error)})", retry=True) from None
            chunks: list[bytes] = []
            size = 0
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                sock.settimeout(remaining)
                chunk = response.read(_CHUNK)
                if not chunk:
                    if response.length:  # read(amt) ends quietly at EOF short of Content-Length
                        raise http.client.IncompleteRead(b"".join(chunks), response.length)
                    break
                size += len(chunk)
                if size > _MAX_ANSWER:
                    raise _Broken(f"the answer is larger than {_MAX_ANSWER >> 20} MiB", retry=False, garbled=True)
                chunks.append(chunk)
        except TimeoutError:
            raise _Broken(
                f"no answer within {self.timeout:g} s (the call may still complete on the plugin's side)", retry=False
            ) from None
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as error:
            raise _Broken(f"the connection closed before a complete answer ({_describe(error)})", retry=False) from None
        except http.client.IncompleteRead:
            raise _Broken("the connection closed in the middle of the answer", retry=False) from None
        except http.client.HTTPException as error:
            raise _Broken(
                f"the answer is not HTTP ({type(error).__name__}: {_short(str(error))})", retry=False, garbled=True
            ) from None
        except OSError as error:
            raise _Broken(f"reading the answer failed ({_describe(error)})", retry=False) from None
        return response.status, response.reason, b"".join(chunks), not response.will_close

    def _connect(self, connection: http.client.HTTPConnection) -> None:
        try:
            connection.connect()
        except FileNotFoundError:
            raise spi.PluginUnavailable(f"{self._label}: no socket there: the plugin is not running") from None
        except ConnectionRefusedError:
            hint = (
                "a stale socket: its daemon is gone; start the plugin again (it replaces the socket)"
                if self._unix is not None
                else "nothing listens there: is the plugin running?"
            )
            raise spi.PluginUnavailable(f"{self._label}: connection refused ({hint})") from None
        except TimeoutError:
            raise spi.PluginUnavailable(f"{self._label}: no connection within {self.connect_timeout:g} s") from None
        except OSError as error:
            raise spi.PluginUnavailable(f"{self._label}: cannot connect ({_describe(error)})") from None

    # -- answers --------------------------------------------------------------------------

    def _result(self, method: str, request_id: int, status: int, reason: str, data: bytes) -> Any:
        prefix = f"{self._label}: {method}"
        if status != 200:
            raise spi.PluginError(f"{prefix}: HTTP {status} {reason}: {_short(data.decode('utf-8', 'replace'))}")
        if not data.strip():
            raise spi.PluginError(f"{prefix}: empty answer (expected a JSON-RPC response)")
        try:
            answer = wire.loads(data)
        except wire.ParseError as refused:
            if refused.deep:
                raise spi.PluginError(f"{prefix}: the answer is {refused}") from None
            raise spi.PluginError(
                f"{prefix}: the answer is not JSON: {_short(data.decode('utf-8', 'replace'))}"
            ) from None
        if not isinstance(answer, dict) or ("result" not in answer and "error" not in answer):
            raise spi.PluginError(f"{prefix}: not a JSON-RPC response: {_short(json.dumps(answer))}")
        if "id" in answer and answer["id"] != request_id and str(answer["id"]) != str(request_id):
            raise spi.PluginError(f"{prefix}: the answer is for another request (id {answer['id']!r})")
        error = answer.get("error")
        if error is not None:
            if isinstance(error, dict) and isinstance(error.get("message"), str):
                raise RemoteError(prefix, code=error.get("code"), message=error["message"], data=error.get("data"))
            raise RemoteError(prefix, code=None, message=_short(json.dumps(error)), data=None)
        result = answer.get("result")
        if result is None:
            raise spi.PluginError(f"{prefix}: the result is null")
        return result


def _dropped(connection: http.client.HTTPConnection) -> bool:
    """Whether a kept connection was closed by the plugin (or has unexpected bytes waiting)."""
    sock = connection.sock
    if sock is None:
        return True
    try:
        # A socket with a timeout waits for data before recv whatever the flags: poll instead.
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)  # readable while idle: closed by the plugin (EOF), or bytes nobody asked for


def _describe(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "timed out"
    if isinstance(error, OSError) and error.errno is not None:
        return error.strerror or errno.errorcode.get(error.errno, str(error.errno))
    return str(error) or type(error).__name__


def _unsendable(params: Mapping[str, Any]) -> str:
    """Where and why ``params`` are not JSON (the shared rule: ``specs.check_json``)."""
    try:
        specs.check_json(params)
    except specs.SpecError as error:
        return str(error)
    return "the params are not JSON"  # pragma: no cover - check_json names every value json refuses


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
