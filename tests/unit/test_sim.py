"""The simulator's pure parts: the EV and the charging-profile evaluator."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.sim import profiles
from gateway.sim.ev import Ev

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def profile16(purpose="TxDefaultProfile", stack=0, kind="Absolute", unit="A", periods=((0, 16),), **extra):
    return profiles.from_ocpp({
        "chargingProfileId": extra.pop("id", 1), "stackLevel": stack, "chargingProfilePurpose": purpose,
        "chargingProfileKind": kind, **extra,
        "chargingSchedule": {"chargingRateUnit": unit, **extra.pop("schedule", {}),
                             "chargingSchedulePeriod": [{"startPeriod": s, "limit": lim} for s, lim in periods]},
    }, NOW)  # fmt: skip


def test_amps_become_watts_with_the_phases():
    p = profile16(periods=((0, 16),))
    assert profiles.limit_w([p], profiles.TX_DEFAULT, NOW, None, 230, 3) == pytest.approx(16 * 230 * 3)
    one_phase = profiles.from_ocpp({"id": 2, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
                                    "chargingProfileKind": "Absolute", "chargingSchedule": [
                                        {"id": 1, "chargingRateUnit": "A", "chargingSchedulePeriod": [
                                            {"startPeriod": 0, "limit": 10, "numberPhases": 1}]}]}, NOW)  # fmt: skip
    assert profiles.limit_w([one_phase], profiles.TX_DEFAULT, NOW, None, 230, 3) == pytest.approx(2300)


def test_the_highest_stack_level_in_effect_wins():
    low = profile16(stack=0, periods=((0, 32),), id=1)
    high = profile16(stack=5, unit="W", periods=((0, 4000),), id=2, schedule={"duration": 600})
    assert profiles.limit_w([low, high], profiles.TX_DEFAULT, NOW, None, 230, 3) == 4000
    # Once the higher one's schedule has run out, the lower one holds again.
    later = NOW + timedelta(seconds=601)
    assert profiles.limit_w([low, high], profiles.TX_DEFAULT, later, None, 230, 3) == pytest.approx(32 * 690)


def test_periods_follow_each_other():
    p = profile16(unit="W", periods=((0, 1000), (300, 2000), (600, 0)))
    at = lambda s: profiles.limit_w([p], profiles.TX_DEFAULT, NOW + timedelta(seconds=s), None, 230, 3)  # noqa: E731
    assert (at(0), at(299), at(300), at(700)) == (1000, 1000, 2000, 0)


def test_relative_profiles_start_with_the_transaction_and_recurring_ones_repeat():
    relative = profile16(kind="Relative", unit="W", periods=((0, 1000), (60, 3000)))
    assert profiles.limit_w([relative], profiles.TX_DEFAULT, NOW, None, 230, 3) is None
    assert profiles.limit_w([relative], profiles.TX_DEFAULT, NOW, NOW - timedelta(seconds=90), 230, 3) == 3000
    daily = profile16(kind="Recurring", recurrencyKind="Daily", unit="W", periods=((0, 500), (3600, 5000)),
                      schedule={"startSchedule": "2026-01-01T12:00:00Z"})  # fmt: skip
    assert profiles.limit_w([daily], profiles.TX_DEFAULT, NOW + timedelta(minutes=30), None, 230, 3) == 500
    assert profiles.limit_w([daily], profiles.TX_DEFAULT, NOW + timedelta(hours=2), None, 230, 3) == 5000


def test_validity_bounds_a_profile():
    p = profile16(unit="W", validFrom="2026-11-21T13:00:00Z", validTo="2026-11-21T14:00:00Z")
    assert profiles.limit_w([p], profiles.TX_DEFAULT, NOW, None, 230, 3) is None
    assert profiles.limit_w([p], profiles.TX_DEFAULT, NOW + timedelta(minutes=90), None, 230, 3) == 16


def test_a_tx_profile_overrides_the_default_only_for_its_transaction():
    default = profile16(unit="W", periods=((0, 10000),), id=1)
    tx = profile16("TxProfile", unit="W", periods=((0, 2000),), id=2, transactionId=7)
    start = NOW - timedelta(minutes=1)
    assert profiles.evse_limit_w([default, tx], [], NOW, start, "7", 230, 3) == 2000
    assert profiles.evse_limit_w([default, tx], [], NOW, start, "8", 230, 3) == 10000
    charger_wide = profile16(unit="W", periods=((0, 6000),), id=3)
    assert profiles.evse_limit_w([], [charger_wide], NOW, start, "8", 230, 3) == 6000


def test_an_ev_tapers_near_full_and_stops_at_its_target():
    ev = Ev(capacity_wh=10000, soc=79.0, max_w=10000)
    assert ev.demand_w() == 10000
    ev.charge(10000, 360)  # 1 kWh = 10 %
    assert ev.soc == pytest.approx(89.0) and ev.demand_w() < 10000
    assert ev.draw_w(3000) == 3000 and ev.draw_w(0) == 0
    taken = ev.charge(10000, 3600)
    assert ev.soc == pytest.approx(100.0) and taken == pytest.approx(1100.0) and ev.demand_w() == 0


@given(soc=st.floats(0, 100), limit=st.none() | st.floats(0, 50000), seconds=st.floats(0, 7200))
def test_an_ev_never_takes_more_than_its_limit_or_its_room(soc, limit, seconds):
    ev = Ev(capacity_wh=50000, soc=soc, max_w=11000)
    power = ev.draw_w(limit)
    assert 0 <= power <= 11000 and (limit is None or power <= limit)
    energy = ev.charge(power, seconds)
    assert energy <= (100 - soc) / 100 * 50000 + 1e-6 and 0 <= ev.soc <= 100
