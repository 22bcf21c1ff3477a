"""Reading a template or a playbook index: stdin, a regular file, or HTTP(S), whole-fetch bounded.

* A fetch has one deadline for all of it (connect, headers, every byte of the body) and a
  size bound: a server that drips a byte at a time is cut at the deadline, one that never
  ends at the size.  (``urllib``'s timeout is per socket read: a drip went on for as long
  as the server liked.)  A timer shuts the socket down at the deadline, whatever read is
  blocked; name resolution is the one step it cannot cut.
* Redirects are followed (five at most) only within the origin of the URL asked for:
  a template's origin is what it may reach, so a redirect elsewhere is refused.
* A local file must be a regular file (a FIFO would block, a device never end); it is
  opened non-blocking.  Fetches go direct, not through an HTTP proxy.

Errors: :class:`~infrakit.cli.render.Usage` for what the source's author controls
(too large, not UTF-8, a redirect away), :class:`~infrakit.cli.render.Failure`
for what went wrong on the way (cannot read, HTTP errors, the deadline).
"""

from __future__ import annotations

import os
import stat
import sys
import time
import urllib.parse
from typing import Any, Final

from infrakit.cli.render import Failure, Usage

__all__ = ["MAX_REDIRECTS", "origin", "read"]

MAX_REDIRECTS: Final = 5
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


def origin(source: str) -> str | None:
    """``scheme://host:port`` of an ``http(s)://`` source (the port explicit); ``None`` for this machine's."""
    if "://" not in source:
        return None
    parts = urllib.parse.urlsplit(source)
    if parts.scheme not in _DEFAULT_PORTS:
        return None
    try:
        port = parts.port or _DEFAULT_PORTS[parts.scheme]
    except ValueError:
        port = 0  # refused when fetched, with the URL named
    host = (parts.hostname or "").lower()
    return f"{parts.scheme}://{f'[{host}]' if ':' in host else host}:{port}"


def read(source: str, *, seconds: float, limit: int, deadline: float | None = None) -> str:
    """The text at ``source`` (``-``, a path, ``file://``, ``http(s)://``): at most ``limit`` bytes, UTF-8.

    ``seconds`` bounds the whole fetch, ``deadline`` (``time.monotonic()``) the caller's
    whole work; the nearer applies.
    """
    scheme = urllib.parse.urlsplit(source).scheme if "://" in source else ""
    if source == "-":
        data = sys.stdin.buffer.read(limit + 1)
    elif scheme in ("", "file"):
        data = _read_file(source, scheme=scheme, limit=limit)
    elif scheme in _DEFAULT_PORTS:
        end = time.monotonic() + seconds
        if deadline is None or end <= deadline:
            data = _download(source, deadline=end, limit=limit, bound=f"the fetch took more than {seconds:g} s")
        else:
            data = _download(
                source, deadline=deadline, limit=limit, bound="the render's deadline passed during the fetch"
            )
    else:
        raise Usage(f"{source}: a template is a path, file://, http:// or https:// URL, or - for stdin")
    if len(data) > limit:
        raise Usage(f"{source}: larger than {_size(limit)}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise Usage(f"{source}: not UTF-8 text") from None


def _size(count: int) -> str:
    return f"{count >> 20} MiB" if count >= 1 << 20 and not count % (1 << 20) else f"{count} bytes"


def _read_file(source: str, *, scheme: str, limit: int) -> bytes:
    path = urllib.parse.unquote(urllib.parse.urlsplit(source).path) if scheme == "file" else source
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        raise Failure(f"{source}: cannot read it ({error.strerror or error})") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise Usage(f"{source}: not a regular file (a FIFO or a device); name a template file")
        chunks, total = [], 0
        while total <= limit and (chunk := os.read(fd, min(1 << 20, limit + 1 - total))):
            chunks.append(chunk)
            total += len(chunk)
        return b"".join(chunks)
    except OSError as error:
        raise Failure(f"{source}: cannot read it ({error.strerror or error})") from None
    finally:
        os.close(fd)


def _download(url: str, *, deadline: float, limit: int, bound: str) -> bytes:
    asked = origin(url)
    for _ in range(MAX_REDIRECTS + 1):
        status, location, data = _get(url, deadline=deadline, limit=limit, bound=bound)
        if location is None:
            if status != 200:
                raise Failure(f"{url}: HTTP {status} {data.decode('latin-1')}")
            return data
        target = urllib.parse.urljoin(url, location)
        if origin(target) != asked:
            raise Usage(
                f"{url}: redirected to {target}, another origin; a template is fetched only from the origin "
                "named (use the new address if you trust it)"
            )
        url = target
    raise Failure(f"{url}: more than {MAX_REDIRECTS} redirects")


def _get(url: str, *, deadline: float, limit: int, bound: str) -> tuple[int, str | None, bytes]:
    """One GET: (status, a redirect's Location or None, the body, or the reason of an error status)."""
    import http.client
    import threading

    parts = urllib.parse.urlsplit(url)
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise Failure(f"{url}: {bound}")
    try:
        port = parts.port
    except ValueError:
        raise Usage(f"{url}: not a valid URL (its port)") from None
    if not parts.hostname:
        raise Usage(f"{url}: not a valid URL (no host)")
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        import ssl

        context = ssl.create_default_context()  # verifies; SSL_CERT_FILE names other roots
        connection = http.client.HTTPSConnection(parts.hostname, port, timeout=remaining, context=context)
    else:
        connection = http.client.HTTPConnection(parts.hostname, port, timeout=remaining)
    expired = threading.Event()
    timer = threading.Timer(remaining, _cut, args=(connection, expired))
    timer.daemon = True
    timer.start()
    try:
        path = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
        connection.request("GET", path, headers={"User-Agent": "infrakit-local", "Accept-Encoding": "identity"})
        response = connection.getresponse()
        if response.status in (301, 302, 303, 307, 308):
            location = response.getheader("Location")
            if not location:
                raise Failure(f"{url}: HTTP {response.status} without a Location")
            return response.status, location, b""
        if response.status != 200:
            return response.status, None, str(response.reason).encode("latin-1", "replace")
        declared = response.getheader("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise Usage(f"{url}: larger than {_size(limit)}")
        data = _body(response, limit=limit)
        if expired.is_set():  # the cut ends a read as the end of the body would: not a whole answer
            raise OSError("cut at the deadline")
        if declared is not None and declared.isdigit() and len(data) < int(declared):
            raise Failure(f"{url}: the answer ended after {len(data)} of {declared} bytes")
        return 200, None, data
    except (OSError, http.client.HTTPException) as error:
        if expired.is_set() or time.monotonic() >= deadline:
            raise Failure(f"{url}: {bound}; is the server that slow?") from None
        reason = getattr(error, "reason", None) or getattr(error, "strerror", None) or error or type(error).__name__
        raise Failure(f"{url}: cannot fetch it ({reason})") from None
    finally:
        timer.cancel()
        timer.join()  # no thread left behind: a render forks next
        connection.close()


def _body(response: Any, *, limit: int) -> bytes:
    chunks, total = [], 0
    while total <= limit:
        chunk = response.read1(1 << 16)  # what one read brings: the deadline timer can cut any of them
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def _cut(connection: Any, expired: Any) -> None:
    """At the deadline: shut the socket down, which wakes whatever read is blocked on it."""
    import contextlib
    import socket

    expired.set()
    sock = connection.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
