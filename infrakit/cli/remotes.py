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
from typing import Any, Final

import click

from infrakit.cli import names, render

__all__ = ["HOSTS", "HOST_ENV", "Target", "hosts_file", "parse", "remote", "selected"]

HOST_ENV: Final = "INFRAKIT_HOST"
HOSTS: Final = names.Names(what="remote", file="hosts")
"""The remotes, name -> URL."""


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
            raise render.Usage(f"URL {url!r}: a plugins directory is unix:///absolute/path")
        return Target(name=name, url=text, kind="unix", plugins_dir=Path(parsed.path))
    if parsed.scheme == "tcp":
        try:
            port = parsed.port
        except ValueError:
            port = None
        if not parsed.hostname or port is None or parsed.path.strip("/"):
            raise render.Usage(f"URL {url!r}: a group daemon is tcp://host:port (e.g. tcp://127.0.0.1:24864)")
        host = f"[{parsed.hostname}]" if ":" in parsed.hostname else parsed.hostname
        return Target(name=name, url=text, kind="tcp", address=f"tcp://{host}:{port}")
    if parsed.scheme == "kube":
        context = urllib.parse.unquote(parsed.netloc)
        namespace = parsed.path.strip("/") or None
        if not context or (namespace is not None and "/" in namespace):
            raise render.Usage(f"URL {url!r}: a cluster is kube://context or kube://context/namespace")
        return Target(name=name, url=text, kind="kube", context=context, namespace=namespace)
    kinds = "unix:///path (a plugins directory), tcp://host:port (a group daemon) or kube://context[/namespace]"
    raise render.Usage(f"URL {url!r}: a remote is {kinds}")


def hosts_file(home: Path) -> Path:
    return HOSTS.path(home)


def selected(home: Path, *, environ: Mapping[str, str] | None = None) -> Target | None:
    """The remote ``$INFRAKIT_HOST`` names (``None`` when unset: this machine).

    ``Usage`` if there is no such remote, or it is a plugins directory that does not exist.
    """
    name = (os.environ if environ is None else environ).get(HOST_ENV, "").strip()
    if not name:
        return None
    hosts = HOSTS.load(home)
    if name not in hosts:
        raise render.Usage(
            f"{HOST_ENV}={name}: no such remote in {hosts_file(home)}; "
            "`infrakit-local remote ls` lists them, `remote add NAME URL` adds one"
        )
    target = parse(name, hosts[name])
    if target.plugins_dir is not None and not target.plugins_dir.is_dir():
        # Never this machine instead: the commands would commit and destroy here, not there.
        raise render.Usage(
            f"{target.selection}: {target.plugins_dir} does not exist; start the remote's daemons with their "
            f"plugins directory there, or {target.fix}"
        )
    return target


@click.group("remote", help="Manage remotes (selected with INFRAKIT_HOST=NAME).")
def remote() -> None:
    pass


def _prepare(ctx: click.Context, name: str, url: str) -> tuple[str, str]:
    target = parse(name, url)
    return target.url, target.url


def _listed(hosts: list[tuple[str, str]]) -> tuple[list[dict[str, Any]], list[str], list[list[str]]]:
    chosen = os.environ.get(HOST_ENV, "").strip()
    rows = [[f"{name}{' *' if name == chosen else ''}", url] for name, url in hosts]
    data = [{"Host": name, "URL": url, "Selected": name == chosen} for name, url in hosts]
    return data, ["HOST", "URL LIST"], rows


names.add_commands(
    remote,
    HOSTS,
    prepare=_prepare,
    listed=_listed,
    helps={
        "add": "Add remote NAME at URL: unix:///path, tcp://host:port or kube://context[/namespace].",
        "ls": "List the remotes: HOST and URL LIST (the one INFRAKIT_HOST selects is marked *).",
        "rm": "Remove remote NAME.",
    },
)
