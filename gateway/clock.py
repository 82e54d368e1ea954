"""Time: UTC inside, aware datetimes everywhere, one text form in the store and the API."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(ts: datetime) -> str:
    """Fixed-width UTC text, so that text order is time order: 2026-11-21T09:30:00.000Z."""
    ts = ts.astimezone(UTC)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def parse_iso(text: str) -> datetime:
    """ISO 8601 as chargers and users send it; a time without zone is taken as UTC."""
    ts = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)
