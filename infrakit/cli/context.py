"""Where a command of ``infrakit-local`` works, decided once per invocation: this machine, a remote, or a cluster.

:meth:`Context.make` reads the global options and ``INFRAKIT_HOST`` once; every command
then asks the context rather than deciding again.  :meth:`Context.groups` is the one
choice of a Group SPI back end (:mod:`infrakit.groups.spi`), in this order:

* a group daemon, when ``INFRAKIT_HOST`` names a ``tcp://`` remote, or a ``unix://`` one
  whose plugins directory has one (:class:`infrakit.groups.client.GroupClient`);
* a cluster, with ``--context`` or a ``kube://`` remote (:class:`infrakit.cluster.remote.Remote`);
* else this machine's store (:class:`infrakit.local.groups.StoreGroups`).

A remote selected is where the command works, or it fails naming the remote: never
this machine in its stead (a ``unix://`` remote without a group daemon is an error, not
the local store).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from infrakit.cli import render

if TYPE_CHECKING:
    from infrakit import plugins
    from infrakit.cli import remotes
    from infrakit.cluster import remote
    from infrakit.groups import spi
    from infrakit.local import groups as local_groups

__all__ = ["Context", "pass_context"]


@dataclasses.dataclass(kw_only=True)
class Context:
    home: Path
    instance_dir: Path
    dir_given: bool  # --dir or $INFRAKIT_INSTANCE_DIR, not the default
    durable: bool
    kube_context: str | None  # --context, or a kube:// remote's ("": the kubeconfig's current one)
    namespace: str | None
    group_address: str | None = None  # a tcp:// remote, or a unix:// one's group daemon: the group verbs go there
    plugins_dir_override: Path | None = None  # a unix:// remote (INFRAKIT_HOST)
    selected: remotes.Target | None = None  # the remote INFRAKIT_HOST names: never this machine in its stead
    _registry: plugins.Registry | None = None

    @classmethod
    def make(
        cls,
        *,
        home: Path,
        instance_dir: Path | None,
        durable: bool,
        kube_context: str | None,
        namespace: str | None,
        select: bool = True,
    ) -> Context:
        """The context of the global options; with ``select``, the remote ``INFRAKIT_HOST`` names too.

        ``--context`` wins over ``INFRAKIT_HOST``; ``remote ...`` passes ``select=False``, so
        that a broken remote can be fixed.
        """
        home = home.expanduser()
        plugins_dir = group_address = target = None
        if select and kube_context is None and os.environ.get("INFRAKIT_HOST", "").strip():
            from infrakit.cli import remotes

            with render.errors():
                target = remotes.selected(home)
            if target is not None and target.kind == "kube":
                kube_context, namespace = target.context or "", namespace or target.namespace
            elif target is not None and target.kind == "unix":
                from infrakit.rpc import discovery

                plugins_dir = target.plugins_dir
                found = discovery.find("group", directory=plugins_dir)
                group_address = found.address if found is not None else None  # none: the group verbs say so
            elif target is not None and target.kind == "tcp":
                group_address = target.address
        return cls(
            home=home,
            instance_dir=(instance_dir or home / "instances").expanduser(),
            dir_given=instance_dir is not None,
            durable=durable,
            kube_context=kube_context,
            namespace=namespace,
            plugins_dir_override=plugins_dir,
            group_address=group_address,
            selected=target,
        )

    @property
    def registry(self) -> plugins.Registry:
        """The process's plugins; the file plugin's fsync is a process option, its directory a group's."""
        if self._registry is None:
            from infrakit import plugins
            from infrakit.rpc import resolving

            self._registry = plugins.Registry(
                defaults={"instance-file": {"fsync": self.durable}}, locate=resolving.locator(self.plugins_dir)
            )
        return self._registry

    @property
    def plugins_dir(self) -> Path:
        """Where plugin daemons listen: a ``unix://`` remote's, ``$INFRAKIT_PLUGINS_DIR``, else ``HOME/plugins``."""
        if self.plugins_dir_override is not None:
            return self.plugins_dir_override
        explicit = os.environ.get("INFRAKIT_PLUGINS_DIR")
        return Path(explicit).expanduser() if explicit else self.home / "plugins"

    def plugin_options(self, name: str) -> dict[str, Any]:
        """The options this command line gives the instance plugin ``name`` (recorded with a group).

        None for a plugin served by a daemon: its options are the daemon's own, and a recorded
        directory would send the group's instances elsewhere if the daemon went away.
        """
        if name != "instance-file":
            return {}
        from infrakit.rpc import discovery

        if discovery.find(name, directory=self.plugins_dir) is not None:
            return {}
        return {"dir": str(self.instance_dir.absolute())}

    # -- the one choice of a back end ---------------------------------------------------------

    def groups(
        self, *, timeout: float = 300.0, force_conflicts: bool = False, progress: local_groups.Progress | None = None
    ) -> spi.Groups:
        """The groups where this command works (the module docstring says which); ``timeout`` and
        ``progress`` are a local commit's, ``force_conflicts`` a cluster's."""
        if self.group_address is not None:
            from infrakit.groups import client

            return client.GroupClient(self.group_address, named=self._named)
        if self.kube_context is not None:
            return self.cluster(force_conflicts=force_conflicts)
        self.this_machine()
        from infrakit.local import groups, store

        return groups.StoreGroups(
            store=store.Store(self.home),
            plugin_registry=lambda: self.registry,
            options=self.plugin_options,
            explicit=self.dir_given,
            timeout=timeout,
            progress=progress,
        )

    def cluster(self, *, force_conflicts: bool = False) -> remote.Remote:
        """The cluster's Groups (``--context`` or a ``kube://`` remote), in the namespace chosen."""
        from infrakit.cluster import kubeapi, remote

        assert self.kube_context is not None
        try:
            return remote.Remote(
                context=self.kube_context or None,  # "" is the kubeconfig's current context, as kubectl's
                namespace=self.namespace,
                registry=self.registry,  # describe lists the instances from their plugin
                options=self.plugin_options,
                explicit=self.dir_given,
                force_conflicts=force_conflicts,
            )
        except kubeapi.ConfigException as error:
            if self.selected is None:
                raise
            raise render.Usage(f"{self.selected.selection}: kubeconfig: {error}; {self.selected.fix}") from None

    def _named(self, problem: str) -> str:
        """A failure to reach the group daemon, naming the remote that chose it and the fix."""
        if self.selected is None:
            return problem
        return f"{self.selected.selection}: {problem}; {self.selected.fix}"

    # -- this machine, or a remote's daemons ---------------------------------------------------

    def this_machine(self, what: str = "") -> None:
        """``PluginError`` when a remote is selected: this machine's store (or ``what`` of it) is never its stand-in."""
        if self.selected is not None:
            from infrakit import plugins

            serve = f" to serve {what}" if what else ""
            raise plugins.PluginError(
                f"{self.selected.selection}: no group daemon listens in {self.plugins_dir}{serve}; start "
                f"infrakit-group-default with that plugins directory, or {self.selected.fix}"
            )

    def local_only(self, what: str, why: str, *, plugin: str | None = None) -> None:
        """Refuse ``--context`` or a remote for a command that works on this machine only (exit 2), never ignore it.

        A ``plugin`` command may work in a ``unix://`` remote's directory, on the daemon of that name there.
        """
        from infrakit import plugins
        from infrakit.core import specs

        if self.selected is not None:
            from infrakit.rpc import discovery

            if self.selected.kind == "unix" and plugin is not None:
                if discovery.find(plugin, directory=self.plugins_dir) is None:
                    raise plugins.PluginError(
                        f"{self.selected.selection}: plugin {plugin!r} is not running in {self.plugins_dir}; "
                        f"start it there, or {self.selected.fix}"
                    )
                return
            raise specs.SpecError(
                "", f"{self.selected.selection}: {what} works on this machine only; unset INFRAKIT_HOST to use it here"
            )
        if self.kube_context is not None:
            raise specs.SpecError("--context", f"{what} works on this machine only: {why}; drop --context")

    def address(self, plugin: str) -> str | None:
        """The address of plugin daemon ``plugin`` where this command works, if one is advertised."""
        if plugin == "group" and self.group_address is not None:
            return self.reachable()
        from infrakit.rpc import discovery

        found = discovery.find(plugin, directory=self.plugins_dir)
        return found.address if found is not None else None

    def reachable(self) -> str | None:
        """The group daemon's address; ``Failure`` naming the remote if a ``tcp://`` one takes no connection."""
        target = self.selected
        if target is not None and target.kind == "tcp":
            import socket
            import urllib.parse

            parts = urllib.parse.urlsplit(target.address or "")
            try:
                with socket.create_connection((parts.hostname or "", parts.port or 0), timeout=5.0):
                    pass
            except OSError as error:
                raise render.Failure(
                    f"{target.selection}: cannot be reached ({error.strerror or error}); start its group daemon "
                    f"(infrakit-group-default --listen), or {target.fix}"
                ) from None
        return self.group_address


pass_context = click.make_pass_decorator(Context)
"""A command's :class:`Context`, as its first argument."""
