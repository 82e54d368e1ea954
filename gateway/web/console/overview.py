"""The site overview (home): grid import against the limit (per phase where the meter says), EV power, headroom,
mode, the fail-safe banner and the limit's sources; one tile per charger with its connection and each EVSE's
status, power and session. Live; filters by status and group and a search by id keep 200 chargers readable."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from gateway.web.api import charger_view
from gateway.web.console import live
from gateway.web.console.core import Page, Viewer
from gateway.web.console.loadcap import limit_sources
from gateway.web.console.values import PHASES, STATUS

router = APIRouter()

EVSE_LEAVES = ("status", "power_w", "soc", "session_energy_wh", "transaction_id")
GRID_LEAVES = ("power_w", *(f"power_w_{p}" for p in PHASES), *(f"current_a_{p}" for p in PHASES))


@router.get("/")
async def overview(page: Viewer) -> HTMLResponse:
    ctx = page.ctx
    info = await ctx.store.chargers.info()
    chargers = [charger_view(ctx, cid, info.get(cid, {})) for cid in sorted(ctx.site.chargers)]
    sessions = {(tx.charger_id, tx.evse): tx for tx in await ctx.store.transactions.open_all()}
    state = ctx.loadcap()
    grid = f"meters/{ctx.site.grid_meter}/" if ctx.site.grid_meter else None
    return page.render("overview.html", section="overview", live="/live/overview", chargers=chargers,
                       sessions=sessions, state=state, sources=limit_sources(page, state), grid=grid,
                       phases=_phases(page, grid), groups=sorted(ctx.site.groups), statuses=STATUS)  # fmt: skip


@router.get("/live/overview")
async def overview_live(page: Viewer) -> Response:
    grid = f"meters/{page.ctx.site.grid_meter}/" if page.ctx.site.grid_meter else "\0"

    def wants(name: str) -> bool:
        if name.startswith("site/"):
            return True
        if name.startswith(grid):
            return name[len(grid) :] in GRID_LEAVES
        parts = name.split("/")
        return parts[0] == "chargers" and ((len(parts) == 3 and parts[2] == "online")
                                           or (len(parts) == 5 and parts[4] in EVSE_LEAVES))  # fmt: skip

    return live.response(page, live.Live(wants=wants))


def _phases(page: Page, grid: str | None) -> list[str]:
    """The grid meter's per-phase points: power if it measures it, else current."""
    if grid is None:
        return []
    for leaf in ("power_w", "current_a"):
        names = [f"{grid}{leaf}_{p}" for p in PHASES]
        if all(page.ctx.image.get(n) is not None for n in names):
            return names
    return []
