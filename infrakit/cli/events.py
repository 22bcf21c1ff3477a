"""``infrakit-local event ls|tail``: InfraKit's event commands, over our two modes.

Topics are paths whose first element is the plugin that publishes them, as InfraKit's
CLI shows them: ``group/cattle/instance/lost`` is topic ``cattle/instance/lost`` of the
plugin ``group`` (the group daemon, ``infrakit-group-default``; see
:mod:`infrakit.runtime.events` for the topics), ``instance-file/instance/changes`` that
of an instance daemon.

* ``event ls [TOPIC]`` lists every topic under TOPIC: asked of each running daemon
  (``Event.List``), plus the topics of the groups in the store (published by whichever
  process reconciles them); with ``--context``, those of the cluster's Groups.
* ``event tail TOPIC...`` streams events (a topic also subscribes to everything under
  it): from the daemon's event endpoint (``GET /events``); with ``--context``, from the
  cluster's Kubernetes Events about Groups (a watch), their reasons mapped to topics.
  Human lines by default, JSON lines (InfraKit's event JSON) with ``-o json``.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final

import click

from infrakit.cli import render
from infrakit.cli.context import Context
from infrakit.rpc.broker import matches

__all__ = ["REASON_TOPICS", "event", "format_event"]

GROUP_PLUGIN: Final = "group"
_DEPTH: Final = 8  # topics are a few elements deep; a plugin listing deeper is cut short

REASON_TOPICS: Final = {
    "Provisioned": "instance/provisioned",
    "Destroyed": "instance/destroyed",
    "InstancesLost": "instance/lost",
    "RollingUpdate": "update/progress",
    "ReconcileError": "error",
    "InvalidSpec": "error",
}
"""The operator's Event reasons (``infrakit.runtime.syncing``) as topics, for ``--context``."""


@click.group("event", help="Access events exposed by infrakit plugins (and the cluster, with --context).")
def event() -> None:
    pass


@event.command("ls")
@click.argument("topic", required=False, default="")
@click.option("-o", "--output", type=click.Choice(["table", "json", "yaml"]), default="table", show_default=True)
@click.pass_obj
def list_topics(obj: Context, topic: str, output: str) -> None:
    """List the topics under TOPIC (all by default), one full path per line."""
    with render.errors():
        wanted = _clean(topic)
        if obj.kube_context is not None:
            names = obj.cluster().ls()
            found = [f"{GROUP_PLUGIN}/{t}" for n in names for t in _group_topics(n)]
        else:
            found = _local_topics(obj)
        shown = sorted(t for t in set(found) if matches(wanted, t))
        if output == "table":
            for line in shown:
                click.echo(line)
        else:
            render.dump(shown, output)


@event.command("tail")
@click.argument("topics", nargs=-1, required=True)
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("-n", "--count", type=click.IntRange(min=1), default=None, help="Stop after this many events.")
@click.pass_obj
def tail(obj: Context, topics: Sequence[str], output: str, count: int | None) -> None:
    """Stream the events of TOPICS (each with everything under it) until stopped (Ctrl-C)."""
    with render.errors():
        wanted = [_clean(t) for t in topics]
        for topic in wanted:
            if not topic:
                raise render.Usage("TOPIC: name a plugin at least (e.g. group, or group/cattle/instance/lost)")
        source = _ClusterEvents(obj, wanted) if obj.kube_context is not None else _daemon_events(obj, wanted)
        click.echo(f"Tailing {' '.join(wanted)} (Ctrl-C to stop)", err=True)
        seen = 0
        try:
            for item in source:
                _print(item, output=output)
                seen += 1
                if count is not None and seen >= count:
                    break
        except KeyboardInterrupt:
            pass
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()


def format_event(item: Mapping[str, Any]) -> str:
    """One human line: time, topic, then what happened."""
    data = item.get("Data")
    topic = str(item.get("Topic", ""))
    when = str(item.get("Timestamp", ""))
    if item.get("Type") == "dropped" and isinstance(data, Mapping):
        return f"{when}  {topic}  ({data.get('Dropped')} events dropped: this subscriber fell behind)"
    if isinstance(data, Mapping):
        if "InstanceID" in data:
            logical = f" ({data['LogicalID']})" if data.get("LogicalID") else ""
            detail = f"{data['InstanceID']}{logical} {data.get('Reason', '')}".rstrip()
        elif "Message" in data:
            detail = f"{data.get('Reason', '')}: {data['Message']}".lstrip(": ")
        else:
            detail = " ".join(f"{k}={v}" for k, v in data.items() if k not in ("Group", "Namespace"))
    else:
        detail = "" if data is None else json.dumps(data)
    return f"{when}  {topic}  {detail}".rstrip()


def _print(item: Mapping[str, Any], *, output: str) -> None:
    if output == "json":
        click.echo(json.dumps(item, separators=(",", ":")))
    elif item.get("Type") == "dropped":
        click.echo(format_event(item), err=True)
    else:
        click.echo(format_event(item))


# -- topics ---------------------------------------------------------------------------------


def _clean(topic: str) -> str:
    return "/".join(part for part in topic.split("/") if part not in ("", "."))


def _group_topics(name: str) -> list[str]:
    from infrakit.runtime import events

    return events.group_topics(name)


def _local_topics(obj: Context) -> list[str]:
    """The running daemons' topics, and those the store's groups publish when reconciled."""
    from infrakit.local import store
    from infrakit.plugins import spi
    from infrakit.rpc import client, discovery

    found = []
    group = obj.reachable()
    addresses = {e.name: e.address for e in discovery.endpoints(directory=obj.plugins_dir)}
    if group is not None:
        addresses[GROUP_PLUGIN] = group
    elif obj.selected is None:  # this machine's store
        found += [f"{GROUP_PLUGIN}/{t}" for n in store.Store(obj.home).names() for t in _group_topics(n)]
    elif GROUP_PLUGIN not in addresses:
        obj.this_machine("events")  # a remote's are never this machine's store's
    for name, address in sorted(addresses.items()):
        transport = client.Transport(address=address, name=name, connect_timeout=2.0, timeout=10.0)
        try:
            found += [f"{name}/{t}" for t in _walk(transport, ())]
        except spi.PluginError:
            continue  # not running, or publishes no events: it has no topics to show
        finally:
            transport.close()
    return found


def _walk(transport: Any, path: tuple[str, ...]) -> list[str]:
    answer = transport.call("Event.List", {"Topic": "/".join(path) or "."})
    nodes = answer.get("Nodes") if isinstance(answer, Mapping) else None
    if not nodes:
        return ["/".join(path)] if path else []
    found: list[str] = []
    for node in nodes:
        if isinstance(node, str) and node and len(path) < _DEPTH:
            found += _walk(transport, (*path, node))
    return found


# -- streams --------------------------------------------------------------------------------


class _Merged:
    """Events of several streams, read by one thread each, in the order they arrive."""

    def __init__(self, streams: Sequence[tuple[str, Any]]) -> None:
        self.streams = streams
        self.queue: queue.Queue[Mapping[str, Any] | BaseException | None] = queue.Queue()
        self.threads = [threading.Thread(target=self._read, args=s, daemon=True) for s in streams]
        for thread in self.threads:
            thread.start()

    def _read(self, plugin: str, stream: Any) -> None:
        try:
            for item in stream:
                self.queue.put({**item, "Topic": f"{plugin}/{_clean(str(item.get('Topic', '')))}".rstrip("/")})
        except BaseException as error:
            self.queue.put(error)
            return
        self.queue.put(None)

    def __iter__(self) -> Iterator[Mapping[str, Any]]:
        ended = 0
        while ended < len(self.streams):
            try:
                item = self.queue.get(timeout=0.5)  # a timeout keeps Ctrl-C responsive
            except queue.Empty:
                continue
            if item is None:
                ended += 1
                continue
            if isinstance(item, BaseException):
                raise item
            yield item
        raise render.Failure("the event stream ended: the daemon stopped")

    def close(self) -> None:
        for _, stream in self.streams:
            stream.close()


def _daemon_events(obj: Context, topics: Sequence[str]) -> _Merged:
    from infrakit.rpc import streams

    opened: list[tuple[str, Any]] = []
    try:
        for topic in topics:
            plugin, _, rest = topic.partition("/")
            address = obj.address(plugin)
            if address is None:
                hint = (
                    "events are published by the process that reconciles: start infrakit-group-default"
                    if plugin == GROUP_PLUGIN
                    else "`infrakit-local plugin ls` lists the running plugins"
                )
                raise render.Failure(f"plugin {plugin!r} is not running in {obj.plugins_dir}: {hint}")
            opened.append((plugin, streams.subscribe(address=address, topic=rest, name=plugin)))
    except BaseException:
        for _, stream in opened:
            stream.close()
        raise
    return _Merged(opened)


class _ClusterEvents:
    """Kubernetes Events about Groups (a watch), as InfraKit events on the topics asked for."""

    def __init__(self, obj: Context, topics: Sequence[str]) -> None:
        import kubernetes

        from infrakit.cluster import kubeapi, remote

        assert obj.kube_context is not None
        for topic in topics:
            if topic.partition("/")[0] != GROUP_PLUGIN:
                raise render.Usage(f"TOPIC {topic!r}: a cluster publishes group topics only (group/...)")
        self.topics = topics
        self.api = kubeapi.connect(context=obj.kube_context)
        self.namespace = obj.namespace or remote.context_namespace(obj.kube_context)
        self.core = kubernetes.client.CoreV1Api(self.api)
        self.watch = kubernetes.watch.Watch()  # type: ignore[no-untyped-call]

    def __iter__(self) -> Iterator[Mapping[str, Any]]:
        # Only what happens from now on: the events already there are history, not a tail.
        listing: Any = self.core.list_namespaced_event(
            self.namespace, field_selector="involvedObject.kind=Group", limit=1
        )
        version = listing.metadata.resource_version
        while True:
            for change in self.watch.stream(  # type: ignore[no-untyped-call]
                self.core.list_namespaced_event,
                self.namespace,
                field_selector="involvedObject.kind=Group",
                resource_version=version,
                timeout_seconds=300,
            ):
                item = change["object"]
                version = item.metadata.resource_version
                if change["type"] not in ("ADDED", "MODIFIED"):
                    continue
                converted = cluster_event(item)
                if any(matches(wanted, converted["Topic"]) for wanted in self.topics):
                    yield converted

    def close(self) -> None:
        self.watch.stop()  # type: ignore[no-untyped-call]


def cluster_event(item: Any) -> dict[str, Any]:
    """A Kubernetes Event (``V1Event``) about a Group as an InfraKit event on the group plugin's topics."""
    name = item.involved_object.name
    reason = item.reason or ""
    topic = REASON_TOPICS.get(reason, f"event/{reason}")
    when = item.last_timestamp or item.event_time or item.first_timestamp
    stamp = when.isoformat().replace("+00:00", "Z") if when is not None else ""
    data: dict[str, Any] = {"Group": name, "Namespace": item.involved_object.namespace, "Reason": reason}
    data["Message"] = item.message or ""
    if (item.count or 1) > 1:
        data["Count"] = item.count
    return {
        "Topic": f"{GROUP_PLUGIN}/{name}/{topic}",
        "Type": "error" if item.type == "Warning" and topic == "error" else reason,
        "ID": item.metadata.uid or "",
        "Timestamp": stamp,
        "Data": data,
    }
