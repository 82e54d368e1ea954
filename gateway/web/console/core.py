"""What every console page shares: the console's context, the templates in each language, who is looking, the
CSRF check of what changes something, and how a command's outcome is shown.

A page handler asks for a :class:`Page` (the console, the login, the language) -- or an :class:`Action` for a
request that changes something -- reads through the API's functions, and renders a template with what it read.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
from datetime import datetime
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl

import jinja2
from fastapi import Depends, Request
from fastapi.responses import HTMLResponse

from gateway.commands import Command, CommandError
from gateway.i18n import LANGUAGES, N_, Formats, negotiate, translations
from gateway.web.console.recent import Recent
from gateway.web.console.values import STATUS, label, show
from gateway.web.deps import WebContext
from gateway.web.sessions import CSRF_FIELD, CSRF_HEADER, Login, Sessions

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
LANG_COOKIE = "evedge_lang"
MAX_FORM_BYTES = 16 * 1024


@dataclass(frozen=True)
class NavItem:
    path: str
    label: str  # a message, translated where it is shown
    section: str  # the pages that light it up


@dataclass
class Console:
    ctx: WebContext
    sessions: Sessions
    nav: list[NavItem]
    recent: Recent
    stopping: asyncio.Event = field(default_factory=asyncio.Event)  # the web server is going down: streams end
    envs: dict[str, jinja2.Environment] = field(default_factory=dict)
    assets: dict[str, str] = field(default_factory=dict)  # static file -> its URL with a content version

    def __post_init__(self) -> None:
        for path in sorted(STATIC.rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                name = path.relative_to(STATIC).as_posix()
                self.assets[name] = f"/static/{name}?v={hashlib.sha256(path.read_bytes()).hexdigest()[:10]}"
        self.envs = {lang: self._environment(lang) for lang in LANGUAGES}

    def _environment(self, lang: str) -> jinja2.Environment:
        env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, trim_blocks=True,
                                 lstrip_blocks=True, extensions=["jinja2.ext.i18n"])  # fmt: skip
        gettext = translations(lang)
        env.install_gettext_translations(gettext, newstyle=True)  # type: ignore[attr-defined]
        fmt = Formats(lang, self.ctx.settings.site.timezone)
        env.globals.update(
            lang=lang, languages=LANGUAGES, nav=self.nav, fmt=fmt, site_id=self.ctx.site.id,
            static=self.static, show=functools.partial(show, self.ctx.image, fmt, gettext.gettext),
            label=functools.partial(label, gettext.gettext),
            status=lambda raw: gettext.gettext(STATUS[raw]) if raw in STATUS else raw,
        )  # fmt: skip
        return env

    def static(self, name: str) -> str:
        return self.assets.get(name, f"/static/{name}")

    def formats(self, lang: str) -> Formats:
        return self.envs[lang].globals["fmt"]  # type: ignore[return-value]

    def render(self, lang: str, template: str, **values: Any) -> str:
        return self.envs[lang].get_template(template).render(**values)


def console(request: Request) -> Console:
    return request.app.state.console


class NeedLogin(Exception):
    """No valid login behind a page request: the browser is sent to the login page."""


class Refused(Exception):
    """A request that changes something without its page's CSRF token."""


@dataclass
class Page:
    """A page request: the console, who is looking, in which language."""

    console: Console
    login: Login
    lang: str
    request: Request

    @property
    def ctx(self) -> WebContext:
        return self.console.ctx

    @property
    def fmt(self) -> Formats:
        return self.console.formats(self.lang)

    def gettext(self, message: str) -> str:
        return translations(self.lang).gettext(message)

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        return translations(self.lang).ngettext(singular, plural, n)

    def curve(self, labels: list[str], data: list[list[float | None]], **more: Any) -> str:
        """A curve for the page's uPlot glue (app.js): its series' labels and [times, series...] columns."""
        return json.dumps({"time": self.gettext("Time"), "labels": labels, "data": data, **more})

    def day(self, text: str) -> datetime | None:
        """A date typed in a filter (YYYY-MM-DD): the start of that day in the site's zone; None if it is not one."""
        try:
            return datetime.strptime(text.strip(), "%Y-%m-%d").replace(tzinfo=self.fmt.tz)
        except ValueError:
            return None

    def render(self, template: str, status: int = 200, **values: Any) -> HTMLResponse:
        html = self.console.render(self.lang, template, login=self.login, request=self.request,
                                   htmx="HX-Request" in self.request.headers, **values)  # fmt: skip
        return HTMLResponse(html, status, headers={"Cache-Control": "no-store"})

    async def execute(self, command: Command) -> HTMLResponse:
        """A command through the door, as this user; its outcome (or refusal) as a fragment for the page."""
        try:
            result = await self.ctx.commands.execute(command, self.login.actor)
        except CommandError as e:
            return self.render("_outcome.html", ERROR_STATUS.get(e.code, 409), ok=False, code=e.code,
                               reason=self.gettext(REFUSALS.get(e.code, N_("Not done"))), message=e.message,
                               details=e.details)  # fmt: skip
        return self.render("_outcome.html", ok=True, command=type(command).__name__, result=result)


def language(request: Request, login: Login | None = None) -> str:
    """The user's choice, else the browser's."""
    chosen = (login.lang if login else None) or request.cookies.get(LANG_COOKIE)
    return chosen if chosen in LANGUAGES else negotiate(request.headers.get("accept-language"))


async def form(request: Request) -> dict[str, str]:
    """An urlencoded form body (htmx and plain forms send one), read once per request."""
    if not hasattr(request.state, "form"):
        body = await request.body()
        fields = parse_qsl(body[:MAX_FORM_BYTES].decode("utf-8", "replace"), keep_blank_values=True)
        request.state.form = dict(fields)
    return request.state.form


async def page(request: Request) -> Page:
    found = console(request)
    login = found.sessions.of(request)
    if login is None:
        raise NeedLogin
    return Page(found, login, language(request, login), request)


async def action(request: Request) -> Page:
    """A page request that changes something: only with the CSRF token of the user's own page (htmx sends it as
    a header, a plain form as a field)."""
    found = console(request)
    sent = request.headers.get(CSRF_HEADER) or (await form(request)).get(CSRF_FIELD)
    login = found.sessions.acting(request, sent)
    if login is None:
        if found.sessions.of(request, touch=False) is None:
            raise NeedLogin
        raise Refused
    return Page(found, login, language(request, login), request)


Viewer = Annotated[Page, Depends(page)]
Action = Annotated[Page, Depends(action)]

# How the command door's refusals read for a person; the door's own message follows, as it says it.
REFUSALS = {
    "forbidden": N_("Your role may not do this."), "unknown_target": N_("There is no such charger or EVSE."),
    "offline": N_("The charger is offline."), "rejected": N_("The charger said no."),
    "busy": N_("The charger has too many requests waiting; try again."),
    "timeout": N_("The charger did not answer in time."), "invalid": N_("The request is not valid."),
    "call_error": N_("The charger answered with an error."), "bad_answer": N_("The charger's answer is malformed."),
    "unsupported": N_("Nothing on this gateway can do this."), "disabled": N_("This part of the gateway is off."),
}  # fmt: skip
ERROR_STATUS = {"forbidden": 403, "unknown_target": 404, "invalid": 422, "busy": 429, "timeout": 504}
