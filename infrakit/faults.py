"""Failpoints for crash testing, off unless ``$INFRAKIT_FAILPOINTS`` names one.

Like etcd's gofail: the crash-safety suites need to kill a process at an exact point of
its work (after the Nth instance operation), not after a guessed sleep.  The engine calls
``hit("instance-op")`` after each provision and destroy; with
``INFRAKIT_FAILPOINTS="instance-op=kill-after:17"`` the 17th hit SIGKILLs the process.
With the variable unset (always, in production) ``hit`` is one dict lookup.
"""

from __future__ import annotations

import os
import signal
from typing import Final

__all__ = ["hit"]

_ENV: Final = "INFRAKIT_FAILPOINTS"


def _parse(text: str) -> dict[str, int]:
    points = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, action = item.partition("=")
        kind, _, count = action.partition(":")
        if kind != "kill-after" or not count.isdigit():
            raise ValueError(f"{_ENV}: {item!r} is not NAME=kill-after:N")
        points[name] = int(count)
    return points


_remaining = _parse(os.environ.get(_ENV, ""))


def hit(name: str) -> None:
    """Count a pass through failpoint ``name``; SIGKILL ourselves when its count runs out."""
    if name not in _remaining:
        return
    _remaining[name] -= 1
    if _remaining[name] <= 0:
        os.kill(os.getpid(), signal.SIGKILL)
