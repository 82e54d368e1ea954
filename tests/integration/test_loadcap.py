"""The load cap in a closed loop: the gateway, simulated chargers over real websockets whose EVs draw exactly
what their profiles allow, and a Modbus grid meter (a real pymodbus server) that reads the building's load
plus what those EVs draw at the moment of each read.

What is judged is the site as the meter sees it, not what the gateway believes: the truth comes from the
simulated chargers and the building's load set here."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest

from drivers.modbus.registers import load_profile
from gateway.clock import utcnow
from gateway.settings import load_settings
from gateway.sim.charger import SimCharger, SimSpec
from gateway.sim.ev import Ev
from gateway.sim.meter import GridMeterModel, SimMeter, SimModbusServer
from gateway.sim.site import ev_power_by_phase, make_charger
from tests.conftest import GRID_METER, PASSWORDS, eventually, free_port, running_gateway, wait_http, write_config

LIMIT_W, FALLBACK_W, BUILDING_W, MARGIN_W = 35000.0, 12000.0, 5000.0, 500.0
EVSES = [("CP16", "1.6", 1), ("CP16", "1.6", 2), ("CP201", "2.0.1", 1), ("CPBB", "1.6", 1)]

SITE = f"""
grid_meter = "grid"
fallback_limit_w = {FALLBACK_W}
"""
LOOP = GRID_METER + """
[loadcap]
tick_s = 0.5
ramp_interval_s = 0.5
margin_w = {margin}
profile_validity_s = 30
min_on_s = 10
min_off_s = 3
"""


class Clock:
    """The chargers' clock: wall time, moved on at will (profiles lapse without waiting for them)."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return utcnow() + self.offset


@dataclass
class Site:
    chargers: list[SimCharger]
    grid: GridMeterModel
    meter: SimMeter
    clock: Clock

    def ev_w(self) -> float:
        return sum(e.power_w for c in self.chargers for e in c.evses.values())

    def import_w(self) -> float:
        return self.grid.values()["power_w"]

    def shares(self) -> list[float]:
        return [c.evses[n].power_w for c in self.chargers for n in c.evses if c.evses[n].ev is not None]

    def set_building(self, watts: float) -> None:
        self.grid.base_w = self.grid.peak_w = watts

    async def plug_in_everywhere(self) -> None:
        """A car wanting 11 kW on three phases at every EVSE, each starting a session."""
        for charger in self.chargers:
            for n in charger.evses:
                await charger.plug_in(n, Ev(capacity_wh=200_000, soc=10.0, max_w=11000, phases=3, id_tag=f"T-{n}"))
                await charger.start_session(n)


@contextlib.asynccontextmanager
async def simulated_site(ocpp_url: str, port: int) -> AsyncIterator[Site]:
    """The grid meter on `port` and the base config's chargers on autopilot (no random visits)."""
    clock = Clock()
    chargers = [make_charger(SimSpec(cid, version, ocpp_url, PASSWORDS[cid], evses=2 if cid == "CP16" else 1,
                                     meter_interval_s=1.0), clock=clock, reconnect_min_s=0.05, reconnect_max_s=0.3)
                for cid, version in {(c, v) for c, v, _ in EVSES}]  # fmt: skip
    chargers.sort(key=lambda c: c.spec.id)
    grid = GridMeterModel(lambda: ev_power_by_phase(chargers), base_w=BUILDING_W, peak_w=BUILDING_W, noise_w=0.0)
    sdm630 = load_profile("eastron-sdm630")
    meter = SimMeter(1, lambda: sdm630.words(grid.values()), sdm630.spans())
    started = asyncio.Event()
    tasks = [asyncio.create_task(SimModbusServer([meter]).serve_tcp("127.0.0.1", port, started))]
    await asyncio.wait_for(started.wait(), 10)
    tasks += [asyncio.create_task(c.run()) for c in chargers]
    tasks += [asyncio.create_task(c.autopilot(visits=False, tick_s=0.2)) for c in chargers]
    try:
        await asyncio.wait_for(asyncio.gather(*(c.connected.wait() for c in chargers)), 15)
        yield Site(chargers, grid, meter, clock)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@pytest.fixture
async def loop(tmp_path):
    """The gateway in-process, steering the simulated site."""
    port = free_port()
    config = write_config(tmp_path, LOOP.format(port=port, margin=MARGIN_W), loadcap=True, site_limit_w=LIMIT_W,
                          site=SITE)  # fmt: skip
    async with running_gateway(load_settings(config, environ={})) as gw:
        async with simulated_site(gw.ocpp_url, port) as site:
            await eventually(lambda: gw.app.loadcap.prepared == {"CP16", "CP201", "CPBB"})
            yield gw, site


async def under_limit_for(site: Site, seconds: float) -> list[float]:
    """Sample the true import for a while; every sample is returned for the caller to judge."""
    samples = []
    for _ in range(int(seconds / 0.05)):
        samples.append(site.import_w())
        await asyncio.sleep(0.05)
    return samples


async def test_the_evs_share_what_the_building_leaves_and_a_load_step_is_cut_back(loop):
    gw, site = loop
    await site.plug_in_everywhere()
    headroom = LIMIT_W - MARGIN_W - BUILDING_W  # 29.5 kW for 4 cars that want 44 kW
    await eventually(lambda: site.ev_w() >= 0.9 * headroom, timeout=30)
    await asyncio.sleep(3)  # steady state: ramps done

    samples = await under_limit_for(site, 3.0)
    assert max(samples) <= LIMIT_W, f"import above the limit in steady state: {max(samples):.0f} W"
    assert site.ev_w() >= 0.9 * headroom
    shares = site.shares()
    assert len(shares) == 4 and max(shares) - min(shares) <= 400, shares  # equal priority, equal shares (dead band)
    async with gw.client() as api:
        state = (await api.get("/api/v1/site")).json()
    assert state["failsafe"] is False and state["limit_w"] == LIMIT_W
    assert {(a["charger_id"], a["evse"]) for a in state["allocation"]} == {(c, n) for c, _, n in EVSES}
    assert all(a["reason"] for a in state["allocation"])

    site.set_building(BUILDING_W + 15000)  # a heat pump and the kitchen at once
    assert site.import_w() > LIMIT_W
    await eventually(lambda: site.import_w() <= LIMIT_W, timeout=10, interval=0.01)
    samples = await under_limit_for(site, 3.0)
    assert max(samples) <= LIMIT_W, f"import above the limit after the step settled: {max(samples):.0f} W"
    # 14.5 kW left: three cars at more than their minimum, one paused until its turn
    assert sorted(p > 0 for p in site.shares()) == [False, True, True, True]
    assert site.ev_w() >= 0.9 * (headroom - 15000)


async def test_a_silent_grid_meter_holds_the_evs_to_the_fallback_limit(loop):
    gw, site = loop
    await site.plug_in_everywhere()
    await eventually(lambda: site.ev_w() > FALLBACK_W, timeout=30)

    site.meter.answering = False
    await eventually(lambda: site.ev_w() <= FALLBACK_W, timeout=10, interval=0.01)
    for _ in range(40):  # and it stays there while the meter is silent
        assert site.ev_w() <= FALLBACK_W
        await asyncio.sleep(0.05)
    async with gw.client() as api:
        state = (await api.get("/api/v1/site")).json()
        assert state["failsafe"] is True and state["grid_power_w"] is None
        events = (await api.get("/api/v1/events", params={"kind": "failsafe"})).json()
        assert events[0]["payload"]["on"] is True
        assert (await api.get("/api/v1/health")).json()["parts"]["loadcap"]["status"] == "failsafe"

        site.meter.answering = True
        await eventually(lambda: site.ev_w() >= 0.9 * (LIMIT_W - MARGIN_W - BUILDING_W), timeout=30)
        assert (await api.get("/api/v1/site")).json()["failsafe"] is False


async def test_every_charger_gets_its_baseline_and_default_at_connect(loop):
    gw, site = loop
    baseline = gw.app.loadcap.baseline
    assert sum(baseline.values()) <= FALLBACK_W  # together, the baselines keep the site within the fallback
    for charger in site.chargers:
        await eventually(lambda c=charger: len(c.charger_profiles) >= 2)
        by_purpose = {p.purpose: p for p in charger.charger_profiles}
        top = by_purpose["max"]
        assert top.stack_level == 0 and top.valid_to is None  # for good, whatever becomes of the gateway
        watts = top.periods[0].limit * (230 * 3 if top.unit == "A" else 1)
        assert baseline[charger.spec.id] - 3 * 230 * 0.1 <= watts <= baseline[charger.spec.id]
        default = by_purpose["tx_default"]
        assert default.unit == top.unit and default.valid_to is None
        assert default.periods[0].limit == (6.0 if default.unit == "A" else 6 * 230 * 3)


async def test_manual_mode_holds_each_evse_to_the_operators_limit(loop):
    gw, site = loop
    await site.plug_in_everywhere()
    await eventually(lambda: site.ev_w() >= 0.9 * (LIMIT_W - MARGIN_W - BUILDING_W), timeout=30)
    async with gw.client() as api:
        assert (await api.put("/api/v1/site/mode", json={"mode": "manual"})).status_code == 200
        reply = await api.put("/api/v1/chargers/CP201/evses/1/limit", json={"limit_w": 5000})
        assert reply.status_code == 200, reply.text
        cp201 = next(c for c in site.chargers if c.spec.id == "CP201")
        await eventually(lambda: 0 < cp201.evses[1].power_w <= 5000)
        # what CP201 gave up goes to the others, the site limit still holds
        await eventually(lambda: site.ev_w() >= 0.9 * (LIMIT_W - MARGIN_W - BUILDING_W), timeout=30)
        assert cp201.evses[1].power_w <= 5000 and site.import_w() <= LIMIT_W

        # an external limit (the BMS, say) below the configured one: the strictest holds
        assert (await api.put("/api/v1/site/limit", json={"limit_w": 20000, "source": "bms"})).status_code == 200
        await eventually(lambda: site.import_w() <= 20000, interval=0.01)
        assert (await api.get("/api/v1/site")).json()["limit_w"] == 20000


# -- the gateway killed ---------------------------------------------------------------------------------------


def held_baseline_w(charger: SimCharger) -> float:
    """The baseline a charger holds: its stack-0 maximum profile, in W."""
    top = next(p for p in charger.charger_profiles if p.purpose == "max" and p.stack_level == 0)
    return top.periods[0].limit * (charger.spec.voltage_v * charger.spec.phases if top.unit == "A" else 1)


async def test_killing_the_gateway_leaves_every_charger_within_its_baseline(tmp_path, gateway_process):
    port, ocpp_port, web_port = free_port(), free_port(), free_port()
    config = write_config(tmp_path, LOOP.format(port=port, margin=MARGIN_W), ocpp_port=ocpp_port,
                          web_port=web_port, loadcap=True, site_limit_w=LIMIT_W, site=SITE)  # fmt: skip
    gateway = gateway_process(config)
    gateway.start()
    await wait_http(f"http://127.0.0.1:{web_port}/api/v1/health")
    async with simulated_site(f"ws://127.0.0.1:{ocpp_port}/ocpp", port) as site:
        await site.plug_in_everywhere()
        # steered well above their baselines
        await eventually(lambda: site.ev_w() >= 0.9 * (LIMIT_W - MARGIN_W - BUILDING_W), timeout=30)
        baseline = {c.spec.id: held_baseline_w(c) for c in site.chargers}
        assert sum(baseline.values()) <= FALLBACK_W < site.ev_w()

        gateway.kill()
        await eventually(lambda: not any(c.connected.is_set() for c in site.chargers))
        site.clock.offset = timedelta(seconds=31)  # every dynamic limit lapses (profile_validity_s = 30)
        for charger in site.chargers:
            charger.update_power()
            drawn = sum(e.power_w for e in charger.evses.values())
            assert 0 < drawn <= baseline[charger.spec.id], (charger.spec.id, drawn)
