"""The allocator's promises, proved over thousands of generated sites.

A rule like "a higher priority is never cut while a lower one gets more than its minimum" is checked as: no
small transfer of power from the lower car to the higher one would respect every limit that is already
tight. The same test, between cars of one level, proves max-min fairness.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rules.allocation import (
    Demand,
    Snapshot,
    Turn,
    allocate,
    capped,
    coefficients,
    headroom,
    level,
    rotate,
    urgent,
    with_turns,
)

TOL = 0.01  # W: the allocator gives limits to the milliwatt; a few of those may add up
VOLTS = 230.0
PHASINGS = [(1, 2, 3), (1,), (2,), (3,)]


@st.composite
def sites(draw, max_demands: int = 12) -> Snapshot:
    n = draw(st.integers(0, max_demands))
    groups = [f"group:g{i}" for i in range(draw(st.integers(0, 3)))]
    chargers = [f"charger:C{i}" for i in range(draw(st.integers(1, 5)))]
    ranks = draw(st.permutations(range(n)))
    demands = []
    for i in range(n):
        phases = draw(st.sampled_from(PHASINGS))
        min_w = 6 * VOLTS * len(phases)
        demands.append(Demand(
            key=f"d{i}", phases=phases, min_w=min_w, max_w=draw(st.floats(min_w * 0.5, 22000.0)),
            priority=draw(st.integers(0, 2)),
            groups=tuple(draw(st.sets(st.sampled_from(groups)))) + (draw(st.sampled_from(chargers)),) if groups
            else (draw(st.sampled_from(chargers)),),
            draw_w=draw(st.none() | st.floats(0.0, 22000.0)), limit_w=draw(st.none() | st.floats(0.0, 22000.0)),
            rank=ranks[i], on=draw(st.booleans()), locked=draw(st.booleans()),
            laxity_s=draw(st.none() | st.floats(-3600.0, 7200.0)),
        ))  # fmt: skip
    phase_limit = draw(st.none() | st.tuples(*[st.floats(0.0, 80000.0)] * 3))
    return Snapshot(
        demands=tuple(demands),
        limit_w=draw(st.none() | st.floats(0.0, 250000.0)),
        phase_limit_w=phase_limit,
        grid_w=draw(st.floats(0.0, 250000.0)),
        grid_phase_w=draw(st.tuples(*[st.floats(0.0, 90000.0)] * 3)) if phase_limit else None,
        group_limit_w={g: draw(st.floats(0.0, 60000.0)) for g in groups + chargers},
        failsafe_w=draw(st.none() | st.floats(0.0, 100000.0)),
    )


class Checked:
    """An allocation and the facts every promise is judged by."""

    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap
        self.result = allocate(snap)
        self.room = headroom(snap)
        self.coef = {d.key: coefficients(d) for d in snap.demands}
        self.give = {k: a.limit_w for k, a in self.result.items()}
        self.load = {c: sum(self.give[d.key] * self.coef[d.key].get(c, 0.0) for d in snap.demands) for c in self.room}
        self.slack = {c: self.room[c] - self.load[c] for c in self.room}
        self.cap = {d.key: capped(d, snap)[0] for d in snap.demands}

    def tight(self, c: str) -> bool:
        return self.slack[c] <= TOL

    def could_move(self, to: Demand, from_: Demand) -> bool:
        """A little power could go from `from_` to `to` without breaking any limit that is already tight."""
        return all(not self.tight(c) or self.coef[to.key].get(c, 0) - self.coef[from_.key].get(c, 0) <= 1e-9
                   for c in self.room)  # fmt: skip

    def would_fit(self, d: Demand, freed: list[Demand]) -> bool:
        """d's minimum would fit if these others gave up what they have."""
        return all(self.slack[c] + sum(self.give[f.key] * self.coef[f.key].get(c, 0) for f in freed) + TOL
                   >= d.min_w * self.coef[d.key].get(c, 0) for c in self.room)  # fmt: skip

    def admitted(self, d: Demand) -> bool:
        return self.give[d.key] > 0


def check_no_limit_is_ever_exceeded(c: Checked) -> None:
    snap = c.snap
    for name, load in c.load.items():
        assert load <= c.room[name] + TOL * max(1.0, len(snap.demands)), (name, load, c.room[name])


def check_a_car_gets_nothing_or_between_its_minimum_and_its_maximum(c: Checked) -> None:
    snap = c.snap
    for d in snap.demands:
        given_w = c.give[d.key]
        assert given_w == 0 or d.min_w - TOL <= given_w <= c.cap[d.key] + TOL, (d, given_w)
        assert given_w <= d.max_w + TOL
        assert c.result[d.key].reason


def check_a_higher_level_is_never_cut_while_a_lower_one_gets_more_than_its_minimum(c: Checked) -> None:
    snap = c.snap
    for hi in snap.demands:
        for lo in snap.demands:
            if level(hi, snap) <= level(lo, snap) or c.give[lo.key] <= lo.min_w + TOL:
                continue
            if c.admitted(hi) and c.give[hi.key] < c.cap[hi.key] - TOL:
                assert not c.could_move(hi, lo), (hi, lo, c.result)
            if not c.admitted(hi) and not (hi.locked and not hi.on) and c.cap[hi.key] >= hi.min_w:
                lower = [d for d in snap.demands if level(d, snap) < level(hi, snap)]
                assert not c.would_fit(hi, lower), (hi, c.result)


def check_the_split_within_a_level_is_max_min_fair(c: Checked) -> None:
    snap = c.snap
    for poor in snap.demands:
        for rich in snap.demands:
            if (level(poor, snap) != level(rich, snap) or not c.admitted(poor) or not c.admitted(rich)
                    or c.give[poor.key] >= c.give[rich.key] - TOL or c.give[poor.key] >= c.cap[poor.key] - TOL
                    or c.give[rich.key] <= rich.min_w + TOL):  # fmt: skip
                continue
            assert not c.could_move(poor, rich), (poor, rich, c.result)


def check_nothing_is_left_over_while_a_car_could_take_more(c: Checked) -> None:
    snap = c.snap
    for d in snap.demands:
        if c.admitted(d) and c.give[d.key] < c.cap[d.key] - TOL:
            assert any(c.tight(name) for name in c.coef[d.key] if name in c.room), (d, c.result)
        if not c.admitted(d) and not (d.locked and not d.on) and c.cap[d.key] >= d.min_w:
            assert not c.would_fit(d, []), (d, c.result)  # paused only for want of room


def check_when_minimums_do_not_all_fit_the_newest_of_the_lowest_priority_wait(c: Checked) -> None:
    snap = c.snap
    for waiting in snap.demands:
        if c.admitted(waiting) or (waiting.locked and not waiting.on) or c.cap[waiting.key] < waiting.min_w:
            continue
        for running in snap.demands:
            if not c.admitted(running) or (running.locked and running.on):
                continue
            same = level(running, snap) == level(waiting, snap) and not urgent(running, snap)
            behind = running.rank > waiting.rank if same else level(running, snap) < level(waiting, snap)
            if behind:
                assert not c.would_fit(waiting, [running]), (waiting, running, c.result)


def check_a_session_about_to_miss_its_departure_comes_first(c: Checked) -> None:
    snap = c.snap
    for late in snap.demands:
        if not urgent(late, snap) or not c.admitted(late) or c.give[late.key] >= c.cap[late.key] - TOL:
            continue
        for other in snap.demands:
            if other.priority == late.priority and not urgent(other, snap) and c.give[other.key] > other.min_w + TOL:
                assert not c.could_move(late, other)


PROMISES = (check_no_limit_is_ever_exceeded, check_a_car_gets_nothing_or_between_its_minimum_and_its_maximum,
            check_a_higher_level_is_never_cut_while_a_lower_one_gets_more_than_its_minimum,
            check_the_split_within_a_level_is_max_min_fair, check_nothing_is_left_over_while_a_car_could_take_more,
            check_when_minimums_do_not_all_fit_the_newest_of_the_lowest_priority_wait,
            check_a_session_about_to_miss_its_departure_comes_first)  # fmt: skip


@settings(max_examples=2000, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(sites())
def test_every_promise_holds_on_every_generated_site(snap):
    checked = Checked(snap)
    for promise in PROMISES:
        promise(checked)


def test_headroom_is_the_limit_minus_what_the_evs_do_not_draw():
    snap = Snapshot(demands=(Demand("a", draw_w=10000.0), Demand("b", phases=(2,), draw_w=3000.0)), limit_w=100000.0,
                    grid_w=80000.0, phase_limit_w=(40000.0, 40000.0, 40000.0),
                    grid_phase_w=(26000.0, 29000.0, 25000.0))  # fmt: skip
    room = headroom(snap)
    assert room["site"] == 100000 - (80000 - 13000)
    assert room["phase:2"] == pytest.approx(40000 - (29000 - 3000 - 10000 / 3))
    assert headroom(Snapshot(demands=(), limit_w=50000.0, grid_w=90000.0))["site"] == 0.0
    failsafe = headroom(Snapshot(demands=(Demand("a", draw_w=5.0),), limit_w=1e6, grid_w=0.0, failsafe_w=22000.0))
    assert failsafe["site"] == 22000.0


def test_a_simple_site_shares_equally_and_says_why():
    cars = tuple(Demand(f"CP0{i}/1", min_w=4140.0, max_w=22000.0) for i in range(1, 4))
    result = allocate(Snapshot(demands=cars, limit_w=40000.0, grid_w=10000.0))
    assert [a.limit_w for a in result.values()] == [10000.0] * 3
    assert {a.reason for a in result.values()} == {"fair share: site limit"}
    few = allocate(Snapshot(demands=cars, limit_w=100000.0, grid_w=10000.0))
    assert [a.limit_w for a in few.values()] == [22000.0] * 3 and few["CP01/1"].reason == "max"


def test_the_newest_wait_when_minimums_do_not_fit():
    cars = tuple(Demand(f"c{i}", min_w=4140.0, rank=i) for i in range(4))
    result = allocate(Snapshot(demands=cars, limit_w=10000.0))
    assert [result[f"c{i}"].limit_w for i in range(4)] == [5000.0, 5000.0, 0.0, 0.0]
    assert result["c3"].reason == "paused: not enough for every minimum (site limit)"


def test_a_car_that_takes_less_leaves_the_rest_to_the_others():
    slow = Demand("slow", max_w=22000.0, draw_w=3000.0, limit_w=11000.0)
    fast = Demand("fast", max_w=22000.0, draw_w=11000.0, limit_w=11000.0)
    result = allocate(Snapshot(demands=(slow, fast), limit_w=100000.0, grid_w=54000.0))  # room 40 kW
    assert result["slow"] == allocate(Snapshot(demands=(slow,), limit_w=1e9))["slow"]
    assert result["slow"].limit_w == 4140.0 and result["slow"].reason == "demand: the car takes less"
    assert result["fast"].limit_w == 22000.0


def test_a_single_phase_car_is_held_by_its_own_phase():
    l1 = Demand("l1", phases=(1,), min_w=1380.0, max_w=7400.0)
    l2 = Demand("l2", phases=(2,), min_w=1380.0, max_w=7400.0)
    snap = Snapshot(demands=(l1, l2), limit_w=1e9, phase_limit_w=(36800.0, 36800.0, 36800.0), grid_w=37000.0,
                    grid_phase_w=(33000.0, 2000.0, 2000.0))  # fmt: skip
    result = allocate(snap)
    assert result["l1"].limit_w == 3800.0 and result["l1"].reason == "fair share: phase L1 limit"
    assert result["l2"].limit_w == 7400.0


def test_rotation_gives_every_car_its_turn():
    """Six cars, room for three minimums: simulated for hours, each car gets the same time on (to a turn)."""
    min_on, min_off, step = 300.0, 120.0, 10.0
    cars = [Demand(f"c{i}", min_w=4140.0, max_w=4140.0) for i in range(6)]
    queue: list[str] = []
    turns = {d.key: Turn(d.key, d.priority, False, -1e9) for d in cars}
    served = dict.fromkeys(turns, 0.0)
    now = 0.0
    while now < 6 * 3600:
        queue = rotate(queue, turns.values(), now, min_on, min_off)
        snap = with_turns(Snapshot(demands=tuple(cars), limit_w=3 * 4140.0), queue, turns, now, min_on, min_off)
        result = allocate(snap)
        for key, a in result.items():
            on = a.limit_w > 0
            if on != turns[key].on:
                turns[key] = Turn(key, 1, on, now)
            served[key] += step if on else 0.0
        assert sum(a.limit_w for a in result.values()) <= 3 * 4140.0 + TOL
        now += step
    assert max(served.values()) - min(served.values()) <= min_on + min_off + step
    assert math.isclose(sum(served.values()), 3 * 6 * 3600, rel_tol=0.02)
