"""Durable first: the gateway killed with SIGKILL loses nothing it acknowledged, and sessions survive it."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from gateway.auth import Role
from gateway.settings import load_settings
from gateway.sim.charger import SimSpec
from gateway.sim.ev import Ev
from gateway.sim.site import make_charger
from gateway.store import Store
from tests.conftest import PASSWORDS, connected, eventually, free_port, wait_http, write_config


async def admin_token(config: Path) -> str:
    async with Store(load_settings(config, environ={}).gateway.state_dir) as store:
        return await store.accounts.create_token(Role.admin, "test")


@pytest.fixture
async def killable(tmp_path, gateway_process):
    ocpp_port, web_port = free_port(), free_port()
    config = write_config(tmp_path, ocpp_port=ocpp_port, web_port=web_port)
    process = gateway_process(config)
    token = await admin_token(config)
    web = f"http://127.0.0.1:{web_port}"

    async def start() -> None:
        process.start()
        await wait_http(f"{web}/api/v1/health")

    process.start_and_wait = start
    process.api = lambda: httpx.AsyncClient(base_url=web, headers={"Authorization": f"Bearer {token}"})
    process.ocpp_url = f"ws://127.0.0.1:{ocpp_port}/ocpp"
    await start()
    yield process
    assert process.stop() in (0, -9)


@pytest.mark.parametrize("charger_id, version", [("CP16", "1.6"), ("CP201", "2.0.1")])
async def test_a_session_survives_sigkill_of_the_gateway(killable, charger_id, version):
    sim = make_charger(SimSpec(charger_id, version, killable.ocpp_url, PASSWORDS[charger_id]),
                       reconnect_min_s=0.05, reconnect_max_s=0.3)  # fmt: skip
    async with connected(sim):
        evse = await sim.plug_in(1, Ev(capacity_wh=80000, soc=10.0, max_w=11000, id_tag="NIGHT-SHIFT"))
        await sim.start_session(1)
        start_wh = evse.meter_wh
        for _ in range(3):
            sim.advance(600)
            await sim.send_meter_values(1)
        async with killable.api() as api:
            before = (await api.get(f"/api/v1/chargers/{charger_id}/meter-values")).json()
            first_id = (await api.get("/api/v1/transactions")).json()[0]["id"]

        killable.kill()
        await eventually(lambda: not sim.connected.is_set())
        sim.advance(600)
        await sim.send_meter_values(1)  # the link is down: kept by the charger
        sim.advance(600)
        await sim.stop_session(1, "Local")
        stop_wh = evse.meter_wh
        assert sim.backlog >= 2

        await killable.start_and_wait()
        await eventually(lambda: sim.connected.is_set() and sim.backlog == 0, timeout=20)

        async with killable.api() as api:
            rows = (await api.get("/api/v1/transactions")).json()
            assert len(rows) == 1
            tx = rows[0]
            assert tx["id"] == first_id and tx["stopped_at"] is not None and tx["stop_reason"] == "Local"
            assert tx["energy_wh"] == pytest.approx(stop_wh - start_wh, abs=1.0)
            assert tx["energy_wh"] == pytest.approx(5 * 600 * 11000 / 3600, abs=1.0)
            after = (await api.get(f"/api/v1/chargers/{charger_id}/meter-values")).json()
            # Nothing recorded before the kill is missing; the queued ones arrived after it.
            assert after[: len(before)] == before
            assert len(after) == len(before) + 2

            # After the restart, a new session gets a new id: ids are never handed out twice.
            await sim.unplug(1)
            await sim.start_session(1, "NEXT")
            newest = (await api.get("/api/v1/transactions")).json()[0]
            assert newest["id_tag"] == "NEXT" and newest["id"] > first_id


async def test_every_acknowledged_meter_value_survives_sigkill(killable):
    """A charger streams MeterValues; whatever got a CALLRESULT before the kill is in the store after it."""
    acknowledged: list[int] = []
    auth = base64.b64encode(f"CP16:{PASSWORDS['CP16']}".encode()).decode()

    async def stream() -> None:
        async with connect(f"{killable.ocpp_url}/CP16", subprotocols=["ocpp1.6"],
                           additional_headers={"Authorization": f"Basic {auth}"}) as ws:  # fmt: skip
            n = 0
            while True:
                n += 1
                sample = {"timestamp": "2026-11-21T10:00:00Z", "sampledValue": [{"value": str(n), "unit": "Wh"}]}
                await ws.send(json.dumps([2, f"m{n}", "MeterValues", {"connectorId": 1, "meterValue": [sample]}]))
                answer = json.loads(await ws.recv())
                assert answer[:2] == [3, f"m{n}"]
                acknowledged.append(n)

    streaming = asyncio.create_task(stream())
    await eventually(lambda: len(acknowledged) >= 200, timeout=30)
    killable.kill()
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(streaming, 10)
    await killable.start_and_wait()
    async with killable.api() as api:
        stored = (await api.get("/api/v1/chargers/CP16/meter-values", params={"limit": 10000})).json()
    assert len(stored) < 10000  # one page held them all
    values = [int(float(s["sampled_value"][0]["value"])) for s in stored]
    assert len(values) == len(set(values))  # each once
    assert set(acknowledged) <= set(values)
    assert len(values) <= len(acknowledged) + 1  # at most the one in flight when the process died
