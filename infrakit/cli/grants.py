"""What the user lets a template fetched over HTTP(S) reach on this machine: ``--allow-*``.

A template's powers follow from where it came from (:mod:`infrakit.cli.rendering`):
one read from this machine (a path, ``file://``, stdin) may include local files, read
environment variables and metadata, as before; one fetched from ``http(s)://`` (and
everything it includes, and a playbook added from a URL) may include only from its own
origin, and reaches the rest only as granted here.  ``--var`` values are always given.

Kept apart from the renderer so that ``infrakit.cli`` can offer these options on
``commit`` without importing it (CLI start-up time).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, Final, TypeVar, cast

import click

__all__ = ["Grants", "options"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Grants:
    """What a remote template may reach besides its own origin (a local template reaches all of it)."""

    local: bool = False  # --allow-local: files on this machine (include of a path or file://)
    env: frozenset[str] = frozenset()  # --allow-env NAME: these environment variables
    metadata: bool = False  # --allow-metadata: metadata() (the groups of the store, daemon or cluster)


_F = TypeVar("_F", bound=Callable[..., Any])


def options(function: _F) -> _F:
    """``--allow-local``, ``--allow-env NAME`` (repeatable), ``--allow-metadata``, given to the command as ``reach``."""

    @functools.wraps(function)
    def given(*args: Any, allow_local: bool, allow_env: tuple[str, ...], allow_metadata: bool, **kwargs: Any) -> Any:
        granted = Grants(local=allow_local, env=frozenset(allow_env), metadata=allow_metadata)
        return function(*args, reach=granted, **kwargs)

    made: Any = given
    for option in reversed(_OPTIONS):  # listed by --help in this order
        made = option(made)
    return cast(_F, made)


_OPTIONS: Final = (
    click.option(
        "--allow-local", is_flag=True, help="Let a template fetched over HTTP(S) include files of this machine."
    ),
    click.option(
        "--allow-env",
        multiple=True,
        metavar="NAME",
        help="Let a template fetched over HTTP(S) read environment variable NAME (repeatable).",
    ),
    click.option(
        "--allow-metadata",
        is_flag=True,
        help="Let a template fetched over HTTP(S) read metadata() (this machine's or the cluster's groups).",
    ),
)
