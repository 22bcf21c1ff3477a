"""The Docker instance plugin: an instance is a container (InfraKit v0.5's ``instance-docker``).

What it does, as v0.5 did (``examples/instance/docker/instance.go``):

* **provision**: pull the image (only when the engine lacks it), create the container with
  the spec's tags as labels (a pet is named by its logical ID), connect its networks, copy
  the flavor's ``Init`` into ``/var/lib`` and start the container, then run the script with
  ``/bin/sh`` through ``docker exec``: the host never runs it.  Any failure removes the
  container (nothing half-made) and is one line; the ID is the 12-character short ID;
* **describe**: the containers carrying the tags (and ``--namespace-tags``), by label
  filter; the logical ID is the ``infrakit.logical_id`` label, else the container's name (as
  v0.5); :data:`~infrakit.plugins.spi.TAG_HEALTH` says what the container's state and
  healthcheck say (:func:`.properties.health_of`);
* **destroy**: remove the container (forced, with its anonymous volumes), only one that
  carries ``infrakit.group``: this plugin never removes a container no group made.

Where it goes further:

* **label**: Docker labels are immutable; v0.5 refused.  Labels are recorded in a side store
  by container ID and laid over the container's own by describe (:mod:`.labels` says why,
  and what that does not give);
* **changes**: Docker's event stream (``die``, ``destroy``, ``oom``, ``health_status`` of
  containers labelled ``infrakit.group``) wakes a group within milliseconds; v0.5's group
  polled every 10 s.  When the stream breaks (the engine stopped), ``None`` is announced at
  once, so the groups look now (and say ``PluginUnavailable``), and again once it is back;
* exited and dead containers are not instances (a ``docker kill`` is a lost instance, as
  v0.5 listed only created and running ones); before provisioning, the remains of the same
  group (its cluster, namespace and name on their labels) that describe saw are removed, so
  a pet's name is free again and a killed container does not pile up.  (Set
  ``HostConfig.AutoRemove`` to have Docker remove them at once.)  A container Docker's own
  restart policy is bringing back (``restarting``) stays an instance, unhealthy meanwhile.

The engine cannot be reached: ``PluginUnavailable``; it refuses (a bad config, an image that
cannot be pulled, a name in use): ``PluginError`` with Docker's words.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any, Final, TypeVar

from infrakit.core import instances
from infrakit.plugins import spi
from infrakit.plugins.instance_docker import engine as engines
from infrakit.plugins.instance_docker import initscript
from infrakit.plugins.instance_docker import labels as labelling
from infrakit.plugins.instance_docker import properties as props

__all__ = ["NAME", "DockerPlugin"]

NAME: Final = "instance-docker"
PULL_TIMEOUT: Final = 300.0
INIT_TIMEOUT: Final = 60.0
EVENTS: Final = ("die", "destroy", "oom", "health_status")
_MEMBERSHIP: Final = (instances.TAG_GROUP, instances.TAG_NAMESPACE, instances.TAG_CLUSTER)
_RECONNECT: Final = (0.05, 1.0)  # first and longest wait before re-opening the event stream
_KEPT: Final = 4096  # remains and destroyed IDs remembered
_T = TypeVar("_T")

log = logging.getLogger(__name__)


class DockerPlugin:
    """Containers on one Docker engine as instances.  Long-lived and thread-safe."""

    name = NAME

    def __init__(
        self,
        *,
        engine: engines.Engine,
        namespace: Mapping[str, str] | None = None,
        labels_dir: Path,
        pull_timeout: float = PULL_TIMEOUT,
        init_timeout: float = INIT_TIMEOUT,
        retries: int = 2,
    ) -> None:
        self.engine = engine
        self.namespace = dict(namespace or {})
        for key in self.namespace:
            if key.startswith("infrakit."):
                raise spi.PluginError(f"namespace tag {key!r}: infrakit.* tags are the groups' own; use another key")
        self.labels_dir = labels_dir
        self.pull_timeout = pull_timeout
        self.init_timeout = init_timeout
        self.retries = retries
        self._store: labelling.LabelStore | None = None
        self._lock = threading.Lock()
        self._parsed: tuple[Any, props.Request] | None = None
        self._remains: collections.OrderedDict[str, tuple[str, ...]] = collections.OrderedDict()  # ID -> owner
        self._destroyed: collections.OrderedDict[str, None] = collections.OrderedDict()  # removed on purpose

    def close(self) -> None:
        self.engine.close()

    # -- the SPI ----------------------------------------------------------------------------

    def validate(self, properties: Any) -> None:
        """Types and keys only: the engine is not asked (a commit validates while it may be down)."""
        self._request(properties)

    def provision(self, spec: instances.InstanceSpec) -> str:
        instances.check_spec(spec)
        request = self._request(spec.properties)
        if spec.logical_id is not None:
            props.check_name(spec.logical_id)
        tags = {**dict(spec.tags), **self.namespace}
        tags.pop(spi.TAG_HEALTH, None)  # an observation, never a label
        if spec.logical_id is not None:
            self._clear_remains(tags)  # a pet's exited predecessor holds its name
        body = props.container_body(request, tags)
        # Created first, the image looked for only if Docker has none (a pull is rare; a look
        # before every create is one more round trip on the way from a kill to its replacement).
        try:
            created = self._create(body, spec.logical_id, tags)
        except _NoImage:
            self._ensure_image(request.image)
            created = self._create(body, spec.logical_id, tags)
        try:
            for network in request.networks:
                self._connect(created, network)
            script = initscript.place(self.engine, created, spec.init) if spec.init else ""
            self._call(lambda: self.engine.post(f"/containers/{created}/start"), f"start container {created[:12]}")
            if script:
                initscript.run(self.engine, created, script, timeout=self.init_timeout)
        except BaseException:
            self._remove_quietly(created, force=True)
            raise
        if spec.logical_id is None:
            self._clear_remains(tags)  # cattle: the exited ones go once the replacement runs
        return created[:12]

    def label(self, instance_id: str, labels: Mapping[str, str]) -> None:
        instances.check_spec(instances.InstanceSpec(tags=labels))
        instances.check_json(dict(labels), field="Labels")
        container = self._inspect(instance_id)
        labels = {k: v for k, v in labels.items() if k != spi.TAG_HEALTH}
        self._labels().record(container["Id"], labels, live=self._all_ids)

    def destroy(self, instance_id: str) -> None:
        container = self._inspect(instance_id)
        own = (container.get("Config") or {}).get("Labels") or {}
        if instances.TAG_GROUP not in own:
            raise spi.PluginError(
                f"container {instance_id} is not an InfraKit instance (no infrakit.group label): "
                "instance-docker never removes it; use docker rm"
            )
        full = container["Id"]
        with self._lock:
            self._destroyed[full[:12]] = None
            while len(self._destroyed) > _KEPT:
                self._destroyed.popitem(last=False)
        try:
            self.engine.delete(f"/containers/{full}", query={"force": "1", "v": "1"})
        except engines.EngineError as error:
            if error.status == 404 or (error.status == 409 and "already in progress" in error.message):
                raise spi.InstanceNotFound(f"container {instance_id} is gone already") from None
            raise

    def describe(self, tags: Mapping[str, str]) -> list[instances.Description]:
        wanted = {**dict(tags), **self.namespace}
        overlay = self._labels().overlay()
        overlaid = {key for recorded in overlay.values() for key in recorded}
        # Docker filters by the labels it holds; a key a label may have changed is compared here.
        filters = {"label": [f"{k}={v}" for k, v in sorted(wanted.items()) if k not in overlaid]}
        listed = self._call(
            lambda: self.engine.get("/containers/json", query={"all": "1", "filters": json.dumps(filters)}),
            "list containers",
        )
        found = []
        remains: dict[str, tuple[str, ...]] = {}
        for container in listed if isinstance(listed, list) else ():
            full = container.get("Id")
            if not isinstance(full, str) or len(full) < 12:
                continue
            merged = {**_strings(container.get("Labels")), **overlay.get(full, {})}
            if any(merged.get(k) != v for k, v in wanted.items()):
                continue
            if container.get("State") not in props.LIVE_STATES:
                if instances.TAG_GROUP in merged:
                    remains[full] = _owner(merged)
                continue
            merged[spi.TAG_HEALTH] = props.health_of(container)
            names = container.get("Names")
            name = names[0].lstrip("/") if isinstance(names, list) and names and isinstance(names[0], str) else None
            created = container.get("Created")
            found.append(
                instances.Description(
                    id=full[:12],
                    logical_id=merged.get(instances.TAG_LOGICAL_ID, name),
                    tags=merged,
                    created=float(created) if isinstance(created, int | float) else 0.0,
                )
            )
        with self._lock:
            self._remains.update(remains)
            while len(self._remains) > _KEPT:
                self._remains.popitem(last=False)
        return found

    async def changes(self) -> AsyncIterator[frozenset[str] | None]:
        """IDs of containers that died, were removed or changed health, from Docker's event stream.

        ``None`` first (anything may have changed), when the stream breaks (so groups look at
        once, and say ``PluginUnavailable`` if the engine is gone), and when it is back.  The
        removals this plugin made itself are not reported.
        """
        import asyncio  # lazy: only the long-running controllers watch

        filters = json.dumps({"type": ["container"], "event": list(EVENTS), "label": [instances.TAG_GROUP]})
        delay = _RECONNECT[0]
        announced = False  # a None for the current outage was given
        while True:
            try:
                reader, writer = await self.engine.open_stream("/events", query={"filters": filters})
            except spi.PluginError as error:
                if not announced:
                    log.info("Docker events at %s: %s (retrying)", self.engine.url, error)
                    announced = True
                    yield None
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RECONNECT[1])
                continue
            delay, announced = _RECONNECT[0], False
            try:
                yield None
                while True:
                    try:
                        line = await reader.readline()
                    except (ValueError, asyncio.LimitOverrunError):  # an event over the line bound: skip
                        yield None
                        continue
                    except OSError:
                        break
                    if not line:
                        break
                    changed = self._changed(line)
                    if changed is not None:
                        yield changed
            finally:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
            log.info("Docker events at %s: the stream ended; re-opening", self.engine.url)
            announced = True
            yield None

    # -- provisioning -----------------------------------------------------------------------

    def _request(self, properties: Any) -> props.Request:
        parsed = self._parsed
        if parsed is not None and parsed[0] is properties:
            return parsed[1]
        request = props.parse(properties)
        self._parsed = (properties, request)
        return request

    def _ensure_image(self, image: str) -> None:
        try:
            self._call(lambda: self.engine.get(f"/images/{image}/json"), f"inspect image {image}")
            return
        except engines.EngineError as error:
            if error.status != 404:
                raise
        repository, tag = props.image_reference(image)
        problem = ""
        try:
            for line in self.engine.stream(
                "POST",
                "/images/create",
                query={"fromImage": repository, "tag": tag},
                timeout=self.pull_timeout,
            ):
                with contextlib.suppress(ValueError):
                    progress = json.loads(line)
                    if isinstance(progress, dict) and progress.get("error"):
                        problem = str(progress["error"])
        except spi.PluginUnavailable:
            raise
        except engines.EngineError as error:
            problem = error.message
        except spi.PluginError as error:
            problem = str(error).rsplit(": ", 1)[-1]
        if problem:
            raise spi.PluginError(
                f"image {image} is not on the Docker engine and cannot be pulled ({props.short(problem)}): load it "
                f"there (docker load, import or build), or fix {props.FIELD}.Config.Image"
            )

    def _clear_remains(self, tags: Mapping[str, str]) -> None:
        """Remove the exited containers of the group ``tags`` name that describe saw."""
        owner = _owner(tags)
        with self._lock:
            dead = [full for full, of in self._remains.items() if of == owner]
            for full in dead:
                del self._remains[full]
        for full in dead:
            self._remove_quietly(full, force=False)

    def _create(self, body: dict[str, Any], logical_id: str | None, tags: Mapping[str, str]) -> str:
        """Create the container, named (a pet by its logical ID, others ``<group>-<random>``), so that
        one whose answer was lost (the connection broke) can still be found and removed."""
        group = tags.get(instances.TAG_GROUP, "")
        prefix = group if props.NAME.fullmatch(group) and len(group) < 200 else "infrakit"
        for attempt in range(3):
            name = logical_id if logical_id is not None else f"{prefix}-{_token()}"
            try:
                answer = self.engine.post("/containers/create", body, query={"name": name})
            except engines.EngineError as error:
                if error.status == 404 and "image" in error.message.lower():
                    raise _NoImage(error.message) from None
                if error.status == 409 and attempt == 0 and logical_id is not None and self._free_name(name, tags):
                    continue
                if error.status == 409 and logical_id is None:
                    continue  # another container drew the same name: draw again
                if error.status == 409:
                    raise spi.PluginError(
                        f"cannot create container {name}: {props.short(error.message)}; it is not an exited instance "
                        "of this group: remove or rename it, or choose other logical IDs"
                    ) from None
                raise spi.PluginError(
                    f"Docker refused the container ({props.short(error.message)}): fix {props.FIELD}"
                ) from None
            except spi.PluginError:
                self._remove_quietly(name, force=True)  # created or not: we cannot know
                raise
            if not isinstance(answer, dict) or not isinstance(answer.get("Id"), str) or len(answer["Id"]) < 12:
                self._remove_quietly(name, force=True)
                raise spi.PluginError(f"Docker engine at {self.engine.url}: create answered no container ID")
            return str(answer["Id"])
        raise spi.PluginError("cannot find a free container name")

    def _free_name(self, name: str, tags: Mapping[str, str]) -> bool:
        """Remove the container named ``name`` if it is an exited instance of the same group and pet."""
        try:
            container = self.engine.get(f"/containers/{name}/json")
        except engines.EngineError:
            return False
        own = _strings((container.get("Config") or {}).get("Labels"))
        state = (container.get("State") or {}).get("Status")
        if state in props.LIVE_STATES or _owner(own) != _owner(tags):
            return False
        if own.get(instances.TAG_LOGICAL_ID, name) != name:
            return False
        return self._remove_quietly(container["Id"], force=False)

    def _connect(self, container: str, network: str) -> None:
        try:
            # Docker accepts a connection to a network that does not exist, and fails the start.
            self.engine.get(f"/networks/{network}")
            self.engine.post(f"/networks/{network}/connect", {"Container": container})
        except engines.EngineError as error:
            raise spi.PluginError(
                f"cannot connect the container to network {network!r} ({props.short(error.message)}): create it first "
                "(docker network create), or fix NetworkAttachments"
            ) from None

    # -- helpers ----------------------------------------------------------------------------

    def _inspect(self, instance_id: str) -> dict[str, Any]:
        if not isinstance(instance_id, str) or not instance_id or "/" in instance_id:
            raise spi.InstanceNotFound(f"{instance_id!r} is not a container ID")
        try:
            container = self._call(lambda: self.engine.get(f"/containers/{instance_id}/json"), "inspect")
        except engines.EngineError as error:
            if error.status == 404:
                raise spi.InstanceNotFound(f"container {instance_id} not found") from None
            raise
        if not isinstance(container, dict) or not isinstance(container.get("Id"), str):
            raise spi.PluginError(f"Docker engine at {self.engine.url}: container {instance_id}: no ID in its inspect")
        return container

    def _all_ids(self) -> list[str]:
        listed = self.engine.get("/containers/json", query={"all": "1"})
        return [c["Id"] for c in listed if isinstance(c, dict) and isinstance(c.get("Id"), str)]

    def _labels(self) -> labelling.LabelStore:
        if self._store is None:
            info = self._call(lambda: self.engine.get("/info"), "info")
            engine_id = str(info.get("ID") or "unknown") if isinstance(info, dict) else "unknown"
            safe = "".join(c if c.isalnum() else "-" for c in engine_id)[:80]
            self._store = labelling.LabelStore(self.labels_dir / f"labels-{safe}.json")
        return self._store

    def _remove_quietly(self, container: str, *, force: bool) -> bool:
        """Remove ``container`` (by ID or name), not reporting its removal; whether it went.

        Without ``force``, Docker refuses to remove a running container: the remains of an
        instance that Docker's restart policy revived meanwhile are left alone.
        """
        with self._lock:
            self._destroyed[container[:12]] = None
        try:
            self.engine.delete(f"/containers/{container}", query={"force": "1" if force else None, "v": "1"})
        except spi.PluginError:
            return False
        return True

    def _call(self, call: Callable[[], _T], what: str) -> _T:
        """An idempotent call, tried again ``retries`` times while the engine cannot be reached."""
        for attempt in range(self.retries + 1):
            try:
                return call()
            except spi.PluginUnavailable:
                if attempt == self.retries:
                    raise
                time.sleep(0.05 * 2**attempt)
        raise AssertionError(what)  # pragma: no cover

    def _changed(self, line: bytes) -> frozenset[str] | None:
        try:
            event = json.loads(line)
        except ValueError:
            return None
        actor = event.get("Actor") if isinstance(event, dict) else None
        full = actor.get("ID") if isinstance(actor, dict) else None
        if not isinstance(full, str) or len(full) < 12:
            return None
        short = full[:12]
        action = str(event.get("Action") or "")
        if action in ("die", "destroy"):
            with self._lock:
                if short in self._destroyed:
                    if action == "destroy":
                        del self._destroyed[short]
                    return None  # our own removal: the sync that did it knows
        return frozenset({short})


def _token() -> str:
    import secrets

    return secrets.token_hex(6)


class _NoImage(Exception):
    """Docker has no such image (yet): pull it, then create again."""


def _owner(tags: Mapping[str, str]) -> tuple[str, ...]:
    return tuple(tags.get(k, "") for k in _MEMBERSHIP)


def _strings(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}
