"""Smart charging: profiles the charger accepted, stored per charger; in 2.0.1 the profiles and limits it
reports (ReportChargingProfiles, NotifyChargingLimit, ClearedChargingLimit) and what the EV needs
(NotifyEVChargingNeeds, NotifyEVChargingSchedule).

What a charger holds is learnt from its answers, whoever asked (an operator, the load cap, the relay): a
SetChargingProfile it accepted is stored, a ClearChargingProfile it accepted removes what it names, a
GetChargingProfiles makes the older reports of what it covers out of date. A transaction's TxProfiles go
with the transaction.

What the EV needs becomes points of its EVSE (departure_time, energy_needed_wh, ev_max_power_w) for the load
cap to weigh; a limit from an outside source becomes external_limit_w / external_limit_source on the EVSE (or
on the charger, for the charger as a whole).
"""

from __future__ import annotations

import abc
import asyncio
import logging
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from ocpp.exceptions import PropertyConstraintViolationError
from ocpp.routing import on
from ocpp.v201 import call_result
from ocpp.v201.enums import Action

from drivers.ocpp.session import Session, when
from gateway.clock import iso, parse_iso, utcnow
from gateway.model import Site
from gateway.points import charger_point, evse_point
from gateway.store import Transaction
from gateway.store.charging_profiles import ChargingProfile

log = logging.getLogger(__name__)

NEEDS = ("departure_time", "energy_needed_wh", "ev_max_power_w")
_PHASES = {"AC_single_phase": 1, "AC_two_phase": 2, "AC_three_phase": 3}


class _SmartCharging(Session):
    """What both versions share: keeping what the charger agreed to, and forgetting a session's profiles and
    needs when it ends."""

    ID_KEY: str  # the profile's id, as the version spells it

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._forgetting: set[asyncio.Task[None]] = set()

    async def answered(self, action: str, payload: dict[str, Any], answer: dict[str, Any]) -> None:
        await super().answered(action, payload, answer)
        status = answer.get("status")
        store = self.recorder.store.charging_profiles
        sent = self.profile_in(action, payload) if status == "Accepted" else None
        if sent is not None:
            await store.keep_sent(self.id, stored(*sent, self.ID_KEY), utcnow())
        elif action == "ClearChargingProfile" and status == "Accepted":
            removed = await store.clear(self.id, **self.clear_filter(payload))
            log.info("charging profiles cleared charger=%s removed=%d filter=%s", self.id, removed, payload)

    def stopped(self, tx: Transaction) -> None:
        super().stopped(tx)
        if tx.evse:
            image = self.recorder.image
            image.update({name: None for name in (evse_point(self.id, tx.evse, leaf) for leaf in NEEDS)
                          if image.value(name) is not None})  # fmt: skip
        key = self.transaction_key(tx)
        if key is not None:
            task = asyncio.create_task(self._drop_transaction(key, tx.evse))
            self._forgetting.add(task)
            task.add_done_callback(self._forgetting.discard)

    async def _drop_transaction(self, key: str, evse: int | None) -> None:
        try:
            await self.recorder.store.charging_profiles.drop_transaction(self.id, key, evse)
        except Exception:  # the profiles stay listed until replaced or cleared: nothing a charger would see
            log.exception("could not drop the TxProfiles of a transaction charger=%s transaction=%s", self.id, key)

    # -- what each version spells its own way ---------------------------------------------------------------

    @abc.abstractmethod
    def profile_in(self, action: str, payload: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        """(EVSE, profile) a request gives the charger: SetChargingProfile, or the TxProfile of a remote start
        (EVSE 0 when the charger chooses)."""

    @abc.abstractmethod
    def clear_filter(self, payload: dict[str, Any]) -> dict[str, Any]:
        """What a ClearChargingProfile request names: profile_id, else evse / purpose / stack_level."""

    @abc.abstractmethod
    def transaction_key(self, tx: Transaction) -> str | None:
        """A transaction as a TxProfile names it."""


class ChargingProfiles16(_SmartCharging):
    """OCPP 1.6J: connector n is EVSE n, a TxProfile names the gateway's transaction id."""

    ID_KEY = "chargingProfileId"

    def profile_in(self, action: str, payload: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        if action == "SetChargingProfile":
            return payload["connectorId"], payload["csChargingProfiles"]
        if action == "RemoteStartTransaction" and "chargingProfile" in payload:
            return payload.get("connectorId", 0), payload["chargingProfile"]
        return None

    def clear_filter(self, payload: dict[str, Any]) -> dict[str, Any]:
        return {"profile_id": payload.get("id"), "evse": payload.get("connectorId"),
                "purpose": payload.get("chargingProfilePurpose"), "stack_level": payload.get("stackLevel")}  # fmt: skip

    def transaction_key(self, tx: Transaction) -> str | None:
        return str(tx.id)


class ChargingProfiles201(_SmartCharging):
    """OCPP 2.0.1: a TxProfile names the charger's transaction id; the station reports what it holds and what
    limits it is under, and passes on what the EV needs."""

    ID_KEY = "id"

    def profile_in(self, action: str, payload: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        if action == "SetChargingProfile" or (action == "RequestStartTransaction" and "chargingProfile" in payload):
            return payload.get("evseId", 0), payload["chargingProfile"]
        return None

    def clear_filter(self, payload: dict[str, Any]) -> dict[str, Any]:
        criteria = payload.get("chargingProfileCriteria") or {}
        return {"profile_id": payload.get("chargingProfileId"), "evse": criteria.get("evseId"),
                "purpose": criteria.get("chargingProfilePurpose"),
                "stack_level": criteria.get("stackLevel")}  # fmt: skip

    def transaction_key(self, tx: Transaction) -> str | None:
        return tx.ocpp_id

    async def run(self) -> None:
        await self._show_stored_needs()
        try:  # the outside limits it told an earlier gateway process of still hold
            await self._show_limits()
        except Exception:  # shown again at its next NotifyChargingLimit; the session must not wait for them
            log.exception("could not read the outside limits charger=%s", self.id)
        await super().run()

    async def answered(self, action: str, payload: dict[str, Any], answer: dict[str, Any]) -> None:
        await super().answered(action, payload, answer)
        if action == "GetChargingProfiles" and answer.get("status") in ("Accepted", "NoProfiles"):
            criteria = payload.get("chargingProfile") or {}
            await self.recorder.store.charging_profiles.forget_reported(
                self.id, payload["requestId"], payload.get("evseId"), criteria.get("chargingProfilePurpose"),
                criteria.get("stackLevel"), criteria.get("chargingProfileId"), criteria.get("chargingLimitSource"),
            )  # fmt: skip

    # -- what the station reports ---------------------------------------------------------------------------

    @on(Action.report_charging_profiles)
    async def on_report_charging_profiles(self, **_: Any) -> call_result.ReportChargingProfiles:
        raw = self.current.payload
        evse = _evse(raw["evseId"])
        profiles = [stored(evse, p, self.ID_KEY) for p in raw["chargingProfile"]]
        await self.recorder.store.charging_profiles.keep_reported(self.id, raw["requestId"], raw["chargingLimitSource"],
                                                                  profiles, utcnow())  # fmt: skip
        return call_result.ReportChargingProfiles()

    @on(Action.notify_charging_limit)
    async def on_notify_charging_limit(self, **_: Any) -> call_result.NotifyChargingLimit:
        raw = self.current.payload
        evse = _evse(raw.get("evseId", 0))
        limit = raw["chargingLimit"]
        for schedule in raw.get("chargingSchedule") or []:
            if schedule.get("startSchedule"):
                when(schedule["startSchedule"])  # an unreadable start is an invalid value, before anything is kept
        await self.recorder.store.charging_profiles.set_limit(self.id, evse, limit["chargingLimitSource"],
                                                              limit.get("isGridCritical"), raw.get("chargingSchedule"),
                                                              utcnow())  # fmt: skip
        log.info("charging limit charger=%s evse=%d source=%s grid_critical=%s", self.id, evse,
                 limit["chargingLimitSource"], limit.get("isGridCritical"))  # fmt: skip
        await self._show_limits()
        return call_result.NotifyChargingLimit()

    @on(Action.cleared_charging_limit)
    async def on_cleared_charging_limit(self, **_: Any) -> call_result.ClearedChargingLimit:
        raw = self.current.payload
        evse = None if raw.get("evseId") is None else _evse(raw["evseId"])
        await self.recorder.store.charging_profiles.clear_limit(self.id, evse, raw["chargingLimitSource"], utcnow())
        log.info("charging limit cleared charger=%s evse=%s source=%s", self.id, evse, raw["chargingLimitSource"])
        await self._show_limits()
        return call_result.ClearedChargingLimit()

    # -- what the EV says -----------------------------------------------------------------------------------

    @on(Action.notify_ev_charging_needs)
    async def on_notify_ev_charging_needs(self, **_: Any) -> call_result.NotifyEVChargingNeeds:
        raw = self.current.payload
        evse = _evse(raw["evseId"], charger_level=False)
        needs = raw["chargingNeeds"]
        departure = iso(when(needs["departureTime"])) if needs.get("departureTime") else None
        energy_wh, max_power_w = ev_needs(needs, self.recorder.site.voltage_v)
        tx = self.running.get(evse)
        if energy_wh is not None and tx is not None:  # asked mid-session: what it still needs, on top of what it took
            energy_wh += self.recorder.image.value(evse_point(self.id, evse, "session_energy_wh")) or 0.0
        await self.recorder.store.charging_profiles.set_needs(self.id, evse, tx.id if tx else None, departure,
                                                              energy_wh, max_power_w, raw, utcnow())  # fmt: skip
        self._show_needs(evse, departure, energy_wh, max_power_w)
        log.info("EV charging needs charger=%s evse=%d departure=%s energy_wh=%s max_power_w=%s", self.id, evse,
                 departure, energy_wh, max_power_w)  # fmt: skip
        return call_result.NotifyEVChargingNeeds(status="Accepted")

    @on(Action.notify_ev_charging_schedule)
    async def on_notify_ev_charging_schedule(self, **_: Any) -> call_result.NotifyEVChargingSchedule:
        raw = self.current.payload
        evse = _evse(raw["evseId"], charger_level=False)
        tx = self.running.get(evse)
        await self.recorder.store.charging_profiles.set_ev_schedule(self.id, evse, tx.id if tx else None,
                                                                    iso(when(raw["timeBase"])), raw["chargingSchedule"],
                                                                    utcnow())  # fmt: skip
        return call_result.NotifyEVChargingSchedule(status="Accepted")

    # -- the process image ----------------------------------------------------------------------------------

    def _show_needs(self, evse: int, departure: str | None, energy_wh: float | None, max_power_w: float | None) -> None:
        self.recorder.image.update({evse_point(self.id, evse, leaf): value for leaf, value in
                                    zip(NEEDS, (departure, energy_wh, max_power_w), strict=True)})  # fmt: skip

    async def _show_stored_needs(self) -> None:
        """After a gateway restart, the needs of the sessions still running are the load cap's to weigh again."""
        try:
            for row in await self.recorder.store.charging_profiles.needs(self.id):
                tx = self.running.get(row["evse"])
                if tx is not None and tx.id == row["transaction_id"]:
                    self._show_needs(row["evse"], row["departure_time"], row["energy_wh"], row["max_power_w"])
        except Exception:  # the session runs without them: the load cap then shares as if nobody said
            log.exception("could not read the EVs' charging needs charger=%s", self.id)

    async def _show_limits(self) -> None:
        """The strictest limit in force now on each EVSE (0: the charger), and its source."""
        image, now = self.recorder.image, utcnow()
        charger = self.recorder.site.chargers.get(self.id)
        phases = charger.phases if charger is not None else 3
        strictest: dict[int, tuple[float | None, str]] = {}
        for row in await self.recorder.store.charging_profiles.limits(self.id):
            watts = schedule_limit_w(row["schedule"] or [], now, parse_iso(row["updated_at"]),
                                     self.recorder.site.voltage_v, phases)  # fmt: skip
            held = strictest.get(row["evse"])
            if held is None or (watts is not None and (held[0] is None or watts < held[0])):
                strictest[row["evse"]] = (watts, row["source"])
        shown = {int(name.split("/")[3]) for name, _ in image.items(f"chargers/{self.id}/evse/")
                 if name.endswith("/external_limit_source")}  # fmt: skip
        if image.get(charger_point(self.id, "external_limit_source")) is not None:
            shown.add(0)
        for evse in shown | set(strictest):
            watts, source = strictest.get(evse, (None, ""))
            image.update({self._point(evse, "external_limit_w"): watts,
                          self._point(evse, "external_limit_source"): source})  # fmt: skip

    def _point(self, evse: int, leaf: str) -> str:
        return charger_point(self.id, leaf) if evse == 0 else evse_point(self.id, evse, leaf)


def stored(evse: int, profile: dict[str, Any], id_key: str) -> ChargingProfile:
    """A profile as sent or reported (camelCase, the version's spelling), with its indexed properties."""
    tx = profile.get("transactionId")
    return ChargingProfile(
        evse=evse, id=int(profile[id_key]), stack_level=int(profile["stackLevel"]),
        purpose=profile["chargingProfilePurpose"], kind=profile["chargingProfileKind"], profile=_plain(profile),
        transaction_id=None if tx is None else str(tx),
        valid_from=_utc(profile.get("validFrom")), valid_to=_utc(profile.get("validTo")),
    )  # fmt: skip


def ev_needs(needs: dict[str, Any], voltage_v: float) -> tuple[float | None, float | None]:
    """(energy it asks for in Wh, the most it takes in W) from a 2.0.1 chargingNeeds; None where it says not.
    AC: its maximum current on the phases of the energy transfer it asked for, at the site's voltage. DC: its
    maximum power, else current times voltage; the energy from its capacity and state of charge when it gives
    no amount."""
    ac, dc = needs.get("acChargingParameters"), needs.get("dcChargingParameters")
    if ac is not None:
        phases = _PHASES.get(needs.get("requestedEnergyTransfer", ""), 3)
        return float(ac["energyAmount"]), float(ac["evMaxCurrent"] * voltage_v * phases)
    if dc is not None:
        energy = dc.get("energyAmount")
        if energy is None and dc.get("evEnergyCapacity") is not None and dc.get("stateOfCharge") is not None:
            energy = dc["evEnergyCapacity"] * max(0, dc.get("fullSoC", 100) - dc["stateOfCharge"]) / 100
        power = dc.get("evMaxPower") or dc["evMaxCurrent"] * dc["evMaxVoltage"]
        return (None if energy is None else float(energy)), float(power)
    return None, None


def schedule_limit_w(schedules: Iterable[dict[str, Any]], now: datetime, received: datetime, voltage_v: float,
                     phases: int) -> float | None:  # fmt: skip
    """The strictest limit in W that these charging schedules put in force at `now` (a schedule without a
    start began when it was received); None when none says anything then."""
    found = None
    for schedule in schedules:
        start = parse_iso(schedule["startSchedule"]) if schedule.get("startSchedule") else received
        offset = (now - start).total_seconds()
        if offset < 0 or (schedule.get("duration") is not None and offset >= schedule["duration"]):
            continue
        periods = [p for p in schedule["chargingSchedulePeriod"] if p["startPeriod"] <= offset]
        if not periods:
            continue
        period = max(periods, key=lambda p: p["startPeriod"])
        watts = float(period["limit"])
        if schedule["chargingRateUnit"] == "A":
            watts *= voltage_v * (period.get("numberPhases") or phases)
        found = watts if found is None else min(found, watts)
    return found


def _plain(value: Any) -> Any:
    """JSON values as sent: the library's schema check leaves Decimals where the 1.6 schema wants tenths."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return float(value) if isinstance(value, Decimal) else value


def _evse(evse: int, charger_level: bool = True) -> int:
    try:
        Site.check_connector(evse, None, charger_level=charger_level)
    except ValueError as e:
        raise PropertyConstraintViolationError(description=str(e)) from None
    return evse


def _utc(text: str | None) -> str | None:
    """A time the profile carries, as the store keeps times (fixed-width UTC); as written when unreadable."""
    if text is None:
        return None
    try:
        return iso(parse_iso(text))
    except (ValueError, TypeError):
        return text
