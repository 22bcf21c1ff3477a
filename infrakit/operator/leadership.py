"""One acting replica at a time: leader election on a ``coordination.k8s.io`` Lease.

The replica holding the Lease acts; the others only watch.  The holder renews every
``renew`` seconds and considers itself leader only until ``deadline`` after its last
successful renewal (well before the Lease's ``leaseDurationSeconds`` runs out), so a
replica cut off from the API server stops acting before anyone else may take over.
A Lease whose renewTime is older than its duration is taken over; every write carries
the resourceVersion it read, so two contenders cannot both win (one gets a 409).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Callable
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from infrakit.operator import metrics

__all__ = ["Elector"]

log = logging.getLogger(__name__)


class Elector:
    def __init__(
        self,
        api: kubernetes.client.ApiClient,
        *,
        namespace: str,
        name: str,
        identity: str,
        duration: float = 15.0,
        renew: float = 2.0,
        on_elected: Callable[[], None] | None = None,
    ) -> None:
        self.leases = kubernetes.client.CoordinationV1Api(api)
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.duration = duration
        self.renew = renew
        self.deadline = duration * 2 / 3
        self.on_elected = on_elected
        self._valid_until = 0.0

    def is_leader(self) -> bool:
        return time.monotonic() < self._valid_until

    async def run(self) -> None:
        """Acquire and renew until cancelled; release the Lease on the way out."""
        try:
            while True:
                was_leader = self.is_leader()
                started = time.monotonic()
                try:
                    won = await asyncio.to_thread(self._try_acquire)
                except Exception as error:
                    log.warning("lease %s/%s: %s", self.namespace, self.name, _short(error))
                    won = False
                if won:
                    self._valid_until = started + self.deadline
                    if not was_leader:
                        log.info("acquired the lease %s/%s as %s", self.namespace, self.name, self.identity)
                        if self.on_elected is not None:
                            self.on_elected()
                elif was_leader and not self.is_leader():
                    log.warning("lost the lease %s/%s: stopping all changes", self.namespace, self.name)
                metrics.IS_LEADER.set(1 if self.is_leader() else 0)
                await asyncio.sleep(self.renew)
        finally:
            if self.is_leader():
                self._valid_until = 0.0
                await asyncio.to_thread(self._release)

    def _try_acquire(self) -> bool:
        now = _now()
        try:
            lease: Any = self.leases.read_namespaced_lease(self.name, self.namespace)
        except ApiException as error:
            if error.status != 404:
                raise
            body: Any = {
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(now, transitions=0, acquired=now),
            }
            try:
                self.leases.create_namespaced_lease(self.namespace, body)
            except ApiException as create_error:
                if create_error.status == 409:
                    return False
                raise
            return True
        spec = lease.spec
        holder = spec.holder_identity
        if holder != self.identity:
            renewed = spec.renew_time or spec.acquire_time
            duration = spec.lease_duration_seconds or self.duration
            if holder and renewed is not None and (now - renewed).total_seconds() < duration:
                return False  # held, and fresh
        transitions = (spec.lease_transitions or 0) + (0 if holder == self.identity else 1)
        acquired = spec.acquire_time if holder == self.identity and spec.acquire_time else now
        body = {
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "resourceVersion": lease.metadata.resource_version,
            },
            "spec": self._spec(now, transitions=transitions, acquired=acquired),
        }
        try:
            self.leases.replace_namespaced_lease(self.name, self.namespace, body)
        except ApiException as error:
            if error.status == 409:
                return False
            raise
        return True

    def _release(self) -> None:
        try:
            lease: Any = self.leases.read_namespaced_lease(self.name, self.namespace)
            if lease.spec.holder_identity != self.identity:
                return
            body: Any = {
                "metadata": {
                    "name": self.name,
                    "namespace": self.namespace,
                    "resourceVersion": lease.metadata.resource_version,
                },
                "spec": {"holderIdentity": None, "leaseDurationSeconds": 1},
            }
            self.leases.replace_namespaced_lease(self.name, self.namespace, body)
        except Exception as error:
            log.debug("could not release the lease: %s", _short(error))

    def _spec(self, now: datetime.datetime, *, transitions: int, acquired: datetime.datetime) -> dict[str, Any]:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.duration),
            "acquireTime": _micro(acquired),
            "renewTime": _micro(now),
            "leaseTransitions": transitions,
        }


def _short(error: Exception) -> str:
    return f"{type(error).__name__}: {str(error).splitlines()[0][:200] if str(error) else ''}"


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _micro(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
