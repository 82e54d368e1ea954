"""The events page: what happened on the site -- sessions, statuses, chargers online and offline, allocation
changes, the fail-safe, security events -- newest first, with filters, new ones added live. The charger page
lists its own through the same rows."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, Response

from gateway.clock import iso
from gateway.i18n import N_
from gateway.store.events import Event
from gateway.web.console import live
from gateway.web.console.core import Page, Viewer
from gateway.web.console.values import STATUS

router = APIRouter()

PAGE = 100
KINDS = {
    "transaction_started": N_("Session started"), "transaction_stopped": N_("Session stopped"),
    "status": N_("Status"), "charger_online": N_("Charger online"), "charger_offline": N_("Charger offline"),
    "allocation": N_("Allocation"), "failsafe": N_("Fail-safe"), "security_event": N_("Security event"),
    "charging_limit": N_("Outside limit"), "charging_limit_cleared": N_("Outside limit cleared"),
    "ev_charging_needs": N_("EV charging needs"), "reservation_made": N_("Reservation made"),
    "reservation_ended": N_("Reservation ended"), "upload_received": N_("File received"),
    "firmware_status": N_("Firmware update"), "diagnostics_status": N_("Diagnostics upload"),
    "log_status": N_("Log upload"), "publish_firmware_status": N_("Firmware publishing"),
    "gateway_started": N_("Gateway started"), "gateway_stopped": N_("Gateway stopped"),
}  # fmt: skip


@router.get("/events")
async def events_page(page: Viewer, kind: str = "", charger: str = "", since: str = "",
                      before: int | None = Query(None, ge=1)) -> HTMLResponse:  # fmt: skip
    start = page.day(since)
    found = await page.ctx.store.events.query(kind or None, start, PAGE + 1, charger=charger or None, before=before)
    rows = [row(page, e) for e in found[:PAGE]]
    values = {"rows": rows, "kind": kind, "charger": charger, "since": since if start else "",
              "older": found[PAGE - 1]["id"] if len(found) > PAGE else None, "kinds": KINDS}  # fmt: skip
    if "HX-Request" in page.request.headers:
        return page.render("_events.html", **values)
    live_url = None if before else f"/live/events?{page.request.url.query}"
    return page.render("events.html", section="events", live=live_url, **values)


@router.get("/live/events")
async def events_live(page: Viewer, kind: str = "", charger: str = "") -> Response:
    def wanted(e: Event) -> bool:
        return (not kind or e.kind == kind) and (not charger or e.payload.get("charger") == charger)

    return live.response(page, live.Live(prefix="\0", events=wanted, row=lambda e: render_row(page, e)))


def render_row(page: Page, event: Event | dict[str, Any]) -> str:
    return page.console.render(page.lang, "_event_row.html", e=row(page, event))


def row(page: Page, event: Event | dict[str, Any]) -> dict[str, Any]:
    """An event as a table row: when, what, which charger, and a sentence about it."""
    if isinstance(event, Event):
        ts, kind, payload = iso(event.ts), event.kind, event.payload
    else:
        ts, kind, payload = event["ts"], event["kind"], event["payload"]
    return {"ts": ts, "kind": kind, "label": page.gettext(KINDS[kind]) if kind in KINDS else kind,
            "charger": payload.get("charger"), "summary": summary(page, kind, payload)}  # fmt: skip


def summary(page: Page, kind: str, p: dict[str, Any]) -> str:
    _, fmt = page.gettext, page.fmt
    if kind == "transaction_started":
        return _("Session %(id)s on EVSE %(evse)s, badge %(badge)s") % {
            "id": p.get("id"), "evse": p.get("evse"), "badge": p.get("id_tag") or "–"}
    if kind == "transaction_stopped":
        return _("Session %(id)s on EVSE %(evse)s: %(energy)s, %(reason)s") % {
            "id": p.get("id"), "evse": p.get("evse"), "energy": fmt.energy(p.get("energy_wh")),
            "reason": p.get("stop_reason") or "–"}
    if kind == "status":
        status = p.get("status")
        text = _("EVSE %(evse)s connector %(connector)s: %(status)s") % {
            "evse": p.get("evse"), "connector": p.get("connector"),
            "status": _(STATUS[status]) if status in STATUS else status}
        extra = [str(p[k]) for k in ("error_code", "info", "vendor_error_code") if p.get(k) and p[k] != "NoError"]
        return f"{text} ({', '.join(extra)})" if extra else text
    if kind == "charger_online":
        return _("Connected with OCPP %(version)s") % {"version": p.get("ocpp_version")}
    if kind == "allocation":
        limits = p.get("limits") or {}
        return page.ngettext("%(count)s session shared, headroom %(headroom)s",
                             "%(count)s sessions shared, headroom %(headroom)s", len(limits)) % {
            "count": len(limits), "headroom": fmt.power(p.get("headroom_w"))}
    if kind == "failsafe":
        if p.get("on"):
            return _("On: the EVs together are held to %(limit)s") % {"limit": fmt.power(p.get("fallback_limit_w"))}
        return _("Off: the grid meter answers again")
    skip = {"charger"}
    return ", ".join(f"{k}: {v}" for k, v in p.items() if k not in skip and v not in (None, "", {}, []))

