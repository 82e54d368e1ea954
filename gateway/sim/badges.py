"""The simulated charger's local authorization list and reservations."""

from __future__ import annotations

from typing import Any


class Badges16:
    """Handlers mixed into the 1.6 simulated charger's protocol; ``self.sim`` is the charger."""

    sim: Any


class Badges201:
    """Handlers mixed into the 2.0.1 simulated charger's protocol; ``self.sim`` is the charger."""

    sim: Any
