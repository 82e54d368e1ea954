"""A plausible EV, without I/O: a battery, an on-board charger, a taper near full.

Time is passed in (seconds), so the same EV runs in real time in the demo and in exact steps in tests.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

TAPER_FROM_SOC = 80.0  # above this the car draws less and less, down to 10 % of its maximum at 100 %


@dataclass
class Ev:
    capacity_wh: float = 60000.0
    soc: float = 30.0  # %
    max_w: float = 11000.0  # what its on-board charger takes
    phases: int = 3
    target_soc: float = 100.0
    id_tag: str = "EV-TAG"

    @property
    def full(self) -> bool:
        return self.soc >= self.target_soc

    def demand_w(self) -> float:
        """What the car would take right now if nothing limited it."""
        if self.full:
            return 0.0
        if self.soc <= TAPER_FROM_SOC:
            return self.max_w
        left = (100.0 - self.soc) / (100.0 - TAPER_FROM_SOC)
        return self.max_w * (0.1 + 0.9 * max(0.0, left))

    def draw_w(self, limit_w: float | None) -> float:
        """What it takes under a limit (None: no limit)."""
        demand = self.demand_w()
        return demand if limit_w is None else max(0.0, min(demand, limit_w))

    def charge(self, power_w: float, seconds: float) -> float:
        """Charge at power_w for some seconds; returns the energy taken in Wh."""
        if power_w <= 0 or seconds <= 0:
            return 0.0
        room_wh = (self.target_soc - self.soc) / 100.0 * self.capacity_wh
        energy = min(power_w * seconds / 3600.0, max(0.0, room_wh))
        self.soc = min(100.0, self.soc + energy / self.capacity_wh * 100.0)
        return energy


def random_ev(rng: random.Random, id_tag: str) -> Ev:
    """A car from a plausible mix of the road."""
    capacity, max_w, phases = rng.choice(
        [(40000.0, 7400.0, 1), (58000.0, 11000.0, 3), (77000.0, 11000.0, 3), (50000.0, 3700.0, 1),
         (95000.0, 22000.0, 3)]
    )  # fmt: skip
    return Ev(capacity, round(rng.uniform(10, 70), 1), max_w, phases, 100.0, id_tag)
