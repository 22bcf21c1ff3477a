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

The engine makes thousands of calls: each goes through a :class:`Transport`
(:mod:`infrakit.rpc.transport`, re-exported here), which keeps connections open.  Only
the standard library is used (``http.client``): importing this module is cheap.

A remote instance plugin reports changes (``spi.Watching``) as the file plugin does in
process, so the runtime heals through a daemon as fast as in-process: from the daemon's
event stream (``GET /events?topic=instance/changes``, see :mod:`infrakit.rpc.publishing`)
when it has one, else by describing it every :data:`POLL_INTERVAL`
(InfraKit's own group plugin polled every 10 s): :mod:`infrakit.rpc.feeds`.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import AsyncIterator, Mapping
from typing import Any, Final

from infrakit.core import instances, specs
from infrakit.plugins import spi
from infrakit.rpc import wire
from infrakit.rpc.transport import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_TIMEOUT,
    MIN_TOKEN,
    TOKEN_ENV,
    RemoteError,
    Transport,
    read_token,
)

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

POLL_INTERVAL: Final = 1.0  # seconds between describes of a plugin that publishes no change events

_NOT_FOUND = re.compile(r"not found|no such|does not exist|doesn't exist|not exist", re.IGNORECASE)


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
