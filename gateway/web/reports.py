"""What chargers report about themselves: device model (2.0.1 NotifyReport), monitoring, display messages,
customer information, security events."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
