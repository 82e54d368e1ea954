"""The simulated charger's certificates: a key and CSR of its own, SignCertificate, and the certificate
messages of the central system."""

from __future__ import annotations

from typing import Any


class Certificates16:
    """Handlers mixed into the 1.6 simulated charger's protocol; ``self.sim`` is the charger."""

    sim: Any


class Certificates201:
    """Handlers mixed into the 2.0.1 simulated charger's protocol; ``self.sim`` is the charger."""

    sim: Any
