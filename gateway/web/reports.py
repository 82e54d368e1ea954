"""What chargers report about themselves: device model (2.0.1 NotifyReport), monitoring, display messages,
customer information, security events. Reading only: asking a charger for a report is an OCPP request
(`POST /api/v1/chargers/{id}/ocpp/GetBaseReport`, ...), and what it answers lands here."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from gateway.web.deps import ChargerId, Ctx, Limit, Operator, Reader, Since, known_charger, utc

router = APIRouter()

Name = Annotated[str | None, Query(max_length=50, description="Only this name (any case)")]


@router.get("/chargers/{charger_id}/device-model", summary="The charger's device model (OCPP 2.0.1): components "
            "with their variables, each with its characteristics and attributes")  # fmt: skip
async def device_model(ctx: Ctx, _: Reader, charger_id: ChargerId, component: Name = None,
                       variable: Name = None) -> list[dict[str, Any]]:  # fmt: skip
    known_charger(ctx, charger_id)
    return await ctx.store.reports.device_model(charger_id, component, variable)


@router.get("/chargers/{charger_id}/reports", summary="Reports the charger sent or was asked for (device model, "
            "monitoring, display messages, customer information), whether complete; the latest news first")  # fmt: skip
async def reports(ctx: Ctx, _: Reader, charger_id: ChargerId,
                  kind: Literal["device_model", "monitoring", "display_messages", "customer_information"] | None = None,
                  ) -> list[dict[str, Any]]:  # fmt: skip
    known_charger(ctx, charger_id)
    return await ctx.store.reports.reports(charger_id, kind)


@router.get("/chargers/{charger_id}/monitors", summary="The charger's variable monitors, and the monitoring base "
            "and level it accepted")  # fmt: skip
async def monitors(ctx: Ctx, _: Reader, charger_id: ChargerId) -> dict[str, Any]:
    known_charger(ctx, charger_id)
    return await ctx.store.reports.monitors(charger_id)


@router.get("/chargers/{charger_id}/display-messages", summary="The messages the charger displays (as it reported "
            "them, or as it accepted them)")  # fmt: skip
async def display_messages(ctx: Ctx, _: Reader, charger_id: ChargerId) -> list[dict[str, Any]]:
    known_charger(ctx, charger_id)
    return await ctx.store.reports.display_messages(charger_id)


@router.get("/chargers/{charger_id}/customer-information", summary="Customer information reports, their parts "
            "joined; the latest first (personal data: operators and up)")  # fmt: skip
async def customer_information(ctx: Ctx, _: Operator, charger_id: ChargerId) -> list[dict[str, Any]]:
    known_charger(ctx, charger_id)
    return await ctx.store.reports.customer_information(charger_id)


@router.get("/chargers/{charger_id}/security-events", summary="Security events the charger sent, newest first")
async def security_events(ctx: Ctx, _: Reader, charger_id: ChargerId, since: Since = None,
                          limit: Limit = 1000) -> list[dict[str, Any]]:  # fmt: skip
    known_charger(ctx, charger_id)
    return await ctx.store.reports.security_events(charger_id, utc(since), limit)
