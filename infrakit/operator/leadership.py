"""One acting replica at a time: leader election on a ``coordination.k8s.io`` Lease.

The replica holding the Lease acts; the others only watch.  The algorithm is
client-go's ``leaderelection`` (tryAcquireOrRenew), so that it is safe whatever the
replicas' wall clocks say:

- Remote timestamps are never compared with the local clock.  Each replica remembers
  the Lease record as it last observed it (``observed``) and the *local monotonic*
  time at which that record last changed (``observed_at``).  A holder that renews
  changes the record (its renewTime) every ``renew`` seconds, whatever time it writes.
- A non-holder takes over only when the record has not changed for the Lease's
  ``leaseDurationSeconds`` of its own monotonic time (or when nobody holds it).
- The holder renews every ``renew`` seconds and is leader only until ``deadline``
  (< duration) after the *start* of its last successful renewal, on its monotonic
  clock.  Any contender saw that renewal land after it started, so it waits at least
  ``duration`` from a later moment: the old leader has stopped before anyone else may
  start, and a replica cut off from the API server stops acting on its own.
- Every write carries the resourceVersion it read, so two contenders cannot both win:
  one gets a 409 (``Conflict``), which also ends the loser's leadership at once.

The runtime checks :meth:`Elector.is_leader` before every write; ``on_elected`` and
``on_lost`` tell it when to start and stop.  The Kubernetes calls sit behind the small
:class:`Leases` seam (:class:`KubernetesLeases` adapts ``CoordinationV1Api``), so the
election is unit-tested against an in-memory store with a fake clock.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from infrakit.operator import metrics

if TYPE_CHECKING:
    import kubernetes

__all__ = ["Conflict", "Elector", "KubernetesLeases", "Leases", "Record"]

log = logging.getLogger(__name__)

FIELD_MANAGER = "infrakit-operator"
"""How the Lease's writes show in its managedFields."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Record:
    """The election's view of a Lease's spec; ``version`` is the resourceVersion it was read at.

    Two records are equal when their spec fields are: a change of resourceVersion alone
    (someone edited a label) is not a renewal, as in client-go.
    """

    holder: str | None
    duration: int
    acquired: datetime.datetime | None = None
    renewed: datetime.datetime | None = None
    transitions: int = 0
    version: str = dataclasses.field(default="", compare=False)


class Conflict(Exception):
    """The Lease was written by someone else since it was read (or it exists already): HTTP 409."""


@runtime_checkable
class Leases(Protocol):
    """Where Leases are kept: the Kubernetes API, or an in-memory fake in tests."""

    async def read(self, *, namespace: str, name: str) -> Record | None:
        """The Lease's record, or None if there is no such Lease."""
        ...

    async def create(self, *, namespace: str, name: str, record: Record) -> Record:
        """Create the Lease; raise :class:`Conflict` if it exists.  Returns the record as stored."""
        ...

    async def replace(self, *, namespace: str, name: str, record: Record) -> Record:
        """Replace the Lease if it is still at ``record.version``, else raise :class:`Conflict`."""
        ...


class KubernetesLeases:
    """:class:`Leases` over ``kubernetes.client.CoordinationV1Api`` (blocking calls run in a thread)."""

    def __init__(self, coordination: Any, *, timeout: float) -> None:
        self.coordination = coordination
        self.timeout = timeout  # no call may hang past the point where its answer is useless

    async def read(self, *, namespace: str, name: str) -> Record | None:
        from kubernetes.client.exceptions import ApiException  # heavy: imported when used

        try:
            lease = await asyncio.to_thread(
                self.coordination.read_namespaced_lease, name, namespace, _request_timeout=self.timeout
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return _record(lease)

    async def create(self, *, namespace: str, name: str, record: Record) -> Record:
        body = {"metadata": {"name": name, "namespace": namespace}, "spec": _spec(record)}
        return await self._write(self.coordination.create_namespaced_lease, namespace, body)

    async def replace(self, *, namespace: str, name: str, record: Record) -> Record:
        body = {
            "metadata": {"name": name, "namespace": namespace, "resourceVersion": record.version},
            "spec": _spec(record),
        }
        return await self._write(self.coordination.replace_namespaced_lease, name, namespace, body)

    async def _write(self, call: Callable[..., Any], *args: Any) -> Record:
        from kubernetes.client.exceptions import ApiException  # heavy: imported when used

        try:
            lease = await asyncio.to_thread(call, *args, field_manager=FIELD_MANAGER, _request_timeout=self.timeout)
        except ApiException as error:
            if error.status == 409:
                raise Conflict(error.reason or "Conflict") from None
            raise
        return _record(lease)


class Elector:
    """Acquire and keep one Lease; see the module docstring for the algorithm.

    ``api`` is a ``kubernetes.client.ApiClient`` (the Lease is kept through the API) or
    any :class:`Leases`.  ``duration`` is the leaseDurationSeconds written into the
    Lease, ``renew`` the retry period, ``deadline`` how long after a successful renewal
    the holder stays leader (default two thirds of ``duration``).  ``on_elected`` and
    ``on_lost`` are called from the election loop on each change of :meth:`is_leader`
    that the loop sees (not on a release at shutdown: the runtime is stopping anyway).
    ``clock`` (monotonic seconds), ``wall`` (the times written into the Lease, for
    humans only) and ``sleep`` are for tests.
    """

    def __init__(
        self,
        api: kubernetes.client.ApiClient | Leases,
        *,
        namespace: str,
        name: str,
        identity: str,
        duration: float = 15.0,
        renew: float = 2.0,
        deadline: float | None = None,
        on_elected: Callable[[], None] | None = None,
        on_lost: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime.datetime] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        deadline = duration * 2 / 3 if deadline is None else deadline
        if not 0 < renew < deadline < duration:
            raise ValueError(
                f"leader election needs 0 < renew ({renew:g}s) < deadline ({deadline:g}s) < duration ({duration:g}s)"
            )
        if isinstance(api, Leases):
            self.leases: Leases = api
        else:
            import kubernetes  # heavy: imported when used

            self.leases = KubernetesLeases(kubernetes.client.CoordinationV1Api(api), timeout=deadline)
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.duration = duration
        self.renew = renew
        self.deadline = deadline
        self.on_elected = on_elected
        self.on_lost = on_lost
        self._clock = clock
        self._wall = wall or _now
        self._sleep = sleep
        # Whole seconds in the Lease, rounded up: the others wait at least as long as we lead.
        self._lease_seconds = max(1, math.ceil(duration))
        self._observed: Record | None = None
        self._observed_at = 0.0  # local monotonic time at which _observed last changed
        self._valid_until = 0.0  # local monotonic time until which we are leader
        self._leading = False  # what the loop last told the callbacks
        self._announced: str | None = None  # the holder we last said we wait for
        self._failing: str | None = None  # the last error logged, so a failing API logs once

    # -- what the runtime asks ------------------------------------------------------------

    def is_leader(self) -> bool:
        """True while this replica may act: up to ``deadline`` after its last renewal."""
        return self._clock() < self._valid_until

    @property
    def holder(self) -> str | None:
        """The holder of the Lease as last observed (None: unknown yet, or nobody)."""
        return self._observed.holder if self._observed is not None else None

    @property
    def known(self) -> bool:
        """Whether the last round read the Lease: leader or standby is known (not before, not while failing)."""
        return self._observed is not None and self._failing is None

    @property
    def lease(self) -> str:
        return f"{self.namespace}/{self.name}"

    # -- the loop -------------------------------------------------------------------------

    async def run(self) -> None:
        """Acquire and renew until cancelled; release the Lease on the way out."""
        try:
            while True:
                await self.attempt()
                await self._sleep(self.renew)
        finally:
            await self.release()

    async def attempt(self) -> None:
        """One round: acquire or renew, then tell the callbacks if leadership changed.

        Never raises (but for cancellation): an API error is a failed round.
        """
        started = self._clock()
        try:
            won = await self._acquire_or_renew()
        except Conflict:
            won = False
            self._valid_until = 0.0  # someone else wrote the Lease: stop now, look again next round
        except Exception as error:
            won = False
            self._report(error)
        else:
            self._report(None)
        if won:
            self._valid_until = started + self.deadline
        self._notify()

    async def release(self) -> None:
        """Stop leading and, if the Lease is still ours, hand it back so a standby need not wait."""
        self._valid_until = 0.0
        self._leading = False
        metrics.IS_LEADER.set(0)
        if self.holder != self.identity:
            return
        try:
            record = await self.leases.read(namespace=self.namespace, name=self.name)
            if record is None or record.holder != self.identity:
                return
            released = dataclasses.replace(record, holder=None, duration=1, renewed=self._wall())
            await self.leases.replace(namespace=self.namespace, name=self.name, record=released)
        except Exception as error:
            log.warning("could not release the lease %s: %s", self.lease, _short(error))
        else:
            log.info("released the lease %s", self.lease)

    # -- one round ------------------------------------------------------------------------

    async def _acquire_or_renew(self) -> bool:
        record = await self.leases.read(namespace=self.namespace, name=self.name)
        now = self._wall()
        if record is None:
            mine = Record(holder=self.identity, duration=self._lease_seconds, acquired=now, renewed=now)
            self._observe(await self.leases.create(namespace=self.namespace, name=self.name, record=mine))
            return True
        self._observe(record)
        ours = record.holder == self.identity
        if record.holder and not ours:
            if self._clock() < self._observed_at + record.duration:
                self._valid_until = 0.0  # someone else holds it (and if it was ours, not any more)
                self._stand_by(record.holder)
                return False
            log.info(
                "the lease %s held by %s was not renewed for %ss: taking it over",
                self.lease,
                record.holder,
                record.duration,
            )
        mine = Record(
            holder=self.identity,
            duration=self._lease_seconds,
            acquired=record.acquired if ours and record.acquired else now,
            renewed=now,
            transitions=record.transitions + (0 if ours else 1),
            version=record.version,
        )
        self._observe(await self.leases.replace(namespace=self.namespace, name=self.name, record=mine))
        return True

    def _observe(self, record: Record) -> None:
        if record != self._observed:
            self._observed = record
            self._observed_at = self._clock()

    # -- telling the runtime and the operator's user --------------------------------------

    def _notify(self) -> None:
        leader = self.is_leader()
        metrics.IS_LEADER.set(1 if leader else 0)
        if leader == self._leading:
            return
        self._leading = leader
        if leader:
            self._announced = None
            log.info(
                "acquired the lease %s as %s",
                self.lease,
                self.identity,
                extra={"lease": self.lease, "identity": self.identity, "holder": self.identity},
            )
            self._call(self.on_elected, "on_elected")
        else:
            holder = self.holder
            why = f"taken by {holder}" if holder and holder != self.identity else f"not renewed for {self.deadline:g}s"
            log.warning(
                "lost the lease %s (%s): stopping all changes",
                self.lease,
                why,
                extra={"lease": self.lease, "identity": self.identity, "holder": holder},
            )
            self._call(self.on_lost, "on_lost")

    def _stand_by(self, holder: str) -> None:
        if holder != self._announced:
            self._announced = holder
            log.info(
                "waiting for the lease %s, held by %s",
                self.lease,
                holder,
                extra={"lease": self.lease, "identity": self.identity, "holder": holder},
            )

    def _report(self, error: Exception | None) -> None:
        text = None if error is None else _short(error)
        if text == self._failing:
            return
        if text is None:
            log.info("the lease %s is reachable again", self.lease)
        else:
            log.warning("lease %s: %s (retrying every %gs)", self.lease, text, self.renew)
        self._failing = text

    def _call(self, callback: Callable[[], None] | None, what: str) -> None:
        if callback is None:
            return
        try:
            callback()
        except Exception as error:  # a broken callback must not end the election
            log.error("lease %s: %s failed: %s", self.lease, what, _short(error))


def _record(lease: Any) -> Record:
    spec = lease.spec
    return Record(
        holder=spec.holder_identity or None,
        duration=spec.lease_duration_seconds or 1,
        acquired=spec.acquire_time,
        renewed=spec.renew_time,
        transitions=spec.lease_transitions or 0,
        version=lease.metadata.resource_version or "",
    )


def _spec(record: Record) -> dict[str, Any]:
    return {
        "holderIdentity": record.holder,
        "leaseDurationSeconds": record.duration,
        "acquireTime": _micro(record.acquired) if record.acquired else None,
        "renewTime": _micro(record.renewed) if record.renewed else None,
        "leaseTransitions": record.transitions,
    }


def _short(error: Exception) -> str:
    status, reason = getattr(error, "status", None), getattr(error, "reason", None)
    if isinstance(status, int) and reason:  # an ApiException's str() spreads over lines of headers
        return f"{type(error).__name__}: ({status}) {reason}"
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:200]}" if text else type(error).__name__


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _micro(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
