"""Schedules against the running gateway: a time-of-use limit becomes the site limit, and connectors outside
all of their activation groups' windows are made unavailable over OCPP (1.6 and 2.0.1)."""

from __future__ import annotations

from datetime import timedelta

from gateway.clock import utcnow
from gateway.settings import load_settings
from tests.conftest import connected, eventually, running_gateway, write_config

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


async def test_a_time_of_use_limit_and_activation_windows_hold(tmp_path):
    later = DAYS[(utcnow() + timedelta(days=2)).weekday()]  # a window that is not open now, nor tonight
    config = write_config(tmp_path, f"""
        [[limit_schedule]]
        cron = "* * * * *"
        limit_w = 42000

        [[activation_groups]]
        id = "always"
        windows = ["mon-sun 00:00-00:00"]
        connectors = ["CP16/1"]

        [[activation_groups]]
        id = "later"
        windows = ["{later} 10:00-11:00"]
        connectors = ["CP16/2", "CP201"]
        """, loadcap=True)  # fmt: skip
    async with running_gateway(load_settings(config, environ={})) as gw:
        cp16, cp201 = gw.charger("CP16", "1.6", evses=2), gw.charger("CP201", "2.0.1")
        async with connected(cp16, cp201), gw.client() as api:
            await eventually(lambda: not cp16.evses[2].available and not cp201.evses[1].available)
            assert cp16.evses[1].available  # in a group whose window is open
            assert "ChangeAvailability" in cp16.heard and "ChangeAvailability" in cp201.heard
            site = await eventually(lambda: _site_with_schedule(api))
            assert site["limit_w"] == 42000 and site["sources"]["site"] == 100000
            audit = (await api.get("/api/v1/audit", params={"target": "CP201"})).json()
            assert any(a["command"] == "SetAvailability" and a["actor"].startswith("schedule") for a in audit)


async def _site_with_schedule(api):
    site = (await api.get("/api/v1/site")).json()
    return site if site["sources"]["schedule"] == 42000 else None
