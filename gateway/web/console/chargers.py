"""A charger's page: who it is, when it came and went, every EVSE's live values and session, the limits it holds
and why, its latest statuses and events; and for operators the buttons a site needs -- remote start and stop,
reset, unlock, availability -- each showing the charger's answer."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from gateway.auth import Role
from gateway.commands import Command, RemoteStart, RemoteStop, Reset, SetAvailability, Unlock
from gateway.web.api import charger_view
from gateway.web.console import live
from gateway.web.console.core import Action, Page, Viewer, form
from gateway.web.console.events import render_row, row

router = APIRouter()

# The order an EVSE's values are listed in; the others follow by name.
LEAF_ORDER = ("status", "error_code", "power_w", "current_a", "current_a_l1", "current_a_l2", "current_a_l3",
              "voltage_v", "energy_wh", "session_energy_wh", "soc", "limit_w", "limit_reason", "transaction_id")  # fmt: skip
RECENT_EVENTS = 30


@router.get("/chargers/{charger_id}")
async def charger_page(page: Viewer, charger_id: str) -> HTMLResponse:
    ctx = page.ctx
    if charger_id not in ctx.site.chargers:
        return page.render("missing.html", 404, what=charger_id)
    info = (await ctx.store.chargers.info(charger_id)).get(charger_id, {})
    view = charger_view(ctx, charger_id, info)
    sessions = {tx.evse: tx for tx in await ctx.store.transactions.open_for(charger_id)}
    events = await ctx.store.events.query(charger=charger_id, limit=RECENT_EVENTS)
    connections = await ctx.store.events.query(kinds=("charger_online", "charger_offline"), charger=charger_id,
                                               limit=10)  # fmt: skip
    allocation = [e for e in ctx.loadcap().get("allocation", []) if e.get("charger_id") == charger_id]
    settings = ctx.settings.charger(charger_id)
    return page.render(
        "charger.html", section="overview", live=f"/live/chargers/{charger_id}", c=view, info=info,
        sessions=sessions, leaves={e["id"]: _leaves(page, charger_id, e["id"]) for e in view["evses"]},
        statuses=await ctx.store.chargers.statuses(charger_id), events=[row(page, e) for e in events],
        connections=[row(page, e) for e in connections], allocation=allocation,
        security_profile=ctx.settings.ocpp.security_profile,
        password=settings is not None and (settings.password is not None or settings.password_hash is not None),
        may_act=page.login.may(Role.operator),
    )  # fmt: skip


@router.get("/chargers/{charger_id}/evse/{evse}/session")
async def session_box(page: Viewer, charger_id: str, evse: int) -> HTMLResponse:
    """An EVSE's running session, read again by the page when it starts or ends."""
    if charger_id not in page.ctx.site.chargers:
        return page.render("missing.html", 404, what=charger_id)
    tx = next((t for t in await page.ctx.store.transactions.open_for(charger_id) if t.evse == evse), None)
    return page.render("_session_box.html", c={"id": charger_id}, e={"id": evse}, tx=tx,
                       may_act=page.login.may(Role.operator))  # fmt: skip


@router.get("/live/chargers/{charger_id}")
async def charger_live(page: Viewer, charger_id: str) -> Response:
    return live.response(page, live.Live(prefix=f"chargers/{charger_id}/",
                                         events=lambda e: e.payload.get("charger") == charger_id,
                                         row=lambda e: render_row(page, e)))  # fmt: skip


@router.post("/chargers/{charger_id}/start")
async def remote_start(page: Action, charger_id: str) -> Response:
    fields = await form(page.request)
    return await _act(page, lambda: RemoteStart(charger_id, fields.get("id_tag", "").strip(), _evse(fields)))


@router.post("/chargers/{charger_id}/stop")
async def remote_stop(page: Action, charger_id: str) -> Response:
    fields = await form(page.request)
    return await _act(page, lambda: RemoteStop(charger_id, int(fields.get("transaction_id", ""))))


@router.post("/chargers/{charger_id}/reset")
async def reset(page: Action, charger_id: str) -> Response:
    fields = await form(page.request)
    return await _act(page, lambda: Reset(charger_id, fields.get("kind") == "hard"))


@router.post("/chargers/{charger_id}/unlock")
async def unlock(page: Action, charger_id: str) -> Response:
    fields = await form(page.request)
    return await _act(page, lambda: Unlock(charger_id, _evse(fields) or 1))


@router.post("/chargers/{charger_id}/availability")
async def availability(page: Action, charger_id: str) -> Response:
    fields = await form(page.request)
    return await _act(page, lambda: SetAvailability(charger_id, fields.get("available") == "true", _evse(fields)))


async def _act(page: Page, build: Any) -> Response:
    """The command the form describes, through the door; a form that does not describe one is answered so."""
    try:
        command: Command = build()
    except ValueError:
        return page.render("_outcome.html", 422, ok=False, code="invalid",
                           reason=page.gettext("The request is not valid."), message="")  # fmt: skip
    return await page.execute(command)


def _evse(fields: dict[str, str]) -> int | None:
    """The EVSE a form names (empty: none, the charger as a whole); ValueError when it is not a number."""
    text = fields.get("evse", "").strip()
    return int(text) if text else None


def _leaves(page: Page, charger_id: str, evse: int) -> list[str]:
    prefix = f"chargers/{charger_id}/evse/{evse}/"
    names = [name[len(prefix) :] for name, _ in page.ctx.image.items(prefix)]
    ordered = [leaf for leaf in LEAF_ORDER if leaf in names]
    return [prefix + leaf for leaf in ordered + sorted(set(names) - set(ordered))]
