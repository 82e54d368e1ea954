"""Authorization: Authorize and the id tags in transactions answered from the site's badge list, the local
lists sent to the charger and the site policy for unknown badges; reservations."""

from __future__ import annotations

import logging

from drivers.ocpp.session import Session

log = logging.getLogger(__name__)


class Badges16(Session):
    """OCPP 1.6J."""


class Badges201(Session):
    """OCPP 2.0.1."""
