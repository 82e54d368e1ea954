"""Console logins: they end after the idle time (a live stream does not count as activity), the oldest go first
when too many are open, and only the login's own CSRF token passes."""

from __future__ import annotations

from gateway.auth import Role
from gateway.web.sessions import MAX_SESSIONS, Sessions


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_login_ends_after_the_idle_time_and_a_request_keeps_it():
    clock = Clock()
    sessions = Sessions(idle_s=1800, clock=clock)
    login = sessions.open("ada", Role.admin)
    clock.now += 1700
    assert sessions.find(login.token) is login  # a request: the idle time starts again
    clock.now += 1700
    assert sessions.find(login.token, touch=False) is login  # a live stream looking: does not count...
    clock.now += 200
    assert sessions.find(login.token, touch=False) is None  # ...so 1900 s after the last request it is over
    assert sessions.find(login.token) is None and login.token not in sessions.logins


def test_the_least_recently_used_logins_go_first():
    sessions = Sessions(idle_s=1800, clock=Clock())
    first, second = sessions.open("a", Role.guest), sessions.open("b", Role.guest)
    sessions.find(first.token)
    for n in range(MAX_SESSIONS - 1):
        sessions.open(f"u{n}", Role.guest)
    assert sessions.find(second.token) is None and sessions.find(first.token) is first
    assert len(sessions.logins) == MAX_SESSIONS


def test_only_the_logins_own_token_passes():
    sessions = Sessions(idle_s=60)
    ada, bob = sessions.open("ada", Role.admin), sessions.open("bob", Role.guest)
    assert ada.csrf_ok(ada.csrf) and not ada.csrf_ok(bob.csrf) and not ada.csrf_ok(None) and not ada.csrf_ok("")
    assert ada.token != bob.token and ada.actor.name == "ada" and ada.actor.via == "console"
    sessions.close(ada.token)
    assert sessions.find(ada.token) is None and sessions.find(bob.token) is bob
