"""The console in headless Chromium against the real gateway and a simulated site: each role logs in, live
updates, actions that reach the simulated chargers, exports read back, curves, French, phones, CSRF and
throttling. Every page is saved as a screenshot, desktop and phone, English and French (build/screenshots/)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import openpyxl
import pytest
from playwright.async_api import Page, expect

from gateway.auth import Role
from gateway.sim.ev import Ev
from tests.conftest import eventually
from tests.e2e.helpers import (
    USERS,
    chromium,
    console_site,
    csrf,
    log_in,
    open_context,
    page_scrolls_sideways,
    post_form,
    shot,
)

PAGES = [("/", "overview"), ("/chargers/CP16", "charger"), ("/loadcap", "loadcap"), ("/transactions", "transactions"),
         ("/transactions/1", "session"), ("/meters", "meters"), ("/events", "events")]  # fmt: skip


@pytest.fixture
async def site(tmp_path):
    async with console_site(tmp_path) as running:
        yield running


@pytest.fixture
async def browser():
    async with chromium() as running:
        yield running


def ev(badge: str) -> Ev:
    return Ev(capacity_wh=60000, soc=30.0, max_w=11000, phases=3, id_tag=badge)


async def with_a_session(site, charger_id: str = "CP16", evse: int = 1, badge: str = "BADGE-1") -> int:
    sim = site.chargers[charger_id]
    await sim.plug_in(evse, ev(badge))
    await sim.start_session(evse)
    found = await eventually(lambda: site.gateway.app.store.transactions.query(id_tag=badge))
    return found[0].id


async def test_each_role_logs_in_and_only_operators_see_actions(site, browser):
    await with_a_session(site)
    for role in (Role.admin, Role.operator, Role.guest):
        context = await open_context(browser, site)
        if role is Role.guest:
            login = await context.new_page()
            await login.goto("/chargers/CP16")
            assert "/login?next=/chargers/CP16" in login.url
            await shot(login, "login-en-desktop")
            await login.close()
        page = await log_in(context, role, "/chargers/CP16")
        name, _ = USERS[role]
        await expect(page.locator("footer.bottom")).to_contain_text(f"{name} ({role.name})")
        stop = page.get_by_role("button", name="Stop the session")
        await expect(stop).to_have_count(0 if role is Role.guest else 1)
        await context.close()


async def test_the_overview_follows_a_session_as_it_starts(site, browser):
    context = await open_context(browser, site)
    page = await log_in(context, Role.guest)
    await expect(page.locator("#live")).to_have_attribute("data-state", "on")
    await page.evaluate("window.notReloaded = true")
    tile = page.locator('.tile[data-id="CP201"]')
    await expect(tile.locator(".session")).to_be_hidden()

    await with_a_session(site, "CP201", 1, "BADGE-LIVE")
    await expect(tile.locator('[data-p="chargers/CP201/evse/1/id_tag"]')).to_have_text("BADGE-LIVE", timeout=5000)
    await expect(tile.locator(".status").first).to_have_attribute("data-v", "Charging")
    await expect(tile.locator(".session")).to_be_visible()
    await expect(tile.locator(".power")).not_to_have_text("–")
    assert await page.evaluate("window.notReloaded") is True  # live, not reloaded

    await page.fill('[data-filter="search"]', "cpbb")
    await expect(page.locator(".tile:visible")).to_have_count(1)
    await page.fill('[data-filter="search"]', "")
    await page.select_option('[data-filter="status"]', "Charging")
    await expect(page.locator(".tile:visible")).to_have_count(1)
    await page.select_option('[data-filter="status"]', "")
    await shot(page, "overview-en-desktop")
    await context.close()


async def test_remote_stop_on_the_charger_page_ends_the_session(site, browser):
    await with_a_session(site, "CP16", 1, "BADGE-STOP")
    context = await open_context(browser, site)
    page = await log_in(context, Role.operator, "/chargers/CP16")
    await expect(page.locator("#live")).to_have_attribute("data-state", "on")
    await page.get_by_role("button", name="Stop the session").click()
    await expect(page.locator("#answer-1")).to_contain_text("RemoteStop: Accepted")
    await eventually(lambda: not site.chargers["CP16"].evses[1].charging)
    await expect(page.locator(".session-box").first).to_contain_text("No session.")
    tx = (await site.gateway.app.store.transactions.query(id_tag="BADGE-STOP"))[0]
    assert tx.stop_reason == "Remote" and tx.stopped_at is not None
    audit = await site.gateway.app.store.audit.query(None, "CP16", 5)
    assert ("console:otto", "RemoteStop", "ok") in {(a["actor"], a["command"], a["outcome"]) for a in audit}
    await shot(page, "charger-en-desktop")
    await context.close()


async def test_the_load_cap_page_shows_the_allocation_and_a_manual_limit_reaches_the_charger(site, browser):
    await with_a_session(site, "CP16", 1, "BADGE-CAP")
    context = await open_context(browser, site)
    page = await log_in(context, Role.operator, "/loadcap")
    row = page.locator("tr.evse-row", has_text="CP16").first
    await expect(row).to_be_visible()
    await expect(row.locator('[data-p="chargers/CP16/evse/1/limit_reason"]')).not_to_have_text("–")
    await expect(page.locator("#site-curve .u-over")).to_be_visible()  # uPlot drew the last hour

    await page.select_option("select[name=mode]", "manual")
    await page.get_by_role("button", name="Set the mode").click()
    await expect(page.locator("#answer-site")).to_contain_text("SetMode")
    await expect(page.locator('[data-p="site/mode"]').first).to_have_text("manual")
    await row.locator("input[name=limit_kw]").fill("7.4")
    await row.get_by_role("button", name="Set").click()
    await expect(page.locator("#answer-allocation")).to_contain_text("SetManualLimit")
    await eventually(lambda: site.chargers["CP16"].evses[1].limit_w == pytest.approx(7400, abs=50), timeout=15)
    await expect(page.locator("tr.evse-row", has_text="CP16").first.locator("input[name=limit_kw]")).to_have_value("7.4")

    await row.locator("input[name=limit_kw]").fill("-3")
    await row.get_by_role("button", name="Set").click()
    await expect(page.locator("#answer-allocation")).to_contain_text("Enter a number of kW from 0 to 1,000,000.")
    await shot(page, "loadcap-en-desktop")
    await context.close()


async def test_sessions_filter_and_both_exports(site, browser):
    store = site.gateway.app.store.transactions
    start = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
    for n in range(12):
        tx = await store.start("CP16" if n % 3 else "CPBB", 1, 1, f"BADGE-{n}", start + timedelta(hours=n), 1000.0,
                               soc=10.0 + n)  # fmt: skip
        await store.stop(tx.id, start + timedelta(hours=n, minutes=40), 1000.0 + 1500.5 * n, "Local", soc=60.0 + n)
    context = await open_context(browser, site)
    page = await log_in(context, Role.guest, "/transactions")
    await expect(page.locator("#sessions tbody tr")).to_have_count(12)
    await page.select_option("select[name=charger]", "CPBB")
    await expect(page.locator("#sessions tbody tr")).to_have_count(4)
    assert "charger=CPBB" in page.url  # the filters are in the address, for a bookmark or a reload
    await shot(page, "transactions-en-desktop")

    async with page.expect_download() as download:
        await page.get_by_role("button", name="Export CSV").click()
    text = (await (await download.value).path()).read_text("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][:2] == ["Session", "Charger"] and [r[1] for r in rows[1:]] == ["CPBB"] * 4

    async with page.expect_download() as download:
        await page.get_by_role("button", name="Export Excel").click()
    book = openpyxl.load_workbook(io.BytesIO((await (await download.value).path()).read_bytes()))
    cells = list(book.active.iter_rows(values_only=True))
    assert [r[0] for r in cells[1:]] == [int(r[0]) for r in rows[1:]]  # the same sessions, in the same order
    assert all(isinstance(r[5], datetime) and isinstance(r[9], float | int) and r[1] == "CPBB" for r in cells[1:])
    assert cells[1][9] == pytest.approx(1500.5 * 9) and cells[1][10] == 19 and cells[1][11] == 69
    await context.close()


async def test_a_sessions_page_draws_its_curves(site, browser):
    tx_id = await with_a_session(site, "CP16", 1, "BADGE-CURVE")
    await eventually(lambda: _samples(site, tx_id, 4), timeout=20)
    await site.chargers["CP16"].stop_session(1)
    context = await open_context(browser, site)
    page = await log_in(context, Role.guest, f"/transactions/{tx_id}")
    for curve in ("power", "current", "soc", "energy"):
        await expect(page.locator(f"#curve-{curve} .u-over")).to_be_visible()
        assert int(await page.get_attribute(f"#curve-{curve}", "data-points")) >= 4
    await shot(page, "session-en-desktop")
    await context.close()


async def _samples(site, tx_id: int, count: int) -> bool:
    return len(await site.gateway.app.store.transactions.samples(tx_id)) >= count


async def test_french_throughout(site, browser):
    await with_a_session(site, "CP16", 1, "BADGE-1")
    for phone in (False, True):
        context = await open_context(browser, site, lang="fr", phone=phone)
        page = await log_in(context, Role.operator)
        for path, name in PAGES:
            await page.goto(path)
            assert await page.get_attribute("html", "lang") == "fr"
            text = await page.locator("body").inner_text()
            for english in ("Grid import", "Load cap", "Log out", "Charging sessions", "Meters", "Events", "Status",
                            "Power", "Every ", "Session started", "automatic", "Online"):  # fmt: skip
                assert english not in text, f"{english!r} on {path}"
            await page.wait_for_timeout(300)  # the live stream's first message
            await shot(page, f"{name}-fr-{'phone' if phone else 'desktop'}")
        await page.goto("/")
        await expect(page.locator('[data-p="site/grid_power_w"], [data-p="meters/grid/power_w"]').first).to_contain_text(",")
        await context.close()


async def test_a_phone_never_scrolls_the_page_sideways(site, browser):
    await with_a_session(site, "CP16", 1, "BADGE-1")
    context = await open_context(browser, site, phone=True)
    page = await log_in(context, Role.operator)
    for path, name in PAGES:
        await page.goto(path)
        await page.wait_for_timeout(300)
        assert not await page_scrolls_sideways(page), path
        await shot(page, f"{name}-en-phone")
    await page.goto("/")
    nav = page.locator("nav.pages")
    await expect(nav).to_be_hidden()
    burger = page.locator("label.burger")
    assert (await burger.bounding_box())["height"] >= 40
    await burger.click()
    await expect(nav).to_be_visible()
    for link in await nav.locator("a").all():
        assert (await link.bounding_box())["height"] >= 40
    for button in await page.locator("main button:visible, main select:visible, footer button").all():
        assert (await button.bounding_box())["height"] >= 40
    await context.close()


async def test_meters_and_events_pages_live(site, browser):
    context = await open_context(browser, site)
    page = await log_in(context, Role.guest, "/events")
    await expect(page.locator("#live")).to_have_attribute("data-state", "on")
    await site.chargers["CPBB"].set_status(site.chargers["CPBB"].evses[1], "Unavailable")
    await expect(page.locator("tbody tr").first).to_contain_text("EVSE 1 connector 1: Unavailable")
    await shot(page, "events-en-desktop")
    await page.goto("/meters")
    await expect(page.locator("#curve-grid .u-over")).to_be_visible()
    await expect(page.locator('.conn[data-p="meters/grid/online"]')).to_have_text("Online")
    await shot(page, "meters-en-desktop")
    await context.close()


async def test_csrf_and_roles_are_checked_on_the_server(site, browser):
    context = await open_context(browser, site)
    guest = await log_in(context, Role.guest, "/loadcap")
    refused = await post_form(guest, "/loadcap/mode", {"mode": "manual"})  # no token
    assert refused.status == 403 and "out of date" in await refused.text()
    forged = await post_form(guest, "/loadcap/mode", {"mode": "manual"}, await csrf(guest))  # a guest's own token
    assert forged.status == 403 and "Your role may not do this." in await forged.text()
    await context.close()

    context = await open_context(browser, site)
    operator = await log_in(context, Role.operator, "/loadcap")
    assert (await post_form(operator, "/loadcap/mode", {"mode": "manual"}, "a-token-from-elsewhere")).status == 403
    assert site.gateway.app.loadcap.mode == "automatic"
    assert (await post_form(operator, "/loadcap/mode", {"mode": "manual"}, await csrf(operator))).status == 200
    assert site.gateway.app.loadcap.mode == "manual"
    await context.close()


async def test_failed_logins_are_throttled(site, browser):
    context = await open_context(browser, site)
    page = await context.new_page()
    await page.goto("/login")
    for _ in range(5):
        await _try_login(page, "otto", "not-the-password")
        await expect(page.locator(".error")).to_have_text("Wrong user name or password.")
    await _try_login(page, "otto", USERS[Role.operator][1])
    await expect(page.locator(".error")).to_contain_text("Too many failed logins")
    assert "/login" in page.url
    await context.close()


async def _try_login(page: Page, name: str, password: str) -> None:
    await page.fill("input[name=name]", name)
    await page.fill("input[name=password]", password)
    await page.click("form[action='/login'] button[type=submit]")
    await page.wait_for_load_state()
