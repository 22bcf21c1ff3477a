"""The planner: from a spec and the observed instances, what to do next.

This is the whole of the group controller's judgement, as pure functions:

* :func:`classify` turns plugin descriptions (and the flavor's health verdicts) into
  :class:`Member` records: up to date or not, healthy or not.  An instance made outside
  InfraKit and tagged ``infrakit.config_sha=bootstrap`` is up to date: InfraKit adopts it
  (the first manager of a swarm), and :func:`plan` labels it with the group's hash.  One
  its group left in place on purpose (``infrakit.orphaned=true``, by ``free``) is a member
  like any other; :func:`plan` labels it ``infrakit.orphaned=false``, so that once this
  group goes, the collector of dangling instances takes it like the others.
* :func:`plan` decides one step towards the spec: which instances to provision and
  which to destroy.  It is level-based: it looks only at what is observed, so any pass
  may be repeated, interrupted or resumed by another process, and a rolling update
  that was cut short simply continues (the config-hash tag on each instance is the
  only memory).  Cattle follow a Deployment's rolling rules (``maxSurge`` above,
  ``maxUnavailable`` below the desired size); pets keep one instance per logical ID.
* :meth:`Plan.explain` words it the way InfraKit's group plugin did ("Performing a
  rolling update on 5 instances, then adding 5 ..."), and says which pets are replaced
  when their logical IDs change (InfraKit refused that change).  The words come from
  the plan object the actions come from, as InfraKit's ``Explain()`` and ``Run()`` came
  from one ``updatePlan``: what ``--pretend`` prints cannot drift from what is done.

The adapters (``infrakit.engine`` driven by the local runner or the kopf operator)
carry the plans out through the plugins.  Nothing here performs I/O.
"""

from __future__ import annotations

import dataclasses
import enum
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

from infrakit.core import instances, specs

__all__ = [
    "Destroy",
    "Label",
    "Member",
    "Plan",
    "Provision",
    "Reason",
    "Round",
    "Summary",
    "classify",
    "is_converged",
    "plan",
    "removal_order",
]


class Reason(enum.Enum):
    """Why an instance is provisioned or destroyed (for events, logs and tests)."""

    SCALE_UP = "ScaleUp"
    SCALE_DOWN = "ScaleDown"
    ROLLING_UPDATE = "RollingUpdate"
    DUPLICATE = "Duplicate"
    BOOTSTRAP = "Bootstrap"  # labelled: made outside InfraKit, adopted as up to date
    READOPTED = "Readopted"  # labelled: left in place on purpose (infrakit.orphaned), taken back


@dataclasses.dataclass(frozen=True, kw_only=True)
class Member:
    """One observed instance of a group, judged against the spec."""

    description: instances.Description
    health: instances.Health
    up_to_date: bool

    @property
    def id(self) -> str:
        return self.description.id

    @property
    def logical_id(self) -> str | None:
        return self.description.logical_id

    @property
    def healthy(self) -> bool:
        return self.health is instances.Health.HEALTHY


@dataclasses.dataclass(frozen=True, kw_only=True)
class Provision:
    logical_id: str | None = None
    reason: Reason = Reason.SCALE_UP


@dataclasses.dataclass(frozen=True, kw_only=True)
class Destroy:
    id: str
    reason: Reason


@dataclasses.dataclass(frozen=True, kw_only=True)
class Label:
    """Tags to merge into an instance's own (through the instance plugin's ``label``)."""

    id: str
    tags: Mapping[str, str]
    reason: Reason = Reason.BOOTSTRAP


@dataclasses.dataclass(frozen=True, kw_only=True)
class Round:
    """Labels first (adoptions), then provisions (surge), then destroys (drain)."""

    labels: tuple[Label, ...] = ()
    provisions: tuple[Provision, ...] = ()
    destroys: tuple[Destroy, ...] = ()


@dataclasses.dataclass(frozen=True, kw_only=True)
class Summary:
    """What a plan was decided from, in the counts InfraKit's words need."""

    size: int  # desired
    current: int  # observed members
    outdated: int  # of them, not on the spec's config hash
    leaving: tuple[str, ...] = ()  # pets whose logical IDs go (or duplicates, or none)
    coming: tuple[str, ...] = ()  # logical IDs made anew
    kept_outdated: int = 0  # pets kept whose config is outdated
    pets: bool = False


@dataclasses.dataclass(frozen=True, kw_only=True)
class Plan:
    """Rounds of actions. The first is decided from what is observed; each later one
    holds only if every instance provisioned before it is healthy (the engine checks,
    and plans again at the first that is not).

    ``converged`` means the observed set already is the desired set; ``blocked`` means
    there is work left but it waits on instances becoming healthy; ``complete`` that
    the rounds, carried out with every new instance healthy, reach the desired set
    (so the engine need not plan again to know it is done).  ``summary`` is what it was
    decided from: :meth:`explain` words it.
    """

    rounds: tuple[Round, ...] = ()
    converged: bool = False
    blocked: bool = False
    complete: bool = False
    summary: Summary | None = None

    def explain(self, *, managed: bool = True) -> str:
        """InfraKit's words for what carrying this plan out does.

        ``managed`` is false for a group that is new (or was freed): InfraKit then says
        only that it is managing the group.
        """
        summary = self.summary
        if summary is None:
            return "Noop"
        size = summary.size
        if not managed:
            return f"Managing {size} instances"
        if summary.leaving and summary.coming:
            return _explain_replacement(summary)
        current, outdated = summary.current, summary.outdated
        if size > current:
            adding = f"adding {size - current} instances to increase the group size to {size}"
            if outdated:
                return f"Performing a rolling update on {outdated} instances, then {adding}"
            return adding[0].upper() + adding[1:]
        if size < current:
            removing = current - size
            terminating = f"Terminating {removing} instances to reduce the group size to {size}"
            still_outdated = max(0, outdated - removing)  # outdated instances are removed first
            if still_outdated:
                return f"{terminating}, then performing a rolling update on {still_outdated} instances"
            return terminating
        if outdated:
            return f"Performing a rolling update on {outdated} instances"
        return "Noop"

    @property
    def empty(self) -> bool:
        return not self.rounds

    @property
    def provisions(self) -> tuple[Provision, ...]:
        """The first round's provisions (what the observed state calls for now)."""
        return self.rounds[0].provisions if self.rounds else ()

    @property
    def destroys(self) -> tuple[Destroy, ...]:
        return self.rounds[0].destroys if self.rounds else ()


def classify(
    spec: specs.GroupSpec,
    descriptions: Iterable[instances.Description],
    health: Mapping[str, instances.Health],
) -> list[Member]:
    """Judge each described instance; ``health`` maps instance ID to the flavor's verdict.

    A bootstrap instance (:data:`~infrakit.core.instances.BOOTSTRAP_SHA`) is up to date
    whatever the spec: it is to be labelled, never rolled.
    """
    sha = spec.config_sha
    return sorted(
        (
            Member(
                description=d,
                health=health.get(d.id, instances.Health.UNKNOWN),
                up_to_date=d.tags.get(instances.TAG_CONFIG_SHA) in (sha, instances.BOOTSTRAP_SHA),
            )
            for d in descriptions
        ),
        key=lambda m: m.id,
    )


def plan(spec: specs.GroupSpec, members: Sequence[Member]) -> Plan:
    """The next step from ``members`` (all instances of the group) towards ``spec``."""
    result = _plan_pets(spec, members) if spec.is_pets else _plan_cattle(spec, members)
    summary = _summary(spec, members)
    if spec.paused:
        return Plan(converged=result.converged, blocked=not result.converged, summary=summary)
    return dataclasses.replace(_adopt(spec, members, result), summary=summary)


def is_converged(spec: specs.GroupSpec, members: Sequence[Member]) -> bool:
    """Whether ``members`` already are the desired set (what a plan of them would say, without planning)."""
    if any(not m.up_to_date for m in members):
        return False
    if not spec.is_pets:
        return len(members) == spec.desired_size
    wanted = spec.allocation.logical_ids or ()
    return len(members) == len(wanted) and {m.logical_id for m in members} == set(wanted)


def _adopt(spec: specs.GroupSpec, members: Sequence[Member], result: Plan) -> Plan:
    """``result`` with the members it keeps labelled first: bootstrap ones with the group's
    hash, orphaned ones unmarked (one label each, with both changes if need be).

    As InfraKit did on every look at a group: so the tag says what the instance is, and
    a later spec rolls it like any other.  An orphan taken back must lose its mark, or the
    collector would never take it once this group is gone without its finalizer.  "Unmarked"
    is ``infrakit.orphaned=false``: an instance plugin's ``label`` merges tags (InfraKit's
    ``Label``), it cannot remove one, and only ``true`` keeps the collector away.  One the
    plan destroys anyway (a surplus, a duplicate) is not labelled.
    """
    going = {d.id for d in result.destroys}
    found = []
    for member in members:
        tags = member.description.tags
        if member.id in going:
            continue
        changes: dict[str, str] = {}
        reason = Reason.READOPTED
        if tags.get(instances.TAG_CONFIG_SHA) == instances.BOOTSTRAP_SHA:
            changes[instances.TAG_CONFIG_SHA] = spec.config_sha
            reason = Reason.BOOTSTRAP
        if tags.get(instances.TAG_ORPHANED) == "true":
            changes[instances.TAG_ORPHANED] = "false"
        if changes:
            found.append(Label(id=member.id, tags=changes, reason=reason))
    labels = tuple(found)
    if not labels:
        return result
    first, *rest = result.rounds or (Round(),)
    return Plan(rounds=(dataclasses.replace(first, labels=labels), *rest), complete=result.complete or result.converged)


_HEALTH_RANK = {instances.Health.UNHEALTHY: 0, instances.Health.UNKNOWN: 1, instances.Health.HEALTHY: 2}


def removal_order(members: Iterable[Member]) -> list[Member]:
    """Who goes first when instances must go: outdated, then unhealthy, then newest.

    Ties (same creation time) go by ID, highest first, so the order is total.
    """
    by_id = sorted(members, key=lambda m: m.id, reverse=True)
    return sorted(by_id, key=lambda m: (m.up_to_date, _HEALTH_RANK[m.health], -m.description.created))


def _plan_cattle(spec: specs.GroupSpec, members: Sequence[Member]) -> Plan:
    size = spec.desired_size
    surge, unavailable = spec.update_strategy.max_surge, spec.update_strategy.max_unavailable
    new = [m for m in members if m.up_to_date]
    old = [m for m in members if not m.up_to_date]

    if len(new) == size and not old:
        return Plan(converged=True)

    destroys: list[Destroy] = []
    # Surplus up-to-date instances go first: a plain scale-down, no roll involved.
    surplus = removal_order(new)[: max(0, len(new) - size)]
    destroys += [Destroy(id=m.id, reason=Reason.SCALE_DOWN) for m in surplus]
    kept_new = len(new) - len(surplus)
    kept_healthy = sum(m.healthy for m in new) - sum(m.healthy for m in surplus)
    outdated = removal_order(old)
    excess_old = max(0, len(old) - size)  # outdated beyond the size: a scale-down, not a roll
    reason = Reason.ROLLING_UPDATE if old else Reason.SCALE_UP

    # The first round decides from what is observed. The following rounds are what the
    # same rules give if the instances just provisioned turn out healthy; the engine
    # checks that after each round and stops (to plan again) at the first that is not.
    # So a whole roll costs one plan, not one plan per instance.
    rounds: list[Round] = []
    outdated_healthy = sum(m.healthy for m in outdated)
    next_out = 0  # outdated[next_out:] are still there
    while True:
        # Surge: new instances up to size+maxSurge in all; below the size, always heal.
        remaining = kept_new + len(outdated) - next_out
        room = max(size + surge - remaining, size - remaining)
        provisions = max(0, min(size - kept_new, room))
        # Drain outdated instances while at least size-maxUnavailable stay healthy.
        # Unhealthy ones cost no availability; they come first in removal order.
        budget = kept_healthy + outdated_healthy - max(0, size - unavailable)
        while next_out < len(outdated):
            member = outdated[next_out]
            if member.healthy:
                if budget <= 0:
                    break  # healthy from here on: the rest stay
                budget -= 1
                outdated_healthy -= 1
            reason_out = Reason.SCALE_DOWN if excess_old > 0 else Reason.ROLLING_UPDATE
            destroys.append(Destroy(id=member.id, reason=reason_out))
            excess_old -= 1
            next_out += 1
        if not provisions and not destroys:
            break
        made = tuple(Provision(reason=reason) for _ in range(provisions))
        rounds.append(Round(provisions=made, destroys=tuple(destroys)))
        kept_new += provisions
        kept_healthy += provisions  # the assumption the engine checks before the next round
        destroys = []
    # Every round the rules give is planned: carried out healthy, they reach the desired set.
    return Plan(rounds=tuple(rounds), complete=True) if rounds else Plan(blocked=True)


def _plan_pets(spec: specs.GroupSpec, members: Sequence[Member]) -> Plan:
    logical_ids = spec.allocation.logical_ids or ()
    wanted = set(logical_ids)
    by_id: dict[str, list[Member]] = defaultdict(list)
    destroys: list[Destroy] = []
    for member in members:
        if member.logical_id is not None and member.logical_id in wanted:
            by_id[member.logical_id].append(member)
        else:
            destroys.append(Destroy(id=member.id, reason=Reason.SCALE_DOWN))

    provisions: list[Provision] = []
    kept: dict[str, Member] = {}
    for logical_id in logical_ids:
        candidates = by_id.get(logical_id)
        if not candidates:
            provisions.append(Provision(logical_id=logical_id, reason=Reason.SCALE_UP))
            continue
        # Keep the best of duplicates: up to date, healthy, oldest.
        best, *extra = sorted(
            candidates, key=lambda m: (not m.up_to_date, -_HEALTH_RANK[m.health], m.description.created, m.id)
        )
        kept[logical_id] = best
        destroys += [Destroy(id=m.id, reason=Reason.DUPLICATE) for m in extra]

    outdated = [kept[i] for i in logical_ids if i in kept and not kept[i].up_to_date]
    if not destroys and not provisions and not outdated:
        return Plan(converged=True)

    # A logical ID is one instance: pets cannot surge, so a roll replaces in place,
    # at most max(1, maxUnavailable) unavailable logical IDs at a time.
    down = sum(1 for i in logical_ids if i not in kept or not kept[i].healthy)
    budget = max(1, spec.update_strategy.max_unavailable) - down
    waiting = 0  # outdated pets left for a later plan (the budget is spent)
    for member in outdated:
        if member.healthy:
            if budget <= 0:
                waiting += 1
                continue
            budget -= 1
        destroys.append(Destroy(id=member.id, reason=Reason.ROLLING_UPDATE))

    if not provisions and not destroys:
        return Plan(blocked=True)
    # A pet destroyed for its config is not replaced in the same round: the next plan does.
    rolled = any(d.reason is Reason.ROLLING_UPDATE for d in destroys)
    return Plan(
        rounds=(Round(provisions=tuple(provisions), destroys=tuple(destroys)),), complete=not waiting and not rolled
    )


def _summary(spec: specs.GroupSpec, members: Sequence[Member]) -> Summary:
    summary = Summary(
        size=spec.desired_size,
        current=len(members),
        outdated=sum(1 for m in members if not m.up_to_date),
        pets=spec.is_pets,
    )
    if not spec.is_pets:
        return summary
    # For pets whose logical IDs change, not only their number: which go, which come.
    # Counting alone says "Noop" for a,b,c -> a,b,d, which destroys c and creates d.
    wanted = spec.allocation.logical_ids or ()
    wanted_set = set(wanted)
    kept: dict[str, Member] = {}
    leaving: list[str] = []
    # The one kept per logical ID is the one _plan_pets keeps.
    best_first = sorted(members, key=lambda m: (not m.up_to_date, -_HEALTH_RANK[m.health], m.description.created, m.id))
    for member in best_first:
        logical_id = member.logical_id
        if logical_id is None:
            leaving.append(f"{member.id} (no logical ID)")
        elif logical_id not in wanted_set:
            leaving.append(logical_id)
        elif logical_id in kept:
            leaving.append(f"{logical_id} (duplicate)")
        else:
            kept[logical_id] = member
    return dataclasses.replace(
        summary,
        leaving=tuple(sorted(leaving)),
        coming=tuple(i for i in wanted if i not in kept),
        kept_outdated=sum(1 for m in kept.values() if not m.up_to_date),
    )


def _explain_replacement(summary: Summary) -> str:
    """Pets replaced for their logical IDs: InfraKit refused such a change; we carry it out, so we say so."""
    text = f"Replacing logical IDs {', '.join(summary.leaving)} with {', '.join(summary.coming)}"
    if summary.size > summary.current:
        text += f" to increase the group size to {summary.size}"
    elif summary.size < summary.current:
        text += f" to reduce the group size to {summary.size}"
    if summary.kept_outdated:
        text += f", then performing a rolling update on {summary.kept_outdated} instances"
    return text
