"""Failpoints for crash and fault testing, off unless ``$INFRAKIT_FAILPOINTS`` names one.

Like etcd's gofail: the reliability suites need to kill or stall a process at an exact
point of its work (after the Nth instance operation), not after a guessed sleep.
``INFRAKIT_FAILPOINTS`` is a comma-separated list of ``NAME=ACTION``:

* ``kill-after:N``      the Nth hit of NAME SIGKILLs the process;
* ``stall-after:N:S``   the Nth hit of NAME sleeps S seconds (once).

Failpoints: ``instance-op`` (after each provision/destroy, in the engine),
``atomic-write`` (a temp file written, not yet renamed), ``sync-start`` (the runtime
begins syncing a Group).  With the variable unset (always, in production) ``hit`` is
one dict lookup.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Final

__all__ = ["hit"]

_ENV: Final = "INFRAKIT_FAILPOINTS"


@dataclasses.dataclass
class _Point:
    remaining: int
    stall: float | None  # None: kill


def _parse(text: str) -> dict[str, _Point]:
    points = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, action = item.partition("=")
        kind, _, rest = action.partition(":")
        count, _, seconds = rest.partition(":")
        if kind == "kill-after" and count.isdigit():
            points[name] = _Point(int(count), None)
        elif kind == "stall-after" and count.isdigit() and seconds.replace(".", "", 1).isdigit():
            points[name] = _Point(int(count), float(seconds))
        else:
            raise ValueError(f"{_ENV}: {item!r} is not NAME=kill-after:N or NAME=stall-after:N:SECONDS")
    return points


_points = _parse(os.environ.get(_ENV, ""))


def hit(name: str) -> None:
    """Count a pass through failpoint ``name``; act when its count runs out."""
    point = _points.get(name)
    if point is None:
        return
    point.remaining -= 1
    if point.remaining != 0:
        return
    if point.stall is None:
        import signal  # lazy: its enums cost ~0.5 ms, on every command that imports the store, for a test's kill

        os.kill(os.getpid(), signal.SIGKILL)
    else:
        time.sleep(point.stall)
