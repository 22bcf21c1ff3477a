"""The plugins directory: where running plugin daemons are found, as InfraKit v0.5 finds them.

``$INFRAKIT_PLUGINS_DIR``, else ``$INFRAKIT_HOME/plugins``, else ``~/.infrakit/plugins``.
A plugin named ``NAME`` is either a unix socket ``NAME`` there, or (a daemon listening
on TCP) a regular file ``NAME.listen`` holding ``tcp://host:port``; a regular file
``NAME`` holding such an address is accepted too.  Names may carry a sub-type
(``instance-aws/ec2``): the part before ``/`` is looked up.

:func:`find` only looks at files (no network); :func:`alive` probes an endpoint;
:func:`running` asks every endpoint what it implements (``Handshake.Implements``), for
``plugin ls``.  A socket left by a killed daemon stays until a new daemon of that name
replaces it: :func:`find` still returns it (a call then fails with a clear "stale
socket" error rather than silently using another plugin).
"""

from __future__ import annotations

import dataclasses
import os
import stat
from pathlib import Path
from typing import Final

from infrakit.plugins import spi

__all__ = [
    "LISTEN_SUFFIX",
    "MAX_SOCKET_PATH",
    "Endpoint",
    "PluginInfo",
    "alive",
    "endpoint_at",
    "endpoints",
    "find",
    "plugins_dir",
    "running",
]

LISTEN_SUFFIX: Final = ".listen"
MAX_SOCKET_PATH: Final = 107  # bytes in sockaddr_un.sun_path, less the terminating NUL (Linux)
_MAX_ADDRESS_FILE: Final = 4096


@dataclasses.dataclass(frozen=True, kw_only=True)
class Endpoint:
    """A plugin's entry in the directory: ``address`` is what :class:`~infrakit.rpc.client.Transport` dials."""

    name: str
    protocol: str  # "unix" | "tcp"
    address: str  # the socket path, or tcp://host:port
    path: Path  # the file that advertises it


@dataclasses.dataclass(frozen=True, kw_only=True)
class PluginInfo:
    """One running (or stale) plugin, as ``plugin ls`` shows it: INTERFACE LISTEN NAME."""

    name: str
    listen: str  # the socket path or tcp://host:port
    interfaces: tuple[str, ...]  # "Instance/0.5.0"...; empty when it did not answer
    error: str | None = None  # why it did not answer (a stale socket...)


def plugins_dir() -> Path:
    """Where plugins listen: ``$INFRAKIT_PLUGINS_DIR`` or ``$INFRAKIT_HOME/plugins``."""
    explicit = os.environ.get("INFRAKIT_PLUGINS_DIR")
    if explicit:
        return Path(explicit).expanduser()
    home = os.environ.get("INFRAKIT_HOME")
    base = Path(home).expanduser() if home else Path.home() / ".infrakit"
    return base / "plugins"


def endpoint_at(path: Path, *, name: str) -> Endpoint | None:
    """The endpoint a directory entry advertises, or None if it advertises none."""
    try:
        info = path.lstat()
    except OSError:
        return None
    if stat.S_ISSOCK(info.st_mode):
        return Endpoint(name=name, protocol="unix", address=str(path), path=path)
    if stat.S_ISREG(info.st_mode) and info.st_size <= _MAX_ADDRESS_FILE:
        try:
            text = path.read_text("utf-8").strip()
        except (OSError, UnicodeDecodeError):
            return None
        if text.startswith(("tcp://", "http://")) and "\n" not in text:
            return Endpoint(name=name, protocol="tcp", address=text, path=path)
    return None


def find(name: str, *, directory: Path | None = None) -> Endpoint | None:
    """The endpoint of plugin ``name`` (``lookup[/type]``) in the directory, if it has one."""
    lookup = name.split("/", 1)[0]
    if not lookup or lookup.startswith("."):
        return None
    folder = plugins_dir() if directory is None else directory
    for candidate in (folder / lookup, folder / f"{lookup}{LISTEN_SUFFIX}"):
        found = endpoint_at(candidate, name=lookup)
        if found is not None:
            return found
    return None


def endpoints(*, directory: Path | None = None) -> list[Endpoint]:
    """Every endpoint advertised in the directory, by name (no network)."""
    folder = plugins_dir() if directory is None else directory
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return []
    found: dict[str, Endpoint] = {}
    for entry in entries:
        if entry.name.startswith("."):
            continue
        name = entry.name.removesuffix(LISTEN_SUFFIX)
        endpoint = endpoint_at(Path(entry.path), name=name)
        if endpoint is not None and (name not in found or endpoint.protocol == "unix"):
            found[name] = endpoint
    return [found[name] for name in sorted(found)]


def alive(endpoint: Endpoint, *, timeout: float = 1.0) -> bool:
    """Whether something accepts connections at the endpoint (a stale socket refuses them)."""
    import socket  # lazy: only ``plugin ls`` probes; finding a daemon by name is a stat

    try:
        if endpoint.protocol == "unix":
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout)
                sock.connect(endpoint.address)
        else:
            hostport = endpoint.address.split("://", 1)[1].rstrip("/")
            host, _, port = hostport.rpartition(":")
            with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout):
                pass
    except (OSError, ValueError):
        return False
    return True


def running(*, directory: Path | None = None, timeout: float = 2.0, only: str | None = None) -> list[PluginInfo]:
    """Every plugin in the directory (or ``only`` that one) with the interfaces it implements (one handshake each)."""
    from infrakit.rpc import client, wire  # the client is only needed when asking

    found = []
    for endpoint in endpoints(directory=directory):
        if only is not None and endpoint.name != only:
            continue
        transport = client.Transport(
            address=endpoint.address, name=endpoint.name, connect_timeout=timeout, timeout=timeout
        )
        try:
            answer = transport.call(wire.HANDSHAKE_IMPLEMENTS, {})
            apis = wire.field(answer, "APIs") if isinstance(answer, dict) else None
            if apis is not None and not isinstance(apis, list):
                raise spi.PluginError(f"plugin {endpoint.name!r}: {wire.HANDSHAKE_IMPLEMENTS}: malformed answer")
            interfaces = tuple(
                sorted(
                    f"{wire.field(api, 'Name')}/{wire.field(api, 'Version')}"
                    for api in apis or []
                    if isinstance(api, dict)
                )
            )
            found.append(PluginInfo(name=endpoint.name, listen=endpoint.address, interfaces=interfaces))
        except spi.PluginError as error:
            found.append(PluginInfo(name=endpoint.name, listen=endpoint.address, interfaces=(), error=str(error)))
        finally:
            transport.close()
    return found
