"""A real local Kubernetes control plane (kube-apiserver + etcd) for tests and dev.

The binary is built from pinned Go modules in ``tools/controlplane`` and cached
(:mod:`infrakit.controlplane.build`); :mod:`infrakit.controlplane.server` runs it
on loopback ports with an admin kubeconfig; :mod:`infrakit.controlplane.cli` is
the ``infrakit-controlplane`` command (``up``/``down``/``status``/``build``).
"""

from infrakit.controlplane.build import ControlPlaneError, build, cached_binary
from infrakit.controlplane.server import CONTEXT, ControlPlane, load, restart, start

__all__ = ["CONTEXT", "ControlPlane", "ControlPlaneError", "build", "cached_binary", "load", "restart", "start"]
