"""``infrakit-local``: InfraKit's CLI over the local store (and, with ``--context``, a cluster).

The commands and their words follow the InfraKit tutorial: ``commit``, ``ls``,
``describe``, ``inspect``, ``free``, ``destroy``, ``plugin ls``, the per-plugin
``instance-file ...`` and ``flavor-vanilla ...`` commands, plus ``run`` for the
self-healing loop.  This module only parses arguments and prints; the work is done by
``infrakit.local.controller`` (or ``infrakit.remote`` for a cluster).

Exit codes: 0 success, 2 bad input (the message names the field), 1 runtime failure.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

import infrakit
from infrakit import logs, options, plugins
from infrakit.commands import COMMANDS, grants
from infrakit.core import instances, specs
from infrakit.local import controller as controllers
from infrakit.local import store

if TYPE_CHECKING:
    from infrakit.cluster import remote
    from infrakit.commands import remotes
    from infrakit.runtime import engine

__all__ = ["cli", "main"]

log = logging.getLogger("infrakit")

_MAX_INPUT = 1 << 20  # infrakit.local.documents.MAX_BYTES, without importing PyYAML to know it
EXIT_RUNTIME = 1
EXIT_USAGE = 2


@dataclasses.dataclass(kw_only=True)
class Context:
    home: Path
    instance_dir: Path
    dir_given: bool  # --dir or $INFRAKIT_INSTANCE_DIR, not the default
    durable: bool
    kube_context: str | None
    namespace: str | None
    group_address: str | None = None  # a tcp:// remote, or a unix:// one's group daemon: the group verbs go there
    plugins_dir_override: Path | None = None  # a unix:// remote (INFRAKIT_HOST)
    selected: remotes.Target | None = None  # the remote INFRAKIT_HOST names: never this machine in its stead
    _registry: plugins.Registry | None = None

    @property
    def registry(self) -> plugins.Registry:
        """The process's plugins; the file plugin's fsync is a process option, its directory a group's."""
        if self._registry is None:
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

    def controller(self) -> controllers.Controller:
        """This machine's store; never when a remote is selected (a unix:// one without its group daemon)."""
        if self.selected is not None:
            raise plugins.PluginError(
                f"{self.selected.selection}: no group daemon listens in {self.plugins_dir}; start "
                f"infrakit-group-default with that plugins directory, or {self.selected.fix}"
            )
        return controllers.Controller(store=store.Store(self.home), registry=self.registry)

    def daemon(self) -> Any:
        """The group daemon the remote ``INFRAKIT_HOST`` names (``tcp://``, or in a ``unix://`` directory)."""
        from infrakit.commands import groups

        assert self.group_address is not None
        return groups.GroupDaemon(self.group_address, remote=self.selected)

    def local_only(self, what: str, why: str, *, plugin: str | None = None) -> None:
        """Refuse ``--context`` or a remote for a command that works on this machine only (exit 2), never ignore it.

        A ``plugin`` command may work in a ``unix://`` remote's directory, on the daemon of that name there.
        """
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

    def remote(self) -> remote.Remote:
        from infrakit.cluster import kubeapi, remote

        assert self.kube_context is not None
        try:
            return remote.Remote(
                context=self.kube_context or None,  # "" is the kubeconfig's current context, as kubectl's
                namespace=self.namespace,
                registry=self.registry,  # describe lists the instances from their plugin
                options=self.plugin_options,
                explicit=self.dir_given,
            )
        except kubeapi.ConfigException as error:
            if self.selected is None:
                raise
            raise specs.SpecError("", f"{self.selected.selection}: kubeconfig: {error}; {self.selected.fix}") from None


pass_context = click.make_pass_decorator(Context)


def _complete_groups(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """Shell completion of group names, from the local store (``--home`` or ``$INFRAKIT_HOME``)."""
    from click.shell_completion import CompletionItem

    home = ctx.find_root().params.get("home") or os.environ.get("INFRAKIT_HOME") or "~/.infrakit"
    try:
        names = store.Store(Path(home).expanduser()).names()
    except OSError:
        names = []
    return [CompletionItem(name) for name in names if name.startswith(incomplete)]


_OUTPUT = click.option(
    "-o",
    "--output",
    type=click.Choice(["table", "json", "yaml"]),
    default="table",
    show_default=True,
    help="Output format.",
)
_QUIET = click.option("-q", "--quiet", is_flag=True, help="Print rows only, no header.")


class _Group(click.Group):
    """A command group whose ``--help`` lists each command's first line whole (click cuts it at ~45 characters)."""

    group_class = type  # subgroups made with @group.group() are of this class too

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=1000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _load_command(name: str) -> click.Command:
    """``event``, ``metadata``, ``remote``, ``template``, ``playbook``: imported when used."""
    import importlib

    module, _, attribute = COMMANDS[name].partition(":")
    command: click.Command = getattr(importlib.import_module(module), attribute)
    return command


class _Commands(_Group):
    """The root group; the per-plugin groups (``instance-file ...``) join it when first looked for.

    Finding third-party plugins scans every installed distribution's entry points
    (~20 ms); a command such as ``ls`` should not pay for that at start-up.
    """

    _scanned = False

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = super().get_command(ctx, cmd_name)
        if found is None and cmd_name in COMMANDS:
            found = self.commands[cmd_name] = _load_command(cmd_name)
        if found is None and not self._scanned:
            self._add_plugin_commands()
            found = super().get_command(ctx, cmd_name)
        return found

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._add_plugin_commands()
        for name in COMMANDS:
            if name not in self.commands:
                self.commands[name] = _load_command(name)
        return super().list_commands(ctx)

    def _add_plugin_commands(self) -> None:
        if self._scanned:
            return
        self._scanned = True
        for group in (plugins.INSTANCE_GROUP, plugins.FLAVOR_GROUP):
            for name in plugins.available(group):
                if name not in self.commands:
                    self.commands[name] = _plugin_group(group, name)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--home",
    envvar="INFRAKIT_HOME",
    type=click.Path(path_type=Path),
    default=lambda: Path.home() / ".infrakit",
    show_default="~/.infrakit",
    help="State directory ($INFRAKIT_HOME).",
)
@click.option(
    "--dir",
    "instance_dir",
    envvar="INFRAKIT_INSTANCE_DIR",
    type=click.Path(path_type=Path),
    default=None,
    help="Instance directory of the file plugin ($INFRAKIT_INSTANCE_DIR) [default: HOME/instances].",
)
@click.option(
    "--fsync/--no-fsync",
    "durable",
    envvar="INFRAKIT_FSYNC",
    default=False,
    show_default=True,
    help="fsync every instance file (survives power loss; much slower). The store is always fsynced.",
)
@click.option(
    "--context",
    "kube_context",
    default=None,
    help="Work on the cluster of this kubeconfig context instead of the local store.",
)
@click.option(
    "-n",
    "--namespace",
    default=None,
    help="With --context: the namespace of the Groups [default: the context's, else 'default'].",
)
@click.option(
    "--log",
    "log_level",
    type=click.IntRange(0, 5),
    default=4,
    show_default=True,
    help="Log level: 0 panic ... 3 warn, 4 info, 5 debug.",
)
@click.option(
    "--log-format", type=click.Choice(["term", "json"]), default="term", show_default=True, help="Log format."
)
@click.version_option(infrakit.__version__, "--version", prog_name="infrakit-local")
@click.pass_context
def cli(
    ctx: click.Context,
    home: Path,
    instance_dir: Path | None,
    durable: bool,
    kube_context: str | None,
    namespace: str | None,
    log_level: int,
    log_format: str,
) -> None:
    """InfraKit groups of instances, without a cluster (or on one, with --context)."""
    logs.configure(level=log_level, fmt=log_format)
    home = home.expanduser()
    plugins_dir = None
    group_address = None
    target = None
    if kube_context is None and os.environ.get("INFRAKIT_HOST", "").strip() and ctx.invoked_subcommand != "remote":
        # InfraKit's remotes: INFRAKIT_HOST=NAME picks one for every command; --context still wins.
        # `remote ...` itself works whatever it names, so that a broken remote can be fixed.
        from infrakit.commands import _common, remotes

        try:
            target = remotes.selected(home)
        except _common.Usage as error:
            _fail(str(error), EXIT_USAGE)
        if target is not None and target.kind == "kube":
            kube_context, namespace = target.context or "", namespace or target.namespace
        elif target is not None and target.kind == "unix":
            from infrakit.rpc import discovery

            plugins_dir = target.plugins_dir
            found = discovery.find("group", directory=plugins_dir)
            group_address = found.address if found is not None else None  # none: the group verbs say so
        elif target is not None and target.kind == "tcp":
            group_address = target.address
    ctx.obj = Context(
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


# -- groups ---------------------------------------------------------------------------------


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--pretend", is_flag=True, help="Print what would happen; change nothing.")
@click.option("--timeout", type=float, default=300.0, show_default=True, help="Seconds to wait for convergence.")
@click.option(
    "--force-conflicts",
    is_flag=True,
    help="With --context: take fields another manager owns (kubectl apply --server-side --force-conflicts).",
)
@click.option(
    "--template",
    "as_template",
    is_flag=True,
    help="FILE is a template (implied by .tpl, .j2, .jinja): render it first (see `template`).",
)
@click.option("--var", "variables", multiple=True, metavar="NAME=VALUE", help="A template variable (repeatable).")
@grants.options
@pass_context
def commit(
    obj: Context,
    file: str,
    pretend: bool,
    timeout: float,
    force_conflicts: bool,
    as_template: bool,
    variables: tuple[str, ...],
    allow_local: bool,
    allow_env: tuple[str, ...],
    allow_metadata: bool,
) -> None:
    """Commit the Group(s) in FILE (YAML manifest or InfraKit JSON; - for stdin) and converge."""
    with _errors(file):
        from infrakit.local import documents  # lazy: PyYAML, for the commands that read a file

        text = sys.stdin.buffer.read() if file == "-" else None
        if as_template or variables or file.endswith(_TEMPLATE_SUFFIXES):
            given = grants.Grants.given(allow_local=allow_local, allow_env=allow_env, allow_metadata=allow_metadata)
            text = _render(obj, file, text, variables, given)
        groups = documents.load_groups(file, text=text)
        if obj.group_address is not None:
            daemon = obj.daemon()
            for spec in groups:
                details = daemon.commit(spec, pretend=pretend)
                click.echo(
                    f"Committing {spec.name} would involve: {details}"
                    if pretend
                    else f"Committed {spec.name}: {details}"
                )
            return
        if obj.kube_context is not None:
            from infrakit.runtime import engine

            cluster = obj.remote()
            for spec in groups:
                engine.resolve(
                    spec, obj.registry, options=obj.plugin_options(spec.instance.plugin)
                )  # fail before the server
            for spec in groups:
                click.echo(cluster.commit(spec, pretend=pretend, force_conflicts=force_conflicts))
            return
        controller = obj.controller()
        # Every group valid before any is committed.
        prepared = controller.prepare_all(groups, options=obj.plugin_options, explicit=obj.dir_given)
        for spec in groups:
            with _progress(spec) as (on_start, on_step):
                result = controller.commit(
                    spec,
                    prepared=prepared.get(spec.name),
                    pretend=pretend,
                    timeout=timeout,
                    options=obj.plugin_options(spec.instance.plugin),
                    explicit=obj.dir_given,
                    on_step=on_step,
                    on_start=on_start,
                )
            note = " (paused: no changes until spec.paused is false)" if result.paused else ""
            if pretend:
                click.echo(f"Committing {spec.name} would involve: {result.plan_text}{note}")
            else:
                click.echo(f"Committed {spec.name}: {result.plan_text}{note}")


@cli.command("ls")
@_QUIET
@_OUTPUT
@pass_context
def list_groups(obj: Context, quiet: bool, output: str) -> None:
    """List the committed groups."""
    with _errors():
        if obj.group_address is not None:
            names = obj.daemon().names()
        else:
            names = obj.remote().names() if obj.kube_context is not None else obj.controller().names()
        _emit(output, [{"ID": n} for n in names], headers=["ID"], rows=[[n] for n in names], quiet=quiet)


@cli.command()
@click.argument("group", shell_complete=_complete_groups)
@_QUIET
@_OUTPUT
@pass_context
def describe(obj: Context, group: str, quiet: bool, output: str) -> None:
    """List the instances of GROUP: ID, logical ID and tags."""
    with _errors():
        if obj.group_address is not None:
            found = obj.daemon().describe(group)
        elif obj.kube_context is not None:
            found = obj.remote().describe(group)
        else:
            found = [m.description for m in obj.controller().observe(group)[1]]
        _describe_instances(found, quiet=quiet, output=output)


@cli.command()
@click.argument("group", shell_complete=_complete_groups)
@click.option("-o", "--output", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True)
@pass_context
def inspect(obj: Context, group: str, output: str) -> None:
    """Print GROUP's spec and last status as a manifest."""
    with _errors():
        if obj.group_address is not None:
            document = obj.daemon().inspect(group)
        elif obj.kube_context is not None:
            document = obj.remote().get(group)
        else:
            stored = obj.controller().get(group)
            document = {**stored.manifest, "status": dict(stored.status)}
        _dump(document, output)


@cli.command()
@click.argument("group", shell_complete=_complete_groups)
@pass_context
def free(obj: Context, group: str) -> None:
    """Stop managing GROUP; its instances are left as they are."""
    with _errors():
        if obj.group_address is not None:
            obj.daemon().free(group)
        elif obj.kube_context is not None:
            obj.remote().free(group)
        else:
            obj.controller().free(group)
        click.echo(f"Freed {group}")


@cli.command()
@click.argument("group", shell_complete=_complete_groups)
@pass_context
def destroy(obj: Context, group: str) -> None:
    """Destroy GROUP's instances (exactly those) and forget GROUP."""
    with _errors():
        if obj.group_address is not None:
            obj.daemon().destroy(group)
            click.echo(f"Destroyed {group}")
            return
        if obj.kube_context is not None:
            obj.remote().destroy(group)
            click.echo(f"Destroying {group}: the operator removes its instances")
            return
        result = obj.controller().destroy(group)
        click.echo(f"Destroyed {group}: {len(result.steps)} instances")


@cli.command()
@options.timers
@pass_context
def run(obj: Context, resync: float, poll: float) -> None:
    """Reconcile every group until stopped (Ctrl-C): heal lost instances, finish rolls."""
    from infrakit.local import running

    with _errors():
        obj.local_only("run", "on a cluster the operator reconciles the Groups")
        running.run(obj.controller(), resync=resync, poll=poll)


# -- plugins --------------------------------------------------------------------------------


@cli.group(cls=_Group)
def plugin() -> None:
    """Plugins known to this installation."""


@plugin.command("ls")
@_QUIET
@_OUTPUT
@pass_context
def plugin_ls(obj: Context, quiet: bool, output: str) -> None:
    """List the plugins by interface: the daemons in the plugins directory, then the built-ins.

    A daemon answers for its name; a built-in of the same name is then not used.
    """
    from infrakit.rpc import discovery

    with _errors():
        if obj.selected is None or obj.selected.kind != "unix":
            obj.local_only("plugin ls", "it lists this machine's plugins directory and built-in plugins")
    rows: list[list[str]] = []
    running = discovery.running(directory=obj.plugins_dir)
    for info in running:
        if info.error:
            rows.append(["?", info.listen, f"{info.name} ({info.error})"])
        rows += [[interface, info.listen, info.name] for interface in info.interfaces]
    served = {info.name for info in running}
    builtin = "(built-in)"
    rows += [[i, builtin, "group"] for i in ("Group/0.1.0", "Metadata/0.1.0") if "group" not in served]
    rows += [
        ["Instance/0.5.0", builtin, name] for name in obj.registry.names(plugins.INSTANCE_GROUP) if name not in served
    ]
    rows += [["Flavor/0.1.0", builtin, name] for name in obj.registry.names(plugins.FLAVOR_GROUP) if name not in served]
    data = [{"Interface": r[0], "Listen": r[1], "Name": r[2]} for r in rows]
    _emit(output, data, headers=["INTERFACE", "LISTEN", "NAME"], rows=rows, quiet=quiet)


def _instance_commands(name: str) -> click.Group:
    @click.group(name=name, cls=_Group, help=f"Access plugin {name} which implements Instance/0.5.0.")
    @pass_context
    def group(obj: Context) -> None:
        with _errors():
            obj.local_only(name, "it talks to the plugin as this machine finds it (a daemon, or built in)", plugin=name)

    def resolve(obj: Context) -> plugins.InstancePlugin:
        return obj.registry.instance(name, obj.plugin_options(name))

    @group.command("describe", help="Describe all managed instances across all groups, subject to filter.")
    @click.option("--tags", multiple=True, metavar="K=V", help="Only instances with this tag (repeatable).")
    @click.option("-p", "--properties", is_flag=True, help="Also show each instance's properties (its spec).")
    @_QUIET
    @_OUTPUT
    @pass_context
    def describe_instances(obj: Context, tags: Sequence[str], properties: bool, quiet: bool, output: str) -> None:
        with _errors():
            wanted = dict(_split_tag(t) for t in tags)
            if properties:
                _describe_with_properties(resolve(obj), wanted, quiet=quiet, output=output)
                return
            _describe_instances(resolve(obj).describe(wanted), quiet=quiet, output=output)

    @group.command("provision", help="Provision an instance from an instance spec (JSON/YAML; - for stdin).")
    @click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
    @pass_context
    def provision(obj: Context, file: str) -> None:
        with _errors(file):
            document = _single_document(file)
            if not isinstance(document, dict):
                raise specs.SpecError(
                    "", "an instance spec is a mapping: Properties, Tags, Init, LogicalID, Attachments"
                )
            plugin = resolve(obj)
            plugin.validate(document.get("Properties"))
            click.echo(plugin.provision(instances.InstanceSpec.from_json(document)))

    @group.command("destroy", help="Destroy the instance.")
    @click.argument("instance_id")
    @pass_context
    def destroy_instance(obj: Context, instance_id: str) -> None:
        with _errors():
            try:
                resolve(obj).destroy(instance_id)
            except plugins.InstanceNotFound as error:
                raise specs.SpecError("", str(error)) from None
            click.echo(f"Destroyed {instance_id}")

    @group.command("validate", help="Validate instance properties (JSON/YAML; - for stdin).")
    @click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
    @pass_context
    def validate(obj: Context, file: str) -> None:
        with _errors(file):
            resolve(obj).validate(_single_document(file))
            click.echo("OK")

    return group


def _flavor_commands(name: str) -> click.Group:
    @click.group(name=name, cls=_Group, help=f"Access plugin {name} which implements Flavor/0.1.0.")
    @pass_context
    def group(obj: Context) -> None:
        with _errors():
            obj.local_only(name, "it talks to the plugin as this machine finds it (a daemon, or built in)", plugin=name)

    @group.command("validate", help="Validate flavor properties (JSON/YAML; - for stdin).")
    @click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
    @pass_context
    def validate(obj: Context, file: str) -> None:
        with _errors(file):
            obj.registry.flavor(name).validate(_single_document(file), specs.Allocation(size=1))
            click.echo("OK")

    return group


def _flavor_properties(file: str | None) -> Any:
    return _single_document(file) if file is not None else None


def _allocation(size: int, logical_ids: str | None) -> specs.Allocation:
    if logical_ids:
        return specs.Allocation(logical_ids=tuple(i for i in logical_ids.split(",") if i))
    return specs.Allocation(size=size)


def _flavor_prepare(name: str) -> click.Command:
    @click.command("prepare", help="Prepare an instance spec (JSON/YAML; - for stdin) as the group would; print it.")
    @click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
    @click.option("--properties", "properties_file", metavar="FILE", help="The flavor's properties (JSON/YAML).")
    @click.option("--size", type=click.IntRange(min=0), default=0, help="Group size, as the allocation.")
    @click.option("--logical-ids", metavar="A,B", help="Logical IDs, as the allocation (instead of --size).")
    @click.option("--index-group", default="", help="ID of the group.")
    @click.option("--index-sequence", type=click.IntRange(min=0), default=0, help="Sequence number within the group.")
    @pass_context
    def prepare(
        obj: Context,
        file: str,
        properties_file: str | None,
        size: int,
        logical_ids: str | None,
        index_group: str,
        index_sequence: int,
    ) -> None:
        with _errors(file):
            document = _single_document(file)
            if not isinstance(document, dict):
                raise specs.SpecError(
                    "", "an instance spec is a mapping: Properties, Tags, Init, LogicalID, Attachments"
                )
            spec = instances.InstanceSpec.from_json(document)
            if index_group:
                spec = dataclasses.replace(spec, tags={**spec.tags, instances.TAG_GROUP: index_group})
            flavor = obj.registry.flavor(name)
            properties = _flavor_properties(properties_file)
            allocation = _allocation(size, logical_ids)
            flavor.validate(properties, allocation)
            click.echo(json.dumps(flavor.prepare(properties, spec, allocation).to_json(), indent=2))

    return prepare


def _flavor_healthy(name: str) -> click.Command:
    @click.command("healthy", help="Print the health of the instances of these IDs: Healthy, Unhealthy or Unknown.")
    @click.argument("ids", nargs=-1, required=True)
    @click.option("--properties", "properties_file", metavar="FILE", help="The flavor's properties (JSON/YAML).")
    @click.option("--tags", multiple=True, metavar="K=V", help="Tags of the instances (repeatable).")
    @click.option("-l", "--logical-id", is_flag=True, help="The arguments are logical IDs.")
    @pass_context
    def healthy(
        obj: Context, ids: Sequence[str], properties_file: str | None, tags: Sequence[str], logical_id: bool
    ) -> None:
        with _errors(properties_file):
            flavor = obj.registry.flavor(name)
            properties = _flavor_properties(properties_file)
            labels = dict(_split_tag(t) for t in tags)
            for given in ids:
                description = (
                    instances.Description(id=given, logical_id=given, tags=labels)
                    if logical_id
                    else instances.Description(id=given, tags=labels)
                )
                click.echo(flavor.healthy(properties, description).value)

    return healthy


# -- InfraKit's spellings: `group ...`, `info`, the flavor verbs ---------------------------------
#
# The group commands work on the store directly, whether or not a group daemon
# (infrakit-group-default) runs: it serves the same store, and its runtime sees every
# change the CLI makes (the store's change feed).


@cli.group("group", cls=_Group, help="Access plugin group which implements Group/0.1.0,Metadata/0.1.0.")
def group_commands() -> None:
    pass


for _command in (commit, list_groups, describe, inspect, free, destroy):
    group_commands.add_command(_command)


def _info_command(name: str, interfaces: Sequence[str], *, builtin: bool = True) -> click.Command:
    @click.command("info", help="Print plugin info: its interfaces and where it listens.")
    @_OUTPUT
    @pass_context
    def info(obj: Context, output: str) -> None:
        from infrakit.rpc import discovery

        with _errors():
            endpoint = discovery.find(name, directory=obj.plugins_dir)
            implements = list(interfaces)
            listen = "(built-in)" if builtin else "(not running)"
            if endpoint is not None:
                listen = endpoint.address
                for found in discovery.running(directory=obj.plugins_dir, only=name):
                    if found.error:
                        raise plugins.PluginError(found.error)
                    implements = list(found.interfaces)
            data = {"Plugin": name, "Implements": implements, "Listen": listen}
            if output == "table":
                click.echo(f"Plugin:     {name}")
                click.echo(f"Implements: {' '.join(implements)}")
                click.echo(f"Listen:     {listen}")
            else:
                _dump(data, output)

    return info


group_commands.add_command(
    _info_command("group", ["Group/0.1.0", "Metadata/0.1.0"], builtin=False)  # its group commands are built in
)


def _plugin_group(group: str, name: str) -> click.Group:
    """A plugin's command group, as the root group adds it when the name is first looked up."""
    if group == plugins.INSTANCE_GROUP:
        made = _instance_commands(name)
        made.add_command(_info_command(name, ["Instance/0.5.0"]))
        return made
    made = _flavor_commands(name)
    made.add_command(_info_command(name, ["Flavor/0.1.0"]))
    made.add_command(_flavor_prepare(name))
    made.add_command(_flavor_healthy(name))
    return made


@cli.command()
def version() -> None:
    """Print build version information."""
    import platform

    click.echo(f"infrakit-local {infrakit.__version__} (python {platform.python_version()}, {sys.platform})")


# -- helpers --------------------------------------------------------------------------------


class _Interrupted(BaseException):
    """Ctrl-C, raised by our own SIGINT handler: click turns a KeyboardInterrupt into ``Aborted!``."""


def _on_sigint(signum: int, frame: Any) -> None:
    raise _Interrupted


def main() -> NoReturn:
    import signal

    signal.signal(signal.SIGINT, _on_sigint)  # a sync in flight writes its status, then we say where it is
    _add_playbooks()
    try:
        cli.main(prog_name="infrakit-local", standalone_mode=False)
    except (_Interrupted, click.exceptions.Abort, KeyboardInterrupt):
        _interrupted()
    except click.ClickException as error:
        error.show()
        raise SystemExit(error.exit_code) from None
    except click.exceptions.Exit as done:
        raise SystemExit(done.exit_code) from None
    raise SystemExit(0)


def _add_playbooks() -> None:
    """``infrakit-local NAME COMMAND``: the installed playbooks as command groups (indexes read when used)."""
    home = Path(os.environ.get("INFRAKIT_HOME") or Path.home() / ".infrakit").expanduser()
    if not (home / "playbooks").exists() and not os.environ.get("INFRAKIT_PLAYBOOKS_FILE"):
        return  # the common case costs one stat
    from infrakit.commands import playbooks

    for book in playbooks.installed(home):
        if book.name not in cli.commands and book.name not in COMMANDS:
            cli.add_command(book)


def _interrupted() -> NoReturn:
    click.echo(
        "Interrupted: the group's status says where it stopped (`inspect`); the next commit or `run` resumes it.",
        err=True,
    )
    raise SystemExit(130)


@contextmanager
def _errors(source: str | None = None) -> Iterator[None]:
    """Map failures to a one-line message and InfraKit-style exit codes."""
    where = f"{source}: " if source and source != "-" else ""
    try:
        yield
    except store.Damaged as error:
        _fail(str(error), EXIT_USAGE)
    except specs.SpecError as error:
        _fail(f"{where}{error}", EXIT_USAGE)
    except controllers.GroupNotFound as error:
        _fail(str(error), EXIT_USAGE)
    except (plugins.PluginError, controllers.Timeout, controllers.CommitFailed) as error:
        _fail(str(error), EXIT_RUNTIME)
    except OSError as error:
        _fail(f"{error.filename or ''}: {error.strerror or error}".lstrip(": "), EXIT_RUNTIME)
    except Exception as error:
        kubeapi = sys.modules.get("infrakit.cluster.kubeapi")
        remote = sys.modules.get("infrakit.cluster.remote")
        if remote is not None and isinstance(error, remote.GroupNotFound):
            _fail(str(error), EXIT_USAGE)
        if kubeapi is not None and isinstance(error, kubeapi.ConfigException):
            _fail(f"kubeconfig: {error}", EXIT_USAGE)
        if kubeapi is not None and isinstance(error, kubeapi.ApiException):
            _fail(f"API server: {kubeapi.error_text(error)}", EXIT_RUNTIME)
        # A defect of ours: still one line for the user, the traceback only at --log 5.
        log.debug("unexpected failure", exc_info=error)
        first = (str(error).strip().splitlines() or [""])[0]
        _fail(f"internal error: {type(error).__name__}: {first} (--log 5 shows the details)", EXIT_RUNTIME)


def _fail(message: str, code: int) -> NoReturn:
    logs.fail(message, code=code)  # `Error: ...`, or one JSON object with --log-format json


@contextmanager
def _progress(spec: specs.GroupSpec) -> Iterator[tuple[Callable[[int], None], Callable[[engine.Step], None]]]:
    """A progress bar on a terminal for large commits; silent otherwise."""
    if not sys.stderr.isatty():
        yield (lambda total: None), (lambda step: None)
        return
    from rich.progress import Progress

    with Progress(transient=True, console=None) as bar:
        task = bar.add_task(f"{spec.name}", total=None, visible=False)

        def start(total: int) -> None:
            bar.update(task, total=max(total, 1), visible=total >= 50)

        def step(_: engine.Step) -> None:
            bar.advance(task)

        yield start, step


_TEMPLATE_SUFFIXES = (".tpl", ".j2", ".jinja")


def _render(obj: Context, file: str, text: bytes | None, variables: tuple[str, ...], given: grants.Grants) -> bytes:
    """A template's rendering (sandboxed, bounded Jinja2, InfraKit's helpers); its errors are bad input (exit 2)."""
    from infrakit.commands import _common, metadata, rendering

    try:
        values = rendering.parse_vars(variables)
        source = None if text is None else text.decode("utf-8", "replace")
        rendered = rendering.render(file, variables=values, metadata=metadata.reader(obj), text=source, grants=given)
        return rendered.encode("utf-8")
    except _common.Usage as error:
        raise specs.SpecError("", str(error)) from None
    except _common.Failure as error:
        raise plugins.PluginError(str(error)) from None


def _single_document(file: str) -> Any:
    text = sys.stdin.buffer.read() if file == "-" else _read(file)
    from infrakit.local import documents

    found = documents.parse_text(text, source=file)
    if len(found) != 1:
        raise specs.SpecError("", f"expected one document, found {len(found)}")
    return found[0]


def _read(file: str) -> bytes:
    try:
        with open(file, "rb") as stream:
            return stream.read(_MAX_INPUT + 1)
    except OSError as error:
        raise specs.SpecError("", f"cannot read {file}: {error.strerror or error}") from error


def _split_tag(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise specs.SpecError("--tags", f"{text!r} is not K=V")
    return key, value


def _describe_instances(found: Sequence[instances.Description], *, quiet: bool, output: str) -> None:
    rows = [[d.id, d.logical_id or "-", instances.format_tags(d.tags)] for d in sorted(found, key=lambda d: d.id)]
    _emit(output, [d.to_json() for d in found], headers=["ID", "LOGICAL", "TAGS"], rows=rows, quiet=quiet)


def _describe_with_properties(
    plugin: plugins.InstancePlugin, tags: dict[str, str], *, quiet: bool, output: str
) -> None:
    from infrakit.rpc import resolving

    found = sorted(resolving.with_properties(plugin, tags), key=lambda item: item[0].id)
    rows = [
        [d.id, d.logical_id or "-", instances.format_tags(d.tags), json.dumps(p, separators=(",", ":"))]
        for d, p in found
    ]
    data = [{**d.to_json(), "Properties": p} for d, p in found]
    _emit(output, data, headers=["ID", "LOGICAL", "TAGS", "PROPERTIES"], rows=rows, quiet=quiet)


def _emit(output: str, data: Any, *, headers: list[str], rows: list[list[str]], quiet: bool) -> None:
    if output == "table":
        _table(headers, rows, quiet=quiet)
    else:
        _dump(data, output)


def _dump(data: Any, output: str) -> None:
    if output == "json":
        click.echo(json.dumps(data, indent=2, sort_keys=False))
    else:
        import yaml  # lazy: the store and the tables need no YAML

        click.echo(yaml.safe_dump(data, sort_keys=False, default_flow_style=False).rstrip("\n"))


def _table(headers: list[str], rows: list[list[str]], *, quiet: bool) -> None:
    shown = rows if quiet else [headers, *rows]
    if not shown:
        return
    widths = [max(len(r[i]) for r in shown) for i in range(len(headers) - 1)]
    colour = not quiet and _terminal(sys.stdout)
    for index, row in enumerate(shown):
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)] + [row[-1]]
        line = "   ".join(cells).rstrip()
        click.echo(click.style(line, bold=True) if colour and index == 0 else line)


def _terminal(stream: Any) -> bool:
    """Colour for people at a terminal, never in pipes or files, nor with NO_COLOR set."""
    return bool(getattr(stream, "isatty", lambda: False)()) and not os.environ.get("NO_COLOR")


if __name__ == "__main__":
    main()
