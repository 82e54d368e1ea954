"""The simulated charger's answers about charging profiles and composite schedules, and (2.0.1) what a station
tells of its own accord: the profiles it holds when asked (ReportChargingProfiles, in parts), limits from its
other sources (NotifyChargingLimit, ClearedChargingLimit) and what its EV needs (NotifyEVChargingNeeds,
NotifyEVChargingSchedule) -- the functions at the end send those for a test or the demo.

A profile is accepted when its EVSE exists, its stack level is within what the charger says it takes, and (a
TxProfile) a session runs on its EVSE; the charger then holds it as sent. A ClearChargingProfile with an id
clears that profile wherever it is, otherwise every profile its filters match.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ocpp.charge_point import snake_to_camel_case
from ocpp.routing import on
from ocpp.v16 import call_result as result16
from ocpp.v16.enums import Action as Action16
from ocpp.v201 import call, call_result
from ocpp.v201.enums import Action

from gateway.clock import iso
from gateway.sim import profiles

REPORT_PART = 2  # profiles per ReportChargingProfiles: a station reports in parts, tbc on all but the last


class _Profiles:
    """What both versions decide the same way; ``self.sim`` is the charger."""

    sim: Any

    max_stack_level: Any  # each version reads it from its own configuration (a method of the subclass)

    def install(self, evse_id: int, profile: dict[str, Any]) -> bool:
        """A profile (snake_case, as the library hands it over) installed, or refused."""
        spec = self.sim.spec
        profile = snake_to_camel_case(profile)
        if int(profile["stackLevel"]) > self.max_stack_level():
            return False
        schedules = profile["chargingSchedule"]
        units = {s["chargingRateUnit"] for s in (schedules if isinstance(schedules, list) else [schedules])}
        if not units <= set(spec.profile_units):  # it says it takes both, but does not
            return False
        evse = self.sim.evses.get(evse_id)
        if profiles.purpose_of(profile["chargingProfilePurpose"]) == profiles.TX and evse is not None \
                and evse.tx_id is None and evse.tx_start is not None:  # fmt: skip
            # Its session is starting: the answer that names the transaction came before this request, only the
            # simulator has not taken it in yet (a charger reads its messages in order).
            self.sim.add_profile(evse_id, profiles.from_ocpp(profile, self.sim.clock()))
            return True
        return self.sim.set_profile(evse_id, profile)

    def clear(self, profile_id: int | None, evse_id: int | None, purpose: str | None, stack_level: int | None) -> bool:
        if profile_id is not None:  # an id names one profile: the filters do not narrow it
            evse_id = purpose = stack_level = None
        return self.sim.clear_profiles(profile_id, evse_id, profiles.purpose_of(purpose), stack_level) > 0

    def composite(self, evse_id: int, duration_s: int, unit: str | None) -> tuple[str, list[dict[str, Any]]] | None:
        """(unit, periods as the schedule spells them) from now on for `duration_s`; None for no such EVSE."""
        sim = self.sim
        if evse_id != 0 and evse_id not in sim.evses:
            return None
        evse = sim.evses.get(evse_id)
        periods = profiles.composite(evse.profiles if evse else [], sim.charger_profiles, sim.clock(), duration_s,
                                     evse.tx_start if evse else None, evse.tx_id if evse else None,
                                     sim.spec.voltage_v, sim.spec.phases, sim.spec.max_w, evse_id)  # fmt: skip
        unit = unit or "A"
        phases = {"number_phases": sim.spec.phases} if unit == "A" else {}
        return unit, [{"start_period": start, **phases,
                       "limit": profiles.in_unit(watts, unit, sim.spec.voltage_v, sim.spec.phases)}
                      for start, watts in periods]  # fmt: skip


class ChargingProfiles16(_Profiles):
    """Handlers mixed into the 1.6 simulated charger's protocol; ``self.sim`` is the charger."""

    def max_stack_level(self) -> int:
        return int(self.sim.config["ChargeProfileMaxStackLevel"])

    @on(Action16.set_charging_profile)
    def on_set_charging_profile(self, connector_id: int, cs_charging_profiles: dict,
                                **_: Any) -> result16.SetChargingProfile:  # fmt: skip
        accepted = self.install(connector_id, cs_charging_profiles)
        return result16.SetChargingProfile(status="Accepted" if accepted else "Rejected")

    @on(Action16.clear_charging_profile)
    def on_clear_charging_profile(self, id: int | None = None, connector_id: int | None = None,
                                  charging_profile_purpose: str | None = None, stack_level: int | None = None,
                                  **_: Any) -> result16.ClearChargingProfile:  # fmt: skip
        removed = self.clear(id, connector_id, charging_profile_purpose, stack_level)
        return result16.ClearChargingProfile(status="Accepted" if removed else "Unknown")

    @on(Action16.get_composite_schedule)
    def on_get_composite_schedule(self, connector_id: int, duration: int, charging_rate_unit: str | None = None,
                                  **_: Any) -> result16.GetCompositeSchedule:  # fmt: skip
        found = self.composite(connector_id, duration, charging_rate_unit)
        if found is None:
            return result16.GetCompositeSchedule(status="Rejected")
        unit, periods = found
        start = self.sim.now()
        return result16.GetCompositeSchedule(
            status="Accepted", connector_id=connector_id, schedule_start=start,
            charging_schedule={"duration": duration, "start_schedule": start, "charging_rate_unit": unit,
                               "charging_schedule_period": periods},
        )  # fmt: skip


class ChargingProfiles201(_Profiles):
    """Handlers mixed into the 2.0.1 simulated charger's protocol; ``self.sim`` is the charger."""

    def max_stack_level(self) -> int:
        return int(self.sim.variables[("SmartChargingCtrlr", "ProfileStackLevel")])

    @on(Action.set_charging_profile)
    def on_set_charging_profile(self, evse_id: int, charging_profile: dict,
                                **_: Any) -> call_result.SetChargingProfile:  # fmt: skip
        accepted = self.install(evse_id, charging_profile)
        return call_result.SetChargingProfile(status="Accepted" if accepted else "Rejected")

    @on(Action.clear_charging_profile)
    def on_clear_charging_profile(self, charging_profile_id: int | None = None,
                                  charging_profile_criteria: dict | None = None,
                                  **_: Any) -> call_result.ClearChargingProfile:  # fmt: skip
        criteria = charging_profile_criteria or {}
        removed = self.clear(charging_profile_id, criteria.get("evse_id"), criteria.get("charging_profile_purpose"),
                             criteria.get("stack_level"))  # fmt: skip
        return call_result.ClearChargingProfile(status="Accepted" if removed else "Unknown")

    @on(Action.get_composite_schedule)
    def on_get_composite_schedule(self, duration: int, evse_id: int, charging_rate_unit: str | None = None,
                                  **_: Any) -> call_result.GetCompositeSchedule:  # fmt: skip
        found = self.composite(evse_id, duration, charging_rate_unit)
        if found is None:
            return call_result.GetCompositeSchedule(status="Rejected")
        unit, periods = found
        return call_result.GetCompositeSchedule(status="Accepted", schedule={
            "evse_id": evse_id, "duration": duration, "schedule_start": self.sim.now(), "charging_rate_unit": unit,
            "charging_schedule_period": periods,
        })  # fmt: skip

    @on(Action.get_charging_profiles)
    def on_get_charging_profiles(self, request_id: int, charging_profile: dict, evse_id: int | None = None,
                                 **_: Any) -> call_result.GetChargingProfiles:  # fmt: skip
        found = self.held(evse_id, charging_profile)
        if not found:
            return call_result.GetChargingProfiles(status="NoProfiles")
        self.sim.spawn(self.report(request_id, found))
        return call_result.GetChargingProfiles(status="Accepted")

    def held(self, evse_id: int | None, criteria: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
        """(EVSE, profile as received) of the profiles that match GetChargingProfiles' criteria."""
        if "CSO" not in (criteria.get("charging_limit_source") or ["CSO"]):
            return []  # every profile here came from the CSMS
        purpose = profiles.purpose_of(criteria.get("charging_profile_purpose"))
        ids = criteria.get("charging_profile_id")
        lists = [(0, self.sim.charger_profiles)] + [(n, e.profiles) for n, e in sorted(self.sim.evses.items())]
        return [(n, p.raw) for n, held in lists if evse_id is None or n == evse_id for p in held
                if (purpose is None or p.purpose == purpose) and (ids is None or p.id in ids)
                and criteria.get("stack_level") in (None, p.stack_level)]  # fmt: skip

    async def report(self, request_id: int, found: list[tuple[int, dict[str, Any]]]) -> None:
        """ReportChargingProfiles: one EVSE per message, REPORT_PART profiles at most, tbc until the last."""
        parts = []
        for evse in sorted({n for n, _ in found}):
            mine = [p for n, p in found if n == evse]
            parts += [(evse, mine[i:i + REPORT_PART]) for i in range(0, len(mine), REPORT_PART)]
        for i, (evse, part) in enumerate(parts):
            await self.sim.call(call.ReportChargingProfiles(request_id=request_id, charging_limit_source="CSO",
                                                            charging_profile=part, evse_id=evse,
                                                            tbc=i < len(parts) - 1))  # fmt: skip


# -- what a 2.0.1 station sends of its own accord; each returns the gateway's answer --------------------------


async def notify_charging_limit(sim: Any, source: str = "EMS", evse_id: int | None = None,
                                grid_critical: bool | None = None,
                                schedule: list[dict[str, Any]] | None = None) -> Any:  # fmt: skip
    """An outside source (an EMS, the system operator) limits the station or one EVSE; `schedule`: its
    chargingSchedule list (camelCase), if it says one."""
    limit: dict[str, Any] = {"charging_limit_source": source}
    if grid_critical is not None:
        limit["is_grid_critical"] = grid_critical
    return await sim.call(call.NotifyChargingLimit(charging_limit=limit, charging_schedule=schedule, evse_id=evse_id))


async def cleared_charging_limit(sim: Any, source: str = "EMS", evse_id: int | None = None) -> Any:
    return await sim.call(call.ClearedChargingLimit(charging_limit_source=source, evse_id=evse_id))


async def notify_ev_charging_needs(sim: Any, evse_id: int, energy_wh: int, departure: datetime | None = None,
                                   max_current_a: int = 16, min_current_a: int = 6, phases: int = 3,
                                   max_schedule_tuples: int | None = None) -> Any:  # fmt: skip
    """The EV on an AC EVSE says what it needs (ISO 15118 ChargeParameterDiscovery, passed on by the station)."""
    transfer = {1: "AC_single_phase", 2: "AC_two_phase", 3: "AC_three_phase"}[phases]
    needs: dict[str, Any] = {"requested_energy_transfer": transfer, "ac_charging_parameters": {
        "energy_amount": energy_wh, "ev_min_current": min_current_a, "ev_max_current": max_current_a,
        "ev_max_voltage": 400}}  # fmt: skip
    if departure is not None:
        needs["departure_time"] = iso(departure)
    return await sim.call(call.NotifyEVChargingNeeds(charging_needs=needs, evse_id=evse_id,
                                                     max_schedule_tuples=max_schedule_tuples))  # fmt: skip


async def notify_ev_charging_schedule(sim: Any, evse_id: int, schedule: dict[str, Any],
                                      time_base: datetime | None = None) -> Any:  # fmt: skip
    """The schedule the EV chose (a chargingSchedule, camelCase), from `time_base` (now when not given) on."""
    return await sim.call(call.NotifyEVChargingSchedule(time_base=iso(time_base) if time_base else sim.now(),
                                                        charging_schedule=schedule, evse_id=evse_id))  # fmt: skip
