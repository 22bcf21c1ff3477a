"""The Kubernetes adapter: a kopf operator over the same engine as the local mode.

``handlers`` registers the kopf handlers (watch events only enqueue keys),
``queueing`` is the work queue, ``reconciling`` the per-group sync (level-based:
re-read the Group, observe the instances, act, write status once), ``leadership``
the Lease that lets one replica act at a time, ``metrics`` the Prometheus endpoint,
``__main__`` the ``infrakit-operator`` command.
"""
