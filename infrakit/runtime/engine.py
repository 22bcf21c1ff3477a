"""The engine: carries the core's plans out through the plugins.

The runtime's sync (``infrakit.runtime.syncing``) calls :func:`reconcile`; it is the
only code that turns a :class:`~infrakit.core.planning.Plan` into plugin calls.

One reconcile observes the instances once (``describe`` + ``healthy``), then repeats
plan -> act, keeping the observed set up to date in memory with each action's result,
until the plan is empty: converged, or waiting for instances to become healthy.  Every
intermediate state is one the planner could have observed, so a reconcile may be cut
short anywhere (a crash, a SIGKILL) and the next one resumes from what is really there.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from infrakit import faults, plugins
from infrakit.core import instances, planning, specs, status

__all__ = ["Outcome", "Plugins", "Progress", "Step", "observe", "orphan", "reconcile", "resolve", "teardown"]

log = logging.getLogger(__name__)

_GROUP_TAGS: Final = (
    instances.TAG_GROUP,
    instances.TAG_NAMESPACE,
    instances.TAG_CLUSTER,
    instances.TAG_CONFIG_SHA,
    instances.TAG_LOGICAL_ID,
    instances.TAG_ORPHANED,
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Plugins:
    """The two plugins a group is made with."""

    instance: plugins.InstancePlugin
    flavor: plugins.FlavorPlugin


@dataclasses.dataclass(frozen=True, kw_only=True)
class Step:
    """One action taken, reported to the ``on_step`` callback."""

    action: str  # "label" | "provision" | "destroy"
    instance_id: str
    reason: planning.Reason
    logical_id: str | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class Outcome:
    """Where a reconcile ended."""

    members: list[planning.Member]
    plan: planning.Plan  # the last (empty) plan: converged or blocked
    steps: list[Step]


class Progress:
    """What a reconcile has seen and done so far, readable when it is cut short.

    A sync that fails half-way still writes a status from what is really there: the
    members observed, plus those provisioned, minus those destroyed before the failure.
    """

    def __init__(self) -> None:
        self.members: dict[str, planning.Member] = {}
        self.steps: list[Step] = []
        self.observed = False  # the members are known (a failure came after the describe)

    def sorted_members(self) -> list[planning.Member]:
        return sorted(self.members.values(), key=lambda m: m.id)


def resolve(
    spec: specs.GroupSpec,
    registry: plugins.Registry,
    *,
    options: Mapping[str, Any] | None = None,
    validate: bool = True,
) -> Plugins:
    """The group's (long-lived) plugins by name; they validate their properties.

    ``options`` are the instance plugin's, as the group was committed with (the local
    store keeps the file plugin's directory so); ``validate=False`` is for tearing down a
    group whose properties have become invalid: its instances must go all the same.
    """
    resolved = Plugins(
        instance=registry.instance(spec.instance.plugin, options),
        flavor=registry.flavor(spec.flavor.plugin),
    )
    if validate:
        resolved.instance.validate(spec.instance.properties)
        resolved.flavor.validate(spec.flavor.properties, spec.allocation)
    return resolved


def observe(spec: specs.GroupSpec, resolved: Plugins) -> list[planning.Member]:
    """Describe the group's instances and judge them."""
    descriptions = [d for d in resolved.instance.describe(status.membership_tags(spec)) if status.is_member(spec, d)]
    health = {d.id: resolved.flavor.healthy(spec.flavor.properties, d) for d in descriptions}
    return planning.classify(spec, descriptions, health)


def reconcile(
    spec: specs.GroupSpec,
    resolved: Plugins,
    *,
    members: list[planning.Member] | None = None,
    plan: planning.Plan | None = None,
    on_step: Callable[[Step], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    progress: Progress | None = None,
    before_destroy: Callable[[list[str]], None] | None = None,
) -> Outcome:
    """Act until the plan is empty (or ``should_stop``); return what is there then.

    ``members`` and ``plan``, when the caller has them already, spare a describe and a
    plan; ``progress`` is kept up to date with every action, for a caller that must
    report on a reconcile cut short by an exception; ``before_destroy`` is told the IDs
    a round is about to destroy, before it does (so that no other controller calls
    them lost).
    """
    progress = progress if progress is not None else Progress()
    progress.members = current = {m.id: m for m in (observe(spec, resolved) if members is None else members)}
    progress.observed = True
    steps = progress.steps
    # Each pass does at least one action; a bound stops a misbehaving plugin from looping us.
    budget = 4 * (spec.desired_size + len(current)) + 16
    prepared: dict[str | None, instances.InstanceSpec] = {}  # flavor output, per logical ID
    planned = plan
    plan = planning.Plan()
    while budget > 0 and not _stopped(should_stop):
        plan = planned or planning.plan(spec, sorted(current.values(), key=lambda m: m.id))
        planned = None
        if plan.empty:
            break
        finished = True  # every round carried out, each new instance healthy
        for round_ in plan.rounds:
            budget -= 1
            if not _label(resolved, round_.labels, current, on_step=on_step, steps=steps):
                finished = False
                break  # an instance to label is gone: plan again from what is
            all_healthy = True
            for provision in round_.provisions:
                member = _provision(spec, resolved, provision, prepared)
                current[member.id] = member
                all_healthy &= member.healthy
                faults.hit("instance-op")
                step = Step(
                    action="provision", instance_id=member.id, reason=provision.reason, logical_id=provision.logical_id
                )
                steps.append(_report(on_step, step))
            if round_.destroys and before_destroy is not None:
                before_destroy([destroy.id for destroy in round_.destroys])
            for destroy in round_.destroys:
                gone = current[destroy.id]
                _destroy(spec, resolved, gone)
                del current[destroy.id]
                faults.hit("instance-op")
                step = Step(action="destroy", instance_id=destroy.id, reason=destroy.reason, logical_id=gone.logical_id)
                steps.append(_report(on_step, step))
            if not all_healthy or _stopped(should_stop):
                finished = False
                break  # later rounds assumed these healthy: plan again from what is
        if finished and plan.complete and planning.is_converged(spec, list(current.values())):
            # The plan said these rounds reach the desired set, and they did: no need to ask again.
            plan = planning.Plan(converged=True, summary=plan.summary)
            break
    return Outcome(members=sorted(current.values(), key=lambda m: m.id), plan=plan, steps=steps)


def teardown(
    spec: specs.GroupSpec,
    resolved: Plugins,
    *,
    members: list[planning.Member] | None = None,
    on_step: Callable[[Step], None] | None = None,
) -> list[Step]:
    """Destroy exactly the group's instances (those carrying its membership tags)."""
    steps = []
    for member in observe(spec, resolved) if members is None else members:
        _destroy(spec, resolved, member)
        steps.append(
            _report(
                on_step,
                Step(
                    action="destroy",
                    instance_id=member.id,
                    reason=planning.Reason.SCALE_DOWN,
                    logical_id=member.logical_id,
                ),
            )
        )
    return steps


def orphan(spec: specs.GroupSpec, resolved: Plugins) -> list[planning.Member]:
    """Mark the group's instances as left in place on purpose; return them.

    A collector of dangling instances (a group deleted before it could tear down) never
    takes an instance so marked; a later group of the same name adopts it as before.
    """
    members = observe(spec, resolved)
    for member in members:
        if member.description.tags.get(instances.TAG_ORPHANED) != "true":
            with contextlib.suppress(plugins.InstanceNotFound):
                resolved.instance.label(member.id, {instances.TAG_ORPHANED: "true"})
    return members


def _label(
    resolved: Plugins,
    labels: tuple[planning.Label, ...],
    current: dict[str, planning.Member],
    *,
    on_step: Callable[[Step], None] | None,
    steps: list[Step],
) -> bool:
    """Label the members (InfraKit's adoption of bootstrap instances); False if one is gone."""
    for label in labels:
        member = current[label.id]
        try:
            resolved.instance.label(label.id, label.tags)
        except plugins.InstanceNotFound:
            del current[label.id]  # lost meanwhile: the next plan replaces it
            return False
        tags = {**member.description.tags, **label.tags}
        current[label.id] = dataclasses.replace(member, description=dataclasses.replace(member.description, tags=tags))
        faults.hit("instance-op")
        step = Step(action="label", instance_id=label.id, reason=label.reason, logical_id=member.logical_id)
        steps.append(_report(on_step, step))
    return True


def _provision(
    spec: specs.GroupSpec,
    resolved: Plugins,
    provision: planning.Provision,
    prepared: dict[str | None, instances.InstanceSpec],
) -> planning.Member:
    ready = prepared.get(provision.logical_id)
    if ready is None:
        ready = prepared[provision.logical_id] = _prepare(spec, resolved, provision.logical_id)
    instance_id = resolved.instance.provision(ready)
    description = instances.Description(
        id=instance_id, logical_id=provision.logical_id, tags=ready.tags, created=time.time()
    )
    return planning.Member(
        description=description,
        health=resolved.flavor.healthy(spec.flavor.properties, description),
        up_to_date=True,
    )


def _prepare(spec: specs.GroupSpec, resolved: Plugins, logical_id: str | None) -> instances.InstanceSpec:
    """The instance spec to provision: the flavor's pure transform of the group's own.

    The same for every instance of a reconcile but for the logical ID, so made once each.
    """
    group_tags = {**status.membership_tags(spec), instances.TAG_CONFIG_SHA: spec.config_sha}
    if logical_id is not None:
        group_tags[instances.TAG_LOGICAL_ID] = logical_id
    base = instances.InstanceSpec(properties=spec.instance.properties, tags=dict(group_tags), logical_id=logical_id)
    prepared = resolved.flavor.prepare(spec.flavor.properties, base, spec.allocation)
    # The flavor may add tags but never rewrite the group's own (as InfraKit ensured).
    flavor_tags = {k: v for k, v in prepared.tags.items() if k not in _GROUP_TAGS}
    return dataclasses.replace(prepared, tags={**flavor_tags, **group_tags}, logical_id=logical_id)


def _destroy(spec: specs.GroupSpec, resolved: Plugins, member: planning.Member) -> None:
    resolved.flavor.drain(spec.flavor.properties, member.description)
    with contextlib.suppress(plugins.InstanceNotFound):  # gone already: that is what we wanted
        resolved.instance.destroy(member.id)


def _stopped(should_stop: Callable[[], bool] | None) -> bool:
    return should_stop is not None and should_stop()


def _report(on_step: Callable[[Step], None] | None, step: Step) -> Step:
    if on_step is not None:
        on_step(step)
    return step
