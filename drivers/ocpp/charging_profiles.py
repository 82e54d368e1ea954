"""Smart charging: profiles the charger accepted, stored per charger; in 2.0.1 the profiles and limits it
reports (ReportChargingProfiles, NotifyChargingLimit, ClearedChargingLimit) and what the EV needs
(NotifyEVChargingNeeds, NotifyEVChargingSchedule)."""

from __future__ import annotations

import logging

from drivers.ocpp.session import Session

log = logging.getLogger(__name__)


class ChargingProfiles16(Session):
    """OCPP 1.6J."""


class ChargingProfiles201(Session):
    """OCPP 2.0.1."""
