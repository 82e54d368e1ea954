"""Meters in a running gateway, configured as a technician would: the API shows them, a silent one turns
bad while the gateway stays healthy, a meter on a charger's supply speaks for that charger."""

from __future__ import annotations

import pytest

from drivers.modbus.registers import load_profile
from gateway.settings import load_settings
from tests.conftest import GRID_METER, running_gateway, write_config
from tests.integration.test_modbus import SITE, serving, sim_meter

METERS = GRID_METER + """
[[meters]]
id = "cp16-supply"
driver = "modbus"
host = "127.0.0.1"
port = {port}
unit = 2
profile = "schneider-pm5300"
poll_s = 0.1
timeout_s = 0.3
"""


async def test_meters_in_the_api_their_quality_and_the_gateways_health(tmp_path):
    from tests.conftest import eventually

    grid = sim_meter(1, load_profile("eastron-sdm630"), SITE | {"power_w": 48000.0})
    supply = sim_meter(2, load_profile("schneider-pm5300"), SITE | {"power_w": 10800.0, "current_a_l1": 15.6})
    async with serving(grid, supply) as port:
        environ = {"EVEDGE_SITE__GRID_METER": "grid", "EVEDGE_SITE__FALLBACK_LIMIT_W": "20000",
                   "EVEDGE_CHARGERS__CP16__METER": "cp16-supply"}
        settings = load_settings(write_config(tmp_path, METERS.format(port=port)), environ=environ)
        async with running_gateway(settings) as gw, gw.client() as api:
            async def grid_view():
                meters = {m["id"]: m for m in (await api.get("/api/v1/meters")).json()}
                return meters if len(meters["grid"]["values"]) == 13 else None

            meters = await eventually(grid_view)
            view = meters["grid"]
            assert view["driver"] == "modbus" and view["grid"] is True and view["online"] is True
            values = view["values"]
            assert values["power_w"]["value"] == 48000.0 and values["power_w"]["quality"] == "good"
            assert values["power_w"]["unit"] == "W" and values["energy_import_wh"]["unit"] == "Wh"
            assert values["frequency_hz"]["value"] == pytest.approx(49.98, abs=1e-4)
            assert values["energy_import_wh"]["value"] == pytest.approx(12_345_678.0)
            for n in (1, 2, 3):
                assert values[f"current_a_l{n}"]["value"] == pytest.approx(SITE[f"current_a_l{n}"], rel=1e-6)
                assert values[f"voltage_v_l{n}"]["value"] == pytest.approx(SITE[f"voltage_v_l{n}"], rel=1e-6)
            assert values["power_w"]["ts"].endswith("Z")

            # The meter on CP16's supply says what CP16 draws.
            charger = await eventually(lambda: _charger_power(api))
            assert charger["power_w"]["value"] == pytest.approx(10800.0) and charger["current_a"]["value"] == pytest.approx(15.6)

            grid.answering = False

            async def gone_bad():
                grid_now = {m["id"]: m for m in (await api.get("/api/v1/meters")).json()}["grid"]
                return grid_now if grid_now["values"]["power_w"]["quality"] == "bad" else None

            silent = await eventually(gone_bad)
            assert silent["online"] is False and "did not answer" in silent["last_error"]
            assert all(v["quality"] == "bad" for v in silent["values"].values())
            health = (await api.get("/api/v1/health")).json()
            assert health["status"] == "ok" and health["parts"]["modbus"]["meters"]["grid"]["stale"] is True

            grid.answering = True

            async def fresh_again():
                grid_now = {m["id"]: m for m in (await api.get("/api/v1/meters")).json()}["grid"]
                return grid_now["values"]["power_w"]["quality"] == "good"

            await eventually(fresh_again)


async def _charger_power(api):
    live = (await api.get("/api/v1/chargers/CP16")).json()["live"]
    return live if "power_w" in live and "current_a" in live else None


async def test_a_meter_on_a_charger_keeps_its_word_through_the_chargers_events(tmp_path):
    """The meter, not the charger, says what flows: a charger that drops or ends a session does not turn the
    meter's reading uncertain or zero. And a meter that knows no phase current breaks nothing."""
    from tests.conftest import connected, eventually

    nan = float("nan")
    values = SITE | {"power_w": 7200.0, "current_a_l1": nan, "current_a_l2": nan, "current_a_l3": nan}
    supply = sim_meter(2, load_profile("schneider-pm5300"), values)
    async with serving(supply) as port:
        extra = METERS.format(port=port).split("[[meters]]")[2]  # only the supply meter
        settings = load_settings(write_config(tmp_path, "[[meters]]" + extra),
                                 environ={"EVEDGE_CHARGERS__CP201__METER": "cp16-supply"})  # fmt: skip
        async with running_gateway(settings) as gw:
            power = "chargers/CP201/evse/1/power_w"
            await eventually(lambda: gw.app.image.value(power) == pytest.approx(7200.0))
            assert gw.app.image.get("chargers/CP201/evse/1/current_a") is None  # no phase known: none made up
            sim = gw.charger("CP201", "2.0.1")
            async with connected(sim):
                await sim.start_session(1)
                await sim.send_meter_values(1)  # the charger's own reading of its power does not overrule the meter
                assert gw.app.image.value(power) == pytest.approx(7200.0)
                await sim.stop_session(1)
                assert gw.app.image.get(power).value == pytest.approx(7200.0)
            await eventually(lambda: gw.app.image.value("chargers/CP201/online") is False)
            assert gw.app.image.get(power).quality == "good"
            async with gw.client() as api:  # and the gateway is running, nothing around it stopped
                assert (await api.get("/api/v1/health")).json()["status"] == "ok"
