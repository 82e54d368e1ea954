"""A simulated site: chargers of both versions, on autopilot, for `evedge sim` and `evedge demo`."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.sim.charger import SimCharger, SimSpec
from gateway.sim.ocpp16 import Sim16
from gateway.sim.ocpp201 import Sim201


def make_charger(spec: SimSpec, **kwargs: Any) -> SimCharger:
    if spec.version not in ("1.6", "2.0.1"):
        raise ValueError(f"unknown OCPP version {spec.version!r}: 1.6 or 2.0.1")
    return (Sim16 if spec.version == "1.6" else Sim201)(spec, **kwargs)


def mixed_specs(count: int, url: str, password: str | None = None, prefix: str = "SIM", **kwargs: Any) -> list[SimSpec]:
    """`count` chargers, alternating 1.6 and 2.0.1: SIM01 (1.6), SIM02 (2.0.1), ..."""
    return [SimSpec(f"{prefix}{n:02d}", "1.6" if n % 2 else "2.0.1", url, password, **kwargs)
            for n in range(1, count + 1)]  # fmt: skip


def ev_power_by_phase(chargers: list[SimCharger]) -> tuple[float, float, float]:
    """What the simulated EVs draw on the site's L1, L2, L3: a three-phase car evenly, a single-phase one on the
    site phase its charger's L1 is wired to."""
    phases = [0.0, 0.0, 0.0]
    for charger in chargers:
        first = int(charger.spec.phase_rotation[1]) - 1
        for evse in charger.evses.values():
            if evse.ev is None or not evse.power_w:
                continue
            if min(evse.ev.phases, charger.spec.phases) == 3:
                for n in range(3):
                    phases[n] += evse.power_w / 3
            else:
                phases[first] += evse.power_w
    return phases[0], phases[1], phases[2]


async def run_site(chargers: list[SimCharger], autopilot: bool = True, **autopilot_args: Any) -> None:
    """Run every charger (and its autopilot) until cancelled."""
    async with asyncio.TaskGroup() as tasks:
        for charger in chargers:
            tasks.create_task(charger.run(), name=f"sim-{charger.spec.id}")
            if autopilot:
                tasks.create_task(charger.autopilot(**autopilot_args), name=f"sim-autopilot-{charger.spec.id}")
