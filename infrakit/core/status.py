"""Group status: what was observed, in the CRD's ``status`` shape.

Both adapters write the same status (the local store into the group's YAML file, the
operator through the ``/status`` subresource), so both are computed here, from the
spec, the observed members and the last plan.  Conditions follow the Kubernetes API
conventions (``type``, ``status``, ``reason``, ``message``, ``lastTransitionTime``,
``observedGeneration``); a condition's transition time only moves when its status
does, so a pass that changes nothing yields an identical status (and no write).

The instance list is capped (``MAX_LISTED_INSTANCES``) so that a huge group's status
stays far below the API server's object size limit; ``instancesTruncated`` says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from infrakit.core import instances, planning, specs

__all__ = ["MAX_LISTED_INSTANCES", "compute", "members_from_status", "membership_tags", "selector"]

MAX_LISTED_INSTANCES: Final = 1000


def membership_tags(spec: specs.GroupSpec) -> dict[str, str]:
    """The tags that make an instance a member of ``spec``'s group."""
    tags = {instances.TAG_GROUP: spec.name}
    if spec.namespace:
        tags[instances.TAG_NAMESPACE] = spec.namespace
    return tags


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
    error: str | None = None,
) -> dict[str, Any]:
    """The status document; ``previous`` is the last one written (for transition times)."""
    desired = spec.desired_size
    ready = sum(1 for m in members if m.healthy)
    updated = sum(1 for m in members if m.up_to_date)
    outdated = len(members) - updated
    listed = members[:MAX_LISTED_INSTANCES]

    if error:
        ready_cond = ("False", "ReconcileError", error)
    elif plan.converged and ready == desired:
        ready_cond = ("True", "Converged", f"{desired} of {desired} instances up to date and healthy")
    elif plan.converged:
        ready_cond = ("False", "Unhealthy", f"{ready} of {desired} instances healthy")
    else:
        ready_cond = ("False", "Converging", f"{len(members)} instances, {updated} up to date, {desired} desired")
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
    old = {c.get("type"): c for c in (previous or {}).get("conditions", []) if isinstance(c, Mapping)}
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
        "instances": [_instance(m) for m in listed],
        "instancesTruncated": len(members) > len(listed),
        "conditions": conditions,
    }
    if generation is not None:
        status["observedGeneration"] = generation
    return status


def _instance(member: planning.Member) -> dict[str, Any]:
    out: dict[str, Any] = {"id": member.id, "upToDate": member.up_to_date, "healthy": member.health.value}
    if member.logical_id is not None:
        out["logicalID"] = member.logical_id
    if not member.up_to_date:  # the current hash is status.configHash; only the odd ones are spelled out
        out["configHash"] = member.description.tags.get(instances.TAG_CONFIG_SHA, "")
    return out


def members_from_status(spec: specs.GroupSpec, status: Mapping[str, Any]) -> list[planning.Member]:
    """The members a status lists, judged against ``spec`` (what a remote CLI can see).

    Their tags are the group's own (membership, config hash, logical ID); a flavor's
    tags are not kept in status.
    """
    current = status.get("configHash", "")
    members = []
    for entry in status.get("instances") or []:
        sha = current if entry.get("upToDate") else entry.get("configHash", "")
        tags = {**membership_tags(spec), instances.TAG_CONFIG_SHA: sha}
        if entry.get("logicalID"):
            tags[instances.TAG_LOGICAL_ID] = entry["logicalID"]
        description = instances.Description(id=entry["id"], logical_id=entry.get("logicalID"), tags=tags)
        health = instances.Health(entry.get("healthy", instances.Health.UNKNOWN.value))
        members.append(planning.Member(description=description, health=health, up_to_date=sha == spec.config_sha))
    return members


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
        "message": message,
        "lastTransitionTime": since or now,
    }
    if generation is not None:
        condition["observedGeneration"] = generation
    return condition
