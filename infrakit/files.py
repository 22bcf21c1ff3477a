"""Atomic file writes and symlink-safe reads, shared by the store and the file plugin.

A write goes to a temporary file in the target's directory, is optionally fsynced,
then renamed over the target, so readers and crashes only ever see the old or the new
content, never a torn file.  ``durable=True`` adds the fsyncs (of the file and of the
directory) that make the new content survive a power loss, not just a process crash.
Reads refuse to follow symlinks (``O_NOFOLLOW``) so a hostile link cannot redirect them.

These sit on the provisioning hot path (one write per instance), so they work on
strings and raw file descriptors: no ``Path`` objects, no buffered file objects.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

from infrakit import faults

__all__ = [
    "TEMP_SUFFIX",
    "TooLarge",
    "atomic_write",
    "create_new",
    "fsync_dir",
    "read_ends_nofollow",
    "read_nofollow",
    "read_nofollow_stat",
    "remove_stale_temps",
]

TEMP_SUFFIX = ".tmp"

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


def atomic_write(path: str | os.PathLike[str], data: bytes, *, durable: bool = True, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` atomically (temp file, fsync, rename)."""
    target = os.fspath(path)
    directory, name = os.path.split(target)
    import secrets  # lazy: it loads hmac and OpenSSL (~3 ms), and a command that only reads never writes

    temp = os.path.join(directory, f".{name}.{secrets.randbits(32):08x}{TEMP_SUFFIX}")
    fd = os.open(temp, _CREATE, mode)
    try:
        _write_all(fd, data)
        if durable:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        _unlink_quietly(temp)
        raise
    os.close(fd)
    faults.hit("atomic-write")  # a crash here leaves a temp file, never a torn target
    try:
        os.rename(temp, target)  # replaces a symlink at ``path`` itself, never its target
    except BaseException:
        _unlink_quietly(temp)
        raise
    if durable:
        fsync_dir(directory or ".")


def create_new(path: str | os.PathLike[str], data: bytes, *, durable: bool = True, mode: int = 0o644) -> None:
    """Create ``path`` holding ``data``, atomically; ``FileExistsError`` if it exists.

    On Linux the data goes to an unnamed file (``O_TMPFILE``) that is then linked in
    under its name: the file appears whole or not at all, a crash leaves nothing behind
    (no temp file to clean up), and it costs what a plain ``open``/``write`` does, about
    half of :func:`atomic_write`'s temp file and rename.  Elsewhere, or where the
    filesystem or a missing ``/proc`` refuse it, :func:`atomic_write` does the job (an
    existing ``path`` is then replaced, not refused).

    Directory watchers see the unnamed file's writes as events on a name ``#<inode>``,
    then the creation of ``path``.
    """
    global _tmpfile  # noqa: PLW0603 - a process-wide "not supported here" latch
    target = os.fspath(path)
    if _tmpfile:
        directory = os.path.dirname(target) or "."
        try:
            fd = os.open(directory, _TMPFILE, mode)
        except OSError as error:
            if error.errno not in _NO_TMPFILE:
                raise
            _tmpfile = False
        else:
            try:
                _write_all(fd, data)
                if durable:
                    os.fsync(fd)
                faults.hit("atomic-write")  # a crash here leaves nothing at all
                # linkat(AT_SYMLINK_FOLLOW) of /proc/self/fd/N names the unnamed file.  Python
                # calls linkat (not link) only when given a dir fd; with an absolute source
                # path the kernel ignores it, so the file's own fd does.
                os.link(f"/proc/self/fd/{fd}", target, src_dir_fd=fd, follow_symlinks=True)
            except FileNotFoundError:
                if os.path.isdir("/proc/self/fd"):
                    raise
                _tmpfile = False  # no /proc: fall back below
            else:
                if durable:
                    fsync_dir(directory)
                return
            finally:
                os.close(fd)
    atomic_write(target, data, durable=durable, mode=mode)


_TMPFILE = getattr(os, "O_TMPFILE", 0) | os.O_WRONLY | os.O_CLOEXEC
# The filesystem or kernel cannot make unnamed files: EOPNOTSUPP, EISDIR (kernels before
# 3.11 read O_TMPFILE as O_DIRECTORY), EINVAL.
_NO_TMPFILE = frozenset({errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL})
_tmpfile = hasattr(os, "O_TMPFILE")


def _write_all(fd: int, data: bytes) -> None:
    written = os.write(fd, data)
    if written < len(data):  # rare (a signal, a full disk): finish the job
        view = memoryview(data)[written:]
        while view:
            view = view[os.write(fd, view) :]


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Make renames and unlinks in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class TooLarge(OSError):
    """A file is larger than the reader allows (it may still be read in part: :func:`read_ends_nofollow`)."""


def read_nofollow(path: str | os.PathLike[str], *, limit: int) -> bytes:
    """Read a regular file, refusing symlinks and anything larger than ``limit`` bytes."""
    return read_nofollow_stat(path, limit=limit)[0]


def read_nofollow_stat(path: str | os.PathLike[str], *, limit: int) -> tuple[bytes, os.stat_result]:
    """As :func:`read_nofollow`, with the ``fstat`` of the file that was read."""
    fd = os.open(path, _READ)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(f"{os.fspath(path)} is not a regular file")
        if info.st_size > limit:
            raise TooLarge(f"{os.fspath(path)} is {info.st_size} bytes, more than the {limit} allowed")
        # One read does for a file that is not growing: asking for a byte more than its size
        # and getting less is the end of the file.
        data = os.read(fd, info.st_size + 1)
        if len(data) > info.st_size:  # it grew since the fstat: read on, within the limit
            chunks = [data]
            total = len(data)
            while total <= limit and (chunk := os.read(fd, 1 << 16)):
                total += len(chunk)
                chunks.append(chunk)
            if total > limit:
                raise TooLarge(f"{os.fspath(path)} grew beyond the {limit} bytes allowed")
            data = b"".join(chunks)
        return data, info
    finally:
        os.close(fd)


def read_ends_nofollow(path: str | os.PathLike[str], *, head: int, tail: int) -> tuple[bytes, bytes, os.stat_result]:
    """The first ``head`` and the last ``tail`` bytes of a regular file (never a symlink), and its ``fstat``.

    For a file too large to read whole: what it says about itself at both ends.
    """
    fd = os.open(path, _READ)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(f"{os.fspath(path)} is not a regular file")
        return os.pread(fd, head, 0), os.pread(fd, tail, max(0, info.st_size - tail)), info
    finally:
        os.close(fd)


def remove_stale_temps(directory: Path, *, older_than: float = 0.0) -> list[Path]:
    """Remove temporary files a killed writer left behind; return what was removed.

    Call it while holding the lock that every writer of ``directory`` takes, or with
    ``older_than`` (seconds) well above how long a live writer keeps its temp file.
    """
    import time

    cutoff = time.time() - older_than
    removed: list[Path] = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return removed
    for entry in entries:
        if entry.name.startswith(".") and entry.name.endswith(TEMP_SUFFIX) and entry.is_file(follow_symlinks=False):
            try:
                if older_than and entry.stat(follow_symlinks=False).st_mtime > cutoff:
                    continue  # maybe a live writer's
            except FileNotFoundError:
                continue
            Path(entry.path).unlink(missing_ok=True)
            removed.append(Path(entry.path))
    return removed


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
