"""Smart charging's pure parts: the slack a session has before its departure, what an EV's charging needs say,
the limit an outside source's schedule puts in force, and the simulated charger's composite schedule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.ocpp.charging_profiles import ev_needs, schedule_limit_w
from gateway.sim import profiles
from rules.control import laxity_s

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)

# -- laxity ------------------------------------------------------------------------------------------------------


def test_laxity_is_the_time_left_less_the_time_the_energy_still_needed_takes():
    # leaves in 2 h, 30 kWh asked for, 8 kWh taken: 22 kWh at 11 kW is 2 h -> no slack at all
    assert laxity_s(NOW + timedelta(hours=2), NOW, 30000, 8000, 11000) == pytest.approx(0.0)
    assert laxity_s(NOW + timedelta(hours=3), NOW, 30000, 8000, 11000) == pytest.approx(3600.0)
    # 40 kWh in 30 minutes at 11 kW cannot be done: it leaves short, the more urgent the shorter
    assert laxity_s(NOW + timedelta(minutes=30), NOW, 40000, None, 11000) == pytest.approx(1800 - 40000 / 11000 * 3600)


def test_a_car_that_has_what_it_needs_has_all_its_time_as_slack():
    assert laxity_s(NOW + timedelta(hours=1), NOW, 10000, 12000, 11000) == pytest.approx(3600.0)
    assert laxity_s(NOW - timedelta(minutes=5), NOW, 10000, 12000, 11000) == pytest.approx(-300.0)  # overstaying


def test_no_laxity_for_a_car_that_cannot_take_power():
    assert laxity_s(NOW + timedelta(hours=1), NOW, 10000, 0, 0) is None


@given(st.floats(0, 200_000), st.floats(0, 200_000), st.floats(1000, 350_000), st.floats(0, 86_400))
def test_more_energy_still_needed_or_an_earlier_departure_is_never_less_urgent(needed, more, max_w, left_s):
    departure = NOW + timedelta(seconds=left_s)
    base = laxity_s(departure, NOW, needed, 0, max_w)
    assert laxity_s(departure, NOW, needed + more, 0, max_w) <= base + 1e-6
    assert laxity_s(departure - timedelta(seconds=60), NOW, needed, 0, max_w) < base


# -- what the EV says --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("needs", "expected"), [
    ({"requestedEnergyTransfer": "AC_three_phase", "acChargingParameters": {
        "energyAmount": 30000, "evMinCurrent": 6, "evMaxCurrent": 16, "evMaxVoltage": 400}}, (30000.0, 16 * 230 * 3)),
    ({"requestedEnergyTransfer": "AC_single_phase", "acChargingParameters": {
        "energyAmount": 9000, "evMinCurrent": 6, "evMaxCurrent": 32, "evMaxVoltage": 250}}, (9000.0, 32 * 230)),
    ({"requestedEnergyTransfer": "DC", "dcChargingParameters": {
        "evMaxCurrent": 200, "evMaxVoltage": 800, "energyAmount": 50000, "evMaxPower": 150000}}, (50000.0, 150000.0)),
    ({"requestedEnergyTransfer": "DC", "dcChargingParameters": {  # no amount: from capacity and state of charge
        "evMaxCurrent": 100, "evMaxVoltage": 400, "evEnergyCapacity": 60000, "stateOfCharge": 20, "fullSoC": 80}},
     (36000.0, 40000.0)),
    ({"requestedEnergyTransfer": "DC", "dcChargingParameters": {"evMaxCurrent": 100, "evMaxVoltage": 400}},
     (None, 40000.0)),
    ({"requestedEnergyTransfer": "AC_three_phase"}, (None, None)),
])  # fmt: skip
def test_what_an_ev_asks_for_and_the_most_it_takes(needs, expected):
    assert ev_needs(needs, 230) == expected


# -- an outside source's limit -------------------------------------------------------------------------------------


def amps(*periods, start: str | None = None, duration: int | None = None) -> dict:
    schedule = {"id": 1, "chargingRateUnit": "A", "chargingSchedulePeriod": [
        {"startPeriod": s, "limit": lim, **({"numberPhases": n} if n else {})} for s, lim, n in periods]}
    return schedule | ({"startSchedule": start} if start else {}) | ({"duration": duration} if duration else {})


def test_the_limit_in_force_now_in_watts():
    received = NOW - timedelta(minutes=10)
    schedule = amps((0, 32, None), (300, 16, None), (3600, 10, 1))
    assert schedule_limit_w([schedule], NOW, received, 230, 3) == 16 * 230 * 3  # 10 min in: the second period
    assert schedule_limit_w([schedule], NOW + timedelta(hours=1), received, 230, 3) == 10 * 230  # on one phase
    watts = {"id": 2, "chargingRateUnit": "W", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 5000}]}
    assert schedule_limit_w([schedule, watts], NOW, received, 230, 3) == 5000  # the strictest of them


def test_a_schedule_says_nothing_before_its_start_or_after_its_duration():
    later = amps((0, 10, None), start="2026-11-21T13:00:00Z")
    short = amps((0, 10, None), duration=60)
    assert schedule_limit_w([later], NOW, NOW, 230, 3) is None
    assert schedule_limit_w([short], NOW + timedelta(seconds=61), NOW, 230, 3) is None
    assert schedule_limit_w([], NOW, NOW, 230, 3) is None


# -- the simulated charger's composite schedule ----------------------------------------------------------------


def profile(purpose="TxDefaultProfile", stack=0, kind="Absolute", unit="W", periods=((0, 10000),), **extra):
    schedule = extra.pop("schedule", {})
    return profiles.from_ocpp({
        "chargingProfileId": extra.pop("id", 1), "stackLevel": stack, "chargingProfilePurpose": purpose,
        "chargingProfileKind": kind, **extra, "chargingSchedule": {
            "chargingRateUnit": unit, **schedule,
            "chargingSchedulePeriod": [{"startPeriod": s, "limit": lim} for s, lim in periods]},
    }, NOW)  # fmt: skip


def composite(evse_profiles, charger_profiles=(), duration_s=7200, evse=1, tx_start=None, tx_id=None, max_w=22000):
    return profiles.composite(list(evse_profiles), list(charger_profiles), NOW, duration_s, tx_start, tx_id, 230, 3,
                              max_w, evse)  # fmt: skip


def test_the_composite_schedule_has_a_period_for_each_change():
    default = profile(periods=((0, 10000), (1800, 6000)))
    top = profile("ChargePointMaxProfile", periods=((0, 8000), (3600, 20000)), id=2)
    assert composite([default], [top]) == [(0, 8000), (1800, 6000)]  # the maximum holds, then the default
    assert composite([], [top], evse=0) == [(0, 8000), (3600, 20000)]  # the charger as a whole: its maximum
    assert composite([], []) == [(0, 22000)]  # nothing said: its rating


def test_validity_stack_levels_and_transactions_shape_the_composite_schedule():
    low = profile(periods=((0, 7000),), id=1)
    high = profile(stack=2, periods=((0, 3000),), id=2, validFrom="2026-11-21T12:20:00Z",
                   validTo="2026-11-21T12:40:00Z")  # fmt: skip
    assert composite([low, high]) == [(0, 7000), (1200, 3000), (2400, 7000)]
    tx = profile("TxProfile", kind="Relative", periods=((0, 2000), (600, 4000)), id=3, transactionId="T1")
    started = NOW - timedelta(seconds=300)
    assert composite([low, tx], tx_start=started, tx_id="T1") == [(0, 2000), (300, 4000)]
    assert composite([low, tx], tx_start=started, tx_id="T2") == [(0, 7000)]  # another session's profile


def test_a_recurring_profile_repeats_in_the_composite_schedule():
    daily = profile(kind="Recurring", recurrencyKind="Daily", periods=((0, 11000), (3600, 4000)),
                    schedule={"startSchedule": "2026-11-20T11:30:00Z"})  # fmt: skip
    # yesterday 11:30 + a day is today 11:30: 11 kW until 12:30, then 4 kW until 11:30 tomorrow
    assert composite([daily], duration_s=86400) == [(0, 11000), (1800, 4000), (84600, 11000)]


def test_a_limit_is_written_in_the_unit_asked_for_rounded_down():
    assert profiles.in_unit(11000, "A", 230, 3) == 15.9
    assert profiles.in_unit(4140, "A", 230, 3) == 6.0
    assert profiles.in_unit(7399.99, "W", 230, 3) == 7399.9
