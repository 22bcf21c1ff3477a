"""One sync of one group: the runtime's unit of work, the same in every mode.

Shaped as Cluster API's MachineSet reconcile and sample-controller's sync handler: it
starts from the record as the store has it *now*, decides everything again from the
spec and the instances really there, and ends by writing status, on failure too:

1. no record: the group is gone; where the store says so, its dangling instances
   (not orphaned on purpose) are collected, as Kubernetes' garbage collector does for
   objects whose owner is gone;
2. an invalid spec or unknown plugin: ``Ready=False, InvalidSpec``; nothing is touched;
3. a record being deleted: its instances are destroyed (or marked orphaned and left),
   then the record is released, even when its properties have become invalid;
4. observe, plan once; the guard (the finalizer) is set before the first instance is
   made, and a sync whose group vanished meanwhile stops there;
5. the engine acts (not when paused); the guard is dropped when no instance is left;
6. status: from the members observed and acted on by the end, never from the plan;
   any failure is ``Ready=False, ReconcileError`` with the cause, and clears itself on
   the next sync that succeeds.

Blocking (plugins are); the runtime runs it in a thread, the local commit directly.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime
import logging
from collections.abc import Callable, Mapping
from typing import Any, Final

from infrakit import faults, logs, plugins
from infrakit.core import instances, planning, specs, status
from infrakit.runtime import engine, events, owners, stores

__all__ = ["RETRY_CONFLICT", "WAIT_FOR_HEALTH", "Result", "Syncer", "now"]

log = logging.getLogger(__name__)

WAIT_FOR_HEALTH: Final = 1.0
"""Seconds before a group waiting for instances to become healthy is synced again (every mode)."""
RETRY_CONFLICT: Final = 0.1
"""Seconds before a sync that lost a write race (a stale cache) runs again."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Result:
    """What a sync did and saw, for the runtime's queue, metrics and the CLI."""

    key: stores.Key
    gone: bool = False  # no record (any more): nothing to report on
    spec: specs.GroupSpec | None = None
    members: list[planning.Member] = dataclasses.field(default_factory=list)
    plan: planning.Plan | None = None
    steps: list[engine.Step] = dataclasses.field(default_factory=list)
    failure: status.Failure | None = None
    requeue_after: float | None = None
    released: bool = False  # a deletion completed
    elapsed: float = 0.0  # seconds the sync took (set by the runtime)

    @property
    def converged(self) -> bool:
        return self.failure is None and self.plan is not None and self.plan.converged

    @property
    def retry(self) -> bool:
        """Whether the failure may go away by itself (an invalid spec waits for a change)."""
        return self.failure is not None and self.failure.reason != status.INVALID_SPEC


def now() -> str:
    """A status timestamp (RFC 3339, UTC, seconds), as the API server writes them."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Syncer:
    """Syncs groups of one store with the plugins of one registry."""

    def __init__(
        self,
        *,
        store: stores.Store,
        registry: plugins.Registry,
        index: owners.Owners | None = None,
        clock: Callable[[], str] = now,
        publisher: events.Publisher | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.owners = index if index is not None else owners.Owners()
        self.clock = clock
        # A controller's log says what each sync did; a one-shot command prints its own result.
        self.verbose = True
        self.publisher = publisher  # the process's event broker (the group daemon's), if anyone may listen

    def sync(
        self,
        key: stores.Key,
        *,
        members: list[planning.Member] | None = None,
        should_stop: Callable[[], bool] | None = None,
        on_step: Callable[[engine.Step], None] | None = None,
    ) -> Result:
        """Bring one group a step closer to its spec; see the module docstring.

        ``members`` spares the first describe when the caller has just made one (the
        local commit, under the same lock).
        """
        with self.store.session():
            try:
                record = self.store.get(key)
                faults.hit("sync-start")  # a stall here works from the record as it was read
            except specs.SpecError as error:  # a damaged record: this group only
                log.error("group %s: %s", _name(key), error, extra=logs.fields(key, reason=status.INVALID_SPEC))
                return Result(key=key, failure=status.Failure(reason=status.INVALID_SPEC, message=str(error)))
            if record is None:
                self._collect(key)
                return Result(key=key, gone=True)
            return self._sync(record, members=members, should_stop=should_stop, on_step=on_step)

    # -- phases ---------------------------------------------------------------------------

    def _sync(
        self,
        record: stores.Record,
        *,
        members: list[planning.Member] | None,
        should_stop: Callable[[], bool] | None,
        on_step: Callable[[engine.Step], None] | None,
    ) -> Result:
        try:
            spec = specs.parse_document(record.manifest, namespace=record.namespace)
        except specs.SpecError as error:
            return self._invalid(record, None, error)
        try:
            resolved = engine.resolve(spec, self.registry, options=record.options, validate=not record.deleting)
        except specs.SpecError as error:
            return self._invalid(record, spec, error)
        except Exception as error:  # a plugin that cannot even start (its directory, its socket)
            return self._failed(record, spec, None, planning.Plan(), error, progress=None)
        self.owners.plugin(record.key, resolved.instance)
        if record.deleting:
            return self._delete(record, spec, resolved)

        progress = engine.Progress()
        plan = planning.Plan()
        steps = progress.steps
        debugging = log.isEnabledFor(logging.DEBUG)  # a step's fields cost more than the step at 100,000

        def step(done: engine.Step) -> None:
            if debugging:
                log.debug(
                    "group %s: %s %s (%s)",
                    _name(record.key),
                    done.action,
                    done.instance_id,
                    done.reason.value,
                    extra=logs.fields(
                        record.key, action=done.action, instance=done.instance_id, reason=done.reason.value
                    ),
                )
            if done.action == "provision":
                self.owners.add(done.instance_id, record.key)
            if on_step is not None:
                on_step(done)

        try:
            observed = engine.observe(spec, resolved) if members is None else members
            progress.members = {m.id: m for m in observed}
            progress.observed = True
            lost = self.owners.lost(record.key, {m.id for m in observed})
            plan = planning.plan(spec, observed)
            if (observed or plan.provisions) and not record.guarded and not self.store.guard(record):
                # Deleted (or being deleted) before we could hold it: make nothing.
                return Result(key=record.key, gone=True, spec=spec, members=observed, plan=plan)
            final = observed
            if not spec.paused and not plan.empty:
                outcome = engine.reconcile(
                    spec,
                    resolved,
                    members=observed,
                    plan=plan,
                    on_step=step,
                    should_stop=should_stop,
                    progress=progress,
                )
                final, plan = outcome.members, outcome.plan
            if not final and record.guarded and not plan.provisions:
                self.store.unguard(record)
        except stores.Conflict as conflict:
            log.info(
                "group %s: %s (Conflict): syncing again",
                _name(record.key),
                conflict,
                extra=logs.fields(record.key, reason="Conflict"),
            )
            if progress.steps:
                self.owners.set(record.key, list(progress.members))
            return Result(key=record.key, spec=spec, members=progress.sorted_members(), requeue_after=RETRY_CONFLICT)
        except Exception as error:
            return self._failed(record, spec, resolved, plan, error, progress=progress)
        except BaseException:  # Ctrl-C, SystemExit: say so in status, then go
            failure = _failure("Interrupted", "interrupted mid-sync; the next sync resumes from what is there")
            with contextlib.suppress(Exception):  # the interruption is what must propagate
                if progress.observed:
                    self._write(record, spec, progress.sorted_members(), plan, failure)
                else:
                    new = status.with_failure(record.status, failure, now=self.clock(), generation=record.generation)
                    self._write_raw(record, new)
            raise
        self.owners.set(record.key, [m.id for m in final])
        self._write(record, spec, final, plan, None)
        self._report(record, spec, steps, lost)
        self._publish(record, spec, observed=observed, final=final, steps=steps, lost=lost)
        blocked = plan.blocked and not spec.paused
        return Result(
            key=record.key,
            spec=spec,
            members=final,
            plan=plan,
            steps=list(steps),
            requeue_after=WAIT_FOR_HEALTH if blocked else None,
        )

    def _invalid(self, record: stores.Record, spec: specs.GroupSpec | None, error: specs.SpecError) -> Result:
        """Nothing can be decided: say why, touch nothing (but finish a deletion)."""
        message = str(error)
        if record.deleting:
            if spec is not None:
                # Only the properties are invalid: the instances are known, tear them down.
                try:
                    resolved = engine.resolve(spec, self.registry, options=record.options, validate=False)
                except specs.SpecError:
                    pass
                else:
                    return self._delete(record, spec, resolved)
            if record.guarded:
                left = f"released with an invalid spec; its instances, if any, were left in place: {message}"
                self.store.event(record, reason="InstancesLeft", message=left, warning=True, force=True)
                self.store.release(record)
            return Result(key=record.key, released=True, failure=_failure(status.INVALID_SPEC, message))
        failure = status.Failure(reason=status.INVALID_SPEC, message=message)
        new = status.with_failure(record.status, failure, now=self.clock(), generation=record.generation)
        if _ready_changed(record.status, new):
            self.store.event(record, reason=status.INVALID_SPEC, message=message, warning=True, force=True)
            self._publish_error(record, reason=status.INVALID_SPEC, message=message)
        self._write_raw(record, new)
        return Result(key=record.key, spec=spec, failure=failure)

    def _failed(
        self,
        record: stores.Record,
        spec: specs.GroupSpec,
        resolved: engine.Plugins | None,
        plan: planning.Plan,
        error: Exception,
        *,
        progress: engine.Progress | None,
    ) -> Result:
        """A plugin or the store failed: status says so, from what is known to be there."""
        failure = _failure(status.RECONCILE_ERROR, _describe(error))
        log.debug(
            "group %s: failure detail",
            _name(record.key),
            exc_info=error,
            extra=logs.fields(record.key, reason=failure.reason, error=failure.message),
        )
        members: list[planning.Member] = []
        known = progress is not None and progress.observed
        if progress is not None and progress.observed:
            members = progress.sorted_members()
        elif resolved is not None:
            try:  # the failure came before anything was observed: look once more
                members = engine.observe(spec, resolved)
                known = True
            except Exception:  # noqa: S110 - the first failure is the one reported
                pass
        if _ready_message(record.status) != failure.message:
            # Once per distinct failure, not once per retry: the store shows it (an Event, a log line).
            self.store.event(record, reason=status.RECONCILE_ERROR, message=failure.message, warning=True, force=True)
            self._publish_error(record, reason=status.RECONCILE_ERROR, message=failure.message)
        if known:
            self._write(record, spec, members, plan, failure)
        else:
            new = status.with_failure(record.status, failure, now=self.clock(), generation=record.generation)
            self._write_raw(record, new)
        return Result(
            key=record.key,
            spec=spec,
            members=members,
            plan=plan,
            steps=list(progress.steps) if progress is not None else [],
            failure=failure,
        )

    def _delete(self, record: stores.Record, spec: specs.GroupSpec, resolved: engine.Plugins) -> Result:
        if not record.guarded:
            return Result(key=record.key, gone=True, spec=spec)  # holds no instance of ours
        steps: list[engine.Step] = []
        try:
            if record.orphan:
                kept = (
                    engine.orphan(spec, resolved)
                    if self.store.collects_garbage
                    else engine.observe(spec, resolved)  # nothing collects them here: no mark needed
                )
                message = f"released the group; {len(kept)} instances left in place"
                self.store.event(record, reason="Orphaned", message=message, force=True)
            else:
                steps = engine.teardown(spec, resolved)
                message = f"destroyed {len(steps)} instances of the deleted group"
                self.store.event(record, reason="Destroyed", message=message, force=True)
                for done in steps:
                    self._emit(record, "instance/destroyed", "Destroyed", _instance_data(done, reason="GroupDestroyed"))
        except Exception as error:
            failure = _failure(status.RECONCILE_ERROR, f"cannot tear down: {_describe(error)}")
            if _ready_message(record.status) != failure.message:
                self.store.event(
                    record, reason=status.RECONCILE_ERROR, message=failure.message, warning=True, force=True
                )
                self._publish_error(record, reason=status.RECONCILE_ERROR, message=failure.message)
            new = status.with_failure(record.status, failure, now=self.clock(), generation=record.generation)
            self._write_raw(record, new)
            return Result(key=record.key, spec=spec, steps=steps, failure=failure)
        self.store.release(record)
        self.owners.forget(record.key)
        return Result(key=record.key, spec=spec, steps=steps, released=True, gone=True)

    def _collect(self, key: stores.Key) -> None:
        """The group is gone: destroy what it left behind, unless orphaned on purpose."""
        plugin = self.owners.forget(key)
        if plugin is None or not self.store.collects_garbage:
            return
        try:
            self.collect_dangling(plugin, only=key)
        except Exception as error:
            log.warning(
                "group %s: collecting its dangling instances failed: %s",
                _name(key),
                _describe(error),
                extra=logs.fields(key, error=_describe(error)),
            )

    def collect_dangling(self, plugin: plugins.InstancePlugin, *, only: stores.Key | None = None) -> int:
        """Destroy the instances in ``plugin`` whose group is gone from the store.

        Only instances of groups this store owns (their namespace tag), not marked
        orphaned, and only after the store's source of truth confirms the group is gone.
        """
        if not self.store.collects_garbage:
            return 0
        query = {} if only is None else {instances.TAG_NAMESPACE: only[0], instances.TAG_GROUP: only[1]}
        found: dict[stores.Key, list[instances.Description]] = collections.defaultdict(list)
        for description in plugin.describe(query):
            tags = description.tags
            namespace, group = tags.get(instances.TAG_NAMESPACE), tags.get(instances.TAG_GROUP)
            if not namespace or not group or tags.get(instances.TAG_ORPHANED) == "true":
                continue
            found[(namespace, group)].append(description)
        known = set(self.store.keys())
        destroyed = 0
        for key, dangling in sorted(found.items()):
            if key in known or not self.store.owns(key) or self.store.exists(key):
                continue
            for description in dangling:
                try:
                    plugin.destroy(description.id)
                except plugins.InstanceNotFound:
                    continue
                destroyed += 1
            log.warning(
                "group %s is gone: destroyed %d instances it left behind (%s)",
                _name(key),
                len(dangling),
                ", ".join(d.id for d in dangling[:5]) + (", ..." if len(dangling) > 5 else ""),
                extra=logs.fields(
                    key, reason="Collected", count=len(dangling), instances=[d.id for d in dangling[:_LOGGED_IDS]]
                ),
            )
        return destroyed

    # -- status and reports ---------------------------------------------------------------

    def _write(
        self,
        record: stores.Record,
        spec: specs.GroupSpec,
        members: list[planning.Member],
        plan: planning.Plan,
        failure: status.Failure | None,
    ) -> None:
        new = status.compute(
            spec,
            members,
            plan,
            now=self.clock(),
            previous=record.status,
            generation=record.generation,
            failure=failure,
        )
        self._write_raw(record, new)

    def _write_raw(self, record: stores.Record, new: Mapping[str, Any]) -> None:
        if dict(record.status) != dict(new):
            self.store.write_status(record, new)

    def _report(self, record: stores.Record, spec: specs.GroupSpec, steps: list[engine.Step], lost: list[str]) -> None:
        """Events (cluster) or log lines (local) naming what was done, aggregated."""
        if steps:
            done = collections.Counter(s.action for s in steps)
            log.log(
                logging.INFO if self.verbose else logging.DEBUG,
                "group %s: %d instance operations (%d provisioned, %d destroyed)",
                _name(record.key),
                len(steps),
                done["provision"],
                done["destroy"],
                extra=logs.fields(
                    record.key,
                    count=len(steps),
                    provisioned=done["provision"],
                    destroyed=done["destroy"],
                    plan=_plan_fields(steps),
                ),
            )
        if lost:
            made = [s.instance_id for s in steps if s.action == "provision"][: len(lost)]
            message = f"lost {_ids(lost)}; replaced by {_ids(made)}" if made else f"lost {_ids(lost)}"
            self.store.event(record, reason="InstancesLost", message=message, warning=True)
        counts = collections.Counter((s.action, s.reason) for s in steps)
        rolled = counts[("destroy", planning.Reason.ROLLING_UPDATE)]
        made_count = sum(n for (action, _), n in counts.items() if action == "provision")
        removed = sum(n for (action, _), n in counts.items() if action == "destroy") - rolled
        if done_labels := counts[("label", planning.Reason.BOOTSTRAP)]:
            self.store.event(
                record,
                reason="Adopted",
                message=f"adopted {done_labels} instances made outside InfraKit "
                f"({instances.TAG_CONFIG_SHA}={instances.BOOTSTRAP_SHA}): labelled with config {spec.config_sha}",
            )
        if made_count:
            self.store.event(
                record, reason="Provisioned", message=f"provisioned {made_count} instances (config {spec.config_sha})"
            )
        if rolled:
            self.store.event(
                record,
                reason="RollingUpdate",
                message=f"replaced {rolled} outdated instances with config {spec.config_sha}",
            )
        if removed:
            self.store.event(record, reason="Destroyed", message=f"destroyed {removed} instances to reduce the group")

    def _emit(self, record: stores.Record, topic: str, kind: str, data: Mapping[str, Any]) -> None:
        if self.publisher is None:
            return
        extra = {"Namespace": record.key[0]} if record.key[0] else {}
        try:
            self.publisher.publish(f"{record.name}/{topic}", type=kind, data={"Group": record.name, **extra, **data})
        except Exception as error:  # events are news, never a reason for a sync to fail
            log.warning("group %s: publishing %s failed: %s", _name(record.key), topic, error)

    def _publish_error(self, record: stores.Record, *, reason: str, message: str) -> None:
        self._emit(record, "error", "error", {"Reason": reason, "Message": message})

    def _publish(
        self,
        record: stores.Record,
        spec: specs.GroupSpec,
        *,
        observed: list[planning.Member],
        final: list[planning.Member],
        steps: list[engine.Step],
        lost: list[str],
    ) -> None:
        """Events from what this sync computed: its steps, the lost, the newly unhealthy, the roll."""
        if self.publisher is None:
            return
        for instance_id in lost:
            self._emit(
                record, "instance/lost", "Lost", {"InstanceID": instance_id, "LogicalID": None, "Reason": "Lost"}
            )
        for done in steps:
            if done.action == "provision":
                self._emit(record, "instance/provisioned", "Provisioned", _instance_data(done))
            elif done.action == "destroy":
                self._emit(record, "instance/destroyed", "Destroyed", _instance_data(done))
        was_unhealthy = {
            entry.get("id")
            for entry in record.status.get("instances") or []
            if isinstance(entry, Mapping) and entry.get("healthy") == instances.Health.UNHEALTHY.value
        }
        for member in observed:
            if member.health is instances.Health.UNHEALTHY and member.id not in was_unhealthy:
                data = {"InstanceID": member.id, "LogicalID": member.logical_id, "Reason": "Unhealthy"}
                self._emit(record, "instance/unhealthy", "Unhealthy", data)
        outdated = [m for m in observed if not m.up_to_date]
        rolled = [s for s in steps if s.reason is planning.Reason.ROLLING_UPDATE and s.action == "destroy"]
        update = {"ConfigHash": spec.config_sha}
        if outdated and not spec.paused and record.status.get("configHash") != spec.config_sha:
            self._emit(record, "update/started", "UpdateStarted", {**update, "Outdated": len(outdated)})
        remaining = sum(1 for m in final if not m.up_to_date)
        if rolled:
            self._emit(
                record, "update/progress", "UpdateProgress", {**update, "Replaced": len(rolled), "Remaining": remaining}
            )
        if (outdated or rolled) and not remaining:
            self._emit(record, "update/completed", "UpdateCompleted", {**update, "Size": len(final)})


def _instance_data(step: engine.Step, *, reason: str | None = None) -> dict[str, Any]:
    return {"InstanceID": step.instance_id, "LogicalID": step.logical_id, "Reason": reason or step.reason.value}


_LOGGED_IDS: Final = 20
"""Instance IDs named in one structured log field (the counts are exact past them)."""


def _plan_fields(steps: list[engine.Step]) -> dict[str, Any]:
    """What a sync did, for the ``plan`` log field: per action, the count by reason and the first IDs."""
    found: dict[str, Any] = {}
    for action in ("label", "provision", "destroy"):
        done = [s for s in steps if s.action == action]
        if done:
            found[action] = {
                "reasons": dict(collections.Counter(s.reason.value for s in done)),
                "instances": [s.instance_id for s in done[:_LOGGED_IDS]],
            }
    return found


def _failure(reason: str, message: str) -> status.Failure:
    return status.Failure(reason=reason, message=message)


def _describe(error: BaseException) -> str:
    """One line naming the cause, for status, events and logs (never a traceback)."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if isinstance(error, plugins.PluginError | specs.SpecError) and text:
        return text
    if isinstance(error, OSError) and error.strerror:
        where = f" {error.filename}" if error.filename else ""
        return f"{error.strerror}{where}"
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _ready_message(previous: Mapping[str, Any]) -> str | None:
    for condition in previous.get("conditions") or []:
        if isinstance(condition, Mapping) and condition.get("type") == "Ready":
            message = condition.get("message")
            return message if isinstance(message, str) else None
    return None


def _ready_changed(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    return _ready_message(old) != _ready_message(new)


def _ids(ids: list[str]) -> str:
    shown = ", ".join(ids[:5])
    return shown + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")


def _name(key: stores.Key) -> str:
    return f"{key[0]}/{key[1]}" if key[0] else key[1]
