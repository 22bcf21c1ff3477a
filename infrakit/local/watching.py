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

from watchfiles._rust_notify import RustNotify

from infrakit import files
from infrakit.local import controller as controllers

__all__ = ["affected_groups", "run"]

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
    # The notifier is armed *before* the first full reconcile, so nothing that happens
    # in between is missed.  ``watchfiles.watch`` arms it only when first iterated, after
    # which we could no longer reconcile before blocking; so we drive the notifier it
    # wraps ourselves (same calls as ``watchfiles.main.watch``; watchfiles is pinned).
    with RustNotify([str(store_dir), str(instance_dir)], False, False, 300, False, True) as notify:
        controller.reconcile_all()
        if ready is not None:
            ready.set()
        log.info("ready")
        while not stop.is_set():
            raw = notify.watch(_DEBOUNCE_MS, _STEP_MS, int(resync * 1000), stop)
            if isinstance(raw, str):
                if raw != "timeout":
                    break  # "stop" or "signal"
                controller.reconcile_all()  # the periodic resync
                continue
            paths = [Path(path) for _, path in raw if _relevant(path)]
            if paths:
                controller.reconcile_all(affected_groups(controller, paths))
    log.info("stopped")


_DEBOUNCE_MS = 200  # at most this long collecting a burst of changes
_STEP_MS = 10  # a burst ends after this long without changes


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


def _relevant(path: str) -> bool:
    """Instance files and group files; not temp files, nor the ``#<inode>`` names under
    which the kernel reports writes to a not-yet-linked (O_TMPFILE) file."""
    name = Path(path).name
    if name.startswith(".") or name.endswith(files.TEMP_SUFFIX):
        return False
    return name.startswith("instance-") or name.endswith(".yaml")


def _install_signal_handlers(stop: threading.Event) -> None:
    if threading.current_thread() is not threading.main_thread():
        return

    def handle(signum: int, frame: FrameType | None) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
