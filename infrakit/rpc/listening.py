"""Where a plugin daemon listens: the plugins directory, its socket or TCP port (aiohttp).

:func:`serve` listens on a unix socket in the plugins directory (or on TCP, writing the
``<name>.listen`` discovery file v0.5 writes), never steals a live socket, replaces a
stale one, and removes what it created when stopped.  The ``<name>.pid`` claim keeps two
of our daemons from sharing a name.  :mod:`infrakit.rpc.server` builds the application
served here.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import functools
import ipaddress
import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Final

from aiohttp import web

from infrakit.rpc import discovery, guarding

__all__ = ["ListenError", "parse_listen", "serve"]

log = logging.getLogger(__name__)

_SHUTDOWN_GRACE: Final = 10.0  # seconds for calls under way when stopping (v0.5's graceful timeout)


class ListenError(RuntimeError):
    """The daemon cannot listen (a live plugin has the name, a bad path...): one line."""


def parse_listen(text: str) -> tuple[str, int]:
    """``host:port``, ``:port`` or ``port``; a bare port binds loopback. Raise ValueError."""
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = "", text
    host = host.strip("[]") or "127.0.0.1"
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"{text!r} is not host:port (for example 127.0.0.1:24865 or :24865)") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is out of range (0-65535)")
    return host, port


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def serve(
    app: web.Application,
    *,
    name: str,
    stop: asyncio.Event,
    directory: Path | None = None,
    listen: tuple[str, int] | None = None,
    on_ready: Callable[[str], None] | None = None,
    token: bool = False,
) -> None:
    """Serve ``app`` as plugin ``name`` until ``stop`` is set; clean up what was made.

    Raises :class:`ListenError` (nothing changed) if the name is taken by a live plugin
    or the address cannot be used.  ``on_ready`` gets the address clients dial.  Every
    connection passes the application's :class:`~infrakit.rpc.guarding.Gate` (if it has
    one) and aiohttp's timers are set from its limits.  ``token``: whether TCP callers
    must show one (said in the warning for a port beyond loopback).
    """
    if not name or "/" in name or name.startswith(".") or name.endswith((".listen", ".pid")):
        raise ListenError(f"--name {name!r}: a plugin name is a file name without '/' (e.g. instance-file)")
    folder = discovery.plugins_dir() if directory is None else Path(directory)
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as error:
        raise ListenError(f"cannot create the plugins directory {folder}: {error.strerror}") from None
    socket_path = folder / name
    listen_path = folder / f"{name}{discovery.LISTEN_SUFFIX}"
    claim = _Claim(folder / f"{name}.pid", name=name)
    runner: web.AppRunner | None = None
    made: Path | None = None
    try:
        claim.acquire()
        _clear(socket_path, name=name)
        _clear(listen_path, name=name)
        gate = app.get(guarding.GATE)
        options = gate.limits.runner_options() if gate is not None else {}
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=_SHUTDOWN_GRACE, **options)
        await runner.setup()
        if listen is None:
            if len(os.fsencode(socket_path)) > discovery.MAX_SOCKET_PATH:
                raise ListenError(
                    f"socket path {socket_path} is too long for a unix socket "
                    f"(at most {discovery.MAX_SOCKET_PATH} bytes): set INFRAKIT_PLUGINS_DIR to a shorter directory"
                )
            site: web.BaseSite = _Site(runner, gate=gate, path=str(socket_path))
            await _start(site, where=str(socket_path))
            made = socket_path
            address = str(socket_path)
            log.info("Listening at: %s", socket_path)
        else:
            host, port = listen
            if not _is_loopback(host) and not token:
                log.warning(
                    "listening on %s:%d, beyond this machine, with no authentication (no --token-file): anyone "
                    "who can reach this port can provision and destroy instances",
                    host,
                    port,
                )
            site = _Site(runner, gate=gate, host=host, port=port)
            await _start(site, where=f"{host}:{port}")
            bound = runner.addresses[0]
            advertise_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104 - compared, not bound
            if ":" in advertise_host:
                advertise_host = f"[{advertise_host}]"
            address = f"tcp://{advertise_host}:{bound[1]}"
            _write_listen_file(listen_path, address)
            made = listen_path
            log.info("Listening at: %s:%d, discoverable at %s", host, bound[1], listen_path)
        if on_ready is not None:
            on_ready(address)
        await stop.wait()
        log.info("Stopping: %s", name)
    finally:
        if runner is not None:
            await runner.cleanup()
        if made is not None:
            with contextlib.suppress(FileNotFoundError):
                made.unlink()
        claim.release()


class _Site(web.BaseSite):
    """A unix socket or TCP port whose connections are admitted by a :class:`~infrakit.rpc.guarding.Gate`.

    Why not ``web.UnixSite``/``web.TCPSite``: they hand aiohttp's protocol factory to the
    event loop as it is, and aiohttp has no connection cap (a listen backlog only
    queues: a peer holding every file descriptor stops ``accept`` altogether).  This
    site hands the loop the gate's factory instead; the rest is theirs.
    """

    def __init__(
        self,
        runner: web.BaseRunner,
        *,
        gate: guarding.Gate | None,
        path: str | None = None,
        host: str | None = None,
        port: int = 0,
    ) -> None:
        super().__init__(runner)
        self.gate = gate
        self.path = path
        self.host = host
        self.port = port

    @property
    def name(self) -> str:
        return f"http://unix:{self.path}:" if self.path is not None else f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None
        gate = self.gate
        factory: Callable[[], asyncio.BaseProtocol] = server if gate is None else functools.partial(gate.admit, server)
        if self.path is not None:
            self._server = await loop.create_unix_server(factory, self.path, backlog=self._backlog)
        else:
            self._server = await loop.create_server(factory, self.host, self.port, backlog=self._backlog)


async def _start(site: web.BaseSite, *, where: str) -> None:
    try:
        await site.start()
    except OSError as error:
        raise ListenError(f"cannot listen at {where}: {error.strerror or error}") from None


def _write_listen_file(path: Path, address: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(address)
    os.replace(temporary, path)


def _clear(path: Path, *, name: str) -> None:
    """Remove a stale socket or discovery file at ``path``; refuse a live or foreign one."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISSOCK(info.st_mode) or (stat.S_ISREG(info.st_mode) and path.name.endswith(discovery.LISTEN_SUFFIX)):
        endpoint = discovery.endpoint_at(path, name=name)
        if endpoint is not None and discovery.alive(endpoint):
            raise ListenError(
                f"plugin {name!r} is already running at {endpoint.address}; "
                "stop it first, or serve this one under another --name"
            )
        log.info("replacing the stale %s %s (its daemon is gone)", "socket" if endpoint else "file", path)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return
    raise ListenError(f"{path} exists and is not a plugin socket: remove it, or serve under another --name")


class _Claim:
    """The ``<name>.pid`` file, locked while the daemon runs: two of ours never share a name.

    v0.5 writes the same file (without the lock); a lock dies with its process, so a
    killed daemon leaves no claim behind.
    """

    def __init__(self, path: Path, *, name: str) -> None:
        self.path = path
        self.name = name
        self.fd: int | None = None

    def acquire(self) -> None:
        for _ in range(3):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                os.close(fd)
                if error.errno in (errno.EAGAIN, errno.EACCES):
                    holder = _read_pid(self.path)
                    raise ListenError(
                        f"plugin {self.name!r} is already running"
                        + (f" (pid {holder})" if holder else "")
                        + "; stop it first, or serve this one under another --name"
                    ) from None
                raise
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # its owner removed it between our open and our lock: take a fresh one
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
            self.fd = fd
            return
        raise ListenError(f"cannot claim {self.path}: it keeps changing (another daemon starting?)")

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self.fd)
        self.fd = None


def _read_pid(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""
