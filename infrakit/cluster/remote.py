"""The CLI's cluster mode: InfraKit's "remotes", as kubeconfig contexts.

``infrakit-local --context NAME`` works on the Groups of a cluster instead of the local
store: ``commit`` server-side-applies the Group (``--pretend`` prints the plan computed
from the live object and the instances its status lists, and changes nothing);
``ls``, ``describe`` and ``inspect`` read from the API server.  The operator in the
cluster does the converging.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from infrakit.cluster import kubeapi
from infrakit.core import instances, planning, specs, status

__all__ = ["GroupNotFound", "Remote"]


class GroupNotFound(LookupError):
    def __init__(self, namespace: str, name: str) -> None:
        super().__init__(
            f"group {name!r} not found in namespace {namespace!r}; `infrakit-local --context ... ls` lists them"
        )


class Remote:
    def __init__(self, *, context: str, namespace: str | None) -> None:
        self.groups = kubeapi.Groups(kubeapi.connect(context=context))
        self.namespace = namespace or _context_namespace(context)

    def commit(self, spec: specs.GroupSpec, *, pretend: bool) -> str:
        live = self.groups.get(self.namespace, spec.name)
        scoped = spec if spec.namespace else dataclasses.replace(spec, namespace=self.namespace)
        members = status.members_from_status(scoped, live.get("status") or {}) if live else []
        text = planning.describe_change(scoped, members, managed=live is not None)
        if pretend:
            return f"Committing {spec.name} would involve: {text}"
        manifest = scoped.to_manifest()
        self.groups.apply(manifest, namespace=self.namespace)
        return f"Committed {spec.name}: {text}"

    def free(self, name: str) -> None:
        """InfraKit's free, as in the local mode: forget the Group, leave its instances in place.

        The orphan annotation first, then the deletion: the operator marks the instances
        orphaned (no collector takes them; a later Group of that name adopts them) and
        releases the Group.
        """
        self.get(name)
        self.groups.patch(self.namespace, name, {"metadata": {"annotations": {kubeapi.ORPHAN_ANNOTATION: "true"}}})
        self.groups.delete(self.namespace, name)

    def destroy(self, name: str) -> None:
        """Delete the Group; the operator's finalizer destroys its instances."""
        self.get(name)
        self.groups.delete(self.namespace, name)

    def names(self) -> list[str]:
        return sorted(item["metadata"]["name"] for item in self.groups.items(self.namespace))

    def get(self, name: str) -> dict[str, Any]:
        found = self.groups.get(self.namespace, specs.validate_name(name, field="group"))
        if found is None:
            raise GroupNotFound(self.namespace, name)
        return found

    def describe(self, name: str) -> list[instances.Description]:
        body = self.get(name)
        spec = specs.parse_document({k: v for k, v in body.items() if k != "status"}, namespace=self.namespace)
        return [m.description for m in status.members_from_status(spec, body.get("status") or {})]


def _context_namespace(context: str) -> str:
    """The namespace the kubeconfig context names, as kubectl would use it."""
    import kubernetes

    contexts, _ = kubernetes.config.list_kube_config_contexts()  # type: ignore[no-untyped-call]
    named = next((c for c in contexts if c["name"] == context), None)
    return str(((named or {}).get("context") or {}).get("namespace") or "default")
