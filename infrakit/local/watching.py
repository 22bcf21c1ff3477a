"""``infrakit-local run``: a foreground controller woken by filesystem notifications.

It reconciles every stored group once, then waits on ``watchfiles`` notifications from
the store and the instance directory (a deleted instance file is replaced within
milliseconds) with a periodic resync as a backstop for missed notifications.  Only the
groups a change concerns are reconciled: a changed store file names its group, a
changed instance file its owner (remembered from earlier reconciles); anything
unknown reconciles every group.  SIGINT/SIGTERM stop it cleanly between passes.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterable
from pathlib import Path
from types import FrameType

import watchfiles

from infrakit import files
from infrakit.local import controller as controllers

__all__ = ["run", "affected_groups"]

log = logging.getLogger(__name__)


def run(
    controller: controllers.Controller,
    *,
    resync: float = 10.0,
    stop: threading.Event | None = None,
    ready: threading.Event | None = None,
) -> None:
    """Reconcile until ``stop`` is set (or SIGINT/SIGTERM when run in the main thread)."""
    stop = stop or threading.Event()
    _install_signal_handlers(stop)
    store_dir = controller.store.groups_dir
    instance_dir = controller.settings.instance_dir
    store_dir.mkdir(parents=True, exist_ok=True)
    instance_dir.mkdir(parents=True, exist_ok=True)
    log.info("watching %s and %s (resync every %ss)", store_dir, instance_dir, resync)
    controller.reconcile_all()
    if ready is not None:
        ready.set()
    for changes in watchfiles.watch(
        store_dir,
        instance_dir,
        watch_filter=_relevant,
        debounce=200,
        step=10,
        rust_timeout=int(resync * 1000),
        yield_on_timeout=True,
        stop_event=stop,
        raise_interrupt=False,
    ):
        if stop.is_set():
            break
        names = None if not changes else affected_groups(controller, (Path(p) for _, p in changes))
        controller.reconcile_all(names)
    log.info("stopped")


def affected_groups(controller: controllers.Controller, paths: Iterable[Path]) -> set[str] | None:
    """The groups that changed ``paths`` concern; ``None`` means all of them."""
    names: set[str] = set()
    store_dir = controller.store.groups_dir.resolve()
    for path in paths:
        if path.parent.resolve() == store_dir:
            names.add(path.name.removesuffix(".yaml"))
        elif path.name in controller.owners:
            names.add(controller.owners[path.name])
        else:
            return None
    return names


def _relevant(change: watchfiles.Change, path: str) -> bool:
    name = Path(path).name
    return not name.startswith(".") and not name.endswith(files.TEMP_SUFFIX)


def _install_signal_handlers(stop: threading.Event) -> None:
    if threading.current_thread() is not threading.main_thread():
        return

    def handle(signum: int, frame: FrameType | None) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
