"""Logging in and out, the first admin's one-time setup link, and the choice of language.

Before a login there is no session to hold a CSRF token: the login and setup forms carry one that must match a
cookie of the same value (double submit), so another site cannot log a browser in under its own account.
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from gateway.auth import Role
from gateway.i18n import LANGUAGES, N_, translations
from gateway.web.console.core import LANG_COOKIE, Action, Console, console, form, language
from gateway.web.sessions import COOKIE, CSRF_FIELD, LOGIN_WINDOW_S, client_address

log = logging.getLogger(__name__)
router = APIRouter()

FORM_COOKIE = "evedge_form"  # the pre-login CSRF token
USER_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
PASSWORD_LENGTH = (8, 256)
YEAR_S = 365 * 86400


@router.get("/login")
async def login_page(request: Request, next: str = "/") -> Response:
    found = console(request)
    if found.sessions.of(request) is not None:
        return RedirectResponse(_local(next), 303)
    return _form_page(request, found, "login.html", next=_local(next))


@router.post("/login")
async def log_in(request: Request) -> Response:
    found = console(request)
    fields = await form(request)
    target = _local(fields.get("next", "/"))
    if not _form_token_ok(request, fields):
        return _form_page(request, found, "login.html", 403, next=target, error=N_("This form is out of date: try again."))
    address = client_address(request)
    if not found.sessions.throttle.allowed(address):
        log.warning("console login refused: too many failures remote=%s", address)
        return _form_page(request, found, "login.html", 429, next=target,
                          error=N_("Too many failed logins from this address: wait a few minutes."),
                          wait_min=int(LOGIN_WINDOW_S // 60))  # fmt: skip
    name, password = fields.get("name", "").strip(), fields.get("password", "")
    role = await found.ctx.store.accounts.check_user(name, password) if name and password else None
    if role is None:
        found.sessions.throttle.failed(address)
        log.info("console login failed remote=%s", address)  # neither the name nor the password: no secrets
        return _form_page(request, found, "login.html", 401, next=target, name=name,
                          error=N_("Wrong user name or password."))  # fmt: skip
    log.info("console login user=%s role=%s remote=%s", name, role.name, address)
    return _logged_in(request, found, name, role, target)


@router.post("/logout")
async def log_out(page: Action) -> Response:
    page.console.sessions.close(page.login.token)
    response = RedirectResponse("/login", 303)
    response.delete_cookie(COOKIE, path="/")
    return response


@router.get("/lang/{lang}")
async def choose_language(request: Request, lang: str, next: str = "/") -> Response:
    """A preference, not an action: it changes nothing anyone else sees."""
    response = RedirectResponse(_local(next), 303)
    if lang in LANGUAGES:
        login = console(request).sessions.of(request)
        if login is not None:
            login.lang = lang
        response.set_cookie(LANG_COOKIE, lang, max_age=YEAR_S, path="/", samesite="strict", httponly=True,
                            secure=request.url.scheme == "https")  # fmt: skip
    return response


@router.get("/setup/{token}")
async def setup_page(request: Request, token: str) -> Response:
    found = console(request)
    if not await _setup_open(found, token):
        return _form_page(request, found, "setup.html", 404, closed=True)
    return _form_page(request, found, "setup.html", token=token)


@router.post("/setup/{token}")
async def set_up(request: Request, token: str) -> Response:
    found = console(request)
    fields = await form(request)
    if not await _setup_open(found, token):
        return _form_page(request, found, "setup.html", 404, closed=True)
    name, password = fields.get("name", "").strip(), fields.get("password", "")
    error = None
    if not _form_token_ok(request, fields):
        error = N_("This form is out of date: try again.")
    elif not USER_NAME.fullmatch(name):
        error = N_("A user name is 1 to 64 letters, digits or . _ @ -")
    elif not PASSWORD_LENGTH[0] <= len(password) <= PASSWORD_LENGTH[1]:
        error = N_("A password is 8 to 256 characters long.")
    elif password != fields.get("again"):
        error = N_("The two passwords differ.")
    if error is not None:
        return _form_page(request, found, "setup.html", 422, token=token, name=name, error=error)
    await found.ctx.store.accounts.add_user(name, password, Role.admin)
    found.sessions.setup_token = None
    log.warning("first console admin created user=%s remote=%s; the setup link is closed", name,
                client_address(request))  # fmt: skip
    return _logged_in(request, found, name, Role.admin, "/")


async def _setup_open(found: Console, token: str) -> bool:
    expected = found.sessions.setup_token
    if expected is None or not hmac.compare_digest(token.encode(), expected.encode()):
        return False
    if await found.ctx.store.accounts.has_users():  # someone used `evedge user add` meanwhile
        found.sessions.setup_token = None
        return False
    return True


def _logged_in(request: Request, found: Console, name: str, role: Role, target: str) -> Response:
    chosen = request.cookies.get(LANG_COOKIE)
    login = found.sessions.open(name, role, chosen if chosen in LANGUAGES else None)
    response = RedirectResponse(target, 303)
    response.set_cookie(COOKIE, login.token, path="/", httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")  # fmt: skip
    response.delete_cookie(FORM_COOKIE, path="/")
    return response


def _form_page(request: Request, found: Console, template: str, status: int = 200, *, error: str | None = None,
               **values: object) -> HTMLResponse:  # fmt: skip
    """A login or setup form, with a fresh double-submit token in the form and in a cookie."""
    lang = language(request)
    token = secrets.token_urlsafe(24)
    message = translations(lang).gettext(error) if error else None
    html = found.render(lang, template, login=None, request=request, csrf=token, error=message, **values)
    response = HTMLResponse(html, status, headers={"Cache-Control": "no-store"})
    response.set_cookie(FORM_COOKIE, token, path="/", httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")  # fmt: skip
    return response


def _form_token_ok(request: Request, fields: dict[str, str]) -> bool:
    cookie, sent = request.cookies.get(FORM_COOKIE), fields.get(CSRF_FIELD)
    return bool(cookie and sent) and hmac.compare_digest(cookie.encode(), sent.encode())  # type: ignore[union-attr]


def _local(target: str) -> str:
    """Where to go after: a path of this site only (never //elsewhere or https://elsewhere)."""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target
