"""The Lease election: skew-tolerant (client-go's algorithm), one leader at a time, never dead.

Every test runs on the in-memory store and the fake monotonic clock of ``conftest.py``:
time moves only when a test moves it, so the deadlines are checked exactly.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import random
from collections.abc import Callable, Coroutine
from typing import Any

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException

from infrakit.operator import leadership
from tests.operator.conftest import DEADLINE, DURATION, NAME, NAMESPACE, RENEW, Clock, ElectorFactory, MemoryLeases

HOURS = datetime.timedelta(hours=3)
LEASE = f"{NAMESPACE}/{NAME}"


def run(coroutine: Coroutine[Any, Any, None]) -> None:
    asyncio.run(coroutine)


async def until(predicate: Callable[[], bool], *, what: str, limit: int = 10_000) -> None:
    """Let the event loop run until ``predicate`` holds (a count of loop turns, not a timeout)."""
    for _ in range(limit):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"never happened: {what}")


def messages(caplog: pytest.LogCaptureFixture, level: int = logging.DEBUG) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == leadership.__name__ and r.levelno >= level]


# -- (1) clock skew ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("holder_skew", "contender_skew"),
    [(-HOURS, datetime.timedelta(0)), (HOURS, datetime.timedelta(0)), (datetime.timedelta(0), HOURS)],
    ids=["holder-clock-behind", "holder-clock-ahead", "contender-clock-ahead"],
)
def test_a_renewing_holder_is_never_taken_over_whatever_the_wall_clocks_say(
    make_elector: ElectorFactory,
    clock: Clock,
    leases: MemoryLeases,
    holder_skew: datetime.timedelta,
    contender_skew: datetime.timedelta,
) -> None:
    # Monotonic clocks of two processes share a rate, never an origin.
    other = Clock(start=7.0)
    a = make_elector("a", skew=holder_skew)
    b = make_elector("b", skew=contender_skew, clock=other)

    async def scenario() -> None:
        await a.attempt()
        for _ in range(int(10 * DURATION / RENEW)):  # ten lease durations
            clock.advance(RENEW)
            other.advance(RENEW)
            await a.attempt()
            await b.attempt()
            assert a.is_leader()
            assert not b.is_leader()
            assert b.holder == "a"

    run(scenario())
    assert leases.lease is not None
    assert leases.lease.holder == "a"
    assert leases.lease.transitions == 0


# -- (2) takeover ------------------------------------------------------------------------------


@pytest.mark.parametrize("holder_skew", [-HOURS, datetime.timedelta(0), HOURS], ids=["behind", "in-time", "ahead"])
def test_a_standby_takes_over_once_the_record_stopped_changing_for_the_lease_duration(
    make_elector: ElectorFactory, clock: Clock, leases: MemoryLeases, holder_skew: datetime.timedelta
) -> None:
    a = make_elector("a", skew=holder_skew)
    b = make_elector("b")
    took_over: list[float] = []

    async def scenario() -> None:
        await a.attempt()
        await b.attempt()  # b sees a's last renewal now; a dies right after
        last_change = clock.now
        while not b.is_leader():
            clock.advance(RENEW)
            await b.attempt()
            assert not (a.is_leader() and b.is_leader())
        took_over.append(clock.now - last_change)

    run(scenario())
    # The first round at least a lease duration after the last change, not one round earlier.
    assert DURATION <= took_over[0] < DURATION + RENEW
    assert leases.lease is not None
    assert (leases.lease.holder, leases.lease.transitions) == ("b", 1)


def test_a_newcomer_waits_a_full_duration_even_for_a_lease_that_looks_ancient(
    make_elector: ElectorFactory, clock: Clock
) -> None:
    """It cannot tell an old renewTime from a skewed clock, so it trusts only what it saw change."""
    dead = make_elector("dead", skew=-datetime.timedelta(days=30))
    run(dead.attempt())
    clock.advance(3600)
    b = make_elector("b")

    async def scenario() -> None:
        await b.attempt()
        clock.advance(DURATION - 0.001)
        await b.attempt()
        assert not b.is_leader()
        clock.advance(0.001)
        await b.attempt()
        assert b.is_leader()

    run(scenario())


# -- (3) the renew deadline ----------------------------------------------------------------------


def test_a_leader_that_cannot_renew_stops_at_the_deadline_though_nobody_took_the_lease(
    make_elector: ElectorFactory, clock: Clock, leases: MemoryLeases, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=leadership.__name__)
    calls: list[str] = []
    a = make_elector("a", on_elected=lambda: calls.append("elected"), on_lost=lambda: calls.append("lost"))

    async def scenario() -> None:
        await a.attempt()
        renewed = clock.now
        leases.failure = ConnectionRefusedError("connection refused")
        while clock.now + RENEW < renewed + DEADLINE:
            clock.advance(RENEW)
            await a.attempt()
            assert a.is_leader()
        # The runtime asks before each write: no round of the loop is needed to say no.
        clock.now = renewed + DEADLINE
        assert not a.is_leader()
        assert calls == ["elected"]
        await a.attempt()
        assert calls == ["elected", "lost"]
        leases.failure = None
        await a.attempt()  # still ours (no one else wrote): leading again
        assert a.is_leader()
        assert calls == ["elected", "lost", "elected"]

    run(scenario())
    assert leases.lease is not None
    assert leases.lease.holder == "a"
    assert f"lost the lease {LEASE} (not renewed for 10s): stopping all changes" in messages(caplog)


def test_a_renewal_that_hangs_ends_leadership_at_the_deadline(make_elector: ElectorFactory, clock: Clock) -> None:
    a = make_elector("a")

    async def scenario() -> None:
        await a.attempt()
        renewed = clock.now
        stuck = asyncio.Event()
        original = a.leases.read

        async def hang(**_: str) -> None:
            stuck.set()
            await asyncio.Event().wait()

        a.leases.read = hang  # type: ignore[method-assign]
        round_ = asyncio.create_task(a.attempt())
        await stuck.wait()
        clock.now = renewed + DEADLINE - 0.001
        assert a.is_leader()
        clock.now = renewed + DEADLINE
        assert not a.is_leader()
        round_.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await round_
        a.leases.read = original  # type: ignore[method-assign]

    run(scenario())


# -- (4) two contenders --------------------------------------------------------------------------


def test_two_contenders_for_a_new_lease_never_both_lead(make_elector: ElectorFactory, leases: MemoryLeases) -> None:
    a, b = make_elector("a"), make_elector("b")

    async def scenario() -> None:
        await asyncio.gather(a.attempt(), b.attempt())  # both read "no Lease", both create

    run(scenario())
    assert [a.is_leader(), b.is_leader()].count(True) == 1
    assert leases.lease is not None
    assert leases.lease.holder == ("a" if a.is_leader() else "b")


def test_two_contenders_taking_over_the_same_dead_holder_never_both_lead(
    make_elector: ElectorFactory, clock: Clock, leases: MemoryLeases
) -> None:
    dead, a, b = make_elector("dead"), make_elector("a"), make_elector("b")

    async def scenario() -> None:
        await dead.attempt()
        await a.attempt()
        await b.attempt()
        clock.advance(DURATION)
        await asyncio.gather(a.attempt(), b.attempt())  # both read the same version, both replace

    run(scenario())
    assert [a.is_leader(), b.is_leader()].count(True) == 1
    assert leases.lease is not None
    assert leases.lease.transitions == 1


def test_a_leader_whose_write_conflicts_stops_at_once(make_elector: ElectorFactory, clock: Clock) -> None:
    lost: list[str] = []
    a = make_elector("a", on_lost=lambda: lost.append("lost"))

    async def scenario() -> None:
        await a.attempt()
        original = a.leases.replace

        async def conflict(**_: Any) -> leadership.Record:
            raise leadership.Conflict("the object has been modified")

        a.leases.replace = conflict  # type: ignore[method-assign]
        clock.advance(RENEW)
        await a.attempt()
        assert not a.is_leader()  # long before the deadline
        assert lost == ["lost"]
        a.leases.replace = original  # type: ignore[method-assign]

    run(scenario())


def test_a_leader_that_sees_another_holder_stops_at_once(
    make_elector: ElectorFactory, clock: Clock, leases: MemoryLeases, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=leadership.__name__)
    a, c = make_elector("a"), make_elector("c")

    async def scenario() -> None:
        await a.attempt()
        leases.records.clear()  # someone deleted the Lease; c creates it anew
        await c.attempt()
        clock.advance(RENEW)
        await a.attempt()

    run(scenario())
    assert c.is_leader()
    assert not a.is_leader()
    assert f"lost the lease {LEASE} (taken by c): stopping all changes" in messages(caplog)


@pytest.mark.parametrize("seed", range(40))
def test_never_two_leaders_under_random_latency_failures_and_crashes(
    make_elector: ElectorFactory, clock: Clock, leases: MemoryLeases, seed: int
) -> None:
    """Random schedules of rounds, slow calls, API outages and crashes: the invariant holds at every call."""
    rng = random.Random(seed)
    electors = [make_elector(name) for name in "abc"]
    alive = set(range(3))
    leaders_seen: set[str] = set()

    def check() -> None:
        leading = [e.identity for e in electors if e.is_leader()]
        assert len(leading) <= 1, f"two leaders at t={clock.now}: {leading}"
        leaders_seen.update(leading)

    enter = leases._enter

    async def slow_enter() -> None:
        check()
        clock.advance(rng.choice([0.0, 0.0, 0.1, 1.0, 3.0]))  # requests take time, and overlap
        check()
        await enter()

    leases._enter = slow_enter  # type: ignore[method-assign]

    async def scenario() -> None:
        for _ in range(1000):
            roll = rng.random()
            if roll < 0.05 and len(alive) > 1:
                alive.discard(rng.choice(sorted(alive)))  # a crash: no release
            elif roll < 0.1:
                alive.add(rng.randrange(3))  # back (a restarted replica would have a new identity; fine)
            leases.failure = ConnectionResetError("reset") if rng.random() < 0.1 else None
            await asyncio.gather(*(electors[i].attempt() for i in sorted(alive) if rng.random() < 0.8))
            clock.advance(rng.uniform(0, RENEW / 4))
            check()

    run(scenario())
    assert leaders_seen  # the schedule did elect someone


# -- (5) release on shutdown ---------------------------------------------------------------------


def test_shutdown_releases_the_lease_so_a_standby_takes_it_without_waiting(
    make_elector: ElectorFactory, clock: Clock, leases: MemoryLeases, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=leadership.__name__)
    lost: list[str] = []
    a = make_elector("a", on_lost=lambda: lost.append("lost"))
    b = make_elector("b")

    async def scenario() -> None:
        loop = asyncio.create_task(a.run())
        await until(a.is_leader, what="a to lead")
        started = clock.now
        await until(lambda: clock.now >= started + 3 * RENEW, what="three renewals")
        await b.attempt()
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
        assert not a.is_leader()
        assert leases.lease is not None
        assert leases.lease.holder is None
        await b.attempt()  # no lease duration to wait for
        assert b.is_leader()

    run(scenario())
    assert lost == []  # a release is not a loss
    assert leases.lease is not None
    assert leases.lease.transitions == 1
    assert f"released the lease {LEASE}" in messages(caplog)


def test_a_standby_does_not_touch_the_lease_on_shutdown(make_elector: ElectorFactory, leases: MemoryLeases) -> None:
    a, b = make_elector("a"), make_elector("b")

    async def scenario() -> None:
        await a.attempt()
        loop = asyncio.create_task(b.run())
        await until(lambda: b.holder == "a", what="b to see a")
        writes = leases.writes
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
        assert leases.writes == writes

    run(scenario())
    assert leases.lease is not None
    assert leases.lease.holder == "a"


# -- (6) errors never end the loop ---------------------------------------------------------------


def test_api_errors_and_broken_callbacks_never_end_the_election_loop(
    make_elector: ElectorFactory, clock: Clock, leases: MemoryLeases, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=leadership.__name__)

    def broken() -> None:
        raise RuntimeError("callback bug")

    a = make_elector("a", on_elected=broken)
    failures: list[Exception] = [
        ApiException(status=500, reason="Internal Server Error"),
        ConnectionRefusedError("connection refused"),
        TimeoutError("read timed out"),
        ValueError("garbage in the response"),
        KeyError("spec"),
    ]

    async def scenario() -> None:
        loop = asyncio.create_task(a.run())
        for failure in failures:
            leases.failure = failure
            later = clock.now + 3 * RENEW
            await until(lambda: clock.now >= later, what="three failed rounds")  # noqa: B023 (awaited here)
            assert not loop.done()
            assert not a.is_leader()
        leases.failure = None
        await until(a.is_leader, what="a to lead once the API answers")
        assert not loop.done()
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop

    run(scenario())
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    # One line per distinct failure, not one per round.
    assert len(warnings) == len(failures)
    assert warnings[0] == f"lease {LEASE}: ApiException: (500) Internal Server Error (retrying every 2s)"
    assert f"the lease {LEASE} is reachable again" in messages(caplog)
    assert f"lease {LEASE}: on_elected failed: RuntimeError: callback bug" in messages(caplog)


# -- what a standby says -------------------------------------------------------------------------


def test_a_standby_says_once_whom_it_waits_for_and_again_when_the_holder_changes(
    make_elector: ElectorFactory, clock: Clock, leases: MemoryLeases, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=leadership.__name__)
    a, b, c = make_elector("a"), make_elector("b"), make_elector("c")

    async def scenario() -> None:
        await a.attempt()
        for _ in range(5):
            clock.advance(RENEW)
            await a.attempt()
            await c.attempt()
        await a.release()
        await b.attempt()
        for _ in range(5):
            clock.advance(RENEW)
            await b.attempt()
            await c.attempt()

    run(scenario())
    lines = messages(caplog)
    assert lines.count(f"waiting for the lease {LEASE}, held by a") == 1
    assert lines.count(f"waiting for the lease {LEASE}, held by b") == 1
    assert lines.count(f"acquired the lease {LEASE} as a") == 1
    assert c.holder == "b"


# -- the Kubernetes adapter ----------------------------------------------------------------------


class FakeCoordination:
    """Stands in for ``CoordinationV1Api``: records the calls, answers with V1Lease objects or errors."""

    def __init__(self) -> None:
        self.lease: Any = None
        self.error: ApiException | None = None
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def _answer(self, method: str, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((method, args, kwargs))
        if self.error is not None:
            raise self.error
        return self.lease

    def read_namespaced_lease(self, *args: Any, **kwargs: Any) -> Any:
        return self._answer("read", *args, **kwargs)

    def create_namespaced_lease(self, *args: Any, **kwargs: Any) -> Any:
        return self._answer("create", *args, **kwargs)

    def replace_namespaced_lease(self, *args: Any, **kwargs: Any) -> Any:
        return self._answer("replace", *args, **kwargs)


def test_the_kubernetes_adapter_maps_404_409_and_the_lease_fields() -> None:
    api = FakeCoordination()
    store = leadership.KubernetesLeases(api, timeout=5.0)
    when = datetime.datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=datetime.UTC)
    api.lease = kubernetes.client.V1Lease(
        metadata=kubernetes.client.V1ObjectMeta(name=NAME, namespace=NAMESPACE, resource_version="42"),
        spec=kubernetes.client.V1LeaseSpec(
            holder_identity="a", lease_duration_seconds=15, acquire_time=when, renew_time=when, lease_transitions=3
        ),
    )

    async def scenario() -> None:
        record = await store.read(namespace=NAMESPACE, name=NAME)
        assert record == leadership.Record(holder="a", duration=15, acquired=when, renewed=when, transitions=3)
        assert record is not None
        assert record.version == "42"
        await store.replace(namespace=NAMESPACE, name=NAME, record=record)
        api.error = ApiException(status=404, reason="Not Found")
        assert await store.read(namespace=NAMESPACE, name=NAME) is None
        api.error = ApiException(status=409, reason="Conflict")
        with pytest.raises(leadership.Conflict):
            await store.replace(namespace=NAMESPACE, name=NAME, record=record)
        with pytest.raises(leadership.Conflict):
            await store.create(namespace=NAMESPACE, name=NAME, record=record)
        api.error = ApiException(status=500, reason="Internal Server Error")
        with pytest.raises(ApiException):
            await store.read(namespace=NAMESPACE, name=NAME)

    run(scenario())
    method, args, _ = api.calls[1]
    assert method == "replace"
    assert args[:2] == (NAME, NAMESPACE)
    assert args[2]["metadata"]["resourceVersion"] == "42"
    assert args[2]["spec"]["renewTime"] == "2030-01-02T03:04:05.678901Z"
    for method, _, kwargs in api.calls:  # writes name their field manager (managedFields)
        writes = {"field_manager": "infrakit-operator"} if not method.startswith("read") else {}
        assert kwargs == {"_request_timeout": 5.0, **writes}


def test_the_elector_is_built_as_the_operator_builds_it() -> None:
    """The keywords of ``infrakit.operator.handlers`` (an ApiClient and no ``deadline``) still work."""
    elector = leadership.Elector(
        kubernetes.client.ApiClient(),
        namespace=NAMESPACE,
        name=NAME,
        identity="me",
        duration=3.0,
        renew=min(2.0, 3.0 / 5),
        on_elected=lambda: None,
    )
    assert isinstance(elector.leases, leadership.KubernetesLeases)
    assert elector.deadline == 2.0
    assert not elector.is_leader()
    assert elector.holder is None


@pytest.mark.parametrize(("renew", "deadline"), [(10.0, 10.0), (2.0, 15.0), (0.0, 5.0)])
def test_timings_that_would_allow_two_leaders_are_refused(renew: float, deadline: float) -> None:
    with pytest.raises(ValueError, match=r"renew .* < deadline .* < duration"):
        leadership.Elector(
            MemoryLeases(), namespace=NAMESPACE, name=NAME, identity="me", duration=15.0, renew=renew, deadline=deadline
        )
