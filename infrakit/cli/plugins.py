"""The plugin verbs of ``infrakit-local``: ``plugin ls``, each plugin's commands, InfraKit's ``group ...``.

``instance-file describe|provision|destroy|validate|info`` and ``flavor-vanilla
validate|prepare|healthy|info`` (one command group per plugin this installation knows,
added by the root group when its name is first typed) talk to the plugin as this
machine finds it: a daemon in the plugins directory, else the built-in.  They work on
this machine only (or in a ``unix://`` remote's plugins directory, on the daemon of that
name there).  ``group commit|ls|describe|inspect|free|destroy|info`` are the group verbs
(:mod:`infrakit.cli.groups`) as InfraKit's CLI spelled them.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Sequence
from typing import Any, Final

import click

from infrakit import plugins
from infrakit.cli import groups, render
from infrakit.cli.context import Context, pass_context
from infrakit.core import instances, specs

__all__ = ["group_commands", "info_command", "plugin", "plugin_group"]

_MAX_INPUT: Final = 1 << 20  # infrakit.local.documents.MAX_BYTES, without importing PyYAML to know it


@click.group(cls=render.Group)
def plugin() -> None:
    """Plugins known to this installation."""


@plugin.command("ls")
@click.option("-a", "--all", "everything", is_flag=True, help="Also list the built-ins while daemons run.")
@render.quiet
@render.output
@pass_context
def plugin_ls(obj: Context, everything: bool, quiet: bool, output: str) -> None:
    """List the plugins by interface: the daemons in the plugins directory, or the built-ins.

    As InfraKit's, the daemons running in the plugins directory; where none runs, the
    built-ins (what every command then uses); with --all both (a daemon answers for its
    name: a built-in of the same name is then not used).
    """
    from infrakit.rpc import discovery

    with render.errors():
        if obj.selected is None or obj.selected.kind != "unix":
            obj.local_only("plugin ls", "it lists this machine's plugins directory and built-in plugins")
    rows: list[list[str]] = []
    running = discovery.running(directory=obj.plugins_dir)
    for info in running:
        if info.error:
            rows.append(["?", info.listen, f"{info.name} ({info.error})"])
        rows += [[interface, info.listen, info.name] for interface in info.interfaces]
    if everything or not running:
        rows += _builtins(obj, served={info.name for info in running})

    data = [{"Interface": r[0], "Listen": r[1], "Name": r[2]} for r in rows]
    render.emit(output, data, headers=["INTERFACE", "LISTEN", "NAME"], rows=rows, quiet=quiet)


def _builtins(obj: Context, *, served: set[str]) -> list[list[str]]:
    """The built-in plugins' rows, but those a daemon answers for."""
    builtin = "(built-in)"
    rows = [[i, builtin, "group"] for i in ("Group/0.1.0", "Metadata/0.1.0") if "group" not in served]
    rows += [
        ["Instance/0.5.0", builtin, name] for name in obj.registry.names(plugins.INSTANCE_GROUP) if name not in served
    ]
    rows += [["Flavor/0.1.0", builtin, name] for name in obj.registry.names(plugins.FLAVOR_GROUP) if name not in served]
    return rows


def _plugin_commands(name: str, interface: str) -> click.Group:
    """Plugin ``name``'s command group, with its ``info``: for this machine's plugins (or a unix:// remote's)."""

    @click.group(name=name, cls=render.Group, help=f"Access plugin {name} which implements {interface}.")
    @pass_context
    def group(obj: Context) -> None:
        with render.errors():
            obj.local_only(name, "it talks to the plugin as this machine finds it (a daemon, or built in)", plugin=name)

    group.add_command(info_command(name, [interface]))
    return group


def _instance_commands(name: str) -> click.Group:
    group = _plugin_commands(name, "Instance/0.5.0")

    def resolve(obj: Context) -> plugins.InstancePlugin:
        return obj.registry.instance(name, obj.plugin_options(name))

    @group.command("describe", help="Describe all managed instances across all groups, subject to filter.")
    @click.option("--tags", multiple=True, metavar="K=V", help="Only instances with this tag (repeatable).")
    @click.option("-p", "--properties", is_flag=True, help="Also show each instance's properties (its spec).")
    @render.quiet
    @render.output
    @pass_context
    def describe_instances(obj: Context, tags: Sequence[str], properties: bool, quiet: bool, output: str) -> None:
        with render.errors():
            wanted = dict(_split_tag(t) for t in tags)
            if properties:
                _describe_with_properties(resolve(obj), wanted, quiet=quiet, output=output)
                return
            render.instances(resolve(obj).describe(wanted), quiet=quiet, output=output)

    @group.command("provision", help="Provision an instance from an instance spec (JSON/YAML; - for stdin).")
    @click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
    @pass_context
    def provision(obj: Context, file: str) -> None:
        with render.errors(file):
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
        with render.errors():
            try:
                resolve(obj).destroy(instance_id)
            except plugins.InstanceNotFound as error:
                raise specs.SpecError("", str(error)) from None
            click.echo(f"Destroyed {instance_id}")

    @group.command("validate", help="Validate instance properties (JSON/YAML; - for stdin).")
    @click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
    @pass_context
    def validate(obj: Context, file: str) -> None:
        with render.errors(file):
            resolve(obj).validate(_single_document(file))
            click.echo("OK")

    return group


def _flavor_commands(name: str) -> click.Group:
    group = _plugin_commands(name, "Flavor/0.1.0")

    @group.command("validate", help="Validate flavor properties (JSON/YAML; - for stdin).")
    @click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
    @pass_context
    def validate(obj: Context, file: str) -> None:
        with render.errors(file):
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
        with render.errors(file):
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
        with render.errors(properties_file):
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


@click.group("group", cls=render.Group, help="Access plugin group which implements Group/0.1.0,Metadata/0.1.0.")
def group_commands() -> None:
    pass


for _command in (groups.commit, groups.list_groups, groups.describe, groups.inspect, groups.free, groups.destroy):
    group_commands.add_command(_command)


def info_command(name: str, interfaces: Sequence[str], *, builtin: bool = True) -> click.Command:
    @click.command("info", help="Print plugin info: its interfaces and where it listens.")
    @render.output
    @pass_context
    def info(obj: Context, output: str) -> None:
        from infrakit.rpc import discovery

        with render.errors():
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
                render.dump(data, output)

    return info


group_commands.add_command(
    info_command("group", ["Group/0.1.0", "Metadata/0.1.0"], builtin=False)  # its group commands are built in
)


def plugin_group(group: str, name: str) -> click.Group:
    """A plugin's command group, as the root group adds it when the name is first looked up."""
    if group == plugins.INSTANCE_GROUP:
        return _instance_commands(name)
    made = _flavor_commands(name)
    made.add_command(_flavor_prepare(name))
    made.add_command(_flavor_healthy(name))
    return made


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
    render.emit(output, data, headers=["ID", "LOGICAL", "TAGS", "PROPERTIES"], rows=rows, quiet=quiet)
