"""Every message of OCPP 1.6 Core and of the 2.0.1 set of the foundation, in the direction the spec gives it,
over real websockets: the gateway's requests reach a simulated charger through the API and come back with
its answer; the charger's own messages are answered and recorded."""

from __future__ import annotations

import pytest

from tests.conftest import connected, eventually

CORE_16 = [
    ("ChangeAvailability", {"connectorId": 1, "type": "Inoperative"}, {"status": "Accepted"}),
    ("ChangeConfiguration", {"key": "HeartbeatInterval", "value": "120"}, {"status": "Accepted"}),
    ("ClearCache", {}, {"status": "Accepted"}),
    ("DataTransfer", {"vendorId": "acme", "messageId": "x", "data": "y"}, {"status": "UnknownVendorId"}),
    ("GetConfiguration", {"key": ["HeartbeatInterval"]},
     {"configurationKey": [{"key": "HeartbeatInterval", "readonly": False, "value": "60"}]}),
    ("RemoteStartTransaction", {"idTag": "REMOTE", "connectorId": 2}, {"status": "Accepted"}),
    ("RemoteStopTransaction", {"transactionId": 999999}, {"status": "Rejected"}),
    ("UnlockConnector", {"connectorId": 1}, {"status": "Unlocked"}),
    ("TriggerMessage", {"requestedMessage": "Heartbeat"}, {"status": "Accepted"}),
    ("Reset", {"type": "Soft"}, {"status": "Accepted"}),
]
CORE_201 = [
    ("ChangeAvailability", {"operationalStatus": "Inoperative", "evse": {"id": 1}}, {"status": "Accepted"}),
    ("GetVariables", {"getVariableData": [{"component": {"name": "SampledDataCtrlr"},
                                           "variable": {"name": "TxUpdatedInterval"}}]},
     {"getVariableResult": [{"attributeStatus": "Accepted", "attributeValue": "10",
                             "component": {"name": "SampledDataCtrlr"}, "variable": {"name": "TxUpdatedInterval"}}]}),
    ("SetVariables", {"setVariableData": [{"attributeValue": "30", "component": {"name": "SampledDataCtrlr"},
                                           "variable": {"name": "TxUpdatedInterval"}}]},
     {"setVariableResult": [{"attributeStatus": "Accepted", "component": {"name": "SampledDataCtrlr"},
                             "variable": {"name": "TxUpdatedInterval"}}]}),
    ("RequestStartTransaction", {"idToken": {"idToken": "REMOTE", "type": "Central"}, "remoteStartId": 7},
     {"status": "Accepted"}),
    ("RequestStopTransaction", {"transactionId": "not-a-transaction"}, {"status": "Rejected"}),
    ("UnlockConnector", {"evseId": 1, "connectorId": 1}, {"status": "Unlocked"}),
    ("TriggerMessage", {"requestedMessage": "StatusNotification"}, {"status": "Accepted"}),
    ("Reset", {"type": "Immediate"}, {"status": "Accepted"}),
]  # fmt: skip


REQUESTS = [("CP16", "1.6", *case) for case in CORE_16] + [("CP201", "2.0.1", *case) for case in CORE_201]


@pytest.mark.parametrize("charger_id, version, action, payload, answer", REQUESTS,
                         ids=[f"{r[1]}-{r[2]}" for r in REQUESTS])  # fmt: skip
async def test_requests_to_the_charger(gateway, charger_id, version, action, payload, answer):
    sim = gateway.charger(charger_id, version, evses=2 if version == "1.6" else 1)
    async with connected(sim), gateway.client() as api:
        response = await api.post(f"/api/v1/chargers/{charger_id}/ocpp/{action}", json=payload)
        assert response.status_code == 200, response.text
        assert response.json() == answer
        assert sim.heard == [action]


async def test_the_effects_of_16_requests_are_seen_by_the_gateway(gateway):
    sim = gateway.charger("CP16", "1.6", evses=2)
    async with connected(sim), gateway.client() as api:
        await api.post("/api/v1/chargers/CP16/ocpp/RemoteStartTransaction", json={"idTag": "R", "connectorId": 2})
        tx = (await eventually(lambda: gateway.app.store.transactions.query(id_tag="R")))[0]
        assert tx.evse == 2
        await api.post("/api/v1/chargers/CP16/ocpp/ChangeAvailability", json={"connectorId": 1, "type": "Inoperative"})
        await eventually(lambda: gateway.app.image.value("chargers/CP16/evse/1/status") == "Unavailable")
        await api.post("/api/v1/chargers/CP16/ocpp/ChangeConfiguration",
                       json={"key": "MeterValueSampleInterval", "value": "15"})  # fmt: skip
        assert sim.spec.meter_interval_s == 15


async def test_201_station_messages_are_answered_and_recorded(gateway):
    from ocpp.v201 import call

    sim = gateway.charger("CP201", "2.0.1")
    async with connected(sim):
        evse = await sim.plug_in(1)
        await sim.send_meter_values(1)  # no transaction: MeterValues, not a TransactionEvent
        reading = [sv for sv in (await gateway.app.store.transactions.meter_values("CP201"))[0]["sampled_value"]
                   if sv["measurand"] == "Energy.Active.Import.Register"]  # fmt: skip
        assert reading[0]["value"] == pytest.approx(evse.meter_wh, abs=0.1)

        event = {"generated_at": sim.now(), "seq_no": 0, "event_data": [{
            "event_id": 1, "timestamp": sim.now(), "trigger": "Delta", "actual_value": "Faulted",
            "event_notification_type": "HardWiredNotification", "component": {"name": "Connector"},
            "variable": {"name": "AvailabilityState"}}]}  # fmt: skip
        assert await sim.call(call.NotifyEvent(**event)) is not None
        transfer = await sim.call(call.DataTransfer(vendor_id="acme", message_id="hello", data="world"))
        assert transfer.status == "UnknownVendorId"
        assert (await sim.call(call.Authorize(id_token={"id_token": "B1", "type": "ISO14443"}))).id_token_info == {
            "status": "Accepted"
        }
        events = await gateway.app.store.chargers.events("CP201")
        assert [e["action"] for e in events] == ["DataTransfer", "NotifyEvent"]
        assert events[1]["payload"]["eventData"][0]["actualValue"] == "Faulted"


async def test_a_201_transaction_whose_started_event_was_lost_is_still_recorded(gateway):
    """The first event the gateway hears is an Updated: it opens the record, and Ended closes it."""
    from ocpp.v201 import call

    sim = gateway.charger("CP201", "2.0.1")
    async with connected(sim):
        def event(kind: str, seq: int, energy: float, **info) -> call.TransactionEvent:
            sample = {"timestamp": sim.now(), "sampled_value": [{"value": energy, "measurand":
                      "Energy.Active.Import.Register", "unit_of_measure": {"unit": "Wh"}}]}  # fmt: skip
            return call.TransactionEvent(event_type=kind, timestamp=sim.now(), trigger_reason="MeterValuePeriodic",
                                         seq_no=seq, transaction_info={"transaction_id": "LOST-START", **info},
                                         meter_value=[sample], evse={"id": 1, "connector_id": 1} if seq == 1 else None)

        await sim.call(event("Updated", 1, 1000.0, charging_state="Charging"))
        await sim.call(event("Updated", 2, 1500.0))
        await sim.call(event("Ended", 3, 2250.0, stopped_reason="EVDisconnected"))
        tx = await gateway.app.store.transactions.by_ocpp_id("CP201", "LOST-START")
        assert tx.evse == 1 and tx.meter_start_wh == 1000.0 and tx.energy_wh == 1250.0
        assert tx.stop_reason == "EVDisconnected"


def tx_event(sim, kind: str, seq: int, tx_id: str, energy: float, token: str | None = None, **info):
    from ocpp.v201 import call

    sample = {"timestamp": sim.now(), "sampled_value": [{"value": energy, "measurand": "Energy.Active.Import.Register",
                                                         "context": "Transaction.Begin" if kind == "Started" else
                                                         "Transaction.End" if kind == "Ended" else "Sample.Periodic",
                                                         "unit_of_measure": {"unit": "Wh"}}]}  # fmt: skip
    return call.TransactionEvent(event_type=kind, timestamp=sim.now(), trigger_reason="Authorized", seq_no=seq,
                                 transaction_info={"transaction_id": tx_id, **info}, meter_value=[sample],
                                 evse={"id": 1, "connector_id": 1} if kind == "Started" else None,
                                 id_token={"id_token": token, "type": "ISO14443"} if token else None)  # fmt: skip


async def test_a_reused_201_transaction_id_opens_a_new_session(gateway):
    sim = gateway.charger("CP201", "2.0.1")
    async with connected(sim):
        for start, stop in ((1000.0, 2000.0), (5000.0, 9000.0)):  # the station's counter restarted: same id
            await sim.call(tx_event(sim, "Started", 0, "TX-1", start, "DRIVER"))
            await sim.call(tx_event(sim, "Ended", 1, "TX-1", stop, stopped_reason="Local"))
        rows = await gateway.app.store.transactions.query(charger_id="CP201")
        assert sorted(r.energy_wh for r in rows) == [1000.0, 4000.0]
        assert all(not r.open for r in rows)


async def test_a_201_event_sent_twice_changes_nothing(gateway):
    sim = gateway.charger("CP201", "2.0.1")
    async with connected(sim):
        await sim.call(tx_event(sim, "Started", 0, "TX-2", 100.0, "DRIVER"))
        ended = tx_event(sim, "Ended", 1, "TX-2", 600.0, stopped_reason="EVDisconnected")
        await sim.call(ended)
        await sim.call(ended)  # our answer was lost: the station sends it again
        rows = await gateway.app.store.transactions.query(charger_id="CP201")
        assert len(rows) == 1 and rows[0].energy_wh == 500.0 and rows[0].stop_reason == "EVDisconnected"
        assert len(await gateway.app.store.transactions.meter_values("CP201")) == 2


async def test_the_badge_that_stops_a_201_session_does_not_replace_the_one_that_started_it(gateway):
    sim = gateway.charger("CP201", "2.0.1")
    async with connected(sim), gateway.client() as api:
        await sim.call(tx_event(sim, "Started", 0, "TX-3", 0.0, "DRIVER"))
        await sim.call(tx_event(sim, "Ended", 1, "TX-3", 10.0, "SITE-MANAGER", stopped_reason="Local"))
        rows = (await api.get("/api/v1/transactions")).json()
        assert [r["id_tag"] for r in rows] == ["DRIVER"]


async def test_a_badge_learned_after_plug_in_is_recorded(gateway):
    sim = gateway.charger("CP201", "2.0.1")
    async with connected(sim):
        await sim.call(tx_event(sim, "Started", 0, "TX-4", 0.0))  # cable first, no badge yet
        await sim.call(tx_event(sim, "Updated", 1, "TX-4", 5.0, "LATE-BADGE"))
        assert [r.id_tag for r in await gateway.app.store.transactions.query()] == ["LATE-BADGE"]


async def test_a_16_meter_value_sent_twice_is_stored_once(gateway):
    from ocpp.v16 import call

    sim = gateway.charger("CP16", "1.6")
    async with connected(sim):
        evse = await sim.start_session(1)
        message = call.MeterValues(connector_id=1, transaction_id=int(evse.tx_id),
                                   meter_value=[sim.meter_value(evse, "Sample.Periodic")])  # fmt: skip
        await sim.call(message)
        await sim.call(message)
        stored = await gateway.app.store.transactions.meter_values("CP16")
        assert [s["sampled_value"][0]["context"] for s in stored] == ["Transaction.Begin", "Sample.Periodic"]
