"""Kubernetes API access, shared by the operator and the CLI's cluster mode.

``kubeapi`` wraps the official client for Group objects (read, apply, status, finalizers,
events); ``records`` is the runtime's store over it (a cache fed by the operator's
watch, live reads where truth matters, writes fenced by leadership); ``remote`` is the
CLI's view of a cluster (``infrakit-local --context``).
"""

# Submodules are imported by their users, not here: the kubernetes client is slow to import.

# The Group schema, for the core to validate every Group of this mode against: the
# packaged CRD's (read, and cached, by this adapter; the core reads no file).
from infrakit import schemas as schemas
