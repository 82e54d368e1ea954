"""Smart charging over real websockets: profiles set, listed, reported and cleared through the API; composite
schedules computed by the simulated chargers; what 2.0.1 stations report of outside limits and of their EVs'
needs, stored and shown as points; and the load cap admitting first the car that would miss its departure."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest

from gateway.auth import Role
from gateway.clock import iso, utcnow
from gateway.settings import load_settings
from gateway.sim import charging_profiles as station
from gateway.sim.charger import SimCharger
from gateway.sim.ev import Ev
from tests.conftest import connected, eventually, free_port, running_gateway, write_config

HOUR = 3600


def at(offset_s: float) -> str:
    return iso(utcnow().replace(microsecond=0) + timedelta(seconds=offset_s))


def max_profile_16() -> dict:
    """The charger's maximum in W: 9 kW, then 5 kW after half an hour."""
    return {"chargingProfileId": 12, "stackLevel": 3, "chargingProfilePurpose": "ChargePointMaxProfile",
            "chargingProfileKind": "Absolute", "chargingSchedule": {
                "startSchedule": at(0), "chargingRateUnit": "W",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 9000.0},
                                           {"startPeriod": 1800, "limit": 5000.0}]}}  # fmt: skip


def daily_profile_16() -> dict:
    """Every standard property: recurring daily, a validity period, periods in A on three phases then one."""
    return {"chargingProfileId": 11, "stackLevel": 2, "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Recurring", "recurrencyKind": "Daily", "validFrom": at(-HOUR),
            "validTo": at(24 * HOUR), "chargingSchedule": {
                "duration": 86400, "startSchedule": at(-HOUR), "chargingRateUnit": "A", "minChargingRate": 6.0,
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10.0, "numberPhases": 3},
                                           {"startPeriod": 2 * HOUR, "limit": 6.0, "numberPhases": 1}]}}  # fmt: skip


def profile_201(profile_id: int, purpose: str = "TxDefaultProfile", stack: int = 1, unit: str = "A") -> dict:
    """A 2.0.1 profile with every standard property, begun an hour ago, its second period in an hour; in A, a
    period on one phase names the phase it uses."""
    periods = ([{"startPeriod": 0, "limit": 16.0, "numberPhases": 3},
                {"startPeriod": 2 * HOUR, "limit": 20.0, "numberPhases": 1, "phaseToUse": 2}] if unit == "A"
               else [{"startPeriod": 0, "limit": 11000.0}, {"startPeriod": 2 * HOUR, "limit": 7000.0}])  # fmt: skip
    return {"id": profile_id, "stackLevel": stack, "chargingProfilePurpose": purpose,
            "chargingProfileKind": "Recurring", "recurrencyKind": "Daily", "validFrom": at(-HOUR),
            "validTo": at(24 * HOUR), "chargingSchedule": [{
                "id": profile_id, "startSchedule": at(-HOUR), "duration": 86400, "chargingRateUnit": unit,
                "minChargingRate": 6.0, "chargingSchedulePeriod": periods}]}  # fmt: skip


def listed(rows: list[dict], source: str = "sent") -> dict[tuple[int, int], dict]:
    return {(r["evse"], r["id"]): r["profile"] for r in rows if r["source"] == source}


async def put(api, charger_id: str, evse: int, profile: dict) -> dict:
    reply = await api.put(f"/api/v1/chargers/{charger_id}/charging-profiles", json={"evse": evse, "profile": profile})
    assert reply.status_code == 200, reply.text
    return reply.json()


async def ocpp(api, charger_id: str, action: str, payload: dict) -> dict:
    reply = await api.post(f"/api/v1/chargers/{charger_id}/ocpp/{action}", json=payload)
    assert reply.status_code == 200, reply.text
    return reply.json()


async def profiles(api, charger_id: str, **params) -> list[dict]:
    reply = await api.get(f"/api/v1/chargers/{charger_id}/charging-profiles", params=params)
    assert reply.status_code == 200, reply.text
    return reply.json()


def limits_of(schedule: dict) -> list[tuple[int, float]]:
    return [(p["startPeriod"], p["limit"]) for p in schedule["chargingSchedulePeriod"]]


def near(found: list[tuple[int, float]], expected: list[tuple[int, float]]) -> bool:
    """The same limits, each starting within a few seconds of when expected (the clock moved on meanwhile)."""
    return len(found) == len(expected) and all(
        lim == want and abs(start - when) <= 5 for (start, lim), (when, want) in zip(found, expected, strict=True))


# -- OCPP 1.6 ----------------------------------------------------------------------------------------------------


async def test_16_profiles_set_listed_composed_and_cleared(gateway):
    sim = gateway.charger("CP16", "1.6", evses=2)
    async with connected(sim), gateway.client() as api:
        sent = {(0, 12): max_profile_16(), (1, 11): daily_profile_16()}
        for (evse, _), profile in sent.items():
            assert await put(api, "CP16", evse, profile) == {"status": "Accepted"}
        assert listed(await profiles(api, "CP16")) == sent
        rows = {r["id"]: r for r in await profiles(api, "CP16")}
        assert rows[11]["purpose"] == "TxDefaultProfile" and rows[11]["kind"] == "Recurring"
        assert rows[11]["stack_level"] == 2 and rows[11]["valid_to"] is not None

        # 10 A on 3 phases (6900 W) under the 9 kW maximum; 5 kW after half an hour; then 6 A on one phase.
        answer = await ocpp(api, "CP16", "GetCompositeSchedule", {"connectorId": 1, "duration": 2 * HOUR,
                                                                   "chargingRateUnit": "W"})  # fmt: skip
        assert answer["status"] == "Accepted" and answer["connectorId"] == 1
        assert near(limits_of(answer["chargingSchedule"]), [(0, 6900.0), (1800, 5000.0), (HOUR, 1380.0)])
        in_amps = await ocpp(api, "CP16", "GetCompositeSchedule", {"connectorId": 1, "duration": 2 * HOUR,
                                                                    "chargingRateUnit": "A"})  # fmt: skip
        assert in_amps["chargingSchedule"]["chargingRateUnit"] == "A"
        assert near(limits_of(in_amps["chargingSchedule"]), [(0, 10.0), (1800, 7.2), (HOUR, 2.0)])
        assert (await ocpp(api, "CP16", "GetCompositeSchedule", {"connectorId": 7, "duration": 60}))["status"] == \
            "Rejected"  # fmt: skip

        # clear by id, then by filter
        reply = await api.delete("/api/v1/chargers/CP16/charging-profiles/12")
        assert reply.status_code == 200 and reply.json() == {"status": "Accepted"}
        assert set(listed(await profiles(api, "CP16"))) == {(1, 11)} and sim.charger_profiles == []
        assert await ocpp(api, "CP16", "ClearChargingProfile", {"connectorId": 2}) == {"status": "Unknown"}
        assert set(listed(await profiles(api, "CP16"))) == {(1, 11)}  # the charger cleared nothing: nothing goes
        cleared = await ocpp(api, "CP16", "ClearChargingProfile",
                             {"connectorId": 1, "chargingProfilePurpose": "TxDefaultProfile"})  # fmt: skip
        assert cleared == {"status": "Accepted"}
        assert await profiles(api, "CP16") == [] and sim.evses[1].profiles == []


def sim_raw(sim: SimCharger, evse: int, profile_id: int) -> dict:
    held = sim.charger_profiles if evse == 0 else sim.evses[evse].profiles
    return next(p.raw for p in held if p.id == profile_id)


async def test_the_store_keeps_the_profile_as_sent(gateway):
    sim = gateway.charger("CP16", "1.6", evses=2)
    async with connected(sim), gateway.client() as api:
        sent = daily_profile_16()
        await put(api, "CP16", 1, sent)
        assert listed(await profiles(api, "CP16")) == {(1, 11): sent}
        assert sim_raw(sim, 1, 11) == sent  # and the charger holds it as sent


async def test_guests_read_profiles_and_operators_send_them(gateway):
    sim = gateway.charger("CP16", "1.6", evses=2)
    async with connected(sim):
        async with gateway.client(await gateway.token(Role.guest)) as guest:
            refused = await guest.put("/api/v1/chargers/CP16/charging-profiles",
                                      json={"evse": 1, "profile": daily_profile_16()})  # fmt: skip
            assert refused.status_code == 403 and "SetChargingProfile" not in sim.heard
            assert (await guest.delete("/api/v1/chargers/CP16/charging-profiles/11")).status_code == 403
        async with gateway.client(await gateway.token(Role.operator)) as operator:
            assert await put(operator, "CP16", 1, daily_profile_16()) == {"status": "Accepted"}
        async with gateway.client(await gateway.token(Role.guest)) as guest:
            assert [r["id"] for r in await profiles(guest, "CP16")] == [11]
            assert (await guest.get("/api/v1/chargers/CP16/charging-limits")).status_code == 200
            assert (await guest.get("/api/v1/chargers/NOPE/charging-profiles")).status_code == 404


async def test_a_profile_the_charger_rejects_is_not_stored(gateway):
    cp16, cp201 = gateway.charger("CP16", "1.6", evses=2), gateway.charger("CP201", "2.0.1")
    async with connected(cp16, cp201), gateway.client() as api:
        tx_profile = {**daily_profile_16(), "chargingProfilePurpose": "TxProfile", "chargingProfileKind": "Absolute",
                      "transactionId": 1}  # fmt: skip
        del tx_profile["recurrencyKind"]
        assert await put(api, "CP16", 2, tx_profile) == {"status": "Rejected"}  # no session on connector 2
        too_high = profile_201(5, stack=9)  # it takes stack levels up to 8
        assert await put(api, "CP201", 1, too_high) == {"status": "Rejected"}
        assert await profiles(api, "CP16") == [] and await profiles(api, "CP201") == []
        assert "SetChargingProfile" in cp16.heard and "SetChargingProfile" in cp201.heard


async def test_a_tx_profile_goes_with_its_transaction(gateway):
    sim = gateway.charger("CP16", "1.6", evses=2)
    async with connected(sim), gateway.client() as api:
        evse = await sim.start_session(1, "TAG-1")
        tx_profile = {"chargingProfileId": 30, "stackLevel": 1, "chargingProfilePurpose": "TxProfile",
                      "chargingProfileKind": "Relative", "transactionId": int(evse.tx_id),
                      "chargingSchedule": {"chargingRateUnit": "A",
                                           "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 8.0}]}}  # fmt: skip
        assert await put(api, "CP16", 1, tx_profile) == {"status": "Accepted"}
        rows = await profiles(api, "CP16")
        assert [(r["id"], r["transaction_id"]) for r in rows] == [(30, evse.tx_id)]
        await sim.stop_session(1)
        await eventually(lambda: _none(api, "CP16"))


@pytest.mark.parametrize("charger_id, version, action, start", [
    ("CP16", "1.6", "RemoteStartTransaction", {"idTag": "REMOTE", "connectorId": 2}),
    ("CP201", "2.0.1", "RequestStartTransaction", {"idToken": {"idToken": "REMOTE", "type": "Central"},
                                                   "remoteStartId": 5, "evseId": 1}),
])  # fmt: skip
async def test_the_tx_profile_of_a_remote_start_is_kept_until_its_session_ends(gateway, charger_id, version, action,
                                                                              start):  # fmt: skip
    sim = gateway.charger(charger_id, version, evses=2)
    evse = start.get("connectorId", start.get("evseId"))
    schedule = {"chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10.0}]}
    profile = {"stackLevel": 1, "chargingProfilePurpose": "TxProfile", "chargingProfileKind": "Relative"}
    if version == "1.6":
        profile |= {"chargingProfileId": 31, "chargingSchedule": schedule}
    else:
        profile |= {"id": 31, "chargingSchedule": [{"id": 1, **schedule}]}
    async with connected(sim), gateway.client() as api:
        assert await ocpp(api, charger_id, action, start | {"chargingProfile": profile}) == {"status": "Accepted"}
        rows = await profiles(api, charger_id)
        kept = [(r["evse"], r["id"], r["purpose"], r["transaction_id"]) for r in rows]
        assert kept == [(evse, 31, "TxProfile", None)]
        await eventually(lambda: sim.evses[evse].charging)
        await sim.stop_session(evse)
        await eventually(lambda: _none(api, charger_id))


async def _none(api, charger_id: str) -> bool:
    return await profiles(api, charger_id) == []


# -- OCPP 2.0.1 ----------------------------------------------------------------------------------------------------


async def test_201_profiles_set_reported_composed_and_cleared(gateway):
    sim = gateway.charger("CP201", "2.0.1")
    sent = {(0, 20): profile_201(20, "ChargingStationMaxProfile", 0, unit="W"), (1, 21): profile_201(21),
            (1, 22): profile_201(22, stack=2, unit="W"), (1, 23): profile_201(23, stack=3)}
    async with connected(sim), gateway.client() as api:
        for (evse, _), profile in sent.items():
            assert await put(api, "CP201", evse, profile) == {"status": "Accepted"}
        assert listed(await profiles(api, "CP201")) == sent

        # what the station says it holds: in parts (evse 0; evse 1 in two), stored as reported
        assert await ocpp(api, "CP201", "GetChargingProfiles", {"requestId": 7, "chargingProfile": {}}) == \
            {"status": "Accepted"}  # fmt: skip
        reported = await eventually(lambda: _reported(api, "CP201", 4))
        assert listed(reported, "reported") == sent
        assert {r["request_id"] for r in reported if r["source"] == "reported"} == {7}
        assert {r["limit_source"] for r in reported if r["source"] == "reported"} == {"CSO"}

        # 16 A on 3 phases under the 11 kW maximum: the highest stack level on EVSE 1 (23, in A) holds
        answer = await ocpp(api, "CP201", "GetCompositeSchedule", {"evseId": 1, "duration": 1800,
                                                                    "chargingRateUnit": "A"})  # fmt: skip
        assert answer["status"] == "Accepted"
        assert answer["schedule"]["evseId"] == 1 and answer["schedule"]["chargingRateUnit"] == "A"
        assert limits_of(answer["schedule"]) == [(0, 15.9)]  # 11000 W / 690 V, rounded down to a tenth
        in_watts = await ocpp(api, "CP201", "GetCompositeSchedule", {"evseId": 1, "duration": 2 * HOUR,
                                                                      "chargingRateUnit": "W"})  # fmt: skip
        # after an hour: 20 A on one phase (4600 W) under the 7 kW maximum
        assert near(limits_of(in_watts["schedule"]), [(0, 11000.0), (HOUR, 4600.0)])

        # clear by criteria, then by id: both go, sent and reported alike
        criteria = {"evseId": 1, "chargingProfilePurpose": "TxDefaultProfile", "stackLevel": 3}
        assert await ocpp(api, "CP201", "ClearChargingProfile", {"chargingProfileCriteria": criteria}) == \
            {"status": "Accepted"}  # fmt: skip
        reply = await api.delete("/api/v1/chargers/CP201/charging-profiles/21")
        assert reply.json() == {"status": "Accepted"}
        left = await profiles(api, "CP201")
        assert {(r["evse"], r["id"]) for r in left} == {(0, 20), (1, 22)}
        assert [p.id for p in sim.evses[1].profiles] == [22]

        # a new report replaces what the last one said of what it covers
        await ocpp(api, "CP201", "GetChargingProfiles", {"requestId": 8, "evseId": 1, "chargingProfile": {}})
        await eventually(lambda: _reported_ids(api, "CP201", {(0, 20, 7), (1, 22, 8)}))
        assert await ocpp(api, "CP201", "GetChargingProfiles", {"requestId": 9, "chargingProfile": {
            "chargingProfilePurpose": "TxProfile"}}) == {"status": "NoProfiles"}  # fmt: skip


async def _reported(api, charger_id: str, count: int) -> list[dict] | None:
    rows = await profiles(api, charger_id)
    return rows if sum(r["source"] == "reported" for r in rows) == count else None


async def _reported_ids(api, charger_id: str, expected: set) -> bool:
    rows = await profiles(api, charger_id, source="reported")
    return {(r["evse"], r["id"], r["request_id"]) for r in rows} == expected


async def test_201_outside_limits_are_stored_shown_and_cleared(gateway):
    sim = gateway.charger("CP201", "2.0.1")
    image = gateway.app.image
    schedule = [{"id": 1, "chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 20.0}]}]
    async with connected(sim), gateway.client() as api:
        await station.notify_charging_limit(sim, "SO", evse_id=1, grid_critical=True, schedule=schedule)
        await station.notify_charging_limit(sim, "EMS")  # the station as a whole, no schedule said
        body = (await api.get("/api/v1/chargers/CP201/charging-limits")).json()
        assert [{k: v for k, v in lim.items() if k != "updated_at"} for lim in body["limits"]] == [
            {"evse": 0, "source": "EMS", "grid_critical": None, "schedule": None},
            {"evse": 1, "source": "SO", "grid_critical": True, "schedule": schedule},
        ]
        assert image.value("chargers/CP201/evse/1/external_limit_w") == 20 * 230 * 3
        assert image.value("chargers/CP201/evse/1/external_limit_source") == "SO"
        assert image.value("chargers/CP201/external_limit_source") == "EMS"

        await station.cleared_charging_limit(sim, "SO", evse_id=1)
        assert [lim["source"] for lim in (await api.get("/api/v1/chargers/CP201/charging-limits")).json()["limits"]] \
            == ["EMS"]  # fmt: skip
        assert image.value("chargers/CP201/evse/1/external_limit_w") is None
        assert image.value("chargers/CP201/evse/1/external_limit_source") == ""
        await station.cleared_charging_limit(sim, "EMS")
        assert (await api.get("/api/v1/chargers/CP201/charging-limits")).json()["limits"] == []
        assert image.value("chargers/CP201/external_limit_source") == ""
        events = (await api.get("/api/v1/events", params={"kind": "charging_limit"})).json()
        assert {e["payload"]["source"] for e in events} == {"SO", "EMS"}


async def test_201_ev_needs_and_schedule_are_stored_answered_and_shown(gateway):
    sim = gateway.charger("CP201", "2.0.1")
    image = gateway.app.image
    departure = utcnow().replace(microsecond=0) + timedelta(hours=2)
    ev_schedule = {"id": 3, "chargingRateUnit": "W", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 7000.0}]}
    async with connected(sim), gateway.client() as api:
        await sim.start_session(1, "TAG-EV")
        await eventually(lambda: (image.value("chargers/CP201/evse/1/transaction_id") or 0) > 0)
        answer = await station.notify_ev_charging_needs(sim, 1, 30000, departure, max_current_a=16,
                                                        max_schedule_tuples=12)  # fmt: skip
        assert answer.status == "Accepted"
        assert (await station.notify_ev_charging_schedule(sim, 1, ev_schedule)).status == "Accepted"

        assert image.value("chargers/CP201/evse/1/departure_time") == iso(departure)
        assert image.value("chargers/CP201/evse/1/energy_needed_wh") >= 30000  # on top of what it took so far
        assert image.value("chargers/CP201/evse/1/ev_max_power_w") == 16 * 230 * 3
        body = (await api.get("/api/v1/chargers/CP201/charging-limits")).json()
        [needs] = body["ev_needs"]
        tx_id = image.value("chargers/CP201/evse/1/transaction_id")
        assert needs["evse"] == 1 and needs["transaction_id"] == tx_id and needs["departure_time"] == iso(departure)
        assert needs["needs"]["chargingNeeds"]["acChargingParameters"]["energyAmount"] == 30000
        assert needs["needs"]["maxScheduleTuples"] == 12
        [planned] = body["ev_schedules"]
        assert planned["evse"] == 1 and planned["schedule"] == ev_schedule and planned["transaction_id"] == tx_id

        await sim.stop_session(1)  # the next car on this EVSE says its own needs
        await eventually(lambda: image.value("chargers/CP201/evse/1/departure_time") is None)
        assert image.value("chargers/CP201/evse/1/energy_needed_wh") is None


async def test_what_the_ev_needs_and_outside_limits_are_weighed_again_after_a_gateway_restart(tmp_path):
    config = load_settings(write_config(tmp_path, ocpp_port=free_port()), environ={})
    departure = utcnow().replace(microsecond=0) + timedelta(hours=3)
    amps = [{"id": 1, "chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10.0}]}]
    async with running_gateway(config) as gw:
        sim = gw.charger("CP201", "2.0.1")
        task = asyncio.create_task(sim.run())
        await eventually(sim.connected.is_set)
        await sim.start_session(1, "TAG-EV")
        await station.notify_ev_charging_needs(sim, 1, 20000, departure)
        await station.notify_charging_limit(sim, "SO", evse_id=1, schedule=amps)
    try:
        async with running_gateway(config) as gw:  # the session still runs on the charger, which reconnects
            point = "chargers/CP201/evse/1/departure_time"
            await eventually(lambda: gw.app.image.value(point) == iso(departure))
            assert gw.app.image.value("chargers/CP201/evse/1/energy_needed_wh") >= 20000
            await eventually(lambda: gw.app.image.value("chargers/CP201/evse/1/external_limit_w") == 10 * 230 * 3)
            assert gw.app.image.value("chargers/CP201/evse/1/external_limit_source") == "SO"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


# -- the load cap --------------------------------------------------------------------------------------------------


URGENCY = """
[[chargers]]
id = "CPEV"
password = "password-of-CPEV-1234"
evses = 2

[loadcap]
tick_s = 0.2
ramp_interval_s = 0.2
margin_w = 500
min_on_s = 0.5
min_off_s = 0.5
"""


@contextlib.asynccontextmanager
async def steered_charger(tmp_path, site_limit_w: float) -> AsyncIterator[tuple[SimCharger, httpx.AsyncClient]]:
    """A 2.0.1 charger with two EVSEs (22 kW between them) connected to a gateway whose load cap has prepared it."""
    config = write_config(tmp_path, URGENCY, loadcap=True, site_limit_w=site_limit_w)
    async with running_gateway(load_settings(config, environ={})) as gw:
        sim = gw.charger("CPEV", "2.0.1", password="password-of-CPEV-1234", evses=2)
        async with connected(sim), gw.client() as api:
            await eventually(lambda: "CPEV" in gw.app.loadcap.prepared)
            yield sim, api


async def test_the_car_that_would_miss_its_departure_is_the_one_charging(tmp_path):
    # 5.5 kW for the EVs: one minimum (6 A on 3 phases, 4140 W) fits, two do not.
    async with steered_charger(tmp_path, site_limit_w=6000) as (sim, api):
        relaxed = await sim.plug_in(1, Ev(capacity_wh=80000, soc=50, max_w=11000, id_tag="RELAXED"))
        await sim.start_session(1)
        await eventually(lambda: relaxed.power_w > 0)
        # the relaxed car leaves tonight and needs little; the other car came later, leaves in half an hour
        # and needs 40 kWh: it would miss its departure even at full power
        await station.notify_ev_charging_needs(sim, 1, 5000, utcnow() + timedelta(hours=10))
        urgent = await sim.plug_in(2, Ev(capacity_wh=80000, soc=10, max_w=11000, id_tag="URGENT"))
        await sim.start_session(2)
        await station.notify_ev_charging_needs(sim, 2, 40000, utcnow() + timedelta(minutes=30))

        await eventually(lambda: urgent.power_w > 0 and relaxed.power_w == 0, timeout=15)
        allocation = {a["evse"]: a for a in (await api.get("/api/v1/site")).json()["allocation"]}
        assert allocation[2]["target_w"] > 0 and allocation[1]["target_w"] == 0
        assert allocation[1]["reason"].startswith("paused")
        for _ in range(30):  # and it stays so: rotation (after 0.5 s on) does not give the car that can wait
            await asyncio.sleep(0.1)  # its turn
            assert urgent.power_w > 0 and relaxed.power_w == 0


async def test_a_limit_from_an_outside_source_caps_what_the_load_cap_gives(tmp_path):
    # Room on the site for both cars; the charger's 22 kW rating is shared. The system operator then limits EVSE 1
    # to 10 A, later an EMS the station as a whole to 8 kW: the load cap shares within those limits, not above
    # them (the charger would obey them whatever it is sent, leaving the rest unused), and says why.
    async with steered_charger(tmp_path, site_limit_w=60000) as (sim, api):
        for evse in (1, 2):
            await sim.plug_in(evse, Ev(capacity_wh=80000, soc=20, max_w=22000, id_tag=f"EV-{evse}"))
            await sim.start_session(evse)

        def shares(expected: dict[int, tuple[float, str]]):
            async def check() -> bool:
                got = {a["evse"]: a for a in (await api.get("/api/v1/site")).json()["allocation"]}
                return all(n in got and got[n]["target_w"] == w and got[n]["reason"].endswith(why)
                           for n, (w, why) in expected.items())  # fmt: skip
            return check

        await eventually(shares({1: (11000, "charger CPEV rating"), 2: (11000, "charger CPEV rating")}), timeout=15)
        amps = [{"id": 1, "chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10.0}]}]
        await station.notify_charging_limit(sim, "SO", evse_id=1, schedule=amps)
        await eventually(shares({1: (10 * 230 * 3, "external limit (SO)"),
                                 2: (22000 - 10 * 230 * 3, "charger CPEV rating")}), timeout=15)  # fmt: skip
        watts = [{"id": 2, "chargingRateUnit": "W", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 8000.0}]}]
        await station.notify_charging_limit(sim, "EMS", schedule=watts)
        await eventually(shares({1: (10 * 230 * 3, "external limit (SO)"), 2: (8000, "external limit (EMS)")}),
                         timeout=15)  # fmt: skip
        await station.cleared_charging_limit(sim, "SO", evse_id=1)
        await station.cleared_charging_limit(sim, "EMS")
        await eventually(shares({1: (11000, "charger CPEV rating"), 2: (11000, "charger CPEV rating")}), timeout=15)
