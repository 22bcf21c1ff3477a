"""Fixtures for the pure core: specs and members built in memory, no files, no plugins.

In: ``GroupSpec`` values and lists of ``Member``. Out: plans, hashes, status dicts.
"""

from __future__ import annotations

from infrakit.core import instances, planning, specs


def spec(
    *,
    size: int | None = 3,
    logical_ids: tuple[str, ...] | None = None,
    note: str = "v1",
    surge: int = 1,
    unavailable: int = 0,
    paused: bool = False,
) -> specs.GroupSpec:
    return specs.GroupSpec(
        name="g",
        allocation=specs.Allocation(size=None if logical_ids is not None else size, logical_ids=logical_ids),
        instance=specs.PluginSpec(plugin="instance-memory", properties={"Note": note}),
        flavor=specs.PluginSpec(plugin="flavor-vanilla", properties={}),
        update_strategy=specs.UpdateStrategy(max_surge=surge, max_unavailable=unavailable),
        paused=paused,
    )


def member(
    iid: str,
    *,
    up_to_date: bool = True,
    health: instances.Health = instances.Health.HEALTHY,
    logical_id: str | None = None,
    created: float = 0.0,
) -> planning.Member:
    return planning.Member(
        description=instances.Description(id=iid, logical_id=logical_id, created=created),
        health=health,
        up_to_date=up_to_date,
    )
