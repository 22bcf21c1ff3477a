"""Rendering in a forked child with hard bounds: CPU time, memory, output; its I/O asked of the parent.

Jinja2's sandbox keeps a template from Python's internals, not from spending: a 37-byte
template built a 1 GB string, ``9**9**9`` computes in C where no signal handler runs, a
loop of 10^10 iterations is plain Jinja.  Checking each construct would always miss one,
so the whole render runs in a child process that the kernel bounds:

* ``RLIMIT_CPU``: past ``cpu_seconds`` the kernel sends SIGXCPU, a second later SIGKILL;
* ``RLIMIT_AS``: the child's address space may grow by ``memory_bytes``; an allocation
  beyond fails (``MemoryError``: exit 3, never a half-written answer);
* the output is counted as it streams (``generate()``), and refused past ``output_bytes``.

A render costs ~5 ms more than in-process (the fork, and the copy-on-write of what the
child touches; Jinja2 is imported and its lexer built before the fork, so the child does
neither again); a fresh interpreter would cost ~100-200 ms.

The child does no I/O of its own: ``include``, ``env`` and ``metadata`` are requests to
the parent (a :class:`Broker`) over a pipe, answered under the parent's rules (what the
template's origin may reach, the fetch bounds) and within the parent's deadline for the
whole render.  Frames are a 4-byte length and JSON.  Linux only (``fork``, ``/proc``).
"""

from __future__ import annotations

import json
import os
import select
import signal
import struct
import time
from collections.abc import Mapping
from typing import Any, Final, NoReturn, Protocol

from infrakit.cli.render import Failure, Usage

__all__ = ["Broker", "Limits", "render"]

EXIT_MEMORY: Final = 3  # the child ran out of its address space
EXIT_BROKEN: Final = 4  # anything else the child could not report
_HEADER: Final = struct.Struct(">I")


class Limits(Protocol):
    """The bounds this module applies (``rendering.Bounds``)."""

    @property
    def cpu_seconds(self) -> float: ...

    @property
    def memory_bytes(self) -> int: ...

    @property
    def output_bytes(self) -> int: ...

    @property
    def fetch_bytes(self) -> int: ...


class Broker(Protocol):
    """The parent's side: what a template may reach, answered for the template ``ticket`` names.

    Each raises ``Usage`` (refused, the template's fault) or ``Failure`` (it went wrong).
    """

    @property
    def deadline(self) -> float:
        """``time.monotonic()`` by which the whole render must be done."""
        ...

    def include(self, ticket: int, reference: str) -> tuple[int, str, str]:
        """``(ticket, source, text)`` of the template ``reference`` names, seen from template ``ticket``."""
        ...

    def env(self, ticket: int, name: str) -> str | None:
        """The environment variable (``None`` if unset), if template ``ticket`` may read it."""
        ...

    def metadata(self, ticket: int, path: str) -> Any:
        """The metadata value at ``path``, if template ``ticket`` may read it."""
        ...


def render(*, source: str, text: str, variables: Mapping[str, Any], broker: Broker, limits: Limits) -> str:
    """Render ``text`` (template ``source``, ticket 0) in a bounded child; ``Usage``/``Failure`` on error."""
    from infrakit.cli import templating

    templating.prepare()  # imports and caches made once here, not again in each child

    from_child, to_parent = os.pipe()
    from_parent, to_child = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child ends in os._exit; its behaviour is what the tests observe
        os.close(from_child)
        os.close(to_child)
        _child(from_parent, to_parent, source=source, text=text, variables=variables, limits=limits)
    os.close(to_parent)
    os.close(from_parent)
    outcome: dict[str, Any] | None = None
    late = False
    try:
        outcome, late = _serve(from_child, to_child, broker=broker, limits=limits)
    finally:
        os.close(from_child)
        os.close(to_child)
        if outcome is None:
            _kill(pid)
        _, status, usage = os.wait4(pid, 0)
    if outcome is not None:
        if "done" in outcome:
            return str(outcome["done"])
        error = Failure if "failure" in outcome else Usage
        raise error(str(outcome.get("failure") or outcome.get("usage")))
    if late:
        raise Failure(f"{source}: rendering took longer than its deadline (its fetches included)")
    raise Usage(_death(source, status, usage.ru_utime + usage.ru_stime, limits))


def _serve(inbound: int, outbound: int, *, broker: Broker, limits: Limits) -> tuple[dict[str, Any] | None, bool]:
    """Answer the child's requests until it reports; ``(None, late)`` if it died or the deadline passed."""
    limit = 6 * max(limits.output_bytes, limits.fetch_bytes) + (1 << 20)  # JSON escapes at most 6 bytes a character
    while True:
        try:
            frame = _receive(inbound, deadline=broker.deadline, limit=limit)
        except TimeoutError:
            return None, True
        if frame is None:
            return None, False
        call = frame.get("call")
        if call is None:
            return frame, False
        try:
            answer: dict[str, Any] = {"ok": _dispatch(broker, call, frame)}
        except Usage as error:
            answer = {"usage": str(error)}
        except Failure as error:
            answer = {"failure": str(error)}
        try:
            _send(outbound, answer)
        except BrokenPipeError:
            return None, False


def _dispatch(broker: Broker, call: str, frame: Mapping[str, Any]) -> Any:
    ticket = int(frame["ticket"])
    if call == "include":
        return list(broker.include(ticket, str(frame["reference"])))
    if call == "env":
        return broker.env(ticket, str(frame["name"]))
    if call == "metadata":
        return broker.metadata(ticket, str(frame["path"]))
    raise Failure(f"the template's renderer asked for {call!r}")  # pragma: no cover - our own protocol


def _death(source: str, status: int, cpu: float, limits: Limits) -> str:
    """Why the child ended without a word: the bound it hit."""
    cpu_bound = f"{source}: the template used more than {limits.cpu_seconds:g} s of CPU time; it may not loop that long"
    memory = (
        f"{source}: the template needed more than {limits.memory_bytes >> 20} MiB of memory; "
        "it may not build values that large"
    )
    if os.WIFSIGNALED(status):
        signal_number = os.WTERMSIG(status)
        if signal_number == signal.SIGXCPU or (signal_number == signal.SIGKILL and cpu >= limits.cpu_seconds):
            return cpu_bound
        if signal_number in (signal.SIGKILL, signal.SIGABRT, signal.SIGSEGV):
            return memory  # the kernel's OOM killer, or the interpreter giving up after a MemoryError
        return f"{source}: the template's renderer was stopped by signal {signal_number}"
    if os.WEXITSTATUS(status) == EXIT_MEMORY:
        return memory
    return f"{source}: the template's renderer ended without an answer (exit {os.WEXITSTATUS(status)})"


def _kill(pid: int) -> None:
    import contextlib

    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


# -- frames ---------------------------------------------------------------------------------------


def _send(fd: int, message: Mapping[str, Any]) -> None:
    data = json.dumps(message, ensure_ascii=False, default=str).encode("utf-8", "surrogatepass")
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view) :]


def _receive(fd: int, *, deadline: float | None, limit: int) -> dict[str, Any] | None:
    """One frame; ``None`` at the end of the pipe; ``TimeoutError`` past ``deadline``."""
    header = _read_exactly(fd, _HEADER.size, deadline=deadline)
    if header is None:
        return None
    (size,) = _HEADER.unpack(header)
    if size > limit:
        return None  # not ours to read: treated as the child dying
    body = _read_exactly(fd, size, deadline=deadline)
    if body is None:
        return None
    found = json.loads(body.decode("utf-8", "surrogatepass"))
    return found if isinstance(found, dict) else None


def _read_exactly(fd: int, size: int, *, deadline: float | None) -> bytes | None:
    chunks, count = [], 0
    while count < size:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise TimeoutError
        chunk = os.read(fd, min(size - count, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        count += len(chunk)
    return b"".join(chunks)


# -- the child ------------------------------------------------------------------------------------


def _child(
    inbound: int, outbound: int, *, source: str, text: str, variables: Mapping[str, Any], limits: Limits
) -> NoReturn:  # pragma: no cover - runs in the forked child
    code = EXIT_BROKEN
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C: the parent reports it, the child just ends
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 2)  # an interpreter that gives up (a MemoryError in the wrong place) says nothing
        os.dup2(null, 1)
        _limit(limits)
        from infrakit.cli import templating  # imported by the parent already: free

        channel = _Channel(inbound, outbound)
        try:
            done: dict[str, Any] = {"done": templating.render(source, text, variables, channel, limits)}
        except Usage as error:
            done = {"usage": str(error)}
        except Failure as error:
            done = {"failure": str(error)}
        except MemoryError:
            raise
        except Exception as error:  # a defect of ours: still one line, the parent's exit 1
            done = {"failure": f"{source}: internal error in the renderer: {type(error).__name__}: {error}"}
        _send(outbound, done)
        code = 0
    except MemoryError:
        code = EXIT_MEMORY
    finally:
        os._exit(code)


def _limit(limits: Limits) -> None:  # pragma: no cover - runs in the forked child
    import math
    import resource

    cpu = max(1, math.ceil(limits.cpu_seconds))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    with open("/proc/self/statm", "rb") as stream:
        size = int(stream.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    wanted = size + limits.memory_bytes
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    resource.setrlimit(resource.RLIMIT_AS, (wanted, wanted))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))  # it writes no file


class _Channel:
    """The child's end: a helper call becomes a request, its answer a value or the parent's error."""

    def __init__(self, inbound: int, outbound: int) -> None:
        self.inbound = inbound
        self.outbound = outbound

    def call(self, method: str, /, **arguments: Any) -> Any:  # pragma: no cover - runs in the forked child
        _send(self.outbound, {"call": method, **arguments})
        answer = _receive(self.inbound, deadline=None, limit=1 << 40)
        if answer is None:
            os._exit(EXIT_BROKEN)  # the parent is gone
        if "usage" in answer:
            raise Usage(str(answer["usage"]))
        if "failure" in answer:
            raise Failure(str(answer["failure"]))
        return answer.get("ok")
