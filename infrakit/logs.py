"""Logging set-up shared by the CLI and the operator: InfraKit's levels and formats.

``--log N`` takes InfraKit's (logrus's) numbers: 0 panic, 1 fatal, 2 error, 3 warn,
4 info, 5 debug.  ``--log-format term`` is for people, ``json`` one object a line.
Logs go to stderr, so command output on stdout stays parseable.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Final

__all__ = ["configure"]

_LEVELS: Final = {
    0: logging.CRITICAL,
    1: logging.CRITICAL,
    2: logging.ERROR,
    3: logging.WARNING,
    4: logging.INFO,
    5: logging.DEBUG,
}


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure(*, level: int = 4, fmt: str = "term", frameworks: tuple[str, ...] = ()) -> None:
    """Log ``infrakit.*`` at ``level``; ``frameworks`` (e.g. kopf) at warnings, or debug with 5."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(levelname).4s[%(asctime)s] %(message)s", "%H:%M:%S"))
    root = logging.getLogger("infrakit")
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS.get(level, logging.INFO))
    root.propagate = False
    for name in frameworks:
        framework = logging.getLogger(name)
        framework.handlers[:] = [handler]
        framework.setLevel(logging.DEBUG if level >= 5 else max(logging.WARNING, root.level))
        framework.propagate = False
