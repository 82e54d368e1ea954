"""Charging sessions: the history with filters (dates, charger, badge, stop reason), sorting and paging over any
number of them (one page read at a time), exported as CSV or Excel with the same filters; and one session's
page: its meter-value curves (power, current per phase, SoC, energy) from the stored samples, and the limits
the load cap sent it over time."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, Response

from gateway.i18n import N_, parse_ts
from gateway.store.transactions import SORTS, Filters
from gateway.web.console.core import Page, Viewer
from gateway.web.exports import transactions_file

router = APIRouter()

PAGE = 50
MAX_OFFSET = 10_000_000
MAX_SAMPLES = 20_000  # of one session (10 s samples: 55 h)
Sort = Literal[SORTS]  # type: ignore[valid-type]


@router.get("/transactions")
async def sessions_page(page: Viewer, since: str = "", until: str = "", charger: str = "", id_tag: str = "",
                        stop_reason: str = "", sort: Sort = "started_at", order: Literal["asc", "desc"] = "desc",
                        offset: int = Query(0, ge=0, le=MAX_OFFSET)) -> HTMLResponse:  # fmt: skip
    filters, shown = _filters(page, since, until, charger, id_tag, stop_reason)
    found = await page.ctx.store.transactions.page(filters, sort, order == "desc", offset, PAGE + 1)
    query = {k: v for k, v in shown.items() if v} | {"sort": sort, "order": order}

    def link(**changes: Any) -> str:
        return "/transactions?" + urlencode({**query, **changes})

    values = {"rows": found[:PAGE], "more": len(found) > PAGE, "offset": offset, "page_size": PAGE, "sort": sort,
              "order": order, "link": link, "filters": shown, "export": urlencode({k: v for k, v in shown.items() if v})}  # fmt: skip
    if page.request.headers.get("HX-Target") == "sessions":
        return page.render("_transactions.html", **values)
    return page.render("transactions.html", section="transactions", chargers=sorted(page.ctx.site.chargers),
                       reasons=await page.ctx.store.transactions.stop_reasons(), **values)  # fmt: skip


@router.get("/transactions/export.{kind}")
async def export(page: Viewer, kind: Literal["csv", "xlsx"], since: str = "", until: str = "", charger: str = "",
                 id_tag: str = "", stop_reason: str = "") -> Response:  # fmt: skip
    filters, _ = _filters(page, since, until, charger, id_tag, stop_reason)
    return await transactions_file(page.ctx, filters, kind, page.fmt)


@router.get("/transactions/{transaction_id}")
async def session_page(page: Viewer, transaction_id: int) -> HTMLResponse:
    ctx = page.ctx
    tx = await ctx.store.transactions.get(transaction_id)
    if tx is None:
        return page.render("missing.html", 404, what=str(transaction_id))
    samples = await ctx.store.transactions.samples(transaction_id, MAX_SAMPLES)
    readings = [(parse_ts(ts), ctx.sample_points(json.loads(text))) for ts, text in samples]
    readings = [(ts.timestamp(), points) for ts, points in readings if ts is not None]
    start, stop = parse_ts(tx.started_at), parse_ts(tx.stopped_at)
    limits = await ctx.store.events.allocation_limits(f"{tx.charger_id}/{tx.evse}", start, stop) if start else []
    curves = _curves(page, readings, [(parse_ts(ts).timestamp(), w) for ts, w in limits], tx.meter_start_wh)
    duration = ((stop or datetime.now(start.tzinfo)) - start).total_seconds() if start else None
    return page.render("session.html", section="transactions", tx=tx, duration=duration, curves=curves,
                       samples=len(readings))  # fmt: skip


def _filters(page: Page, since: str, until: str, charger: str, id_tag: str,
             stop_reason: str) -> tuple[Filters, dict[str, str]]:  # fmt: skip
    """The filters of the form (dates are days in the site's zone, until included), and the form as it applies
    them (a date that is not one is dropped)."""
    start, end = page.day(since), page.day(until)
    filters = Filters(start, end + timedelta(days=1) if end else None, charger.strip() or None,
                      id_tag.strip() or None, stop_reason.strip() or None)  # fmt: skip
    shown = {"since": since if start else "", "until": until if end else "", "charger": charger.strip(),
             "id_tag": id_tag.strip(), "stop_reason": stop_reason.strip()}  # fmt: skip
    return filters, shown


# A session's curves: (id, title, unit, [(series label, point leaf, scale)]).
CURVES = [
    ("power", N_("Power"), "kW", [(N_("Power"), "power_w", 0.001), (N_("Limit sent"), "limit", 0.001)]),
    ("current", N_("Current per phase"), "A", [("L1", "current_a_l1", 1), ("L2", "current_a_l2", 1),
                                                 ("L3", "current_a_l3", 1)]),
    ("soc", N_("State of charge"), "%", [(N_("State of charge"), "soc", 1)]),
    ("energy", N_("Energy"), "kWh", [(N_("Energy"), "session_energy", 0.001)]),
]  # fmt: skip


def _curves(page: Page, readings: list[tuple[float, dict[str, float]]], limits: list[tuple[float, float | None]],
            meter_start_wh: float | None) -> list[dict[str, Any]]:  # fmt: skip
    """Aligned columns for uPlot: the samples' times and the limits' times together; a limit holds until the next
    one (carried forward), a measured value shows only where it was measured."""
    start_wh = meter_start_wh
    if start_wh is None:
        start_wh = next((p["energy_wh"] for _, p in readings if "energy_wh" in p), None)
    by_time: dict[float, dict[str, float]] = {}
    for ts, points in readings:
        row = by_time.setdefault(ts, {})
        row.update(points)
        if "energy_wh" in points and start_wh is not None:
            row["session_energy"] = points["energy_wh"] - start_wh
    for ts, watts in limits:
        by_time.setdefault(ts, {})["limit"] = math.nan if watts is None else watts
    times = sorted(by_time)
    out = []
    for key, title, unit, series in CURVES:
        columns: list[list[float | None]] = [list(times)]
        shown, steps = [], []
        for label, leaf, scale in series:
            column: list[float | None] = []
            held: float | None = None
            for ts in times:
                value = by_time[ts].get(leaf)
                if leaf == "limit":  # a step: what was sent holds until the next
                    held = held if value is None else (None if math.isnan(value) else value * scale)
                    column.append(held)
                else:
                    column.append(None if value is None else value * scale)
            if any(v is not None for v in column):
                columns.append(column)
                shown.append(page.gettext(label))
                steps.append(leaf == "limit")
        if len(columns) > 1:
            out.append({"id": key, "title": page.gettext(title), "unit": unit,
                        "data": page.curve(shown, columns, spans=True, steps=steps)})  # fmt: skip
    return out
