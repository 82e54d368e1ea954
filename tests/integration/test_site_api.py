"""The load cap over the HTTP API: the site view, external and manual limits, the mode, allocation events."""

from __future__ import annotations

import pytest

from gateway.auth import Role
from gateway.settings import load_settings
from tests.conftest import REFUSED_MINUS_5, connected, eventually, running_gateway, write_config

SITE_LIMIT = "/api/v1/site/limit"
MODE = "/api/v1/site/mode"
JSON = {"content-type": "application/json"}


@pytest.fixture
async def capped(tmp_path):
    """The base site (100 kW, CP16 with two EVSEs, CP201, CPBB) with the load cap on."""
    async with running_gateway(load_settings(write_config(tmp_path, loadcap=True), environ={})) as gw:
        yield gw


async def site(api):
    response = await api.get("/api/v1/site")
    assert response.status_code == 200, response.text
    return response.json()


async def steered(api, evse="CP16/1", **expected):
    """The EVSE's allocation entry, once it has been sent a limit and shows what is expected."""
    for entry in (await site(api))["allocation"]:
        if f"{entry['charger_id']}/{entry['evse']}" == evse and entry["limit_w"] is not None:
            return entry if all(entry[k] == v for k, v in expected.items()) else None
    return None


async def test_a_session_shows_in_the_allocation_with_its_target_and_reason(capped):
    sim = capped.charger("CP16", "1.6", evses=2)
    async with capped.client(await capped.token(Role.guest)) as api:
        before = await site(api)
        assert before["active"] is True and before["mode"] == "automatic" and before["failsafe"] is False
        assert before["limit_w"] == 100000
        assert before["sources"] == {"site": 100000, "schedule": None, "external": {}, "external_expires_at": {}}
        assert before["allocation"] == []
        async with connected(sim):
            await sim.start_session(1, "TAG-A")
            entry = await eventually(lambda: steered(api))
            # One car on a 100 kW site: its charger's rating is all that holds it; it ramps up towards that.
            assert entry["target_w"] == 22000 and "charger rating" in entry["reason"]
            assert 0 < entry["limit_w"] <= entry["target_w"] and entry["manual_limit_w"] is None
            assert "SetChargingProfile" in sim.heard
            await sim.stop_session(1)
            await eventually(lambda: _no_allocation(api))


async def _no_allocation(api):
    return (await site(api))["allocation"] == []


async def test_an_external_limit_holds_while_it_is_the_strictest(capped):
    async with capped.client(await capped.token(Role.operator)) as api:
        put = await api.put(SITE_LIMIT, json={"limit_w": 60000, "source": "bms"})
        assert put.status_code == 200, put.text
        assert put.json() == {"limit_w": 60000, "external": {"api:bms": 60000},
                              "external_expires_at": {"api:bms": None}}  # until lifted
        now = await site(api)
        assert now["limit_w"] == 60000 and now["sources"]["site"] == 100000
        assert now["sources"]["external"] == {"api:bms": 60000}

        await api.put(SITE_LIMIT, json={"limit_w": 150000, "source": "dso"})  # looser: changes nothing
        assert (await site(api))["limit_w"] == 60000
        lifted = await api.put(SITE_LIMIT, json={"limit_w": None, "source": "bms"})
        assert lifted.json()["limit_w"] == 100000  # the configured one holds
        assert lifted.json()["external"] == {"api:dso": 150000}
        await api.put(SITE_LIMIT, json={"limit_w": 40000})  # no source: the operator's own
        assert (await site(api))["sources"]["external"] == {"api:dso": 150000, "api:operator": 40000}
        await api.put(SITE_LIMIT, json={"limit_w": None, "source": "dso"})
        await api.put(SITE_LIMIT, json={"limit_w": None})
        assert (await site(api))["limit_w"] == 100000 and (await site(api))["sources"]["external"] == {}

        audit = (await api.get("/api/v1/audit", params={"target": "site"})).json()
    assert [(a["command"], a["request"], a["outcome"], a["actor"]) for a in reversed(audit)] == [
        ("SetSiteLimit", {"limit_w": w, "source": f"api:{source}", "valid_s": None}, "ok", "api:test-operator")
        for w, source in [(60000, "bms"), (150000, "dso"), (None, "bms"), (40000, "operator"), (None, "dso"),
                          (None, "operator")]
    ]  # fmt: skip


@pytest.mark.parametrize("path, body", [(SITE_LIMIT, {"limit_w": 1000, "source": "bms"}), (MODE, {"mode": "manual"}),
                                        ("/api/v1/chargers/CP16/evses/1/limit", {"limit_w": 1000})])  # fmt: skip
async def test_a_guest_may_not_set_limits_or_the_mode(capped, path, body):
    async with capped.client(await capped.token(Role.guest)) as guest:
        refused = await guest.put(path, json=body)
        assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
        now = await site(guest)
    assert now["limit_w"] == 100000 and now["mode"] == "automatic"
    async with capped.client() as admin:
        audit = (await admin.get("/api/v1/audit")).json()
    assert [(a["actor"], a["outcome"]) for a in audit] == [("api:test-guest", "forbidden")]


@pytest.mark.parametrize(
    "body, field, message",
    [
        ('{"limit_w": "5000"}', "limit_w", "valid number"),
        ('{"limit_w": 5000, "colour": "red"}', "colour", "Extra inputs are not permitted"),
        ('{"source": "bms"}', "limit_w", "Field required"),
        ('{"limit_w": 5000, "source": "b m s"}', "source", "should match pattern"),
    ],
)  # fmt: skip
async def test_a_malformed_site_limit_is_refused_and_says_why(capped, body, field, message):
    async with capped.client() as api:
        refused = await api.put(SITE_LIMIT, content=body, headers=JSON)
        assert refused.status_code == 422, refused.text
        [error] = refused.json()["detail"]
        assert error["loc"] == ["body", field] and message in error["msg"]
        assert (await site(api))["sources"]["external"] == {}
        assert (await api.get("/api/v1/audit")).json() == []  # it never reached the command door


@pytest.mark.parametrize("limit, shown", [(-5, "-5"), (1e12, "1e+12"), ("1e400", "inf"), ("NaN", "nan")])
async def test_a_site_limit_out_of_range_is_refused_by_the_command_as_from_every_door(capped, limit, shown):
    async with capped.client() as api:
        refused = await api.put(SITE_LIMIT, content=f'{{"limit_w": {limit}}}', headers=JSON)  # NaN: Python reads it
        assert refused.status_code == 422, refused.text
        assert refused.json() == {"error": "invalid", "message": REFUSED_MINUS_5.replace("-5", shown)}
        assert (await site(api))["sources"]["external"] == {}
        assert (await api.get("/api/v1/audit")).json() == []  # refused before the door: nothing to audit


async def test_zero_is_a_limit_and_stops_every_car(capped):
    sim = capped.charger("CP16", "1.6", evses=2)
    async with connected(sim), capped.client(await capped.token(Role.operator)) as api:
        await sim.start_session(1, "TAG-A")
        await eventually(lambda: sim.evses[1].power_w > 0)
        assert (await api.put(SITE_LIMIT, json={"limit_w": 0, "source": "dso"})).status_code == 200
        await eventually(lambda: sim.evses[1].power_w == 0)
        assert (await site(api))["limit_w"] == 0


async def test_the_mode_goes_manual_and_back(capped):
    async with capped.client(await capped.token(Role.operator)) as api:
        manual = await api.put(MODE, json={"mode": "manual"})
        assert manual.status_code == 200 and manual.json() == {"mode": "manual"}
        assert (await site(api))["mode"] == "manual"
        for bad in ({"mode": "off"}, {"mode": "MANUAL"}, {"mode": None}, {}):
            refused = await api.put(MODE, json=bad)
            assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["body", "mode"]
        assert (await site(api))["mode"] == "manual"
        assert (await api.put(MODE, json={"mode": "automatic"})).json() == {"mode": "automatic"}
        assert (await site(api))["mode"] == "automatic"
        audit = (await api.get("/api/v1/audit", params={"target": "site"})).json()
    assert [(a["command"], a["request"], a["outcome"]) for a in audit] == [
        ("SetMode", {"mode": "automatic"}, "ok"), ("SetMode", {"mode": "manual"}, "ok")]  # fmt: skip


async def test_a_manual_limit_holds_in_manual_mode_only(capped):
    sim = capped.charger("CP16", "1.6", evses=2)
    async with connected(sim), capped.client(await capped.token(Role.operator)) as api:
        put = await api.put("/api/v1/chargers/CP16/evses/1/limit", json={"limit_w": 7000})
        assert put.status_code == 200, put.text
        assert put.json() == {"evse": "CP16/1", "manual_limit_w": 7000, "mode": "automatic"}
        await sim.start_session(1, "TAG-A")
        entry = await eventually(lambda: steered(api, manual_limit_w=7000))
        assert entry["target_w"] == 22000  # automatic: the allocator decides, the manual limit waits
        await api.put(MODE, json={"mode": "manual"})
        entry = await eventually(lambda: steered(api, target_w=7000))
        assert entry["reason"] == "manual limit"
        lifted = await api.put("/api/v1/chargers/CP16/evses/1/limit", json={"limit_w": None})
        assert lifted.json() == {"evse": "CP16/1", "manual_limit_w": None, "mode": "manual"}
        await eventually(lambda: steered(api, target_w=22000, manual_limit_w=None))
        audit = (await api.get("/api/v1/audit", params={"target": "CP16"})).json()
    assert [(a["command"], a["request"]["limit_w"], a["outcome"]) for a in audit] == [
        ("SetManualLimit", None, "ok"), ("SetManualLimit", 7000, "ok")]  # fmt: skip


async def test_a_manual_limit_for_an_unknown_evse_is_not_found(capped):
    async with capped.client() as api:
        unknown_charger = await api.put("/api/v1/chargers/NOPE/evses/1/limit", json={"limit_w": 7000})
        assert unknown_charger.status_code == 404 and "NOPE" in unknown_charger.json()["detail"]
        for path in ("CP16/evses/3", "CP201/evses/2"):  # CP16 has two EVSEs, CP201 one
            unknown_evse = await api.put(f"/api/v1/chargers/{path}/limit", json={"limit_w": 7000})
            assert unknown_evse.status_code == 404 and unknown_evse.json()["error"] == "unknown_target"
        for evse in (0, 33, "one"):
            out_of_range = await api.put(f"/api/v1/chargers/CP16/evses/{evse}/limit", json={"limit_w": 7000})
            assert out_of_range.status_code == 422
        bad = await api.put("/api/v1/chargers/CP16/evses/1/limit", json={"limit_w": -5})
        assert bad.status_code == 422 and bad.json() == {"error": "invalid", "message": REFUSED_MINUS_5}


async def test_with_the_load_cap_off_its_commands_are_refused(gateway):
    async with gateway.client() as api:
        off = await site(api)
        assert off["active"] is False and off["allocation"] == []
        for path, body in [(SITE_LIMIT, {"limit_w": 50000, "source": "bms"}), (MODE, {"mode": "manual"}),
                           ("/api/v1/chargers/CP16/evses/1/limit", {"limit_w": 7000})]:  # fmt: skip
            refused = await api.put(path, json=body)
            assert refused.status_code == 409, refused.text
            assert refused.json()["error"] == "disabled" and "load cap is off" in refused.json()["message"]
        assert (await site(api))["sources"]["external"] == {}
        audit = (await api.get("/api/v1/audit")).json()
    assert [a["outcome"] for a in audit] == ["disabled"] * 3


async def test_allocation_changes_are_listed_newest_first(capped):
    sim = capped.charger("CP16", "1.6", evses=2)
    async with connected(sim), capped.client(await capped.token(Role.guest)) as api, capped.client() as admin:

        async def events(**params):
            response = await api.get("/api/v1/events", params=params)
            assert response.status_code == 200, response.text
            return response.json()

        await sim.start_session(1, "TAG-A")
        first = (await eventually(lambda: events(kind="allocation")))[-1]
        assert first["payload"]["limits"]["CP16/1"]["target_w"] == 22000
        assert (await admin.put(SITE_LIMIT, json={"limit_w": 5000, "source": "bms"})).status_code == 200
        cut = await eventually(lambda: _newest_below(events, 5000))
        assert "site limit" in cut["payload"]["limits"]["CP16/1"]["reason"]

        listed = await events(kind="allocation")
        assert listed[-1] == first and {e["kind"] for e in listed} == {"allocation"}
        assert [e["id"] for e in listed] == sorted((e["id"] for e in listed), reverse=True)
        assert [e["ts"] for e in listed] == sorted((e["ts"] for e in listed), reverse=True)
        [newest] = await events(kind="allocation", limit=1)
        assert newest["id"] >= cut["id"]
        recent = await events(kind="allocation", since=cut["ts"])
        assert cut in recent and first not in recent and all(e["ts"] >= cut["ts"] for e in recent)
        assert await events(since="2000-01-01T00:00:00") != []  # no zone: UTC
        assert await events(since="2999-01-01T00:00:00Z") == []
        assert await events(kind="failsafe") == [] and await events(kind="no-such-kind") == []
        for limit in (0, 10001, "many"):
            assert (await api.get("/api/v1/events", params={"limit": limit})).status_code == 422


async def _newest_below(events, watts):
    newest = (await events(kind="allocation"))[0]
    return newest if newest["payload"]["limits"]["CP16/1"]["target_w"] <= watts else None
