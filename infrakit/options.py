"""Command-line options shared by ``infrakit-local``, the plugin daemons and the operator: written once.

Each function is a click decorator adding one option block, with the same name,
environment variable, default and words wherever it appears: the logging pair
(``--log``, ``--log-format``), the state directory (``--home``), the file plugin's
instance directory (``--dir``) and its durability (``--fsync``), and the timers of every
long-running controller (``--resync``, ``--poll``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from infrakit.runtime import POLL, RESYNC

F = TypeVar("F", bound=Callable[..., Any])

__all__ = ["directory", "durability", "home", "instance_dir", "log", "timers"]


def instance_dir() -> Path:
    """The file plugin's instance directory when none is given: ``$INFRAKIT_HOME/instances``.

    As ``infrakit-local`` and the group daemon (``--home``/instances), and never a shared
    temporary directory, where another local user could read the instances or plant
    files among them (issue 19); the home is the user's own.
    """
    home = os.environ.get("INFRAKIT_HOME") or str(Path.home() / ".infrakit")
    return (Path(home).expanduser() / "instances").absolute()


def _apply(function: F, *options: Callable[[F], F]) -> F:
    """``options`` applied so that ``--help`` lists them in the order given."""
    for option in reversed(options):
        function = option(function)
    return function


def log(function: F) -> F:
    """``--log N`` (InfraKit's levels) and ``--log-format term|json`` (:mod:`infrakit.logs`)."""
    return _apply(
        function,
        click.option(
            "--log",
            "log_level",
            type=click.IntRange(0, 5),
            default=4,
            show_default=True,
            help="Log level: 0 panic ... 3 warn, 4 info, 5 debug.",
        ),
        click.option(
            "--log-format", type=click.Choice(["term", "json"]), default="term", show_default=True, help="Log format."
        ),
    )


def home(*, what: str = "") -> Callable[[F], F]:
    """``--home`` (``$INFRAKIT_HOME``, ``~/.infrakit``): the state directory, ``what`` it holds said in its help."""
    return click.option(
        "--home",
        envvar="INFRAKIT_HOME",
        type=click.Path(path_type=Path),
        default=lambda: Path.home() / ".infrakit",
        show_default="~/.infrakit",
        help=f"State directory ($INFRAKIT_HOME){what}.",
    )


def directory(
    *, name: str = "instance_dir", default: str | None = None, help: str, file_okay: bool = True
) -> Callable[[F], F]:
    """``--dir`` (``$INFRAKIT_INSTANCE_DIR``): the file plugin's instance directory, passed as ``name``."""
    return click.option(
        "--dir",
        name,
        envvar="INFRAKIT_INSTANCE_DIR",
        type=click.Path(file_okay=file_okay, path_type=Path),
        default=default,
        show_default=default is not None,
        help=help,
    )


def durability(*, help: str) -> Callable[[F], F]:
    """``--fsync/--no-fsync`` (``$INFRAKIT_FSYNC``, off), passed as ``durable``."""
    return click.option(
        "--fsync/--no-fsync", "durable", envvar="INFRAKIT_FSYNC", default=False, show_default=True, help=help
    )


_TIMERS = {
    "--resync": (
        RESYNC,
        "Seconds between syncs of a group whose instance changes are watched (a safety net), and between "
        "collections of the instances of deleted groups.",
    ),
    "--poll": (
        POLL,
        "Seconds between syncs of a group whose instance plugin cannot report changes (polling finds lost instances).",
    ),
}


def timers(function: F) -> F:
    """``--resync`` and ``--poll``: when a group is synced again if nothing wakes it."""
    made = [
        click.option(flag, type=click.FloatRange(min=0.1), default=default, show_default=True, help=text)
        for flag, (default, text) in _TIMERS.items()
    ]
    return _apply(function, *made)
