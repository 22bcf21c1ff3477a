"""``/readyz``: ready once the Groups listed at start are cached and synced once, while the Lease is known.

In: the keys listed, the keys in the cache, the sync results and the Lease's state, as
plain calls. Out: the report (ready or not, and the reason). No server, no clock.
"""

from __future__ import annotations

from infrakit.operator import readiness

A, B = ("team", "a"), ("team", "b")


class Lease:
    def __init__(self) -> None:
        self.known, self.leader, self.holder = False, False, None

    def __call__(self) -> tuple[bool, bool, str | None]:
        return self.known, self.leader, self.holder


def make(cache: set[tuple[str, str]], lease: Lease) -> readiness.Readiness:
    return readiness.Readiness(cached=lambda key: key in cache, lease=lease)


def test_not_ready_before_the_first_listing() -> None:
    lease = Lease()
    lease.known = lease.leader = True
    report = make(set(), lease).check()
    assert (report.ready, report.reason) == (False, "the Groups have not been listed yet")


def test_the_leader_is_ready_once_every_listed_group_was_synced() -> None:
    lease = Lease()
    lease.known = lease.leader = True
    ready = make({A, B}, lease)
    ready.listed([A, B])
    assert ready.check().reason == "2 of 2 Groups not yet synced once"
    ready.synced(A)
    assert not ready.check().ready
    ready.synced(B)
    report = ready.check()
    assert (report.ready, report.reason, report.groups, report.pending) == (True, "leader", 2, 0)


def test_a_standby_is_ready_once_the_watch_delivered_every_group_and_the_holder_is_known() -> None:
    lease = Lease()
    cache: set[tuple[str, str]] = {A}
    ready = make(cache, lease)
    ready.listed([A, B])
    assert ready.check().reason == "1 of 2 Groups not yet delivered by the watch"
    cache.add(B)
    report = ready.check()
    assert not report.ready
    assert report.reason == "the leader Lease could not be read: neither leader nor standby"
    lease.known, lease.holder = True, "other-1"
    report = ready.check()
    assert (report.ready, report.reason, report.holder) == (True, "standby: the Lease is held by other-1", "other-1")


def test_a_group_deleted_after_the_listing_does_not_hold_readiness_back() -> None:
    lease = Lease()
    lease.known = lease.leader = True
    ready = make(set(), lease)
    ready.listed([A, B])
    ready.synced(A)
    assert not ready.check().ready
    ready.listed([A])  # B is gone by the next listing: the watch will never report it
    assert ready.check().ready


def test_the_first_pass_is_latched_but_the_lease_is_checked_every_time() -> None:
    lease = Lease()
    lease.known = lease.leader = True
    ready = make(set(), lease)
    ready.listed([])
    assert ready.check().ready and ready.passed
    lease.known = lease.leader = False  # the API server is unreachable: nobody knows who leads
    assert not ready.check().ready
    lease.known = True
    assert ready.check().ready  # no second first pass


def test_the_body_is_json() -> None:
    import json

    lease = Lease()
    report = make(set(), lease).check()
    assert json.loads(report.json())["ready"] is False
