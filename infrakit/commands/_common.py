"""What the commands of this package share: errors as one line and an exit code, output.

Exit codes as ``infrakit.cli``: 2 bad input (the message names the field and the fix),
1 a runtime failure; never a traceback (``--log 5`` logs it).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

import click

if TYPE_CHECKING:
    from infrakit.cluster import remote
    from infrakit.commands import groups, remotes
    from infrakit.local import controller

__all__ = [
    "EXIT_RUNTIME",
    "EXIT_USAGE",
    "Context",
    "Failure",
    "Usage",
    "Where",
    "check_name",
    "dump",
    "emit",
    "errors",
    "fail",
    "load_names",
    "locked",
    "reachable",
    "save_names",
    "where",
]


class Context(Protocol):
    """What these commands need of the CLI's context object (``infrakit.cli.Context``).

    A protocol, not an import: the CLI registers these commands, so they sit below it.
    """

    @property
    def home(self) -> Path: ...

    @property
    def plugins_dir(self) -> Path: ...

    @property
    def kube_context(self) -> str | None: ...

    @property
    def namespace(self) -> str | None: ...

    @property
    def dir_given(self) -> bool: ...

    @property
    def selected(self) -> remotes.Target | None:
        """The remote ``INFRAKIT_HOST`` selected (``--context`` given instead: ``None``)."""
        ...

    def plugin_options(self, name: str) -> dict[str, Any]: ...

    def remote(self) -> remote.Remote: ...

    def controller(self) -> controller.Controller: ...

    def daemon(self) -> groups.GroupDaemon: ...


EXIT_RUNTIME = 1
EXIT_USAGE = 2

log = logging.getLogger("infrakit")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Where:
    """Where a command works: this machine's plugins directory, a remote's, a TCP group daemon, a cluster."""

    plugins_dir: Path
    kube_context: str | None = None
    namespace: str | None = None
    group_address: str | None = None  # tcp://host:port of a group daemon (a tcp:// remote)
    selected: remotes.Target | None = None  # the remote INFRAKIT_HOST selects: never fall back to this machine

    def cluster(self) -> remote.Remote:
        from infrakit.cluster import kubeapi, remote

        assert self.kube_context is not None
        try:
            return remote.Remote(context=self.kube_context, namespace=self.namespace)
        except kubeapi.ConfigException as error:
            if self.selected is None:
                raise
            raise Usage(f"{self.selected.selection}: kubeconfig: {error}; {self.selected.fix}") from None

    def this_machine(self, what: str) -> None:
        """``Failure`` unless this is this machine: ``what`` (its store, its events) is never a remote's stand-in."""
        if self.selected is not None:
            raise Failure(
                f"{self.selected.selection}: no group daemon listens in {self.plugins_dir} to serve {what}; start "
                f"infrakit-group-default with that plugins directory, or {self.selected.fix}"
            )

    def address(self, plugin: str) -> str | None:
        """The address of plugin daemon ``plugin`` here, if one is advertised."""
        if plugin == "group" and self.group_address is not None:
            return self.group_address
        from infrakit.rpc import discovery

        found = discovery.find(plugin, directory=self.plugins_dir)
        return found.address if found is not None else None


def where(obj: Context) -> Where:
    """``--context`` first, then the remote ``$INFRAKIT_HOST`` names, else this machine."""
    if obj.kube_context is not None:  # --context, or the kube:// remote the CLI turned into one
        return Where(
            plugins_dir=obj.plugins_dir, kube_context=obj.kube_context, namespace=obj.namespace, selected=obj.selected
        )
    from infrakit.commands import remotes

    target = remotes.selected(obj.home)
    if target is None:
        return Where(plugins_dir=obj.plugins_dir)
    if target.kind == "unix":
        assert target.plugins_dir is not None
        return Where(plugins_dir=target.plugins_dir, selected=target)
    if target.kind == "tcp":
        assert target.address is not None
        reachable(target)
        return Where(plugins_dir=obj.plugins_dir, group_address=target.address, selected=target)
    return Where(
        plugins_dir=obj.plugins_dir,
        kube_context=target.context,
        namespace=obj.namespace or target.namespace,
        selected=target,
    )


def reachable(target: remotes.Target) -> None:
    """``Failure`` naming the remote if its group daemon's address takes no connection."""
    import socket
    import urllib.parse

    parts = urllib.parse.urlsplit(target.address or "")
    try:
        with socket.create_connection((parts.hostname or "", parts.port or 0), timeout=5.0):
            pass
    except OSError as error:
        raise Failure(
            f"{target.selection}: cannot be reached ({error.strerror or error}); start its group daemon "
            f"(infrakit-group-default --listen), or {target.fix}"
        ) from None


class Usage(Exception):
    """Bad input: the message names what is wrong and how to fix it (exit 2)."""


def load_names(path: Path, *, what: str) -> dict[str, str]:
    """A file mapping names to URLs (remotes, playbooks): none if absent; ``Usage`` naming it if damaged."""
    import yaml

    try:
        found = yaml.safe_load(path.read_text("utf-8")) or {}
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise Usage(f"{path}: cannot be read ({' '.join(str(error).split())}); fix or remove it") from None
    if not isinstance(found, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in found.items()):
        raise Usage(f"{path}: expected a map of {what} names to URLs; fix or remove it")
    return dict(found)


def save_names(path: Path, names: Mapping[str, str]) -> None:
    """Write such a file atomically and durably, sorted by name (hold :func:`locked` around the read before)."""
    import yaml

    from infrakit import files

    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(dict(sorted(names.items())), default_flow_style=False) if names else "{}\n"
    files.atomic_write(path, text.encode("utf-8"), durable=True)


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold the exclusive lock of the file at ``path`` (``.NAME.lock`` beside it) for a read-modify-write.

    Concurrent ``remote add``/``playbook add`` processes each read the file, change it and
    write it back; without the lock the last writer dropped the others' entries.  The
    lock file stays (removing it would race with a waiter that opened it); ``flock`` is
    released by the kernel when the process dies, so a killed writer never wedges the next.
    """
    import fcntl
    import glob
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):  # a writer killed before its rename
            stale.unlink(missing_ok=True)
        yield
    finally:
        os.close(fd)  # releases the lock


def check_name(name: str) -> None:
    """A remote's or playbook's NAME is a DNS-1123 label, as a group's; ``Usage`` if not."""
    from infrakit.core import specs

    try:
        specs.validate_name(name, field="NAME")
    except specs.SpecError as error:
        raise Usage(str(error)) from None


class Failure(Exception):
    """Something did not work (a daemon not running, a fetch that failed): exit 1."""


def fail(message: str, code: int) -> NoReturn:
    click.echo(f"Error: {message}", err=True)
    raise SystemExit(code)


@contextmanager
def errors() -> Iterator[None]:
    """Map every failure to one line on stderr and an exit code."""
    from infrakit.core import specs
    from infrakit.plugins import spi

    try:
        yield
    except Usage as error:
        fail(str(error), EXIT_USAGE)
    except specs.SpecError as error:
        fail(str(error), EXIT_USAGE)
    except (Failure, spi.PluginError) as error:
        fail(str(error), EXIT_RUNTIME)
    except OSError as error:
        fail(f"{error.filename or ''}: {error.strerror or error}".lstrip(": "), EXIT_RUNTIME)
    except Exception as error:
        kubeapi = sys.modules.get("infrakit.cluster.kubeapi")
        remote = sys.modules.get("infrakit.cluster.remote")
        if remote is not None and isinstance(error, remote.GroupNotFound):
            fail(str(error), EXIT_USAGE)
        if kubeapi is not None and isinstance(error, kubeapi.ConfigException):
            fail(f"kubeconfig: {error}", EXIT_USAGE)
        if kubeapi is not None and isinstance(error, kubeapi.ApiException):
            fail(f"API server: {kubeapi.error_text(error)}", EXIT_RUNTIME)
        controllers = sys.modules.get("infrakit.local.controller")
        if controllers is not None and isinstance(error, controllers.GroupNotFound):
            fail(str(error), EXIT_USAGE)
        if controllers is not None and isinstance(error, controllers.Timeout | controllers.CommitFailed):
            fail(str(error), EXIT_RUNTIME)
        log.debug("unexpected failure", exc_info=error)
        first = (str(error).strip().splitlines() or [""])[0]
        fail(f"internal error: {type(error).__name__}: {first} (--log 5 shows the details)", EXIT_RUNTIME)


def dump(data: Any, output: str) -> None:
    if output == "json":
        click.echo(json.dumps(data, indent=2))
    else:
        import yaml

        click.echo(yaml.safe_dump(data, sort_keys=False, default_flow_style=False).rstrip("\n"))


def emit(output: str, data: Any, *, headers: list[str], rows: list[list[str]], quiet: bool = False) -> None:
    """A table (columns aligned, the last one free), or the data as JSON/YAML."""
    if output != "table":
        dump(data, output)
        return
    shown = rows if quiet else [headers, *rows]
    if not shown:
        return
    widths = [max(len(r[i]) for r in shown) for i in range(len(headers) - 1)]
    for row in shown:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)] + [row[-1]]
        click.echo("   ".join(cells).rstrip())
