"""Authorization: Authorize answered from the site's badge list, the local list sent to the charger and the site
policy (gateway/authorization.py decides); the local list and the reservations the charger accepted are kept,
so the gateway knows what each charger holds.

A reserved EVSE shows its reservation id in the process image until the reservation is used, cancelled,
removed by the charger or expires (the recorder's expiry loop).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from ocpp.routing import on
from ocpp.v16 import call_result as result16
from ocpp.v16.enums import Action as Action16
from ocpp.v201 import call_result as result201
from ocpp.v201.enums import Action as Action201

from drivers.ocpp.frames import V16
from drivers.ocpp.session import Session, when
from gateway.authorization import STATUSES, Badge, Decision, for_16
from gateway.clock import iso, parse_iso, utcnow
from gateway.commands import CancelReservation, CommandError, Commands, PutBadge, RemoveBadge, Reserve

log = logging.getLogger(__name__)


class Badges16(Session):
    """OCPP 1.6J: Authorize; SendLocalList and ReserveNow/CancelReservation as the charger accepted them."""

    @on(Action16.authorize)
    async def on_authorize(self, id_tag: str, **_: Any) -> result16.Authorize:
        return result16.Authorize(id_tag_info=await self.id_tag_info(id_tag))

    async def id_tag_info(self, id_tag: str) -> dict[str, Any]:
        """idTagInfo for a badge, as StartTransaction, StopTransaction and Authorize answer it."""
        decision = await self.recorder.authorize(self.id, id_tag)
        info: dict[str, Any] = {"status": for_16(decision.status)}
        if decision.expiry is not None:
            info["expiryDate"] = iso(decision.expiry)
        if decision.parent is not None:
            info["parentIdTag"] = decision.parent
        return info

    async def answered(self, action: str, payload: dict[str, Any], answer: dict[str, Any]) -> None:
        if answer.get("status") == "Accepted":
            if action == "SendLocalList":
                full = payload["updateType"] == "Full"
                entries = payload.get("localAuthorizationList") or []
                kept = [_badge_16(e) for e in entries if e.get("idTagInfo")]
                removed = [e["idTag"] for e in entries if not e.get("idTagInfo")]
                await self.recorder.store.badges.local_list_sent(self.id, payload["listVersion"], full, kept,
                                                                 removed, utcnow())  # fmt: skip
            elif action == "ReserveNow":
                await self.recorder.reserved(self.id, payload["reservationId"], payload["connectorId"] or None,
                                             payload["idTag"], payload.get("parentIdTag"),
                                             when(payload["expiryDate"]))  # fmt: skip
            elif action == "CancelReservation":
                await self.recorder.reservation_ended(self.id, payload["reservationId"], "cancelled")
        await super().answered(action, payload, answer)


class Badges201(Session):
    """OCPP 2.0.1: Authorize, ReservationStatusUpdate; SendLocalList, ReserveNow and CancelReservation kept."""

    @on(Action201.authorize)
    async def on_authorize(self, id_token: dict[str, Any], **_: Any) -> result201.Authorize:
        return result201.Authorize(id_token_info=await self.id_token_info(self.current.payload["idToken"]["idToken"]))

    async def id_token_info(self, token: str) -> dict[str, Any]:
        decision = await self.recorder.authorize(self.id, token)
        return id_token_info(decision)

    @on(Action201.reservation_status_update)
    async def on_reservation_status_update(self, reservation_id: int, reservation_update_status: str,
                                           **_: Any) -> result201.ReservationStatusUpdate:  # fmt: skip
        status = "expired" if reservation_update_status == "Expired" else "removed"
        await self.recorder.reservation_ended(self.id, reservation_id, status)
        return result201.ReservationStatusUpdate()

    async def answered(self, action: str, payload: dict[str, Any], answer: dict[str, Any]) -> None:
        if answer.get("status") == "Accepted":
            if action == "SendLocalList":
                full = payload["updateType"] == "Full"
                entries = payload.get("localAuthorizationList") or []
                kept = [_badge_201(e) for e in entries if e.get("idTokenInfo")]
                removed = [e["idToken"]["idToken"] for e in entries if not e.get("idTokenInfo")]
                await self.recorder.store.badges.local_list_sent(self.id, payload["versionNumber"], full, kept,
                                                                 removed, utcnow())  # fmt: skip
            elif action == "ReserveNow":
                group = (payload.get("groupIdToken") or {}).get("idToken")
                await self.recorder.reserved(self.id, payload["id"], payload.get("evseId") or None,
                                             payload["idToken"]["idToken"], group,
                                             when(payload["expiryDateTime"]))  # fmt: skip
            elif action == "CancelReservation":
                await self.recorder.reservation_ended(self.id, payload["reservationId"], "cancelled")
        await super().answered(action, payload, answer)


def id_token_info(decision: Decision) -> dict[str, Any]:
    info: dict[str, Any] = {"status": decision.status}
    if decision.expiry is not None:
        info["cacheExpiryDateTime"] = iso(decision.expiry)
    if decision.parent is not None:
        info["groupIdToken"] = {"idToken": decision.parent, "type": "Central"}
    return info


def _badge_16(entry: dict[str, Any]) -> Badge:
    info = entry["idTagInfo"]
    return Badge(entry["idTag"], info["status"], _when(info.get("expiryDate")), info.get("parentIdTag"))


def _badge_201(entry: dict[str, Any]) -> Badge:
    info = entry["idTokenInfo"]
    group = (info.get("groupIdToken") or {}).get("idToken")
    return Badge(entry["idToken"]["idToken"], info["status"], _when(info.get("cacheExpiryDateTime")), group)


def _when(text: str | None) -> datetime | None:
    return None if text is None else when(text)


def register(commands: Commands, server: Any) -> None:
    """The badge list and reservations as typed commands (the API's, MQTT's), through the one door."""
    store = server.recorder.store

    async def put_badge(cmd: PutBadge) -> dict[str, Any]:
        if cmd.status not in STATUSES:
            raise CommandError("invalid", f"status must be one of {', '.join(STATUSES)}")
        expiry = _parse(cmd.expiry, "expiry")
        await store.badges.put(Badge(cmd.id_tag, cmd.status, expiry, cmd.parent_id_tag), cmd.note, utcnow())
        return {"id_tag": cmd.id_tag, "status": cmd.status}

    async def remove_badge(cmd: RemoveBadge) -> dict[str, Any]:
        if not await store.badges.remove(cmd.id_tag):
            raise CommandError("unknown_target", f"no badge {cmd.id_tag!r} on the site's list")
        return {"id_tag": cmd.id_tag, "removed": True}

    async def reserve(cmd: Reserve) -> dict[str, Any]:
        session = server.session(cmd.charger_id)
        expiry = _parse(cmd.expiry, "expiry")
        if expiry is None or expiry <= utcnow():
            raise CommandError("invalid", "a reservation needs an expiry in the future")
        reservation_id = await store.badges.next_reservation_id()
        if session.version == V16:
            action, payload = "ReserveNow", {"connectorId": cmd.evse or 0, "expiryDate": iso(expiry),
                                             "idTag": cmd.id_tag, "reservationId": reservation_id}  # fmt: skip
            if cmd.parent_id_tag:
                payload["parentIdTag"] = cmd.parent_id_tag
        else:
            action, payload = "ReserveNow", {"id": reservation_id, "expiryDateTime": iso(expiry),
                                             "idToken": {"idToken": cmd.id_tag, "type": "Central"}}  # fmt: skip
            if cmd.evse:
                payload["evseId"] = cmd.evse
            if cmd.parent_id_tag:
                payload["groupIdToken"] = {"idToken": cmd.parent_id_tag, "type": "Central"}
        answer = await session.request(action, payload)
        if answer.get("status") != "Accepted":
            raise CommandError("rejected", f"{cmd.charger_id} refused the reservation", answer)
        return {"reservation_id": reservation_id, **answer}

    async def cancel(cmd: CancelReservation) -> dict[str, Any]:
        answer = await server.session(cmd.charger_id).request("CancelReservation",
                                                               {"reservationId": cmd.reservation_id})  # fmt: skip
        if answer.get("status") != "Accepted":
            raise CommandError("rejected", f"{cmd.charger_id} has no reservation {cmd.reservation_id}", answer)
        return answer

    commands.register(PutBadge, put_badge)
    commands.register(RemoveBadge, remove_badge)
    commands.register(Reserve, reserve)
    commands.register(CancelReservation, cancel)


def _parse(text: str | None, name: str) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_iso(text)
    except (ValueError, TypeError):
        raise CommandError("invalid", f"{name} is not an ISO 8601 date-time: {text[:40]!r}") from None
