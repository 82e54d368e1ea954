"""What every router of the HTTP API shares: the context the composition root fills, the caller behind a
bearer token, the role checks, and the common parameters."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Path, Query, Request

from gateway import strictjson
from gateway.alarms import AlarmList
from gateway.auth import Actor, Role
from gateway.commands import Commands
from gateway.model import Site
from gateway.points import ProcessImage
from gateway.settings import Settings
from gateway.store import Store
from gateway.web.sessions import CSRF_HEADER, sessions

API_VERSION = "v1"
MAX_ROWS = 10000  # per response: a page bigger than this would hold the event loop (and the chargers) too long


@dataclass
class WebContext:
    """What the web layer may use; the composition root fills it."""

    site: Site
    image: ProcessImage
    store: Store
    commands: Commands
    health: Callable[[], dict[str, Any]]
    loadcap: Callable[[], dict[str, Any]]  # its limits, their sources and the allocation
    settings: Settings
    # A MeterValue's sampled values (as a charger sent them) -> EVSE point leaves (power_w, soc, current_a_l1, ...)
    sample_points: Callable[[list[dict[str, Any]]], dict[str, float]] = lambda _: {}
    workbooks: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(1))  # one .xlsx written at a time
    alarms: AlarmList | None = None


def context(request: Request) -> WebContext:
    return request.app.state.ctx


async def current_actor(request: Request) -> Actor:
    """The caller behind a bearer token, else behind a console login (a request that changes something with
    its page's CSRF token in the X-CSRF-Token header); 401 without either."""
    scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        login = sessions(request).acting(request, request.headers.get(CSRF_HEADER))
        if login is not None:
            return login.actor
        raise HTTPException(401, "a bearer token is required", headers={"WWW-Authenticate": "Bearer"})
    found = await context(request).store.accounts.token_role(token.strip())
    if found is None:
        raise HTTPException(401, "unknown or expired token", headers={"WWW-Authenticate": "Bearer"})
    role, label = found
    return Actor(label, role, "api")


def require(role: Role) -> Callable[..., Any]:
    async def check(actor: Annotated[Actor, Depends(current_actor)]) -> Actor:
        if actor.role < role:
            raise HTTPException(403, f"this needs the {role.name} role")
        return actor

    return check


Reader = Annotated[Actor, Depends(require(Role.guest))]
Operator = Annotated[Actor, Depends(require(Role.operator))]
Acting = Annotated[Actor, Depends(current_actor)]  # the command door decides on the role
Ctx = Annotated[WebContext, Depends(context)]
ChargerId = Annotated[str, Path(description="Charge point id")]
Since = Annotated[datetime | None, Query(description="From this time on (ISO 8601; UTC when no zone)")]
Until = Annotated[datetime | None, Query(description="Before this time (ISO 8601; UTC when no zone)")]
Limit = Annotated[int, Query(ge=1, le=MAX_ROWS, description=f"At most this many rows (up to {MAX_ROWS}); page with since")]


async def json_object(request: Request) -> dict[str, Any]:
    """The body as a JSON object, whatever Content-Type the client put on it (curl -d says form data)."""
    body = await request.body()
    if not body.strip():
        return {}
    try:
        payload = strictjson.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise HTTPException(422, "the body is not JSON") from None
    if not isinstance(payload, dict):
        raise HTTPException(422, "the body must be a JSON object")
    return payload


def known_charger(ctx: WebContext, charger_id: str) -> None:
    if charger_id not in ctx.site.chargers:
        raise HTTPException(404, f"no charger {charger_id!r} on this site")


def utc(ts: datetime | None) -> datetime | None:
    if ts is None:
        return None
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)
