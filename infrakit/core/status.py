"""Group status: what was observed, in the CRD's ``status`` shape.

Both modes write the same status (the local store into the group's YAML file, the
operator through the ``/status`` subresource), computed here from the spec, the members
observed at the end of a sync and the last plan, or from a failure.  It never claims
more than was seen: counts come from the members, and any failure of a sync makes
``Ready`` false with a reason (``InvalidSpec``, ``ReconcileError``) and the cause.

Conditions follow the Kubernetes API conventions (``type``, ``status``, a CamelCase
``reason``, ``message``, ``lastTransitionTime``, ``observedGeneration``); a condition's
transition time only moves when its status does, so a pass that changes nothing yields
an identical status (and no write).  ``Ready`` is the summary, as Cluster API's:

=============  ======  =================================================================
reason         Ready   when
=============  ======  =================================================================
Converged      True    every desired instance is there, up to date and healthy
Paused         False   ``spec.paused``: instances are observed, never changed
RollingOut     False   outdated instances are being replaced
Progressing    False   scaling up or down, or waiting for instances to become healthy
Unhealthy      False   converged, but some instances are not healthy
InvalidSpec    False   the spec or a plugin's properties are invalid: nothing is done
ReconcileError False   a plugin or the store failed; retried with backoff
PluginUnavail. False   ``PluginUnavailable``: a plugin (its daemon, or what it drives) cannot
                       be reached; retried, and cleared once it answers again
Interrupted    False   the sync was stopped mid-way (Ctrl-C); the next one resumes
=============  ======  =================================================================

Status is small at any size: counts and conditions, no instance list.  A list grows
with the group (75 KB at 1,000 instances), rides on every watch event, fills ``kubectl
describe`` (3,000 lines, the events at the very bottom) and must be capped below the
API server's object limit anyway.  The instances are listed from their source of
truth, the instance plugin: ``infrakit-local describe`` (see ``infrakit.cluster.remote``).
A remote plan (``commit --pretend``) needs only the counts: :func:`members_from_status`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Final

from infrakit.core import instances, planning, specs

__all__ = [
    "INVALID_SPEC",
    "RECONCILE_ERROR",
    "Failure",
    "compute",
    "is_member",
    "members_from_status",
    "membership_tags",
    "selector",
    "with_failure",
]

INVALID_SPEC: Final = "InvalidSpec"
RECONCILE_ERROR: Final = "ReconcileError"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Failure:
    """Why a sync did not do its job: a CamelCase reason and a message naming the cause."""

    reason: str
    message: str


def membership_tags(spec: specs.GroupSpec) -> dict[str, str]:
    """The tags that make an instance a member of ``spec``'s group: its cluster, namespace
    and name (a local group's: its name alone, as InfraKit's)."""
    tags = {instances.TAG_GROUP: spec.name}
    if spec.namespace:
        tags[instances.TAG_NAMESPACE] = spec.namespace
    if spec.cluster:
        tags[instances.TAG_CLUSTER] = spec.cluster
    return tags


def is_member(spec: specs.GroupSpec, description: instances.Description) -> bool:
    """Whether ``description`` provably belongs to ``spec``'s group.

    The owner is the triple (cluster, namespace, name), each compared exactly, absent
    with absent: a local group (no cluster, no namespace) never takes an instance that
    carries either, and a cluster's group never takes another cluster's instance, nor
    one that names no cluster at all, whatever its name.
    """
    tags = description.tags
    return (
        tags.get(instances.TAG_GROUP) == spec.name
        and tags.get(instances.TAG_NAMESPACE) == (spec.namespace or None)
        and tags.get(instances.TAG_CLUSTER) == (spec.cluster or None)
    )


def selector(spec: specs.GroupSpec) -> str:
    """A label-selector string over the membership tags (for the scale subresource)."""
    return ",".join(f"{k}={v}" for k, v in sorted(membership_tags(spec).items()))


def compute(
    spec: specs.GroupSpec,
    members: Sequence[planning.Member],
    plan: planning.Plan,
    *,
    now: str,
    previous: Mapping[str, Any] | None = None,
    generation: int | None = None,
    failure: Failure | None = None,
) -> dict[str, Any]:
    """The status document; ``previous`` is the last one written (for transition times).

    ``members`` are those observed (and acted on) by the end of the sync; ``failure``
    is what went wrong in it, if anything.
    """
    desired = spec.desired_size
    ready = sum(1 for m in members if m.healthy)
    updated = sum(1 for m in members if m.up_to_date)
    outdated = len(members) - updated

    if failure is not None:
        ready_cond = ("False", failure.reason, failure.message)
    elif spec.paused:
        ready_cond = ("False", "Paused", "spec.paused is true: instances are observed, never changed")
    elif plan.converged and ready == desired:
        ready_cond = ("True", "Converged", f"{desired} of {desired} instances up to date and healthy")
    elif plan.converged:
        ready_cond = ("False", "Unhealthy", f"{ready} of {desired} instances healthy")
    elif outdated:
        ready_cond = ("False", "RollingOut", f"{updated} of {len(members)} instances up to date, {desired} desired")
    else:
        ready_cond = ("False", "Progressing", f"{len(members)} instances, {ready} healthy, {desired} desired")
    rolling_cond = (
        ("True", "RollingUpdate", f"{updated} of {len(members)} instances up to date")
        if outdated and not spec.paused
        else ("False", "Paused" if outdated else "UpToDate", f"{outdated} instances outdated")
    )
    paused_cond = (
        ("True", "Paused", "spec.paused is true: instances are observed, never changed")
        if spec.paused
        else ("False", "Active", "the group is managed")
    )
    old = _conditions(previous)
    conditions = [
        _condition("Ready", *ready_cond, now=now, old=old.get("Ready"), generation=generation),
        _condition("RollingOut", *rolling_cond, now=now, old=old.get("RollingOut"), generation=generation),
        _condition("Paused", *paused_cond, now=now, old=old.get("Paused"), generation=generation),
    ]
    status: dict[str, Any] = {
        "desiredReplicas": desired,
        "replicas": len(members),
        "readyReplicas": ready,
        "updatedReplicas": updated,
        "selector": selector(spec),
        "configHash": spec.config_sha,
        "conditions": conditions,
    }
    if generation is not None:
        status["observedGeneration"] = generation
    return status


def with_failure(
    previous: Mapping[str, Any] | None, failure: Failure, *, now: str, generation: int | None
) -> dict[str, Any]:
    """``previous`` with ``Ready`` false for ``failure``: for when nothing could be observed.

    The counts stay as last observed (an invalid spec observes nothing new); the
    condition says why they are not fresh.
    """
    new = {k: v for k, v in (previous or {}).items() if k not in _DROPPED}
    old = _conditions(previous)
    ready = _condition(
        "Ready", "False", failure.reason, failure.message, now=now, old=old.get("Ready"), generation=generation
    )
    new["conditions"] = [ready, *(c for t, c in old.items() if t != "Ready")]
    if generation is not None:
        new["observedGeneration"] = generation
    return new


def _conditions(status: Mapping[str, Any] | None) -> dict[str, Mapping[str, Any]]:
    found = (status or {}).get("conditions")
    if not isinstance(found, list):
        return {}
    return {c["type"]: c for c in found if isinstance(c, Mapping) and isinstance(c.get("type"), str)}


_DROPPED: Final = ("instances", "instancesTruncated")
"""Fields that earlier versions wrote and this one does not (the API server prunes them too)."""


def members_from_status(
    spec: specs.GroupSpec, status: Mapping[str, Any], *, logical_ids: Sequence[str] | None = None
) -> list[planning.Member]:
    """Stand-ins for the members a status counts, judged against ``spec`` (what a remote CLI can see).

    Unnamed (``id`` empty): ``updatedReplicas`` of them on the status's configuration
    hash, the rest on none; ``readyReplicas`` healthy; for pets, ``logical_ids`` are those
    of the group's current spec, one per stand-in (a converged group has exactly them).
    A plan's words (:meth:`~infrakit.core.planning.Plan.explain`) need nothing more, so
    a remote ``commit --pretend`` is exact at any size.
    """
    current = status.get("configHash", "")
    replicas, updated, ready = (_count(status, k) for k in ("replicas", "updatedReplicas", "readyReplicas"))
    names = list(logical_ids or ())
    members = []
    for index in range(replicas):
        sha = current if index < updated else ""
        health = instances.Health.HEALTHY if index < ready else instances.Health.UNKNOWN
        members.append(_member(spec, "", names[index] if index < len(names) else None, sha, health.value))
    return members


def _count(status: Mapping[str, Any], key: str) -> int:
    value = status.get(key)
    return value if isinstance(value, int) and value > 0 else 0


def _member(spec: specs.GroupSpec, instance_id: str, logical_id: Any, sha: str, health: Any) -> planning.Member:
    tags = {**membership_tags(spec), instances.TAG_CONFIG_SHA: sha}
    if logical_id:
        tags[instances.TAG_LOGICAL_ID] = logical_id
    description = instances.Description(id=instance_id, logical_id=logical_id, tags=tags)
    try:
        judged = instances.Health(health)
    except ValueError:
        judged = instances.Health.UNKNOWN
    return planning.Member(description=description, health=judged, up_to_date=sha == spec.config_sha)


def _condition(
    kind: str,
    status: str,
    reason: str,
    message: str,
    *,
    now: str,
    old: Mapping[str, Any] | None,
    generation: int | None,
) -> dict[str, Any]:
    since = old.get("lastTransitionTime") if old and old.get("status") == status else None
    condition: dict[str, Any] = {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message[:1024],
        "lastTransitionTime": since or now,
    }
    if generation is not None:
        condition["observedGeneration"] = generation
    return condition
