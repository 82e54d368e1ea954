"""Badges: the site's list of id tags (status, expiry, parent id), the local lists sent to chargers, the
authorization cache."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
