"""Broken volumes for tests of status truth: read-only (``chattr +i``) and full (a tiny tmpfs).

Both need root (CI runs as root) and a filesystem that supports them; a test that cannot
break its volume fails under ``$CI`` instead of skipping, so CI never silently covers less.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["full", "read_only"]


def _unavailable(why: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"cannot break a volume here: {why}")
    pytest.skip(f"cannot break a volume here: {why}")


@contextlib.contextmanager
def read_only(directory: Path) -> Iterator[None]:
    """No file can be created or removed in ``directory`` (not even by root) while inside."""
    done = subprocess.run(["chattr", "+i", str(directory)], capture_output=True, text=True, check=False)
    if done.returncode != 0 or os.geteuid() != 0:
        _unavailable(done.stderr.strip() or "not root")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(directory)], check=True)


@contextlib.contextmanager
def full(directory: Path, *, size: str = "64k") -> Iterator[None]:
    """``directory`` becomes a tiny tmpfs, filled up: writes fail with ENOSPC while inside.

    Its files are hidden meanwhile (mounted over) and come back on the way out.
    """
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        _unavailable(done.stderr.strip())
    try:
        with contextlib.suppress(OSError), (directory / ".filler").open("wb") as filler:
            while True:
                filler.write(b"\0" * 4096)
                filler.flush()
        yield
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=True)
