"""Who may call a plugin daemon: the checks every request passes first (aiohttp; daemons only).

The plugin protocol has no authentication (InfraKit's had none), so a daemon is as safe
as who can reach it: a unix socket in a 0700 directory, or a TCP port.  A TCP port on
loopback is reachable by every web page the machine's browser opens, and a page may
send, without asking (no CORS preflight), a ``POST`` whose Content-Type is missing,
``text/plain`` or a form's: gorilla/rpc (InfraKit v0.5's server) took such a body as
JSON-RPC, and so did we.  A page may also make its own DNS name resolve to 127.0.0.1
after it loaded (DNS rebinding) and then read the answers.  So every request, on every
listener, is refused before any handler runs when:

* it is a ``POST`` whose Content-Type is not ``application/json`` (415): a page cannot
  send that type cross-site without a preflight, which we never answer;
* it carries an ``Origin`` header (403): browsers put one on every cross-site request
  and on every ``POST``; no plugin client sends one (InfraKit's Go client, ours, curl);
* on TCP, its ``Host`` is a DNS name other than ``localhost``, this machine's host name
  or the name given to ``--listen`` (403): a rebound page names its own domain.  IP
  literals are accepted (they cannot be rebound), and so is a missing ``Host``
  (HTTP/1.0: no browser).  A unix socket accepts any ``Host`` (no browser dials one,
  and clients name it as they like: InfraKit's Go client sends ``h``);
* on TCP, with a token configured (``--token-file``; off by default so InfraKit's own
  CLI keeps working), it lacks ``Authorization: Bearer <token>`` (401), compared in
  constant time.  Our clients send the token of ``$INFRAKIT_TOKEN_FILE``.

What this does not do: encrypt (use a unix socket, or a tunnel), or tell one local user
from another on a loopback port without a token.
"""

from __future__ import annotations

import dataclasses
import hmac
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Middleware

__all__ = ["Access", "middleware"]

_JSON: Final = "application/json"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Access:
    """What a daemon accepts beyond the fixed checks: a token for TCP, and ``Host`` names."""

    token: str | None = None
    """Required on TCP listeners as ``Authorization: Bearer <token>`` when set."""
    hosts: frozenset[str] = frozenset()
    """DNS names accepted in ``Host`` on TCP, besides localhost and this machine's name."""


_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def middleware(access: Access) -> Middleware:
    """The aiohttp middleware refusing what :class:`Access` and the fixed checks refuse."""
    names = {name.lower().rstrip(".") for name in access.hosts} | {"localhost", socket.gethostname().lower()}
    expected = f"Bearer {access.token}".encode() if access.token else None

    @web.middleware
    async def guard(request: web.Request, handler: _Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is not None:
            return _refuse(
                403,
                f"refused: the request carries an Origin header ({_quote(origin)}), as a web page's "
                "cross-site request does; plugin clients send none",
            )
        sockname = request.transport.get_extra_info("sockname") if request.transport is not None else None
        tcp = isinstance(sockname, tuple)
        host = request.headers.get("Host")
        if tcp and host is not None and not _host_allowed(host, names):
            return _refuse(
                403,
                f"refused: Host {_quote(host)} is not this daemon's (a page rebinding its DNS name would send "
                "its own): dial an IP address, localhost, or the name given to --listen",
            )
        if tcp and expected is not None:
            given = request.headers.get("Authorization", "").encode("utf-8", "replace")
            if not hmac.compare_digest(given, expected):
                return _refuse(
                    401,
                    "this daemon requires its token (Authorization: Bearer ...): set INFRAKIT_TOKEN_FILE "
                    "to the file given to its --token-file",
                    headers={"WWW-Authenticate": 'Bearer realm="infrakit"'},
                )
        if request.method == "POST":
            kind = request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
            if kind != _JSON:
                # gorilla's words, then why: a body of another type could come from a web page.
                return _refuse(415, f"unrecognized Content-Type: {_quote(kind) if kind else '(none)'}; send {_JSON}")
        return await handler(request)

    return guard


def _host_allowed(header: str, names: set[str]) -> bool:
    host = header.strip().lower()
    if host.startswith("["):  # [::1]:8080
        end = host.find("]")
        name = host[1:end] if end > 0 else host
    else:
        name = host.rpartition(":")[0] if host.count(":") == 1 else host
    name = name.rstrip(".")
    if not name:
        return False
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return name in names
    return True  # an IP address cannot be rebound


def _quote(text: str) -> str:
    """A header's value for a one-line message: as it is when plain, else ``repr`` (cut at 100)."""
    return text if text.isprintable() and len(text) <= 100 else repr(text[:100])


def _refuse(status: int, message: str, *, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=f"rpc: {message}", headers=headers)
