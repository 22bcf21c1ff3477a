"""``infrakit-local playbook add|ls|rm|run`` and the commands playbooks define.

A playbook is a directory or URL holding an index, ``index.yaml`` (or a URL/path naming
the index file itself: InfraKit's ``index.ikm`` ``name : path`` lines are YAML too),
that maps command names to templates, relative to the index.  ``playbook add NAME URL``
records it in ``$INFRAKIT_HOME/playbooks`` (``$INFRAKIT_PLAYBOOKS_FILE`` overrides, as
v0.5); ``infrakit-local NAME COMMAND --var ...`` (or ``playbook run NAME COMMAND``)
renders the command's template (:mod:`infrakit.commands.rendering`) and commits the
Groups it renders, all valid before any is committed; ``--print`` prints them instead.
A playbook never runs a shell command: templates render text, and the only action is
a commit.  :func:`installed` gives the CLI one lazily loaded command group per playbook.

A playbook added from a URL is remote: its index may name templates at its own origin
only (or files of this machine, read only with ``--allow-local``), and its templates
reach what a remote template may (:mod:`infrakit.commands.grants`).  A NAME is never a
built-in or plugin command's (it could never run), and an existing NAME is replaced
only with ``--force``; the playbooks file is rewritten under a lock, atomically.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import click

from infrakit.commands import _common, grants, rendering
from infrakit.commands._common import Context

__all__ = ["PLAYBOOKS_FILE_ENV", "index_url", "installed", "load", "load_index", "playbook", "playbook_group"]

PLAYBOOKS_FILE_ENV: Final = "INFRAKIT_PLAYBOOKS_FILE"
INDEX: Final = "index.yaml"
_INDEX_SUFFIXES: Final = (".yaml", ".yml", ".ikm")
_COMMAND: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")  # typed as `infrakit-local NAME COMMAND`
_PLUGIN_PREFIXES: Final = ("instance-", "flavor-")  # the plugins' command groups (`infrakit-local instance-file ...`)


def playbooks_file(home: Path) -> Path:
    explicit = os.environ.get(PLAYBOOKS_FILE_ENV)
    return Path(explicit).expanduser() if explicit else home / "playbooks"


def load(home: Path) -> dict[str, str]:
    """The playbooks, name -> URL; ``Usage`` naming the file if it is damaged."""
    return _common.load_names(playbooks_file(home), what="playbook")


def save(home: Path, books: Mapping[str, str]) -> None:
    _common.save_names(playbooks_file(home), books)


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
        raise _common.Usage(f"{where}: not a playbook index ({error})") from None
    index: Any = found[0] if len(found) == 1 else ({} if not found else None)
    if not isinstance(index, Mapping) or not all(isinstance(v, str) for v in index.values()):
        raise _common.Usage(f"{where}: a playbook index maps command names to templates (e.g. web: web.yaml.j2)")
    home = rendering.origin(where)
    commands = {}
    for name, target in index.items():
        if not _COMMAND.fullmatch(name):
            raise _common.Usage(
                f"{where}: command {name!r} cannot be typed as `infrakit-local NAME COMMAND`; "
                "a command is a word of letters, digits, '-', '_' or '.'"
            )
        resolved = rendering.join(_base(where), target)
        reached = rendering.origin(resolved)
        if home is not None and reached is not None and reached != home:
            raise _common.Usage(
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


@playbook.command("add")
@click.argument("name")
@click.argument("url")
@click.option("--force", is_flag=True, help="Replace playbook NAME if it points elsewhere.")
@click.pass_context
def add(ctx: click.Context, name: str, url: str, force: bool) -> None:
    """Add playbook NAME: a directory, file:// or http(s):// URL with an index.yaml."""
    obj: Context = ctx.obj
    with _common.errors():
        _common.check_name(name)
        _check_free(ctx, name)
        if "://" not in url:
            url = str(Path(url).expanduser().absolute())
        commands = load_index(url)  # refused now rather than when first used
        path = playbooks_file(obj.home)
        with _common.locked(path):
            books = load(obj.home)
            known = books.get(name)
            if known is not None and known != url and not force:
                raise _common.Usage(
                    f"NAME: playbook {name!r} exists ({known}); `playbook add {name} URL --force` replaces it"
                )
            books[name] = url
            if known != url:
                save(obj.home, books)
        verb = "Replaced" if known is not None and known != url else "Added"
        click.echo(f"{verb} playbook {name}: {', '.join(sorted(commands)) or 'no commands'}")


def _check_free(ctx: click.Context, name: str) -> None:
    """``Usage`` if ``infrakit-local NAME`` is a built-in or plugin command: the playbook could never run."""
    if name.startswith(_PLUGIN_PREFIXES):
        raise _common.Usage(
            f"NAME {name!r}: names starting with {' or '.join(_PLUGIN_PREFIXES)} are the plugins' commands "
            "(`infrakit-local instance-file ...`); choose another name"
        )
    root = ctx.find_root()
    taken = root.command.list_commands(root) if isinstance(root.command, click.Group) else []
    books = root.command.commands if isinstance(root.command, click.Group) else {}
    if name in taken and not isinstance(books.get(name), _PlaybookGroup):
        raise _common.Usage(
            f"NAME {name!r}: `infrakit-local {name}` is a built-in command, so a playbook of that name could "
            "never run; choose another name"
        )


@playbook.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Print rows only, no header.")
@click.option("-o", "--output", type=click.Choice(["table", "json", "yaml"]), default="table", show_default=True)
@click.pass_obj
def list_playbooks(obj: Context, quiet: bool, output: str) -> None:
    """List the playbooks: NAME and URL."""
    with _common.errors():
        books = sorted(load(obj.home).items())
        data = [{"Name": n, "URL": u} for n, u in books]
        _common.emit(output, data, headers=["NAME", "URL"], rows=[[n, u] for n, u in books], quiet=quiet)


@playbook.command("rm")
@click.argument("name")
@click.pass_obj
def remove(obj: Context, name: str) -> None:
    """Remove playbook NAME (its source is left as it is)."""
    with _common.errors():
        with _common.locked(playbooks_file(obj.home)):
            books = load(obj.home)
            if name not in books:
                raise _common.Usage(f"NAME: no playbook {name!r}; `infrakit-local playbook ls` lists them")
            del books[name]
            save(obj.home, books)
        click.echo(f"Removed playbook {name}")


_VAR = click.option("--var", "variables", multiple=True, metavar="NAME=VALUE", help="A template variable (repeatable).")
_PRINT = click.option("--print", "show", is_flag=True, help="Print the rendered Groups; commit nothing.")
_PRETEND = click.option("--pretend", is_flag=True, help="Say what committing would do; change nothing.")


@playbook.command("run")
@click.argument("name")
@click.argument("command")
@_VAR
@_PRINT
@_PRETEND
@grants.options
@click.pass_obj
def run_command(
    obj: Context,
    /,
    name: str,
    command: str,
    variables: tuple[str, ...],
    show: bool,
    pretend: bool,
    allow_local: bool,
    allow_env: tuple[str, ...],
    allow_metadata: bool,
) -> None:
    """Run COMMAND of playbook NAME (as `infrakit-local NAME COMMAND`)."""
    with _common.errors():
        books = load(obj.home)
        if name not in books:
            raise _common.Usage(f"NAME: no playbook {name!r}; `infrakit-local playbook ls` lists them")
        given = grants.Grants.given(allow_local=allow_local, allow_env=allow_env, allow_metadata=allow_metadata)
        _run(obj, books[name], name=name, command=command, variables=variables, show=show, pretend=pretend, given=given)


def _run(
    obj: Context,
    url: str,
    *,
    name: str,
    command: str,
    variables: tuple[str, ...],
    show: bool,
    pretend: bool,
    given: grants.Grants,
) -> None:
    from infrakit.commands import metadata

    commands = load_index(url)
    if command not in commands:
        known = ", ".join(sorted(commands)) or "none"
        raise _common.Usage(f"COMMAND: playbook {name!r} has no command {command!r} (it has: {known})")
    source = commands[command]
    text = rendering.render(
        source,
        variables=rendering.parse_vars(variables),
        metadata=metadata.reader(obj),
        grants=given,
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
        raise _common.Usage(f"{source} (rendered): {error}") from None
    here = _common.where(obj)
    if here.kube_context is not None:
        cluster = here.cluster()
        for spec in groups:
            click.echo(cluster.commit(spec, pretend=pretend))
        return
    controller = obj.controller()
    prepared = controller.prepare_all(groups, options=obj.plugin_options, explicit=obj.dir_given)
    for spec in groups:
        result = controller.commit(
            spec,
            prepared=prepared.get(spec.name),
            pretend=pretend,
            options=obj.plugin_options(spec.instance.plugin),
            explicit=obj.dir_given,
        )
        verb = "Committing {} would involve" if pretend else "Committed {}"
        click.echo(f"{verb.format(spec.name)}: {result.plan_text}")


class _PlaybookGroup(click.Group):
    """``infrakit-local NAME ...``: the playbook's commands, read from its index only when used."""

    def __init__(self, name: str, url: str) -> None:
        super().__init__(name=name, help=f"Playbook {name} ({url}).")
        self.url = url
        self._loaded: dict[str, str] | None = None

    def _index(self) -> dict[str, str]:
        if self._loaded is None:
            with _common.errors():
                self._loaded = load_index(self.url)
        return self._loaded

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self._index())

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self._index():
            return None
        url, book = self.url, self.name or ""

        @click.command(cmd_name, help=f"Render {self._index()[cmd_name]} and commit the Groups it renders.")
        @_VAR
        @_PRINT
        @_PRETEND
        @grants.options
        @click.pass_obj
        def command(
            obj: Context,
            /,
            variables: tuple[str, ...],
            show: bool,
            pretend: bool,
            allow_local: bool,
            allow_env: tuple[str, ...],
            allow_metadata: bool,
        ) -> None:
            given = grants.Grants.given(allow_local=allow_local, allow_env=allow_env, allow_metadata=allow_metadata)
            with _common.errors():
                _run(
                    obj, url, name=book, command=cmd_name, variables=variables, show=show, pretend=pretend, given=given
                )

        return command


def playbook_group(name: str, url: str) -> click.Group:
    return _PlaybookGroup(name, url)


def installed(home: Path) -> list[click.Group]:
    """One command group per playbook added (nothing fetched until one is used); none if the file is damaged."""
    try:
        books = load(home)
    except _common.Usage:
        return []  # `playbook ls` names the damage; the rest of the CLI keeps working
    return [playbook_group(name, url) for name, url in sorted(books.items())]
