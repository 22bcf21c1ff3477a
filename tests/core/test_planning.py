"""The planner: examples of each decision, then properties over random observed states."""

from __future__ import annotations

import dataclasses
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infrakit.core import instances, planning, specs
from tests.core.conftest import member, spec

H, U, X = instances.Health.HEALTHY, instances.Health.UNKNOWN, instances.Health.UNHEALTHY


# --- examples ---------------------------------------------------------------------------------


def test_converged() -> None:
    plan = planning.plan(spec(size=2), [member("a"), member("b")])
    assert plan.converged and plan.empty


def test_scale_up_and_heal_ignore_surge_limits() -> None:
    plan = planning.plan(spec(size=5, surge=0, unavailable=1), [member("a")])
    assert len(plan.provisions) == 4 and not plan.destroys


def test_scale_down_removes_unhealthy_then_newest() -> None:
    members = [
        member("a", created=1),
        member("b", created=5),
        member("c", created=3, health=X),
        member("d", created=2),
    ]
    plan = planning.plan(spec(size=2), members)
    assert [d.id for d in plan.destroys] == ["c", "b"]
    assert all(d.reason is planning.Reason.SCALE_DOWN for d in plan.destroys)


def test_scale_down_removes_outdated_first() -> None:
    members = [member("new1", created=9), member("new2", created=8), member("old", up_to_date=False, created=1)]
    plan = planning.plan(spec(size=2), members)
    assert [d.id for d in plan.destroys] == ["old"] and not plan.provisions


def test_rolling_update_surges_then_drains() -> None:
    old = [member(f"o{i}", up_to_date=False, created=i) for i in range(3)]
    first = planning.plan(spec(size=3), old)
    assert len(first.provisions) == 1 and not first.destroys  # maxSurge 1, maxUnavailable 0
    second = planning.plan(spec(size=3), [*old, member("n1", created=10)])
    assert not second.provisions and [d.reason for d in second.destroys] == [planning.Reason.ROLLING_UPDATE]


def test_rolling_update_waits_for_health() -> None:
    old = [member(f"o{i}", up_to_date=False) for i in range(3)]
    plan = planning.plan(spec(size=3), [*old, member("n1", health=U)])
    assert plan.empty
    assert plan.blocked
    assert not plan.converged


def test_unavailable_budget_without_surge() -> None:
    old = [member(f"o{i}", up_to_date=False) for i in range(4)]
    plan = planning.plan(spec(size=4, surge=0, unavailable=2), old)
    assert len(plan.destroys) == 2 and not plan.provisions


def test_unhealthy_outdated_instances_go_at_once() -> None:
    old = [member(f"o{i}", up_to_date=False, health=X) for i in range(3)]
    plan = planning.plan(spec(size=3), old)
    assert len(plan.destroys) == 3


def test_paused_does_nothing() -> None:
    plan = planning.plan(spec(size=3, paused=True), [member("a", up_to_date=False)])
    assert plan.empty and not plan.converged


def test_pets_replace_lost_logical_ids_and_drop_strays_and_duplicates() -> None:
    members = [
        member("a1", logical_id="a", created=1),
        member("a2", logical_id="a", created=2),
        member("z", logical_id="z"),
        member("anon"),
    ]
    plan = planning.plan(spec(logical_ids=("a", "b")), members)
    assert [p.logical_id for p in plan.provisions] == ["b"]
    assert sorted((d.id, d.reason.value) for d in plan.destroys) == [
        ("a2", "Duplicate"),
        ("anon", "ScaleDown"),
        ("z", "ScaleDown"),
    ]


def test_pets_roll_one_at_a_time() -> None:
    members = [member(f"i{x}", logical_id=x, up_to_date=False) for x in "abc"]
    plan = planning.plan(spec(logical_ids=("a", "b", "c")), members)
    assert [d.id for d in plan.destroys] == ["ia"] and not plan.provisions
    after = planning.plan(spec(logical_ids=("a", "b", "c")), members[1:])
    assert [p.logical_id for p in after.provisions] == ["a"] and not after.destroys


@pytest.mark.parametrize(
    ("size", "members", "text"),
    [
        (5, [], "Adding 5 instances to increase the group size to 5"),
        (5, [member(str(i)) for i in range(5)], "Noop"),
        (5, [member(str(i), up_to_date=False) for i in range(5)], "Performing a rolling update on 5 instances"),
        (
            10,
            [member(str(i), up_to_date=False) for i in range(5)],
            "Performing a rolling update on 5 instances, then adding 5 instances to increase the group size to 10",
        ),
        (3, [member(str(i)) for i in range(5)], "Terminating 2 instances to reduce the group size to 3"),
        (
            3,
            [member(str(i), up_to_date=False) for i in range(5)],
            "Terminating 2 instances to reduce the group size to 3, then performing a rolling update on 3 instances",
        ),
    ],
)
def test_describe_change(size: int, members: list[planning.Member], text: str) -> None:
    assert planning.plan(spec(size=size), members).explain(managed=True) == text
    assert planning.plan(spec(size=size), members).explain(managed=False) == f"Managing {size} instances"


# --- properties ---------------------------------------------------------------------------------


@dataclasses.dataclass
class World:
    """A simulated instance plugin + flavor: what the planner observes each pass."""

    members: dict[str, planning.Member]
    rng: random.Random
    counter: int = 0

    def apply(self, plan: planning.Plan, *, check: object = None, instant: float = 0.0) -> None:
        """Carry out rounds as the engine does: stop after a round whose provisions are
        not all healthy (new instances are healthy at once with chance ``instant``)."""
        for round_ in plan.rounds:
            all_healthy = True
            for provision in round_.provisions:
                self.counter += 1
                iid = f"new-{self.counter:05d}"
                health = H if self.rng.random() < instant else U
                all_healthy &= health is H
                self.members[iid] = member(
                    iid, logical_id=provision.logical_id, health=health, created=1000 + self.counter
                )
            if callable(check):
                check(self)
            for destroy in round_.destroys:
                del self.members[destroy.id]
            if callable(check):
                check(self)
            if not all_healthy:
                break

    def tick(self, heal_chance: float) -> None:
        """Some instances become healthy (eventually all do)."""
        for iid, m in list(self.members.items()):
            if m.health is not H and self.rng.random() < heal_chance:
                self.members[iid] = dataclasses.replace(m, health=H)

    def observed(self) -> list[planning.Member]:
        return sorted(self.members.values(), key=lambda m: m.id)


healths = st.sampled_from([H, U, X])


@st.composite
def observed_states(draw: st.DrawFn, *, pool: list[str | None]) -> dict[str, planning.Member]:
    count = draw(st.integers(0, 14))
    members = {}
    for index in range(count):
        iid = f"old-{index:03d}"
        members[iid] = member(
            iid,
            up_to_date=draw(st.booleans()),
            health=draw(healths),
            logical_id=draw(st.sampled_from(pool)),
            created=draw(st.integers(0, 50)),
        )
    return members


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[object, World, float, float]:
    surge = draw(st.integers(0, 3))
    unavailable = draw(st.integers(0 if surge else 1, 3))
    if draw(st.booleans()):
        ids = tuple(draw(st.lists(st.sampled_from(list("abcdefgh")), unique=True, max_size=6)))
        target = spec(logical_ids=ids, surge=surge, unavailable=unavailable, note=draw(st.sampled_from(["v1", "v2"])))
        pool: list[str | None] = [None, *"abcdefghxyz"]
    else:
        target = spec(size=draw(st.integers(0, 10)), surge=surge, unavailable=unavailable)
        pool = [None, "a", "b"]
    world = World(members=draw(observed_states(pool=pool)), rng=random.Random(draw(st.integers(0, 2**32))))
    return target, world, draw(st.sampled_from([0.2, 0.5, 1.0])), draw(st.sampled_from([0.0, 0.5, 1.0]))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_any_state_converges_to_exactly_the_desired_set(scenario: tuple[object, World, float, float]) -> None:
    target, world, heal_chance, instant = scenario
    assert isinstance(target, type(spec()))
    for _ in range(500):
        plan = planning.plan(target, world.observed())
        assert plan == planning.plan(target, world.observed()), "the planner must be deterministic"
        if plan.converged:
            break
        world.apply(plan, instant=instant)
        world.tick(heal_chance)
    else:
        pytest.fail(f"did not converge: {world.observed()}")
    final = world.observed()
    assert len(final) == target.desired_size
    assert all(m.up_to_date for m in final)
    if target.is_pets:
        assert sorted(m.logical_id or "" for m in final) == sorted(target.allocation.logical_ids or ())


@st.composite
def rolling_updates(draw: st.DrawFn) -> tuple[object, World, float, float]:
    size = draw(st.integers(1, 12))
    surge = draw(st.integers(0, 3))
    unavailable = draw(st.integers(0 if surge else 1, 3))
    target = spec(size=size, surge=surge, unavailable=unavailable, note="v2")
    old = {f"old-{i:03d}": member(f"old-{i:03d}", up_to_date=False, created=i) for i in range(size)}
    rng = random.Random(draw(st.integers(0, 2**32)))
    return (
        target,
        World(members=old, rng=rng),
        draw(st.sampled_from([0.1, 0.5, 1.0])),
        draw(st.sampled_from([0.0, 0.5, 1.0])),
    )


@settings(max_examples=300, deadline=None)
@given(rolling_updates())
def test_rolling_update_stays_within_surge_and_unavailable(scenario: tuple[object, World, float, float]) -> None:
    target, world, heal_chance, instant = scenario
    assert isinstance(target, type(spec()))
    size, surge, unavailable = (
        target.desired_size,
        target.update_strategy.max_surge,
        target.update_strategy.max_unavailable,
    )

    def check(state: World) -> None:
        total = len(state.members)
        healthy = sum(m.healthy for m in state.members.values())
        assert total <= size + surge, f"{total} instances > {size} + maxSurge {surge}"
        assert healthy >= size - unavailable, f"{healthy} healthy < {size} - maxUnavailable {unavailable}"

    for _ in range(1000):
        plan = planning.plan(target, world.observed())
        if plan.converged:
            break
        world.apply(plan, check=check, instant=instant)
        world.tick(heal_chance)
    else:
        pytest.fail("rolling update did not finish")
    assert all(m.up_to_date for m in world.observed()) and len(world.members) == size


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_paused_groups_are_never_touched(scenario: tuple[object, World, float, float]) -> None:
    target, world, _, _ = scenario
    assert isinstance(target, type(spec()))
    paused = dataclasses.replace(target, paused=True)
    assert planning.plan(paused, world.observed()).empty


def test_a_whole_roll_is_one_plan_when_instances_are_healthy_at_once() -> None:
    old = [member(f"o{i:02d}", up_to_date=False, created=i) for i in range(10)]
    plan = planning.plan(spec(size=10), old)
    made = sum(len(r.provisions) for r in plan.rounds)
    gone = [d.id for r in plan.rounds for d in r.destroys]
    assert made == 10
    assert sorted(gone) == sorted(m.id for m in old)
    assert gone == [m.id for m in planning.removal_order(old)]  # newest outdated first
    assert all(len(r.provisions) <= 1 for r in plan.rounds)  # maxSurge 1, one at a time


# --- bootstrap instances (issue 11, item 12b) ---------------------------------------------------


def bootstrap(iid: str, *, logical_id: str | None = None, created: float = 0.0) -> planning.Member:
    """An instance made outside InfraKit to join the group, classified as the engine does."""
    tags = {instances.TAG_GROUP: "g", instances.TAG_CONFIG_SHA: instances.BOOTSTRAP_SHA}
    description = instances.Description(id=iid, logical_id=logical_id, tags=tags, created=created)
    (judged,) = planning.classify(spec(), [description], {iid: H})
    return judged


def test_a_bootstrap_instance_is_up_to_date_and_labelled_with_the_group_hash() -> None:
    target = spec(size=3)
    members = [bootstrap("boot"), member("a")]
    assert members[0].up_to_date
    plan = planning.plan(target, members)
    assert not plan.converged
    assert [(lb.id, dict(lb.tags), lb.reason) for lb in plan.rounds[0].labels] == [
        ("boot", {instances.TAG_CONFIG_SHA: target.config_sha}, planning.Reason.BOOTSTRAP)
    ]
    assert len(plan.provisions) == 1 and not plan.destroys  # it counts: one more, not two


def test_a_group_of_bootstrap_instances_only_needs_labels() -> None:
    plan = planning.plan(spec(size=2), [bootstrap("b1"), bootstrap("b2")])
    assert [lb.id for r in plan.rounds for lb in r.labels] == ["b1", "b2"]
    assert not any(r.provisions or r.destroys for r in plan.rounds)
    assert not plan.empty  # the engine acts on it


def test_a_bootstrap_instance_waiting_on_a_roll_is_still_labelled() -> None:
    waiting = [member("old", up_to_date=False), member("new", health=U)]
    assert planning.plan(spec(size=2), [*waiting, member("m")]).blocked  # the same, labelled already
    plan = planning.plan(spec(size=2), [*waiting, bootstrap("boot")])
    assert [lb.id for lb in plan.rounds[0].labels] == ["boot"]
    assert not plan.provisions and not plan.destroys


def test_a_bootstrap_instance_that_goes_is_not_labelled() -> None:
    plan = planning.plan(spec(size=1), [member("a", created=1), bootstrap("boot", created=9)])
    assert [d.id for d in plan.destroys] == ["boot"]  # newest first, as any up-to-date surplus
    assert not plan.rounds[0].labels


def test_a_bootstrap_pet_keeps_its_logical_id() -> None:
    target = spec(logical_ids=("m1", "m2"))
    plan = planning.plan(target, [bootstrap("boot", logical_id="m1")])
    assert [lb.id for lb in plan.rounds[0].labels] == ["boot"]
    assert [p.logical_id for p in plan.provisions] == ["m2"] and not plan.destroys


def test_a_paused_group_labels_nothing() -> None:
    assert planning.plan(spec(size=1, paused=True), [bootstrap("boot")]).empty


def test_once_labelled_it_is_an_ordinary_member() -> None:
    target = spec(size=1)
    labelled = instances.Description(
        id="boot", tags={instances.TAG_GROUP: "g", instances.TAG_CONFIG_SHA: target.config_sha}
    )
    assert planning.plan(target, planning.classify(target, [labelled], {"boot": H})).converged
    rolled = spec(size=1, note="v2")  # a later spec rolls it like any other
    (outdated,) = planning.classify(rolled, [labelled], {"boot": H})
    assert not outdated.up_to_date


# --- orphans adopted again (issue 19, B6) -----------------------------------------------------


def orphan(iid: str, target: specs.GroupSpec, *, sha: str = "", created: float = 0.0) -> planning.Member:
    """An instance its group left in place on purpose (freed), as a new group of that name observes it."""
    tags = {
        instances.TAG_GROUP: "g",
        instances.TAG_CONFIG_SHA: sha or target.config_sha,
        instances.TAG_ORPHANED: "true",
    }
    description = instances.Description(id=iid, tags=tags, created=created)
    (judged,) = planning.classify(target, [description], {iid: H})
    return judged


UNMARK = {instances.TAG_ORPHANED: "false"}


def test_an_adopted_orphan_loses_its_mark() -> None:
    """Before: the mark stayed, and if the group later went without its finalizer, the collector
    skipped its instances for ever."""
    target = spec(size=2)
    plan = planning.plan(target, [orphan("a", target), orphan("b", target)])
    assert not plan.converged and not plan.provisions and not plan.destroys
    assert [(lb.id, dict(lb.tags), lb.reason) for lb in plan.rounds[0].labels] == [
        ("a", UNMARK, planning.Reason.READOPTED),
        ("b", UNMARK, planning.Reason.READOPTED),
    ]


def test_once_unmarked_the_group_is_converged() -> None:
    target = spec(size=1)
    (adopted,) = planning.classify(
        target,
        [instances.Description(id="a", tags={instances.TAG_CONFIG_SHA: target.config_sha, **UNMARK})],
        {"a": H},
    )
    assert planning.plan(target, [adopted]).converged


def test_an_orphan_that_goes_is_not_unmarked() -> None:
    target = spec(size=1)
    plan = planning.plan(target, [orphan("a", target, created=1), orphan("b", target, created=9)])
    assert [d.id for d in plan.destroys] == ["b"]
    assert [lb.id for lb in plan.rounds[0].labels] == ["a"]


def test_an_outdated_orphan_is_unmarked_while_it_waits_for_its_roll() -> None:
    target = spec(size=2, surge=1, unavailable=0)
    plan = planning.plan(target, [orphan("a", target, sha="old"), orphan("b", target, sha="old")])
    assert {lb.id for lb in plan.rounds[0].labels} == {"a", "b"}  # neither goes in the first round
    assert len(plan.provisions) == 1


def test_a_bootstrap_orphan_gets_one_label_with_both_changes() -> None:
    target = spec(size=1)
    plan = planning.plan(target, [orphan("a", target, sha=instances.BOOTSTRAP_SHA)])
    (label,) = plan.rounds[0].labels
    assert dict(label.tags) == {instances.TAG_CONFIG_SHA: target.config_sha, **UNMARK}
    assert label.reason is planning.Reason.BOOTSTRAP  # counted as the adoption InfraKit made


def test_a_paused_group_unmarks_nothing() -> None:
    target = spec(size=1, paused=True)
    assert planning.plan(target, [orphan("a", target)]).empty


def pets(*logical_ids: str, outdated: str = "") -> list[planning.Member]:
    return [member(f"i-{x}", logical_id=x, up_to_date=x not in outdated) for x in logical_ids]


@pytest.mark.parametrize(
    ("wanted", "members", "text"),
    [
        (("a", "b", "d"), pets("a", "b", "c"), "Replacing logical IDs c with d"),
        (("a", "d", "e"), pets("a", "b", "c"), "Replacing logical IDs b, c with d, e"),
        (("a", "d"), pets("a", "b", "c"), "Replacing logical IDs b, c with d to reduce the group size to 2"),
        (("a", "c", "d"), pets("a", "b"), "Replacing logical IDs b with c, d to increase the group size to 3"),
        (
            ("a", "b", "d"),
            pets("a", "b", "c", outdated="ac"),
            "Replacing logical IDs c with d, then performing a rolling update on 1 instances",
        ),
        (
            ("a", "b"),
            [*pets("a"), member("i-a2", logical_id="a", created=5)],
            "Replacing logical IDs a (duplicate) with b",
        ),
        (("a",), [member("i-x")], "Replacing logical IDs i-x (no logical ID) with a"),
        # No instance replaced: InfraKit's words, which count.
        (("a", "b", "c"), pets("a", "b", "c"), "Noop"),
        (("c", "b", "a"), pets("a", "b", "c"), "Noop"),
        (("a", "b", "c"), pets("a", "b"), "Adding 1 instances to increase the group size to 3"),
        (("a", "c"), pets("a", "b", "c"), "Terminating 1 instances to reduce the group size to 2"),
        (("a", "b"), pets("a", "b", outdated="b"), "Performing a rolling update on 1 instances"),
    ],
)
def test_describe_change_of_logical_ids(wanted: tuple[str, ...], members: list[planning.Member], text: str) -> None:
    assert planning.plan(spec(logical_ids=wanted), members).explain(managed=True) == text
    assert planning.plan(spec(logical_ids=wanted), members).explain(managed=False) == (
        f"Managing {len(wanted)} instances"
    )


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from("abcdef"), min_size=1, max_size=6, unique=True),
    st.lists(st.tuples(st.sampled_from("abcdefg"), st.booleans()), max_size=8),
)
def test_describe_change_says_noop_only_when_the_plan_does_nothing(
    wanted: list[str], observed: list[tuple[str, bool]]
) -> None:
    group = spec(logical_ids=tuple(wanted))
    members = [
        member(f"i{n}", logical_id=None if x == "g" else x, up_to_date=fresh, created=n)
        for n, (x, fresh) in enumerate(observed)
    ]
    text = planning.plan(group, members).explain(managed=True)
    assert (text == "Noop") == planning.plan(group, members).converged, text
