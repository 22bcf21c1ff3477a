"""What every command of ``infrakit-local`` prints the same way: tables, JSON and YAML, failures, help.

One renderer: :func:`emit` prints rows as an aligned table (the last column free, the
header bold for people at a terminal, never in pipes or files nor with ``NO_COLOR``), or
the data as JSON or YAML (``-o``).  One error mapper: :func:`errors` turns every failure
into one line on stderr (``Error: ...``, or one JSON object under ``--log-format json``:
:func:`infrakit.logs.fail`) and InfraKit's exit codes: 2 bad input (the message names
the field and the fix), 1 a runtime failure; never a traceback (``--log 5`` logs it).
The options ``-o`` and ``-q`` of the listing commands, and the help of command groups
(each command's first line whole), are here too.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn

import click

from infrakit import logs
from infrakit.core import specs

if TYPE_CHECKING:
    from infrakit.core import instances as instances_

__all__ = [
    "EXIT_RUNTIME",
    "EXIT_USAGE",
    "Failure",
    "Group",
    "Usage",
    "dump",
    "emit",
    "errors",
    "fail",
    "instances",
    "output",
    "quiet",
]

EXIT_RUNTIME = 1
EXIT_USAGE = 2

log = logging.getLogger("infrakit")


class Usage(Exception):
    """Bad input: the message names what is wrong and how to fix it (exit 2)."""


class Failure(Exception):
    """Something did not work (a daemon not running, a fetch that failed): exit 1."""


def fail(message: str, code: int) -> NoReturn:
    logs.fail(message, code=code)  # `Error: ...`, or one JSON object with --log-format json


@contextmanager
def errors(source: str | None = None) -> Iterator[None]:
    """Map every failure to one line on stderr and an exit code; bad input read from ``source`` is prefixed with it."""
    try:
        yield
    except Exception as error:  # every failure is worded, a defect of ours included
        fail(*_worded(error, f"{source}: " if source and source != "-" else ""))


def _worded(error: Exception, where: str) -> tuple[str, int]:
    """The line and the exit code for ``error``.

    The classes of modules not loaded are not imported to be checked (start-up time): what a
    command did not load, it did not raise.
    """
    if isinstance(error, _loaded("infrakit.groups.spi", "GroupNotFound")):
        return str(error), EXIT_USAGE
    if isinstance(error, Usage | specs.SpecError):
        damaged = isinstance(error, _loaded("infrakit.local.store", "Damaged"))  # its message names its file
        return f"{'' if damaged else where}{error}", EXIT_USAGE
    runtime = (
        *_loaded("infrakit.plugins.spi", "PluginError"),
        *_loaded("infrakit.local.controller", "Timeout", "CommitFailed"),
    )
    if isinstance(error, (Failure, *runtime)):
        return str(error), EXIT_RUNTIME
    if isinstance(error, OSError):
        return f"{error.filename or ''}: {error.strerror or error}".lstrip(": "), EXIT_RUNTIME
    if isinstance(error, _loaded("infrakit.cluster.kubeapi", "ConfigException")):
        return f"kubeconfig: {error}", EXIT_USAGE
    if isinstance(error, _loaded("infrakit.cluster.kubeapi", "ApiException")):
        return f"API server: {sys.modules['infrakit.cluster.kubeapi'].error_text(error)}", EXIT_RUNTIME
    # A defect of ours: still one line for the user, the traceback only at --log 5.
    log.debug("unexpected failure", exc_info=error)
    first = (str(error).strip().splitlines() or [""])[0]
    return f"internal error: {type(error).__name__}: {first} (--log 5 shows the details)", EXIT_RUNTIME


def _loaded(module: str, *names: str) -> tuple[type, ...]:
    """The classes ``names`` of ``module`` if it is loaded, else none."""
    found = sys.modules.get(module)
    return tuple(getattr(found, name) for name in names) if found is not None else ()


output = click.option(
    "-o",
    "--output",
    type=click.Choice(["table", "json", "yaml"]),
    default="table",
    show_default=True,
    help="Output format.",
)
quiet = click.option("-q", "--quiet", is_flag=True, help="Print rows only, no header.")


class Group(click.Group):
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


def emit(output: str, data: Any, *, headers: list[str], rows: list[list[str]], quiet: bool = False) -> None:
    """A table (columns aligned, the last one free), or the data as JSON/YAML."""
    if output != "table":
        dump(data, output)
        return
    shown = rows if quiet else [headers, *rows]
    if not shown:
        return
    widths = [max(len(r[i]) for r in shown) for i in range(len(headers) - 1)]
    colour = not quiet and _terminal(sys.stdout)
    for index, row in enumerate(shown):
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)] + [row[-1]]
        line = "   ".join(cells).rstrip()
        click.echo(click.style(line, bold=True) if colour and index == 0 else line)


def instances(found: Sequence[instances_.Description], *, quiet: bool, output: str) -> None:
    """Instances as ``describe`` lists them: ID, logical ID and tags, sorted by ID."""
    from infrakit.core import instances as instances_

    rows = [[d.id, d.logical_id or "-", instances_.format_tags(d.tags)] for d in sorted(found, key=lambda d: d.id)]
    emit(output, [d.to_json() for d in found], headers=["ID", "LOGICAL", "TAGS"], rows=rows, quiet=quiet)


def dump(data: Any, output: str) -> None:
    if output == "json":
        click.echo(json.dumps(data, indent=2))
    else:
        import yaml  # lazy: the store and the tables need no YAML

        click.echo(yaml.safe_dump(data, sort_keys=False, default_flow_style=False).rstrip("\n"))


def _terminal(stream: Any) -> bool:
    """Colour for people at a terminal, never in pipes or files, nor with NO_COLOR set."""
    return bool(getattr(stream, "isatty", lambda: False)()) and not os.environ.get("NO_COLOR")
