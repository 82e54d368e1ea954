"""The HTTP API under /api/v1: the same operations as the console, for machines, with bearer tokens.

Reading needs a token of any role. Acting goes through the command door, which decides on the role and
writes the audit record, so the API never second-guesses it.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, FastAPI, Path, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from gateway.commands import CommandError, OcppRequest, SetManualLimit, SetMode, SetSiteLimit
from gateway.i18n import Formats, negotiate
from gateway.store.transactions import Filters
from gateway.web import alarms, badges, charging_profiles, files, reports
from gateway.web.exports import transactions_file
from gateway.web.sessions import Sessions
from gateway.web.deps import (
    API_VERSION,
    Acting,
    ChargerId,
    Ctx,
    Limit,
    Operator,
    Reader,
    Since,
    Until,
    WebContext,
    current_actor,
    json_object,
    known_charger,
    utc,
)

# How each refusal of the command door reads over HTTP.
_STATUS = {"forbidden": 403, "unknown_target": 404, "offline": 409, "rejected": 409, "busy": 429, "timeout": 504,
           "invalid": 422, "call_error": 502, "bad_answer": 502, "unsupported": 501, "disabled": 409,
           "superseded": 409}  # fmt: skip


def create_app(ctx: WebContext) -> FastAPI:
    app = FastAPI(
        title="evedge",
        summary="On-site gateway for EV-charging sites",
        version="0.1.0",
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
    )
    app.state.ctx = ctx
    app.state.sessions = Sessions(ctx.settings.web.session_idle_min * 60.0)  # console logins, for the API too
    app.state.background = []  # what the web server runs beside it
    app.state.stopping = asyncio.Event()
    app.include_router(_router())
    for part in (alarms, badges, charging_profiles, files, reports):
        app.include_router(part.router, prefix=f"/api/{API_VERSION}")
    app.include_router(files.public)  # /files/...: for chargers, a link's token is their credential

    @app.exception_handler(CommandError)
    async def command_error(request: Request, exc: CommandError) -> JSONResponse:
        if exc.code == "call_error":  # the charger's own refusal, as it sent it
            return JSONResponse({"callError": exc.details}, status_code=_STATUS[exc.code])
        return JSONResponse(exc.as_json(), status_code=_STATUS.get(exc.code, 500))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = jsonable_encoder(exc.errors())
        try:
            return JSONResponse({"detail": errors}, status_code=422)
        except ValueError:  # a body with NaN or Infinity (FastAPI's JSON reads them) cannot be echoed: no inputs
            return JSONResponse({"detail": [{k: v for k, v in e.items() if k != "input"} for e in errors]},
                                status_code=422)  # fmt: skip

    from gateway.web import console  # its pages read through this module's views: imported once it is whole

    console.install(app, ctx)
    return app


def _router() -> APIRouter:
    api = APIRouter(prefix=f"/api/{API_VERSION}")

    @api.get("/health", summary="Status of every part (no authentication)")
    async def health(ctx: Ctx) -> dict[str, Any]:
        parts = ctx.health()
        ok = all(part.get("status") == "ok" for part in parts.values())
        return {"status": "ok" if ok else "degraded", "parts": parts}

    @api.get("/chargers", summary="Topology, connection and live state of every charger")
    async def chargers(ctx: Ctx, _: Reader) -> list[dict[str, Any]]:
        info = await ctx.store.chargers.info()
        return [charger_view(ctx, cid, info.get(cid, {})) for cid in sorted(ctx.site.chargers)]

    @api.get("/chargers/{charger_id}", summary="One charger")
    async def charger(ctx: Ctx, _: Reader, charger_id: ChargerId) -> dict[str, Any]:
        known_charger(ctx, charger_id)
        info = await ctx.store.chargers.info(charger_id)
        return charger_view(ctx, charger_id, info.get(charger_id, {}))

    @api.get("/pending-chargers", summary="Unknown charger ids refused at the handshake")
    async def pending(ctx: Ctx, _: Reader) -> list[dict[str, Any]]:
        return await ctx.store.chargers.pending()

    @api.post(
        "/chargers/{charger_id}/ocpp/{action}",
        summary="Send any OCPP request to a charger; returns its answer (or its CALLERROR)",
        responses={502: {"description": "The charger answered with a CALLERROR"}},
        openapi_extra={"requestBody": {"description": "The request payload, as the spec spells it",
                                       "content": {"application/json": {"schema": {"type": "object"}}}}},
    )
    async def ocpp_request(
        request: Request,
        ctx: Ctx,
        charger_id: ChargerId,
        action: Annotated[str, Path(description="OCPP action, e.g. GetConfiguration")],
    ) -> dict[str, Any]:
        actor = await current_actor(request)
        payload = await json_object(request)
        return await ctx.commands.execute(OcppRequest(charger_id, action, payload), actor)

    @api.get("/transactions", summary="Charging sessions, newest first; csv and xlsx: every session the filters "
             "pass (the xlsx headers in the Accept-Language's language, times in the site's zone)", response_model=None)
    async def transactions(
        request: Request,
        ctx: Ctx,
        _: Reader,
        since: Since = None,
        until: Until = None,
        charger: str | None = None,
        id_tag: str | None = None,
        stop_reason: str | None = None,
        format: Literal["json", "csv", "xlsx"] = "json",
        limit: Limit = 10000,
    ) -> Response:
        filters = Filters(utc(since), utc(until), charger, id_tag, stop_reason)
        if format == "json":
            return JSONResponse([tx.as_json() for tx in await ctx.store.transactions.page(filters, limit=limit)])
        people = Formats(negotiate(request.headers.get("accept-language")), ctx.settings.site.timezone)
        return await transactions_file(ctx, filters, format, people if format == "xlsx" else None)

    @api.get("/chargers/{charger_id}/meter-values", summary="Meter values as received, oldest first",
             response_model=None)
    async def meter_values(
        ctx: Ctx, _: Reader, charger_id: ChargerId, since: Since = None, until: Until = None, limit: Limit = 10000
    ) -> Response:
        known_charger(ctx, charger_id)
        rows = await ctx.store.transactions.meter_value_rows(charger_id, utc(since), utc(until), limit)
        # The sampled values are stored as the JSON they arrived in: pass them through, never decode them.
        body = ",".join(
            f'{{"evse":{evse},"transaction_id":{"null" if tx is None else tx},"timestamp":"{ts}","sampled_value":{text}}}'
            for evse, tx, ts, text in rows
        )
        return Response(f"[{body}]", media_type="application/json")

    @api.get("/meters", summary="Every meter with its live values, their timestamps and qualities")
    async def meters(ctx: Ctx, _: Reader) -> list[dict[str, Any]]:
        return [meter_view(ctx, meter_id) for meter_id in sorted(ctx.site.meters)]

    @api.get("/site", summary="Site limit and its sources, grid import, EV power, headroom, mode, fail-safe, and "
             "the allocation per EVSE with its reason")
    async def site(ctx: Ctx, _: Reader) -> dict[str, Any]:
        return ctx.loadcap()

    @api.put("/site/limit", summary="An external limit on the site's import (null lifts it); the strictest holds")
    async def site_limit(ctx: Ctx, actor: Acting, body: SiteLimitBody) -> dict[str, Any]:
        return await ctx.commands.execute(SetSiteLimit(body.limit_w, f"api:{body.source}", body.valid_s), actor)

    @api.put("/site/mode", summary="automatic: the allocator shares the power; manual: operators' limits per EVSE")
    async def site_mode(ctx: Ctx, actor: Acting, body: ModeBody) -> dict[str, Any]:
        return await ctx.commands.execute(SetMode(body.mode), actor)

    @api.put("/chargers/{charger_id}/evses/{evse}/limit", summary="An operator's limit for one EVSE (null lifts it); "
             "it holds in manual mode")
    async def evse_limit(ctx: Ctx, actor: Acting, charger_id: ChargerId, evse: Annotated[int, Path(ge=1, le=32)],
                         body: LimitBody) -> dict[str, Any]:  # fmt: skip
        known_charger(ctx, charger_id)
        return await ctx.commands.execute(SetManualLimit(charger_id, evse, body.limit_w), actor)

    @api.get("/events", summary="What happened on the site (allocation changes, fail-safe on and off), newest first")
    async def events(ctx: Ctx, _: Reader, since: Since = None, kind: str | None = None,
                     limit: Limit = 1000) -> list[dict[str, Any]]:  # fmt: skip
        return await ctx.store.events.query(kind, utc(since), limit)

    @api.get("/audit", summary="Commands sent through the gateway, with who sent them, newest first")
    async def audit(ctx: Ctx, _: Operator, since: Since = None, target: str | None = None,
                    limit: Limit = 1000) -> list[dict[str, Any]]:  # fmt: skip
        return await ctx.store.audit.query(utc(since), target, limit)

    return api


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# The command checks the value (gateway/commands.py): the same refusal as from MQTT, OPC UA and the console.
Watts = Annotated[float | None, Field(description="W, from 0 to 1e9; null lifts the limit")]


class SiteLimitBody(_Body):
    limit_w: Watts
    source: str = Field("operator", pattern=r"^[A-Za-z0-9_.-]{1,48}$",
                        description="Who sets it: each source's limit is kept apart, the strictest holds")  # fmt: skip
    valid_s: float | None = Field(None, description="It lapses unless set again within this many seconds "
                                  "(null: until lifted)")  # fmt: skip


class ModeBody(_Body):
    mode: Literal["automatic", "manual"]


class LimitBody(_Body):
    limit_w: Watts


def charger_view(ctx: WebContext, charger_id: str, info: dict[str, Any]) -> dict[str, Any]:
    charger = ctx.site.chargers[charger_id]
    prefix = f"chargers/{charger_id}/"
    live: dict[str, Any] = {}
    evses: dict[int, dict[str, Any]] = {n: {"id": n, "connectors": sorted(e.connectors)}
                                        for n, e in charger.evses.items()}  # fmt: skip
    for name, point in ctx.image.items(prefix):
        rest = name[len(prefix) :].split("/")
        if len(rest) == 1:
            live[rest[0]] = point.as_json()
        elif len(rest) == 3 and rest[0] == "evse" and rest[1].isdigit():
            evse = evses.setdefault(int(rest[1]), {"id": int(rest[1]), "connectors": [1]})
            evse[rest[2]] = point.as_json()
    online = ctx.image.value(prefix + "online", False)
    return {
        "id": charger_id,
        "configured": charger.configured,
        "max_w": charger.max_w,
        "phases": charger.phases,
        "priority": charger.priority,
        "groups": charger.groups,
        "online": online,
        "ocpp_version": ctx.image.value(prefix + "ocpp_version"),
        "boot": {k: info.get(k) for k in ("vendor", "model", "serial", "firmware", "last_boot")},
        "last_connected": info.get("last_connected"),
        "last_disconnected": info.get("last_disconnected"),
        "live": live,
        "evses": [evses[n] for n in sorted(evses)],
    }


def meter_view(ctx: WebContext, meter_id: str) -> dict[str, Any]:
    prefix = f"meters/{meter_id}/"
    values = {name[len(prefix):]: point.as_json() | {"unit": ctx.image.unit(name)} for name, point in ctx.image.items(prefix)}
    online = values.pop("online", None)
    error = values.pop("last_error", None)
    return {
        "id": meter_id,
        "driver": ctx.site.meters[meter_id].driver,
        "grid": meter_id == ctx.site.grid_meter,
        "online": online["value"] if online else False,
        "last_error": error["value"] if error else None,
        "values": dict(sorted(values.items())),
    }

