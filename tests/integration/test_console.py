"""The console over HTTP (no browser): logins, roles, CSRF, throttling, the first admin's link, pages in both
languages, the live streams, exports. The flows that need a browser are in tests/e2e/."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import openpyxl
import pytest

from gateway.auth import Role
from gateway.settings import load_settings
from gateway.store import DB_NAME, Store
from tests.conftest import ROOT, connected, eventually, running_gateway, write_config

PASSWORD = "a long password"
PAGES = ["/", "/chargers/CP16", "/loadcap", "/transactions", "/meters", "/events"]


@contextlib.asynccontextmanager
async def log_in(gw, name: str, password: str = PASSWORD, headers: dict | None = None) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gw.web_url, headers=headers or {}, timeout=30) as client:
        response = await submit_login(client, name, password)
        assert response.status_code == 303, response.text
        yield client


async def submit_login(client: httpx.AsyncClient, name: str, password: str) -> httpx.Response:
    form = await client.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)[1]
    return await client.post("/login", data={"csrf": token, "name": name, "password": password, "next": "/"})


def csrf_of(html: str) -> str:
    return re.search(r'<meta name="csrf" content="([^"]+)">', html)[1]


@pytest.fixture
async def console(tmp_path):
    """The base site, the load cap on, a user of each role."""
    async with running_gateway(load_settings(write_config(tmp_path, loadcap=True), environ={})) as gw:
        for role in Role:
            await gw.app.store.accounts.add_user(role.name, PASSWORD, role)
        yield gw


async def test_pages_and_streams_need_a_login(console):
    async with httpx.AsyncClient(base_url=console.web_url) as anonymous:
        for path in PAGES:
            response = await anonymous.get(path)
            assert response.status_code == 303 and response.headers["location"] == f"/login?next={path}"
        assert (await anonymous.get("/live/overview")).status_code == 401
        htmx = await anonymous.get("/transactions", headers={"HX-Request": "true"})
        assert htmx.status_code == 401 and htmx.headers["HX-Redirect"] == "/login"
        assert (await anonymous.post("/loadcap/mode", data={"mode": "manual"})).status_code == 401
        assert (await anonymous.get("/transactions/export.csv")).status_code == 303
    assert console.app.loadcap.mode == "automatic"


async def test_a_wrong_password_never_says_whether_the_user_exists(console, caplog):
    async with httpx.AsyncClient(base_url=console.web_url) as client:
        known = await submit_login(client, "operator", "not the password")
        unknown = await submit_login(client, "nobody", "not the password")
        assert known.status_code == unknown.status_code == 401
        assert "Wrong user name or password." in known.text and "Wrong user name or password." in unknown.text
        assert "set-cookie" not in {k.lower() for k in known.headers if "evedge_session" in known.headers.get(k, "")}
        assert "not the password" not in caplog.text  # no secrets in the log

        good = await submit_login(client, "operator", PASSWORD)
        assert good.status_code == 303 and good.headers["location"] == "/"
        cookie = next(h for h in good.headers.get_list("set-cookie") if h.startswith("evedge_session="))
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" not in cookie  # plain HTTP here
        home = await client.get("/")
        assert home.status_code == 200 and "operator" in home.text

        out = await client.post("/logout", data={"csrf": csrf_of(home.text)})
        assert out.status_code == 303 and out.headers["location"] == "/login"
        assert (await client.get("/")).status_code == 303


async def test_a_login_form_without_its_token_is_refused(console):
    async with httpx.AsyncClient(base_url=console.web_url) as client:
        refused = await client.post("/login", data={"name": "admin", "password": PASSWORD})
        assert refused.status_code == 403 and "evedge_session=" not in refused.headers.get("set-cookie", "")


async def test_failed_logins_are_throttled_per_address(console):
    async with httpx.AsyncClient(base_url=console.web_url) as client:
        for _ in range(5):
            assert (await submit_login(client, "guest", "wrong password")).status_code == 401
        throttled = await submit_login(client, "guest", PASSWORD)  # even the right one waits now
        assert throttled.status_code == 429 and "Too many failed logins" in throttled.text


async def test_a_next_page_elsewhere_is_not_followed(console):
    async with httpx.AsyncClient(base_url=console.web_url) as client:
        form = await client.get("/login?next=//evil.example/x")
        token = re.search(r'name="csrf" value="([^"]+)"', form.text)[1]
        response = await client.post("/login", data={"csrf": token, "name": "guest", "password": PASSWORD,
                                                     "next": "https://evil.example/"})  # fmt: skip
        assert response.headers["location"] == "/"


async def test_the_first_admin_comes_from_a_one_time_link(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    async with running_gateway(load_settings(write_config(tmp_path), environ={})) as gw:
        line = await eventually(lambda: next((r.getMessage() for r in caplog.records if "/setup/" in r.getMessage()), None))
        token = re.search(r"/setup/([A-Za-z0-9_-]+)", line)[1]
        async with httpx.AsyncClient(base_url=gw.web_url) as client:
            assert (await client.get("/setup/not-the-token")).status_code == 404
            form = await client.get(f"/setup/{token}")
            csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)[1]
            differ = await client.post(f"/setup/{token}", data={"csrf": csrf, "name": "root", "password": PASSWORD,
                                                                "again": "another password"})  # fmt: skip
            assert differ.status_code == 422 and "The two passwords differ." in differ.text
            csrf = re.search(r'name="csrf" value="([^"]+)"', differ.text)[1]
            made = await client.post(f"/setup/{token}", data={"csrf": csrf, "name": "root", "password": PASSWORD,
                                                              "again": PASSWORD})  # fmt: skip
            assert made.status_code == 303
            assert "root (admin)" in (await client.get("/")).text
            assert (await client.get(f"/setup/{token}")).status_code == 404  # used up
        assert await gw.app.store.accounts.check_user("root", PASSWORD) == Role.admin


async def test_a_gateway_with_users_prints_no_setup_link(tmp_path, caplog):
    settings = load_settings(write_config(tmp_path), environ={})
    async with Store(settings.gateway.state_dir) as store:
        await store.accounts.add_user("someone", PASSWORD, Role.guest)
    async with running_gateway(settings) as gw:
        async with httpx.AsyncClient(base_url=gw.web_url) as client:
            assert (await submit_login(client, "someone", PASSWORD)).status_code == 303
        assert gw.app.web.app.state.console.sessions.setup_token is None
    assert "/setup/" not in caplog.text


async def test_every_page_in_french_and_english(console):
    sim = console.charger("CP16", "1.6", evses=2)
    async with connected(sim):
        await sim.start_session(1, "BADGE-FR")
        tx = (await eventually(lambda: console.app.store.transactions.query(id_tag="BADGE-FR")))[0]
        async with log_in(console, "guest", headers={"Accept-Language": "fr-FR,fr;q=0.9"}) as french:
            for path, words in [("/", "Soutirage réseau"), ("/chargers/CP16", "Identité"), ("/loadcap", "Répartition"),
                                ("/transactions", "Sessions de charge"), (f"/transactions/{tx.id}", "Raison de fin"),
                                ("/meters", "Compteurs"), ("/events", "Événements")]:  # fmt: skip
                page = await french.get(path)
                assert page.status_code == 200 and '<html lang="fr"' in page.text and words in page.text, path
                assert "Grid import" not in page.text and "Log out" not in page.text
            english = await french.get("/lang/en", params={"next": "/"})
            assert english.status_code == 303 and english.headers["location"] == "/"
            assert "Grid import" in (await french.get("/")).text  # the user's choice beats the browser's


async def test_a_guest_sees_no_action_and_the_door_refuses_a_forged_one(console):
    sim = console.charger("CP16", "1.6", evses=2)
    async with connected(sim), log_in(console, "guest") as guest:
        await sim.start_session(1, "BADGE-G")
        tx = (await eventually(lambda: console.app.store.transactions.query(id_tag="BADGE-G")))[0]
        page = await guest.get("/chargers/CP16")
        assert "Stop the session" not in page.text and "/chargers/CP16/stop" not in page.text
        forged = await guest.post("/chargers/CP16/stop", data={"transaction_id": str(tx.id)},
                                  headers={"X-CSRF-Token": csrf_of(page.text)})  # fmt: skip
        assert forged.status_code == 403 and "Your role may not do this." in forged.text
        mode = await guest.post("/loadcap/mode", data={"mode": "manual"}, headers={"X-CSRF-Token": csrf_of(page.text)})
        assert mode.status_code == 403
    assert sim.evses[1].charging and console.app.loadcap.mode == "automatic"
    audit = await console.app.store.audit.query(None, None, 10)
    assert {(a["actor"], a["command"], a["outcome"]) for a in audit} == {
        ("console:guest", "RemoteStop", "forbidden"), ("console:guest", "SetMode", "forbidden")}


async def test_a_change_without_the_pages_csrf_token_is_refused(console):
    async with log_in(console, "operator") as operator:
        page = await operator.get("/loadcap")
        for headers in ({}, {"X-CSRF-Token": "not-the-token"}):
            refused = await operator.post("/loadcap/mode", data={"mode": "manual"}, headers=headers)
            assert refused.status_code == 403 and "out of date" in refused.text
        assert console.app.loadcap.mode == "automatic"
        done = await operator.post("/loadcap/mode", data={"mode": "manual"}, headers={"X-CSRF-Token": csrf_of(page.text)})
        assert done.status_code == 200 and "SetMode" in done.text and done.headers["HX-Trigger"] == "loadcap-changed"
        assert console.app.loadcap.mode == "manual"
        # The API takes the console's login too, with the same token for what changes something.
        assert (await operator.get("/api/v1/site")).json()["mode"] == "manual"
        assert (await operator.put("/api/v1/site/mode", json={"mode": "automatic"})).status_code == 401
        put = await operator.put("/api/v1/site/mode", json={"mode": "automatic"},
                                 headers={"X-CSRF-Token": csrf_of(page.text)})  # fmt: skip
        assert put.status_code == 200 and console.app.loadcap.mode == "automatic"
    audit = await console.app.store.audit.query(None, "site", 10)
    assert [(a["actor"], a["outcome"]) for a in audit] == [("console:operator", "ok")] * 2


@pytest.mark.parametrize("typed, status, says", [
    ("abc", 422, "Saisissez un nombre de kW, ou rien pour lever la limite."),
    ("-5", 422, "Saisissez un nombre de kW de 0 à 1\u202f000\u202f000."),
    ("2e9", 422, "Saisissez un nombre de kW de 0 à 1\u202f000\u202f000."),
    ("nan", 422, "Saisissez un nombre de kW, ou rien pour lever la limite."),
    ("7,4", 200, "SetManualLimit"),
])  # fmt: skip
async def test_a_manual_limit_is_checked_as_the_api_checks_it(console, typed, status, says):
    async with log_in(console, "operator", headers={"Accept-Language": "fr"}) as operator:
        page = await operator.get("/loadcap")
        response = await operator.post("/loadcap/evse/CP16/1/limit", data={"limit_kw": typed},
                                       headers={"X-CSRF-Token": csrf_of(page.text)})  # fmt: skip
        assert response.status_code == status and says in response.text
    assert console.app.loadcap.manual == ({"CP16/1": 7400.0} if status == 200 else {})


async def test_the_live_stream_sends_what_changed_and_only_that(console):
    async with log_in(console, "guest", headers={"Accept-Language": "fr"}) as guest:
        console.app.image.set("chargers/CP16/evse/1/power_w", 1000.0)
        async with guest.stream("GET", "/live/overview") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            messages = _messages(stream)
            first = await anext(messages)
            assert first["chargers/CP16/evse/1/power_w"] == ["1,0\u00a0kW", "1000.0", "good"]
            console.app.image.set("chargers/CP16/evse/1/power_w", 7400.0)
            console.app.image.set("chargers/CP16/evse/1/power_w", 11000.0)  # coalesced: the latest is sent
            console.app.image.set("meters/elsewhere/power_w", 5.0)  # not on the overview
            assert await anext(messages) == {"chargers/CP16/evse/1/power_w": ["11,0\u00a0kW", "11000.0", "good"]}


async def _messages(stream: httpx.Response):
    event = None
    async for line in stream.aiter_lines():
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: ") and event == "v":
            yield json.loads(line[6:])


async def test_sessions_page_filters_sorts_pages_and_exports(console):
    store = console.app.store.transactions
    start = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
    for n in range(120):
        tx = await store.start("CP16" if n % 2 else "CP201", 1, 1, f"BADGE-{n % 3}", start + timedelta(minutes=n), 1000.0)
        await store.stop(tx.id, start + timedelta(minutes=n, seconds=30), 1000.0 + n * 100, "Local" if n % 4 else "Remote")
    async with log_in(console, "guest", headers={"Accept-Language": "fr"}) as guest:
        first = await guest.get("/transactions", params={"charger": "CP16", "stop_reason": "Local"})
        ids = [int(i) for i in re.findall(r'href="/transactions/(\d+)"', first.text)]
        expected = sorted((n + 1 for n in range(120) if n % 2 and n % 4), reverse=True)  # ids start at 1
        assert ids == expected[:50] and "Plus anciennes" in first.text
        fragment = await guest.get("/transactions", params={"charger": "CP16", "stop_reason": "Local", "offset": 50,
                                                            "sort": "energy_wh", "order": "asc"},
                                   headers={"HX-Request": "true", "HX-Target": "sessions"})  # fmt: skip
        assert "<html" not in fragment.text
        assert [int(i) for i in re.findall(r'href="/transactions/(\d+)"', fragment.text)] == sorted(expected)[50:]
        assert (await guest.get("/transactions", params={"sort": "password"})).status_code == 422

        csv = await guest.get("/transactions/export.csv", params={"charger": "CP16", "stop_reason": "Local"})
        lines = csv.content.decode("utf-8-sig").splitlines()
        assert lines[0].startswith("Session;Borne;Point de charge;") and len(lines) == 1 + len(expected)
        assert lines[1].split(";")[9] == f"{(expected[0] - 1) * 100}".replace(".", ",")  # energy, decimal comma

        xlsx = await guest.get("/transactions/export.xlsx", params={"charger": "CP16", "stop_reason": "Local"})
        assert xlsx.status_code == 200
        sheet = openpyxl.load_workbook(io.BytesIO(xlsx.content), read_only=True).active
        rows = list(sheet.iter_rows(values_only=True))
        assert rows[0][:3] == ("Session", "Borne", "Point de charge") and rows[0][5] == "Début (UTC)"
        assert [r[0] for r in rows[1:]] == expected
        assert isinstance(rows[1][5], datetime) and isinstance(rows[1][9], float | int)


async def test_the_api_exports_xlsx_and_the_cli_too(console, tmp_path):
    store = console.app.store.transactions
    tx = await store.start("CP16", 1, 1, "BADGE-X", datetime(2026, 11, 2, 8, 0, tzinfo=UTC), 5000.0, soc=20.0)
    await store.stop(tx.id, datetime(2026, 11, 2, 9, 0, tzinfo=UTC), 12345.5, "EVDisconnected", soc=80.0)
    async with console.client() as api:
        rows = (await api.get("/api/v1/transactions")).json()
        xlsx = await api.get("/api/v1/transactions", params={"format": "xlsx"})
    assert xlsx.headers["content-type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    sheet = openpyxl.load_workbook(io.BytesIO(xlsx.content)).active
    header, row = [c.value for c in sheet[1]], [c.value for c in sheet[2]]
    assert header[:2] == ["Session", "Charger"] and header[5] == "Start (UTC)"
    assert row == [rows[0]["id"], "CP16", 1, 1, "BADGE-X", datetime(2026, 11, 2, 8, 0), datetime(2026, 11, 2, 9, 0),
                   5000, 12345.5, 7345.5, 20, 80, "EVDisconnected"]
    assert sheet.cell(2, 6).is_date and sheet.cell(2, 10).data_type == "n"

    config = tmp_path / "evedge.toml"
    for args, check in [(["--format", "csv"], lambda out: out.startswith(b"id,charger,evse")),
                        (["--format", "csv", "--lang", "fr", "--charger", "CP16"], lambda out: b";12345,5;" in out),
                        (["--format", "xlsx", "-o", str(tmp_path / "out.xlsx")], lambda out: True)]:  # fmt: skip
        done = subprocess.run([sys.executable, "-m", "gateway.cli", "export", "transactions", "-c", str(config), *args],
                              cwd=ROOT, capture_output=True, timeout=60)  # fmt: skip
        assert done.returncode == 0 and check(done.stdout), done.stderr
    assert [c.value for c in openpyxl.load_workbook(tmp_path / "out.xlsx").active[2]] == row
    assert (tmp_path / "state" / DB_NAME).exists()


async def test_the_console_over_https(tmp_path):
    settings = load_settings(write_config(tmp_path), environ={"EVEDGE_WEB__TLS": "true"})
    async with running_gateway(settings) as gw:
        await gw.app.store.accounts.add_user("admin", PASSWORD, Role.admin)
        url = f"https://127.0.0.1:{gw.app.web.port}"
        site_ca = ssl.create_default_context(cafile=tmp_path / "state" / "pki" / "ca.pem")
        async with httpx.AsyncClient(base_url=url, verify=site_ca) as client:
            response = await submit_login(client, "admin", PASSWORD)
            assert response.status_code == 303
            cookie = next(h for h in response.headers.get_list("set-cookie") if h.startswith("evedge_session="))
            assert "Secure" in cookie and "HttpOnly" in cookie
            assert (await client.get("/api/v1/health")).json()["parts"]["web"]["tls"] is True
        with pytest.raises(httpx.HTTPError):
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.app.web.port}") as plain:
                await plain.get("/login")


async def test_a_chargers_fault_shows_with_its_vendor_error(console):
    from ocpp.v16 import call

    sim = console.charger("CP16", "1.6", evses=2)
    async with connected(sim), log_in(console, "guest") as guest:
        await sim.call(call.StatusNotification(connector_id=2, error_code="GroundFailure", status="Faulted",
                                               info="RCD tripped", vendor_error_code="E-4711"))  # fmt: skip
        page = await guest.get("/chargers/CP16")
        assert re.search(r"<td>Faulted</td><td>GroundFailure</td><td>RCD tripped</td><td>E-4711</td>", page.text)
        events = await guest.get("/events", params={"kind": "status", "charger": "CP16"})
        assert "EVSE 2 connector 1: Faulted (GroundFailure, RCD tripped, E-4711)" in events.text
