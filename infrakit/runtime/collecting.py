"""The collector of dangling instances: Kubernetes' garbage collection, for instances.

A Group deleted without its finalizer running (removed by hand, or deleted while no
operator ran) leaves its instances behind.  They are destroyed here, but only those
provably the store's: of its cluster (``infrakit.cluster``), in a namespace it serves,
not left in place on purpose (``infrakit.orphaned=true``), and only once the store's
source of truth (the API server, not a cache) says the group is gone.  The runtime runs
it over every instance plugin the process may have used (``running.Runtime.collect``).
"""

from __future__ import annotations

import collections
import logging

from infrakit import logs, plugins
from infrakit.core import instances
from infrakit.runtime import reporting, stores

__all__ = ["collect"]

log = logging.getLogger("infrakit.runtime.syncing")


def collect(store: stores.Store, plugin: plugins.InstancePlugin, *, only: stores.Key | None = None) -> int:
    """Destroy the instances in ``plugin`` whose group is gone from the store.

    Only instances provably of groups this store owns: its cluster's (their cluster
    tag), in namespaces it serves, not marked orphaned, and only after the store's
    source of truth confirms the group is gone.
    """
    cluster = store.cluster
    if not store.collects_garbage or not cluster:
        return 0
    query = {instances.TAG_CLUSTER: cluster}
    if only is not None:
        query.update({instances.TAG_NAMESPACE: only[0], instances.TAG_GROUP: only[1]})
    found: dict[stores.Key, list[instances.Description]] = collections.defaultdict(list)
    for description in plugin.describe(query):
        tags = description.tags
        namespace, group = tags.get(instances.TAG_NAMESPACE), tags.get(instances.TAG_GROUP)
        if tags.get(instances.TAG_CLUSTER) != cluster or not namespace or not group:
            continue
        if tags.get(instances.TAG_ORPHANED) == "true":
            continue
        found[(namespace, group)].append(description)
    known = set(store.keys())
    destroyed = 0
    for key, dangling in sorted(found.items()):
        if key in known or not store.owns(key) or store.exists(key):
            continue
        for description in dangling:
            try:
                plugin.destroy(description.id)
            except plugins.InstanceNotFound:
                continue
            destroyed += 1
        log.warning(
            "group %s is gone: destroyed %d instances it left behind (%s)",
            reporting.name(key),
            len(dangling),
            reporting.ids([d.id for d in dangling]),
            extra=logs.fields(
                key,
                reason="Collected",
                count=len(dangling),
                instances=[d.id for d in dangling[: reporting.LOGGED_IDS]],
            ),
        )
    return destroyed
