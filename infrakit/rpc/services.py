"""Plugin objects as JSON-RPC services: the method tables of InfraKit's interfaces.

A :class:`Service` is one interface (``Instance/0.5.0``...) bound to one of our plugin
objects: a table of JSON-RPC methods, each decoding its Go-shaped params
(:mod:`infrakit.rpc.wire`), calling the plugin (in a worker thread: plugin calls
block), and encoding the answer as v0.5's Go server does.  :func:`instance_service`
and :func:`flavor_service` route a call's ``Type`` to a sub-type's plugin as InfraKit's
``PluginServerWithTypes`` does; :func:`group_services` serves the group runtime (the
:class:`GroupService` protocol) as ``Group/0.1.0`` + ``Metadata/0.1.0``.
:mod:`infrakit.rpc.server` puts services behind its HTTP endpoint.  No aiohttp here.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Final, Protocol

from infrakit.core import instances
from infrakit.plugins import spi
from infrakit.rpc import broker, wire

__all__ = [
    "GroupService",
    "Handler",
    "Service",
    "flavor_service",
    "group_services",
    "instance_service",
]


Handler = Callable[[Mapping[str, Any]], dict[str, Any]]
_Method = tuple[Handler, dict[str, Any], dict[str, Any]]  # a handler, and its example params and result


@dataclasses.dataclass(frozen=True, kw_only=True)
class Service:
    """One interface served: ``methods`` by wire name (``Provision``), run in a thread.

    ``examples`` gives, per method, the zero-valued params and result v0.5 shows in
    ``/info/api.json``.  Calls are serialised by ``lock`` unless the plugin is known to
    be thread-safe: our plugin objects keep small unsynchronised caches.
    """

    interface: wire.InterfaceSpec
    methods: Mapping[str, Handler]
    examples: Mapping[str, tuple[dict[str, Any], dict[str, Any]]]
    types: tuple[str, ...] = (".",)
    lock: threading.Lock | None = dataclasses.field(default_factory=threading.Lock)
    feeds: Mapping[str, Callable[[], AsyncIterator[Any]]] = dataclasses.field(default_factory=dict)
    """Topic -> a change feed whose items are published as events on that topic."""
    events: broker.Broker | None = None
    """The broker of the plugin's own events (the group runtime's), served with its change feeds."""


# -- services -------------------------------------------------------------------------------


def _router(default: Any, types: Mapping[str, Any] | None) -> Callable[[Mapping[str, Any]], tuple[str, Any]]:
    """The plugin a request's ``Type`` names, as InfraKit's typed servers pick it (``""``: the default).

    An unknown sub-type is refused with InfraKit's ``no-plugin:<type>``, then what it means.
    """
    typed = {"": default, **(types or {})}
    served = ", ".join([".", *sorted(types or {})])

    def route(params: Mapping[str, Any]) -> tuple[str, Any]:
        kind = wire.string(wire.field(params, "Type"), "Type")
        found = typed.get(kind)
        if found is None:
            raise spi.PluginError(f"no-plugin:{kind}: this plugin has no sub-type {kind!r} (it serves: {served})")
        return kind, found

    return route


_ZERO_SPEC: Final = {"Properties": None, "Tags": None, "Init": "", "LogicalID": None, "Attachments": None}
_ZERO_DESCRIPTION: Final = {"ID": "", "LogicalID": None, "Tags": None}
_ZERO_ALLOCATION: Final = {"Size": 0, "LogicalIDs": None}


def instance_service(
    plugin: spi.InstancePlugin,
    *,
    concurrent: bool = False,
    properties: Callable[[instances.Description], Any] | None = None,
    types: Mapping[str, spi.InstancePlugin] | None = None,
) -> Service:
    """``Instance/0.5.0`` backed by ``plugin``, and by ``types`` for the sub-types they name.

    ``properties`` gives an instance's ``Properties`` when ``DescribeInstances`` asks for
    them (v0.5's file plugin answers its spec); a plugin that reports changes
    (``spi.Watching``) has them published on :data:`wire.CHANGES_TOPIC` (the default
    plugin's).  A call's ``Type`` picks the plugin (``instance-x/large`` is served by
    ``types["large"]``), as InfraKit's ``PluginServerWithTypes``.
    """
    route = _router(plugin, types)

    def validate(params: Mapping[str, Any]) -> dict[str, Any]:
        kind, target = route(params)
        target.validate(wire.field(params, "Properties"))
        return {"Type": kind, "OK": True}

    def provision(params: Mapping[str, Any]) -> dict[str, Any]:
        kind, target = route(params)
        instance_id = target.provision(wire.spec_from_wire(wire.field(params, "Spec"), "Spec"))
        return {"Type": kind, "ID": instance_id}

    def label(params: Mapping[str, Any]) -> dict[str, Any]:
        kind, target = route(params)
        instance_id = wire.string(wire.field(params, "Instance"), "Instance")
        target.label(instance_id, wire.tags(wire.field(params, "Labels"), "Labels"))
        return {"Type": kind, "OK": True}

    def destroy(params: Mapping[str, Any]) -> dict[str, Any]:
        kind, target = route(params)
        target.destroy(wire.string(wire.field(params, "Instance"), "Instance"))
        return {"Type": kind, "OK": True}

    def describe(params: Mapping[str, Any]) -> dict[str, Any]:
        kind, target = route(params)
        detailed = wire.boolean(wire.field(params, "Properties"), "Properties")
        found = target.describe(wire.tags(wire.field(params, "Tags"), "Tags"))
        listed = []
        for description in found:
            entry = wire.description_to_wire(description)
            if detailed and properties is not None and not kind:
                entry["Properties"] = properties(description)
            listed.append(entry)
        return {"Type": kind, "Descriptions": wire.go_list(listed)}

    ok = {"Type": "", "OK": False}
    return _service(
        wire.INSTANCE,
        {
            "Validate": (validate, {"Type": "", "Properties": None}, ok),
            "Provision": (provision, {"Type": "", "Spec": _ZERO_SPEC}, {"Type": "", "ID": None}),
            "Label": (label, {"Type": "", "Instance": "", "Labels": None}, ok),
            "Destroy": (destroy, {"Type": "", "Instance": ""}, ok),
            "DescribeInstances": (
                describe,
                {"Type": "", "Tags": None, "Properties": False},
                {"Type": "", "Descriptions": None},
            ),
        },
        types=(".", *sorted(types or {})),
        lock=None if concurrent else threading.Lock(),
        feeds={wire.CHANGES_TOPIC: _changes_feed(plugin)} if isinstance(plugin, spi.Watching) else {},
    )


def _changes_feed(plugin: spi.Watching) -> Callable[[], AsyncIterator[Any]]:
    async def feed() -> AsyncIterator[Any]:
        async for changed in plugin.changes():
            yield wire.CHANGED_ALL if changed is None else {"IDs": sorted(changed)}

    return feed


def flavor_service(
    plugin: spi.FlavorPlugin, *, concurrent: bool = False, types: Mapping[str, spi.FlavorPlugin] | None = None
) -> Service:
    """``Flavor/0.1.0`` backed by ``plugin``, and by ``types`` for the sub-types they name."""
    route = _router(plugin, types)

    def validate(params: Mapping[str, Any]) -> dict[str, Any]:
        kind, target = route(params)
        allocation = wire.allocation_from_wire(wire.field(params, "Allocation"), "Allocation")
        target.validate(wire.field(params, "Properties"), allocation)
        return {"Type": kind, "OK": True}

    def prepare(params: Mapping[str, Any]) -> dict[str, Any]:
        kind, target = route(params)
        spec = wire.spec_from_wire(wire.field(params, "Spec"), "Spec")
        allocation = wire.allocation_from_wire(wire.field(params, "Allocation"), "Allocation")
        index = wire.obj(wire.field(params, "Index"), "Index")  # our flavors do not use it: checked only
        wire.string(wire.field(index, "Group"), "Index.Group")
        wire.uint(wire.field(index, "Sequence"), "Index.Sequence")
        prepared = target.prepare(wire.field(params, "Properties"), spec, allocation)
        return {"Type": kind, "Spec": wire.spec_to_wire(prepared)}

    def healthy(params: Mapping[str, Any]) -> dict[str, Any]:
        kind, target = route(params)
        description = wire.description_from_wire(wire.field(params, "Instance"), "Instance")
        health = target.healthy(wire.field(params, "Properties"), description)
        return {"Type": kind, "Health": wire.health_to_wire(health)}

    def drain(params: Mapping[str, Any]) -> dict[str, Any]:
        kind, target = route(params)
        description = wire.description_from_wire(wire.field(params, "Instance"), "Instance")
        target.drain(wire.field(params, "Properties"), description)
        return {"Type": kind, "OK": True}

    ok = {"Type": "", "OK": False}
    on_instance = {"Type": "", "Properties": None, "Instance": _ZERO_DESCRIPTION}
    prepared = {
        "Type": "",
        "Properties": None,
        "Spec": _ZERO_SPEC,
        "Allocation": _ZERO_ALLOCATION,
        "Index": {"Group": "", "Sequence": 0},
    }
    return _service(
        wire.FLAVOR,
        {
            "Validate": (validate, {"Type": "", "Properties": None, "Allocation": _ZERO_ALLOCATION}, ok),
            "Prepare": (prepare, prepared, {"Type": "", "Spec": _ZERO_SPEC}),
            "Healthy": (healthy, on_instance, {"Type": "", "Health": 0}),
            "Drain": (drain, on_instance, ok),
        },
        types=(".", *sorted(types or {})),
        lock=None if concurrent else threading.Lock(),
    )


class GroupService(Protocol):
    """What the group runtime offers the ``Group/0.1.0`` and ``Metadata/0.1.0`` servers.

    Methods block (they run in a worker thread) and raise ``SpecError`` for a bad
    document or ``PluginError`` for anything else; the message is what the caller sees.
    """

    def commit(self, document: Mapping[str, Any], *, pretend: bool) -> str:
        """Commit (or with ``pretend``, only plan) InfraKit's ``{"ID", "Properties"}`` or a manifest; the plan text."""
        ...

    def free(self, group_id: str) -> None:
        """Stop managing the group, leaving its instances."""

    def describe(self, group_id: str) -> tuple[list[instances.Description], bool]:
        """The group's instances and whether it has converged."""
        ...

    def destroy(self, group_id: str) -> None:
        """Destroy the group's instances and forget it."""

    def inspect(self) -> list[dict[str, Any]]:
        """The committed specs, as ``[{"ID", "Properties"}]``."""
        ...

    def metadata_list(self, path: tuple[str, ...]) -> list[str]:
        """The children of ``path`` (``()`` is the root), e.g. ``("specs",) -> ["cattle"]``."""
        ...

    def metadata_get(self, path: tuple[str, ...]) -> Any:
        """The value at ``path`` (any JSON), None if there is none."""


def group_services(service: GroupService, *, events: broker.Broker | None = None) -> list[Service]:
    """``Group/0.1.0`` and ``Metadata/0.1.0`` backed by ``service`` (which must be thread-safe).

    ``events``: the runtime's events, served as InfraKit's event endpoint (``Event.List``
    and ``GET /events?topic=``), not advertised by the handshake (v0.5's group plugin did not).
    """

    def group_id(params: Mapping[str, Any]) -> str:
        value = wire.string(wire.field(params, "ID"), "ID")
        if not value:
            raise spi.PluginError("Group ID must not be blank")  # v0.5's words
        return value

    def commit(params: Mapping[str, Any]) -> dict[str, Any]:
        spec = wire.obj(wire.field(params, "Spec"), "Spec")
        # InfraKit's {"ID", "Properties"}; or our manifest, for what InfraKit's form cannot say (paused...).
        manifest = "apiVersion" in spec or "kind" in spec
        document = dict(spec) if manifest else {"ID": group_id(spec), "Properties": wire.field(spec, "Properties")}
        pretend = wire.boolean(wire.field(params, "Pretend"), "Pretend")
        return {"Details": service.commit(document, pretend=pretend)}

    def free(params: Mapping[str, Any]) -> dict[str, Any]:
        service.free(group_id(params))
        return {"OK": True}

    def describe(params: Mapping[str, Any]) -> dict[str, Any]:
        found, converged = service.describe(group_id(params))
        listed = wire.go_list([wire.description_to_wire(d) for d in found])
        return {"Description": {"Instances": listed, "Converged": bool(converged)}}

    def destroy(params: Mapping[str, Any]) -> dict[str, Any]:
        service.destroy(group_id(params))
        return {"OK": True}

    def inspect(params: Mapping[str, Any]) -> dict[str, Any]:
        return {"Groups": wire.go_list(service.inspect())}

    def metadata_list(params: Mapping[str, Any]) -> dict[str, Any]:
        path = wire.path_from_wire(wire.field(params, "Path"), "Path")
        return {"Nodes": wire.go_list(sorted(service.metadata_list(path)))}

    def metadata_get(params: Mapping[str, Any]) -> dict[str, Any]:
        path = wire.path_from_wire(wire.field(params, "Path"), "Path")
        return {"Value": service.metadata_get(path)}

    by_id = {"ID": ""}
    ok = {"OK": False}
    committed = {"Spec": {"ID": "", "Properties": None}, "Pretend": False}
    return [
        _service(
            wire.GROUP,
            {
                "CommitGroup": (commit, committed, {"Details": ""}),
                "FreeGroup": (free, by_id, ok),
                "DescribeGroup": (describe, by_id, {"Description": {"Instances": None, "Converged": False}}),
                "DestroyGroup": (destroy, by_id, ok),
                "InspectGroups": (inspect, {}, {"Groups": None}),
            },
            lock=None,
            events=events,
        ),
        _service(
            wire.METADATA,
            {
                "List": (metadata_list, {"Path": "."}, {"Nodes": None}),
                "Get": (metadata_get, {"Path": "."}, {"Value": None}),
            },
            lock=None,
        ),
    ]


def _service(interface: wire.InterfaceSpec, methods: Mapping[str, _Method], **options: Any) -> Service:
    """A :class:`Service` from its methods, each with the example params and result v0.5 shows."""
    return Service(
        interface=interface,
        methods={name: handler for name, (handler, _, _) in methods.items()},
        examples={name: (params, result) for name, (_, params, result) in methods.items()},
        **options,
    )
