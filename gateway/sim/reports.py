"""The simulated charger's device model, monitoring, display messages and customer information."""

from __future__ import annotations

from typing import Any


class Reports16:
    """Handlers mixed into the 1.6 simulated charger's protocol; ``self.sim`` is the charger."""

    sim: Any


class Reports201:
    """Handlers mixed into the 2.0.1 simulated charger's protocol; ``self.sim`` is the charger."""

    sim: Any
