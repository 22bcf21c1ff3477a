"""The kopf registrations: watch events feed the runtime; the runtime does the rest.

kopf watches Groups (and, through its scanning, the CRD itself and the namespaces that
match ``--namespace`` globs, so an operator started before the CRD, or before a
namespace exists, serves them once they appear).  For every event, :func:`group_event`
updates the cluster store's cache and wakes the group's key in the runtime's queue;
start-up and clean-up handlers own the runtime, the plugins and the leader election.

What kopf offers that we do not use, and why:

* per-object handlers (``on.create``/``on.update``/``on.resume``) with kopf's progress
  storage, daemons and timers: they put kopf's own finalizer on every Group at once and
  record per-object state in annotations; our finalizer must exist only while instances
  do, and our reconcile is level-based (the runtime re-reads everything on every sync),
  so ``on.event`` (no finalizer, no stored progress) is all we need from the watch;
* kopf's peering (one active operator): peering objects need a CRD of kopf's own and
  cluster-wide permissions; a ``coordination.k8s.io`` Lease (``leadership``) is what
  Kubernetes controllers use, and it also fences every write of a replica that lost it;
* kopf's scanning, where the operator may not list CRDs and namespaces cluster-wide (the
  namespaced overlay passes ``--no-scanning``): kopf would log a 403 and fall back to its
  start-up listing anyway, which is what turning it off does, quietly;
* kopf's posting of events from its logs: events are aggregated by the store instead
  (``infrakit.cluster.records``), with the ones that matter never rate-limited.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import kopf

from infrakit import plugins, runtime
from infrakit.cluster import kubeapi, records
from infrakit.operator import leadership, metrics, readiness
from infrakit.rpc import resolving
from infrakit.runtime import owners, running, syncing

__all__ = ["Config", "Operator"]

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config:
    """The operator's options (see ``infrakit-operator --help``)."""

    plugin_options: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    namespaces: tuple[str, ...] = ()
    scanning: bool = True
    plugins_dir: Path | None = None
    resync: float = runtime.RESYNC
    poll: float = runtime.POLL
    workers: int = 2
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9090  # 0: no metrics server
    readiness: str = ""  # the /readyz URL ("" for none)
    leader_election: bool = True
    lease_namespace: str = "default"
    lease_name: str = "infrakit-operator"
    lease_duration: float = 15.0
    identity: str = dataclasses.field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    cluster: str = "default"  # the cluster's identity (``--cluster-id``, else kube-system's UID)


class Operator:
    """Everything the operator process owns: the runtime, its store and plugins, the Lease."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.elector: leadership.Elector | None = None
        self.store: records.ClusterStore | None = None
        self.runtime: running.Runtime | None = None
        self._task: asyncio.Task[None] | None = None
        self._election: asyncio.Task[None] | None = None
        self._listing: asyncio.Task[None] | None = None
        self._stop_readiness: Any = None
        self._stopping = False
        self.readiness = readiness.Readiness(cached=self._cached, lease=self._lease)

    def may_act(self) -> bool:
        return not self._stopping and self._leading()

    def _leading(self) -> bool:
        return self.elector is None or self.elector.is_leader()

    def _cached(self, key: tuple[str, str]) -> bool:
        return self.store is not None and key in self.store.cache

    def _lease(self) -> tuple[bool, bool, str | None]:
        if self.elector is None:
            return True, True, None
        return self.elector.known or self.elector.is_leader(), self.elector.is_leader(), self.elector.holder

    def _instance_plugins(self) -> list[str]:
        """Every instance plugin this operator may have used, for the collector: those its
        configuration names and the instance daemons in its plugins directory."""
        names = [name for name in self.config.plugin_options if name in plugins.available(plugins.INSTANCE_GROUP)]
        if self.config.plugins_dir is not None:
            from infrakit.rpc import discovery

            names += [
                found.name
                for found in discovery.running(directory=self.config.plugins_dir)
                if any(interface.startswith("Instance/") for interface in found.interfaces)
            ]
        return names

    def _on_result(self, result: syncing.Result) -> None:
        self.readiness.synced(result.key)
        metrics.record(result)

    async def start(self) -> None:
        api = kubeapi.connect(agent=kubeapi.OPERATOR_FIELD_MANAGER)
        self.store = records.ClusterStore(
            kubeapi.Groups(api, field_manager=kubeapi.OPERATOR_FIELD_MANAGER),
            cluster=self.config.cluster,
            namespaces=self.config.namespaces,
            may_write=self._leading,  # a stopping leader still writes where its syncs stopped
        )
        locate = resolving.locator(self.config.plugins_dir) if self.config.plugins_dir is not None else None
        registry = plugins.Registry(defaults=self.config.plugin_options, locate=locate)
        syncer = syncing.Syncer(store=self.store, registry=registry, index=owners.Owners())
        self.runtime = running.Runtime(
            syncer=syncer,
            workers=self.config.workers,
            resync=self.config.resync,
            poll=self.config.poll,
            may_act=self.may_act,
            on_result=self._on_result,
            discover=self._instance_plugins,
        )
        if self.config.leader_election:
            self.elector = leadership.Elector(
                api,
                namespace=self.config.lease_namespace,
                name=self.config.lease_name,
                identity=self.config.identity,
                duration=self.config.lease_duration,
                renew=min(2.0, self.config.lease_duration / 5),
                on_elected=self.runtime.elected,
                on_lost=_lost,
            )
            self._election = asyncio.create_task(self.elector.run(), name="leader-election")
        if self.config.metrics_port:
            import prometheus_client

            prometheus_client.start_http_server(self.config.metrics_port, addr=self.config.metrics_host)
            log.info("serving metrics at http://%s:%d/metrics", self.config.metrics_host, self.config.metrics_port)
        if self.config.readiness:
            host, port, path = _endpoint(self.config.readiness)
            self._stop_readiness = await readiness.serve(self.readiness, host=host, port=port, path=path)
            log.info("serving readiness at %s", self.config.readiness)
        self._listing = asyncio.create_task(self._list_until_ready(), name="readiness-listing")
        self._task = asyncio.create_task(self.runtime.run(), name="runtime")

    async def _list_until_ready(self) -> None:
        """List the Groups served until readiness has passed: what the cache must catch up with.

        Listed again every few seconds until then, so that a Group deleted between this
        listing and kopf's own (whose watch then never reports it) does not hold
        readiness back for ever.
        """
        assert self.store is not None
        store = self.store
        delay = 1.0
        while not self.readiness.passed:
            try:
                keys = await asyncio.to_thread(_list_keys, store)
            except Exception as error:
                log.warning("cannot list the groups for readiness: %s (retrying in %gs)", _first_line(error), delay)
                delay = min(delay * 2, 30.0)
            else:
                self.readiness.listed(keys)
                self.readiness.check()
                delay = 2.0
            await asyncio.sleep(delay)

    async def stop(self) -> None:
        """Stop acting; wait for the syncs in flight (a bound: STOP_GRACE); only then give up the Lease,
        so that no other replica acts while one of ours still may."""
        self._stopping = True
        if self._stop_readiness is not None:
            with contextlib.suppress(Exception):
                await self._stop_readiness()
        for task in (self._listing, self._task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self.runtime is not None and (stuck := await self.runtime.drain(running.STOP_GRACE)):
            log.warning("stopped after %gs without %s: stuck in a plugin call", running.STOP_GRACE, ", ".join(stuck))
        if self._election is not None:
            self._election.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._election

    def event(self, body: Mapping[str, Any], *, deleted: bool) -> None:
        if self.store is None or self.runtime is None:
            return
        key, wake = self.store.observe(body, deleted=deleted)
        if wake:
            self.runtime.enqueue(key)


def _list_keys(store: records.ClusterStore) -> list[tuple[str, str]]:
    """The keys of the Groups ``store`` serves, as the API server lists them now."""
    patterns = store.namespaces
    exact = patterns and not any(ch in p for p in patterns for ch in "*?[")
    namespaces: list[str | None] = list(patterns) if exact else [None]
    keys = []
    for namespace in namespaces:
        for item in store.groups.items(namespace):
            meta = item.get("metadata") or {}
            key = (str(meta.get("namespace", "")), str(meta.get("name", "")))
            if store.owns(key):
                keys.append(key)
    return keys


def _endpoint(url: str) -> tuple[str, int, str]:
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    return parts.hostname or "0.0.0.0", parts.port or 80, parts.path or "/"  # noqa: S104 - the pod's probes


def _first_line(error: BaseException) -> str:
    status, reason = getattr(error, "status", None), getattr(error, "reason", None)
    if isinstance(status, int) and reason:  # an ApiException's str() spreads over lines of headers
        return f"{type(error).__name__}: ({status}) {reason}"
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:200]}" if text else type(error).__name__


def _lost() -> None:
    log.warning("not the leader any more: syncs in flight stop before their next instance operation or write")


# -- kopf handlers (async: they run in kopf's event loop, where the runtime's queue lives) -----------


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    operator: Operator = memo.operator
    settings.posting.level = logging.WARNING
    # Off only where the operator may not list CRDs and namespaces (the namespaced overlay).
    settings.scanning.disabled = not operator.config.scanning
    settings.watching.server_timeout = 300
    settings.networking.error_backoffs = [1, 2, 5, 10]
    await operator.start()


@kopf.on.cleanup()
async def shutdown(memo: kopf.Memo, **_: Any) -> None:
    operator: Operator = memo.operator
    await operator.stop()


@kopf.on.probe(id="leader")
async def leader_probe(memo: kopf.Memo, **_: Any) -> bool:
    operator: Operator = memo.operator
    return operator.may_act()


@kopf.on.event(kubeapi.GROUP, kubeapi.VERSION, kubeapi.PLURAL)
async def group_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    operator: Operator = memo.operator
    body: dict[str, Any] = dict(event.get("object") or {})
    operator.event(body, deleted=event.get("type") == "DELETED")
