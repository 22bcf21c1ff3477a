"""The one reconcile runtime, shared by every mode.

``engine`` turns the core's plans into plugin calls; ``syncing`` is the sync of one
group (finalizer first, observe, plan once, act, status written at the end, failures
included); ``stores`` is the small interface the sync works over (the local YAML store,
the Kubernetes API, or the tests' in-memory store); ``owners`` maps instances to their
groups; ``queueing`` is the per-key work queue with backoff; ``running`` drives syncs
from the queue, change feeds and a resync.  The adapters (``infrakit.local``,
``infrakit.cluster`` and ``infrakit.operator``) only provide a store and wake keys.
"""

# Submodules are imported by their users, not here: the CLI imports only what a command needs.

RESYNC = 300.0  # seconds between syncs of a group whose instance changes are watched (infrakit.runtime.running)
POLL = 10.0  # seconds between syncs of a group whose instance plugin cannot report changes (InfraKit's poll)
