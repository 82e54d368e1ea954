"""Charging profiles stored per charger, the limits chargers report, and what EVs say they need."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
