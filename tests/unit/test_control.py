"""The load cap's rules (rules/control.py), pure: readings in, limits out -- no sockets, no sleeps, no clock."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.settings import LoadcapSettings
from rules.allocation import headroom
from rules.control import (
    NOT_STEERED,
    REFUSED_RETRY_S,
    SETTLE_S,
    Charger,
    Evse,
    Reading,
    State,
    confirmed,
    decide,
    failed,
    forget,
    sending,
)

WALL = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
CFG = LoadcapSettings(margin_w=0, ramp_step_w=3000, ramp_interval_s=2, dead_band_w=300, min_on_s=0, min_off_s=0,
                      profile_validity_s=300)  # fmt: skip
MIN_3 = 6 * 230 * 3  # 4140 W: the minimum current on three phases


def evse(key: str, draw: float | None = None, **kw) -> Evse:
    charger, _, n = key.partition("/")
    return Evse(**{"key": key, "charger": charger, "evse": int(n), "phases": (1, 2, 3), "charger_phases": 3,
                   "min_w": MIN_3, "max_w": 22000.0, "max_reason": "max: charger rating", "draw_w": draw,
                   "measured_at": WALL, **kw})  # fmt: skip


def site(*evses: Evse, limit: float = 50000.0, grid: float | None = 10000.0, controls: dict | None = None,
         **kw) -> Reading:  # fmt: skip
    chargers = {e.charger: Charger((controls or {}).get(e.charger, "evse"), 22000.0, 22000.0, 3) for e in evses}
    return Reading(evses=evses, chargers=chargers, limit_w=limit, grid_w=grid, grid_at=WALL, metered=True,
                   fallback_w=kw.pop("fallback_w", 12000.0), **kw)  # fmt: skip


def run(state: State, reading: Reading, now: float, wall: datetime = WALL, accept: bool = True):
    """One decision, every limit it sends taken by the chargers (when `accept`)."""
    state, decision = decide(state, reading, CFG, now, wall)
    for limit in decision.send:
        state = sending(state, limit, wall)
        if accept:
            state = confirmed(state, limit, now, wall)
    return state, decision


def sent(decision) -> dict[str, float]:
    return {limit.target: limit.limit_w for limit in decision.send if limit.purpose == "dynamic"}


def settled(reading: Reading, state: State | None = None, now: float = 0.0) -> tuple[State, float]:
    """Decisions until the ramps are done: the state, and the time then."""
    state = state or State()
    for _ in range(20):
        state, decision = run(state, reading, now)
        now += CFG.ramp_interval_s
        if not sent(decision):
            break
    return state, now


def test_a_new_session_climbs_from_its_minimum_and_nothing_is_sent_again_until_it_is_due():
    state, decision = run(State(), site(evse("A/1")), 0.0)
    assert sent(decision) == {"A/1": MIN_3 + 3000}  # it runs on the default profile: one step up from there
    state, decision = run(state, site(evse("A/1")), 1.0)
    assert sent(decision) == {}  # the next step is not due yet
    state, now = settled(site(evse("A/1")), state, 2.0)
    assert state.told["A/1"].limit_w == 22000.0
    state, decision = run(state, site(evse("A/1")), now + 1)
    assert sent(decision) == {}
    state, decision = run(state, site(evse("A/1")), now + CFG.profile_validity_s / 2 + 0.1)
    assert sent(decision) == {"A/1": 22000.0}  # renewed before half its validity


def test_a_car_paused_for_want_of_room_is_told_at_once():
    state, decision = run(State(), site(evse("A/1"), evse("B/1"), limit=16000.0), 0.0)  # 6 kW: one minimum fits
    assert sorted(sent(decision).values()) == [0.0, 6000.0]


def test_decreases_go_at_once_and_increases_in_steps():
    state, now = settled(site(evse("A/1"), evse("B/1"), limit=30000.0))  # 10 kW each
    assert state.told["A/1"].limit_w == 10000.0
    state, decision = run(state, site(evse("A/1"), evse("B/1"), limit=20000.0), now)
    assert sent(decision) == {"A/1": 5000.0, "B/1": 5000.0}  # down at once
    steps = []
    for _ in range(8):
        now += CFG.ramp_interval_s
        state, decision = run(state, site(evse("A/1"), evse("B/1"), limit=60000.0), now)
        steps.append(sent(decision).get("A/1"))
    assert steps[:5] == [8000.0, 11000.0, 14000.0, 17000.0, 20000.0]  # ramp_step_w at a time
    assert state.told["A/1"].limit_w == 22000.0


def test_a_change_under_the_dead_band_is_not_sent():
    state, now = settled(site(evse("A/1"), evse("B/1"), limit=30000.0))
    state, decision = run(state, site(evse("A/1"), evse("B/1"), limit=30400.0), now)  # 200 W more each
    assert sent(decision) == {}
    state, decision = run(state, site(evse("A/1"), evse("B/1"), limit=29000.0), now + 1)  # 500 W less each
    assert sent(decision) == {"A/1": 9500.0, "B/1": 9500.0}


def test_a_held_limit_that_no_longer_fits_is_cut_now():
    state, now = settled(site(evse("A/1"), evse("B/1"), limit=30000.0))
    # The building took 400 W more: each share is 200 W down (under the dead band), but both together would
    # keep the site 400 W over with no margin: the cut goes out.
    later = WALL + timedelta(seconds=now)
    cars = (evse("A/1", 10000.0, measured_at=later), evse("B/1", 10000.0, measured_at=later))
    state, decision = run(state, site(*cars, limit=30000.0, grid=30400.0), now + 10, later)
    assert sent(decision) == {"A/1": 9800.0, "B/1": 9800.0}


def test_a_silent_grid_meter_holds_the_evs_to_the_fallback_at_once_and_says_so_once():
    cars = [evse(f"{c}/1", 11000.0) for c in "ABC"]
    state, _ = run(State(), site(*cars, limit=100000.0), 0.0)
    state, decision = run(state, site(*cars, limit=100000.0, grid=None), 1.0)
    assert sum(sent(decision).values()) <= 12000.0 and decision.events[0] == (
        "failsafe", {"on": True, "fallback_limit_w": 12000.0})  # fmt: skip
    state, decision = run(state, site(*cars, limit=100000.0, grid=None), 2.0)
    assert not [e for e in decision.events if e[0] == "failsafe"]
    state, decision = run(state, site(*cars, limit=100000.0), 3.0)
    assert ("failsafe", {"on": False, "fallback_limit_w": 12000.0}) in decision.events


def test_a_draw_measured_before_the_limit_settled_counts_at_the_limit():
    state, _ = settled(site(evse("A/1"), limit=30000.0))  # told 20 kW, the last step at WALL
    early = site(evse("A/1", 5000.0, measured_at=WALL + timedelta(seconds=1)), limit=30000.0)
    _, decision = decide(state, early, CFG, 1.0, WALL + timedelta(seconds=1))
    assert decision.snapshot.demands[0].draw_w == 20000.0 and decision.snapshot.demands[0].limit_w is None
    later = site(evse("A/1", 5000.0, measured_at=WALL + timedelta(seconds=SETTLE_S + 1)), limit=30000.0)
    _, decision = decide(state, later, CFG, 9.0, WALL + timedelta(seconds=SETTLE_S + 1))
    assert decision.snapshot.demands[0].draw_w == 5000.0  # settled: the car takes less
    assert decision.allocation["A/1"].reason == "demand: the car takes less"


@pytest.mark.parametrize("control, expected", [("each_evse", 6000.0), ("charger", 13000.0)])
def test_a_charger_steered_as_a_whole_gets_one_limit_on_evse_0(control, expected):
    # 20 kW for three cars: B/2 takes at most 6 kW, A and B/1 share the rest; B steered as a whole.
    reading = site(evse("A/1"), evse("B/1", max_w=8000.0), evse("B/2", max_w=6000.0), limit=30000.0,
                   controls={"B": control})  # fmt: skip
    state, decision = run(State(), reading, 0.0)
    assert decision.allocation["B/1"].limit_w == 7000.0 and decision.allocation["B/2"].limit_w == 6000.0
    assert "B/1" not in sent(decision) and "B/2" not in sent(decision)
    assert next(limit for limit in decision.send if limit.target == "B/0").evse == 0
    state, _ = settled(reading, state, 2.0)
    assert state.told["B/0"].limit_w == expected  # each EVSE alike: the smallest share; as a whole: the sum


def test_a_charger_that_cannot_be_steered_has_its_rating_reserved():
    reading = site(evse("A/1"), evse("B/1"), evse("U/1", 3000.0), limit=40000.0, controls={"U": "none"})
    state, decision = run(State(), reading, 0.0)
    assert decision.allocation["U/0"].limit_w == 22000.0 and decision.allocation["U/0"].reason == NOT_STEERED
    assert not [limit for limit in decision.send if limit.charger == "U"]
    state, _ = settled(reading, state, 2.0)
    # 40 kW - (10 kW measured - the 3 kW it draws) - its 22 kW rating: 11 kW for the two others
    assert (state.told["A/1"].limit_w, state.told["B/1"].limit_w) == (5500.0, 5500.0)


def test_a_limit_not_taken_waits_before_it_is_sent_again():
    reading = site(evse("A/1"))
    state, decision = run(State(), reading, 0.0, accept=False)
    [limit] = decision.send
    state = failed(state, limit, 0.0)
    assert sent(run(state, reading, 1.0)[1]) == {}  # a timeout: 2 s
    assert sent(run(state, reading, 2.5)[1]) == {"A/1": limit.limit_w}
    refused = failed(sending(state, limit, WALL), limit, 0.0, refused=True)
    assert sent(run(refused, reading, REFUSED_RETRY_S - 1)[1]) == {}  # a refusal: not again within a minute
    superseded = failed(sending(State(), limit, WALL), limit, 0.0, superseded=True)
    assert sent(run(superseded, reading, 0.1)[1]) == {"A/1": limit.limit_w}  # a newer one took its place


def test_one_request_at_a_time_per_target():
    reading = site(evse("A/1"))
    state, decision = run(State(), reading, 0.0, accept=False)  # on its way, unanswered
    assert sent(run(state, reading, 1.0)[1]) == {}


def test_a_charger_that_registered_again_is_told_everything_again():
    state, now = settled(site(evse("A/1"), evse("B/1")))
    state = forget(state, "A")
    assert sent(run(state, site(evse("A/1"), evse("B/1")), now)[1]) == {"A/1": MIN_3 + 3000}  # from its default


def test_the_ceiling_lifts_a_baseline_while_steered_and_is_renewed():
    reading = replace(site(evse("A/1")), chargers={"A": Charger("evse", 22000.0, 5000.0, 3)})
    state, decision = run(State(), reading, 0.0)
    assert [(limit.target, limit.purpose, limit.limit_w) for limit in decision.send if limit.purpose == "ceiling"] \
        == [("A/ceiling", "ceiling", 22000.0)]  # fmt: skip
    assert not [lim for lim in run(state, reading, 1.0)[1].send if lim.purpose == "ceiling"]
    assert [lim for lim in run(state, reading, 151.0)[1].send if lim.purpose == "ceiling"]
    whole = replace(reading, chargers={"A": Charger("charger", 22000.0, 5000.0, 3)})
    assert not [lim for lim in run(State(), whole, 0.0)[1].send if lim.purpose == "ceiling"]  # its limit is that


@pytest.mark.parametrize("hours, misses", [(2, False), (1, True)])
def test_a_session_with_a_departure_is_told_when_it_will_be_done(hours, misses):
    car = evse("A/1", departure=WALL + timedelta(hours=hours), needed_wh=30000.0, so_far_wh=10000.0)
    _, decision = run(State(), site(car, limit=20000.0), 0.0)  # by its share (10 kW), not the ramp to it
    assert decision.forecasts["A/1"].completion == WALL + timedelta(hours=2)  # 20 kWh more at 10 kW
    assert decision.forecasts["A/1"].misses is misses


@settings(max_examples=300, deadline=None)
@given(
    draws=st.lists(st.one_of(st.none(), st.floats(0, 22000)), min_size=1, max_size=12),
    controls=st.lists(st.sampled_from(["evse", "each_evse", "charger"]), min_size=4, max_size=4),
    limit=st.floats(5000, 200000), building=st.floats(0, 80000),
)  # fmt: skip
def test_what_is_sent_from_scratch_fits_the_site(draws, controls, limit, building):
    evses = tuple(evse(f"{'ABCD'[n % 4]}/{n // 4 + 1}", draw) for n, draw in enumerate(draws))
    reading = site(*evses, limit=limit, grid=building + sum(d or 0.0 for d in draws),
                   controls=dict(zip("ABCD", controls, strict=True)))  # fmt: skip
    _, decision = run(State(), reading, 0.0)
    given_w = {}
    for limit_ in decision.send:
        members = [e for e in evses if limit_.target in (e.key, f"{e.charger}/0")]
        if limit_.purpose == "dynamic":
            shares = {e.key: decision.allocation[e.key].limit_w for e in members}
            total = sum(shares.values())
            for key, share in shares.items():
                whole = limit_.target.endswith("/0") and reading.chargers[key.split("/")[0]].control == "charger"
                given_w[key] = limit_.limit_w * (share / total if whole and total else 1.0)
    room = headroom(decision.snapshot)["site"]
    assert sum(given_w.values()) <= room + 1e-6


def test_once_the_ramps_are_done_the_limits_are_what_the_allocator_decided():
    state, now = settled(site(evse("A/1"), evse("B/1"), limit=30000.0))
    _, decision = run(state, site(evse("A/1"), evse("B/1"), limit=30000.0), now)
    assert {k: t.limit_w for k, t in state.told.items()} == {k: a.limit_w for k, a in decision.allocation.items()}
