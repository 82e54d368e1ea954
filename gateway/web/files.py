"""Firmware files served to chargers, and the diagnostics and log files chargers upload."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
