"""Authorization over real websockets: local lists sent to chargers, the site's badge list, the policy for
unknown badges, the authorization cache, reservations, and the tolerance of non-compliant charger models."""

from __future__ import annotations

from datetime import timedelta

import pytest
from ocpp.exceptions import OCPPError
from ocpp.v16 import call as call16
from ocpp.v201 import call as call201

from gateway.auth import Role
from gateway.clock import iso, utcnow
from gateway.settings import load_settings
from tests.conftest import connected, eventually, running_gateway, write_config


@pytest.fixture
async def strict_site(tmp_path):
    """The shipped policy: a badge on no list is refused."""
    async with running_gateway(load_settings(write_config(tmp_path, unknown_badges=None), environ={})) as gw:
        yield gw


def list_16(version, update, entries):
    return {"listVersion": version, "updateType": update, "localAuthorizationList": entries}


def list_201(version, update, entries):
    return {"versionNumber": version, "updateType": update, "localAuthorizationList": entries}


async def authorize_16(sim, tag):
    return (await sim.call(call16.Authorize(id_tag=tag))).id_tag_info


async def authorize_201(sim, tag):
    return (await sim.call(call201.Authorize(id_token={"id_token": tag, "type": "ISO14443"}))).id_token_info


async def test_16_local_list_decides_authorize(strict_site):
    gw = strict_site
    past, future = iso(utcnow() - timedelta(days=1)), iso(utcnow() + timedelta(days=30))
    sim = gw.charger("CP16", "1.6", evses=2)
    async with connected(sim), gw.client() as api:
        sent = await api.post("/api/v1/chargers/CP16/ocpp/SendLocalList", json=list_16(3, "Full", [
            {"idTag": "LISTED", "idTagInfo": {"status": "Accepted", "expiryDate": future, "parentIdTag": "FLEET"}},
            {"idTag": "OLD", "idTagInfo": {"status": "Accepted", "expiryDate": past}},
            {"idTag": "STOLEN", "idTagInfo": {"status": "Blocked"}},
        ]))  # fmt: skip
        assert sent.json() == {"status": "Accepted"}
        assert set(sim.local_list) == {"LISTED", "OLD", "STOLEN"}

        listed = await authorize_16(sim, "LISTED")
        assert listed["status"] == "Accepted" and listed["parent_id_tag"] == "FLEET"
        assert listed["expiry_date"].startswith(future[:16])
        assert (await authorize_16(sim, "NOBODY"))["status"] == "Invalid"
        assert (await authorize_16(sim, "OLD"))["status"] == "Expired"
        assert (await authorize_16(sim, "STOLEN"))["status"] == "Blocked"

        held = (await api.get("/api/v1/chargers/CP16/local-list")).json()
        assert held["version"] == 3 and [e["id_tag"] for e in held["entries"]] == ["LISTED", "OLD", "STOLEN"]
        # A differential update: one badge removed (no idTagInfo), one added; the charger says its version.
        sent = await api.post("/api/v1/chargers/CP16/ocpp/SendLocalList", json=list_16(4, "Differential", [
            {"idTag": "STOLEN"}, {"idTag": "NEW", "idTagInfo": {"status": "Accepted"}}]))  # fmt: skip
        assert sent.json() == {"status": "Accepted"}
        held = (await api.get("/api/v1/chargers/CP16/local-list")).json()
        assert held["version"] == 4 and [e["id_tag"] for e in held["entries"]] == ["LISTED", "NEW", "OLD"]
        version = await api.post("/api/v1/chargers/CP16/ocpp/GetLocalListVersion", json={})
        assert version.json() == {"listVersion": 4}
        assert (await authorize_16(sim, "STOLEN"))["status"] == "Invalid"
        assert (await authorize_16(sim, "NEW"))["status"] == "Accepted"

        # A list the charger refuses (an old version) changes nothing the gateway knows.
        stale = await api.post("/api/v1/chargers/CP16/ocpp/SendLocalList", json=list_16(2, "Differential", [
            {"idTag": "OLD"}]))  # fmt: skip
        assert stale.json() == {"status": "VersionMismatch"}
        assert (await api.get("/api/v1/chargers/CP16/local-list")).json()["version"] == 4


async def test_201_local_list_decides_authorize(strict_site):
    gw = strict_site
    past = iso(utcnow() - timedelta(hours=1))
    sim = gw.charger("CP201", "2.0.1")
    async with connected(sim), gw.client() as api:
        sent = await api.post("/api/v1/chargers/CP201/ocpp/SendLocalList", json=list_201(1, "Full", [
            {"idToken": {"idToken": "LISTED", "type": "ISO14443"},
             "idTokenInfo": {"status": "Accepted", "groupIdToken": {"idToken": "FLEET", "type": "Central"}}},
            {"idToken": {"idToken": "OLD", "type": "ISO14443"},
             "idTokenInfo": {"status": "Accepted", "cacheExpiryDateTime": past}},
            {"idToken": {"idToken": "STOLEN", "type": "ISO14443"}, "idTokenInfo": {"status": "Blocked"}},
        ]))  # fmt: skip
        assert sent.json() == {"status": "Accepted"}
        listed = await authorize_201(sim, "LISTED")
        assert listed["status"] == "Accepted" and listed["group_id_token"]["id_token"] == "FLEET"
        assert (await authorize_201(sim, "NOBODY"))["status"] == "Invalid"
        assert (await authorize_201(sim, "OLD"))["status"] == "Expired"
        assert (await authorize_201(sim, "STOLEN"))["status"] == "Blocked"
        version = await api.post("/api/v1/chargers/CP201/ocpp/GetLocalListVersion", json={})
        assert version.json() == {"versionNumber": 1}
        # A badge refused at the start of a session: the gateway says so in the TransactionEvent answer.
        evse = await sim.plug_in(1)
        evse.id_tag = "STOLEN"
        with pytest.raises(PermissionError):
            await sim.start_session(1, "STOLEN")


async def test_site_badge_list_groups_audit_and_roles(strict_site):
    gw = strict_site
    sim = gw.charger("CP16", "1.6", evses=2)
    async with connected(sim), gw.client() as api:
        assert (await authorize_16(sim, "EMP-1"))["status"] == "Invalid"
        put = await api.put("/api/v1/badges/EMP-1", json={"parent_id_tag": "STAFF", "note": "Maria"})
        assert put.status_code == 200, put.text
        assert (await authorize_16(sim, "EMP-1"))["status"] == "Accepted"
        # Blocking the group blocks every badge in it.
        await api.put("/api/v1/badges/STAFF", json={"status": "Blocked"})
        assert (await authorize_16(sim, "EMP-1"))["status"] == "Blocked"
        await api.put("/api/v1/badges/STAFF", json={"status": "Accepted"})
        later = iso(utcnow() - timedelta(minutes=1))
        await api.put("/api/v1/badges/EMP-1", json={"expiry": later, "parent_id_tag": "STAFF"})
        assert (await authorize_16(sim, "EMP-1"))["status"] == "Expired"

        listed = (await api.get("/api/v1/badges")).json()
        assert [b["id_tag"] for b in listed] == ["EMP-1", "STAFF"]
        assert listed[0]["parent_id_tag"] == "STAFF" and listed[0]["expiry"] is not None
        audit = await gw.app.store.audit.query(target="badge:EMP-1")
        assert [a["command"] for a in audit] == ["PutBadge", "PutBadge"] and audit[0]["outcome"] == "ok"

        assert (await api.put("/api/v1/badges/X", json={"status": "Maybe"})).status_code == 422
        assert (await api.put("/api/v1/badges/X", json={"expiry": "tomorrow"})).status_code == 422
        assert (await api.delete("/api/v1/badges/NOT-THERE")).status_code == 404
        assert (await api.delete("/api/v1/badges/EMP-1")).status_code == 200
        assert (await authorize_16(sim, "EMP-1"))["status"] == "Invalid"

        # The cache remembers the last answer to each badge presented, and where it came from.
        cached = {c["id_tag"]: c for c in (await api.get("/api/v1/authorization-cache")).json()}
        assert cached["EMP-1"]["status"] == "Invalid" and cached["EMP-1"]["source"] == "policy"
        assert (await api.delete("/api/v1/authorization-cache")).json()["removed"] >= 1
        assert (await api.get("/api/v1/authorization-cache")).json() == []

    async with gw.client(await gw.token(Role.guest)) as guest:
        assert (await guest.get("/api/v1/badges")).status_code == 200
        assert (await guest.put("/api/v1/badges/G", json={})).status_code == 403


async def test_a_refused_badge_stops_the_16_session(strict_site):
    gw = strict_site
    sim = gw.charger("CP16", "1.6", evses=2)
    async with connected(sim), gw.client() as api:
        await api.put("/api/v1/badges/CARD", json={})
        sim.config["AuthorizeRemoteTxRequests"] = "false"
        await api.post("/api/v1/chargers/CP16/ocpp/RemoteStartTransaction", json={"idTag": "NOT-LISTED",
                                                                                 "connectorId": 1})  # fmt: skip
        tx = (await eventually(lambda: gw.app.store.transactions.query(id_tag="NOT-LISTED")))[0]

        async def closed():
            found = await gw.app.store.transactions.get(tx.id)
            return found if not found.open else None

        assert (await eventually(closed)).stop_reason == "DeAuthorized"


async def test_reservations_16(gateway):
    sim = gateway.charger("CP16", "1.6", evses=2)
    expiry = iso(utcnow() + timedelta(minutes=10))
    async with connected(sim), gateway.client() as api:
        made = await api.post("/api/v1/chargers/CP16/reservations", json={"id_tag": "BOOKED", "evse": 2,
                                                                          "expiry": expiry})  # fmt: skip
        assert made.status_code == 200, made.text
        rid = made.json()["reservation_id"]
        assert made.json()["status"] == "Accepted"
        await eventually(lambda: gateway.app.image.value("chargers/CP16/evse/2/status") == "Reserved")
        assert gateway.app.image.value("chargers/CP16/evse/2/reservation_id") == rid
        active = (await api.get("/api/v1/reservations", params={"charger": "CP16", "active": True})).json()
        assert [(r["reservation_id"], r["evse"], r["id_tag"]) for r in active] == [(rid, 2, "BOOKED")]

        # Another badge on the reserved EVSE is refused; the booked badge takes it and uses the reservation.
        sim.evses[2].reservation_id = None  # a charger that does not check reservations itself
        await sim.start_session(2, "SOMEONE")  # answered Invalid: the charger stops at once

        async def deauthorized():
            found = await gateway.app.store.transactions.query(id_tag="SOMEONE")
            return found and found[0].stop_reason == "DeAuthorized"

        await eventually(deauthorized)
        sim.evses[2].reservation_id = rid
        await sim.start_session(2, "BOOKED")
        used = (await api.get("/api/v1/reservations")).json()[0]
        assert used["status"] == "used" and used["transaction_id"] is not None
        assert gateway.app.image.value("chargers/CP16/evse/2/reservation_id") == 0

        # Cancelled; and one that expires is noticed by the gateway although a 1.6 charger says nothing.
        second = (await api.post("/api/v1/chargers/CP16/reservations", json={"id_tag": "B2", "evse": 1,
                                                                             "expiry": expiry})).json()  # fmt: skip
        cancel = await api.delete(f"/api/v1/chargers/CP16/reservations/{second['reservation_id']}")
        assert cancel.json() == {"status": "Accepted"}
        await eventually(lambda: gateway.app.image.value("chargers/CP16/evse/1/status") == "Available")
        assert (await api.get("/api/v1/reservations")).json()[0]["status"] == "cancelled"
        soon = iso(utcnow() + timedelta(seconds=1))
        third = (await api.post("/api/v1/chargers/CP16/reservations", json={"id_tag": "B3", "evse": 1,
                                                                            "expiry": soon})).json()  # fmt: skip
        assert gateway.app.image.value("chargers/CP16/evse/1/reservation_id") == third["reservation_id"]
        await eventually(lambda: gateway.app.image.value("chargers/CP16/evse/1/reservation_id") == 0)
        assert (await api.get("/api/v1/reservations")).json()[0]["status"] == "expired"

        refused = await api.post("/api/v1/chargers/CP16/reservations", json={"id_tag": "B4", "evse": 2,
                                                                             "expiry": expiry})  # fmt: skip
        assert refused.status_code == 409 and refused.json()["details"] == {"status": "Occupied"}
        past = await api.post("/api/v1/chargers/CP16/reservations", json={"id_tag": "B", "expiry": iso(utcnow())})
        assert past.status_code == 422
        unknown = await api.delete("/api/v1/chargers/CP16/reservations/99999")
        assert unknown.status_code == 409
        kinds = [e["kind"] for e in await gateway.app.store.events.query(None, None, 100)]
        assert kinds.count("reservation_made") == 3 and kinds.count("reservation_ended") == 3


async def test_reservations_201(gateway):
    sim = gateway.charger("CP201", "2.0.1")
    async with connected(sim), gateway.client() as api:
        soon = iso(utcnow() + timedelta(seconds=1))
        made = (await api.post("/api/v1/chargers/CP201/reservations", json={"id_tag": "BOOKED", "evse": 1,
                                                                            "expiry": soon})).json()  # fmt: skip
        assert made["status"] == "Accepted"
        await eventually(lambda: gateway.app.image.value("chargers/CP201/evse/1/status") == "Reserved")
        # The station lets it expire and says so (ReservationStatusUpdate).
        await eventually(lambda: gateway.app.image.value("chargers/CP201/evse/1/reservation_id") == 0)
        await eventually(lambda: gateway.app.image.value("chargers/CP201/evse/1/status") == "Available")
        assert (await api.get("/api/v1/reservations")).json()[0]["status"] == "expired"

        later = iso(utcnow() + timedelta(minutes=5))
        made = (await api.post("/api/v1/chargers/CP201/reservations", json={"id_tag": "BOOKED", "evse": 1,
                                                                            "expiry": later})).json()  # fmt: skip
        await sim.start_session(1, "BOOKED")
        used = (await api.get("/api/v1/reservations")).json()[0]
        assert used["reservation_id"] == made["reservation_id"] and used["status"] == "used"
        raw = await api.post("/api/v1/chargers/CP201/ocpp/CancelReservation", json={"reservationId": 12345})
        assert raw.json() == {"status": "Rejected"}


TOLERANT = """
[[charger_models]]
model = "SloppyBox"
tolerate = ["StatusNotification"]
"""


async def test_tolerated_schema_violations_per_model(tmp_path):
    async with running_gateway(load_settings(write_config(tmp_path, TOLERANT), environ={})) as gw:
        sloppy = gw.charger("CP16", "1.6", evses=2, model="SloppyBox")
        strict = gw.charger("CPBB", "1.6", model="Tidy")
        bad = call16.StatusNotification(connector_id=1, error_code="Oops", status="Available")  # no such errorCode
        async with connected(sloppy), connected(strict):
            assert await sloppy.call(bad, check=False) is not None
            await eventually(lambda: gw.app.image.value("chargers/CP16/evse/1/error_code") == "Oops")
            with pytest.raises(OCPPError) as refused:
                await strict.call(bad, check=False)
            assert type(refused.value).__name__ in ("FormatViolationError", "PropertyConstraintViolationError",
                                                    "FormationViolationError")  # fmt: skip
            # Only the listed actions are forgiven (an idTag is at most 20 characters).
            with pytest.raises(OCPPError):
                await sloppy.call(call16.Authorize(id_tag="x" * 30), check=False)
