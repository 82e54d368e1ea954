"""Charging profiles: a limit as the SetChargingProfile request each OCPP version speaks, and what a charger accepts."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ocpp.messages import Call, validate_payload

from drivers.ocpp.frames import V16, V201
from drivers.ocpp.profiles import Capabilities, capabilities_16, capabilities_201, limit_in, profile_request
from gateway.clock import parse_iso

NOW = datetime(2026, 5, 4, 12, 0, 0, 123456, tzinfo=UTC)
AMPS, WATTS = Capabilities(), Capabilities(amps=False, watts=True)
PURPOSES = ("baseline", "ceiling", "default", "dynamic")


def request(version: str, purpose: str, evse: int = 2, caps: Capabilities = AMPS, **kw) -> dict:
    kw = {"limit_w": 11040, "phases": 3, "voltage_v": 230, **kw}
    action, payload = profile_request(version, purpose, evse, kw.pop("limit_w"), kw.pop("phases"),
                                      kw.pop("voltage_v"), caps, NOW, **kw)  # fmt: skip
    assert action == "SetChargingProfile"
    return payload


def profile(version: str, payload: dict) -> dict:
    return payload["csChargingProfiles"] if version == V16 else payload["chargingProfile"]


def schedule(version: str, payload: dict) -> dict:
    held = profile(version, payload)["chargingSchedule"]
    return held if version == V16 else held[0]  # 2.0.1: a list of one


def target(version: str, payload: dict) -> int:
    return payload["connectorId"] if version == V16 else payload["evseId"]


def follows_the_schema(version: str, payload: dict) -> None:
    """What the session checks before it sends a request (the ocpp library's JSON schemas)."""
    asyncio.run(validate_payload(Call("1", "SetChargingProfile", payload), version))


# -- limit_in -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("unit", "limit_w", "phases", "expected"), [
    ("A", 6.99 * 230 * 3, 3, 6.9),  # never rounded up, even from just below the next tenth
    ("A", 16 * 230 * 3, 3, 16.0),
    ("A", 16 * 230, 1, 16.0),  # one phase carries it all
    ("A", 16 * 230 * 3, 1, 48.0),
    ("A", 4139.99, 3, 5.9),
    ("W", 7399.99, 3, 7399.0),  # whole watts, down
    ("W", 7400, 1, 7400.0),  # phases do not matter in watts
])  # fmt: skip
def test_a_limit_is_rounded_down_in_the_chargers_unit(unit, limit_w, phases, expected):
    assert limit_in(unit, limit_w, phases, 230) == expected


@given(st.floats(0, 500_000), st.sampled_from([1, 3]), st.floats(100, 400))
def test_a_current_limit_is_at_most_the_power_and_less_than_a_tenth_below(limit_w, phases, voltage_v):
    amps = limit_in("A", limit_w, phases, voltage_v)
    exact = limit_w / (voltage_v * phases)
    assert exact - 0.1 < amps <= exact + 1e-9
    assert round(amps * 10) == pytest.approx(amps * 10)  # a tenth of an ampere, as 1.6's schema demands


# -- profile_request ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [V16, V201])
@pytest.mark.parametrize(("purpose", "kind", "stack", "profile_id", "on"), [
    ("baseline", {V16: "ChargePointMaxProfile", V201: "ChargingStationMaxProfile"}, 0, 1000, 0),
    ("ceiling", {V16: "ChargePointMaxProfile", V201: "ChargingStationMaxProfile"}, 1, 1002, 0),
    ("default", {V16: "TxDefaultProfile", V201: "TxDefaultProfile"}, 0, 1001, 0),
    ("dynamic", {V16: "TxDefaultProfile", V201: "TxDefaultProfile"}, 1, 2002, 2),  # no session: the EVSE's default
])  # fmt: skip
def test_each_purpose_is_its_own_profile(version, purpose, kind, stack, profile_id, on):
    payload = request(version, purpose, evse=2)
    follows_the_schema(version, payload)
    held = profile(version, payload)
    assert held["chargingProfilePurpose"] == kind[version] and held["stackLevel"] == stack
    assert held[{V16: "chargingProfileId", V201: "id"}[version]] == profile_id
    assert held["chargingProfileKind"] == "Absolute" and "transactionId" not in held
    assert target(version, payload) == on
    assert schedule(version, payload)["startSchedule"] == "2026-05-04T12:00:00.123Z"


@pytest.mark.parametrize("version", [V16, V201])
def test_each_evse_has_its_own_dynamic_profile(version):
    ids = {profile(version, request(version, "dynamic", evse=n))[{V16: "chargingProfileId", V201: "id"}[version]]
           for n in (1, 2, 3)}  # fmt: skip
    assert ids == {2001, 2002, 2003}


@pytest.mark.parametrize(("version", "given_id", "sent_id"), [
    (V16, "42", 42), (V201, 42, "42"), (V201, "b7e1-tx", "b7e1-tx"),  # 1.6: an integer; 2.0.1: a string
])  # fmt: skip
def test_a_dynamic_limit_on_a_running_session_is_its_tx_profile(version, given_id, sent_id):
    payload = request(version, "dynamic", evse=1, transaction_id=given_id, valid_s=60)
    follows_the_schema(version, payload)
    held = profile(version, payload)
    assert held["chargingProfilePurpose"] == "TxProfile" and held["transactionId"] == sent_id
    assert target(version, payload) == 1


@pytest.mark.parametrize("version", [V16, V201])
@pytest.mark.parametrize("purpose", PURPOSES)
def test_only_a_limit_given_a_lifetime_expires(version, purpose):
    assert not {"validFrom", "validTo"} & profile(version, request(version, purpose)).keys()
    payload = request(version, purpose, valid_s=90)
    held = profile(version, payload)
    assert held["validFrom"] == schedule(version, payload)["startSchedule"] == "2026-05-04T12:00:00.123Z"
    assert parse_iso(held["validTo"]) - parse_iso(held["validFrom"]) == timedelta(seconds=90)


@pytest.mark.parametrize("version", [V16, V201])
@pytest.mark.parametrize("phases", [1, 3])
def test_amperes_say_on_how_many_phases_watts_do_not(version, phases):
    in_amps = request(version, "dynamic", limit_w=7399, phases=phases, valid_s=60)
    in_watts = request(version, "dynamic", caps=WATTS, limit_w=7399.9, phases=phases, valid_s=60)
    for payload in (in_amps, in_watts):
        follows_the_schema(version, payload)
    assert schedule(version, in_amps)["chargingRateUnit"] == "A"
    assert schedule(version, in_amps)["chargingSchedulePeriod"] == [
        {"startPeriod": 0, "limit": {1: 32.1, 3: 10.7}[phases], "numberPhases": phases}]
    assert schedule(version, in_watts)["chargingRateUnit"] == "W"
    assert schedule(version, in_watts)["chargingSchedulePeriod"] == [{"startPeriod": 0, "limit": 7399.0}]


@pytest.mark.parametrize("version", [V16, V201])
def test_a_charger_with_one_stack_level_takes_no_ceiling_and_keeps_all_on_level_0(version):
    flat = Capabilities(max_stack_level=0)
    with pytest.raises(ValueError, match="stack level 0"):
        profile_request(version, "ceiling", 0, 22000, 3, 230, flat, NOW, 60)
    for purpose in ("baseline", "default", "dynamic"):
        assert profile(version, request(version, purpose, caps=flat))["stackLevel"] == 0


def test_a_deep_stack_still_steers_one_level_up():
    assert profile(V16, request(V16, "dynamic", caps=Capabilities(max_stack_level=99)))["stackLevel"] == 1


# -- capabilities -----------------------------------------------------------------------------------------------


def key(name: str, value: str | None) -> dict:
    return {"key": name, "readonly": True, **({} if value is None else {"value": value})}


@pytest.mark.parametrize(("answer", "expected"), [
    ([key("ChargingScheduleAllowedChargingRateUnit", "Current"), key("ChargeProfileMaxStackLevel", "3")],
     Capabilities(True, False, 3)),
    ([key("ChargingScheduleAllowedChargingRateUnit", "Power")], Capabilities(False, True, 8)),
    ([key("ChargingScheduleAllowedChargingRateUnit", "Current, Power")], Capabilities(True, True, 8)),
    ([], Capabilities(True, False, 8)),  # unknown keys: amperes, 8 levels
    ([key("ChargingScheduleAllowedChargingRateUnit", None), key("ChargeProfileMaxStackLevel", None)],
     Capabilities(True, False, 8)),
    ([key("ChargeProfileMaxStackLevel", "many"), "not a key", {"no": "key"}], Capabilities(True, False, 8)),
])  # fmt: skip
def test_capabilities_from_a_16_get_configuration(answer, expected):
    assert capabilities_16(answer) == expected


def variable(name: str, value: str | None, status: str = "Accepted") -> dict:
    result = {"attributeStatus": status, "component": {"name": "SmartChargingCtrlr"}, "variable": {"name": name}}
    return result | ({} if value is None else {"attributeValue": value})


@pytest.mark.parametrize(("answer", "expected"), [
    ([variable("RateUnit", "A"), variable("ProfileStackLevel", "2")], Capabilities(True, False, 2)),
    ([variable("RateUnit", "W")], Capabilities(False, True, 8)),
    ([variable("RateUnit", "A,W"), variable("ProfileStackLevel", "0")], Capabilities(True, True, 0)),
    ([variable("RateUnit", "W", "UnknownVariable"), variable("ProfileStackLevel", "4", "Rejected")],
     Capabilities(True, False, 8)),  # only accepted answers count
    ([variable("ProfileStackLevel", "2.5")], Capabilities(True, False, 8)),
])  # fmt: skip
def test_capabilities_from_a_201_get_variables(answer, expected):
    assert capabilities_201(answer) == expected


@pytest.mark.parametrize(("caps", "unit"), [
    (Capabilities(True, False), "A"), (Capabilities(False, True), "W"),
    (Capabilities(True, True), "A"),  # both: amperes, what every charger does best
    (Capabilities(False, False), "A"),  # an answer that names neither
])  # fmt: skip
def test_the_unit_a_limit_is_sent_in(caps, unit):
    assert caps.unit == unit
