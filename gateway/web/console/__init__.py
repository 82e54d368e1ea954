"""The web console (PRODUCT.md §5): server-rendered pages for the people who commission and run the site, on the
API's port and for the API's users.

- A page is a module here with one router -- the page, its fragments, its live stream, its actions -- and, when
  people go to it from anywhere, one entry in ``NAV``.
- Pages read through the functions the API uses and act through the command door with the logged-in user as
  actor (``core.Page.execute``); templates only show what they are given.
- Live values: one Server-Sent Events stream per open page, changed values only (``live.py``).
- Text through gettext, numbers and times per locale (``gateway/i18n.py``); the JavaScript and CSS come from the
  npm registry (``tools/build-console``), under versioned URLs that browsers keep.
"""

from __future__ import annotations

import logging
import secrets
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, RedirectResponse, Response
from starlette.middleware.gzip import GZipMiddleware
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.i18n import N_, translations
from gateway.web.console import chargers, events, loadcap, login, meters, overview, transactions
from gateway.web.console.core import STATIC, Console, NavItem, NeedLogin, Refused, language
from gateway.web.console.recent import Recent
from gateway.web.deps import WebContext

log = logging.getLogger(__name__)

NAV = [
    NavItem("/", N_("Site"), "overview"),
    NavItem("/loadcap", N_("Load cap"), "loadcap"),
    NavItem("/transactions", N_("Sessions"), "transactions"),
    NavItem("/meters", N_("Meters"), "meters"),
    NavItem("/events", N_("Events"), "events"),
]
VENDOR = ("vendor/htmx.min.js", "vendor/pico.min.css", "vendor/uPlot.iife.min.js", "vendor/uPlot.min.css")


def install(app: FastAPI, ctx: WebContext) -> Console:
    """The console's pages, static files and background work on the API's app."""
    console = Console(ctx, app.state.sessions, NAV, Recent(ctx.image), app.state.stopping)
    missing = [name for name in VENDOR if name not in console.assets]
    if missing:
        log.error("the console's front-end files are missing (%s): build them with tools/build-console",
                  ", ".join(missing))  # fmt: skip
    app.state.console = console
    app.state.background += [console.recent.run, lambda: first_admin(console, app.state.base_url)]
    for part in (login, overview, chargers, loadcap, transactions, meters, events):
        app.include_router(part.router, include_in_schema=False)
    app.mount("/static", _Static(directory=STATIC), name="static")
    app.add_exception_handler(NeedLogin, _to_login)
    app.add_exception_handler(Refused, _refused)
    app.add_middleware(_PagesGzip)
    return console


async def first_admin(console: Console, base_url: str) -> None:
    """With no user at all, a one-time link to create the first admin, in the log (until one exists)."""
    if await console.ctx.store.accounts.has_users():
        return
    console.sessions.setup_token = token = secrets.token_urlsafe(24)
    log.warning("no console user yet: create the first admin at %s/setup/%s (or: evedge user add NAME --role admin)",
                base_url, token)  # fmt: skip


async def _to_login(request: Request, exc: Exception) -> Response:
    if "HX-Request" in request.headers:  # htmx follows the header; a fragment must not become a login page
        return Response(status_code=401, headers={"HX-Redirect": "/login"})
    if request.url.path.startswith("/live/") or request.method != "GET":
        return PlainTextResponse("log in first", 401)
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target)}", 303)


async def _refused(request: Request, exc: Exception) -> Response:
    message = translations(language(request)).gettext("This form is out of date: reload the page and try again.")
    return PlainTextResponse(message, 403)


class _Static(StaticFiles):
    """Versioned URLs (?v=content hash): a browser keeps each file until it changes."""

    def file_response(self, *args, **kwargs) -> Response:  # type: ignore[no-untyped-def]
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        return response


class _PagesGzip:
    """Pages and static files compressed (a phone on a weak link loads a fraction); the API, the files served to
    chargers and the live streams as they are."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.gzip = GZipMiddleware(app, minimum_size=1024, compresslevel=6)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path.startswith(("/api/", "/files/", "/live/")):
            await self.app(scope, receive, send)
        else:
            await self.gzip(scope, receive, send)
