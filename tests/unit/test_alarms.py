"""The alarm engine, exhaustively: hysteresis, delays, masks, shelving, counters and ISA-18.2 transitions, with
hypothesis driving it through random samples, clock ticks and operator actions."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules.alarms import (
    ALLOWED,
    SILENT,
    Act,
    Alarm,
    Board,
    Condition,
    Definition,
    Refused,
    Sample,
    State,
    Tick,
    recount,
    severity,
    step,
)

HIGH = Definition("grid-high", "meters/grid/power_w", (Condition("high", 20, 100.0, 10.0),))
DELAYED = Definition("slow", "x/value", (Condition("high", 10, 100.0, 0.0, on_delay_s=5.0, off_delay_s=3.0),))
OFFLINE = Definition("charger-offline", "chargers/*/online", (Condition("state", 10, values=(False,)),))
FAULTED = Definition("connector-faulted", "chargers/*/evse/*/status", (Condition("state", 15, values=("Faulted",)),),
                     masked_by=("charger-offline:{1}",))  # fmt: skip
LIMITS = Definition("temp", "meters/*/t", (Condition("high_high", 25, 80.0, 2.0), Condition("high", 15, 60.0, 2.0),
                                           Condition("low", 12, 5.0, 1.0), Condition("low_low", 20, 0.0, 1.0)))


def new(definition: Definition, point: str | None = None) -> Alarm:
    point = point or definition.point
    return Alarm.new(definition, point, definition.match(point) or ())


def run(alarm: Alarm, inputs: list[tuple[Any, float]]) -> tuple[Alarm, list[Any]]:
    out = []
    for inp, now in inputs:
        try:
            alarm, transitions, _ = step(alarm, inp, now)
        except Refused:
            continue
        out += transitions
    return alarm, out


# -- the condition layer -------------------------------------------------------------------------------------


@given(st.lists(st.floats(90.0, 1000.0), min_size=1, max_size=40))
def test_a_value_that_stays_within_the_deadband_after_rising_never_clears(values):
    alarm, out = run(new(HIGH), [(Sample(150.0), 0.0)] + [(Sample(v), float(n)) for n, v in enumerate(values, 1)])
    assert [t.kind for t in out] == ["raised"] and alarm.condition == "high"


@given(st.lists(st.floats(-1000.0, 99.999), min_size=1, max_size=40))
def test_a_value_that_stays_under_the_limit_never_raises(values):
    _, out = run(new(HIGH), [(Sample(v), float(n)) for n, v in enumerate(values)])
    assert out == []


@given(st.lists(st.tuples(st.floats(0, 200), st.floats(0.01, 2.0)), min_size=1, max_size=40))
def test_the_alarm_toggles_only_across_the_band(samples):
    """Raised only at or over the limit, cleared only under limit - deadband: never inside the band."""
    alarm, now = new(HIGH), 0.0
    for value, dt in samples:
        now += dt
        alarm, transitions, _ = step(alarm, Sample(value), now)
        for t in transitions:
            if t.kind == "raised":
                assert value >= 100.0
            if t.kind == "returned":
                assert value < 90.0


@given(st.lists(st.tuples(st.booleans(), st.floats(0.0, 4.9)), min_size=1, max_size=30))
def test_a_condition_shorter_than_its_on_delay_never_raises(episodes):
    """Each episode: the condition holds (or not) for less than the 5 s on-delay, ticks included, then clears."""
    alarm, now = new(DELAYED), 0.0
    for holds, length in episodes:
        if holds:
            alarm, out, wake = step(alarm, Sample(150.0), now)
            assert out == [] and wake == now + 5.0
            alarm, out, _ = step(alarm, Tick(), now + length)
            assert out == []
        now += length
        alarm, out, _ = step(alarm, Sample(10.0), now)
        assert out == []
        now += 0.5
    assert alarm.state == State.normal


def test_a_condition_that_lasts_its_on_delay_raises_then_its_off_delay_clears():
    alarm, out, wake = step(new(DELAYED), Sample(150.0), 0.0)
    assert out == [] and wake == 5.0
    alarm, out, wake = step(alarm, Tick(), 5.0)
    assert [t.kind for t in out] == ["raised"] and wake is None
    alarm, out, wake = step(alarm, Sample(10.0), 6.0)
    assert out == [] and wake == 9.0 and alarm.condition == "high"
    alarm, out, _ = step(alarm, Tick(), 9.0)
    assert [(t.kind, t.after) for t in out] == [("returned", State.returned_unacknowledged)]


def test_exclusive_limits_show_the_most_severe_and_a_rise_wants_a_new_acknowledgement():
    alarm, out = run(new(LIMITS, "meters/m1/t"), [(Sample(65.0), 0.0), (Act("acknowledge", "op"), 1.0),
                                                 (Sample(85.0), 2.0), (Sample(70.0), 3.0)])  # fmt: skip
    assert [(t.kind, t.condition, t.after) for t in out] == [
        ("raised", "high", State.active_unacknowledged), ("acknowledged", "high", State.active_acknowledged),
        ("raised", "high_high", State.active_unacknowledged), ("changed", "high", State.active_unacknowledged)]
    alarm, out = run(alarm, [(Sample(-3.0), 4.0)])
    assert out[-1].condition == "low_low" and out[-1].kind == "raised"


def test_a_bad_quality_holds_an_analog_alarm_and_raises_a_state_alarm_that_asks_for_it():
    alarm, out = run(new(HIGH), [(Sample(150.0), 0.0), (Sample(0.0, bad=True), 1.0)])
    assert alarm.condition == "high"
    stale = Definition("stale", "m/p", (Condition("state", 5, bad_quality=True),))
    alarm, out = run(new(stale), [(Sample(1.0), 0.0), (Sample(1.0, bad=True), 1.0)])
    assert [t.kind for t in out] == ["raised"]


def test_typed_values_do_not_match_across_types():
    alarm, out = run(new(OFFLINE, "chargers/CP01/online"), [(Sample(0), 0.0), (Sample(False), 1.0)])
    assert [t.value for t in out] == [False]


# -- masks, shelves, service -----------------------------------------------------------------------------------

POINTS = ["chargers/CP01/online", "chargers/CP01/evse/1/status", "chargers/CP01/evse/2/status",
          "chargers/CP02/online", "chargers/CP02/evse/1/status", "meters/grid/power_w", "meters/m1/t"]
VALUES = {"online": st.booleans(), "status": st.sampled_from(["Available", "Charging", "Faulted"]),
          "power_w": st.floats(0, 300), "t": st.floats(-10, 100)}  # fmt: skip


@st.composite
def board_inputs(draw: Any) -> list[tuple[str, Any]]:
    steps = []
    for _ in range(draw(st.integers(1, 60))):
        kind = draw(st.sampled_from(["sample", "sample", "sample", "tick", "act"]))
        if kind == "sample":
            point = draw(st.sampled_from(POINTS))
            steps.append(("sample", (point, draw(VALUES[point.rsplit("/", 1)[1]]), draw(st.booleans()))))
        elif kind == "tick":
            steps.append(("tick", None))
        else:
            action = draw(st.sampled_from(["acknowledge", "shelve", "unshelve", "remove_from_service",
                                           "return_to_service"]))  # fmt: skip
            steps.append(("act", (draw(st.integers(0, 20)), action, draw(st.floats(0.5, 20)))))
        steps[-1] = (*steps[-1], draw(st.floats(0.0, 3.0)))
    return steps


def drive(inputs: list[Any], check: Any = None) -> tuple[Board, list[Any]]:
    board = Board([HIGH, OFFLINE, FAULTED, LIMITS, DELAYED])
    now, out = 0.0, []
    for kind, arg, dt in inputs:
        now += dt
        if kind == "sample":
            point, value, bad = arg
            out += board.sample(point, value, bad and not isinstance(value, str), now)
        elif kind == "tick":
            out += board.tick(now)
        elif board.alarms:
            index, action, minutes = arg
            alarm_id = sorted(board.alarms)[index % len(board.alarms)]
            try:
                out += board.act(alarm_id, Act(action, "op", until=now + minutes), now)
            except Refused:
                pass
        out += board.tick(now)
        if check is not None:
            check(board)
    return board, out


@settings(max_examples=300)
@given(board_inputs())
def test_counters_always_equal_a_recount_of_the_state_table(inputs):
    def check(board: Board) -> None:
        assert +board.counts == recount(board.alarms.values())

    drive(inputs, check)


@settings(max_examples=300)
@given(board_inputs())
def test_every_transition_sequence_is_one_isa_18_2_allows(inputs):
    board, out = drive(inputs)
    last: dict[str, State] = {}
    for t in out:
        assert t.before == last.get(t.alarm, State.normal), "each transition starts where the last one ended"
        assert t.after in ALLOWED[t.before], f"{t.before} -> {t.after} ({t.kind})"
        last[t.alarm] = t.after
    for alarm_id, state in last.items():
        assert board.alarms[alarm_id].state == state


@settings(max_examples=300)
@given(board_inputs())
def test_a_masked_alarm_is_never_annunciated_while_its_masker_holds(inputs):
    def check(board: Board) -> None:
        for alarm in board.alarms.values():
            if alarm.definition is FAULTED:
                masker = board.alarms.get(f"charger-offline:{alarm.captures[0]}")
                if masker is not None and masker.holding:
                    assert alarm.state in SILENT

    drive(inputs, check)


def test_a_charger_offline_masks_its_connectors_and_they_come_back_unacknowledged():
    board = Board([OFFLINE, FAULTED])
    board.sample("chargers/CP01/evse/1/status", "Faulted", False, 0.0)
    board.sample("chargers/CP02/evse/1/status", "Faulted", False, 0.0)
    board.act("connector-faulted:CP01:1", Act("acknowledge", "op"), 1.0)
    out = board.sample("chargers/CP01/online", False, False, 2.0)
    assert [(t.alarm, t.kind) for t in out] == [("charger-offline:CP01", "raised"),
                                                ("connector-faulted:CP01:1", "suppressed")]  # fmt: skip
    assert board.alarms["connector-faulted:CP02:1"].state == State.active_unacknowledged  # another charger's
    out = board.sample("chargers/CP01/evse/1/status", "Available", False, 3.0)
    assert [t.annunciated for t in out] == [False]  # journaled, never annunciated
    board.sample("chargers/CP01/evse/1/status", "Faulted", False, 4.0)
    out = board.sample("chargers/CP01/online", True, False, 5.0)
    assert board.alarms["connector-faulted:CP01:1"].state == State.active_unacknowledged
    assert out[-1].kind == "unsuppressed"


def test_a_connector_seen_after_its_charger_went_offline_starts_masked():
    board = Board([OFFLINE, FAULTED])
    board.sample("chargers/CP01/online", False, False, 0.0)
    out = board.sample("chargers/CP01/evse/1/status", "Faulted", False, 1.0)
    assert [(t.kind, t.after) for t in out] == [("suppressed", State.suppressed), ("raised", State.suppressed)]


@given(st.floats(0.1, 1000.0), st.booleans(), st.floats(0.0, 2000.0))
def test_a_shelf_always_ends_at_its_time(minutes, holding, later):
    alarm, _ = run(new(HIGH), [(Sample(150.0 if holding else 50.0), 0.0)])
    alarm, out, wake = step(alarm, Act("shelve", "op", until=1.0 + minutes), 1.0)
    assert alarm.state == State.shelved and wake == 1.0 + minutes
    alarm, out, _ = step(alarm, Tick(), 1.0 + minutes + later)
    assert alarm.state == (State.active_unacknowledged if holding else State.normal)
    assert [(t.kind, t.actor) for t in out] == [("unshelved", "system")]


def test_actions_the_state_does_not_allow_are_refused_and_change_nothing():
    alarm = new(HIGH)
    for act in (Act("acknowledge", "op"), Act("unshelve", "op"), Act("return_to_service", "op"),
                Act("shelve", "op", until=0.0), Act("dance", "op")):  # fmt: skip
        with pytest.raises(Refused):
            step(alarm, act, 1.0)
    alarm, _, _ = step(alarm, Act("remove_from_service", "admin"), 1.0)
    with pytest.raises(Refused):
        step(alarm, Act("shelve", "op", until=10.0), 2.0)
    alarm, out, _ = step(alarm, Sample(150.0), 3.0)
    assert [(t.kind, t.annunciated) for t in out] == [("raised", False)]
    alarm, out, _ = step(alarm, Act("return_to_service", "admin"), 4.0)
    assert alarm.state == State.active_unacknowledged


def test_templates_make_one_alarm_per_matching_point_and_leave_out_exclusions():
    stale = Definition("meter-stale", "meters/*/online", (Condition("state", 12, values=(False,)),),
                       exclude=("meters/grid/online",))  # fmt: skip
    board = Board([stale])
    board.sample("meters/grid/online", False, False, 0.0)
    board.sample("meters/m1/online", False, False, 0.0)
    board.sample("meters/m1/extra/online", False, False, 0.0)
    assert sorted(board.alarms) == ["meter-stale:m1"]


def test_levels_map_onto_opc_ua_severities():
    assert [severity(level) for level in (1, 15, 30)] == [33, 500, 1000]
