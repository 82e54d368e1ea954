"""Bad input from a charger: the spec's CALLERROR (in the version's spelling) or a clean close, a log line,
and nothing else disturbed -- another charger keeps working and the gateway keeps running."""

from __future__ import annotations

import asyncio
import base64
import json
import logging

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from drivers.ocpp.session import WARNINGS_BURST
from tests.conftest import eventually

PASSWORD = {"CP16": "password-of-CP16", "CP201": "password-of-CP201", "CPBB": "password-of-CPBB"}
DEEP = "[" * 5000 + "]" * 5000

# (frame, expected id, expected error code in 1.6, in 2.0.1)
CASES = [
    ("this is not json", "-1", "FormationViolation", "RpcFrameworkError"),
    ("null", "-1", "FormationViolation", "RpcFrameworkError"),
    ("{}", "-1", "FormationViolation", "RpcFrameworkError"),
    ("[]", "-1", "FormationViolation", "RpcFrameworkError"),
    ("[2]", "-1", "FormationViolation", "RpcFrameworkError"),
    ('[2, "a1"]', "a1", "FormationViolation", "RpcFrameworkError"),
    ('[2, "a2", "Heartbeat"]', "a2", "FormationViolation", "RpcFrameworkError"),
    ('[2, 42, "Heartbeat", {}]', "-1", "FormationViolation", "RpcFrameworkError"),
    ('["2", "a3", "Heartbeat", {}]', "a3", "FormationViolation", "RpcFrameworkError"),
    ('[2, "a4", "Heartbeat", [1, 2]]', "a4", "FormationViolation", "FormatViolation"),
    ('[7, "a5", "Heartbeat", {}]', "a5", "NotSupported", "MessageTypeNotSupported"),
    ('[2, "' + "x" * 37 + '", "Heartbeat", {}]', "-1", "FormationViolation", "RpcFrameworkError"),
    ('[2, "a6", "NoSuchAction", {}]', "a6", "NotImplemented", "NotImplemented"),
    ('[2, "a7", "Heartbeat", {"unexpected": true}]', "a7", "FormationViolation", "FormatViolation"),
    (DEEP, "-1", "FormationViolation", "RpcFrameworkError"),
]
# Payloads that break each version's schema for BootNotification / StatusNotification.
SCHEMA_CASES = {
    "1.6": [
        ('[2, "s1", "BootNotification", {}]', "s1", "ProtocolError"),
        ('[2, "s2", "BootNotification", {"chargePointVendor": 5, "chargePointModel": "M"}]', "s2",
         "TypeConstraintViolation"),
        ('[2, "s3", "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Dancing"}]', "s3",
         "FormationViolation"),
        ('[2, "s4", "StartTransaction", {"connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": "soon"}]',
         "s4", "PropertyConstraintViolation"),
        ('[2, "s5", "ReserveNow", {}]', "s5", "NotSupported"),
    ],
    "2.0.1": [
        ('[2, "s1", "BootNotification", {}]', "s1", "OccurrenceConstraintViolation"),  # 1.6: "incomplete"
        ('[2, "s2", "BootNotification", {"reason": "PowerUp", "chargingStation": {"model": 5, "vendorName": "V"}}]',
         "s2", "TypeConstraintViolation"),
        ('[2, "s3", "StatusNotification", {"timestamp": "2026-01-01T00:00:00Z", "connectorStatus": "Dancing", '
         '"evseId": 1, "connectorId": 1}]', "s3", "FormatViolation"),
        ('[2, "s4", "Heartbeat", {"customData": 7}]', "s4", "TypeConstraintViolation"),
        ('[2, "s5", "RequestStartTransaction", {}]', "s5", "NotSupported"),
    ],
}  # fmt: skip


def headers(charger_id: str) -> dict[str, str]:
    token = base64.b64encode(f"{charger_id}:{PASSWORD[charger_id]}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def heartbeat(ws, message_id: str = "hb") -> None:
    await ws.send(json.dumps([2, message_id, "Heartbeat", {}]))
    answer = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert answer[:2] == [3, message_id] and "currentTime" in answer[2]


@pytest.mark.parametrize("charger_id, version", [("CP16", "1.6"), ("CP201", "2.0.1")])
async def test_malformed_frames_get_callerrors_and_disturb_nobody(gateway, charger_id, version, caplog):
    caplog.set_level(logging.WARNING)
    url = gateway.ocpp_url
    bystander_id = "CPBB"
    async with (
        connect(f"{url}/{charger_id}", subprotocols=[f"ocpp{version}"], additional_headers=headers(charger_id)) as ws,
        connect(f"{url}/{bystander_id}", subprotocols=["ocpp1.6"], additional_headers=headers(bystander_id)) as other,
    ):
        frames = [(f, i, c16 if version == "1.6" else c201) for f, i, c16, c201 in CASES] + SCHEMA_CASES[version]
        frames.append((b"\x00\x01binary", "-1", "FormationViolation" if version == "1.6" else "RpcFrameworkError"))
        assert len(frames) >= 20
        for n, (frame, expected_id, expected_code) in enumerate(frames):
            await ws.send(frame)
            answer = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert answer[0] == 4, (frame[:60], answer)
            assert answer[1] == expected_id, (frame[:60], answer)
            assert answer[2] == expected_code, (frame[:60], answer)
            assert isinstance(answer[3], str) and len(answer[3]) <= 255 and isinstance(answer[4], dict)
            if n % 5 == 0:
                await heartbeat(other, f"bystander-{n}")

        # Answers to nothing are dropped without a reply: the next frame we get is our heartbeat's answer.
        await ws.send('[3, "never-asked", {}]')
        await ws.send('[4, "never-asked", "GenericError", "", {}]')
        await ws.send("[3]")
        await heartbeat(ws, "still-here")
        await heartbeat(other, "bystander-end")

    # Logged, but not without end: a misbehaving charger must not fill the SD card; how many were not is said
    # when it leaves.
    suppressed = await eventually(lambda: [r.getMessage() for r in caplog.records
                                           if "more warnings about this charger were suppressed" in r.getMessage()])  # fmt: skip
    assert len(suppressed) == 1 and f"charger={charger_id} " in suppressed[0]
    about = [r.getMessage() for r in caplog.records if f"charger={charger_id} " in r.getMessage()]
    assert "malformed frame: not JSON" in about[0]
    assert len(about) - 1 <= WARNINGS_BURST < len(frames)


async def test_a_schema_violation_is_logged_with_its_code(gateway, caplog):
    caplog.set_level(logging.WARNING)
    async with connect(f"{gateway.ocpp_url}/CP16", subprotocols=["ocpp1.6"], additional_headers=headers("CP16")) as ws:
        await ws.send('[2, "b", "BootNotification", {"chargePointVendor": 5, "chargePointModel": "M"}]')
        await ws.recv()
    assert any("invalid BootNotification: TypeConstraintViolation" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("frame", [
    '[2, "e1", "StatusNotification", {"connectorId": 33, "errorCode": "NoError", "status": "Available"}]',
    '[2, "e2", "StartTransaction", {"connectorId": 0, "idTag": "T", "meterStart": 0, "timestamp": "2026-01-01T00:00:00Z"}]',
    '[2, "e3", "MeterValues", {"connectorId": 99999, "meterValue": [{"timestamp": "2026-01-01T00:00:00Z", '
    '"sampledValue": [{"value": "1"}]}]}]',
])  # fmt: skip
async def test_evse_ids_no_charger_has_are_refused(gateway, frame):
    async with connect(f"{gateway.ocpp_url}/CP16", subprotocols=["ocpp1.6"], additional_headers=headers("CP16")) as ws:
        await ws.send(frame)
        answer = json.loads(await ws.recv())
    assert answer[0] == 4 and answer[2] == "PropertyConstraintViolation"
    assert max(gateway.app.site.chargers["CP16"].evses) <= 2
    assert not any("/evse/33/" in name or "/evse/99999/" in name for name, _ in gateway.app.image.items())


async def test_a_frame_over_the_limit_closes_only_that_connection(gateway, caplog):
    caplog.set_level(logging.WARNING)
    url = gateway.ocpp_url
    async with (
        connect(f"{url}/CP16", subprotocols=["ocpp1.6"], additional_headers=headers("CP16"), max_size=None) as ws,
        connect(f"{url}/CPBB", subprotocols=["ocpp1.6"], additional_headers=headers("CPBB")) as other,
    ):
        huge = json.dumps([2, "big", "DataTransfer", {"vendorId": "x", "data": "y" * 70000}])
        await ws.send(huge)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == 1009
        await heartbeat(other)
    await eventually(lambda: any("frame over 65536 bytes" in r.getMessage() for r in caplog.records))
    async with gateway.client() as api:
        assert (await api.get("/api/v1/health")).json()["status"] == "ok"


async def test_a_text_frame_that_is_not_utf8_closes_that_connection_with_a_reason(gateway, caplog):
    caplog.set_level(logging.WARNING)
    async with connect(f"{gateway.ocpp_url}/CP16", subprotocols=["ocpp1.6"], additional_headers=headers("CP16")) as ws:
        await ws.send(b'[2, "u", "Heartbeat", {"x": "\xff"}]', text=True)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == 1007
    await eventually(lambda: any("not UTF-8, connection closed charger=CP16" in r.getMessage() for r in caplog.records))


async def test_a_frame_just_under_the_limit_is_fine(gateway):
    async with connect(f"{gateway.ocpp_url}/CP16", subprotocols=["ocpp1.6"], additional_headers=headers("CP16")) as ws:
        frame = json.dumps([2, "dt", "DataTransfer", {"vendorId": "acme", "data": "z" * 60000}])
        await ws.send(frame)
        answer = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert answer == [3, "dt", {"status": "UnknownVendorId"}]
    events = await gateway.app.store.chargers.events("CP16")
    assert events[0]["action"] == "DataTransfer" and len(events[0]["payload"]["data"]) == 60000


async def test_a_flooding_charger_is_slowed_and_others_are_not(tmp_path, caplog):
    from gateway.settings import load_settings
    from tests.conftest import running_gateway, write_config

    caplog.set_level(logging.WARNING)
    environ = {"EVEDGE_OCPP__RATE_LIMIT_PER_S": "0.001", "EVEDGE_OCPP__RATE_LIMIT_BURST": "5"}
    async with running_gateway(load_settings(write_config(tmp_path), environ=environ)) as gw:
        async with (
            connect(f"{gw.ocpp_url}/CP16", subprotocols=["ocpp1.6"], additional_headers=headers("CP16"),
                    close_timeout=0.5) as flood,
            connect(f"{gw.ocpp_url}/CPBB", subprotocols=["ocpp1.6"], additional_headers=headers("CPBB")) as other,
        ):
            for n in range(10):
                await flood.send(json.dumps([2, f"f{n}", "Heartbeat", {}]))
            answered = [json.loads(await asyncio.wait_for(flood.recv(), 5))[1] for _ in range(5)]
            assert answered == [f"f{n}" for n in range(5)]
            await heartbeat(other, "unaffected")
            with pytest.raises(TimeoutError):  # the sixth waits for its token (1000 s at this rate)
                await asyncio.wait_for(flood.recv(), 0.5)
    assert any("slowed down" in r.getMessage() for r in caplog.records)


async def test_a_charger_repeating_a_failing_message_does_not_flood_the_log(gateway, caplog):
    caplog.set_level(logging.WARNING)
    async with connect(f"{gateway.ocpp_url}/CP16", subprotocols=["ocpp1.6"], additional_headers=headers("CP16")) as ws:
        for n in range(50):
            await ws.send(json.dumps([2, f"s{n}", "StatusNotification", {"connectorId": 1, "errorCode": "NoError",
                                                                         "status": "Available", "timestamp": "soon"}]))
            assert json.loads(await ws.recv())[2] == "PropertyConstraintViolation"
    lines = [r for r in caplog.records if "charger=CP16" in r.getMessage()]
    assert 1 <= len(lines) <= WARNINGS_BURST
    assert lines[0].exc_info is not None  # the first one keeps its stack trace, for whoever debugs it
