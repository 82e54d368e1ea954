"""Charging profiles stored per charger, the limits chargers report, and what EVs say they need.

Setting and clearing go through the command door as the OCPP request of the charger's version (audited, the
role checked there); the store follows the charger's answer, so what is listed is what a charger accepted or
reported.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from gateway.commands import CommandError, OcppRequest
from gateway.points import charger_point
from gateway.web.deps import Acting, ChargerId, Ctx, Reader, WebContext, known_charger

router = APIRouter()

Source = Annotated[Literal["sent", "reported"] | None, Query(description="Only those the gateway sent, or only "
                                                                       "those the charger reported")]  # fmt: skip
ProfileId = Annotated[int, Path(description="chargingProfileId (1.6) / id (2.0.1)")]


class ProfileBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    evse: int = Field(ge=0, le=32, description="EVSE (1.6: connector); 0 for the charger as a whole")
    profile: dict[str, Any] = Field(description="csChargingProfiles (OCPP 1.6) or chargingProfile (2.0.1), as the "
                                    "charger's version spells it")  # fmt: skip


@router.get("/chargers/{charger_id}/charging-profiles", summary="Charging profiles the charger accepted (sent) or "
            "listed (reported, OCPP 2.0.1 GetChargingProfiles), as on the wire")  # fmt: skip
async def profiles(ctx: Ctx, _: Reader, charger_id: ChargerId, source: Source = None) -> list[dict[str, Any]]:
    known_charger(ctx, charger_id)
    return await ctx.store.charging_profiles.profiles(charger_id, source)


@router.put("/chargers/{charger_id}/charging-profiles", summary="Send a charging profile (SetChargingProfile); "
            "returns the charger's answer")  # fmt: skip
async def set_profile(ctx: Ctx, actor: Acting, charger_id: ChargerId, body: ProfileBody) -> dict[str, Any]:
    known_charger(ctx, charger_id)
    if _version(ctx, charger_id) == "1.6":
        payload = {"connectorId": body.evse, "csChargingProfiles": body.profile}
    else:
        payload = {"evseId": body.evse, "chargingProfile": body.profile}
    return await ctx.commands.execute(OcppRequest(charger_id, "SetChargingProfile", payload), actor)


@router.delete("/chargers/{charger_id}/charging-profiles/{profile_id}", summary="Clear a charging profile by its "
               "id (ClearChargingProfile); returns the charger's answer")  # fmt: skip
async def clear_profile(ctx: Ctx, actor: Acting, charger_id: ChargerId, profile_id: ProfileId) -> dict[str, Any]:
    known_charger(ctx, charger_id)
    payload = {"id": profile_id} if _version(ctx, charger_id) == "1.6" else {"chargingProfileId": profile_id}
    return await ctx.commands.execute(OcppRequest(charger_id, "ClearChargingProfile", payload), actor)


@router.get("/chargers/{charger_id}/charging-limits", summary="Limits outside sources put on the charger "
            "(NotifyChargingLimit), and what its EVs need (NotifyEVChargingNeeds) and plan "
            "(NotifyEVChargingSchedule)")  # fmt: skip
async def limits(ctx: Ctx, _: Reader, charger_id: ChargerId) -> dict[str, Any]:
    known_charger(ctx, charger_id)
    store = ctx.store.charging_profiles
    return {"limits": await store.limits(charger_id), "ev_needs": await store.needs(charger_id),
            "ev_schedules": await store.ev_schedules(charger_id)}  # fmt: skip


def _version(ctx: WebContext, charger_id: str) -> str:
    """The OCPP version the charger speaks now: the profile is sent in its spelling."""
    version = ctx.image.value(charger_point(charger_id, "ocpp_version"))
    if version is None or not ctx.image.value(charger_point(charger_id, "online")):
        raise CommandError("offline", f"{charger_id} is not connected")
    return version
