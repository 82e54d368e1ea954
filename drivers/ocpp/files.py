"""Firmware and diagnostics: the status notifications chargers send while they download firmware or upload
diagnostics and logs, and the gateway's own URLs filled into UpdateFirmware, GetDiagnostics and GetLog."""

from __future__ import annotations

import logging

from drivers.ocpp.session import Session

log = logging.getLogger(__name__)


class Files16(Session):
    """OCPP 1.6J."""


class Files201(Session):
    """OCPP 2.0.1."""
