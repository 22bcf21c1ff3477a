"""``infrakit-local remote add|ls|rm``: named targets for the CLI, selected by ``INFRAKIT_HOST``.

As InfraKit's remotes: a YAML map from name to URL in ``$INFRAKIT_HOME/hosts``
(``$INFRAKIT_HOSTS_FILE`` overrides it, as v0.5); ``INFRAKIT_HOST=NAME`` makes every
command work on that remote, ``--context`` still wins.  A remote is one of:

* ``unix:///path``: a plugins directory (the daemons listening there);
* ``tcp://host:port``: a group daemon listening on TCP (``infrakit-group-default
  --listen``; a bare ``host:port`` means that too, as InfraKit's ``localhost:24864``);
* ``kube://context[/namespace]``: a cluster, as ``--context context -n namespace``.

:func:`selected` is what a command (or the CLI's context) asks to learn where to work.
A remote selected is where the command works, or it fails naming the remote: never this
machine instead (a missing directory, no group daemon there, an unreachable address,
an unknown kube context).  ``remote add`` of an existing NAME needs ``--force``; the
hosts file is rewritten under a lock, atomically.
"""

from __future__ import annotations

import dataclasses
import os
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Final

import click

from infrakit.commands import _common
from infrakit.commands._common import Context

__all__ = ["HOSTS_FILE_ENV", "HOST_ENV", "Target", "hosts_file", "load", "parse", "remote", "save", "selected"]

HOST_ENV: Final = "INFRAKIT_HOST"
HOSTS_FILE_ENV: Final = "INFRAKIT_HOSTS_FILE"
_KINDS: Final = "unix:///path (a plugins directory), tcp://host:port (a group daemon) or kube://context[/namespace]"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Target:
    """Where a remote points; exactly the fields of its kind are set."""

    name: str
    url: str
    kind: str  # "unix" | "tcp" | "kube"
    plugins_dir: Path | None = None
    address: str | None = None  # tcp://host:port of the group daemon
    context: str | None = None
    namespace: str | None = None

    @property
    def selection(self) -> str:
        """How errors name it: ``INFRAKIT_HOST=NAME (remote 'NAME', URL)``."""
        return f"{HOST_ENV}={self.name} (remote {self.name!r}, {self.url})"

    @property
    def fix(self) -> str:
        return f"point it elsewhere (`infrakit-local remote add {self.name} URL --force`) or unset {HOST_ENV}"


def parse(name: str, url: str) -> Target:
    """A remote from its URL; ``Usage`` naming the URL and the accepted forms."""
    text = url.strip()
    if "://" not in text and text.rpartition(":")[2].isdigit():
        text = f"tcp://{text}"  # InfraKit's bare host:port
    parsed = urllib.parse.urlsplit(text)
    if parsed.scheme == "unix":
        if parsed.netloc or not parsed.path.startswith("/"):
            raise _common.Usage(f"URL {url!r}: a plugins directory is unix:///absolute/path")
        return Target(name=name, url=text, kind="unix", plugins_dir=Path(parsed.path))
    if parsed.scheme == "tcp":
        try:
            port = parsed.port
        except ValueError:
            port = None
        if not parsed.hostname or port is None or parsed.path.strip("/"):
            raise _common.Usage(f"URL {url!r}: a group daemon is tcp://host:port (e.g. tcp://127.0.0.1:24864)")
        host = f"[{parsed.hostname}]" if ":" in parsed.hostname else parsed.hostname
        return Target(name=name, url=text, kind="tcp", address=f"tcp://{host}:{port}")
    if parsed.scheme == "kube":
        context = urllib.parse.unquote(parsed.netloc)
        namespace = parsed.path.strip("/") or None
        if not context or (namespace is not None and "/" in namespace):
            raise _common.Usage(f"URL {url!r}: a cluster is kube://context or kube://context/namespace")
        return Target(name=name, url=text, kind="kube", context=context, namespace=namespace)
    raise _common.Usage(f"URL {url!r}: a remote is {_KINDS}")


def hosts_file(home: Path) -> Path:
    explicit = os.environ.get(HOSTS_FILE_ENV)
    return Path(explicit).expanduser() if explicit else home / "hosts"


def load(home: Path) -> dict[str, str]:
    """The remotes, name -> URL (none if the file is absent); ``Usage`` if it is damaged."""
    return _common.load_names(hosts_file(home), what="remote")


def save(home: Path, hosts: Mapping[str, str]) -> None:
    _common.save_names(hosts_file(home), hosts)


def selected(home: Path, *, environ: Mapping[str, str] | None = None) -> Target | None:
    """The remote ``$INFRAKIT_HOST`` names (``None`` when unset: this machine).

    ``Usage`` if there is no such remote, or it is a plugins directory that does not exist.
    """
    name = (os.environ if environ is None else environ).get(HOST_ENV, "").strip()
    if not name:
        return None
    hosts = load(home)
    if name not in hosts:
        raise _common.Usage(
            f"{HOST_ENV}={name}: no such remote in {hosts_file(home)}; "
            "`infrakit-local remote ls` lists them, `remote add NAME URL` adds one"
        )
    target = parse(name, hosts[name])
    if target.plugins_dir is not None and not target.plugins_dir.is_dir():
        # Never this machine instead: the commands would commit and destroy here, not there.
        raise _common.Usage(
            f"{target.selection}: {target.plugins_dir} does not exist; start the remote's daemons with their "
            f"plugins directory there, or {target.fix}"
        )
    return target


@click.group("remote", help="Manage remotes (selected with INFRAKIT_HOST=NAME).")
def remote() -> None:
    pass


@remote.command("add")
@click.argument("name")
@click.argument("url")
@click.option("--force", is_flag=True, help="Replace remote NAME if it points elsewhere.")
@click.pass_obj
def add(obj: Context, name: str, url: str, force: bool) -> None:
    """Add remote NAME at URL: unix:///path, tcp://host:port or kube://context[/namespace]."""
    with _common.errors():
        _common.check_name(name)
        target = parse(name, url)
        path = hosts_file(obj.home)
        with _common.locked(path):
            hosts = load(obj.home)
            known = hosts.get(name)
            if known is not None and known != target.url and not force:
                raise _common.Usage(
                    f"NAME: remote {name!r} exists ({known}); `remote add {name} URL --force` replaces it"
                )
            hosts[name] = target.url
            if known != target.url:
                save(obj.home, hosts)
        verb = "Replaced" if known is not None and known != target.url else "Added"
        click.echo(f"{verb} remote {name}: {target.url}")


@remote.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Print rows only, no header.")
@click.option("-o", "--output", type=click.Choice(["table", "json", "yaml"]), default="table", show_default=True)
@click.pass_obj
def list_remotes(obj: Context, quiet: bool, output: str) -> None:
    """List the remotes: HOST and URL LIST (the one INFRAKIT_HOST selects is marked *)."""
    with _common.errors():
        hosts = load(obj.home)
        chosen = os.environ.get(HOST_ENV, "").strip()
        rows = [[f"{name}{' *' if name == chosen else ''}", url] for name, url in sorted(hosts.items())]
        data = [{"Host": name, "URL": url, "Selected": name == chosen} for name, url in sorted(hosts.items())]
        _common.emit(output, data, headers=["HOST", "URL LIST"], rows=rows, quiet=quiet)


@remote.command("rm")
@click.argument("name")
@click.pass_obj
def remove(obj: Context, name: str) -> None:
    """Remove remote NAME."""
    with _common.errors():
        with _common.locked(hosts_file(obj.home)):
            hosts = load(obj.home)
            if name not in hosts:
                raise _common.Usage(f"NAME: no remote {name!r}; `infrakit-local remote ls` lists them")
            del hosts[name]
            save(obj.home, hosts)
        click.echo(f"Removed remote {name}")
