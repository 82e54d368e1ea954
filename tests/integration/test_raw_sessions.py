"""Sessions as an outside OCPP client sends them: literal frames shaped like the specification's examples,
over a raw websocket -- no part of this project on the charger's side."""

from __future__ import annotations

import base64
import json
import uuid

import pytest
from websockets.asyncio.client import connect


class RawCharger:
    def __init__(self, ws) -> None:
        self.ws = ws

    async def call(self, action: str, payload: dict) -> dict:
        message_id = str(uuid.uuid4())
        await self.ws.send(json.dumps([2, message_id, action, payload]))
        answer = json.loads(await self.ws.recv())
        assert answer[0] == 3 and answer[1] == message_id, answer
        return answer[2]


def basic(charger_id: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{charger_id}:{password}".encode()).decode()}


async def test_an_outside_16_charger_runs_a_session(gateway):
    async with connect(f"{gateway.ocpp_url}/CP16", subprotocols=["ocpp1.6"],
                       additional_headers=basic("CP16", "password-of-CP16")) as ws:  # fmt: skip
        cp = RawCharger(ws)
        boot = await cp.call("BootNotification", {"chargePointVendor": "VendorX", "chargePointModel": "Wallbox-22"})
        assert boot["status"] == "Accepted" and boot["interval"] == 60 and boot["currentTime"].endswith("Z")
        await cp.call("StatusNotification", {"connectorId": 0, "errorCode": "NoError", "status": "Available"})
        await cp.call("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Preparing",
                                             "timestamp": "2026-11-21T08:00:00Z"})  # fmt: skip
        assert (await cp.call("Authorize", {"idTag": "04E91C5A"}))["idTagInfo"]["status"] == "Accepted"
        start = await cp.call("StartTransaction", {"connectorId": 1, "idTag": "04E91C5A", "meterStart": 2000000,
                                                   "timestamp": "2026-11-21T08:00:05Z"})  # fmt: skip
        tx_id = start["transactionId"]
        assert isinstance(tx_id, int) and start["idTagInfo"]["status"] == "Accepted"
        await cp.call("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Charging"})
        for minute, (wh, soc) in enumerate([(2003680, 35), (2007360, 41)], start=1):
            await cp.call("MeterValues", {"connectorId": 1, "transactionId": tx_id, "meterValue": [{
                "timestamp": f"2026-11-21T08:{minute:02d}:05Z", "sampledValue": [
                    {"value": str(wh), "context": "Sample.Periodic", "measurand": "Energy.Active.Import.Register",
                     "location": "Outlet", "unit": "Wh"},
                    {"value": "22.08", "measurand": "Power.Active.Import", "unit": "kW"},
                    {"value": str(soc), "measurand": "SoC", "location": "EV", "unit": "Percent"}]}]})  # fmt: skip
        # A sample without transactionId, on the same connector, still belongs to the session running there.
        await cp.call("MeterValues", {"connectorId": 1, "meterValue": [{"timestamp": "2026-11-21T08:03:00Z",
                                      "sampledValue": [{"value": "2008.0", "unit": "kWh"}]}]})  # fmt: skip
        stop = await cp.call("StopTransaction", {"transactionId": tx_id, "meterStop": 2011040, "idTag": "04E91C5A",
                                                 "timestamp": "2026-11-21T08:03:05Z", "reason": "EVDisconnected"})  # fmt: skip
        assert stop["idTagInfo"]["status"] == "Accepted"

    async with gateway.client() as api:
        rows = (await api.get("/api/v1/transactions")).json()
        samples = (await api.get("/api/v1/chargers/CP16/meter-values")).json()
    assert len(rows) == 1
    tx = rows[0]
    assert (tx["id"], tx["id_tag"], tx["evse"], tx["stop_reason"]) == (tx_id, "04E91C5A", 1, "EVDisconnected")
    assert (tx["started_at"], tx["stopped_at"]) == ("2026-11-21T08:00:05.000Z", "2026-11-21T08:03:05.000Z")
    assert (tx["meter_start_wh"], tx["meter_stop_wh"], tx["energy_wh"]) == (2000000, 2011040, 11040)
    assert (tx["soc_start"], tx["soc_end"]) == (35, 41)
    assert [s["transaction_id"] for s in samples] == [tx_id, tx_id, tx_id]
    assert samples[0]["sampled_value"][1] == {"value": "22.08", "measurand": "Power.Active.Import", "unit": "kW"}


async def test_an_outside_201_station_runs_a_session(gateway):
    async with connect(f"{gateway.ocpp_url}/CP201", subprotocols=["ocpp2.0.1"],
                       additional_headers=basic("CP201", "password-of-CP201")) as ws:  # fmt: skip
        cs = RawCharger(ws)
        boot = await cs.call("BootNotification", {"reason": "PowerUp", "chargingStation": {
            "model": "DC-50", "vendorName": "VendorY", "serialNumber": "SN-1", "firmwareVersion": "4.2"}})  # fmt: skip
        assert boot["status"] == "Accepted" and boot["interval"] == 60
        await cs.call("StatusNotification", {"timestamp": "2026-11-21T09:00:00Z", "connectorStatus": "Occupied",
                                             "evseId": 1, "connectorId": 1})  # fmt: skip
        token = {"idToken": "DE*ABC*E1234567", "type": "eMAID"}
        assert (await cs.call("Authorize", {"idToken": token}))["idTokenInfo"]["status"] == "Accepted"

        def event(kind: str, seq: int, at: str, wh: float, soc: float | None, **extra) -> dict:
            sampled = [{"value": wh, "measurand": "Energy.Active.Import.Register", "unitOfMeasure": {"unit": "Wh"}}]
            if soc is not None:
                sampled.append({"value": soc, "measurand": "SoC", "location": "EV"})
            return {"eventType": kind, "timestamp": at, "triggerReason": extra.pop("trigger", "MeterValuePeriodic"),
                    "seqNo": seq, "transactionInfo": {"transactionId": "f2a9c1", **extra.pop("info", {})},
                    "meterValue": [{"timestamp": at, "sampledValue": sampled}], **extra}  # fmt: skip

        started = await cs.call("TransactionEvent", event("Started", 0, "2026-11-21T09:00:10Z", 150.0, 20.0,
                                trigger="Authorized", idToken=token, evse={"id": 1, "connectorId": 1},
                                info={"chargingState": "Charging"}))  # fmt: skip
        assert started["idTokenInfo"]["status"] == "Accepted"
        await cs.call("TransactionEvent", event("Updated", 1, "2026-11-21T09:15:10Z", 12650.0, 44.5))
        await cs.call("MeterValues", {"evseId": 1, "meterValue": [{"timestamp": "2026-11-21T09:20:00Z",
                      "sampledValue": [{"value": 16.5, "measurand": "Energy.Active.Import.Register",
                                        "unitOfMeasure": {"unit": "kWh"}}]}]})  # fmt: skip
        await cs.call("TransactionEvent", event("Ended", 2, "2026-11-21T09:30:10Z", 25150.0, 69.0,
                      trigger="EVCommunicationLost", info={"stoppedReason": "EVDisconnected"}))  # fmt: skip
        await cs.call("NotifyEvent", {"generatedAt": "2026-11-21T09:30:11Z", "seqNo": 0, "eventData": [{
            "eventId": 1, "timestamp": "2026-11-21T09:30:11Z", "trigger": "Delta", "actualValue": "Available",
            "eventNotificationType": "HardWiredNotification", "component": {"name": "Connector", "evse": {"id": 1}},
            "variable": {"name": "AvailabilityState"}}]})  # fmt: skip

    async with gateway.client() as api:
        rows = (await api.get("/api/v1/transactions")).json()
        charger = (await api.get("/api/v1/chargers/CP201")).json()
    assert len(rows) == 1
    tx = rows[0]
    assert (tx["id_tag"], tx["evse"], tx["connector"], tx["stop_reason"]) == ("DE*ABC*E1234567", 1, 1, "EVDisconnected")
    assert (tx["meter_start_wh"], tx["meter_stop_wh"], tx["energy_wh"]) == (150.0, 25150.0, 25000.0)
    assert (tx["soc_start"], tx["soc_end"]) == (20.0, 69.0)
    assert charger["boot"] == {"vendor": "VendorY", "model": "DC-50", "serial": "SN-1", "firmware": "4.2",
                               "last_boot": charger["boot"]["last_boot"]}  # fmt: skip


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_meter_values_after_a_reconnect_still_find_their_session(gateway, version):
    charger_id = "CP16" if version == "1.6" else "CP201"
    headers = basic(charger_id, f"password-of-{charger_id}")
    url = f"{gateway.ocpp_url}/{charger_id}"
    async with connect(url, subprotocols=[f"ocpp{version}"], additional_headers=headers) as ws:
        cp = RawCharger(ws)
        if version == "1.6":
            await cp.call("StartTransaction", {"connectorId": 1, "idTag": "T", "meterStart": 100,
                                               "timestamp": "2026-11-21T10:00:00Z"})  # fmt: skip
        else:
            await cp.call("TransactionEvent", {"eventType": "Started", "timestamp": "2026-11-21T10:00:00Z",
                                               "triggerReason": "CablePluggedIn", "seqNo": 0,
                                               "transactionInfo": {"transactionId": "tx-r"},
                                               "evse": {"id": 1, "connectorId": 1}, "meterValue": [
                                                   {"timestamp": "2026-11-21T10:00:00Z",
                                                    "sampledValue": [{"value": 100}]}]})  # fmt: skip
    async with connect(url, subprotocols=[f"ocpp{version}"], additional_headers=headers) as ws:
        value = "600" if version == "1.6" else 600
        key = "connectorId" if version == "1.6" else "evseId"
        await RawCharger(ws).call("MeterValues", {key: 1, "meterValue": [{"timestamp": "2026-11-21T10:05:00Z",
                                                                          "sampledValue": [{"value": value}]}]})  # fmt: skip
    (tx,) = await gateway.app.store.transactions.query()
    assert tx.open and tx.meter_last_wh == 600 and tx.energy_so_far_wh == 500
