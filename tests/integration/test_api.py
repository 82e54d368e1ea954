"""The HTTP API and the command door behind it: tokens and roles, requests that reach a charger, errors."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import socket
from datetime import timedelta

import pytest
from websockets.asyncio.client import connect

from gateway.auth import Actor, Role
from gateway.commands import CommandError, RemoteStart, RemoteStop, Reset, SetAvailability, Unlock
from gateway.settings import load_settings
from tests.conftest import connected, eventually, running_gateway, write_config


async def test_health_needs_no_token(gateway):
    async with gateway.client(token="") as anonymous:
        body = (await anonymous.get("/api/v1/health")).json()
    assert body["status"] == "ok"
    assert set(body["parts"]) == {"store", "ocpp", "web", "alarms"}  # the load cap is off in the base config
    assert body["parts"]["ocpp"]["port"] == gateway.app.ocpp.port


async def test_everything_else_needs_a_valid_token(gateway):
    async with gateway.client(token="") as anonymous:
        response = await anonymous.get("/api/v1/chargers")
        assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    async with gateway.client(token="evt_not-a-real-token") as stranger:
        assert (await stranger.get("/api/v1/transactions")).status_code == 401
    expired = await gateway.app.store.accounts.create_token(Role.admin, "old", ttl=timedelta(seconds=-1))
    async with gateway.client(token=expired) as late:
        assert (await late.get("/api/v1/chargers")).status_code == 401


async def test_openapi_document_is_served(gateway):
    async with gateway.client(token="") as anonymous:
        spec = (await anonymous.get("/api/openapi.json")).json()
    assert "/api/v1/chargers/{charger_id}/ocpp/{action}" in spec["paths"]
    assert "/api/v1/transactions" in spec["paths"]


@pytest.mark.parametrize(
    "charger_id, version, action, payload, check",
    [
        ("CP16", "1.6", "GetConfiguration", {"key": ["HeartbeatInterval", "NoSuchKey"]},
         lambda a: a["configurationKey"][0]["key"] == "HeartbeatInterval" and a["unknownKey"] == ["NoSuchKey"]),
        ("CP201", "2.0.1", "GetVariables",
         {"getVariableData": [{"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}]},
         lambda a: a["getVariableResult"][0]["attributeStatus"] == "Accepted"
         and a["getVariableResult"][0]["attributeValue"] == "60"),
    ],
)  # fmt: skip
async def test_an_ocpp_request_returns_the_chargers_own_answer(gateway, charger_id, version, action, payload, check):
    sim = gateway.charger(charger_id, version)
    operator = await gateway.token(Role.operator)
    async with connected(sim), gateway.client(operator) as api:
        response = await api.post(f"/api/v1/chargers/{charger_id}/ocpp/{action}", json=payload)
        assert response.status_code == 200, response.text
        assert check(response.json())
        assert sim.heard[-1] == action
        audit = (await api.get("/api/v1/audit", params={"target": charger_id})).json()
    assert audit[0]["actor"] == "api:test-operator" and audit[0]["role"] == "operator"
    assert audit[0]["command"] == "OcppRequest" and audit[0]["outcome"] == "ok"
    assert audit[0]["request"]["action"] == action and audit[0]["result"] == response.json()


async def test_a_guest_reads_but_cannot_act(gateway):
    sim = gateway.charger("CP16", "1.6")
    guest = await gateway.token(Role.guest)
    async with connected(sim), gateway.client(guest) as api:
        heard_before = list(sim.heard)
        assert (await api.get("/api/v1/chargers")).status_code == 200
        assert (await api.get("/api/v1/transactions")).status_code == 200
        response = await api.post("/api/v1/chargers/CP16/ocpp/GetConfiguration", json={})
        assert response.status_code == 403
        assert response.json()["error"] == "forbidden"
        assert (await api.get("/api/v1/audit")).status_code == 403
        # Give a wrongly delivered request every chance to arrive: a round trip through the same charger.
        async with gateway.client() as admin:
            assert (await admin.post("/api/v1/chargers/CP16/ocpp/ClearCache", content="{}")).status_code == 200
        assert sim.heard == heard_before + ["ClearCache"]
    attempts = await gateway.app.store.audit.query(target="CP16")
    refused = [a for a in attempts if a["outcome"] == "forbidden"]
    assert len(refused) == 1 and refused[0]["actor"] == "api:test-guest"


async def test_errors_say_what_went_wrong(gateway):
    sim = gateway.charger("CP16", "1.6")
    async with connected(sim), gateway.client() as api:
        assert (await api.post("/api/v1/chargers/NOPE/ocpp/Reset", json={"type": "Soft"})).status_code == 404
        offline = await api.post("/api/v1/chargers/CP201/ocpp/Reset", json={"type": "Immediate"})
        assert offline.status_code == 409 and offline.json()["error"] == "offline"
        invalid = await api.post("/api/v1/chargers/CP16/ocpp/Reset", json={"type": "Gently"})
        assert invalid.status_code == 422 and "cause" in invalid.json()["details"]
        wrong_way = await api.post("/api/v1/chargers/CP16/ocpp/BootNotification", json={})
        assert wrong_way.status_code == 422
        not_json = await api.post("/api/v1/chargers/CP16/ocpp/ClearCache", content="{oops")
        assert not_json.status_code == 422
        # A 1.6 charger without the local list profile answers with a CALLERROR, shown as it came.
        sim.config["SupportedFeatureProfiles"] = "Core"
        refused = await api.post("/api/v1/chargers/CP16/ocpp/GetLocalListVersion", json={})
        assert refused.status_code == 502
        assert refused.json()["callError"]["errorCode"] in ("NotImplemented", "NotSupported")
        assert "Reset" not in sim.heard and "BootNotification" not in sim.heard
        assert (await api.get("/api/v1/chargers/NOPE/meter-values")).status_code == 404


async def test_a_charger_that_does_not_answer_times_out_and_others_queue(tmp_path):
    settings = load_settings(write_config(tmp_path, call_timeout_s=0.5), environ={"EVEDGE_OCPP__QUEUE_SIZE": "1"})
    async with running_gateway(settings) as gw:
        async with await mute_charger(gw) as mute:
            async with gw.client() as api:
                first = asyncio.create_task(api.post("/api/v1/chargers/CPBB/ocpp/ClearCache", json={}))
                request = json.loads(await mute.recv())  # the first is on the wire, unanswered
                assert request[2] == "ClearCache"
                second = asyncio.create_task(api.post("/api/v1/chargers/CPBB/ocpp/ClearCache", json={}))
                await eventually(lambda: len(gw.app.ocpp.sessions["CPBB"].lanes) == 1)
                third = await api.post("/api/v1/chargers/CPBB/ocpp/ClearCache", json={})
                assert third.status_code == 429 and third.json()["error"] == "busy"
                assert (await first).status_code == 504
                request = json.loads(await mute.recv())  # then the second one gets its turn
                await mute.send(json.dumps([3, request[1], {"status": "Accepted"}]))
                assert (await second).json() == {"status": "Accepted"}


@pytest.mark.parametrize("charger_id, version", [("CP16", "1.6"), ("CP201", "2.0.1")])
async def test_typed_commands_speak_each_version(gateway, charger_id, version):
    sim = gateway.charger(charger_id, version)
    operator = Actor("ops", Role.operator, "test")
    execute = gateway.app.commands.execute
    async with connected(sim):
        assert (await execute(RemoteStart(charger_id, "REMOTE-1", evse=1), operator))["status"] == "Accepted"
        rows = await eventually(lambda: gateway.app.store.transactions.query(id_tag="REMOTE-1"))
        assert rows[0].open
        assert (await execute(RemoteStop(charger_id, rows[0].id), operator))["status"] == "Accepted"
        await eventually(lambda: gateway.app.store.transactions.get(rows[0].id))
        closed = await eventually(lambda: _closed(gateway, rows[0].id))
        assert closed.stop_reason == "Remote"
        with pytest.raises(CommandError) as stopped:
            await execute(RemoteStop(charger_id, rows[0].id), operator)
        assert stopped.value.code == "invalid"

        assert (await execute(SetAvailability(charger_id, False, evse=1), operator))["status"] == "Accepted"
        await eventually(lambda: gateway.app.image.value(f"chargers/{charger_id}/evse/1/status") == "Unavailable")
        assert (await execute(SetAvailability(charger_id, True, evse=1), operator))["status"] == "Accepted"
        assert (await execute(Unlock(charger_id, 1), operator))["status"] == "Unlocked"

        boots = sim.boots
        assert (await execute(Reset(charger_id, hard=True), operator))["status"] == "Accepted"
        await eventually(lambda: sim.boots == boots + 1 and sim.connected.is_set())
    expected = ["RemoteStartTransaction", "RemoteStopTransaction", "ChangeAvailability", "UnlockConnector", "Reset"]
    if version == "2.0.1":
        expected = ["RequestStartTransaction", "RequestStopTransaction", "ChangeAvailability", "UnlockConnector",
                    "Reset"]  # fmt: skip
    assert [a for a in sim.heard if a in expected] == [expected[0], expected[1], expected[2], expected[2],
                                                       expected[3], expected[4]]  # fmt: skip


async def _closed(gateway, transaction_id):
    tx = await gateway.app.store.transactions.get(transaction_id)
    return tx if tx is not None and not tx.open else None


async def mute_charger(gw, charger_id: str = "CPBB"):
    """A raw 1.6 link that boots (the gateway sends nothing before) and then answers only when a test does."""
    token = base64.b64encode(f"{charger_id}:password-of-{charger_id}".encode()).decode()
    ws = await connect(f"{gw.ocpp_url}/{charger_id}", subprotocols=["ocpp1.6"],
                       additional_headers={"Authorization": f"Basic {token}"})  # fmt: skip
    await eventually(lambda: charger_id in gw.app.ocpp.sessions)
    await ws.send(json.dumps([2, "boot", "BootNotification", {"chargePointVendor": "V", "chargePointModel": "Mute"}]))
    assert json.loads(await ws.recv())[2]["status"] == "Accepted"
    return ws


async def test_a_charger_that_drops_while_asked_fails_the_request_at_once(tmp_path):
    settings = load_settings(write_config(tmp_path, call_timeout_s=60), environ={})
    async with running_gateway(settings) as gw, gw.client() as api:
        ws = await mute_charger(gw)
        asked = asyncio.create_task(api.post("/api/v1/chargers/CPBB/ocpp/ClearCache", json={}))
        assert json.loads(await ws.recv())[2] == "ClearCache"
        await ws.close()
        response = await asyncio.wait_for(asked, 10)  # not the 60 s of the call timeout
        assert response.status_code == 409 and response.json()["error"] == "offline"
        audit = await gw.app.store.audit.query(target="CPBB")
        assert audit[0]["outcome"] == "offline"


@pytest.mark.parametrize("answer", ['{"status": "Accepted", "limit": NaN}', '{"status": "Accepted", "x": 1e400}'])
async def test_numbers_that_are_not_json_do_not_stop_later_requests(tmp_path, answer):
    settings = load_settings(write_config(tmp_path, call_timeout_s=0.5), environ={})
    async with running_gateway(settings) as gw, gw.client() as api:
        ws = await mute_charger(gw)
        asked = asyncio.create_task(api.post("/api/v1/chargers/CPBB/ocpp/GetCompositeSchedule",
                                             json={"connectorId": 1, "duration": 60}))  # fmt: skip
        request = json.loads(await ws.recv())
        await ws.send(f'[3, "{request[1]}", {answer}]')
        assert json.loads(await ws.recv())[:3] == [4, "-1", "FormationViolation"]  # what we sent was not JSON
        assert (await asked).status_code == 504  # and not an answer: the request timed out
        asked = asyncio.create_task(api.post("/api/v1/chargers/CPBB/ocpp/ClearCache", json={}))
        request = json.loads(await ws.recv())
        await ws.send(json.dumps([3, request[1], {"status": "Accepted"}]))
        assert (await asked).json() == {"status": "Accepted"}
        # NaN from an operator never reaches a charger either.
        refused = await api.post("/api/v1/chargers/CPBB/ocpp/DataTransfer", content='{"vendorId": "x", "data": NaN}')
        assert refused.status_code == 422
        await ws.close()


async def test_configuring_takes_an_admin_and_secrets_stay_out_of_the_audit(gateway, caplog):
    caplog.set_level(logging.DEBUG, logger="drivers.ocpp.wire")  # what a technician turns on to see every frame
    sim = gateway.charger("CP16", "1.6")
    operator = await gateway.token(Role.operator)
    change = {"key": "AuthorizationKey", "value": "0011223344556677889900112233445566778899"}
    async with connected(sim):
        async with gateway.client(operator) as api:
            refused = await api.post("/api/v1/chargers/CP16/ocpp/ChangeConfiguration", json=change)
            assert refused.status_code == 403 and "admin" in refused.json()["message"]
        async with gateway.client() as admin:
            answer = await admin.post("/api/v1/chargers/CP16/ocpp/ChangeConfiguration", json=change)
            assert answer.json() == {"status": "NotSupported"}  # the sim has no such key; it did get it
            audit = (await admin.get("/api/v1/audit")).json()
    assert sim.heard == ["ChangeConfiguration"]
    assert [a["request"]["payload"]["value"] for a in audit] == ["***", "***"]
    assert "0011223344556677" not in json.dumps(audit)
    frames = [r.getMessage() for r in caplog.records if r.name == "drivers.ocpp.wire" and "charger=CP16" in r.getMessage()]
    sent = [f for f in frames if "ChangeConfiguration" in f]
    assert sent and all('"value": "***"' in f for f in sent)
    assert not any("0011223344556677" in r.getMessage() for r in caplog.records)


async def test_a_stopped_gateway_leaves_nothing_registered_on_the_event_loop(tmp_path):
    # uvicorn, cancelled in its main loop, once left its listener closed but still registered for reading: a socket
    # or pipe given that fd number afterwards was never heard (a subprocess's output, in a test).
    async with running_gateway(load_settings(write_config(tmp_path), environ={})) as gw:
        async with gw.client() as api:
            assert (await api.get("/api/v1/health")).status_code == 200
    loop = asyncio.get_running_loop()
    pairs = [socket.socketpair() for _ in range(32)]  # the lowest free fd numbers, where the gateway's were
    try:
        for a, b in pairs:
            a.setblocking(False)
        waiting = [asyncio.ensure_future(loop.sock_recv(a, 1)) for a, _ in pairs]
        await asyncio.sleep(0)
        for _, b in pairs:
            b.send(b"x")
        assert await asyncio.wait_for(asyncio.gather(*waiting), 30) == [b"x"] * len(pairs)
    finally:
        for a, b in pairs:
            a.close()
            b.close()
