"""Small promises of the adapters around the runtime: kopf handlers, metrics, remote plans, warnings."""

from __future__ import annotations

import inspect
import logging
from pathlib import Path

import pytest

from infrakit import plugins
from infrakit.core import planning, status
from infrakit.runtime import owners, syncing
from infrakit.testing import stores
from tests.runtime.conftest import World, group


def test_every_kopf_handler_is_async() -> None:
    """Was: a sync handler ran in kopf's worker thread and mutated the asyncio-only queue."""
    pytest.importorskip("kopf")
    from infrakit.operator import handlers

    for name in ("configure", "shutdown", "leader_probe", "group_event"):
        assert inspect.iscoroutinefunction(inspect.unwrap(getattr(handlers, name))), name


def test_the_series_of_a_deleted_group_are_removed(world: World) -> None:
    pytest.importorskip("prometheus_client")
    from infrakit.operator import metrics

    world.store.apply(group(name="gauged", size=2))
    result = world.syncer.sync(("team", "gauged"))
    metrics.record(result)
    assert metrics.INSTANCES.labels("team", "gauged", "current")._value.get() == 2
    world.store.delete(("team", "gauged"))
    metrics.record(world.syncer.sync(("team", "gauged")))
    assert metrics.record(world.syncer.sync(("team", "gauged"))) is None
    children = {labels[:2] for labels in metrics.INSTANCES._metrics}
    assert ("team", "gauged") not in children
    assert not [k for k in metrics.RECONCILES._metrics if k[:2] == ("team", "gauged")]


def test_a_remote_plan_is_exact_beyond_the_listed_instances(world: World) -> None:
    """Was: a converged 1,500-instance group printed "Adding 500 instances" (status listed at most 1,000)."""
    spec = group(size=1500)
    world.store.apply(spec)
    world.syncer.sync(("team", "web"))
    reported = world.store.records[("team", "web")].status
    assert "instances" not in reported  # status stays small: counts and conditions
    members = status.members_from_status(spec, reported)
    assert len(members) == 1500
    assert planning.plan(spec, members).explain(managed=True) == "Noop"
    bigger = group(size=1600, note="v2")
    text = planning.plan(bigger, status.members_from_status(bigger, reported)).explain(managed=True)
    assert text == (
        "Performing a rolling update on 1500 instances, then adding 100 instances to increase the group size to 1600"
    )


def test_a_plugin_warns_once_however_many_syncs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Was: plugins were rebuilt on every sync, so "warned once" repeated (7,766 identical lines)."""
    directory = tmp_path / "instances"
    directory.mkdir()
    (directory / "instance-1").write_text("{not json")
    store = stores.MemoryStore()
    registry = plugins.Registry(defaults={"instance-file": {"dir": str(directory)}})
    syncer = syncing.Syncer(store=store, registry=registry, index=owners.Owners())
    store.apply(group(size=1, instance_plugin="instance-file"))
    with caplog.at_level(logging.WARNING, logger="infrakit.plugins"):
        for _ in range(30):
            syncer.sync(("team", "web"))
    assert len([r for r in caplog.records if "instance-1" in r.getMessage()]) == 1
