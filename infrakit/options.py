"""Command-line options shared by every long-running controller (``run``, the group daemon, the operator)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from infrakit.runtime import POLL, RESYNC

F = TypeVar("F", bound=Callable[..., Any])


def instance_dir() -> Path:
    """The file plugin's instance directory when none is given: ``$INFRAKIT_HOME/instances``.

    As ``infrakit-local`` and the group daemon (``--home``/instances), and never a shared
    temporary directory, where another local user could read the instances or plant
    files among them (issue 19); the home is the user's own.
    """
    home = os.environ.get("INFRAKIT_HOME") or str(Path.home() / ".infrakit")
    return (Path(home).expanduser() / "instances").absolute()


def timers(function: F) -> F:
    """``--resync`` and ``--poll``: when a group is synced again if nothing wakes it."""
    function = click.option(
        "--poll",
        type=click.FloatRange(min=0.1),
        default=POLL,
        show_default=True,
        help="Seconds between syncs of a group whose instance plugin cannot report changes (polling finds lost "
        "instances).",
    )(function)
    return click.option(
        "--resync",
        type=click.FloatRange(min=0.1),
        default=RESYNC,
        show_default=True,
        help="Seconds between syncs of a group whose instance changes are watched (a safety net), and between "
        "collections of the instances of deleted groups.",
    )(function)
