"""Badges: the site's list of id tags (status, expiry, parent id), the local lists sent to chargers, the
authorization cache, and reservations. Changes go through the command door (role check, audit)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from gateway.clock import utcnow
from gateway.commands import CancelReservation, PutBadge, RemoveBadge, Reserve
from gateway.web.deps import Acting, ChargerId, Ctx, Limit, Operator, Reader, known_charger

router = APIRouter(tags=["badges"])
IdTag = Annotated[str, Path(min_length=1, max_length=36, description="Badge id (idTag / idToken)")]
Timestamp = Annotated[str, Field(min_length=1, max_length=40, description="ISO 8601 date-time")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class BadgeBody(_Body):
    status: Literal["Accepted", "Blocked", "Expired", "Invalid"] = "Accepted"
    expiry: Timestamp | None = None
    parent_id_tag: str | None = Field(None, min_length=1, max_length=36, description="Group (parent id tag)")
    note: str | None = Field(None, max_length=200)


class ReservationBody(_Body):
    id_tag: str = Field(min_length=1, max_length=36)
    expiry: Timestamp
    evse: int | None = Field(None, ge=0, le=32, description="None or 0: any EVSE of the charger")
    parent_id_tag: str | None = Field(None, min_length=1, max_length=36)


@router.get("/badges", summary="The site's badge list, by id tag")
async def badges(ctx: Ctx, _: Reader, after: str | None = None, limit: Limit = 10000) -> list[dict[str, Any]]:
    return await ctx.store.badges.site_list(limit, after)


@router.put("/badges/{id_tag}", summary="Add or change a badge (operators)")
async def put_badge(ctx: Ctx, actor: Acting, id_tag: IdTag, body: BadgeBody) -> dict[str, Any]:
    return await ctx.commands.execute(PutBadge(id_tag, body.status, body.expiry, body.parent_id_tag, body.note), actor)


@router.delete("/badges/{id_tag}", summary="Remove a badge from the site's list (operators)")
async def remove_badge(ctx: Ctx, actor: Acting, id_tag: IdTag) -> dict[str, Any]:
    return await ctx.commands.execute(RemoveBadge(id_tag), actor)


@router.get("/authorization-cache", summary="The last answer given to each badge presented, newest first")
async def cache(ctx: Ctx, _: Operator, limit: Limit = 1000) -> list[dict[str, Any]]:
    return await ctx.store.badges.cache(limit)


@router.delete("/authorization-cache", summary="Forget every cached answer")
async def clear_cache(ctx: Ctx, _: Operator) -> dict[str, Any]:
    return {"removed": await ctx.store.badges.clear_cache()}


@router.get("/chargers/{charger_id}/local-list", summary="The local authorization list the charger holds, as sent")
async def local_list(ctx: Ctx, _: Reader, charger_id: ChargerId) -> dict[str, Any]:
    known_charger(ctx, charger_id)
    return await ctx.store.badges.local_list(charger_id)


@router.get("/reservations", summary="Reservations chargers accepted, newest first")
async def reservations(ctx: Ctx, _: Reader, charger: str | None = None,
                       active: Annotated[bool, Query(description="Only those active now")] = False,
                       limit: Limit = 1000) -> list[dict[str, Any]]:  # fmt: skip
    return await ctx.store.badges.reservations(charger, utcnow() if active else None, limit)


@router.post("/chargers/{charger_id}/reservations", summary="Reserve an EVSE for a badge (ReserveNow)")
async def reserve(ctx: Ctx, actor: Acting, charger_id: ChargerId, body: ReservationBody) -> dict[str, Any]:
    known_charger(ctx, charger_id)
    cmd = Reserve(charger_id, body.id_tag, body.expiry, body.evse, body.parent_id_tag)
    return await ctx.commands.execute(cmd, actor)


@router.delete("/chargers/{charger_id}/reservations/{reservation_id}", summary="Cancel a reservation")
async def cancel(ctx: Ctx, actor: Acting, charger_id: ChargerId,
                 reservation_id: Annotated[int, Path(ge=0)]) -> dict[str, Any]:  # fmt: skip
    known_charger(ctx, charger_id)
    return await ctx.commands.execute(CancelReservation(charger_id, reservation_id), actor)
