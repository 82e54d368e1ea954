"""The load cap in a closed loop: evedge against two common ways of sharing power, same site, same cars.

A site of 20 chargers (1.6 and 2.0.1 alternately; every fourth one single-phase, 7.4 kW, the others
three-phase, 22 kW; wired to the site's phases in rotation) under a 150 kW connection. The building draws
40 kW plus a slow swing of 10 kW, steps up by 15 kW three times, and its meter (a Modbus SDM630 on loopback)
goes silent once for a while. Cars of a realistic mix arrive and leave on one seeded timetable. Everything
speaks real protocols: OCPP over websockets to the gateway, Modbus TCP from the gateway to the meter. The
simulated chargers honour every profile at once; their EVs draw exactly what they are allowed.

Strategies, one after the other on the same timetable:
- evedge: the gateway's load cap, default settings;
- static: every charger gets an equal, fixed share of what the building leaves at its planned peak (what a
  site without measurement does);
- fcfs: first come, first served -- every second, from the grid meter and the chargers' meter values,
  sessions in order of arrival take what they can until nothing is left (a naive dynamic controller).

Figures (the truth is taken from the simulated site 10 times a second, not from what the gateway believes):
Wh and seconds above the cap and the worst excess, and the Wh above it outside the 3 s after each step (what
no controller can foresee); utilisation (energy the EVs took / energy they could
have taken under the cap: min(headroom, their demand) over time), also outside the meter outage; fairness
(Jain's index of each session's power over its max-min fair share, 1 = perfectly max-min fair); after each
building step, time until the first profile reaches a charger and until the import is back under the cap
(p50/p99); profiles per minute; CPU seconds of this process (chargers and meter included, the same in every
run). The last line is JSON.

    .venv/bin/python bench/loadcap.py [--seconds 90] [--meter-interval 5] [--strategies evedge,static,fcfs]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from drivers.modbus.registers import load_profile  # noqa: E402
from measure import free_port  # noqa: E402 -- bench/, beside this script
from gateway.app import App  # noqa: E402
from gateway.auth import Actor, Role  # noqa: E402
from gateway.commands import CommandError, SetChargingLimit  # noqa: E402
from gateway.points import Quality, evse_point  # noqa: E402
from gateway.settings import load_settings  # noqa: E402
from gateway.sim.charger import SimCharger, SimSpec  # noqa: E402
from gateway.sim.ev import Ev  # noqa: E402
from gateway.sim.meter import GridMeterModel, SimMeter, SimModbusServer  # noqa: E402
from gateway.sim.site import ev_power_by_phase, make_charger  # noqa: E402

CAP_W, FALLBACK_W, VOLTAGE = 150_000.0, 80_000.0, 230.0
BUILDING_W, SWING_W, STEP_W, NOISE_W = 40_000.0, 10_000.0, 15_000.0, 300.0
PEAK_BUILDING_W = BUILDING_W + SWING_W + STEP_W + NOISE_W  # what a static split must plan for
CHARGERS = 20
MIN_A = 6.0
STEP_GRACE_S = 3.0  # a load step nobody can foresee: the site is back under the cap within this (the target)
ROTATIONS = ("L1L2L3", "L2L3L1", "L3L1L2")
ACTOR = Actor("bench", Role.operator, "bench", automatic=True)


# -- the site and its timetable -------------------------------------------------------------------------------


def specs(url: str, meter_interval_s: float) -> list[SimSpec]:
    found = []
    for n in range(1, CHARGERS + 1):
        single = n % 4 == 0
        found.append(SimSpec(f"S{n:02d}", "1.6" if n % 2 else "2.0.1", url, f"bench-password-{n:02d}",
                             max_w=7400.0 if single else 22000.0, phases=1 if single else 3,
                             phase_rotation=ROTATIONS[n % 3], meter_interval_s=meter_interval_s))  # fmt: skip
    return found


@dataclass
class Timetable:
    """What happens when, in seconds from the start: the same for every strategy."""

    seconds: float
    visits: list[tuple[float, float, int, Ev]] = field(default_factory=list)  # arrive, leave, charger, car
    steps: list[tuple[float, float]] = field(default_factory=list)  # the building's extra load: from, to
    outage: tuple[float, float] = (0.0, 0.0)  # the meter is silent: from, to

    @classmethod
    def make(cls, seconds: float, seed: int = 1) -> Timetable:
        rng = random.Random(seed)
        table = cls(seconds)
        free_at = [0.0] * CHARGERS
        t = 0.0
        for n in rng.sample(range(CHARGERS), 12):  # a busy site at the start
            table.visits.append((0.5, rng.uniform(0.35, 1.0) * seconds, n, _car(rng, n)))
            free_at[n] = table.visits[-1][1] + 2
        while t < seconds * 0.8:
            t += rng.expovariate(1 / (seconds / 25))
            free = [n for n in range(CHARGERS) if free_at[n] <= t]
            if free:
                n = rng.choice(free)
                leave = min(seconds, t + rng.uniform(0.25, 0.6) * seconds)
                table.visits.append((t, leave, n, _car(rng, n)))
                free_at[n] = leave + 2
        table.steps = [(seconds * a, seconds * b) for a, b in ((0.15, 0.32), (0.48, 0.6), (0.78, 0.9))]
        table.outage = (seconds * 0.64, seconds * 0.73)
        return table

    def building_w(self, t: float) -> float:
        """The building without noise."""
        step = STEP_W if any(a <= t < b for a, b in self.steps) else 0.0
        return BUILDING_W + SWING_W * math.sin(2 * math.pi * t / self.seconds) + step


def _car(rng: random.Random, n: int) -> Ev:
    capacity, max_w, phases = rng.choice([(40000.0, 7400.0, 1), (58000.0, 11000.0, 3), (77000.0, 11000.0, 3),
                                          (95000.0, 22000.0, 3), (50000.0, 3700.0, 1)])  # fmt: skip
    return Ev(capacity, rng.uniform(10, 50), max_w, phases, 100.0, f"CAR-{n}-{rng.randint(1000, 9999)}")


class BenchGrid(GridMeterModel):
    """The grid meter reads the timetable's building (with noise) plus what the EVs draw."""

    def __init__(self, chargers: list[SimCharger], table: Timetable, start: float) -> None:
        super().__init__(lambda: ev_power_by_phase(chargers), noise_w=NOISE_W)
        self.table, self.start = table, start

    def building_w(self, now: datetime) -> float:
        t = max(0.0, time.monotonic() - self.start)
        return self.table.building_w(t) + self.rng.uniform(-self.noise_w, self.noise_w)


def config(directory: Path, ocpp_port: int, meter_port: int, loadcap: bool, tuning: list[str]) -> Path:
    lines = [f'[gateway]\nid = "bench"\nstate_dir = "{directory / "state"}"\n',
             f'[ocpp]\nlisten = "127.0.0.1:{ocpp_port}"\ntls_listen = ""\n', f'[web]\nlisten = "127.0.0.1:{free_port()}"\n',
             f'[site]\nlimit_w = {CAP_W}\ngrid_meter = "grid"\nfallback_limit_w = {FALLBACK_W}\n',
             f"[loadcap]\nenabled = {'true' if loadcap else 'false'}\n" + "".join(f"{t}\n" for t in tuning),
             f'[[meters]]\nid = "grid"\ndriver = "modbus"\nhost = "127.0.0.1"\nport = {meter_port}\nunit = 1\n'
             'profile = "eastron-sdm630"\npoll_s = 0.5\nstale_after_s = 2.0\ntimeout_s = 0.3\n']  # fmt: skip
    for spec in specs("", 0):
        lines.append(f'[[chargers]]\nid = "{spec.id}"\npassword = "{spec.password}"\nmax_w = {spec.max_w}\n'
                     f'phases = {spec.phases}\nphase_rotation = "{spec.phase_rotation}"\n')  # fmt: skip
    path = directory / "bench.toml"
    path.write_text("\n".join(lines))
    return path


# -- the two baselines ----------------------------------------------------------------------------------------


async def static_split(app: App, chargers: list[SimCharger]) -> None:
    """Each charger's default profile: an equal share of what the building leaves at its planned peak."""
    share = (CAP_W - PEAK_BUILDING_W) / len(chargers)
    for charger in chargers:
        await app.commands.execute(SetChargingLimit(charger.spec.id, 0, share, "default", charger.spec.phases),
                                   ACTOR)  # fmt: skip
    await asyncio.Event().wait()


async def first_come_first_served(app: App, chargers: list[SimCharger]) -> None:
    """Every second: the building is the grid reading less the chargers' last meter values; sessions, in the
    order they began, take what they can (their charger's rating) of what is left."""
    image, arrived, sent = app.image, {}, {}
    while True:
        await asyncio.sleep(1.0)
        grid = image.get("meters/grid/power_w")
        if grid is None or grid.quality != Quality.good:
            continue  # blind: leave everything as it is
        sessions = []
        for charger in chargers:
            for n in charger.evses:
                if (image.value(evse_point(charger.spec.id, n, "transaction_id")) or 0) > 0:
                    key = (charger.spec.id, n)
                    arrived.setdefault(key, time.monotonic())
                    sessions.append((arrived[key], key, charger.spec))
        drawn = sum(image.value(evse_point(cid, n, "power_w")) or 0.0 for _, (cid, n), _ in sessions)
        left = CAP_W - (float(grid.value) - drawn)
        for _, key, spec in sorted(sessions, key=lambda s: s[0]):
            minimum = MIN_A * VOLTAGE * spec.phases
            give = min(spec.max_w, left) if left >= minimum else 0.0
            left -= give
            if abs(sent.get(key, -1e9) - give) > 300:
                sent[key] = give
                with contextlib.suppress(CommandError):
                    await app.commands.execute(SetChargingLimit(key[0], key[1], give, "dynamic", spec.phases, 300),
                                               ACTOR)  # fmt: skip


# -- one run --------------------------------------------------------------------------------------------------


def max_min_fair(demands: list[float], room: float) -> list[float]:
    """Water-filling: every demand gets an equal share, what the small ones leave goes to the others."""
    shares = [0.0] * len(demands)
    order = sorted(range(len(demands)), key=lambda i: demands[i])
    for k, i in enumerate(order):
        share = max(0.0, room) / (len(order) - k)
        shares[i] = min(demands[i], share)
        room -= shares[i]
    return shares


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(strategy: str, table: Timetable, meter_interval_s: float, tuning: list[str]) -> dict[str, Any]:
    directory = Path(tempfile.mkdtemp(prefix=f"evedge-bench-loadcap-{strategy}-"))
    ocpp_port, meter_port = free_port(), free_port()
    app = App(load_settings(config(directory, ocpp_port, meter_port, strategy == "evedge", tuning), environ={}))
    chargers = [make_charger(s, reconnect_min_s=0.1, reconnect_max_s=1.0)
                for s in specs(f"ws://127.0.0.1:{ocpp_port}/ocpp", meter_interval_s)]  # fmt: skip
    profiles_at: list[float] = []
    for charger in chargers:
        charger.heard_request = _timed(charger.heard_request, profiles_at)  # type: ignore[method-assign]
    start = time.monotonic() + 3600  # until the timetable begins, the building is as at t = 0
    grid = BenchGrid(chargers, table, start)
    sdm630 = load_profile("eastron-sdm630")
    meter = SimMeter(1, lambda: sdm630.words(grid.values()), sdm630.spans())
    tasks: list[asyncio.Task[Any]] = []
    started = asyncio.Event()
    tasks.append(asyncio.create_task(SimModbusServer([meter]).serve_tcp("127.0.0.1", meter_port, started)))
    await started.wait()
    tasks.append(asyncio.create_task(app.run()))
    await app.started.wait()
    tasks += [asyncio.create_task(c.run()) for c in chargers]
    tasks += [asyncio.create_task(c.autopilot(visits=False, tick_s=0.2)) for c in chargers]
    await asyncio.wait_for(asyncio.gather(*(c.connected.wait() for c in chargers)), 60)
    if strategy == "evedge":
        while len(app.loadcap.prepared) < len(chargers):
            await asyncio.sleep(0.1)
    elif strategy == "static":
        tasks.append(asyncio.create_task(static_split(app, chargers)))
    else:
        tasks.append(asyncio.create_task(first_come_first_served(app, chargers)))
    await asyncio.sleep(2)
    profiles_before = len(profiles_at)
    grid.start = start = time.monotonic()
    cpu0 = time.process_time()
    tasks.append(asyncio.create_task(_drive(table, chargers, meter, start)))
    figures = await _observe(table, chargers, grid, start, profiles_at)
    figures["cpu_s"] = round(time.process_time() - cpu0, 1)
    figures["profiles_per_min"] = round((len(profiles_at) - profiles_before) / (table.seconds / 60), 1)
    app.stop()
    for task in tasks[2:]:
        task.cancel()
    await asyncio.gather(*tasks[2:], return_exceptions=True)
    await asyncio.wait_for(tasks[1], 30)
    tasks[0].cancel()
    await asyncio.gather(tasks[0], return_exceptions=True)
    return figures


def _timed(heard: Any, at: list[float]) -> Any:
    def hear(raw: str) -> None:
        if '"SetChargingProfile"' in raw:
            at.append(time.monotonic())
        heard(raw)

    return hear


async def _drive(table: Timetable, chargers: list[SimCharger], meter: SimMeter, start: float) -> None:
    """Cars arrive and leave; the meter falls silent and comes back."""
    happenings: list[tuple[float, str, Any]] = []
    for arrive, leave, n, car in table.visits:
        happenings += [(arrive, "arrive", (n, car)), (leave, "leave", n)]
    happenings += [(table.outage[0], "silent", None), (table.outage[1], "back", None)]
    for at, what, arg in sorted(happenings, key=lambda h: h[0]):
        await asyncio.sleep(max(0.0, start + at - time.monotonic()))
        with contextlib.suppress(Exception):  # a charger that is briefly offline misses its car: fine here
            if what == "arrive":
                n, car = arg
                await chargers[n].plug_in(1, Ev(**vars(car)))
                await chargers[n].start_session(1)
            elif what == "leave":
                await chargers[arg].unplug(1)
            else:
                meter.answering = what == "back"


async def _observe(table: Timetable, chargers: list[SimCharger], grid: BenchGrid, start: float,
                   profiles_at: list[float]) -> dict[str, Any]:  # fmt: skip
    dt = 0.1
    over_wh = over_s = peak_over = ev_wh = room_wh = ev_wh_ok = room_wh_ok = steady_wh = 0.0
    jains: list[float] = []
    steps = [start + a for a, _ in table.steps]
    step_over: dict[float, float | None] = {}
    while (t := time.monotonic() - start) < table.seconds:
        building = table.building_w(t)
        ev = [(e.power_w, min(e.ev.demand_w(), c.spec.max_w)) for c in chargers for e in c.evses.values()
              if e.charging and e.ev is not None]  # fmt: skip
        drawn = sum(p for p, _ in ev)
        excess = building + drawn - CAP_W
        if excess > 0:
            over_wh += excess * dt / 3600
            over_s += dt
            peak_over = max(peak_over, excess)
            if not any(a <= t < a + STEP_GRACE_S for a, _ in table.steps):
                steady_wh += excess * dt / 3600
        room = max(0.0, min(CAP_W - building, sum(d for _, d in ev)))
        ev_wh += drawn * dt / 3600
        room_wh += room * dt / 3600
        if not table.outage[0] <= t < table.outage[1]:
            ev_wh_ok += drawn * dt / 3600
            room_wh_ok += room * dt / 3600
        wanting = [(p, d) for p, d in ev if d > 0]
        if len(wanting) >= 2:
            fair = max_min_fair([d for _, d in wanting], CAP_W - building)
            ratios = [p / f if f > 0 else 1.0 for (p, _), f in zip(wanting, fair, strict=True)]
            jains.append(sum(ratios) ** 2 / (len(ratios) * sum(r * r for r in ratios)) if any(ratios) else 0.0)
        now = time.monotonic()
        for s in steps:
            if s <= now and step_over.get(s) is None and excess <= 0:
                step_over[s] = now - s
        await asyncio.sleep(dt)
    first_profile = [next((p - s for p in profiles_at if p >= s), None) for s in steps]
    return {
        "over_cap_wh": round(over_wh, 2), "over_cap_s": round(over_s, 1), "peak_over_w": round(peak_over),
        "over_cap_wh_outside_steps": round(steady_wh, 2),
        "utilisation": round(ev_wh / room_wh, 4) if room_wh else None,
        "utilisation_outside_outage": round(ev_wh_ok / room_wh_ok, 4) if room_wh_ok else None,
        "fairness_jain": round(statistics.fmean(jains), 4) if jains else None,
        "ev_kwh": round(ev_wh / 1000, 2),
        "step_to_profile_ms": _ms([x for x in first_profile if x is not None]),
        "step_to_under_cap_ms": _ms([x for x in step_over.values() if x is not None]),
    }  # fmt: skip


def _ms(values: list[float]) -> dict[str, float | None]:
    p50, p99 = percentile(values, 0.5), percentile(values, 0.99)
    return {"p50": None if p50 is None else round(p50 * 1000), "p99": None if p99 is None else round(p99 * 1000)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=90.0)
    parser.add_argument("--meter-interval", type=float, default=5.0, help="chargers' MeterValues interval (s)")
    parser.add_argument("--strategies", default="evedge,static,fcfs")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a [loadcap] setting for this run, e.g. --set ramp_step_w=6000")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    for noisy in ("pymodbus", "asyncio"):  # a silent meter and its server's shutdown: expected here
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    table = Timetable.make(args.seconds, args.seed)
    results = {}
    for strategy in args.strategies.split(","):
        print(f"running {strategy} for {args.seconds:g} s ...", file=sys.stderr, flush=True)
        results[strategy] = asyncio.run(run(strategy, table, args.meter_interval, args.set))
    head = (f"{'strategy':8} {'over Wh':>8} {'steady':>7} {'over s':>7} {'peak W':>7} {'util':>6} {'util*':>6} {'jain':>6} "
            f"{'kWh':>6} {'step>prof p50/p99 ms':>21} {'step>under p50/p99 ms':>22} {'prof/min':>8} {'cpu s':>6}")  # fmt: skip
    print(f"{CHARGERS} chargers, cap {CAP_W / 1000:g} kW, {len(table.visits)} visits, 3 building steps of "
          f"+{STEP_W / 1000:g} kW, meter silent {table.outage[1] - table.outage[0]:.0f} s")
    print("steady = Wh above the cap outside the 3 s after each step; util* = utilisation outside the outage")
    print(head)
    for name, r in results.items():
        def pair(d: dict[str, Any]) -> str:
            return f"{d['p50']}/{d['p99']}"

        print(f"{name:8} {r['over_cap_wh']:>8} {r['over_cap_wh_outside_steps']:>7} {r['over_cap_s']:>7} {r['peak_over_w']:>7} {r['utilisation']:>6} "
              f"{r['utilisation_outside_outage']:>6} {r['fairness_jain']:>6} {r['ev_kwh']:>6} "
              f"{pair(r['step_to_profile_ms']):>21} {pair(r['step_to_under_cap_ms']):>22} "
              f"{r['profiles_per_min']:>8} {r['cpu_s']:>6}")  # fmt: skip
    print(json.dumps({"bench": "loadcap", "seconds": args.seconds, "meter_interval_s": args.meter_interval,
                      "seed": args.seed, "loadcap": args.set, "results": results}))  # fmt: skip


if __name__ == "__main__":
    main()
