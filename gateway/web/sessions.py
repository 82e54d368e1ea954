"""Console logins: who is behind a browser, for how long, and the token that proves a form came from our page.

A login is a random token in an HttpOnly, SameSite=Strict cookie (Secure over HTTPS), mapped here, in memory,
to the user, the role and a CSRF token: a restart of the gateway logs everybody out, which is what a technician
expects of an appliance restarted for an upgrade. A login ends after ``web.session_idle_min`` without a request
(a live stream does not count: an open page is not a person), and at logout.

Failed logins are counted per client address (``gateway.limits.FailureLimiter``): past the limit the address
waits. The answer to a wrong password never says whether the user exists, in words or in time (see
``Accounts.check_user``).
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.requests import Request

from gateway.auth import Actor, Role
from gateway.limits import FailureLimiter

COOKIE = "evedge_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf"
MAX_SESSIONS = 256  # the least recently used go first: memory an attacker with passwords could make us use
LOGIN_FAILURES, LOGIN_WINDOW_S = 5, 300.0
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass
class Login:
    token: str
    user: str
    role: Role
    csrf: str
    seen: float  # monotonic time of its last request
    lang: str | None = None  # the language the user chose, else the browser's

    @property
    def actor(self) -> Actor:
        return Actor(self.user, self.role, "console")

    def may(self, role: Role) -> bool:
        return self.role >= role

    def csrf_ok(self, sent: str | None) -> bool:
        return sent is not None and hmac.compare_digest(sent.encode(), self.csrf.encode())


@dataclass
class Sessions:
    idle_s: float
    clock: Callable[[], float] = time.monotonic
    logins: OrderedDict[str, Login] = field(default_factory=OrderedDict)
    throttle: FailureLimiter = field(default_factory=lambda: FailureLimiter(LOGIN_FAILURES, LOGIN_WINDOW_S))
    setup_token: str | None = None  # the one-time link to create the first admin, while there is no user

    def open(self, user: str, role: Role, lang: str | None = None) -> Login:
        login = Login(secrets.token_urlsafe(32), user, role, secrets.token_urlsafe(24), self.clock(), lang)
        self.logins[login.token] = login
        while len(self.logins) > MAX_SESSIONS:
            self.logins.popitem(last=False)
        return login

    def find(self, token: str | None, touch: bool = True) -> Login | None:
        """The login behind a cookie, unless it idled out; touch: this request counts as activity."""
        login = self.logins.get(token) if token else None
        if login is None:
            return None
        now = self.clock()
        if now - login.seen > self.idle_s:
            del self.logins[login.token]
            return None
        if touch:
            login.seen = now
            self.logins.move_to_end(login.token)
        return login

    def close(self, token: str | None) -> None:
        if token:
            self.logins.pop(token, None)

    def of(self, request: Request, touch: bool = True) -> Login | None:
        return self.find(request.cookies.get(COOKIE), touch)

    def acting(self, request: Request, sent_csrf: str | None) -> Login | None:
        """The login behind a request that changes something: only with the CSRF token of its own page."""
        login = self.of(request)
        if login is None or (request.method in UNSAFE and not login.csrf_ok(sent_csrf)):
            return None
        return login


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def sessions(request: Request) -> Sessions:
    return request.app.state.sessions
