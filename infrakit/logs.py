"""Logging set-up shared by the CLI and the operator: InfraKit's levels and formats.

``--log N`` takes InfraKit's (logrus's) numbers: 0 panic, 1 fatal, 2 error, 3 warn,
4 info, 5 debug.  ``--log-format term`` is for people, ``json`` one object a line.
Logs go to stderr, so command output on stdout stays parseable.

Structured fields: a call site passes what it is about as ``extra=`` (see
:data:`FIELDS`: ``namespace``, ``group``, ``instance``, ``reason``, ``plan``...); the JSON
format makes each a key of its own, beside ``msg`` (which keeps the full text, so the
term format loses nothing).  kopf's per-object records (``k8s_ref``) give ``namespace``
and ``group`` too.  :func:`fail` prints a command's final error the same way: ``Error:
...`` on a terminal, one JSON object with ``level: error`` and ``exit_code`` in JSON.

Plain stdlib ``logging``: a formatter is twenty lines, and every library (kopf,
aiohttp, the Kubernetes client) already logs through it.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import sys
from collections.abc import Mapping
from typing import Any, Final, NoReturn

__all__ = ["FIELDS", "configure", "fail", "fields"]

_LEVELS: Final = {
    0: logging.CRITICAL,
    1: logging.CRITICAL,
    2: logging.ERROR,
    3: logging.WARNING,
    4: logging.INFO,
    5: logging.DEBUG,
}

FIELDS: Final = (
    "namespace",
    "group",
    "instance",
    "instances",
    "lost",
    "replaced",
    "reason",
    "plan",
    "action",
    "count",
    "provisioned",
    "destroyed",
    "error",
    "lease",
    "holder",
    "identity",
    "delay",
    "exit_code",
)
"""The structured fields a call site may pass in ``extra=`` (anything else is dropped)."""

_format = "term"  # as last configured: fail() follows it


def fields(key: tuple[str, str] | None = None, **more: Any) -> dict[str, Any]:
    """``extra=`` for a log call: a group's key as ``namespace`` and ``group``, then ``more``.

    A local group has no namespace: the field is left out rather than empty.
    """
    found: dict[str, Any] = {}
    if key is not None:
        if key[0]:
            found["namespace"] = key[0]
        found["group"] = key[1]
    found.update((k, v) for k, v in more.items() if v is not None)
    return found


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        reference = getattr(record, "k8s_ref", None)  # kopf's object loggers
        if isinstance(reference, Mapping):
            if reference.get("namespace"):
                entry["namespace"] = reference["namespace"]
            if reference.get("name"):
                entry["group" if reference.get("kind") == "Group" else "object"] = reference["name"]
        for name in FIELDS:
            if name in record.__dict__:
                entry[name] = _plain(record.__dict__[name])
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def _plain(value: Any) -> Any:
    """JSON-able as it stands, else its text (an enum, a path)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(getattr(value, "value", value))


def _timestamp(created: float) -> str:
    return datetime.datetime.fromtimestamp(created, datetime.UTC).isoformat(timespec="milliseconds")


def configure(*, level: int = 4, fmt: str = "term", frameworks: tuple[str, ...] = ()) -> None:
    """Log ``infrakit.*`` at ``level``; ``frameworks`` (e.g. kopf) at warnings, or debug with 5."""
    global _format  # noqa: PLW0603 - one process, one log format
    _format = fmt
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


def fail(message: str, *, code: int, fmt: str | None = None) -> NoReturn:
    """Print a command's final error on stderr (one line, in the log format) and exit with ``code``."""
    if (fmt or _format) == "json":
        entry = {
            "time": _timestamp(datetime.datetime.now(datetime.UTC).timestamp()),
            "level": "error",
            "logger": "infrakit",
            "msg": message,
            "exit_code": code,
        }
        line = json.dumps(entry)
    else:
        line = f"Error: {message}"
        if sys.stderr.isatty() and not os.environ.get("NO_COLOR"):
            line = f"\x1b[31m{line}\x1b[0m"  # red for people at a terminal; never in pipes or files
    print(line, file=sys.stderr, flush=True)
    raise SystemExit(code)
