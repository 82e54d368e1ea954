"""The OCPP central system: server and handshake (server), per-charger sessions (session, v16, v201), framing
(frames), meter-value reading (measurands), and the version-blind recorder that writes to the core."""

from drivers.ocpp.recorder import Recorder
from drivers.ocpp.server import OcppServer

__all__ = ["OcppServer", "Recorder"]
