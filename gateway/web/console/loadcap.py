"""The load-cap page: the limit and its sources, the last hour of grid import, EV power and headroom, and the
allocation per EVSE with its reason; operators switch the mode, set an outside site limit and manual limits.

It shows what ``GET /api/v1/site`` serves (``ctx.loadcap()``) and acts through the same commands as the API,
which check their own values. That state grows with the load cap: sources and allocation entries
are shown key by key, so a key this page does not know yet still shows (raw) instead of breaking it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from gateway.auth import Role
from gateway.commands import MAX_LIMIT_W, Command, CommandError, SetManualLimit, SetMode, SetSiteLimit
from gateway.i18n import DASH, N_
from gateway.web.console import live
from gateway.web.console.core import Action, Page, Viewer, form
from gateway.web.console.values import text as point_text

router = APIRouter()

CURVE = ["site/grid_power_w", "site/ev_power_w", "site/headroom_w", "site/limit_w"]
CURVE_LABELS = [N_("Grid import"), N_("EV power"), N_("Headroom"), N_("Limit")]
EVSE_LEAVES = ("status", "power_w", "limit_w", "limit_reason", "transaction_id")
SOURCES = {"site": N_("configured"), "schedule": N_("schedule"), "external": N_("outside")}
KNOWN_ENTRY_KEYS = {"charger_id", "evse", "target_w", "limit_w", "reason", "power_w", "manual_limit_w"}
CONSOLE_SOURCE = "console"


@router.get("/loadcap")
async def loadcap_page(page: Viewer, part: str | None = None) -> HTMLResponse:
    values = _view(page)
    if part == "table":
        return page.render("_allocation.html", part=True, **values)
    curve = page.console.recent.curve(CURVE)
    return page.render("loadcap.html", section="loadcap", live="/live/loadcap",
                       curve=page.curve([page.gettext(m) for m in CURVE_LABELS], curve),
                       **values)  # fmt: skip


@router.get("/live/loadcap")
async def loadcap_live(page: Viewer) -> Response:
    return live.response(page, live.Live(wants=_on_page, curves=CURVE))


def _on_page(name: str) -> bool:
    return name.startswith("site/") or (name.startswith("chargers/") and name.rsplit("/", 1)[-1] in EVSE_LEAVES
                                         and "/evse/" in name)  # fmt: skip


@router.post("/loadcap/mode")
async def set_mode(page: Action) -> Response:
    mode = (await form(page.request)).get("mode", "")
    command = _built(page, lambda: SetMode(mode), page.gettext("This value is not accepted."))
    return command if isinstance(command, Response) else _changed(await page.execute(command))


@router.post("/loadcap/limit")
async def set_site_limit(page: Action) -> Response:
    watts = _watts(page, (await form(page.request)).get("limit_kw", ""))
    if isinstance(watts, Response):
        return watts
    command = _built(page, lambda: SetSiteLimit(watts, CONSOLE_SOURCE), _out_of_range(page))
    return command if isinstance(command, Response) else _changed(await page.execute(command))


@router.post("/loadcap/evse/{charger_id}/{evse}/limit")
async def set_manual_limit(page: Action, charger_id: str, evse: int) -> Response:
    watts = _watts(page, (await form(page.request)).get("limit_kw", ""))
    if isinstance(watts, Response):
        return watts
    command = _built(page, lambda: SetManualLimit(charger_id, evse, watts), _out_of_range(page))
    return command if isinstance(command, Response) else _changed(await page.execute(command))


def _view(page: Page) -> dict[str, Any]:
    state = page.ctx.loadcap()
    entries = {(e.get("charger_id"), e.get("evse")): e for e in state.get("allocation", []) if isinstance(e, dict)}
    rows = []
    for charger_id in sorted(page.ctx.site.chargers):
        for evse in sorted(page.ctx.site.chargers[charger_id].evses):
            entry = entries.pop((charger_id, evse), {})
            rows.append({"charger_id": charger_id, "evse": evse, "entry": entry,
                         "extra": _extra(page, {k: v for k, v in entry.items() if k not in KNOWN_ENTRY_KEYS})})
    for (charger_id, evse), entry in sorted(entries.items(), key=str):  # an EVSE the site model has not got (yet)
        rows.append({"charger_id": charger_id, "evse": evse, "entry": entry, "extra": _extra(page, entry)})
    return {"state": state, "sources": limit_sources(page, state), "rows": rows,
            "may_act": page.login.may(Role.operator), "active": bool(state.get("active"))}  # fmt: skip


def limit_sources(page: Page, state: dict[str, Any]) -> list[tuple[str, str]]:
    """The site limit's sources as (label, value) lines, whatever shape each takes (a number, a table of
    sources, a limit with an expiry...)."""
    lines = []
    for key, value in (state.get("sources") or {}).items():
        name = page.gettext(SOURCES[key]) if key in SOURCES else key
        if isinstance(value, dict) and "limit_w" not in value:
            lines += [(f"{name}: {sub}", _value(page, v)) for sub, v in value.items()] or [(name, DASH)]
        else:
            lines.append((name, _value(page, value)))
    return lines


def _value(page: Page, value: Any) -> str:
    """A number is a power in W; a table shows its keys, its limit_w first."""
    if isinstance(value, dict):
        parts = [page.fmt.power(value["limit_w"])] if "limit_w" in value else []
        return " ".join(parts + [f"{k}: {_value(page, v)}" for k, v in value.items() if k != "limit_w"])
    if isinstance(value, bool) or not isinstance(value, int | float):
        return DASH if value is None else str(value)
    return page.fmt.power(value)


def _extra(page: Page, values: dict[str, Any]) -> list[str]:
    return [f"{key}: {point_text(page.fmt, page.gettext, key, v, 'W' if key.endswith('_w') else None)}"
            for key, v in values.items()]  # fmt: skip


def _watts(page: Page, kilowatts: str) -> float | None | Response:
    """A limit typed in kW (a decimal comma or point) in W; empty lifts it."""
    kilowatts = kilowatts.strip().replace(",", ".").replace(" ", "")
    if not kilowatts:
        return None
    try:
        watts = float(kilowatts) * 1000.0
    except ValueError:
        watts = math.nan
    if not math.isfinite(watts):
        return _invalid(page, page.gettext("Enter a number of kW, or nothing to lift the limit."))
    return round(watts, 3)


def _built(page: Page, build: Callable[[], Command], refusal: str) -> Command | HTMLResponse:
    """The command, which checks its own values as for every door (API, MQTT, OPC UA, CLI); its refusal said here
    in the reader's words and language."""
    try:
        return build()
    except CommandError:
        return _invalid(page, refusal)


def _out_of_range(page: Page) -> str:
    return page.gettext("Enter a number of kW from %(low)s to %(high)s.") % {
        "low": page.fmt.number(0, 0), "high": page.fmt.number(MAX_LIMIT_W / 1000, 0)}


def _invalid(page: Page, reason: str, message: str = "") -> HTMLResponse:
    return page.render("_outcome.html", 422, ok=False, code="invalid", reason=reason, message=message)


def _changed(response: HTMLResponse) -> HTMLResponse:
    if response.status_code == 200:
        response.headers["HX-Trigger"] = "loadcap-changed"  # the sources and the allocation table read again
    return response
