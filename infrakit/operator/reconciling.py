"""Syncing one Group on the cluster: the operator's unit of work (blocking; run in a thread).

Like a sample-controller sync handler: it starts from the Group as last seen, decides
everything again from the spec and the instances really on the volume, and ends by
writing status once (only if it changed).  In order:

1. deletion: with the ``infrakit.io/instances`` finalizer, destroy exactly the group's
   instances (or none, with ``infrakit.io/orphan-instances: "true"``), then release;
2. an invalid spec or an unknown plugin: a Ready=False condition, instances untouched;
3. the finalizer is added before the first instance is made, removed when none remain;
4. the engine converges the instances (not when paused); events summarise what it did;
5. status: counts, conditions, the (capped) instance list.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from infrakit import engine, faults, kubeapi, plugins
from infrakit.core import planning, specs, status

__all__ = ["Result", "Syncer"]

log = logging.getLogger(__name__)

COMPONENT: Final = "infrakit-operator"
EVENT_INTERVAL: Final = 5.0  # at most one event per group and reason this often; the rest are summed


@dataclasses.dataclass(frozen=True, kw_only=True)
class Result:
    """What a sync leaves behind for the caller's queue and metrics."""

    requeue_after: float | None = None
    members: list[planning.Member] = dataclasses.field(default_factory=list)
    deleted: bool = False
    error: str | None = None
    actions: int = 0  # instance operations carried out
    desired: int = 0


class Syncer:
    def __init__(self, *, groups: kubeapi.Groups, settings: plugins.Settings) -> None:
        self.groups = groups
        self.settings = settings
        self._last_event: dict[tuple[str, str, str], float] = {}
        self._pending: dict[tuple[str, str, str], int] = collections.Counter()

    def sync(self, body: Mapping[str, Any], *, should_stop: Callable[[], bool] | None = None) -> Result:
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        faults.hit("sync-start")
        try:
            spec = specs.parse_document({k: v for k, v in body.items() if k != "status"}, namespace=namespace)
            resolved = engine.resolve(spec, self.settings)
        except specs.SpecError as error:
            return self._invalid(body, str(error))

        if meta.get("deletionTimestamp"):
            return self._delete(body, spec, resolved)

        members = engine.observe(spec, resolved)
        plan = planning.plan(spec, members)
        finalizers = list(meta.get("finalizers") or [])
        if (members or plan.provisions) and kubeapi.FINALIZER not in finalizers:
            # Before the first instance exists, so that deleting the Group can never orphan one.
            self.groups.set_finalizers(
                namespace, name, [*finalizers, kubeapi.FINALIZER], resource_version=meta["resourceVersion"]
            )
        steps: list[engine.Step] = []
        try:
            outcome = engine.reconcile(spec, resolved, members=members, on_step=steps.append, should_stop=should_stop)
        finally:
            self._report(body, spec, steps)
        if not outcome.members and kubeapi.FINALIZER in finalizers and not plan.provisions:
            fresh = self.groups.get(namespace, name)
            if fresh is not None and not fresh["metadata"].get("deletionTimestamp"):
                remaining = [f for f in fresh["metadata"].get("finalizers") or [] if f != kubeapi.FINALIZER]
                self.groups.set_finalizers(
                    namespace, name, remaining, resource_version=fresh["metadata"]["resourceVersion"]
                )
        self._write_status(body, spec, outcome.members, outcome.plan)
        blocked = outcome.plan.blocked and not spec.paused
        return Result(
            requeue_after=1.0 if blocked else None,
            members=outcome.members,
            actions=len(steps),
            desired=spec.desired_size,
        )

    # -- phases ---------------------------------------------------------------------------

    def _delete(self, body: Mapping[str, Any], spec: specs.GroupSpec, resolved: engine.Plugins) -> Result:
        meta = body["metadata"]
        if kubeapi.FINALIZER not in (meta.get("finalizers") or []):
            return Result(deleted=True)
        orphan = (meta.get("annotations") or {}).get(kubeapi.ORPHAN_ANNOTATION) == "true"
        if orphan:
            kept = len(engine.observe(spec, resolved))
            self._event(body, "Orphaned", f"released the group; {kept} instances left in place", force=True)
        else:
            steps = engine.teardown(spec, resolved)
            self._event(body, "Destroyed", f"destroyed {len(steps)} instances of the deleted group", force=True)
        remaining = [f for f in meta.get("finalizers") or [] if f != kubeapi.FINALIZER]
        self.groups.set_finalizers(meta["namespace"], meta["name"], remaining, resource_version=meta["resourceVersion"])
        return Result(deleted=True, actions=0 if orphan else len(steps))

    def _invalid(self, body: Mapping[str, Any], message: str) -> Result:
        meta = body["metadata"]
        if meta.get("deletionTimestamp") and kubeapi.FINALIZER in (meta.get("finalizers") or []):
            # Cannot tell which plugin holds the instances: release rather than block deletion forever.
            remaining = [f for f in meta.get("finalizers") or [] if f != kubeapi.FINALIZER]
            self._event(body, "InvalidSpec", f"released with an invalid spec, instances left: {message}", warning=True)
            self.groups.set_finalizers(
                meta["namespace"], meta["name"], remaining, resource_version=meta["resourceVersion"]
            )
            return Result(deleted=True, error=message)
        previous = body.get("status") or {}
        new = dict(previous)
        new["observedGeneration"] = meta.get("generation")
        new["conditions"] = _invalid_conditions(previous, message, generation=meta.get("generation"))
        if new != previous:
            self.groups.patch_status(meta["namespace"], meta["name"], new)
            self._event(body, "InvalidSpec", message, warning=True)
        return Result(error=message)

    def _write_status(
        self,
        body: Mapping[str, Any],
        spec: specs.GroupSpec,
        members: list[planning.Member],
        plan: planning.Plan,
    ) -> None:
        meta = body["metadata"]
        previous = body.get("status") or {}
        new = status.compute(spec, members, plan, now=_now(), previous=previous, generation=meta.get("generation"))
        if {k: previous.get(k) for k in new} != new:
            self.groups.patch_status(meta["namespace"], meta["name"], new)

    # -- events ---------------------------------------------------------------------------

    def _report(self, body: Mapping[str, Any], spec: specs.GroupSpec, steps: list[engine.Step]) -> None:
        counts = collections.Counter((s.action, s.reason) for s in steps)
        rolled = counts[("destroy", planning.Reason.ROLLING_UPDATE)]
        made = sum(n for (action, _), n in counts.items() if action == "provision")
        removed = sum(n for (action, _), n in counts.items() if action == "destroy") - rolled
        if made:
            self._event(body, "Provisioned", f"provisioned {{n}} instances (config {spec.config_sha})", count=made)
        if rolled:
            self._event(
                body, "RollingUpdate", f"replaced {{n}} outdated instances with config {spec.config_sha}", count=rolled
            )
        if removed:
            self._event(body, "Destroyed", "destroyed {n} instances to reduce the group", count=removed)

    def _event(
        self,
        body: Mapping[str, Any],
        reason: str,
        message: str,
        *,
        count: int = 1,
        warning: bool = False,
        force: bool = False,
    ) -> None:
        """Post an event, at most one per group and reason per EVENT_INTERVAL (counts summed)."""
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"], reason)
        self._pending[key] += count
        now = time.monotonic()
        if not force and now - self._last_event.get(key, -EVENT_INTERVAL) < EVENT_INTERVAL:
            return
        total = self._pending.pop(key)
        self._last_event[key] = now
        try:
            self.groups.post_event(
                body, reason=reason, message=message.replace("{n}", str(total)), warning=warning, component=COMPONENT
            )
        except kubeapi.ApiException as error:
            log.warning("could not post event %s on %s/%s: %s", reason, key[0], key[1], error.reason)


def _invalid_conditions(previous: Mapping[str, Any], message: str, *, generation: int | None) -> list[dict[str, Any]]:
    kept = [c for c in previous.get("conditions") or [] if c.get("type") != "Ready"]
    old = next((c for c in previous.get("conditions") or [] if c.get("type") == "Ready"), None)
    since = old.get("lastTransitionTime") if old and old.get("status") == "False" else None
    ready = {
        "type": "Ready",
        "status": "False",
        "reason": "InvalidSpec",
        "message": message,
        "lastTransitionTime": since or _now(),
    }
    if generation is not None:
        ready["observedGeneration"] = generation
    return [ready, *kept]


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
