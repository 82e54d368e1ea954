"""The simulated charger's answers about charging profiles and composite schedules."""

from __future__ import annotations

from typing import Any


class ChargingProfiles16:
    """Handlers mixed into the 1.6 simulated charger's protocol; ``self.sim`` is the charger."""

    sim: Any


class ChargingProfiles201:
    """Handlers mixed into the 2.0.1 simulated charger's protocol; ``self.sim`` is the charger."""

    sim: Any
