"""``infrakit-local playbook add|ls|rm|run`` and the commands playbooks define.

A playbook is a directory or URL holding an index, ``index.yaml`` (or a URL/path naming
the index file itself: InfraKit's ``index.ikm`` ``name : path`` lines are YAML too),
that maps command names to templates, relative to the index.  ``playbook add NAME URL``
records it in ``$INFRAKIT_HOME/playbooks`` (``$INFRAKIT_PLAYBOOKS_FILE`` overrides, as
v0.5); ``infrakit-local NAME COMMAND --var ...`` (or ``playbook run NAME COMMAND``)
renders the command's template (:mod:`infrakit.cli.rendering`) and commits the
Groups it renders, all valid before any is committed; ``--print`` prints them instead.
A playbook never runs a shell command: templates render text, and the only action is
a commit.  :func:`installed` gives the CLI one lazily loaded command group per playbook.

A playbook added from a URL is remote: its index may name templates at its own origin
only (or files of this machine, read only with ``--allow-local``), and its templates
reach what a remote template may (:mod:`infrakit.cli.grants`).  A NAME is never a
built-in or plugin command's (it could never run), and an existing NAME is replaced
only with ``--force``; the playbooks file is rewritten under a lock, atomically.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

import click

from infrakit.cli import grants, names, render, rendering
from infrakit.cli.context import Context

__all__ = ["BOOKS", "index_url", "installed", "load_index", "playbook", "playbook_group"]

INDEX: Final = "index.yaml"
_INDEX_SUFFIXES: Final = (".yaml", ".yml", ".ikm")
_COMMAND: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")  # typed as `infrakit-local NAME COMMAND`
_PLUGIN_PREFIXES: Final = ("instance-", "flavor-")  # the plugins' command groups (`infrakit-local instance-file ...`)


BOOKS: Final = names.Names(what="playbook", file="playbooks")
"""The playbooks, name -> URL."""


def index_url(url: str) -> str:
    """The index of the playbook at ``url``: the URL itself if it names a file, else its ``index.yaml``."""
    if url.rstrip("/").endswith(_INDEX_SUFFIXES):
        return url
    if "://" in url and not url.startswith("file://"):
        return rendering.join(url.rstrip("/") + "/", INDEX)
    path = url.removeprefix("file://")
    return str(Path(path) / INDEX) if not url.startswith("file://") else f"file://{Path(path) / INDEX}"


def load_index(url: str) -> dict[str, str]:
    """Command name -> template URL (resolved against the index); ``Usage`` if the index is not one.

    The index is bounded as a Group document is (1 MiB, aliases, depth, duplicate keys);
    a remote index may name templates at its own origin only (local files too: reading
    them needs ``--allow-local`` when run).
    """
    from infrakit.core import specs
    from infrakit.local import documents

    where = index_url(url)
    text = rendering.fetch(where)
    try:
        found = documents.parse_text(text.encode("utf-8", "surrogatepass"), source=where)
    except specs.SpecError as error:
        raise render.Usage(f"{where}: not a playbook index ({error})") from None
    index: Any = found[0] if len(found) == 1 else ({} if not found else None)
    if not isinstance(index, Mapping) or not all(isinstance(v, str) for v in index.values()):
        raise render.Usage(f"{where}: a playbook index maps command names to templates (e.g. web: web.yaml.j2)")
    home = rendering.origin(where)
    commands = {}
    for name, target in index.items():
        if not _COMMAND.fullmatch(name):
            raise render.Usage(
                f"{where}: command {name!r} cannot be typed as `infrakit-local NAME COMMAND`; "
                "a command is a word of letters, digits, '-', '_' or '.'"
            )
        resolved = rendering.join(_base(where), target)
        reached = rendering.origin(resolved)
        if home is not None and reached is not None and reached != home:
            raise render.Usage(
                f"{where}: command {name!r} names {resolved}, at {reached}; a playbook from {home} may name "
                "templates at its own origin only"
            )
        commands[name] = resolved
    return commands


def _base(where: str) -> str:
    return where.removeprefix("file://") if where.startswith("file://") else where


@click.group("playbook", help="Manage playbooks: commands defined by templates that commit Groups.")
def playbook() -> None:
    pass


def _prepare(ctx: click.Context, name: str, url: str) -> tuple[str, str]:
    _check_free(ctx, name)
    if "://" not in url:
        url = str(Path(url).expanduser().absolute())
    commands = load_index(url)  # refused now rather than when first used
    return url, ", ".join(sorted(commands)) or "no commands"


def _check_free(ctx: click.Context, name: str) -> None:
    """``Usage`` if ``infrakit-local NAME`` is a built-in or plugin command: the playbook could never run."""
    if name.startswith(_PLUGIN_PREFIXES):
        raise render.Usage(
            f"NAME {name!r}: names starting with {' or '.join(_PLUGIN_PREFIXES)} are the plugins' commands "
            "(`infrakit-local instance-file ...`); choose another name"
        )
    root = ctx.find_root()
    taken = root.command.get_command(root, name) if isinstance(root.command, click.Group) else None
    if taken is not None and not isinstance(taken, _PlaybookGroup):
        raise render.Usage(
            f"NAME {name!r}: `infrakit-local {name}` is a built-in command, so a playbook of that name could "
            "never run; choose another name"
        )


names.add_commands(
    playbook,
    BOOKS,
    prepare=_prepare,
    listed=lambda books: ([{"Name": n, "URL": u} for n, u in books], ["NAME", "URL"], [[n, u] for n, u in books]),
    helps={
        "add": "Add playbook NAME: a directory, file:// or http(s):// URL with an index.yaml.",
        "ls": "List the playbooks: NAME and URL.",
        "rm": "Remove playbook NAME (its source is left as it is).",
    },
)


def _options(function: Callable[..., Any]) -> Callable[..., Any]:
    """What a playbook's command takes, as ``playbook run`` or ``infrakit-local NAME COMMAND``."""
    function = grants.options(function)
    function = click.option("--pretend", is_flag=True, help="Say what committing would do; change nothing.")(function)
    function = click.option("--print", "show", is_flag=True, help="Print the rendered Groups; commit nothing.")(
        function
    )
    variable = click.option(
        "--var", "variables", multiple=True, metavar="NAME=VALUE", help="A template variable (repeatable)."
    )
    return variable(function)


@playbook.command("run")
@click.argument("name")
@click.argument("command")
@_options
@click.pass_obj
def run_command(obj: Context, /, name: str, command: str, **given: Any) -> None:
    """Run COMMAND of playbook NAME (as `infrakit-local NAME COMMAND`)."""
    with render.errors():
        books = BOOKS.load(obj.home)
        if name not in books:
            raise render.Usage(f"NAME: no playbook {name!r}; `infrakit-local playbook ls` lists them")
        _run(obj, books[name], name=name, command=command, **given)


def _run(
    obj: Context,
    url: str,
    *,
    name: str,
    command: str,
    variables: tuple[str, ...],
    show: bool,
    pretend: bool,
    reach: grants.Grants,
) -> None:
    from infrakit.cli import metadata

    commands = load_index(url)
    if command not in commands:
        known = ", ".join(sorted(commands)) or "none"
        raise render.Usage(f"COMMAND: playbook {name!r} has no command {command!r} (it has: {known})")
    source = commands[command]
    text = rendering.render(
        source,
        variables=rendering.parse_vars(variables),
        metadata=metadata.reader(obj),
        grants=reach,
        within=rendering.origin(index_url(url)),  # a playbook from a URL is remote, its templates too
    )
    if show:
        click.echo(text, nl=not text.endswith("\n"))
        return
    _commit(obj, source, text, pretend=pretend)


def _commit(obj: Context, source: str, text: str, *, pretend: bool) -> None:
    """Commit every Group the rendered text holds, all validated first (as ``commit``)."""
    from infrakit.core import specs
    from infrakit.local import documents

    try:
        groups = documents.load_groups(source, text=text.encode("utf-8"))
    except specs.SpecError as error:
        raise render.Usage(f"{source} (rendered): {error}") from None
    from infrakit.cli import groups as commands

    commands.commit_all(obj, groups, pretend=pretend)


class _PlaybookGroup(click.Group):
    """``infrakit-local NAME ...``: the playbook's commands, read from its index only when used."""

    def __init__(self, name: str, url: str) -> None:
        super().__init__(name=name, help=f"Playbook {name} ({url}).")
        self.url = url
        self._loaded: dict[str, str] | None = None

    def _index(self) -> dict[str, str]:
        if self._loaded is None:
            with render.errors():
                self._loaded = load_index(self.url)
        return self._loaded

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self._index())

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self._index():
            return None
        url, book = self.url, self.name or ""

        @click.command(cmd_name, help=f"Render {self._index()[cmd_name]} and commit the Groups it renders.")
        @_options
        @click.pass_obj
        def command(obj: Context, /, **given: Any) -> None:
            with render.errors():
                _run(obj, url, name=book, command=cmd_name, **given)

        return command


def playbook_group(name: str, url: str) -> click.Group:
    return _PlaybookGroup(name, url)


def installed(home: Path) -> list[click.Group]:
    """One command group per playbook added (nothing fetched until one is used); none if the file is damaged."""
    try:
        books = BOOKS.load(home)
    except render.Usage:
        return []  # `playbook ls` names the damage; the rest of the CLI keeps working
    return [playbook_group(name, url) for name, url in sorted(books.items())]
