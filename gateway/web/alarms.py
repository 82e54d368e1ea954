"""Alarms over HTTP: the list (active, with filters), one alarm, the journal, the definitions with their source,
the notifications' delivery state; acknowledge, shelve, unshelve, out of service -- through the command door."""

from __future__ import annotations

import fnmatch
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from gateway.alarms import MAX_COMMENT, MAX_SHELVE_MINUTES, AcknowledgeAlarm, AlarmList, SetAlarmInService, \
    ShelveAlarm, UnshelveAlarm  # fmt: skip
from gateway.web.deps import Acting, Ctx, Limit, Reader, Since, Until, WebContext, utc

router = APIRouter(tags=["alarms"])
AlarmId = Annotated[str, Path(min_length=1, max_length=200, description="Alarm id, e.g. charger-offline:CP01")]
STATES = ("normal", "active_unacknowledged", "active_acknowledged", "returned_unacknowledged", "suppressed",
          "shelved", "out_of_service")  # fmt: skip


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


Comment = Annotated[str | None, Field(None, max_length=MAX_COMMENT)]


class AckBody(_Body):
    comment: Comment = None


class ShelveBody(_Body):
    minutes: float = Field(60, gt=0, le=MAX_SHELVE_MINUTES, allow_inf_nan=False, description="How long (7 days at most)")
    comment: Comment = None


class ServiceBody(_Body):
    comment: Comment = None
    minutes: float | None = Field(None, gt=0, le=MAX_SHELVE_MINUTES, allow_inf_nan=False,
                                  description="Out of service for this long (none: until returned by hand)")  # fmt: skip


def _alarms(ctx: WebContext) -> AlarmList:
    if ctx.alarms is None:
        raise HTTPException(503, "the alarms are not running")
    return ctx.alarms


@router.get("/alarms", summary="Alarms not in the normal state (active, unacknowledged, silenced), most severe first")
async def alarms(ctx: Ctx, _: Reader,
                 state: Annotated[str | None, Query(description=f"One of {', '.join(STATES)}, or all")] = None,
                 source: Annotated[str | None, Query(description='Point pattern, e.g. "chargers/CP01/*"')] = None,
                 min_level: Annotated[int, Query(ge=1, le=30)] = 1) -> list[dict[str, Any]]:  # fmt: skip
    found = _alarms(ctx)
    if state is not None and state not in (*STATES, "all"):
        raise HTTPException(422, f"state must be one of {', '.join(STATES)}, or all")
    if state in ("all", "normal"):
        rows = sorted(found.records.values(), key=lambda r: r["id"])
    else:
        rows = found.active()
    if state not in (None, "all"):
        rows = [r for r in rows if r["state"] == state]
    if source:
        rows = [r for r in rows if fnmatch.fnmatchcase(r["point"], source)]
    return [r for r in rows if r["level"] >= min_level]


@router.get("/alarms/history", summary="Every transition, newest first")
async def history(ctx: Ctx, _: Reader, alarm: str | None = None, since: Since = None, until: Until = None,
                  limit: Limit = 1000) -> list[dict[str, Any]]:  # fmt: skip
    return await ctx.store.alarms.history(alarm, utc(since), utc(until), limit)


@router.get("/alarms/definitions", summary="Alarm definitions, with their source (builtin or config)")
async def definitions(ctx: Ctx, _: Reader) -> list[dict[str, Any]]:
    return _alarms(ctx).definitions


@router.get("/alarms/notifications", summary="E-mails and webhooks: each one's delivery state, newest first")
async def notifications(ctx: Ctx, _: Reader, alarm: str | None = None,
                        state: Annotated[str | None, Query(pattern="^(queued|sent)$")] = None,
                        limit: Limit = 1000) -> list[dict[str, Any]]:  # fmt: skip
    return await ctx.store.alarms.notifications(alarm, state, limit)


@router.get("/alarms/{alarm_id}", summary="One alarm, whatever its state")
async def alarm(ctx: Ctx, _: Reader, alarm_id: AlarmId) -> dict[str, Any]:
    record = _alarms(ctx).get(alarm_id)
    if record is None:
        raise HTTPException(404, f"no alarm {alarm_id!r}")
    return record


@router.post("/alarms/{alarm_id}/ack", summary="Acknowledge (operators), with a comment")
async def ack(ctx: Ctx, actor: Acting, alarm_id: AlarmId, body: AckBody | None = None) -> dict[str, Any]:
    return await ctx.commands.execute(AcknowledgeAlarm(alarm_id, (body or AckBody()).comment), actor)


@router.post("/alarms/{alarm_id}/shelve", summary="Shelve for some minutes (operators)")
async def shelve(ctx: Ctx, actor: Acting, alarm_id: AlarmId, body: ShelveBody | None = None) -> dict[str, Any]:
    body = body or ShelveBody()
    return await ctx.commands.execute(ShelveAlarm(alarm_id, body.comment, body.minutes), actor)


@router.post("/alarms/{alarm_id}/unshelve", summary="End a shelf now (operators)")
async def unshelve(ctx: Ctx, actor: Acting, alarm_id: AlarmId, body: AckBody | None = None) -> dict[str, Any]:
    return await ctx.commands.execute(UnshelveAlarm(alarm_id, (body or AckBody()).comment), actor)


@router.post("/alarms/{alarm_id}/out-of-service", summary="Take out of service, for maintenance (admins)")
async def out_of_service(ctx: Ctx, actor: Acting, alarm_id: AlarmId,
                         body: ServiceBody | None = None) -> dict[str, Any]:  # fmt: skip
    body = body or ServiceBody()
    return await ctx.commands.execute(SetAlarmInService(alarm_id, body.comment, False, body.minutes), actor)


@router.post("/alarms/{alarm_id}/return-to-service", summary="Return to service (admins)")
async def return_to_service(ctx: Ctx, actor: Acting, alarm_id: AlarmId,
                            body: AckBody | None = None) -> dict[str, Any]:  # fmt: skip
    return await ctx.commands.execute(SetAlarmInService(alarm_id, (body or AckBody()).comment, True), actor)
