"""A cluster's Groups as InfraKit's Group SPI (:class:`infrakit.groups.spi.Groups`): the CLI's cluster mode.

``infrakit-local --context NAME`` (or a ``kube://`` remote) works on the Groups of a
cluster instead of the local store: ``commit`` server-side-applies the Group
(``--pretend`` says the plan computed from the live object and the counts in its
status, exact at any size, and changes nothing); ``ls`` and ``inspect`` read from the
API server; ``destroy`` deletes the Group and the operator's finalizer removes its
instances after the answer.  The operator in the cluster does the converging.

``describe`` lists the instances from the instance plugin itself, as InfraKit's CLI
did, and not from the Group's status, which keeps counts only (``infrakit.core.status``).
Why the plugin, rather than the operator serving its instances over HTTP or a paged
copy in the API server:

* it is the source of truth, the very view the operator acts on, never a stale copy;
* it has no size limit and pages as the infrastructure does (10,000 instances are a
  ``describe`` call, not an object near etcd's limit, nor 10 list pages of a CRD);
* it opens nothing new: an instance's description (tags, init scripts) stays readable
  by whoever can reach the infrastructure, and not by anyone who can reach the
  operator's port, which would need its own authentication and authorisation.

The plugin must be reachable from the CLI: a plugin daemon in ``$INFRAKIT_PLUGINS_DIR``
(a socket or an address file), a plugin that talks to an API (a cloud's, with the
user's credentials), or, for ``instance-file``, whose instances are files on the
operator's volume, an explicit ``--dir`` where that volume is mounted (the kind
overlay's host directory).  Without one, ``describe`` says how many instances status
counts and how to reach the plugin, rather than listing the CLI's own directory.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from infrakit import plugins
from infrakit.cluster import kubeapi
from infrakit.core import instances, planning, specs, status
from infrakit.groups import spi
from infrakit.rpc import client

__all__ = ["MACHINE_LOCAL", "ApplyConflict", "PluginUnreachable", "Remote", "context_namespace"]

MACHINE_LOCAL: Final = frozenset({"instance-file"})
"""Built-in instance plugins whose instances live on the machine they run on (the
operator's volume): the CLI's own copy sees them only with an explicit ``--dir``."""


class ApplyConflict(specs.SpecError):
    """Another field manager owns a field the commit sets (kubectl's conflict, the same fix)."""

    def __init__(self, text: str) -> None:
        super().__init__(
            "--force-conflicts",
            f"{text.rstrip('.')}; to take these fields from their manager (as kubectl apply --server-side "
            "--force-conflicts does), commit again with --force-conflicts",
        )


class PluginUnreachable(specs.SpecError):
    """The instances cannot be listed from here: the message says how many and how to reach them."""


class Remote:
    """A cluster's Groups in one namespace.

    ``registry`` and ``options`` (plugin name -> its options from the command line)
    make the instance plugin ``describe`` lists from, and check a spec's properties
    before it goes to the server; ``explicit`` says the file plugin's directory was
    given (``--dir``), so that it is the operator's volume and not the CLI's own
    default.  ``force_conflicts``: a commit takes the fields another manager owns.
    """

    def __init__(
        self,
        *,
        context: str | None,
        namespace: str | None,
        registry: plugins.Registry | None = None,
        options: Callable[[str], Mapping[str, Any]] | None = None,
        explicit: bool = False,
        force_conflicts: bool = False,
    ) -> None:
        self.groups = kubeapi.Groups(kubeapi.connect(context=context))
        self.namespace = namespace or context_namespace(context)
        self.registry = registry
        self.options = options
        self.explicit = explicit
        self.force_conflicts = force_conflicts
        self._checked: list[specs.GroupSpec] = []

    def prepare(self, groups: Sequence[specs.GroupSpec]) -> None:
        """Each group's plugins check its properties here, before anything goes to the server."""
        if self.registry is None:
            return
        from infrakit.runtime import engine

        for spec in groups:
            options = self.options(spec.instance.plugin) if self.options is not None else None
            engine.resolve(spec, self.registry, options=options)
        self._checked = list(groups)

    def commit(self, spec: specs.GroupSpec, *, pretend: bool) -> str:
        """Server-side apply as ``infrakit-cli``; fields of other managers only with ``force_conflicts``.

        The spec is checked by its plugins first (unless :meth:`prepare` just did): the
        operator would refuse it only after the server had accepted it.
        """
        if spec not in self._checked:
            self.prepare([spec])
        live = self.groups.get(self.namespace, spec.name)
        scoped = spec if spec.namespace else dataclasses.replace(spec, namespace=self.namespace)
        members = (
            status.members_from_status(scoped, live.get("status") or {}, logical_ids=_logical_ids(live)) if live else []
        )
        details = planning.plan(scoped, members).explain(managed=live is not None) + spi.paused_note(spec)
        if pretend:
            return details
        try:
            self.groups.apply(scoped.to_manifest(), namespace=self.namespace, force_conflicts=self.force_conflicts)
        except kubeapi.ApplyConflict as conflict:
            raise ApplyConflict(str(conflict)) from None
        return details

    def free(self, name: str) -> None:
        """InfraKit's free, as in the local mode: forget the Group, leave its instances in place.

        The orphan annotation first, then the deletion: the operator marks the instances
        orphaned (no collector takes them; a later Group of that name adopts them) and
        releases the Group.
        """
        self._get(name)
        self.groups.patch(self.namespace, name, {"metadata": {"annotations": {kubeapi.ORPHAN_ANNOTATION: "true"}}})
        self.groups.delete(self.namespace, name)

    def destroy(self, name: str) -> spi.Destroyed:
        """Delete the Group; the operator's finalizer destroys its instances (after the answer)."""
        self._get(name)
        self.groups.delete(self.namespace, name)
        return spi.Destroyed(name=name, pending=True)

    def ls(self) -> list[str]:
        return sorted(item["metadata"]["name"] for item in self.groups.items(self.namespace))

    def inspect(self, name: str) -> spi.Inspected:
        body = self._get(name)
        manifest = {k: v for k, v in body.items() if k != "status"}
        parse = functools.partial(specs.parse_document, manifest, namespace=self.namespace)
        return spi.Inspected(document=body, status=body.get("status") or {}, parse=parse)

    def describe(self, name: str) -> spi.Description:
        """Every instance of the group, from its instance plugin (see the module docstring); converged
        as the operator last said (its Ready condition)."""
        body = self._get(name)
        ready: Mapping[str, Any] = next(
            (
                c
                for c in (body.get("status") or {}).get("conditions") or []
                if isinstance(c, Mapping) and c.get("type") == "Ready"
            ),
            {},
        )
        converged = ready.get("status") == "True" and ready.get("reason") == "Converged"
        return spi.Description(instances=self._instances(name, body), converged=converged)

    def _get(self, name: str) -> dict[str, Any]:
        found = self.groups.get(self.namespace, specs.validate_name(name, field="group"))
        if found is None:
            where = f"namespace {self.namespace!r}"
            raise spi.GroupNotFound(
                f"group {name!r} not found in {where}; `infrakit-local --context ... ls` lists them"
            )
        return found

    def _instances(self, name: str, body: Mapping[str, Any]) -> list[instances.Description]:
        # The cluster's identity is the operator's (its --cluster-id): it says it in the
        # selector it writes in status. No selector yet: the operator has made nothing.
        cluster = _selected((body.get("status") or {}).get("selector"), instances.TAG_CLUSTER)
        spec = specs.parse_document(
            {k: v for k, v in body.items() if k != "status"}, namespace=self.namespace, cluster=cluster
        )
        counted = (body.get("status") or {}).get("replicas")
        if cluster is None:
            if not counted:
                return []
            raise PluginUnreachable(
                "status.selector",
                f"group {name!r} counts {counted} instances but its status names no cluster identity "
                "(infrakit.cluster in status.selector): its operator predates cluster identities; upgrade it, "
                "and its next sync says it",
            )
        plugin = self._instance_plugin(spec)
        if plugin is None:
            if counted == 0:
                return []
            how_many = f"{counted} instances" if isinstance(counted, int) else "instances"
            raise PluginUnreachable(
                "--dir",
                f"group {name!r} has {how_many} (status keeps counts only); they are listed from the instance "
                f"plugin {spec.instance.plugin!r}, whose files are on the operator's volume: pass --dir (or "
                "$INFRAKIT_INSTANCE_DIR) where that volume is mounted, or run the plugin's daemon in "
                "$INFRAKIT_PLUGINS_DIR; `kubectl describe group` shows the counts",
            )
        found = plugin.describe(status.membership_tags(spec))
        return sorted((d for d in found if status.is_member(spec, d)), key=lambda d: d.id)

    def _instance_plugin(self, spec: specs.GroupSpec) -> plugins.InstancePlugin | None:
        """The group's instance plugin as this process reaches it, or None if it would list the wrong place."""
        if self.registry is None:
            return None
        name = spec.instance.plugin
        options = dict(self.options(name)) if self.options is not None else {}
        plugin = self.registry.instance(name, options)
        daemon = isinstance(plugin, client.RemoteInstancePlugin)  # found running, not made here
        if name in MACHINE_LOCAL and not daemon and not self.explicit:
            return None
        return plugin


def _selected(selector: Any, key: str) -> str | None:
    """The value ``selector`` (``k=v,k=v``) requires of label ``key``."""
    if not isinstance(selector, str):
        return None
    for term in selector.split(","):
        name, equals, value = term.partition("=")
        if equals and name.strip() == key:
            return value.strip() or None
    return None


def context_namespace(context: str | None) -> str:
    """The namespace the kubeconfig context names (``None``: the current one), as kubectl would use it."""
    import kubernetes

    contexts, current = kubernetes.config.list_kube_config_contexts(config_file=kubeapi.kubeconfig())  # type: ignore[no-untyped-call]
    named = current if context is None else next((c for c in contexts if c["name"] == context), None)
    return str(((named or {}).get("context") or {}).get("namespace") or "default")


def _logical_ids(live: Mapping[str, Any]) -> list[str] | None:
    """The live Group's logical IDs (pets), what its instances carry once converged."""
    allocation = ((live.get("spec") or {}).get("allocation")) or {}
    found = allocation.get("logicalIDs")
    return [str(i) for i in found] if isinstance(found, list) else None
