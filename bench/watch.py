"""When does a file appear in a directory: inotify (Linux), else a tight polling loop.

The self-heal scenario unlinks an instance file and waits for its replacement.  With
inotify the replacement is seen as the ``IN_CREATE`` / ``IN_MOVED_TO`` event of its final
name (a writer's temporary file has another name), read as soon as the kernel queues
it; nothing here burns the CPU the healer needs.
"""

from __future__ import annotations

import ctypes
import functools
import os
import re
import select
import struct
import time
from collections.abc import Callable
from pathlib import Path

INSTANCE = re.compile(r"^instance-[0-9]{1,19}$")

_IN_MOVED_TO = 0x80
_IN_CREATE = 0x100
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = os.O_CLOEXEC
_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len


class Appearances:
    """Names appearing in ``directory`` from now on."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.fd = -1
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
            if fd >= 0:
                if libc.inotify_add_watch(fd, os.fsencode(directory), _IN_CREATE | _IN_MOVED_TO) < 0:
                    os.close(fd)
                else:
                    self.fd = fd
        except (OSError, AttributeError):
            self.fd = -1
        self._known = set(os.listdir(directory)) if self.fd < 0 else set()

    @property
    def method(self) -> str:
        return "inotify" if self.fd >= 0 else "polling os.listdir"

    def drain(self) -> None:
        """Forget what appeared so far."""
        if self.fd >= 0:
            while self._read():
                pass
        else:
            self._known = set(os.listdir(self.directory))

    def wait(self, wanted: Callable[[str], bool], *, timeout: float) -> float | None:
        """``time.perf_counter()`` when a name satisfying ``wanted`` appears; None on timeout."""
        deadline = time.perf_counter() + timeout
        while True:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return None
            if self.fd >= 0:
                ready, _, _ = select.select([self.fd], [], [], remaining)
                if not ready:
                    return None
                names = self._read()
                now = time.perf_counter()
            else:
                current = set(os.listdir(self.directory))
                now = time.perf_counter()
                names = sorted(current - self._known)
                self._known = current
            if any(wanted(name) for name in names):
                return now

    def _read(self) -> list[str]:
        try:
            data = os.read(self.fd, 1 << 16)
        except BlockingIOError:
            return []
        names, offset = [], 0
        while offset + _HEADER.size <= len(data):
            _, _, _, length = _HEADER.unpack_from(data, offset)
            raw = data[offset + _HEADER.size : offset + _HEADER.size + length]
            names.append(os.fsdecode(raw.rstrip(b"\0")))
            offset += _HEADER.size + length
        return names

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Appearances:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def heal_latencies(
    directory: Path,
    *,
    deletions: int,
    gap: float,
    timeout: float = 10.0,
) -> tuple[list[float], str]:
    """Unlink ``deletions`` instance files one at a time; seconds from each unlink to a new file."""
    latencies: list[float] = []
    with Appearances(directory) as seen:
        for _ in range(deletions):
            present = sorted(name for name in os.listdir(directory) if INSTANCE.match(name))
            if not present:
                raise RuntimeError(f"no instance files left in {directory}")
            victim = present[len(latencies) % len(present)]
            before = set(present)
            seen.drain()
            started = time.perf_counter()
            os.unlink(directory / victim)
            appeared = seen.wait(functools.partial(_new_instance, before), timeout=timeout)
            if appeared is None:
                raise RuntimeError(f"{victim} was not replaced within {timeout}s")
            latencies.append(appeared - started)
            time.sleep(gap)
        return latencies, seen.method


def _new_instance(before: set[str], name: str) -> bool:
    return bool(INSTANCE.match(name)) and name not in before
