"""``infrakit-local run``: the runtime over the local store, in the foreground.

The same runtime as the operator's (``infrakit.runtime.running``): every stored group
is synced once, then again whenever its store file or one of its instances changes
(the file plugin's change feed: a deleted instance file is replaced within
milliseconds), when it waits for health, after a failure (with backoff), and at each
resync.  SIGINT/SIGTERM stop it cleanly: a sync in flight stops between two instance
operations and writes a status that says it was interrupted.  One stuck in a plugin call
is waited for ``running.STOP_GRACE`` seconds, then left (a warning names its group; exit status 1).
"""

from __future__ import annotations

import asyncio
import logging
import signal

from infrakit.local import controller as controllers
from infrakit.runtime import running

__all__ = ["run"]

log = logging.getLogger("infrakit.local")


def run(controller: controllers.Controller, *, resync: float, poll: float, workers: int = 2) -> list[str]:
    """Reconcile every group until SIGINT or SIGTERM; the groups whose sync was left stuck."""
    return asyncio.run(_run(controller, resync=resync, poll=poll, workers=workers))


async def _run(controller: controllers.Controller, *, resync: float, poll: float, workers: int) -> list[str]:
    controller.verbose = True  # the log is what a foreground controller shows
    stopping = asyncio.Event()
    runtime = running.Runtime(
        syncer=controller.syncer, workers=workers, resync=resync, poll=poll, may_act=lambda: not stopping.is_set()
    )
    loop = asyncio.get_running_loop()
    main = asyncio.ensure_future(runtime.run(ready=asyncio.Event()))

    def stop(signum: int) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stopping.set()
        main.cancel()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop, signum)
    log.info("watching %s (resync every %ss, poll every %ss)", controller.store.groups_dir, resync, poll)
    try:
        await main
    except asyncio.CancelledError:
        pass
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    stuck = await runtime.drain(running.STOP_GRACE)
    if stuck:
        log.warning("stopped after %gs without %s: stuck in a plugin call", running.STOP_GRACE, ", ".join(stuck))
    else:
        log.info("stopped")
    return stuck
