"""Prometheus metrics of the operator (served by ``prometheus_client``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = ["ERRORS", "INSTANCES", "IS_LEADER", "RECONCILES", "RECONCILE_SECONDS"]

RECONCILES = Counter("infrakit_reconciles_total", "Group reconciles", ["namespace", "group", "result"])
ERRORS = Counter("infrakit_reconcile_errors_total", "Group reconciles that failed", ["namespace", "group", "kind"])
RECONCILE_SECONDS = Histogram(
    "infrakit_reconcile_duration_seconds",
    "Time to reconcile one group",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
INSTANCES = Gauge("infrakit_group_instances", "Instances of a group", ["namespace", "group", "state"])
IS_LEADER = Gauge("infrakit_leader", "1 while this replica holds the leader Lease")
