"""Plugins in other processes, behind our SPIs: blocking JSON-RPC clients.

:class:`RemoteInstancePlugin` and :class:`RemoteFlavorPlugin` implement
:class:`~infrakit.plugins.spi.InstancePlugin` / :class:`~infrakit.plugins.spi.FlavorPlugin`
over InfraKit's plugin protocol, so the engine calls a daemon (ours, InfraKit's, or one
written in any language) exactly as it calls an in-process plugin.

Every failure is a :class:`~infrakit.plugins.spi.PluginError` with one line naming the
plugin, its address and what happened: a missing or stale socket, a refused
connection, a timeout (connecting, and a deadline for the whole answer: never a hang),
a connection closed mid-answer, an HTTP error, an answer that is not JSON or not
JSON-RPC, or the plugin's own JSON-RPC error (:class:`RemoteError`, its message
verbatim).  ``validate`` turns a refusal into :class:`~infrakit.core.specs.SpecError`
naming the field.  The first call checks, once, that the plugin implements the
interface at the version we speak (``Handshake.Implements``).

The engine makes thousands of calls: each :class:`Transport` keeps its HTTP/1.1
connections open and reuses them (a small pool, so threads do not queue), checks a
kept connection is still open before reusing it, and retries once on a fresh one only
what is safe to repeat (describe, validate, health, handshake).  Only the standard
library is used (``http.client``): importing this module is cheap.

A remote instance plugin reports changes (``spi.Watching``) as the file plugin does in
process, so the runtime heals through a daemon as fast as in-process: from the daemon's
event stream (``GET /events?topic=instance/changes``, see :mod:`infrakit.rpc.publishing`)
when it has one, else by describing it every :data:`POLL_INTERVAL`
(InfraKit's own group plugin polled every 10 s): :mod:`infrakit.rpc.feeds`.
"""

from __future__ import annotations

import asyncio
import errno
import http.client
import itertools
import json
import logging
import os
import re
import select
import socket
import threading
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any, Final

from infrakit.core import instances, specs
from infrakit.plugins import spi
from infrakit.rpc import wire

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "MIN_TOKEN",
    "POLL_INTERVAL",
    "TOKEN_ENV",
    "RemoteError",
    "RemoteFlavorPlugin",
    "RemoteInstancePlugin",
    "Transport",
    "read_token",
]

TOKEN_ENV: Final = "INFRAKIT_TOKEN_FILE"  # noqa: S105 - the name of a variable, not a secret
"""A file holding the token TCP daemons started with ``--token-file`` require (sent to every TCP plugin)."""
MIN_TOKEN: Final = 16  # characters: a token is a secret, not a password to remember
_MAX_TOKEN_FILE: Final = 4096

DEFAULT_CONNECT_TIMEOUT: Final = 5.0  # seconds to open a connection
DEFAULT_TIMEOUT: Final = 120.0  # seconds for a whole answer (cloud provisioning can be slow)
POLL_INTERVAL: Final = 1.0  # seconds between describes of a plugin that publishes no change events

log = logging.getLogger(__name__)

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
_NOT_FOUND = re.compile(r"not found|no such|does not exist|doesn't exist|not exist", re.IGNORECASE)


class RemoteError(spi.PluginError):
    """The plugin answered with a JSON-RPC error object (``message`` is its text)."""

    def __init__(self, prefix: str, *, code: Any, message: str, data: Any) -> None:
        super().__init__(f"{prefix}: {message}")
        self.code = code
        self.message = message
        self.data = data


class _UnixConnection(http.client.HTTPConnection):
    """HTTP/1.1 over a unix socket (the plugins directory's sockets)."""

    def __init__(self, path: str, *, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class _Broken(Exception):
    """A connection failed; ``retry`` says whether the request surely did not reach the plugin."""

    def __init__(self, message: str, *, retry: bool) -> None:
        super().__init__(message)
        self.retry = retry


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
        self._idle: list[tuple[http.client.HTTPConnection, float]] = []  # and when each was given back
        self._lock = threading.Lock()
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
                raise spi.PluginError(f"{self._label}: {method}: {broken}") from None
            if keep:
                self._give(connection)
            else:
                connection.close()
            return self._result(method, request_id, status, reason, data)
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        """Close the kept connections (the transport stays usable: it reconnects)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for connection, _ in idle:
            connection.close()

    # -- connections ----------------------------------------------------------------------

    def connection(self) -> http.client.HTTPConnection:
        """A new connection to the plugin, connected (for a stream); ``PluginError`` if it cannot be."""
        connection = self._new()
        self._connect(connection)
        return connection

    def _new(self) -> http.client.HTTPConnection:
        if self._unix is not None:
            return _UnixConnection(self._unix, timeout=self.connect_timeout)
        return http.client.HTTPConnection(self._host, self._port, timeout=self.connect_timeout)

    def _take(self) -> tuple[http.client.HTTPConnection, bool]:
        while True:
            with self._lock:
                connection, since = self._idle.pop() if self._idle else (None, 0.0)
            if connection is None:
                return self._new(), False
            # Not one idle so long the plugin may be closing it as we send (ours close after 30 s).
            if time.monotonic() - since < _REUSE and not _dropped(connection):
                return connection, True
            connection.close()

    def _give(self, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._idle) < _POOL:
                self._idle.append((connection, time.monotonic()))
                return
        connection.close()

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
                    raise _Broken(f"the answer is larger than {_MAX_ANSWER >> 20} MiB", retry=False)
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
                f"the answer is not HTTP ({type(error).__name__}: {_short(str(error))})", retry=False
            ) from None
        except OSError as error:
            raise _Broken(f"reading the answer failed ({_describe(error)})", retry=False) from None
        return response.status, response.reason, b"".join(chunks), not response.will_close

    def _connect(self, connection: http.client.HTTPConnection) -> None:
        try:
            connection.connect()
        except FileNotFoundError:
            raise spi.PluginError(f"{self._label}: no socket there: the plugin is not running") from None
        except ConnectionRefusedError:
            hint = (
                "a stale socket: its daemon is gone; start the plugin again (it replaces the socket)"
                if self._unix is not None
                else "nothing listens there: is the plugin running?"
            )
            raise spi.PluginError(f"{self._label}: connection refused ({hint})") from None
        except TimeoutError:
            raise spi.PluginError(f"{self._label}: no connection within {self.connect_timeout:g} s") from None
        except OSError as error:
            raise spi.PluginError(f"{self._label}: cannot connect ({_describe(error)})") from None

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


class _Remote:
    """What both remote plugins share: the transport, the sub-type, the handshake."""

    interface: wire.InterfaceSpec

    def __init__(
        self,
        *,
        name: str,
        address: str,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.name = name
        self.address = address
        # InfraKit's names: "lookup/type" dials "lookup" and asks for sub-type "type".
        lookup, _, self.type = name.partition("/")
        self.transport = Transport(address=address, name=lookup, connect_timeout=connect_timeout, timeout=timeout)
        self._checked = False
        self._check_lock = threading.Lock()
        self.implements: frozenset[tuple[str, str]] = frozenset()  # (name, version), from the handshake

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, address={self.address!r})"

    def close(self) -> None:
        self.transport.close()

    def _call(self, method: str, params: dict[str, Any]) -> Mapping[str, Any]:
        if not self._checked:
            self._handshake()
        result = self.transport.call(method, {"Type": self.type, **params})
        if not isinstance(result, Mapping):
            raise spi.PluginError(f"plugin {self.name!r} at {self.address}: {method}: the result is not an object")
        return result

    def _handshake(self) -> None:
        with self._check_lock:
            if self._checked:
                return
            prefix = f"plugin {self.name!r} at {self.address}"
            try:
                answer = self.transport.call(wire.HANDSHAKE_IMPLEMENTS, {})
            except RemoteError as error:
                raise spi.PluginError(
                    f"{prefix} does not answer {wire.HANDSHAKE_IMPLEMENTS} ({error.message}): "
                    "it does not speak InfraKit v0.5's plugin protocol"
                ) from None
            apis = wire.field(answer, "APIs") if isinstance(answer, Mapping) else None
            found = [
                (str(wire.field(api, "Name")), str(wire.field(api, "Version")))
                for api in (apis or [])
                if isinstance(api, Mapping)
            ]
            wanted = self.interface
            self.implements = frozenset(found)
            if (wanted.name, wanted.version) not in found:
                offered = ", ".join(f"{n}/{v}" for n, v in found) or "nothing"
                raise spi.PluginError(f"{prefix} implements {offered}, not {wanted.encode()}")
            self._checked = True

    def _decode(self, method: str, decode: Any, *args: Any) -> Any:
        try:
            return decode(*args)
        except wire.WireError as error:
            raise spi.PluginError(
                f"plugin {self.name!r} at {self.address}: {method}: malformed result: {error}"
            ) from None

    def _refused(self, error: RemoteError, *, field: str) -> specs.SpecError:
        """A validation refusal as a SpecError: our own servers send ``field: message``.

        InfraKit's ``no-plugin:<type>`` (a sub-type the plugin does not serve) is about the
        plugin's name, not its properties.
        """
        if error.message.startswith("no-plugin:"):
            return specs.SpecError(field.rpartition(".")[0] + ".plugin", f"plugin {self.name!r}: {error.message}")
        head, sep, rest = error.message.partition(": ")
        if sep and (head == field or head.startswith((f"{field}.", f"{field}["))):
            return specs.SpecError(head, rest)
        return specs.SpecError(field, f"plugin {self.name!r} refused them: {error.message}")

    def _missing(self, error: RemoteError) -> spi.PluginError:
        """``InstanceNotFound`` when the plugin says so (our servers flag it; others word it)."""
        flagged = isinstance(error.data, Mapping) and error.data.get("NotFound") is True
        if flagged or _NOT_FOUND.search(error.message):
            return spi.InstanceNotFound(str(error))
        return error


class RemoteInstancePlugin(_Remote):
    """An ``Instance/0.5.0`` plugin daemon, as an :class:`~infrakit.plugins.spi.InstancePlugin`."""

    interface = wire.INSTANCE

    def validate(self, properties: Any) -> None:
        try:
            self._call("Instance.Validate", {"Properties": properties})
        except RemoteError as error:
            raise self._refused(error, field="spec.instance.properties") from None

    def provision(self, spec: instances.InstanceSpec) -> str:
        result = self._call("Instance.Provision", {"Spec": wire.spec_to_wire(spec)})
        instance_id = wire.field(result, "ID")
        if not isinstance(instance_id, str) or not instance_id:
            raise spi.PluginError(
                f"plugin {self.name!r} at {self.address}: Instance.Provision: malformed result: no instance ID"
            )
        return instance_id

    def label(self, instance_id: str, labels: Mapping[str, str]) -> None:
        try:
            self._call("Instance.Label", {"Instance": instance_id, "Labels": dict(labels)})
        except RemoteError as error:
            raise self._missing(error) from None

    def destroy(self, instance_id: str) -> None:
        try:
            self._call("Instance.Destroy", {"Instance": instance_id})
        except RemoteError as error:
            raise self._missing(error) from None

    def describe(self, tags: Mapping[str, str]) -> list[instances.Description]:
        return [description for description, _ in self._describe(tags, properties=False)]

    def describe_properties(self, tags: Mapping[str, str]) -> list[tuple[instances.Description, Any]]:
        """Every instance carrying ``tags``, with the ``Properties`` the plugin tells (``describe -p``)."""
        return self._describe(tags, properties=True)

    def _describe(self, tags: Mapping[str, str], *, properties: bool) -> list[tuple[instances.Description, Any]]:
        method = "Instance.DescribeInstances"
        result = self._call(method, {"Tags": dict(tags), "Properties": properties})
        listed = wire.field(result, "Descriptions")
        if listed is None:
            return []  # Go's nil slice
        if not isinstance(listed, list):
            raise spi.PluginError(f"plugin {self.name!r} at {self.address}: {method}: malformed result: Descriptions")
        return [
            (
                self._decode(method, wire.description_from_wire, item, f"Descriptions[{index}]"),
                wire.field(item, "Properties") if isinstance(item, Mapping) else None,
            )
            for index, item in enumerate(listed)
        ]

    async def changes(self) -> AsyncIterator[frozenset[str] | None]:
        """IDs of instances that changed, ``None`` for anything; until the consumer closes it."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[frozenset[str] | None] = asyncio.Queue()

        def emit(item: frozenset[str] | None) -> bool:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is closed: the consumer is gone
                return False
            return True

        from infrakit.rpc import feeds  # the stream reader, only for a process that watches

        watcher = feeds.Watcher(self, emit=emit, poll=POLL_INTERVAL)
        thread = threading.Thread(target=watcher.run, name=f"changes-{self.name}", daemon=True)
        thread.start()
        try:
            while True:
                yield await queue.get()
        finally:
            watcher.stop()


class RemoteFlavorPlugin(_Remote):
    """A ``Flavor/0.1.0`` plugin daemon, as a :class:`~infrakit.plugins.spi.FlavorPlugin`."""

    interface = wire.FLAVOR

    def validate(self, properties: Any, allocation: specs.Allocation) -> None:
        try:
            self._call("Flavor.Validate", {"Properties": properties, "Allocation": wire.allocation_to_wire(allocation)})
        except RemoteError as error:
            raise self._refused(error, field="spec.flavor.properties") from None

    def prepare(
        self, properties: Any, spec: instances.InstanceSpec, allocation: specs.Allocation
    ) -> instances.InstanceSpec:
        method = "Flavor.Prepare"
        result = self._call(
            method,
            {
                "Properties": properties,
                "Spec": wire.spec_to_wire(spec),
                "Allocation": wire.allocation_to_wire(allocation),
                # Our SPI has no index: the group and sequence 0 (flavors use it to pick from a pool).
                "Index": {"Group": spec.tags.get(instances.TAG_GROUP, ""), "Sequence": 0},
            },
        )
        prepared: instances.InstanceSpec = self._decode(method, wire.spec_from_wire, wire.field(result, "Spec"), "Spec")
        return prepared

    def healthy(self, properties: Any, description: instances.Description) -> instances.Health:
        method = "Flavor.Healthy"
        result = self._call(method, {"Properties": properties, "Instance": wire.description_to_wire(description)})
        health: instances.Health = self._decode(method, wire.health_from_wire, wire.field(result, "Health"), "Health")
        return health

    def drain(self, properties: Any, description: instances.Description) -> None:
        self._call("Flavor.Drain", {"Properties": properties, "Instance": wire.description_to_wire(description)})
