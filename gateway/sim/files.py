"""The simulated charger downloads firmware and uploads diagnostics and logs over HTTP, and reports the
steps as a real one does."""

from __future__ import annotations

from typing import Any


class Files16:
    """Handlers mixed into the 1.6 simulated charger's protocol; ``self.sim`` is the charger."""

    sim: Any


class Files201:
    """Handlers mixed into the 2.0.1 simulated charger's protocol; ``self.sim`` is the charger."""

    sim: Any
