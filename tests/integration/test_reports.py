"""What chargers report about themselves, over real websockets: the 2.0.1 device model (GetBaseReport /
GetReport -> NotifyReport in parts), Get/SetVariables, monitoring, display messages, customer information,
SetNetworkProfile, and the security events of both versions. The gateway's requests go through the API;
what the charger reports is read back through the API."""

from __future__ import annotations

import asyncio
import base64
import json
import logging

import pytest
from websockets.asyncio.client import connect

from gateway.store import reports as store_reports
from gateway.sim.reports import ITEMS_PER_MESSAGE, device_model, device_state, send_security_event
from tests.conftest import connected, eventually

CP201 = "/api/v1/chargers/CP201"


async def ask(api, action: str, payload: dict, charger: str = "CP201") -> dict:
    response = await api.post(f"/api/v1/chargers/{charger}/ocpp/{action}", json=payload)
    assert response.status_code == 200, response.text
    return response.json()


async def complete(api, request_id: int, kind: str = "device_model") -> dict:
    """The report once all its parts are in."""

    async def done() -> dict | None:
        found = [r for r in (await api.get(f"{CP201}/reports", params={"kind": kind})).json()
                 if r["request_id"] == request_id]  # fmt: skip
        return found[0] if found and found[0]["complete"] else None

    return await eventually(done)


def variable(model: list[dict], component: str, name: str, evse: int | None = None,
             instance: str | None = None) -> dict:  # fmt: skip
    for entry in model:
        if entry["component"]["name"] == component and (entry["component"].get("evse") or {}).get("id") == evse:
            for var in entry["variables"]:
                if var["variable"]["name"] == name and var["variable"].get("instance") == instance:
                    return var
    raise AssertionError(f"no {component}.{name} in the device model")


def actual(var: dict) -> str | None:
    return next(a["value"] for a in var["attributes"] if a["type"] == "Actual")


async def test_a_full_inventory_arrives_in_parts_and_is_browsable(gateway):
    sim = gateway.charger("CP201", "2.0.1")
    async with connected(sim), gateway.client() as api:
        full = {"requestId": 1, "reportBase": "FullInventory"}
        assert await ask(api, "GetBaseReport", full) == {"status": "Accepted"}
        report = await complete(api, 1)
        size = len(device_model(sim))
        assert report["parts"] == -(-size // int(ITEMS_PER_MESSAGE)) >= 2
        assert (report["asked"], report["status"], report["whole"]) == ("FullInventory", "Accepted", True)
        assert report["items"] == size + 1 and report["dropped"] == 0  # EVSE Power has MaxSet too

        model = (await api.get(f"{CP201}/device-model")).json()
        interval = variable(model, "SampledDataCtrlr", "TxUpdatedInterval")
        assert interval["characteristics"] == {"dataType": "integer", "supportsMonitoring": False, "unit": "s",
                                               "minLimit": 0, "maxLimit": 3600}  # fmt: skip
        assert interval["attributes"][0] | {"updated_at": None} == {
            "type": "Actual", "value": "10", "mutability": "ReadWrite", "persistent": True, "constant": False,
            "updated_at": None}  # fmt: skip
        power = variable(model, "EVSE", "Power", evse=1)
        assert [a["type"] for a in power["attributes"]] == ["Actual", "MaxSet"]
        assert power["characteristics"]["unit"] == "W" and power["characteristics"]["supportsMonitoring"] is True
        assert actual(variable(model, "ChargingStation", "Model")) == sim.spec.model
        assert any(e["component"] == {"name": "Connector", "evse": {"id": 1, "connectorId": 1}} for e in model)

        # Browsable by component and variable, whatever the case the technician types.
        found = (await api.get(f"{CP201}/device-model", params={"component": "devicedatactrlr",
                                                                 "variable": "ITEMSPERMESSAGE"})).json()  # fmt: skip
        assert [e["component"] for e in found] == [{"name": "DeviceDataCtrlr"}]
        assert sorted(v["variable"]["instance"] for v in found[0]["variables"]) == ["GetReport", "GetVariables",
                                                                                     "SetVariables"]  # fmt: skip
        assert sim.heard == ["GetBaseReport"]


async def test_configuration_and_summary_inventories(gateway):
    sim = gateway.charger("CP201", "2.0.1")
    async with connected(sim), gateway.client() as api:
        await ask(api, "GetBaseReport", {"requestId": 1, "reportBase": "ConfigurationInventory"})
        assert (await complete(api, 1))["whole"] is False
        model = (await api.get(f"{CP201}/device-model")).json()
        mutabilities = {a["mutability"] for e in model for v in e["variables"] for a in v["attributes"]}
        assert mutabilities == {"ReadWrite"}
        await ask(api, "GetBaseReport", {"requestId": 2, "reportBase": "SummaryInventory"})
        await complete(api, 2)
        assert variable((await api.get(f"{CP201}/device-model")).json(), "EVSE", "AvailabilityState", evse=1)


async def test_get_report_with_filters_and_the_statuses_of_the_spec(gateway):
    sim = gateway.charger("CP201", "2.0.1")
    async with connected(sim), gateway.client() as api:
        wanted = {"requestId": 2, "componentVariable": [
            {"component": {"name": "EVSE", "evse": {"id": 1}}, "variable": {"name": "Power"}},
            {"component": {"name": "OCPPCommCtrlr"}}]}  # fmt: skip
        assert await ask(api, "GetReport", wanted) == {"status": "Accepted"}
        await complete(api, 2)
        model = (await api.get(f"{CP201}/device-model")).json()
        assert {e["component"]["name"] for e in model} == {"EVSE", "OCPPCommCtrlr"}
        evse = next(e for e in model if e["component"]["name"] == "EVSE")
        assert [v["variable"]["name"] for v in evse["variables"]] == ["Power"]
        assert actual(variable(model, "OCPPCommCtrlr", "HeartbeatInterval")) == "60"  # as the gateway set it at boot

        nothing = {"requestId": 3, "componentVariable": [{"component": {"name": "NoSuchCtrlr"}}]}
        assert await ask(api, "GetReport", nothing) == {"status": "EmptyResultSet"}
        assert (await complete(api, 3))["status"] == "EmptyResultSet"  # complete: nothing will come
        assert await ask(api, "GetReport", {"requestId": 4, "componentCriteria": ["Problem"]}) == {
            "status": "EmptyResultSet"}  # fmt: skip
        assert await ask(api, "GetReport", {"requestId": 5, "componentCriteria": ["Active"]}) == {
            "status": "NotSupported"}  # fmt: skip
        listed = {r["request_id"]: r for r in (await api.get(f"{CP201}/reports")).json()}
        assert listed[5]["status"] == "NotSupported" and listed[5]["complete"] is False
        available = {"requestId": 6, "componentCriteria": ["Available"],
                     "componentVariable": [{"component": {"name": "EVSE"}}]}  # fmt: skip
        assert await ask(api, "GetReport", available) == {"status": "Accepted"}
        await complete(api, 6)


async def test_set_and_get_variables_keep_the_stored_value(gateway):
    sim = gateway.charger("CP201", "2.0.1")
    async with connected(sim), gateway.client() as api:
        await ask(api, "GetBaseReport", {"requestId": 1, "reportBase": "FullInventory"})
        await complete(api, 1)
        answer = await ask(api, "SetVariables", {"setVariableData": [
            {"attributeValue": "30", "component": {"name": "SampledDataCtrlr"},
             "variable": {"name": "TxUpdatedInterval"}},
            {"attributeValue": "Other", "component": {"name": "ChargingStation"}, "variable": {"name": "Model"}},
        ]})  # fmt: skip
        assert [r["attributeStatus"] for r in answer["setVariableResult"]] == ["Accepted", "Rejected"]
        model = (await api.get(f"{CP201}/device-model")).json()
        interval = variable(model, "SampledDataCtrlr", "TxUpdatedInterval")
        assert actual(interval) == "30"
        assert interval["characteristics"]["maxLimit"] == 3600  # what the report said stays
        assert interval["attributes"][0]["mutability"] == "ReadWrite"
        assert actual(variable(model, "ChargingStation", "Model")) == sim.spec.model  # refused: unchanged

        # Changed at the station itself: a GetVariables answer brings the stored value up to date.
        sim.variables[("AuthCtrlr", "AuthorizeRemoteStart")] = "true"
        answer = await ask(api, "GetVariables", {"getVariableData": [
            {"component": {"name": "AuthCtrlr"}, "variable": {"name": "AuthorizeRemoteStart"}}]})  # fmt: skip
        assert answer["getVariableResult"][0]["attributeValue"] == "true"
        model = (await api.get(f"{CP201}/device-model", params={"component": "AuthCtrlr"})).json()
        assert actual(variable(model, "AuthCtrlr", "AuthorizeRemoteStart")) == "true"


async def test_a_new_full_inventory_replaces_what_the_station_no_longer_has(gateway):
    sim = gateway.charger("CP201", "2.0.1")
    async with connected(sim), gateway.client() as api:
        await ask(api, "GetBaseReport", {"requestId": 1, "reportBase": "FullInventory"})
        first = await complete(api, 1)
        assert variable((await api.get(f"{CP201}/device-model")).json(), "SmartChargingCtrlr", "Enabled")
        del sim.variables[("SmartChargingCtrlr", "Enabled")]  # a firmware update took it away
        await ask(api, "GetBaseReport", {"requestId": 1, "reportBase": "FullInventory"})  # the same requestId

        async def second_run() -> dict | None:
            report = (await api.get(f"{CP201}/reports")).json()[0]
            return report if report["complete"] and report["started_at"] > first["started_at"] else None

        assert (await eventually(second_run))["parts"] == first["parts"]  # counted afresh
        gone = (await api.get(f"{CP201}/device-model", params={"component": "SmartChargingCtrlr",
                                                                "variable": "Enabled"})).json()  # fmt: skip
        assert gone == []
        assert variable((await api.get(f"{CP201}/device-model")).json(), "SmartChargingCtrlr", "RateUnit")


async def test_what_one_charger_can_make_us_store_is_bounded(gateway, monkeypatch, caplog):
    caplog.set_level(logging.WARNING)
    monkeypatch.setattr(store_reports, "MAX_ATTRIBUTES", 10)
    monkeypatch.setattr(store_reports, "MAX_SECURITY_EVENTS", 3)
    sim = gateway.charger("CP201", "2.0.1")
    async with connected(sim), gateway.client() as api:
        await ask(api, "GetBaseReport", {"requestId": 1, "reportBase": "FullInventory"})
        report = await complete(api, 1)
        assert report["items"] == 10 and report["dropped"] == len(device_model(sim)) + 1 - 10
        model = (await api.get(f"{CP201}/device-model")).json()
        assert sum(len(v["attributes"]) for e in model for v in e["variables"]) == 10
        assert any("stores no more device model attributes" in r.getMessage() for r in caplog.records)

        for n in range(5):
            await send_security_event(sim, "InvalidMessages", f"message {n}")
        kept = (await api.get(f"{CP201}/security-events")).json()
        assert [e["tech_info"] for e in kept] == ["message 4", "message 3", "message 2"]


async def test_monitors_set_reported_and_cleared(gateway):
    sim = gateway.charger("CP201", "2.0.1")
    async with connected(sim), gateway.client() as api:
        power = {"component": {"name": "EVSE", "evse": {"id": 1}}, "variable": {"name": "Power"}}
        answer = await ask(api, "SetVariableMonitoring", {"setMonitoringData": [
            {"value": 20000, "type": "UpperThreshold", "severity": 4, **power},
            {"value": 1, "type": "Delta", "severity": 4, "component": {"name": "ChargingStation"},
             "variable": {"name": "Model"}},
            {"value": 1, "type": "Delta", "severity": 4, "component": {"name": "Nowhere"}, "variable": {"name": "X"}},
        ]})  # fmt: skip
        results = answer["setMonitoringResult"]
        assert [r["status"] for r in results] == ["Accepted", "UnsupportedMonitorType", "UnknownComponent"]
        monitor_id = results[0]["id"]
        monitors = (await api.get(f"{CP201}/monitors")).json()["monitors"]
        assert [(m["id"], m["component"], m["variable"], m["type"], m["severity"], m["value"], m["transaction"])
                for m in monitors] == [(monitor_id, power["component"], power["variable"], "UpperThreshold", 4,
                                        20000.0, False)]  # fmt: skip

        assert await ask(api, "GetMonitoringReport", {"requestId": 5}) == {"status": "Accepted"}
        report = await complete(api, 5, "monitoring")
        assert report["whole"] is True and report["items"] == 2
        monitors = (await api.get(f"{CP201}/monitors")).json()["monitors"]
        assert [m["id"] for m in monitors] == [1, monitor_id]  # the station's own monitor, reported

        answer = await ask(api, "ClearVariableMonitoring", {"id": [monitor_id, 1, 999]})
        assert [r["status"] for r in answer["clearMonitoringResult"]] == ["Accepted", "Rejected", "NotFound"]
        assert [m["id"] for m in (await api.get(f"{CP201}/monitors")).json()["monitors"]] == [1]
        assert monitor_id not in device_state(sim).monitors


async def test_monitoring_base_and_level(gateway):
    sim = gateway.charger("CP201", "2.0.1")
    async with connected(sim), gateway.client() as api:
        assert await ask(api, "SetMonitoringLevel", {"severity": 5}) == {"status": "Accepted"}
        assert await ask(api, "SetMonitoringLevel", {"severity": 12}) == {"status": "Rejected"}
        await ask(api, "GetMonitoringReport", {"requestId": 1})
        await complete(api, 1, "monitoring")
        assert (await api.get(f"{CP201}/monitors")).json()["level"] == 5

        assert await ask(api, "SetMonitoringBase", {"monitoringBase": "HardWiredOnly"}) == {"status": "Accepted"}
        assert (await api.get(f"{CP201}/monitors")).json() == {"base": "HardWiredOnly", "level": 5, "monitors": []}
        assert await ask(api, "GetMonitoringReport", {"requestId": 2}) == {"status": "EmptyResultSet"}
        assert device_state(sim).monitoring_base == "HardWiredOnly" and device_state(sim).monitoring_level == 5

        assert await ask(api, "SetMonitoringBase", {"monitoringBase": "All"}) == {"status": "Accepted"}
        await ask(api, "GetMonitoringReport", {"requestId": 3, "monitoringCriteria": ["DeltaMonitoring"]})
        await complete(api, 3, "monitoring")
        monitors = (await api.get(f"{CP201}/monitors")).json()
        assert monitors["base"] == "All" and [m["id"] for m in monitors["monitors"]] == [1]


async def test_display_messages_set_got_and_cleared(gateway):
    sim = gateway.charger("CP201", "2.0.1")
    async with connected(sim), gateway.client() as api:
        for n in range(1, 10):
            message = {"id": n, "priority": "NormalCycle", "state": "Idle",
                       "message": {"format": "UTF8", "language": "en", "content": f"Welcome {n}"}}  # fmt: skip
            assert await ask(api, "SetDisplayMessage", {"message": message}) == {"status": "Accepted"}
        html = {"id": 20, "priority": "InFront", "message": {"format": "HTML", "content": "<b>x</b>"}}
        assert await ask(api, "SetDisplayMessage", {"message": html}) == {"status": "NotSupportedMessageFormat"}
        stored = (await api.get(f"{CP201}/display-messages")).json()
        assert [m["id"] for m in stored] == list(range(1, 10)) and stored[0]["request_id"] is None
        assert stored[0]["message"]["message"] == {"format": "UTF8", "language": "en", "content": "Welcome 1"}

        assert await ask(api, "GetDisplayMessages", {"requestId": 3}) == {"status": "Accepted"}
        report = await complete(api, 3, "display_messages")
        assert report["parts"] == 2 and report["items"] == 9
        assert {m["request_id"] for m in (await api.get(f"{CP201}/display-messages")).json()} == {3}

        assert await ask(api, "ClearDisplayMessage", {"id": 1}) == {"status": "Accepted"}
        assert await ask(api, "ClearDisplayMessage", {"id": 42}) == {"status": "Unknown"}
        filtered = {"requestId": 4, "priority": "AlwaysFront"}
        assert await ask(api, "GetDisplayMessages", filtered) == {"status": "Unknown"}  # filtered: nothing replaced
        assert [m["id"] for m in (await api.get(f"{CP201}/display-messages")).json()] == list(range(2, 10))
        assert 1 not in device_state(sim).messages


async def test_customer_information_comes_in_parts_joined_per_request(gateway):
    sim = gateway.charger("CP201", "2.0.1")
    async with connected(sim), gateway.client() as api:
        asked = {"requestId": 7, "report": True, "clear": False, "customerIdentifier": "ALICE"}
        assert await ask(api, "CustomerInformation", asked) == {"status": "Accepted"}
        await complete(api, 7, "customer_information")
        info = (await api.get(f"{CP201}/customer-information")).json()
        assert info[0]["request_id"] == 7 and info[0]["parts"] >= 2 and info[0]["complete"] is True
        assert info[0]["data"] == "Customer ALICE at charging station CP201.\nAuthorization cache: ALICE Accepted.\n"

        both = {"requestId": 8, "report": True, "clear": True, "idToken": {"idToken": "ALICE", "type": "ISO14443"}}
        assert await ask(api, "CustomerInformation", both) == {"status": "Accepted"}
        await complete(api, 8, "customer_information")
        again = {"requestId": 9, "report": True, "clear": False, "customerIdentifier": "ALICE"}
        await ask(api, "CustomerInformation", again)
        await complete(api, 9, "customer_information")
        info = {i["request_id"]: i for i in (await api.get(f"{CP201}/customer-information")).json()}
        assert info[8]["data"].endswith("All data of customer ALICE cleared.\n") and info[8]["status"] == "Accepted"
        assert info[9]["data"] == "No data held about customer ALICE.\n"
        assert await ask(api, "CustomerInformation", {"requestId": 10, "report": True, "clear": False}) == {
            "status": "Invalid"}  # fmt: skip


async def test_set_network_profile(gateway):
    sim = gateway.charger("CP201", "2.0.1")
    profile = {"ocppVersion": "OCPP20", "ocppTransport": "JSON", "ocppCsmsUrl": "wss://csms.example.com/ocpp",
               "messageTimeout": 30, "securityProfile": 2, "ocppInterface": "Wired0"}  # fmt: skip
    async with connected(sim), gateway.client() as api:
        assert await ask(api, "SetNetworkProfile", {"configurationSlot": 2, "connectionData": profile}) == {
            "status": "Accepted"}  # fmt: skip
        refused = await ask(api, "SetNetworkProfile", {"configurationSlot": 7, "connectionData": profile})
        assert refused == {"status": "Rejected", "statusInfo": {"reasonCode": "InvalidConfSlot"}}
        assert device_state(sim).network_profiles[2]["ocpp_csms_url"] == "wss://csms.example.com/ocpp"


async def test_security_events_of_both_versions_are_kept_and_sent_north(gateway, caplog):
    caplog.set_level(logging.INFO)
    cp16, cp201 = gateway.charger("CP16", "1.6", evses=2), gateway.charger("CP201", "2.0.1")
    async with connected(cp16, cp201), gateway.client() as api:
        await send_security_event(cp16, "TamperDetectionActivated", "lid opened")
        await send_security_event(cp201, "InvalidMessages")
        at_16 = (await api.get("/api/v1/chargers/CP16/security-events")).json()
        assert [(e["type"], e["tech_info"], e["critical"]) for e in at_16] == [
            ("TamperDetectionActivated", "lid opened", True)]  # fmt: skip
        at_201 = (await api.get(f"{CP201}/security-events")).json()
        assert [(e["type"], e["tech_info"], e["critical"]) for e in at_201] == [("InvalidMessages", None, False)]
        since = (await api.get(f"{CP201}/security-events", params={"since": "2999-01-01T00:00:00Z"})).json()
        assert since == []

    north = await gateway.app.store.events.query("security_event")
    assert [(e["payload"]["charger"], e["payload"]["type"], e["payload"]["critical"]) for e in north] == [
        ("CP201", "InvalidMessages", False), ("CP16", "TamperDetectionActivated", True)]  # fmt: skip
    levels = {r.levelname for r in caplog.records if "security event charger=CP16" in r.getMessage()}
    assert levels == {"WARNING"}
    assert {r.levelname for r in caplog.records if "security event charger=CP201" in r.getMessage()} == {"INFO"}


@pytest.mark.parametrize("path", ["device-model", "reports", "monitors", "display-messages", "customer-information",
                                  "security-events"])  # fmt: skip
async def test_an_unknown_charger_is_404(gateway, path):
    async with gateway.client() as api:
        assert (await api.get(f"/api/v1/chargers/NOPE/{path}")).status_code == 404
        assert (await api.get(f"{CP201}/{path}")).status_code == 200


# -- bad content from a charger --------------------------------------------------------------------------------

REPORT = {"requestId": 9, "generatedAt": "2026-01-01T00:00:00Z", "seqNo": 0}
GOOD = {"component": {"name": "GoodCtrlr"}, "variable": {"name": "Enabled"}, "variableAttribute": [{"value": "true"}]}


@pytest.mark.parametrize("payload, code", [
    ({**REPORT, "reportData": [{**GOOD, "component": {"name": "EVSE", "evse": {"id": 99}}}]},
     "PropertyConstraintViolation"),
    ({**REPORT, "reportData": [GOOD, {**GOOD, "component": {"name": "Connector",
                                                             "evse": {"id": 1, "connectorId": -1}}}]},
     "PropertyConstraintViolation"),
    ({**REPORT, "seqNo": -1, "reportData": [GOOD]}, "PropertyConstraintViolation"),
    ({**REPORT, "generatedAt": "yesterday", "reportData": [GOOD]}, "PropertyConstraintViolation"),
    ({**REPORT, "reportData": [{"component": {"name": "GoodCtrlr"}, "variable": {"name": "Enabled"}}]},
     "OccurrenceConstraintViolation"),
    ({**REPORT, "reportData": [{**GOOD, "variableAttribute": [{"type": "Sometimes"}]}]}, "FormatViolation"),
    ({**REPORT, "reportData": [{**GOOD, "component": {"name": "x" * 51}}]}, "TypeConstraintViolation"),
])  # fmt: skip
async def test_a_bad_notify_report_gets_its_callerror_and_the_session_goes_on(gateway, payload, code):
    token = base64.b64encode(b"CP201:password-of-CP201").decode()
    async with connect(f"{gateway.ocpp_url}/CP201", subprotocols=["ocpp2.0.1"],
                       additional_headers={"Authorization": f"Basic {token}"}) as ws:  # fmt: skip
        await ws.send(json.dumps([2, "bad", "NotifyReport", payload]))
        answer = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert answer[:3] == [4, "bad", code]
        await ws.send(json.dumps([2, "hb", "Heartbeat", {}]))
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))[:2] == [3, "hb"]
        good = {**REPORT, "requestId": 10, "reportData": [{**GOOD, "component": {"name": "OtherCtrlr"}}]}
        await ws.send(json.dumps([2, "good", "NotifyReport", good]))
        assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == [3, "good", {}]
    async with gateway.client() as api:
        model = (await api.get(f"{CP201}/device-model")).json()  # nothing of the bad message
        assert [e["component"] for e in model] == [{"name": "OtherCtrlr"}]
        assert [r["request_id"] for r in (await api.get(f"{CP201}/reports")).json()] == [10]


async def test_an_evse_the_config_does_not_list_is_kept(gateway):
    token = base64.b64encode(b"CP201:password-of-CP201").decode()
    async with connect(f"{gateway.ocpp_url}/CP201", subprotocols=["ocpp2.0.1"],
                       additional_headers={"Authorization": f"Basic {token}"}) as ws:  # fmt: skip
        report = {**REPORT, "reportData": [{**GOOD, "component": {"name": "EVSE", "evse": {"id": 3}}}]}
        await ws.send(json.dumps([2, "r", "NotifyReport", report]))
        assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == [3, "r", {}]
    async with gateway.client() as api:
        model = (await api.get(f"{CP201}/device-model")).json()
        assert model[0]["component"] == {"name": "EVSE", "evse": {"id": 3}}
        assert model[0]["variables"][0]["attributes"][0]["mutability"] == "ReadWrite"  # the spec's default
