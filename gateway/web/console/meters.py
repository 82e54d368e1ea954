"""The meters page: every meter's live values with their quality and time, its last error, and a curve of its
recent power (or current, for a meter that measures no power), live."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from gateway.web.api import meter_view
from gateway.web.console import live
from gateway.web.console.core import Page, Viewer
from gateway.web.console.values import PHASES, label

router = APIRouter()

CURVE_LEAVES = {"power_w": ("kW", 0.001), "current_a": ("A", 1.0)}  # what a meter's curve shows, by preference


@router.get("/meters")
async def meters_page(page: Viewer) -> HTMLResponse:
    meters = [meter_view(page.ctx, meter_id) | {"curve": _curve(page, meter_id)} for meter_id in sorted(page.ctx.site.meters)]
    return page.render("meters.html", section="meters", live="/live/meters", meters=meters)


@router.get("/live/meters")
async def meters_live(page: Viewer) -> Response:
    return live.response(page, live.Live(prefix="meters/", curves=curve_series(page), times=True))


def curve_series(page: Page) -> list[str]:
    """Every meter's curve series, in one list: the stream sends one sample for all the page's curves."""
    return [name for meter_id in sorted(page.ctx.site.meters) for name in _series(page, meter_id)[2]]


def _series(page: Page, meter_id: str) -> tuple[str, float, list[str]]:
    prefix = f"meters/{meter_id}/"
    for leaf, (unit, scale) in CURVE_LEAVES.items():
        names = [prefix + n for n in (leaf, *(f"{leaf}_{p}" for p in PHASES))]
        present = [n for n in names if page.ctx.image.get(n) is not None]
        if present:
            return unit, scale, present
    return "", 1.0, []


def _curve(page: Page, meter_id: str) -> dict[str, Any] | None:
    unit, scale, names = _series(page, meter_id)
    if not names:
        return None
    # The page's stream sends samples of every meter's series; this curve takes its own columns of them.
    everything = curve_series(page)
    columns = [everything.index(n) + 1 for n in names]
    data = page.console.recent.curve(names)
    labels = [label(page.gettext, n.rsplit("/", 1)[-1]) for n in names]
    return {"unit": unit, "scale": scale, "columns": columns,
            "data": page.curve(labels, data, spans=False)}  # fmt: skip
