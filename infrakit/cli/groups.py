"""The group verbs of ``infrakit-local``: ``commit``, ``ls``, ``describe``, ``inspect``, ``free``, ``destroy``, ``run``.

Each works on the groups :meth:`infrakit.cli.context.Context.groups` chose (the local
store, a group daemon or a cluster), through InfraKit's Group SPI, and prints the same
words whichever it is.  ``run`` reconciles this machine's store until stopped.  (``group
...`` spells them as InfraKit's CLI did: :mod:`infrakit.cli.plugins`.)
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import click

from infrakit import options
from infrakit.cli import grants, render
from infrakit.cli.context import Context, pass_context
from infrakit.core import specs

if TYPE_CHECKING:
    from infrakit.runtime import engine

__all__ = ["commit", "commit_all", "describe", "destroy", "free", "inspect", "list_groups", "run"]

_TEMPLATE_SUFFIXES: Final = (".tpl", ".j2", ".jinja")


def _complete_groups(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """Shell completion of group names, from the local store (``--home`` or ``$INFRAKIT_HOME``)."""
    import os

    from click.shell_completion import CompletionItem

    from infrakit.local import store

    home = ctx.find_root().params.get("home") or os.environ.get("INFRAKIT_HOME") or "~/.infrakit"
    try:
        names = store.Store(Path(home).expanduser()).names()
    except OSError:
        names = []
    return [CompletionItem(name) for name in names if name.startswith(incomplete)]


_GROUP = click.argument("group", shell_complete=_complete_groups)


@click.command()
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
    reach: grants.Grants,
) -> None:
    """Commit the Group(s) in FILE (YAML manifest or InfraKit JSON; - for stdin) and converge."""
    with render.errors(file):
        from infrakit.local import documents  # lazy: PyYAML, for the commands that read a file

        text = sys.stdin.buffer.read() if file == "-" else None
        if as_template or variables or file.endswith(_TEMPLATE_SUFFIXES):
            from infrakit.cli import metadata, rendering

            source = None if text is None else text.decode("utf-8", "replace")
            values = rendering.parse_vars(variables)
            text = rendering.render(
                file, variables=values, metadata=metadata.reader(obj), text=source, grants=reach
            ).encode("utf-8")
        commit_all(
            obj,
            documents.load_groups(file, text=text),
            pretend=pretend,
            timeout=timeout,
            force_conflicts=force_conflicts,
        )


def commit_all(
    obj: Context,
    groups: Sequence[specs.GroupSpec],
    *,
    pretend: bool,
    timeout: float = 300.0,
    force_conflicts: bool = False,
) -> None:
    """Commit ``groups`` where the command works, every one checked before any is committed; print each answer."""
    target = obj.groups(timeout=timeout, force_conflicts=force_conflicts, progress=_progress)
    target.prepare(groups)
    for spec in groups:
        details = target.commit(spec, pretend=pretend)
        click.echo(
            f"Committing {spec.name} would involve: {details}" if pretend else f"Committed {spec.name}: {details}"
        )


@click.command("ls")
@render.quiet
@render.output
@pass_context
def list_groups(obj: Context, quiet: bool, output: str) -> None:
    """List the committed groups."""
    with render.errors():
        names = obj.groups().ls()
        render.emit(output, [{"ID": n} for n in names], headers=["ID"], rows=[[n] for n in names], quiet=quiet)


@click.command()
@_GROUP
@render.quiet
@render.output
@pass_context
def describe(obj: Context, group: str, quiet: bool, output: str) -> None:
    """List the instances of GROUP: ID, logical ID and tags."""
    with render.errors():
        render.instances(obj.groups().describe(group).instances, quiet=quiet, output=output)


@click.command()
@_GROUP
@click.option("-o", "--output", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True)
@pass_context
def inspect(obj: Context, group: str, output: str) -> None:
    """Print GROUP's spec and last status as a manifest."""
    with render.errors():
        render.dump(obj.groups().inspect(group).document, output)


@click.command()
@_GROUP
@pass_context
def free(obj: Context, group: str) -> None:
    """Stop managing GROUP; its instances are left as they are."""
    with render.errors():
        obj.groups().free(group)
        click.echo(f"Freed {group}")


@click.command()
@_GROUP
@pass_context
def destroy(obj: Context, group: str) -> None:
    """Destroy GROUP's instances (exactly those) and forget GROUP."""
    with render.errors():
        done = obj.groups().destroy(group)
        if done.pending:
            click.echo(f"Destroying {group}: the operator removes its instances")
        elif done.count is not None:
            click.echo(f"Destroyed {group}: {done.count} instances")
        else:
            click.echo(f"Destroyed {group}")


@click.command()
@options.timers
@pass_context
def run(obj: Context, resync: float, poll: float) -> None:
    """Reconcile every group until stopped (Ctrl-C): heal lost instances, finish rolls."""
    with render.errors():
        obj.local_only("run", "on a cluster the operator reconciles the Groups")
        from infrakit.local import controller, running, store

        stuck = running.run(
            controller.Controller(store=store.Store(obj.home), registry=obj.registry), resync=resync, poll=poll
        )
    if stuck:
        raise SystemExit(1)  # the log said which groups were left in a plugin call


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
