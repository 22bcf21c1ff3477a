"""Prometheus metrics of the operator (served by ``prometheus_client``).

Fed by the runtime after every sync (:func:`record`), from the same members as the
status; the series of a group that is gone are removed with it.
"""

from __future__ import annotations

import contextlib

from prometheus_client import Counter, Gauge, Histogram

from infrakit.runtime import syncing

__all__ = ["ERRORS", "INSTANCES", "IS_LEADER", "RECONCILES", "RECONCILE_SECONDS", "record"]

RECONCILES = Counter("infrakit_reconciles_total", "Group reconciles", ["namespace", "group", "result"])
ERRORS = Counter("infrakit_reconcile_errors_total", "Group reconciles that failed", ["namespace", "group", "kind"])
RECONCILE_SECONDS = Histogram(
    "infrakit_reconcile_duration_seconds",
    "Time to reconcile one group",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
INSTANCES = Gauge("infrakit_group_instances", "Instances of a group", ["namespace", "group", "state"])
IS_LEADER = Gauge("infrakit_leader", "1 while this replica holds the leader Lease")

_STATES = ("desired", "current", "ready", "up_to_date")


def record(result: syncing.Result) -> None:
    namespace, name = result.key
    if result.gone:
        _remove(namespace, name)
        return
    RECONCILE_SECONDS.observe(result.elapsed)
    RECONCILES.labels(namespace, name, "error" if result.failure else "ok").inc()
    if result.failure is not None:
        ERRORS.labels(namespace, name, result.failure.reason).inc()
    if result.spec is None:
        return
    values = (
        result.spec.desired_size,
        len(result.members),
        sum(m.healthy for m in result.members),
        sum(m.up_to_date for m in result.members),
    )
    for state, value in zip(_STATES, values, strict=True):
        INSTANCES.labels(namespace, name, state).set(value)


def _remove(namespace: str, name: str) -> None:
    for state in _STATES:
        with contextlib.suppress(KeyError):
            INSTANCES.remove(namespace, name, state)
    for result in ("ok", "error"):
        with contextlib.suppress(KeyError):
            RECONCILES.remove(namespace, name, result)
    for metric in (ERRORS,):
        for labels in [s for s in _label_sets(metric) if s[:2] == (namespace, name)]:
            with contextlib.suppress(KeyError):
                metric.remove(*labels)


def _label_sets(metric: Counter) -> list[tuple[str, ...]]:
    # prometheus_client has no public listing of a metric's children.
    return [tuple(labels) for labels in metric._metrics]
