"""What the numbers in a MeterValue mean, in both versions' shapes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.ocpp.measurands import energy_at, read


def test_16_defaults_are_the_energy_register_in_wh():
    assert read([{"value": "1234.5"}]).energy_wh == 1234.5


def test_16_kwh_and_kw_are_converted():
    r = read([{"value": "12.5", "unit": "kWh", "measurand": "Energy.Active.Import.Register"},
              {"value": "7.4", "unit": "kW", "measurand": "Power.Active.Import"}])  # fmt: skip
    assert r.energy_wh == 12500.0 and r.power_w == pytest.approx(7400.0)


def test_201_units_and_multipliers():
    r = read([{"value": 12.5, "measurand": "Energy.Active.Import.Register", "unitOfMeasure": {"unit": "kWh"}},
              {"value": 74, "measurand": "Power.Active.Import", "unitOfMeasure": {"unit": "W", "multiplier": 2}},
              {"value": 55, "measurand": "SoC", "location": "EV"}])  # fmt: skip
    assert r.energy_wh == 12500.0 and r.power_w == pytest.approx(7400.0) and r.soc == 55.0


def test_scaled_values_carry_no_float_noise_into_the_records():
    # 12.3456 * 1000 is 12345.599999999999 in binary floating point
    assert read([{"value": "12.3456", "unit": "kWh"}]).energy_wh == 12345.6
    assert read([{"value": 12.3456, "unitOfMeasure": {"unit": "kWh"}}]).energy_wh == 12345.6
    assert read([{"value": 7.3, "measurand": "Power.Active.Import",
                  "unitOfMeasure": {"unit": "W", "multiplier": -1}}]).power_w == 0.73  # fmt: skip


def test_phases_currents_and_power_by_phase():
    r = read([{"value": "16", "measurand": "Current.Import", "phase": "L1", "unit": "A"},
              {"value": "15", "measurand": "Current.Import", "phase": "L2", "unit": "A"},
              {"value": "0.2", "measurand": "Current.Import", "phase": "N", "unit": "A"},
              {"value": "3680", "measurand": "Power.Active.Import", "phase": "L1-N", "unit": "W"},
              {"value": "3450", "measurand": "Power.Active.Import", "phase": "L2-N", "unit": "W"}])  # fmt: skip
    assert r.current_a == {"l1": 16.0, "l2": 15.0}
    assert r.total_power_w == 7130.0
    points = r.points()
    assert points["current_a"] == 16.0 and points["current_a_l2"] == 15.0 and points["power_w"] == 7130.0


def test_grid_side_signed_and_garbage_values_are_left_out():
    r = read([{"value": "999", "location": "Inlet"}, {"value": "abc"}, {"value": "nan"},
              {"value": "c2lnbmVk", "format": "SignedData"}, {"value": "5", "unit": "varh"}, "not a dict",
              {"value": True}, {"value": "10", "unit": "Wh"}])  # fmt: skip
    assert r.energy_wh == 10.0


def test_energy_by_phase_adds_up_when_there_is_no_total():
    r = read([{"value": "100", "phase": "L1"}, {"value": "200", "phase": "L2"}, {"value": "300", "phase": "L3"}])
    assert r.energy_wh == 600.0


def test_energy_at_finds_the_transaction_begin_sample():
    meter_values = [
        {"timestamp": "t", "sampledValue": [{"value": 5, "context": "Sample.Periodic"}]},
        {"timestamp": "t", "sampledValue": [{"value": 3, "context": "Transaction.Begin"}]},
    ]
    assert energy_at(meter_values, "Transaction.Begin") == 3.0
    assert energy_at(meter_values, "Transaction.End") is None
    assert energy_at(meter_values) == 3.0
    assert energy_at([{"sampledValue": "nope"}, "junk"]) is None


@given(st.lists(st.dictionaries(st.sampled_from(["value", "unit", "measurand", "phase", "location", "format",
                                                 "unitOfMeasure", "context"]),
                                st.none() | st.text(max_size=8) | st.floats() | st.integers()
                                | st.dictionaries(st.text(max_size=5), st.integers())), max_size=8))  # fmt: skip
def test_any_sampled_values_are_read_without_raising(sampled):
    read(sampled).points()
