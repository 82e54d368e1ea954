"""The simulated charger's local authorization list and reservations: it keeps the list the central system
sends, and holds a reserved EVSE (status Reserved) until the reservation is used, cancelled or expires."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
from typing import Any

from ocpp.routing import on
from ocpp.v16 import call_result as result16
from ocpp.v16.enums import Action as Action16
from ocpp.v201 import call as call201, call_result as result201
from ocpp.v201.enums import Action as Action201

from gateway.clock import parse_iso
from gateway.sim.charger import Offline


class _Holder:
    """What both versions share: the list and the reservations, kept on the simulated charger."""

    sim: Any

    def _update_list(self, version: int, full: bool, entries: dict[str, Any]) -> str:
        current = self.sim.local_list
        if not full and version <= self.sim.local_list_version:
            return "VersionMismatch"
        if full:
            current.clear()
        for tag, info in entries.items():
            if info is None:
                current.pop(tag, None)
            else:
                current[tag] = info
        self.sim.local_list_version = version
        return "Accepted"

    def _reserve(self, evse_id: int, reservation_id: int, expiry: str) -> str:
        if evse_id == 0:
            return "Accepted"  # the charger as a whole: nothing to hold
        evse = self.sim.evses.get(evse_id)
        if evse is None:
            return "Rejected"
        if not evse.available:
            return "Unavailable"
        if evse.ev is not None or evse.charging or (evse.reservation_id not in (None, reservation_id)):
            return "Occupied"
        evse.reservation_id = reservation_id
        self.sim.spawn(self.sim.set_status(evse, "Reserved"))
        self.sim.spawn(self._expire(evse, reservation_id, parse_iso(expiry)))
        return "Accepted"

    def _cancel(self, reservation_id: int) -> bool:
        for evse in self.sim.evses.values():
            if evse.reservation_id == reservation_id:
                evse.reservation_id = None
                if evse.status == "Reserved":
                    self.sim.spawn(self.sim.set_status(evse, "Available"))
                return True
        return False

    async def _expire(self, evse: Any, reservation_id: int, expiry: datetime) -> None:
        await asyncio.sleep(max(0.0, (expiry - self.sim.clock()).total_seconds()))
        if evse.reservation_id == reservation_id and self._cancel(reservation_id):
            await self.expired(reservation_id)

    async def expired(self, reservation_id: int) -> None:
        """1.6 says nothing when a reservation expires; 2.0.1 sends ReservationStatusUpdate."""


class Badges16(_Holder):
    @on(Action16.send_local_list)
    def on_send_local_list(self, list_version: int, update_type: str, local_authorization_list: list | None = None,
                           **_: Any) -> result16.SendLocalList:  # fmt: skip
        entries = {e["id_tag"]: e.get("id_tag_info") for e in local_authorization_list or []}
        return result16.SendLocalList(status=self._update_list(list_version, update_type == "Full", entries))

    @on(Action16.get_local_list_version)
    def on_get_local_list_version(self, **_: Any) -> result16.GetLocalListVersion:
        return result16.GetLocalListVersion(list_version=self.sim.local_list_version)

    @on(Action16.reserve_now)
    def on_reserve_now(self, connector_id: int, expiry_date: str, id_tag: str, reservation_id: int,
                       **_: Any) -> result16.ReserveNow:  # fmt: skip
        return result16.ReserveNow(status=self._reserve(connector_id, reservation_id, expiry_date))

    @on(Action16.cancel_reservation)
    def on_cancel_reservation(self, reservation_id: int, **_: Any) -> result16.CancelReservation:
        return result16.CancelReservation(status="Accepted" if self._cancel(reservation_id) else "Rejected")


class Badges201(_Holder):
    @on(Action201.send_local_list)
    def on_send_local_list(self, version_number: int, update_type: str, local_authorization_list: list | None = None,
                           **_: Any) -> result201.SendLocalList:  # fmt: skip
        entries = {e["id_token"]["id_token"]: e.get("id_token_info") for e in local_authorization_list or []}
        return result201.SendLocalList(status=self._update_list(version_number, update_type == "Full", entries))

    @on(Action201.get_local_list_version)
    def on_get_local_list_version(self, **_: Any) -> result201.GetLocalListVersion:
        return result201.GetLocalListVersion(version_number=self.sim.local_list_version)

    @on(Action201.reserve_now)
    def on_reserve_now(self, id: int, expiry_date_time: str, id_token: dict, evse_id: int | None = None,
                       **_: Any) -> result201.ReserveNow:  # fmt: skip
        return result201.ReserveNow(status=self._reserve(evse_id or 0, id, expiry_date_time))

    @on(Action201.cancel_reservation)
    def on_cancel_reservation(self, reservation_id: int, **_: Any) -> result201.CancelReservation:
        return result201.CancelReservation(status="Accepted" if self._cancel(reservation_id) else "Rejected")

    async def expired(self, reservation_id: int) -> None:
        with contextlib.suppress(Offline):
            await self.sim.call(call201.ReservationStatusUpdate(reservation_id=reservation_id,
                                                                reservation_update_status="Expired"))  # fmt: skip
