"""The Kubernetes adapter: kopf registrations over the one runtime.

``handlers`` registers the kopf handlers (watch events only feed the cluster store's
cache and wake keys; the runtime syncs), ``leadership`` the Lease that lets one replica
act at a time, ``metrics`` the Prometheus series, ``__main__`` the ``infrakit-operator``
command.  The sync itself is ``infrakit.runtime.syncing``, the same as the local mode's.
"""
