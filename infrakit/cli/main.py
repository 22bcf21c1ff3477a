"""``infrakit-local``: the root command, its global options, and the process's entry point.

The commands and their words follow the InfraKit tutorial: ``commit``, ``ls``,
``describe``, ``inspect``, ``free``, ``destroy`` (:mod:`infrakit.cli.groups`), ``plugin
ls`` and the per-plugin ``instance-file ...`` and ``flavor-vanilla ...`` commands
(:mod:`infrakit.cli.plugins`), ``run`` for the self-healing loop, and InfraKit's
``event``, ``metadata``, ``remote``, ``template`` and ``playbook``, plus one command
group per playbook added (``infrakit-local NAME COMMAND``).

The global options are read once, into :class:`infrakit.cli.context.Context` (which also
picks the groups' back end, once); a command module is imported only when its command
is used (start-up time is most of a read-only command's time), a playbook's index only
when its name is typed.

Exit codes: 0 success, 2 bad input (the message names the field), 1 runtime failure,
130 interrupted.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any, Final, NoReturn

import click

import infrakit
from infrakit import logs, options
from infrakit.cli import render
from infrakit.cli.context import Context

__all__ = ["COMMANDS", "cli", "main"]

COMMANDS: Final = {
    "commit": "infrakit.cli.groups:commit",
    "ls": "infrakit.cli.groups:list_groups",
    "describe": "infrakit.cli.groups:describe",
    "inspect": "infrakit.cli.groups:inspect",
    "free": "infrakit.cli.groups:free",
    "destroy": "infrakit.cli.groups:destroy",
    "run": "infrakit.cli.groups:run",
    "group": "infrakit.cli.plugins:group_commands",
    "plugin": "infrakit.cli.plugins:plugin",
    "event": "infrakit.cli.events:event",
    "metadata": "infrakit.cli.metadata:metadata",
    "remote": "infrakit.cli.remotes:remote",
    "template": "infrakit.cli.templates:template",
    "playbook": "infrakit.cli.playbooks:playbook",
}
"""Command name -> ``module:attribute`` of its click command, imported when the command is used."""

_PLUGIN_PREFIXES: Final = ("instance-", "flavor-")  # InfraKit's plugin names; never a playbook's


def _load(name: str) -> click.Command:
    module, _, attribute = COMMANDS[name].partition(":")
    command: click.Command = getattr(importlib.import_module(module), attribute)
    return command


class _Commands(render.Group):
    """The root group: built-in commands loaded when used; the plugins' and playbooks' groups when first looked for.

    Finding third-party plugins scans every installed distribution's entry points
    (~20 ms), and the playbooks are a YAML file: a command such as ``ls`` pays for neither.
    """

    _plugins_added = False
    _books: tuple[Any, dict[str, click.Command]] = (None, {})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = super().get_command(ctx, cmd_name)
        if found is None and cmd_name in COMMANDS:
            found = self.commands[cmd_name] = _load(cmd_name)
        if found is None and not cmd_name.startswith(_PLUGIN_PREFIXES):
            found = self.playbooks(ctx).get(cmd_name)
        if found is None:
            self._add_plugins()
            found = super().get_command(ctx, cmd_name)
        return found

    def list_commands(self, ctx: click.Context) -> list[str]:
        for name in COMMANDS:
            if name not in self.commands:
                self.commands[name] = _load(name)
        self._add_plugins()
        return sorted({*super().list_commands(ctx), *self.playbooks(ctx)})

    def _add_plugins(self) -> None:
        if self._plugins_added:
            return
        self._plugins_added = True
        from infrakit import plugins

        for group in (plugins.INSTANCE_GROUP, plugins.FLAVOR_GROUP):
            for name in plugins.available(group):
                if name not in self.commands:
                    from infrakit.cli import plugins as commands

                    self.commands[name] = commands.plugin_group(group, name)

    def playbooks(self, ctx: click.Context) -> dict[str, click.Command]:
        """``infrakit-local NAME COMMAND``: the playbooks added in the home given (indexes read when used).

        Read again when the file changes (one process may run several command lines: the tests).
        """
        given = ctx.find_root().params.get("home") or os.environ.get("INFRAKIT_HOME")  # --help comes before --home
        home = Path(given or Path.home() / ".infrakit").expanduser()
        if not (home / "playbooks").exists() and not os.environ.get("INFRAKIT_PLAYBOOKS_FILE"):
            return {}  # the common case costs one stat
        from infrakit.cli import playbooks

        path = playbooks.BOOKS.path(home)
        try:
            stat = path.stat()
            version: Any = (path, stat.st_mtime_ns, stat.st_size)
        except OSError:
            version = (path, None, None)
        if self._books[0] != version:
            books: dict[str, click.Command] = {
                b.name: b for b in playbooks.installed(home) if b.name and b.name not in COMMANDS
            }
            self._books = (version, books)
        return self._books[1]


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@options.home()
@options.directory(help="Instance directory of the file plugin ($INFRAKIT_INSTANCE_DIR) [default: HOME/instances].")
@options.durability(help="fsync every instance file (survives power loss; much slower). The store is always fsynced.")
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
@options.log
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
    # InfraKit's remotes: INFRAKIT_HOST=NAME picks one for every command; --context still wins.
    # `remote ...` itself works whatever it names, so that a broken remote can be fixed.
    ctx.obj = Context.make(
        home=home,
        instance_dir=instance_dir,
        durable=durable,
        kube_context=kube_context,
        namespace=namespace,
        select=ctx.invoked_subcommand != "remote",
    )


@cli.command()
def version() -> None:
    """Print build version information."""
    import platform

    click.echo(f"infrakit-local {infrakit.__version__} (python {platform.python_version()}, {sys.platform})")


class _Interrupted(BaseException):
    """Ctrl-C, raised by our own SIGINT handler: click turns a KeyboardInterrupt into ``Aborted!``."""


def _on_sigint(signum: int, frame: Any) -> None:
    raise _Interrupted


def main() -> NoReturn:
    import signal

    signal.signal(signal.SIGINT, _on_sigint)  # a sync in flight writes its status, then we say where it is
    try:
        cli.main(prog_name="infrakit-local", standalone_mode=False)
    except (_Interrupted, click.exceptions.Abort, KeyboardInterrupt):
        click.echo(
            "Interrupted: the group's status says where it stopped (`inspect`); the next commit or `run` resumes it.",
            err=True,
        )
        raise SystemExit(130) from None
    except click.ClickException as error:
        given = getattr(error, "ctx", None)  # a usage error's: the options parsed so far
        if given is not None and given.find_root().params.get("log_format") == "json":
            logs.fail(error.format_message(), code=error.exit_code, fmt="json")  # one JSON object, as every error
        error.show()
        raise SystemExit(error.exit_code) from None
    except click.exceptions.Exit as done:
        raise SystemExit(done.exit_code) from None
    raise SystemExit(0)
