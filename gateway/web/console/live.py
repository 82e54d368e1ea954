"""Live pages: one Server-Sent Events stream per open page, carrying what changed and nothing else.

A stream follows the process image through a coalescing feed (``ProcessImage.feed``): a point that changes ten
times between two messages is sent once, with its latest value, so a stream costs what the page shows, never
what the site does. Once a second at most it sends:

- ``v``: ``{point: [text, raw, quality(, time)]}`` for the changed points the page shows (``values.show``);
  pages mark the elements of a point with ``data-p`` (its text), ``data-pv`` (its raw value only), ``data-pt``
  (its time), ``data-pm`` (a meter);
- ``row``: ``{"html": ...}`` a new event as a table row, for pages that list events;
- ``curve``: ``[time, value...]`` the newest sample of the page's curves (``Recent``);
- ``expired``: the login ended; the page goes to the login page.

Plain ``StreamingResponse`` rather than FastAPI's SSE helper: the stream must end (and close its feed) the
moment the browser goes or the gateway stops, and a poll once a second is all the timing it needs.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi.responses import StreamingResponse

from gateway.points import Point
from gateway.store.events import Event
from gateway.web.console.core import Page
from gateway.web.console.values import Shown, show

PERIOD_S = 1.0  # at most one message a second per stream: changes in between coalesce
KEEPALIVE_S = 20.0  # a comment when nothing changed, so proxies and the browser keep the stream
EVENT_BACKLOG = 200


@dataclass
class Live:
    """What one page's stream carries."""

    prefix: str = ""  # the points it follows (a prefix of their names) ...
    wants: Callable[[str], bool] = lambda name: True  # ... and of those, the ones the page shows
    curves: list[str] = field(default_factory=list)  # Recent series the page draws, in its order
    events: Callable[[Event], bool] | None = None  # new events the page lists
    row: Callable[[Event], str] | None = None  # an event as the page's table row (HTML)
    times: bool = False  # each value also brings its time, as the page shows it (data-pt)


def response(page: Page, live: Live) -> StreamingResponse:
    return StreamingResponse(_stream(page, live), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})  # fmt: skip


async def _stream(page: Page, live: Live) -> AsyncIterator[str]:
    console, login = page.console, page.login
    image = console.ctx.image
    feed = image.feed(live.prefix)
    listener = console.ctx.store.events.listen(EVENT_BACKLOG) if live.events else None
    taken = console.recent.taken
    try:
        # What the page shows may have changed between its rendering and this stream: all of it once.
        first = {name: point for name, point in image.items(live.prefix) if live.wants(name)}
        yield "retry: 3000\n\n" + _message("v", await _shown(page, first, live.times))
        quiet = 0.0
        while not console.stopping.is_set():
            await asyncio.sleep(PERIOD_S)
            if console.sessions.find(login.token, touch=False) is None:
                yield _message("expired", {})
                return
            parts = []
            changes = {name: point for name, point in feed.get_nowait().items() if live.wants(name)}
            if changes:
                parts.append(_message("v", await _shown(page, changes, live.times)))
            if listener is not None and live.events and live.row:
                parts += [_message("row", {"html": live.row(e)}) for e in listener.drain() if live.events(e)]
            if live.curves and console.recent.taken != taken:
                taken = console.recent.taken
                parts.append(_message("curve", console.recent.last(live.curves)))
            if parts:
                quiet = 0.0
                yield "".join(parts)
            else:
                quiet += PERIOD_S
                if quiet >= KEEPALIVE_S:
                    quiet = 0.0
                    yield ": still here\n\n"
    finally:
        feed.close()
        if listener is not None:
            listener.close()


async def _shown(page: Page, points: dict[str, Point], times: bool = False) -> dict[str, list[str]]:
    """The points as the page shows them; a session that starts also brings its badge and start time."""
    fmt, gettext = page.fmt, page.gettext
    out = {name: show(page.ctx.image, fmt, gettext, name).as_json() for name in points}
    if times:
        for name, point in points.items():
            out[name].append(fmt.moment(point.ts, "medium"))
    for name, point in points.items():
        if name.endswith("/transaction_id") and isinstance(point.value, int) and point.value > 0:
            tx = await page.ctx.store.transactions.get(point.value)
            if tx is not None:
                base = name.rsplit("/", 1)[0]
                out[f"{base}/id_tag"] = Shown(tx.id_tag or "–", tx.id_tag or "", "good").as_json()
                out[f"{base}/since"] = Shown(fmt.moment(tx.started_at), tx.started_at or "", "good").as_json()
    return out


def _message(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'), allow_nan=False)}\n\n"
