"""The flavor's ``Init``, run inside the container as InfraKit v0.5's docker plugin ran it.

:func:`place` copies the script into :data:`INIT_DIR` of the created container (a tar through
the engine's archive endpoint); :func:`run`, once the container is started, runs it with
``/bin/sh`` through an exec and waits for it, bounded by a timeout.  The host never runs it.
A failure is one :class:`~infrakit.plugins.spi.PluginError` line (with the script's last line
of output when it failed); the plugin then removes the container.
"""

from __future__ import annotations

import contextlib
import io
import secrets
import tarfile
import time
from typing import Final

from infrakit.plugins import spi
from infrakit.plugins.instance_docker import engine as engines
from infrakit.plugins.instance_docker.properties import short

INIT_DIR: Final = "/var/lib"  # v0.5's: an image needs it for an Init (InfraKit's userdataDirname)
MAX_OUTPUT: Final = 1 << 20  # bytes of the script's log read back for its last line


def place(engine: engines.Engine, container: str, init: str) -> str:
    """Copy ``init`` into ``container`` (created, not yet started); the script's path there."""
    script = f"{INIT_DIR}/infrakit-init-{secrets.token_hex(6)}"
    data = init.encode("utf-8")
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        entry = tarfile.TarInfo(script.rsplit("/", 1)[1])
        entry.size, entry.mode, entry.mtime = len(data), 0o700, int(time.time())
        tar.addfile(entry, io.BytesIO(data))
    try:
        engine.call(
            "PUT",
            f"/containers/{container}/archive",
            raw=archive.getvalue(),
            content_type="application/x-tar",
            query={"path": INIT_DIR},
        )
    except engines.EngineError as error:
        raise spi.PluginError(
            f"cannot copy the Init script into the container ({short(error.message)}): the image needs "
            f"a {INIT_DIR} directory for it, as InfraKit's docker plugin did"
        ) from None
    return script


def run(engine: engines.Engine, container: str, script: str, *, timeout: float) -> None:
    """``/bin/sh SCRIPT`` in the container, waited for (not its output: what it starts may keep that open)."""
    log_file = f"{script}.log"
    command = ["/bin/sh", "-c", f"/bin/sh {script} >{log_file} 2>&1"]
    body = {"Cmd": command, "AttachStdout": False, "AttachStderr": False}
    created = engine.post(f"/containers/{container}/exec", body)
    exec_id = created["Id"]
    engine.post(f"/exec/{exec_id}/start", {"Detach": True, "Tty": False})
    deadline = time.monotonic() + timeout
    pause = 0.002
    while True:
        state = engine.get(f"/exec/{exec_id}/json")
        if not state.get("Running"):
            break
        if time.monotonic() > deadline:
            raise spi.PluginError(
                f"the Init script did not finish within {timeout:g} s in container {container[:12]}; "
                "start long-running work in the background (&) or raise --init-timeout"
            )
        time.sleep(pause)
        pause = min(pause * 2, 0.1)
    code = state.get("ExitCode")
    if code != 0:
        raise spi.PluginError(
            f"the Init script failed (exit code {code}) in container {container[:12]}"
            + (f": {last}" if (last := _last_line(engine, container, log_file)) else "")
        )


def _last_line(engine: engines.Engine, container: str, path: str) -> str:
    with contextlib.suppress(Exception):
        raw = engine.call("GET", f"/containers/{container}/archive", query={"path": path}, decode=False)
        with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
            member = tar.next()
            stream = tar.extractfile(member) if member is not None else None
            if stream is not None:
                lines = stream.read(MAX_OUTPUT).decode("utf-8", "replace").strip().splitlines()
                return short(lines[-1]) if lines else ""
    return ""
