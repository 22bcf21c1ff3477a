"""Fakes for the operator's parts that can run without an API server: the Lease election.

In: an in-memory Lease store (``MemoryLeases``, the ``Leases`` seam with resourceVersions
and 409s) and a fake monotonic clock (``Clock``) that only moves when a test advances it,
so no test sleeps or depends on timing. Out: who is leader, what the Lease holds, the
callbacks called and the lines logged.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
from collections.abc import Callable

import pytest

from infrakit.operator import leadership

NAMESPACE = "default"
NAME = "infrakit-operator"
DURATION = 15.0
RENEW = 2.0
DEADLINE = 10.0
EPOCH = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)


class Clock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        """``asyncio.sleep`` for an election loop: time passes at once, other tasks run."""
        self.advance(seconds)
        await asyncio.sleep(0)


class MemoryLeases:
    """Leases in a dict, with a resourceVersion per write and 409s as the API server gives them.

    ``failure`` (an exception) makes every call raise it; each call also yields to the
    event loop once, so concurrent contenders interleave between their read and write.
    """

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], leadership.Record] = {}
        self.writes = 0
        self.failure: Exception | None = None

    async def _enter(self) -> None:
        await asyncio.sleep(0)
        if self.failure is not None:
            raise self.failure

    async def read(self, *, namespace: str, name: str) -> leadership.Record | None:
        await self._enter()
        return self.records.get((namespace, name))

    async def create(self, *, namespace: str, name: str, record: leadership.Record) -> leadership.Record:
        await self._enter()
        if (namespace, name) in self.records:
            raise leadership.Conflict("already exists")
        return self._store(namespace, name, record)

    async def replace(self, *, namespace: str, name: str, record: leadership.Record) -> leadership.Record:
        await self._enter()
        current = self.records.get((namespace, name))
        if current is None or current.version != record.version:
            raise leadership.Conflict("the object has been modified")
        return self._store(namespace, name, record)

    def _store(self, namespace: str, name: str, record: leadership.Record) -> leadership.Record:
        self.writes += 1
        stored = dataclasses.replace(record, version=str(self.writes))
        self.records[(namespace, name)] = stored
        return stored

    @property
    def lease(self) -> leadership.Record | None:
        return self.records.get((NAMESPACE, NAME))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def leases() -> MemoryLeases:
    return MemoryLeases()


ElectorFactory = Callable[..., leadership.Elector]


@pytest.fixture
def make_elector(clock: Clock, leases: MemoryLeases) -> ElectorFactory:
    """An Elector on the shared store; ``skew`` shifts the wall clock it writes into the Lease."""

    def make(
        identity: str,
        *,
        skew: datetime.timedelta = datetime.timedelta(0),
        clock: Clock = clock,
        **options: object,
    ) -> leadership.Elector:
        return leadership.Elector(
            leases,
            namespace=NAMESPACE,
            name=NAME,
            identity=identity,
            duration=DURATION,
            renew=RENEW,
            deadline=DEADLINE,
            clock=clock,
            wall=lambda: EPOCH + datetime.timedelta(seconds=clock.now) + skew,
            sleep=clock.sleep,
            **options,  # type: ignore[arg-type]
        )

    return make
