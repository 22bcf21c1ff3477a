"""Named URLs kept in a file of the home: the remotes (``hosts``) and the playbooks, and their ``add``, ``ls``, ``rm``.

As InfraKit's: a YAML map from name to URL, in ``$INFRAKIT_HOME/<file>`` unless a variable
names another file.  One implementation for both: :class:`Names` reads and rewrites the
file (under a lock, atomically and durably, sorted by name), and :func:`add_commands`
gives a command group its ``add NAME URL [--force]``, ``ls`` and ``rm NAME``, which say
the same things in the same words for both, but for what each calls its entries.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from infrakit.cli import render

if TYPE_CHECKING:
    from infrakit.cli.context import Context

__all__ = ["Names", "add_commands", "check_name"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Names:
    """One file of named URLs: ``what`` its entries are called, ``file`` its name in the home.

    ``$INFRAKIT_<FILE>_FILE`` names another file (``INFRAKIT_HOSTS_FILE``, as v0.5).
    """

    what: str
    file: str

    @property
    def env(self) -> str:
        return f"INFRAKIT_{self.file.upper()}_FILE"

    def path(self, home: Path) -> Path:
        explicit = os.environ.get(self.env)
        return Path(explicit).expanduser() if explicit else home / self.file

    def load(self, home: Path) -> dict[str, str]:
        """Name -> URL (none if the file is absent); ``Usage`` naming the file if it is damaged."""
        import yaml

        path = self.path(home)
        try:
            found = yaml.safe_load(path.read_text("utf-8")) or {}
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
            raise render.Usage(f"{path}: cannot be read ({' '.join(str(error).split())}); fix or remove it") from None
        if not isinstance(found, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in found.items()
        ):
            raise render.Usage(f"{path}: expected a map of {self.what} names to URLs; fix or remove it")
        return dict(found)

    def save(self, home: Path, names: Mapping[str, str]) -> None:
        """Write the file atomically and durably, sorted by name (hold :meth:`locked` around the read before)."""
        import yaml

        from infrakit import files

        path = self.path(home)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = yaml.safe_dump(dict(sorted(names.items())), default_flow_style=False) if names else "{}\n"
        files.atomic_write(path, text.encode("utf-8"), durable=True)

    @contextmanager
    def locked(self, home: Path) -> Iterator[None]:
        """Hold the file's exclusive lock (``.NAME.lock`` beside it) for a read-modify-write.

        Concurrent ``add`` processes each read the file, change it and write it back;
        without the lock the last writer dropped the others' entries.  The lock file stays
        (removing it would race with a waiter that opened it); ``flock`` is released by the
        kernel when the process dies, so a killed writer never wedges the next.
        """
        import fcntl
        import glob

        path = self.path(home)
        path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
        fd = os.open(path.with_name(f".{path.name}.lock"), flags, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):  # a writer killed before its rename
                stale.unlink(missing_ok=True)
            yield
        finally:
            os.close(fd)  # releases the lock

    def add(self, home: Path, name: str, url: str, *, force: bool) -> str:
        """Record ``name`` at ``url``; ``Added``, ``Replaced`` (with ``force`` only), or ``Usage``."""
        with self.locked(home):
            names = self.load(home)
            known = names.get(name)
            if known is not None and known != url and not force:
                raise render.Usage(
                    f"NAME: {self.what} {name!r} exists ({known}); `{self.what} add {name} URL --force` replaces it"
                )
            names[name] = url
            if known != url:
                self.save(home, names)
        return "Replaced" if known is not None and known != url else "Added"

    def remove(self, home: Path, name: str) -> None:
        with self.locked(home):
            names = self.load(home)
            if name not in names:
                raise render.Usage(f"NAME: no {self.what} {name!r}; `infrakit-local {self.what} ls` lists them")
            del names[name]
            self.save(home, names)


def check_name(name: str) -> None:
    """A remote's or playbook's NAME is a DNS-1123 label, as a group's; ``Usage`` if not."""
    from infrakit.core import specs

    try:
        specs.validate_name(name, field="NAME")
    except specs.SpecError as error:
        raise render.Usage(str(error)) from None


Prepared = Callable[[click.Context, str, str], tuple[str, str]]
"""``(context, NAME, URL) -> (the URL recorded, what `add` says of it)``; ``Usage`` to refuse it."""

Listed = Callable[[list[tuple[str, str]]], tuple[list[dict[str, Any]], list[str], list[list[str]]]]
"""The ``(name, URL)`` pairs, sorted -> ``ls``'s data (for ``-o``), table headers and rows."""


def add_commands(
    group: click.Group, names: Names, *, prepare: Prepared, listed: Listed, helps: Mapping[str, str]
) -> None:
    """``add``, ``ls`` and ``rm`` on ``group``, over ``names``; ``helps`` gives each command's help."""
    what = names.what

    @group.command("add", help=helps["add"])
    @click.argument("name")
    @click.argument("url")
    @click.option("--force", is_flag=True, help=f"Replace {what} NAME if it points elsewhere.")
    @click.pass_context
    def add(ctx: click.Context, name: str, url: str, force: bool) -> None:
        obj: Context = ctx.obj
        with render.errors():
            check_name(name)
            recorded, said = prepare(ctx, name, url)
            verb = names.add(obj.home, name, recorded, force=force)
            click.echo(f"{verb} {what} {name}: {said}")

    @group.command("ls", help=helps["ls"])
    @render.quiet
    @render.output
    @click.pass_obj
    def list_names(obj: Context, quiet: bool, output: str) -> None:
        with render.errors():
            data, headers, rows = listed(sorted(names.load(obj.home).items()))
            render.emit(output, data, headers=headers, rows=rows, quiet=quiet)

    @group.command("rm", help=helps["rm"])
    @click.argument("name")
    @click.pass_obj
    def remove(obj: Context, name: str) -> None:
        with render.errors():
            names.remove(obj.home, name)
            click.echo(f"Removed {what} {name}")
