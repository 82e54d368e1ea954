"""PRODUCT.md §1, message by message: every request the gateway may send reaches a simulated charger through the
API over real websockets and comes back answered within the schema; every message a charger may send is
routed. What each message does is tested where its concern lives (test_messages, test_badges, test_files,
test_reports, test_charging_profiles, test_tls)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from drivers.ocpp.frames import FROM_CHARGER, TO_CHARGER, V16, V201
from drivers.ocpp.v16 import Session16
from drivers.ocpp.v201 import Session201
from gateway.clock import iso, utcnow
from tests.conftest import connected

LATER = iso(utcnow() + timedelta(days=1))
CERT_HASH = {"hashAlgorithm": "SHA256", "issuerNameHash": "a" * 64, "issuerKeyHash": "b" * 64, "serialNumber": "1"}
VAR = {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}
PROFILE_201 = {"id": 5, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile", "chargingProfileKind": "Absolute",
               "chargingSchedule": [{"id": 1, "chargingRateUnit": "W", "startSchedule": iso(utcnow()),
                                     "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 11000}]}]}  # fmt: skip
PROFILE_16 = {"chargingProfileId": 5, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
              "chargingProfileKind": "Absolute",
              "chargingSchedule": {"chargingRateUnit": "W", "startSchedule": iso(utcnow()),
                                   "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 11000}]}}  # fmt: skip

REQUESTS = {
    V16: {
        "CancelReservation": {"reservationId": 1},
        "CertificateSigned": {"certificateChain": "-----BEGIN CERTIFICATE-----\nnot one\n-----END CERTIFICATE-----"},
        "ChangeAvailability": {"connectorId": 1, "type": "Operative"},
        "ChangeConfiguration": {"key": "HeartbeatInterval", "value": "120"},
        "ClearCache": {},
        "ClearChargingProfile": {"id": 5},
        "DataTransfer": {"vendorId": "acme"},
        "DeleteCertificate": {"certificateHashData": CERT_HASH},
        "ExtendedTriggerMessage": {"requestedMessage": "Heartbeat"},
        "GetCompositeSchedule": {"connectorId": 1, "duration": 3600},
        "GetConfiguration": {},
        "GetDiagnostics": {"location": ""},
        "GetInstalledCertificateIds": {"certificateType": "CentralSystemRootCertificate"},
        "GetLocalListVersion": {},
        "GetLog": {"logType": "DiagnosticsLog", "requestId": 1, "log": {"remoteLocation": ""}},
        "InstallCertificate": {"certificateType": "CentralSystemRootCertificate",
                               "certificate": "-----BEGIN CERTIFICATE-----\nnot one\n-----END CERTIFICATE-----"},
        "RemoteStartTransaction": {"idTag": "REMOTE", "connectorId": 1},
        "RemoteStopTransaction": {"transactionId": 424242},
        "ReserveNow": {"connectorId": 2, "expiryDate": LATER, "idTag": "R", "reservationId": 99},
        "Reset": {"type": "Soft"},
        "SendLocalList": {"listVersion": 1, "updateType": "Full", "localAuthorizationList": []},
        "SetChargingProfile": {"connectorId": 1, "csChargingProfiles": PROFILE_16},
        "SignedUpdateFirmware": {"requestId": 1, "firmware": {
            "location": "http://192.0.2.1/fw.bin", "retrieveDateTime": LATER, "signingCertificate": "x",
            "signature": "x"}},
        "TriggerMessage": {"requestedMessage": "Heartbeat"},
        "UnlockConnector": {"connectorId": 1},
        "UpdateFirmware": {"location": "http://192.0.2.1/fw.bin", "retrieveDate": LATER},
    },
    V201: {
        "CancelReservation": {"reservationId": 1},
        "CertificateSigned": {"certificateChain": "-----BEGIN CERTIFICATE-----\nnot one\n-----END CERTIFICATE-----"},
        "ChangeAvailability": {"operationalStatus": "Operative"},
        "ClearCache": {},
        "ClearChargingProfile": {"chargingProfileId": 5},
        "ClearDisplayMessage": {"id": 1},
        "ClearVariableMonitoring": {"id": [1]},
        "CostUpdated": {"totalCost": 1.5, "transactionId": "t-1"},
        "CustomerInformation": {"requestId": 1, "report": True, "clear": False,
                                "idToken": {"idToken": "A", "type": "ISO14443"}},
        "DataTransfer": {"vendorId": "acme"},
        "DeleteCertificate": {"certificateHashData": CERT_HASH},
        "GetBaseReport": {"requestId": 1, "reportBase": "SummaryInventory"},
        "GetChargingProfiles": {"requestId": 1, "chargingProfile": {"chargingProfilePurpose": "TxDefaultProfile"}},
        "GetCompositeSchedule": {"duration": 3600, "evseId": 1},
        "GetDisplayMessages": {"requestId": 1},
        "GetInstalledCertificateIds": {},
        "GetLocalListVersion": {},
        "GetLog": {"logType": "DiagnosticsLog", "requestId": 1, "log": {"remoteLocation": ""}},
        "GetMonitoringReport": {"requestId": 1},
        "GetReport": {"requestId": 2, "componentVariable": [VAR]},
        "GetTransactionStatus": {},
        "GetVariables": {"getVariableData": [VAR]},
        "InstallCertificate": {"certificateType": "CSMSRootCertificate",
                               "certificate": "-----BEGIN CERTIFICATE-----\nnot one\n-----END CERTIFICATE-----"},
        "PublishFirmware": {"location": "http://192.0.2.1/fw.bin", "checksum": "0" * 32, "requestId": 1},
        "RequestStartTransaction": {"idToken": {"idToken": "REMOTE", "type": "Central"}, "remoteStartId": 1},
        "RequestStopTransaction": {"transactionId": "no-such"},
        "ReserveNow": {"id": 99, "expiryDateTime": LATER, "idToken": {"idToken": "R", "type": "ISO14443"}},
        "Reset": {"type": "OnIdle"},
        "SendLocalList": {"versionNumber": 1, "updateType": "Full"},
        "SetChargingProfile": {"evseId": 1, "chargingProfile": PROFILE_201},
        "SetDisplayMessage": {"message": {"id": 1, "priority": "NormalCycle",
                                          "message": {"format": "UTF8", "content": "Welcome"}}},
        "SetMonitoringBase": {"monitoringBase": "All"},
        "SetMonitoringLevel": {"severity": 5},
        "SetNetworkProfile": {"configurationSlot": 1, "connectionData": {
            "ocppVersion": "OCPP20", "ocppTransport": "JSON", "ocppCsmsUrl": "wss://192.0.2.1/ocpp",
            "messageTimeout": 30, "securityProfile": 2, "ocppInterface": "Wired0"}},
        "SetVariableMonitoring": {"setMonitoringData": [{**VAR, "value": 10, "type": "Delta", "severity": 5}]},
        "SetVariables": {"setVariableData": [{**VAR, "attributeValue": "120"}]},
        "TriggerMessage": {"requestedMessage": "Heartbeat"},
        "UnlockConnector": {"evseId": 1, "connectorId": 1},
        "UnpublishFirmware": {"checksum": "0" * 32},
        "UpdateFirmware": {"requestId": 1, "firmware": {"location": "http://192.0.2.1/fw.bin",
                                                        "retrieveDateTime": LATER}},
    },
}  # fmt: skip
CASES = [(v, action) for v in (V16, V201) for action in sorted(REQUESTS[v])]


def test_every_request_of_both_versions_has_a_case():
    assert set(REQUESTS[V16]) == TO_CHARGER[V16] and set(REQUESTS[V201]) == TO_CHARGER[V201]


@pytest.mark.parametrize("version, sessions", [(V16, Session16), (V201, Session201)])
def test_every_message_from_a_charger_is_routed(version, sessions):
    routed = {m._on_action for c in sessions.__mro__ for m in vars(c).values() if hasattr(m, "_on_action")}
    assert sorted(FROM_CHARGER[version] - routed) == []


@pytest.mark.parametrize("version, action", CASES, ids=[f"{v}-{a}" for v, a in CASES])
async def test_every_request_reaches_the_charger_and_is_answered(gateway, version, action):
    charger_id = "CP16" if version == V16 else "CP201"
    sim = gateway.charger(charger_id, version, evses=2 if version == V16 else 1)
    async with connected(sim), gateway.client() as api:
        response = await api.post(f"/api/v1/chargers/{charger_id}/ocpp/{action}", json=REQUESTS[version][action])
        assert response.status_code == 200, response.text
        assert action in sim.heard
        audit = await gateway.app.store.audit.query(target=charger_id)
        assert audit[0]["command"] == "OcppRequest" and audit[0]["request"]["action"] == action
