"""What a charger reports about itself: security events, and in 2.0.1 its device model (NotifyReport),
monitoring (NotifyMonitoringReport), display messages and customer information."""

from __future__ import annotations

import logging

from drivers.ocpp.session import Session

log = logging.getLogger(__name__)


class Reports16(Session):
    """OCPP 1.6J."""


class Reports201(Session):
    """OCPP 2.0.1."""
