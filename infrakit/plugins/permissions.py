"""Whom the file plugin trusts in its instance directory, and the modes it writes with.

An instance file is the whole record of an instance: its tags say which group it
belongs to, and a group destroys what is surplus among its members.  So a file that
someone else could have written must never count as an instance (issue 19: files
planted in the shared temp directory with a group's tags became the group, and the
real instances were destroyed as surplus).  :mod:`infrakit.plugins.instance_file`
applies these rules to the ``stat`` results it has anyway, so they cost nothing:

* **A file** is an instance only if the plugin's own user owns it (``st_uid ==
  geteuid()``) and not every user may write it.  Another user's file, or one anybody may
  have rewritten, is skipped with a warning naming it (once), and ``label`` and
  ``destroy`` refuse it.  Group-writable is fine: Kubernetes' ``fsGroup`` makes a
  volume's files so, for the pod's own group.  Hard links need no rule: a file names
  itself (its ``ID``), so a link under another name is never an instance.
* **The directory** is refused (a one-line ``PluginError`` naming it and the fix) if
  every user may write in it without the sticky bit (anyone could remove, rename or
  replace our files), or if a user other than the plugin's own or root owns it (its owner
  could do the same, and chmod it).  It is warned about, once, if every user may add files
  to it with the sticky bit (as in ``/tmp``: their files are ignored, ours cannot be
  touched) or if a group other than the plugin's own may write in it.
* **What the plugin creates** is private: the directory ``0700`` and files ``0600``,
  temp files included (they are created with the final mode, never widened later).  A
  ``file_mode`` of ``0640``, ``0604`` or ``0644`` lets the group or others read them; the
  directory is then ``r-x`` for the same.  Writing stays the owner's alone.

Not protected: root and the plugin's own user (they can do anything); a parent of the
directory that others may write (they could swap the directory itself: use a ``--dir``
whose parents are not writable by others, as ``$INFRAKIT_HOME`` is); files written by
versions before these rules (``0644``: ``chmod 600 DIR/instance-*``).
"""

from __future__ import annotations

import os
import stat
from typing import Final

from infrakit.plugins import spi

__all__ = ["DEFAULT_FILE_MODE", "check_directory", "directory_mode", "file_problem", "parse_file_mode"]

DEFAULT_FILE_MODE: Final = 0o600
_READABLE: Final = 0o044  # the read bits file_mode may add for the group and others


def parse_file_mode(text: str) -> int:
    """An instance file mode from octal text (``0640``); ``ValueError`` saying what is allowed."""
    try:
        value = int(text.removeprefix("0o"), 8)
    except ValueError:
        raise ValueError(f"{text!r} is not an octal mode; give one such as 0600 or 0640") from None
    check_file_mode(value)
    return value


def check_file_mode(value: int) -> None:
    """Refuse a file mode other than 0600 plus read bits for the group or others."""
    if not 0 <= value <= 0o7777 or value & ~0o777:
        raise ValueError(f"{value:#o} is not a file mode for instance files: 0600, 0640, 0604 or 0644")
    if value & 0o600 != 0o600:
        raise ValueError(f"{value:04o} leaves the owner unable to read or write; 0600 at least")
    if value & 0o022:
        raise ValueError(
            f"{value:04o} lets other users write instance files (they could forge their tags); "
            "only read bits may be added: 0640, 0604 or 0644"
        )
    if value & 0o111:
        raise ValueError(f"{value:04o} makes instance files executable; they are data: 0600, 0640, 0604 or 0644")


def directory_mode(file_mode: int) -> int:
    """The directory's mode for ``file_mode``: ``rwx`` for the owner, ``r-x`` for whoever may read the files."""
    mode = 0o700
    if file_mode & 0o040:
        mode |= 0o050
    if file_mode & 0o004:
        mode |= 0o005
    return mode


def check_directory(path: str, info: os.stat_result, *, uid: int, gid: int) -> str | None:
    """Refuse (``PluginError``) a directory others could rewrite; return what to warn about, if anything.

    ``uid`` and ``gid`` are the plugin's effective user and group.
    """
    mode = stat.S_IMODE(info.st_mode)
    if info.st_uid not in (uid, 0):
        raise spi.PluginError(
            f"refusing the instance directory {path}: it belongs to uid {info.st_uid}, not to this plugin's "
            f"user (uid {uid}) nor to root, and its owner could remove or replace instances; use a directory "
            f"of your own (--dir) or chown {uid} {path}"
        )
    if mode & 0o002 and not mode & stat.S_ISVTX:
        raise spi.PluginError(
            f"refusing the instance directory {path}: every user may write in it (mode {mode:04o}), so anyone "
            f"could remove or replace instances; chmod o-w {path} (or +t), or use a directory of your own (--dir)"
        )
    if mode & 0o002:
        return (
            f"every user may add files to it (mode {mode:04o}, sticky): theirs are never instances and ours "
            f"cannot be touched, but a directory of your own is better (chmod 700 {path})"
        )
    if mode & 0o020 and info.st_gid != gid:
        return (
            f"members of group {info.st_gid} may remove or replace instances in it (mode {mode:04o}); "
            f"chmod g-w {path} unless that is intended"
        )
    return None


def file_problem(info: os.stat_result, *, uid: int) -> str | None:
    """Why the file ``info`` describes cannot be an instance of the plugin running as ``uid``, or None."""
    if info.st_uid != uid:
        return (
            f"belongs to uid {info.st_uid}, not to this plugin's user (uid {uid}): not an instance of ours "
            "(planted by another user?); ignored, never labelled nor destroyed"
        )
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o002:
        return (
            f"may be rewritten by every user (mode {mode:04o}), so its tags cannot be trusted; ignored until "
            "`chmod o-w` it"
        )
    return None
