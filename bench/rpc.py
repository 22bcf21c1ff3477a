"""The plugin protocol's cost: provisioning through a socket plugin, and healing through one.

* ``rpc-provision``: ``Controller.commit`` of 1,000 instances (the smoke size in
  ``--smoke``) with the file plugin in process, and with the same plugin served by a
  daemon on a unix socket (:func:`infrakit.rpc.server.serve`, in a thread of this
  process: the same server code as ``infrakit-instance-file``, without a second
  interpreter's start-up in the measurement); runs alternate, so both see the same
  weather.  Target: socket / in-process at most 3x (median).
* ``rpc-heal``: ``infrakit-group-default`` and ``infrakit-instance-file`` as
  subprocesses, the group committed through them; instance files are deleted one at a
  time and each replacement timed (unlink to the new file's inotify event), as in the
  local self-heal scenario.  The group daemon learns of the loss from the instance
  daemon's change stream.  Target: p99 < 100 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import local, measure, watch
from bench.measure import Row, Sizes, Workdir
from infrakit import plugins
from infrakit.local import controller as controllers
from infrakit.local import store as stores
from infrakit.plugins.instance_file import FilePlugin
from infrakit.rpc import resolving, server

S7 = "7. plugin protocol"
PROVISION = 1_000


@contextlib.contextmanager
def instance_daemon(directory: Path, plugins_dir: Path) -> Iterator[None]:
    """The file plugin served as ``instance-file`` in ``plugins_dir``, from a thread with its own loop."""
    ready = threading.Event()
    found: dict[str, Any] = {}

    def target() -> None:
        async def main() -> None:
            found["stop"] = asyncio.Event()
            found["loop"] = asyncio.get_running_loop()
            service = server.instance_service(FilePlugin(directory=directory))
            await server.serve(
                [service],
                name="instance-file",
                stop=found["stop"],
                directory=plugins_dir,
                on_ready=lambda _: ready.set(),
            )

        try:
            asyncio.run(main())
        except BaseException as error:
            found["error"] = error
            ready.set()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    ready.wait(30)
    if "error" in found:
        raise found["error"]
    try:
        yield
    finally:
        found["loop"].call_soon_threadsafe(found["stop"].set)
        thread.join(30)


def _commit(base: Path, size: int, *, remote: bool) -> float:
    instances = base / "instances"
    plugins_dir = base / "plugins"
    registry = plugins.Registry(
        defaults={"instance-file": {"dir": str(instances), "fsync": False}},
        locate=resolving.locator(plugins_dir) if remote else None,
    )
    controller = controllers.Controller(store=stores.Store(base / "home"), registry=registry)
    group = local.spec("bench", size)
    try:
        with instance_daemon(instances, plugins_dir) if remote else contextlib.nullcontext(), measure.quiet_disk():
            seconds = measure.timed(lambda: controller.commit(group))
    finally:
        registry.close()
    made = [name for name in os.listdir(instances) if watch.INSTANCE.match(name)]
    if len(made) != size:
        raise RuntimeError(f"commit of {size} instances ({'socket' if remote else 'in-process'}) left {len(made)}")
    return seconds


def provision(workdir: Workdir, sizes: Sizes) -> list[Row]:
    n = 50 if sizes.smoke else PROVISION
    _commit(workdir.fresh("rpc-warmup"), n, remote=True)  # imports, the server's first start
    inproc, socket, ratios = [], [], []
    for round_ in range(sizes.repeat):
        order = (False, True) if round_ % 2 == 0 else (True, False)
        took = {}
        for remote in order:
            base = workdir.fresh(f"rpc-{'socket' if remote else 'inproc'}-{n}")
            took[remote] = _commit(base, n, remote=remote)
            shutil.rmtree(base)
        inproc.append(took[False])
        socket.append(took[True])
        ratios.append(took[True] / took[False])
    ratio = measure.stats(ratios)
    return [
        Row(S7, f"Controller.commit, {n:,} instances, file plugin in process", "s", measure.stats(inproc)),
        Row(S7, f"Controller.commit, {n:,} instances, file plugin over a unix socket", "s", measure.stats(socket)),
        Row(S7, "socket / in process (per round)", "x", ratio).judge(
            lambda v: v <= 3.0, value=ratio.median, what="median", target="≤ 3x", smoke=sizes.smoke
        ),
    ]


def heal(workdir: Workdir, sizes: Sizes) -> list[Row]:
    base = workdir.fresh("rpc-heal")
    instances, home = base / "instances", base / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFRAKIT_")}
    env["INFRAKIT_HOME"] = str(home)
    daemons = []
    try:
        for kind, args in (("instance-file", ["--dir", str(instances)]), ("group-default", ["--resync", "60"])):
            log = base / f"{kind}.log"
            with log.open("wb") as out:
                process = subprocess.Popen(
                    [sys.executable, "-m", "infrakit.daemons", kind, *args],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            daemons.append(process)
            local.wait_for_line(log, lambda line: "Listening at:" in line, process, timeout=60)
        path = measure.write_manifests(base / "group.yaml", [measure.manifest("bench", sizes.heal_group)])
        done = subprocess.run(
            [sys.executable, "-m", "infrakit.cli", "commit", str(path)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"infrakit-local commit failed: {done.stderr}")
        time.sleep(0.5)  # the group daemon's first pass is over; it now waits on the change stream
        latencies, method = watch.heal_latencies(instances, deletions=sizes.heal_deletions, gap=sizes.heal_gap)
    finally:
        for process in daemons:
            process.terminate()
        for process in daemons:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    left = len([name for name in os.listdir(instances) if watch.INSTANCE.match(name)])
    if left != sizes.heal_group:
        raise RuntimeError(f"after healing, {left} instance files instead of {sizes.heal_group}")
    samples = measure.stats([v * 1000 for v in latencies])
    return [
        Row(
            S7,
            f"group daemon + instance-file daemon: unlink → new file ({sizes.heal_deletions} deletions, group of "
            f"{sizes.heal_group}, {method})",
            "ms",
            samples,
        ).judge(lambda v: v < 100, value=samples.quantile(0.99), what="p99", target="p99 < 100 ms", smoke=sizes.smoke)
    ]
