"""Readiness (``/readyz``), apart from liveness (kopf's ``/healthz``).

Liveness says the process still answers: kubelet restarts it when not.  Readiness says
the operator is doing its job and its metrics mean something; a rollout waits for it:

1. the cache is synced: every Group the API server listed when the operator started
   (in the namespaces it serves) has been delivered by kopf's watch into the cluster
   store's cache (or is gone by a later listing);
2. the first pass is done: on the leader, each of those Groups has been synced once;
3. the Lease is known: this replica is the leader, or a standby that has seen who
   holds it (an operator cut off from the API server knows neither, and is not ready).

Once (1) and (2) have held they stay done (a standby that is elected later is not
unready while it catches up); (3) is checked on every probe.  The state is kept here,
without I/O, so that it is unit-tested with plain calls; :func:`serve` puts it behind
an aiohttp route on its own port (kopf's health server serves one path only).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from infrakit.runtime import stores

if TYPE_CHECKING:
    import aiohttp.web

__all__ = ["Readiness", "Report", "serve"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Report:
    """What ``/readyz`` answers: ready or not, and why (a JSON body either way)."""

    ready: bool
    reason: str
    leader: bool
    holder: str | None
    groups: int
    pending: int

    def json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


class Readiness:
    """The readiness state of one operator process.

    ``cached`` says whether a key is in the store's cache; ``lease`` returns
    ``(known, leader, holder)``.  The operator calls :meth:`listed` with the keys of
    each start-up listing, and :meth:`synced` with the key of every sync result.
    """

    def __init__(
        self,
        *,
        cached: Callable[[stores.Key], bool],
        lease: Callable[[], tuple[bool, bool, str | None]],
    ) -> None:
        self._cached = cached
        self._lease = lease
        self._listed: set[stores.Key] | None = None  # None: no listing has succeeded yet
        self._synced: set[stores.Key] = set()
        self._passed = False  # (1) and (2) held once

    @property
    def passed(self) -> bool:
        """Whether the cache was synced and the first pass done (latched)."""
        return self._passed

    def listed(self, keys: Iterable[stores.Key]) -> None:
        """A listing of the Groups served: the first one sets the pass; later ones drop the deleted."""
        fresh = set(keys)
        self._listed = fresh if self._listed is None else self._listed & fresh

    def synced(self, key: stores.Key) -> None:
        if not self._passed:
            self._synced.add(key)

    def check(self) -> Report:
        known, leader, holder = self._lease()
        pending = self._pending(leader=leader)
        groups = len(self._listed or ())
        if not self._passed and self._listed is not None and not pending:
            self._passed = True
            self._synced.clear()
        if self._listed is None and not self._passed:
            reason = "the Groups have not been listed yet"
        elif not self._passed:
            what = "synced once" if leader else "delivered by the watch"
            reason = f"{len(pending)} of {groups} Groups not yet {what}"
        elif not known:
            reason = "the leader Lease could not be read: neither leader nor standby"
        else:
            reason = "leader" if leader else f"standby: the Lease is held by {holder or 'nobody'}"
        ready = self._passed and known
        return Report(ready=ready, reason=reason, leader=leader, holder=holder, groups=groups, pending=len(pending))

    def _pending(self, *, leader: bool) -> set[stores.Key]:
        if self._passed or self._listed is None:
            return set()
        if leader:
            return self._listed - self._synced
        return {key for key in self._listed if not self._cached(key) and key not in self._synced}


async def serve(readiness: Readiness, *, host: str, port: int, path: str) -> Callable[[], Any]:
    """Serve ``readiness`` at ``http://host:port/path``; return the coroutine function that stops it."""
    import aiohttp.web  # heavy: the operator's alone

    async def handle(_: aiohttp.web.Request) -> aiohttp.web.Response:
        report = readiness.check()
        return aiohttp.web.Response(
            status=200 if report.ready else 503, text=report.json(), content_type="application/json"
        )

    app = aiohttp.web.Application()
    app.add_routes([aiohttp.web.get(path, handle)])
    runner = aiohttp.web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0, access_log=None)
    await runner.setup()
    await aiohttp.web.TCPSite(runner, host, port).start()
    return runner.cleanup
