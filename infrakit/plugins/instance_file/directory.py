"""One instance directory's changes: one inotify watch, many listeners (client-go's shared informer).

A :class:`Directory` holds the one inotify descriptor of a plugin's instance directory.
Whoever reads it first hands every event to every :class:`Listener`: a describe
draining the listing's journal (a worker thread; :mod:`.listing`), or the event loop of
a change feed (:func:`changes`), told by the loop that the descriptor is readable (no
thread of our own).  The kernel queues an event inside the very system call that
changes the directory, and a drain reads the descriptor before it answers, so it sees
every change made before it began.

The plugin's own creations go through it: ``provision`` says what it is about to create
(:meth:`Directory.creating`, before the file exists), so its creation event is known
for the plugin's own as it is read (``OWN``), for every listener at once: the listing
takes the description ``provision`` already has rather than reading the file back, and a
change feed does not report it (the sync that made it knows).  Nothing is suppressed
after the fact.  Anything else happening to the name in the same drain makes it
``SEVERAL``: read it again.

A listener is *lost* (``drain`` gives ``None``: list everything again, then listen anew)
when the kernel's queue overflowed, the directory was removed, moved or replaced, or the
listener was left holding more than :data:`MAX_PENDING` names (nobody drained it: the
memory stays bounded).  Where there is no inotify (not Linux), a change feed compares
listings every second instead.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import threading
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, Final

from infrakit.plugins.instance_file import documents

if TYPE_CHECKING:
    import asyncio

__all__ = ["CREATED", "MAX_PENDING", "OWN", "SEVERAL", "Directory", "Drained", "Listener", "changes", "identity"]

SEVERAL: Final = -1  # a name with more than one event since the last drain
OWN: Final = -2  # a name the plugin created, nothing else happening to it since
CREATED: Final = 0x100  # IN_CREATE alone: what linking a new file in (provision) makes
MAX_PENDING: Final = 16384  # names a listener holds undrained before it is lost (the kernel's own queue bound)

_DEBOUNCE: Final = 0.2  # seconds a change feed collects a burst of changes, at most
_STEP: Final = 0.01  # a burst ends after this long without changes
_CHECK: Final = 1.0  # seconds between checks that the watched directory is still the same one


def identity(path: str) -> tuple[int, int] | None:
    """The (st_dev, st_ino) of the directory at ``path``, None if there is none."""
    import stat

    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_dev, info.st_ino) if stat.S_ISDIR(info.st_mode) else None


@dataclasses.dataclass(frozen=True, slots=True)
class Drained:
    """What changed since a listener's last drain."""

    changed: dict[str, int]  # name -> its event's mask, SEVERAL or OWN
    made: dict[str, Any]  # what the plugin said of the names it created (those marked OWN)


class Listener:
    """One consumer of a directory's events since it began to listen; :meth:`close` when done."""

    def __init__(self, directory: Directory) -> None:
        self.directory = directory
        self.changed: dict[str, int] = {}
        self.made: dict[str, Any] = {}
        self.lost = False

    def drain(self) -> Drained | None:
        """What changed since the last drain (reading what the kernel queued first); None when lost."""
        return self.directory._drain(self)

    def close(self) -> None:
        self.directory._remove(self)


class Directory:
    """The inotify watch of one instance directory, shared by its listeners; thread-safe."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.identity: tuple[int, int] | None = None  # of the directory watched
        self.pending: dict[str, Any] = {}  # creations the plugin announced, whose event is not read yet
        self._lock = threading.Lock()
        self._notify: Any = None  # inotify_simple.INotify, open while anyone listens
        self._flags: Any = None
        self._wd: int | None = None  # the directory's watch
        self._ancestor: tuple[int, str] | None = None  # watched while the directory is missing
        self._listeners: list[Listener] = []
        self._loops: dict[asyncio.AbstractEventLoop, int] = {}  # reading the descriptor when readable
        self._wakes: list[Callable[[], None]] = []  # told (from any thread) when events were read

    # -- listening ------------------------------------------------------------------------

    def listen(self) -> Listener | None:
        """A listener from now on; None if there is no directory to watch.

        ``OSError`` if it cannot be watched (no inotify here, no watch left).
        """
        with self._lock:
            self._open()
            try:
                armed = self._arm()
            except OSError:
                self._close_unused()
                raise
            if armed is None:
                self._close_unused()
                return None
            listener = Listener(self)
            self._listeners.append(listener)
            return listener

    def creating(self, name: str, made: Any) -> bool:
        """The plugin is about to create ``name`` (``made``: what it knows of it); whether anyone listens."""
        with self._lock:
            if self._wd is None or not any(not listener.lost for listener in self._listeners):
                return False
            self.pending[name] = made
            return True

    def abandon(self, name: str) -> None:
        """The creation announced for ``name`` did not happen (what is there is someone else's: read it)."""
        with self._lock:
            self.pending.pop(name, None)
            for listener in self._listeners:
                if listener.changed.get(name) == OWN:
                    listener.changed[name] = SEVERAL
                    listener.made.pop(name, None)

    def verify(self, current: tuple[int, int] | None = None) -> bool:
        """Whether the directory watched is still the one at the root (``current``: its identity, if
        known); if not, every listener is lost."""
        if current is None:
            current = identity(self.root)
        with self._lock:
            if self._wd is None or current == self.identity:
                return True
            self._drop_watch()
            return False

    def close(self) -> None:
        """Lose every listener and close the descriptor (unless an event loop still reads it)."""
        with self._lock:
            self._lose_all()
            self._listeners.clear()
            self._close_unused()

    # -- event loops ----------------------------------------------------------------------

    def attach(self, loop: asyncio.AbstractEventLoop, wake: Callable[[], None]) -> bool:
        """Have ``loop`` read the descriptor when the kernel has events; ``wake`` is called (from any
        thread, never blocking) whenever events were read.  False if there is no inotify here."""
        with self._lock:
            try:
                self._open()
            except OSError:
                return False
            if not self._loops.get(loop):
                loop.add_reader(self._notify.fileno(), self._poll)
            self._loops[loop] = self._loops.get(loop, 0) + 1
            self._wakes.append(wake)
            return True

    def detach(self, loop: asyncio.AbstractEventLoop, wake: Callable[[], None]) -> None:
        with self._lock:
            self._wakes.remove(wake)
            self._loops[loop] -= 1
            if not self._loops[loop]:
                del self._loops[loop]
                loop.remove_reader(self._notify.fileno())
            self._close_unused()

    def watch_ancestor(self) -> bool:
        """Watch the nearest existing ancestor of the missing directory (an attached loop is told of
        what appears in it); False if the directory or a nearer ancestor appeared meanwhile."""
        nearest = self._nearest()
        with self._lock:
            if self._notify is None:
                return True
            if self._ancestor is None or self._ancestor[1] != nearest:
                self._unwatch_ancestor()
                flags = self._flags
                mask = flags.CREATE | flags.MOVED_TO | flags.DELETE_SELF | flags.MOVE_SELF | flags.ONLYDIR
                try:
                    self._ancestor = (self._notify.add_watch(nearest, mask), nearest)
                except OSError:
                    return True  # gone meanwhile, or not ours to watch: look again after a while
        return identity(self.root) is None and self._nearest() == nearest

    def _nearest(self) -> str:
        ancestor = os.path.dirname(self.root)
        while ancestor != os.path.dirname(ancestor) and identity(ancestor) is None:
            ancestor = os.path.dirname(ancestor)
        return ancestor

    # -- the reader (called with the lock held, but for _poll) ---------------------------------

    def _open(self) -> None:
        if self._notify is not None:
            return
        try:
            import inotify_simple  # lazy: only a long-lived plugin or a change feed watches
        except ImportError:  # not Linux
            raise OSError(errno.ENOSYS, "no inotify on this system") from None
        self._notify = inotify_simple.INotify(nonblocking=True)
        self._flags = inotify_simple.flags

    def _arm(self) -> tuple[int, int] | None:
        """Watch the directory now at the root (if not already): its identity, None if there is none."""
        if self._wd is not None:
            return self.identity
        flags = self._flags
        mask = (
            flags.CREATE | flags.DELETE | flags.MOVED_FROM | flags.MOVED_TO | flags.MODIFY | flags.CLOSE_WRITE
            | flags.ATTRIB | flags.DELETE_SELF | flags.MOVE_SELF | flags.ONLYDIR | flags.DONT_FOLLOW
            | flags.EXCL_UNLINK
        )  # fmt: skip
        try:
            wd = self._notify.add_watch(self.root, mask)
        except (FileNotFoundError, NotADirectoryError):
            return None
        # Whatever replaces the inode watched from here on is an event on it (deleted, moved).
        found = identity(self.root)
        if found is None:
            with contextlib.suppress(OSError):
                self._notify.rm_watch(wd)
            return None
        self._wd, self.identity = wd, found
        self._unwatch_ancestor()
        return found

    def _poll(self) -> None:
        """An event loop's reader: the descriptor is readable."""
        with self._lock:
            read = self._read()
            wakes = list(self._wakes) if read else []
        for wake in wakes:
            wake()

    def _drain(self, listener: Listener) -> Drained | None:
        with self._lock:
            read = self._read()
            wakes = list(self._wakes) if read else []
            if listener.lost:
                drained = None
            else:
                drained = Drained(listener.changed, listener.made)
                listener.changed, listener.made = {}, {}
        for wake in wakes:
            wake()
        return drained

    def _read(self) -> bool:
        """Hand what the kernel queued to every listener; whether there was anything."""
        if self._notify is None:
            return False
        try:
            events = self._notify.read(timeout=0)
        except OSError:
            self._lose_all()
            return True
        flags = self._flags
        gone = flags.IGNORED | flags.DELETE_SELF | flags.MOVE_SELF | flags.UNMOUNT
        for event in events:
            if event.mask & flags.Q_OVERFLOW:
                self._lose_all()
            elif event.wd != self._wd or self._wd is None:
                continue  # the ancestor's (a wake is enough), or a watch dropped already
            elif event.mask & gone:
                self._drop_watch()
            elif documents.INSTANCE_ID.fullmatch(event.name):
                self._record(event.name, event.mask)
        return bool(events)

    def _record(self, name: str, mask: int) -> None:
        made = self.pending.pop(name, None) if mask == CREATED else None
        for listener in self._listeners:
            if listener.lost:
                continue
            if name in listener.changed:
                listener.changed[name] = SEVERAL
                listener.made.pop(name, None)
            elif made is not None:
                listener.changed[name] = OWN
                listener.made[name] = made
            else:
                listener.changed[name] = mask
                if len(listener.changed) > MAX_PENDING:
                    self._lose(listener)

    def _drop_watch(self) -> None:
        """The directory watched is gone, moved or replaced: every listener must list it again."""
        if self._wd is not None:
            with contextlib.suppress(OSError):  # removed already (IGNORED)
                self._notify.rm_watch(self._wd)
        self._wd = self.identity = None
        self._lose_all()

    def _lose_all(self) -> None:
        for listener in self._listeners:
            self._lose(listener)
        self.pending.clear()  # their creations may be among what was lost: read back, if so

    @staticmethod
    def _lose(listener: Listener) -> None:
        listener.lost = True
        listener.changed, listener.made = {}, {}

    def _remove(self, listener: Listener) -> None:
        with self._lock:
            with contextlib.suppress(ValueError):
                self._listeners.remove(listener)
            self._lose(listener)
            self._close_unused()

    def _unwatch_ancestor(self) -> None:
        if self._ancestor is not None:
            with contextlib.suppress(OSError):
                self._notify.rm_watch(self._ancestor[0])
            self._ancestor = None

    def _close_unused(self) -> None:
        if self._notify is not None and not self._listeners and not self._loops:
            with contextlib.suppress(OSError):
                self._notify.close()
            self._notify = None
            self._wd = self.identity = self._ancestor = None
            self.pending.clear()


# -- the change feed ---------------------------------------------------------------------------


async def changes(directory: Directory, *, warn: Callable[[str], None]) -> AsyncIterator[frozenset[str] | None]:
    """The names that changed in ``directory`` (see ``FilePlugin.changes``), in debounced bursts.

    ``None`` first, once listening, and again whenever its listener was lost (the directory
    replaced, the queue overflowed): list everything again.  A missing directory is waited
    for, watching its nearest existing ancestor (never creating it).  ``warn`` is told why
    the directory cannot be watched, if it cannot.
    """
    import asyncio

    loop = asyncio.get_running_loop()
    woken = asyncio.Event()

    def wake() -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: its consumer is gone
            loop.call_soon_threadsafe(woken.set)

    if not directory.attach(loop, wake):
        async for polled in _polled(directory.root):
            yield polled
        return
    listener: Listener | None = None
    try:
        while True:
            try:
                listener = directory.listen()
            except OSError as error:  # out of inotify watches, say: try again, slowly
                warn(f"cannot be watched ({error}); retrying")
                await _wait(woken, _CHECK)
                continue
            if listener is None:
                if directory.watch_ancestor():
                    await _wait(woken, _CHECK)
                continue
            yield None
            while (burst := await _burst(directory, listener, woken)) is not None:
                if burst:
                    yield burst
            listener.close()
            listener = None
    finally:
        if listener is not None:
            listener.close()
        directory.detach(loop, wake)


async def _burst(directory: Directory, listener: Listener, woken: asyncio.Event) -> frozenset[str] | None:
    """The next burst of names changed by others (empty: none of note); None: the listener is lost."""
    import asyncio

    if not await _wait(woken, _CHECK):  # quiet for a while: still the same directory?
        return frozenset() if directory.verify() else None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _DEBOUNCE
    while (left := deadline - loop.time()) > 0 and await _wait(woken, min(_STEP, left)):
        pass
    drained = listener.drain()
    if drained is None:
        return None
    return frozenset(name for name, mask in drained.changed.items() if mask != OWN)


async def _wait(woken: asyncio.Event, timeout: float) -> bool:
    """Whether ``woken`` was set within ``timeout`` seconds (and clear it for the next wait)."""
    import asyncio

    try:
        await asyncio.wait_for(woken.wait(), timeout)
    except TimeoutError:
        return False
    woken.clear()
    return True


async def _polled(root: str) -> AsyncIterator[frozenset[str] | None]:
    """Without inotify: the names whose ``(inode, size, mtime, ctime)`` differ, once a second."""
    import asyncio

    seen = _snapshot(root)  # before the consumer lists: what changes after is told
    yield None
    while True:
        await asyncio.sleep(_CHECK)
        now = _snapshot(root)
        changed = frozenset(name for name in now.keys() | seen.keys() if now.get(name) != seen.get(name))
        seen = now
        if changed:
            yield changed


def _snapshot(root: str) -> dict[str, tuple[int, int, int, int]]:
    found = {}
    with contextlib.suppress(OSError), os.scandir(root) as entries:
        for entry in entries:
            if documents.INSTANCE_ID.fullmatch(entry.name):
                with contextlib.suppress(OSError):
                    info = entry.stat(follow_symlinks=False)
                    found[entry.name] = (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
    return found
