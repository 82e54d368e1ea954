"""How the load cap's limits reach one charger: the charging profile for each limit, and the way down when the
charger refuses one.

A charger says which profiles it takes (asked once per connection), but many take less than they say. So what
it refuses is remembered -- for this connection, and for its model -- and the next limit goes another way, in
this order:
1. the other rate unit (A or W);
2. a coarser control (drivers/ocpp/profiles.py): a limit per EVSE -> one limit for every EVSE alike -> one
   limit for the charger as a whole;
3. none: the charger cannot be steered; the load cap counts its rating as load it cannot move.
A refused request is not sent again within REFUSAL_MEMORY_S (it is then tried again: firmware changes, and a
refusal may have been a passing one). A charger that answers SetChargingProfile NotImplemented or NotSupported
refuses every way at once. `[[charger_models]]` / `[[chargers]]` control and rate_unit fix the way for chargers
known to need it.

The way in force is the charger's ``control`` point (and ``controllable``), for the load cap and for people.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from drivers.ocpp.frames import V16
from drivers.ocpp.profiles import CONTROLS, Capabilities, profile_request
from gateway.clock import utcnow
from gateway.commands import CommandError, SetChargingLimit
from gateway.points import charger_point

log = logging.getLogger(__name__)

REFUSAL_MEMORY_S = 600.0
_UNSUPPORTED = ("NotImplemented", "NotSupported")  # the action itself: every profile is refused

Refusals = dict[tuple[str, str], float]  # (control or purpose, unit) -> when refused (monotonic)


class Steering:
    def __init__(self, session: Any, voltage_v: float, model_memory: dict[tuple[str, str], Refusals],
                 charger: Any = None, models: list[Any] = (), clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        """charger: its ChargerSettings (control, rate_unit), models: [[charger_models]], for a fixed way."""
        self.session = session
        self.voltage_v = voltage_v
        self._models = model_memory  # shared by every session of the server
        self._charger = charger
        self._model_settings = list(models)
        self._clock = clock
        self._refused: Refusals = {}
        self._told: str | None = None  # the control last published
        self._warned: set[tuple[str, str]] = set()

    # -- what it knows -------------------------------------------------------------------------------------

    def _model(self) -> Refusals | None:
        key = self.session.model_key
        return None if key is None else self._models.setdefault(key, {})

    def refused(self, what: str, unit: str) -> bool:
        now = self._clock()
        for memory in (self._refused, self._model() or {}):
            when = memory.get((what, unit))
            if when is not None and now - when < REFUSAL_MEMORY_S:
                return True
        return False

    def _refuse(self, what: str, unit: str) -> None:
        now = self._clock()
        self._refused[(what, unit)] = now
        model = self._model()
        if model is not None:
            model[(what, unit)] = now

    def _fixed(self, name: str) -> str | None:
        """The charger's setting (control or rate_unit), else its model's; None for auto."""
        value = getattr(self._charger, name, None)
        if value is None and self.session.model_key is not None:
            vendor, model = self.session.model_key
            value = next((getattr(m, name) for m in self._model_settings
                          if m.model == model and m.vendor in (None, vendor)), None)  # fmt: skip
        return None if value in (None, "auto") else value

    def units(self, caps: Capabilities) -> tuple[str, ...]:
        fixed = self._fixed("rate_unit")
        if fixed is not None:
            return (fixed,)
        return (caps.unit, "W" if caps.unit == "A" else "A")

    def control(self, caps: Capabilities | None = None) -> str:
        """The finest way not refused in every unit (caps: what the charger said; both units until it said)."""
        fixed = self._fixed("control")
        if fixed is not None:
            return fixed
        units = self.units(caps or Capabilities()) if caps is not None else ("A", "W")
        return next((c for c in CONTROLS if not all(self.refused(c, u) for u in units)), "none")

    def publish(self) -> str:
        """The control in force as points (when it changed); returns it."""
        control = self.control(self.session.known_capabilities)
        if control != self._told:
            self._told = control
            image, charger_id = self.session.recorder.image, self.session.id
            image.update({charger_point(charger_id, "control"): control,
                          charger_point(charger_id, "controllable"): control != "none"})  # fmt: skip
        return control

    # -- a limit -------------------------------------------------------------------------------------------

    async def apply(self, cmd: SetChargingLimit) -> dict[str, Any]:
        """Send a limit the way this charger takes it; the charger's answer, or CommandError: rejected (it said no
        to every unit; a dynamic limit will take the next way from now on), unsupported (nothing left to try)."""
        session = self.session
        caps = await session.capabilities()
        dynamic = cmd.purpose == "dynamic"
        control = self.publish() if dynamic else "evse"
        what = control if dynamic else cmd.purpose
        if control == "none":
            raise CommandError("unsupported", f"{session.id} refused every charging profile: it is not steered")
        if dynamic and (cmd.evse == 0) != (control != "evse"):
            raise CommandError("invalid", f"{session.id} is steered {_WAYS[control]}: its limit goes on "
                               f"{'EVSE 0' if control != 'evse' else 'each EVSE'}")  # fmt: skip
        running = session.running.get(cmd.evse) if dynamic else None
        tx_id = None if running is None else (running.id if session.version == V16 else running.ocpp_id)
        answer: dict[str, Any] | None = None
        for unit in self.units(caps):
            if self.refused(what, unit):
                continue
            try:
                action, payload = profile_request(session.version, cmd.purpose, cmd.evse, cmd.limit_w, cmd.phases,
                                                  self.voltage_v, caps, utcnow(), cmd.valid_s, tx_id, control, unit)
            except ValueError as e:
                raise CommandError("unsupported", f"{session.id}: {e}") from None
            try:
                answer = await session.request(action, payload, key=f"{cmd.purpose}:{cmd.evse}")
            except CommandError as e:
                if e.code != "call_error":
                    raise  # offline, timeout, busy, superseded: nothing learnt about what it takes
                if (e.details or {}).get("errorCode") in _UNSUPPORTED:
                    for way in (*CONTROLS, *PURPOSES):
                        for u in ("A", "W"):
                            self._refuse(way, u)
                    self._say(what, unit, e.details["errorCode"])
                    self.publish()
                    raise CommandError("unsupported", f"{session.id} does not take charging profiles "
                                       f"({e.details['errorCode']}): it is not steered", e.details) from None  # fmt: skip
                answer = {"callError": e.details}
            if answer.get("status") == "Accepted":
                return answer
            self._refuse(what, unit)
            self._say(what, unit, answer.get("status") or answer.get("callError"))
        if dynamic:
            after = self.publish()
            raise CommandError("rejected", f"{session.id} refused its limit {_WAYS[control]}; from now on it is "
                               f"steered {_WAYS[after]}", answer)  # fmt: skip
        raise CommandError("rejected", f"{session.id} refused the {cmd.purpose} limit", answer)

    def _say(self, what: str, unit: str, answer: Any) -> None:
        """One warning per refused way and connection; INFO when it is tried again later and refused again."""
        first = (what, unit) not in self._warned
        self._warned.add((what, unit))
        log.log(logging.WARNING if first else logging.INFO, "charging profile refused charger=%s way=%s unit=%s "
                "answer=%s", self.session.id, what, unit, answer)  # fmt: skip


PURPOSES = ("baseline", "ceiling", "default")
_WAYS = {"evse": "per EVSE", "each_evse": "with one limit for every EVSE", "charger": "as a whole",
         "none": "not at all"}  # fmt: skip
