"""The console in a real browser: the gateway in-process with a simulated site (chargers of both versions, a
Modbus grid meter, the load cap on), users of every role, and Debian's Chromium driven by Playwright (never a
browser of Playwright's own). Screenshots go to build/screenshots/ (or $EVEDGE_SCREENSHOTS), desktop and phone.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from drivers.modbus.registers import load_profile
from gateway.auth import Role
from gateway.settings import load_settings
from gateway.sim.charger import SimCharger, SimSpec
from gateway.sim.meter import GridMeterModel, SimMeter, SimModbusServer
from gateway.sim.site import ev_power_by_phase, make_charger
from tests.conftest import GRID_METER, PASSWORDS, ROOT, Gateway, free_port, running_gateway, write_config

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(os.environ.get("EVEDGE_SCREENSHOTS") or ROOT / "build" / "screenshots")
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
USERS = {Role.admin: ("ada", "ada-password"), Role.operator: ("otto", "otto-password"),
         Role.guest: ("gus", "gus-password")}  # fmt: skip
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
SITE = """
grid_meter = "grid"
fallback_limit_w = 20000
"""
LOOP = GRID_METER + """
[loadcap]
tick_s = 0.5
ramp_interval_s = 0.5
profile_validity_s = 30
"""
CHARGERS = [("CP16", "1.6", 2), ("CP201", "2.0.1", 1), ("CPBB", "1.6", 1)]


@dataclass
class ConsoleSite:
    gateway: Gateway
    chargers: dict[str, SimCharger]
    grid: GridMeterModel

    @property
    def url(self) -> str:
        return self.gateway.web_url


@contextlib.asynccontextmanager
async def console_site(directory: Path, extra: str = "", meter_interval_s: float = 1.0) -> AsyncIterator[ConsoleSite]:
    """The gateway (load cap on, 60 kW) steering three simulated chargers, with a grid meter and a user of each
    role; no car until a test brings one."""
    port = free_port()
    config = write_config(directory, LOOP.format(port=port) + extra, loadcap=True, site_limit_w=60000, site=SITE)
    async with running_gateway(load_settings(config, environ={})) as gw:
        for role, (name, password) in USERS.items():
            await gw.app.store.accounts.add_user(name, password, role)
        chargers = {cid: make_charger(SimSpec(cid, version, gw.ocpp_url, PASSWORDS[cid], evses=evses,
                                              meter_interval_s=meter_interval_s),
                                      reconnect_min_s=0.05, reconnect_max_s=0.5)
                    for cid, version, evses in CHARGERS}  # fmt: skip
        grid = GridMeterModel(lambda: ev_power_by_phase(list(chargers.values())), base_w=8000, peak_w=8000,
                              noise_w=0.0)  # fmt: skip
        sdm630 = load_profile("eastron-sdm630")
        meter = SimMeter(1, lambda: sdm630.words(grid.values()), sdm630.spans())
        started = asyncio.Event()
        tasks = [asyncio.create_task(SimModbusServer([meter]).serve_tcp("127.0.0.1", port, started))]
        tasks += [asyncio.create_task(c.run()) for c in chargers.values()]
        tasks += [asyncio.create_task(c.autopilot(visits=False, tick_s=0.2)) for c in chargers.values()]
        try:
            await asyncio.wait_for(started.wait(), 10)
            await asyncio.wait_for(asyncio.gather(*(c.connected.wait() for c in chargers.values())), 15)
            yield ConsoleSite(gw, chargers, grid)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium (tools/debian-packages)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


async def open_context(browser: Browser, site: ConsoleSite, *, phone: bool = False,
                       lang: str = "en") -> BrowserContext:  # fmt: skip
    context = await browser.new_context(base_url=site.url, viewport=PHONE if phone else DESKTOP,
                                        locale={"en": "en-GB", "fr": "fr-FR"}[lang], accept_downloads=True,
                                        is_mobile=phone, has_touch=phone, device_scale_factor=1)  # fmt: skip
    context.set_default_timeout(15000)
    return context


async def log_in(context: BrowserContext, role: Role, start: str = "/") -> Page:
    """A page of that role's user, logged in through the login form, at `start`."""
    name, password = USERS[role]
    page = await context.new_page()
    await page.goto(start)
    await page.fill("input[name=name]", name)
    await page.fill("input[name=password]", password)
    await page.click("form[action='/login'] button[type=submit]")
    await page.wait_for_url(lambda url: "/login" not in url)
    return page


async def shot(page: Page, name: str) -> Path:
    """A full-page screenshot, kept as a test artefact (look at it)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


async def page_scrolls_sideways(page: Page) -> bool:
    """Whether the page itself is wider than the screen (a wide table scrolling in its own box is fine)."""
    return await page.evaluate("document.documentElement.scrollWidth > window.innerWidth + 1")


async def csrf(page: Page) -> str:
    return await page.get_attribute("meta[name=csrf]", "content")  # type: ignore[return-value]


async def post_form(page: Page, path: str, form: dict[str, Any], token: str | None = None) -> Any:
    """A request as the page's browser would send it (its cookies), with or without the CSRF header."""
    headers = {"X-CSRF-Token": token} if token else {}
    return await page.request.post(path, form=form, headers=headers)
