"""One sync of one group: the runtime's unit of work, the same in every mode.

Shaped as Cluster API's MachineSet reconcile and sample-controller's sync handler: it
starts from the record as the store has it *now*, decides everything again from the
spec and the instances really there, and ends by writing status from what it knows,
on every exit (a :class:`Scope`, written once in a ``finally``, as Cluster API's
deferred patch):

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
   any failure is ``Ready=False`` with its reason (``PluginUnavailable`` when a plugin
   cannot be reached, ``ReconcileError`` otherwise) and the cause, and clears itself
   on the next sync that succeeds.

What was lost is judged against the members memory every controller of the group
shares (:mod:`infrakit.runtime.owners`); events come from :mod:`infrakit.runtime.reporting`.
Blocking (plugins are); the runtime runs it in a thread, the local commit directly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
from collections.abc import Callable, Mapping
from typing import Any, Final

from infrakit import faults, logs, plugins
from infrakit.core import planning, specs, status
from infrakit.runtime import collecting, engine, events, owners, reporting, stores

__all__ = ["PLUGIN_UNAVAILABLE", "RETRY_CONFLICT", "WAIT_FOR_HEALTH", "Prepared", "Result", "Scope", "Syncer", "now"]

log = logging.getLogger(__name__)

WAIT_FOR_HEALTH: Final = 1.0
"""Seconds before a group waiting for instances to become healthy is synced again (every mode)."""
RETRY_CONFLICT: Final = 0.1
"""Seconds before a sync that lost a write race (a stale cache) runs again."""
PLUGIN_UNAVAILABLE: Final = "PluginUnavailable"
"""The reason of a failure to reach a plugin (its daemon, or what it drives)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Result:
    """What a sync did and saw, for the runtime's queue, metrics and the CLI."""

    key: stores.Key
    gone: bool = False  # no record (any more): nothing to report on
    spec: specs.GroupSpec | None = None
    members: list[planning.Member] = dataclasses.field(default_factory=list)
    decided: planning.Plan | None = None  # the plan decided from what was observed (its words: explain())
    plan: planning.Plan | None = None  # where acting ended: converged, blocked, or cut short
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


@dataclasses.dataclass(frozen=True, kw_only=True)
class Prepared:
    """A spec parsed and its plugins validated, by :meth:`Syncer.prepare`: a commit checks a
    whole file before it records any of it, and its sync then does not check again."""

    spec: specs.GroupSpec
    resolved: engine.Plugins
    options: Mapping[str, Any]


@dataclasses.dataclass(kw_only=True)
class Scope:
    """What one sync knows, from its first read to its status write.

    Every phase adds to it; whatever way the sync ends, :meth:`Syncer._close` writes
    status from it, once.  ``write`` is false where there is no status to write: the
    record is gone or released, or a write race says the record changed under us (a
    new sync follows at once and writes).
    """

    record: stores.Record
    spec: specs.GroupSpec | None = None
    resolved: engine.Plugins | None = None
    progress: engine.Progress = dataclasses.field(default_factory=engine.Progress)
    decided: planning.Plan | None = None
    plan: planning.Plan = dataclasses.field(default_factory=planning.Plan)
    failure: status.Failure | None = None
    lost: list[str] = dataclasses.field(default_factory=list)
    reported: bool = False  # what it did and saw was reported (events, topics)
    write: bool = True
    act: bool = True  # False: pretend (observe and plan; nothing done, nothing written)

    @property
    def key(self) -> stores.Key:
        return self.record.key

    def result(self, **changes: Any) -> Result:
        return Result(
            key=self.key,
            spec=self.spec,
            members=self.progress.sorted_members(),
            decided=self.decided,
            plan=self.plan,
            steps=list(self.progress.steps),
            failure=self.failure,
            **changes,
        )


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
        self.reporter = reporting.Reporter(store=store, publisher=publisher)

    @property
    def verbose(self) -> bool:
        """Whether syncs log what they did (a controller) or stay quiet (a one-shot command)."""
        return self.reporter.verbose

    @verbose.setter
    def verbose(self, value: bool) -> None:
        self.reporter.verbose = value

    @property
    def publisher(self) -> events.Publisher | None:
        return self.reporter.publisher

    @publisher.setter
    def publisher(self, value: events.Publisher | None) -> None:
        self.reporter.publisher = value

    def reset(self) -> None:
        """Another controller may have acted meanwhile (this replica regained the Lease):
        forget the members and the announcements of this process."""
        self.owners.reset()
        self.reporter.reset()

    def prepare(self, spec: specs.GroupSpec, *, options: Mapping[str, Any] | None = None) -> Prepared:
        """``spec``'s plugins, made and validating its properties; raise ``SpecError``."""
        return Prepared(spec=spec, resolved=engine.resolve(spec, self.registry, options=options), options=options or {})

    def sync(
        self,
        key: stores.Key,
        *,
        record: stores.Record | None = None,
        prepared: Prepared | None = None,
        act: bool = True,
        should_stop: Callable[[], bool] | None = None,
        on_step: Callable[[engine.Step], None] | None = None,
        on_plan: Callable[[planning.Plan], None] | None = None,
    ) -> Result:
        """Bring one group a step closer to its spec; see the module docstring.

        A commit passes the ``record`` it holds (under the group's session: not read
        again) and its ``prepared`` spec (not parsed or validated again); ``act=False``
        is ``--pretend``: the same sync, observing and planning, doing and writing
        nothing.  ``on_plan`` is told the plan decided, before anything is done.
        """
        # A pretend sync only reads: it never waits for (nor holds up) a sync of the group.
        with self.store.session(key) if act else contextlib.nullcontext():
            try:
                if record is None:
                    record = self.store.get(key)
            except specs.SpecError as error:  # a damaged record: this group only, and nowhere to write
                log.error("group %s: %s", _name(key), error, extra=logs.fields(key, reason=status.INVALID_SPEC))
                return Result(key=key, failure=status.Failure(reason=status.INVALID_SPEC, message=str(error)))
            if record is None:
                self._collect(key)
                return Result(key=key, gone=True)
            scope = Scope(record=record, act=act)
            try:
                faults.hit("sync-start")  # a stall here works from the record as it was read
                return self._sync(scope, prepared=prepared, should_stop=should_stop, on_step=on_step, on_plan=on_plan)
            except stores.Conflict as conflict:
                log.info(
                    "group %s: %s (Conflict): syncing again",
                    _name(key),
                    conflict,
                    extra=logs.fields(key, reason="Conflict"),
                )
                scope.write = False
                return Result(
                    key=key, spec=scope.spec, members=scope.progress.sorted_members(), requeue_after=RETRY_CONFLICT
                )
            except Exception as error:
                scope.failure = _failure_of(error)
                log.debug(
                    "group %s: failure detail",
                    _name(key),
                    exc_info=error,
                    extra=logs.fields(key, reason=scope.failure.reason, error=scope.failure.message),
                )
                return scope.result()
            except BaseException:  # Ctrl-C, SystemExit: say so in status, then go
                scope.failure = status.Failure(
                    reason="Interrupted", message="interrupted mid-sync; the next sync resumes from what is there"
                )
                raise
            finally:
                self._close(scope)

    # -- phases ---------------------------------------------------------------------------

    def _sync(
        self,
        scope: Scope,
        *,
        prepared: Prepared | None,
        should_stop: Callable[[], bool] | None,
        on_step: Callable[[engine.Step], None] | None,
        on_plan: Callable[[planning.Plan], None] | None,
    ) -> Result:
        record = scope.record
        try:
            if prepared is not None:
                scope.spec, scope.resolved = spec, resolved = prepared.spec, prepared.resolved
            else:
                scope.spec = spec = specs.parse_document(
                    record.manifest, namespace=record.namespace, cluster=self.store.cluster
                )
                scope.resolved = resolved = engine.resolve(
                    spec, self.registry, options=record.options, validate=not record.deleting
                )
        except specs.SpecError as error:
            return self._invalid(scope, error)
        if not scope.act:
            return self._pretend(scope)
        self.owners.plugin(record.key, resolved.instance)
        if record.deleting:
            return self._delete(scope)

        debugging = log.isEnabledFor(logging.DEBUG)  # a step's fields cost more than the step at 100,000
        ledger = self.store.ledger

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

        progress = scope.progress
        known = self.owners.recall(record.key, ledger)
        observed = engine.observe(spec, resolved)
        progress.members = {m.id: m for m in observed}
        progress.observed = True
        if known is not None:
            scope.lost = sorted(known - progress.members.keys())
        scope.plan = scope.decided = planning.plan(spec, observed)
        if on_plan is not None:
            on_plan(scope.decided)
        if (observed or scope.plan.provisions) and not record.guarded and not self.store.guard(record):
            # Deleted (or being deleted) before we could hold it: make nothing.
            scope.write = False
            return scope.result(gone=True)
        final = observed
        if not spec.paused and not scope.plan.empty:
            outcome = engine.reconcile(
                spec,
                resolved,
                members=observed,
                plan=scope.plan,
                on_step=step,
                should_stop=should_stop,
                progress=progress,
                before_destroy=lambda ids: self.owners.intend(record.key, ledger, ids),
            )
            final, scope.plan = outcome.members, outcome.plan
        if not final and record.guarded and not scope.plan.provisions:
            self.store.unguard(record)
        scope.reported = True
        self.reporter.synced(
            reporting.Synced(
                record=record, spec=spec, observed=observed, final=final, steps=progress.steps, lost=scope.lost
            )
        )
        blocked = scope.plan.blocked and not spec.paused
        return scope.result(requeue_after=WAIT_FOR_HEALTH if blocked else None)

    def _pretend(self, scope: Scope) -> Result:
        """What the sync would do: observe and plan, nothing else (``--pretend``)."""
        assert scope.spec is not None
        assert scope.resolved is not None
        scope.write = False
        observed = engine.observe(scope.spec, scope.resolved)
        scope.progress.members = {m.id: m for m in observed}
        scope.plan = scope.decided = planning.plan(scope.spec, observed)
        return scope.result()

    def _invalid(self, scope: Scope, error: specs.SpecError) -> Result:
        """Nothing can be decided: say why, touch nothing (but finish a deletion)."""
        record, spec = scope.record, scope.spec
        scope.failure = status.Failure(reason=status.INVALID_SPEC, message=str(error))
        if not record.deleting:
            return scope.result()
        if spec is not None:
            # Only the properties are invalid: the instances are known, tear them down.
            try:
                scope.resolved = engine.resolve(spec, self.registry, options=record.options, validate=False)
            except specs.SpecError:
                pass
            else:
                scope.failure = None
                return self._delete(scope)
        scope.write = False
        if record.guarded:
            left = f"released with an invalid spec; its instances, if any, were left in place: {error}"
            self.store.event(record, reason="InstancesLeft", message=left, warning=True, force=True)
            self.store.release(record)
        return scope.result(released=True)

    def _delete(self, scope: Scope) -> Result:
        record, spec, resolved = scope.record, scope.spec, scope.resolved
        assert spec is not None
        assert resolved is not None
        if not record.guarded:
            scope.write = False
            return scope.result(gone=True)  # holds no instance of ours
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
                scope.progress.steps = engine.teardown(spec, resolved)
                self.reporter.torn_down(record, scope.progress.steps)
        except Exception as error:
            failure = _failure_of(error)
            scope.failure = dataclasses.replace(failure, message=f"cannot tear down: {failure.message}")
            return scope.result()
        scope.write = False
        self.store.release(record)
        self.owners.forget(record.key)
        self.reporter.forget(record.key)
        return scope.result(released=True, gone=True)

    def _collect(self, key: stores.Key) -> None:
        """The group is gone: destroy what it left behind, unless orphaned on purpose."""
        plugin = self.owners.forget(key)
        self.reporter.forget(key)
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
        """Destroy the instances in ``plugin`` whose group is gone (:func:`collecting.collect`)."""
        return collecting.collect(self.store, plugin, only=only)

    # -- the one status write -------------------------------------------------------------

    def _close(self, scope: Scope) -> None:
        """Write status from what the sync knows, once, whatever way it ended.

        The members memory is settled first: what this sync saw is what the group had
        when it ended, for every controller.  A failure is reported once per distinct
        cause (an Event, a log line, a topic), not once per retry.
        """
        record, spec, failure, progress = scope.record, scope.spec, scope.failure, scope.progress
        if not scope.act:
            return  # pretend: nothing is written, nothing remembered
        if progress.observed and spec is not None:
            try:
                self.owners.settle(record.key, self.store.ledger, progress.members)
            except Exception as error:  # the memory is advice: never a reason to lose the status write
                log.warning("group %s: recording its members failed: %s", _name(record.key), _describe(error))
            if not scope.reported:  # cut short: what was lost and done so far is still news
                final = progress.sorted_members()
                self.reporter.synced(
                    reporting.Synced(
                        record=record, spec=spec, observed=final, final=final, steps=progress.steps, lost=scope.lost
                    )
                )
        if not scope.write:
            return
        if (
            failure is not None
            and failure.reason != "Interrupted"
            and not progress.observed
            and not record.deleting
            and spec is not None
            and scope.resolved is not None
        ):
            try:  # the failure came before anything was observed: look once more, for true counts
                progress.members = {m.id: m for m in engine.observe(spec, scope.resolved)}
                progress.observed = True
            except Exception:  # noqa: S110 - the first failure is the one reported
                pass
        if failure is not None and failure.reason != "Interrupted":
            self.reporter.failed(record, failure)
        if progress.observed and spec is not None and not record.deleting:
            new = status.compute(
                spec,
                progress.sorted_members(),
                scope.plan,
                now=self.clock(),
                previous=record.status,
                generation=record.generation,
                failure=failure,
            )
        elif failure is not None:
            new = status.with_failure(record.status, failure, now=self.clock(), generation=record.generation)
        else:
            return
        if dict(record.status) == dict(new):
            return
        if failure is not None and failure.reason == "Interrupted":
            try:  # the interruption is what must propagate, not a failed write
                self.store.write_status(record, new)
            except Exception as error:
                log.warning("group %s: status not written: %s", _name(record.key), _describe(error))
            return
        self.store.write_status(record, new)


def _failure_of(error: BaseException) -> status.Failure:
    reason = PLUGIN_UNAVAILABLE if isinstance(error, plugins.PluginUnavailable) else status.RECONCILE_ERROR
    return status.Failure(reason=reason, message=_describe(error))


def _describe(error: BaseException) -> str:
    """One line naming the cause, for status, events and logs (never a traceback)."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if isinstance(error, plugins.PluginError | specs.SpecError) and text:
        return text
    if isinstance(error, OSError) and error.strerror:
        where = f" {error.filename}" if error.filename else ""
        return f"{error.strerror}{where}"
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _name(key: stores.Key) -> str:
    return reporting.name(key)
