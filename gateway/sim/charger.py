"""A simulated charger on a real websocket: it connects (with Basic auth), boots, reports its connectors, runs
charging sessions for simulated EVs and honours the charging profiles it is given.

Like a real charger it reconnects with backoff when the link drops and keeps its transaction messages
(MeterValues of a session, StopTransaction / TransactionEvent) in order while offline, to send them once it
is back. Tests drive it step by step (plug_in, start_session, advance, send_meter_values, stop_session);
the demo lets it run on autopilot, with cars arriving and leaving at random.

Version specifics (message shapes, handlers of the gateway's requests) live in ocpp16.py and ocpp201.py.
"""

from __future__ import annotations

import abc
import asyncio
import base64
import contextlib
import json
import logging
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ocpp.charge_point import ChargePoint
from ocpp.exceptions import OCPPError
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from gateway.clock import iso, utcnow
from gateway.sim import certificates, profiles
from gateway.sim.ev import Ev, random_ev
from gateway.tasks import raise_if_cancelled

log = logging.getLogger(__name__)


@dataclass
class SimSpec:
    id: str
    version: str = "1.6"  # or "2.0.1"
    url: str = "ws://127.0.0.1:9000/ocpp"  # the charger id is appended
    password: str | None = None
    evses: int = 1
    max_w: float = 22000.0
    phases: int = 3
    phase_rotation: str = "L1L2L3"  # which site phases its L1, L2, L3 are
    voltage_v: float = 230.0
    meter_interval_s: float = 10.0
    vendor: str = "evedge"
    model: str = "SimCharger"
    tls: certificates.SimTls | None = None  # for a wss:// url: the CA to trust, its client certificate if any
    # Quirks of real chargers, for the tests of what the gateway must cope with:
    before_boot: str = "answer"  # requests before its boot is accepted: answer, refuse (SecurityError), ignore
    boot_delay_s: float = 0.0  # how long after connecting it sends its BootNotification
    smart_charging: bool = True  # False: SetChargingProfile answered NotImplemented
    profile_units: tuple[str, ...] = ("A", "W")  # the units it really takes (it says it takes both)
    forgets_profiles: bool = False  # every charging profile lost when it reboots
    slow: dict[str, float] = field(default_factory=dict)  # action -> seconds it takes to answer the gateway


@dataclass
class SimEvse:
    id: int
    meter_wh: float
    status: str = "Available"
    available: bool = True
    ev: Ev | None = None
    power_w: float = 0.0
    limit_w: float | None = None
    tx_id: str | None = None
    tx_start: datetime | None = None
    id_tag: str | None = None
    seq_no: int = 0
    profiles: list[profiles.Profile] = field(default_factory=list)
    reservation_id: int | None = None  # a reservation this EVSE holds

    @property
    def charging(self) -> bool:
        return self.tx_id is not None


class Listening(ChargePoint):
    """The library's ChargePoint, noting every request the gateway sends (tests check what reached a charger)."""

    def __init__(self, sim: Any, ws: Any) -> None:
        super().__init__(sim.spec.id, ws, response_timeout=30)
        self.sim = sim

    async def route_message(self, raw_msg: str) -> None:
        self.sim.heard_request(raw_msg)
        with contextlib.suppress(ValueError, IndexError, TypeError, KeyError):
            message = json.loads(raw_msg)
            if message[0] == 2:  # a request from the gateway
                spec = self.sim.spec
                if not self.sim.accepted and spec.before_boot != "answer":
                    self.sim.refused_before_boot.append(message[2])
                    if spec.before_boot == "refuse":  # as strict chargers do (SecurityError)
                        await self._send(json.dumps([4, message[1], "SecurityError", "not booted yet", {}]))
                    return
                if message[2] == "SetChargingProfile" and not spec.smart_charging:
                    await self._send(json.dumps([4, message[1], "NotImplemented", "no smart charging here", {}]))
                    return
                if message[2] in spec.slow:
                    await asyncio.sleep(spec.slow[message[2]])  # its receive loop waits too, as a real one's
        await super().route_message(raw_msg)


class Offline(Exception):
    """The charger is not connected; the message was kept for later."""


class SimCharger(abc.ABC):
    def __init__(self, spec: SimSpec, *, clock: Callable[[], datetime] = utcnow, seed: int | None = None,
                 reconnect_min_s: float = 1.0, reconnect_max_s: float = 30.0) -> None:  # fmt: skip
        self.spec = spec
        self.clock = clock
        self.rng = random.Random(seed if seed is not None else spec.id)
        self.evses = {n: SimEvse(n, meter_wh=float(self.rng.randint(100_000, 5_000_000)))
                      for n in range(1, spec.evses + 1)}  # fmt: skip
        self.charger_profiles: list[profiles.Profile] = []  # connector / EVSE 0
        self.connected = asyncio.Event()
        self.boots = 0
        self.refused: int | None = None  # HTTP status of the last refused handshake
        self._cp: ChargePoint | None = None
        self._backlog: deque[Any] = deque()  # transaction messages waiting for the link
        self._reconnect = (reconnect_min_s, reconnect_max_s)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._drop = asyncio.Event()
        self.heard: list[str] = []  # actions of the requests the gateway sent, in order
        self.refused_before_boot: list[str] = []  # requests that came before its boot was accepted (before_boot)
        self.accepted = False  # its boot accepted on the present link
        self.wallet = certificates.Wallet(spec.tls)  # its certificates: TLS identity, trusted and installed CAs
        self.firmware_version = "sim-1.0"  # what it boots with; an UpdateFirmware installs another
        self.firmware_sha256: str | None = None
        self.local_list: dict[str, Any] = {}  # the local authorization list the central system sent
        self.local_list_version = 0

    # -- what a version module provides (ocpp16.Sim16, ocpp201.Sim201) -------------------------------------

    @abc.abstractmethod
    def make_protocol(self, ws: Any) -> ChargePoint:
        """The library's ChargePoint for this link, with handlers for the gateway's requests."""

    @abc.abstractmethod
    async def boot(self) -> None:
        """BootNotification; keeps the heartbeat interval it is given."""

    @abc.abstractmethod
    async def send_status(self, evse: SimEvse, forced: bool = False) -> None:
        """Tell the gateway the EVSE's status (raises Offline without a link); forced: even if unchanged."""

    @abc.abstractmethod
    async def begin(self, evse: SimEvse, trigger: str, remote_start_id: int | None = None) -> None:
        """Authorize if needed and start the transaction; sets evse.tx_id."""

    @abc.abstractmethod
    def meter_message(self, evse: SimEvse, context: str, offline: bool = False) -> Any:
        """The request that carries one sample of this EVSE (offline: taken while it had no link)."""

    @abc.abstractmethod
    async def end(self, evse: SimEvse, reason: str) -> None:
        """Stop the transaction (kept for later when offline)."""

    @abc.abstractmethod
    async def heartbeat(self) -> None:
        """Heartbeat."""

    @abc.abstractmethod
    def heartbeat_interval_s(self) -> float:
        """As the gateway set it at boot (or later through the configuration)."""

    # -- the link ----------------------------------------------------------------------------------------

    @property
    def subprotocol(self) -> str:
        return "ocpp1.6" if self.spec.version == "1.6" else "ocpp2.0.1"

    async def run(self) -> None:
        """Stay connected until cancelled: reconnect with capped exponential backoff."""
        delay = self._reconnect[0]
        while True:
            try:
                await self._session()
                delay = self._reconnect[0]
            except InvalidStatus as e:
                self.refused = e.response.status_code
                log.warning("sim %s refused by the gateway: HTTP %s", self.spec.id, self.refused)
            except InvalidHandshake as e:  # TLS 1.3: a refused client certificate shows once the upgrade is sent
                log.warning("sim %s: no websocket handshake: %s", self.spec.id, e)
            except (OSError, ConnectionClosed, TimeoutError, Offline, OCPPError) as e:
                log.info("sim %s link down: %s", self.spec.id, e)
            finally:
                self.connected.clear()
                self._cp = None
            raise_if_cancelled()  # stopped while a library call swallowed it: do not reconnect
            await asyncio.sleep(delay * self.rng.uniform(0.8, 1.2))
            delay = min(delay * 2, self._reconnect[1])

    async def _session(self) -> None:
        headers = {}
        if self.spec.password is not None:
            token = base64.b64encode(f"{self.spec.id}:{self.spec.password}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        url = f"{self.spec.url.rstrip('/')}/{self.spec.id}"
        tls = self.wallet.client_context() if url.startswith("wss://") else None  # its certificate as of now
        async with connect(url, subprotocols=[self.subprotocol], additional_headers=headers,  # type: ignore[list-item]
                           open_timeout=10, compression=None, ssl=tls) as ws:  # fmt: skip
            self.refused = None
            self.accepted = False
            cp = self.make_protocol(ws)
            receiving = asyncio.create_task(cp.start())
            self._cp = cp
            try:
                if self.spec.boot_delay_s:
                    await asyncio.sleep(self.spec.boot_delay_s)
                await self.boot()
                self.accepted = True
                self.boots += 1
                await self._flush_backlog()
                for evse in self.evses.values():
                    await self.send_status(evse)
                self.connected.set()
                self._drop.clear()
                dropped = asyncio.create_task(self._drop.wait())
                await asyncio.wait({receiving, dropped}, return_when=asyncio.FIRST_COMPLETED)
                dropped.cancel()
                receiving.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                    await receiving
            finally:
                receiving.cancel()

    async def request_certificate(self, certificate_type: str | None = None, common_name: str | None = None) -> str:
        """A new key and its CSR sent (SignCertificate); the gateway's answer. The certificate comes with
        CertificateSigned and serves from the next connection on."""
        return await certificates.request_certificate(self, certificate_type, common_name)

    def heard_request(self, raw: str) -> None:
        with contextlib.suppress(ValueError, IndexError, TypeError):
            message = json.loads(raw)
            if message[0] == 2:
                self.heard.append(message[2])

    def drop_link(self) -> None:
        """Close the websocket as a reset would; run() reconnects."""
        self._drop.set()

    async def call(self, payload: Any, *, check: bool = True) -> Any:
        """A request to the gateway now; raises Offline when there is no link. ``check=False`` sends it even when
        it breaks the schema, as non-compliant chargers do."""
        cp = self._cp
        if cp is None:
            raise Offline(self.spec.id)
        try:
            answer = await cp.call(payload, suppress=False, skip_schema_validation=not check)
        except (ConnectionClosed, TimeoutError) as e:
            raise Offline(self.spec.id) from e
        raise_if_cancelled()  # the library waits with wait_for, which on Python 3.11 can swallow a cancellation
        return answer

    async def call_durable(self, payload: Any) -> Any:
        """A transaction message: sent now when the link is up, else kept in order for the next connection."""
        if self._backlog or self._cp is None:
            self._backlog.append(payload)
            return None
        try:
            return await self.call(payload)
        except Offline:
            self._backlog.append(payload)
            return None

    async def _flush_backlog(self) -> None:
        while self._backlog:
            try:
                await self.call(self._backlog[0])
            except OCPPError as e:
                log.warning("sim %s: queued message refused (%s), dropped", self.spec.id, e)
            self._backlog.popleft()

    @property
    def backlog(self) -> int:
        return len(self._backlog)

    def spawn(self, coro: Any) -> None:
        """Work that must not run inside a handler (the receive loop would stall)."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- what happens at the connectors --------------------------------------------------------------------

    def evse(self, evse_id: int | None = None) -> SimEvse:
        if evse_id is None:
            return next((e for e in self.evses.values() if e.ev is None and e.available), self.evses[1])
        return self.evses[evse_id]

    async def set_status(self, evse: SimEvse, status: str) -> None:
        if evse.status != status:
            evse.status = status
            with contextlib.suppress(Offline):
                await self.send_status(evse)

    async def plug_in(self, evse_id: int | None = None, ev: Ev | None = None) -> SimEvse:
        evse = self.evse(evse_id)
        evse.ev = ev or random_ev(self.rng, f"TAG-{self.rng.randint(1000, 9999)}")
        await self.set_status(evse, "Preparing")
        return evse

    async def start_session(self, evse_id: int | None = None, id_tag: str | None = None,
                            remote_start_id: int | None = None) -> SimEvse:  # fmt: skip
        """Authorize (unless remote), then start; returns the EVSE with its transaction id."""
        evse = self.evse(evse_id)
        if evse.ev is None:
            await self.plug_in(evse.id)
        assert evse.ev is not None
        evse.id_tag = id_tag or evse.ev.id_tag
        evse.tx_start = self.clock()
        evse.seq_no = 0
        await self.begin(evse, "RemoteStart" if remote_start_id is not None else "Authorized", remote_start_id)
        self.update_power()
        await self.set_status(evse, self._charging_status(evse))
        return evse

    async def send_meter_values(self, evse_id: int = 1, context: str = "Sample.Periodic") -> None:
        evse = self.evses[evse_id]
        message = self.meter_message(evse, context)
        if evse.charging:
            await self.call_durable(message)
        else:
            with contextlib.suppress(Offline):
                await self.call(message)

    async def stop_session(self, evse_id: int = 1, reason: str = "Local") -> None:
        evse = self.evses[evse_id]
        if not evse.charging:
            return
        evse.power_w = 0.0
        await self.end(evse, reason)
        evse.tx_id = evse.tx_start = None
        evse.profiles = [p for p in evse.profiles if p.purpose != profiles.TX]
        await self.set_status(evse, "Finishing")

    async def unplug(self, evse_id: int = 1) -> None:
        evse = self.evses[evse_id]
        if evse.charging:
            await self.stop_session(evse_id, "EVDisconnected")
        evse.ev = None
        await self.set_status(evse, "Available" if evse.available else "Unavailable")

    def advance(self, seconds: float) -> None:
        """Let time pass: every EV charges at its present power; registers move on."""
        for evse in self.evses.values():
            if evse.charging and evse.ev is not None:
                evse.meter_wh += evse.ev.charge(evse.power_w, seconds)
        self.update_power()

    def update_power(self) -> None:
        """Apply the profiles in force now to what each car takes."""
        now = self.clock()
        ceiling = profiles.limit_w(self.charger_profiles, profiles.MAX, now, None, self.spec.voltage_v,
                                   self.spec.phases)  # fmt: skip
        for evse in self.evses.values():
            limit = profiles.evse_limit_w(evse.profiles, self.charger_profiles, now, evse.tx_start, evse.tx_id,
                                          self.spec.voltage_v, self.spec.phases)  # fmt: skip
            evse.limit_w = profiles.cap(profiles.cap(limit, ceiling), self.spec.max_w)
            evse.power_w = evse.ev.draw_w(evse.limit_w) if evse.charging and evse.ev is not None else 0.0
        # The charger's maximum holds for all its EVSEs together: they give way in proportion.
        total = sum(e.power_w for e in self.evses.values())
        if ceiling is not None and total > ceiling:
            for evse in self.evses.values():
                evse.power_w *= ceiling / total

    def _charging_status(self, evse: SimEvse) -> str:
        if evse.power_w > 0:
            return "Charging"
        if evse.limit_w is not None and evse.limit_w <= 0:
            return "SuspendedEVSE"
        return "SuspendedEV"

    async def refresh_statuses(self) -> None:
        for evse in self.evses.values():
            if evse.charging:
                await self.set_status(evse, self._charging_status(evse))

    # -- the gateway's requests, decided once for both versions (the protocol classes only translate) -------

    def remote_start(self, evse_id: int | None, id_tag: str, profile: dict[str, Any] | None,
                     remote_start_id: int) -> bool:  # fmt: skip
        """Accept a remote start when the EVSE is free; the session starts outside the handler."""
        evse = self.evses.get(evse_id) if evse_id else self.evse()
        if evse is None or evse.charging or not evse.available:
            return False
        if profile is not None:
            self.add_profile(evse.id, profiles.from_ocpp(profile, self.clock()))
        self.spawn(self.start_session(evse.id, id_tag, remote_start_id=remote_start_id))
        return True

    def remote_stop(self, transaction_id: str) -> bool:
        evse = next((e for e in self.evses.values() if e.tx_id == transaction_id), None)
        if evse is None:
            return False
        self.spawn(self.stop_session(evse.id, "Remote"))
        return True

    def reboot(self, reason: str) -> None:
        """Stop every session, then drop the link as a restarting charger does; run() reconnects and boots. A
        charger that forgets its profiles loses them all."""

        async def reboot() -> None:
            for evse in self.evses.values():
                await self.stop_session(evse.id, reason)
            if self.spec.forgets_profiles:
                self.charger_profiles.clear()
                for evse in self.evses.values():
                    evse.profiles.clear()
                self.update_power()
            self.drop_link()

        self.spawn(reboot())

    def buffer_history(self, evse_id: int, seconds: float, every_s: float, power_w: float) -> int:
        """What a charger that was offline for `seconds` kept to send: the MeterValues of the session on
        `evse_id`, one every `every_s`, at `power_w`, each with the time it was taken (its register rising to
        where it is now). They go out in order after its next boot; returns how many."""
        evse = self.evses[evse_id]
        clock, power, meter = self.clock, evse.power_w, evse.meter_wh
        now, count = clock(), int(seconds // every_s)
        try:
            for i in range(count):
                ago = seconds - i * every_s
                self.clock = lambda ago=ago: now - timedelta(seconds=ago)  # type: ignore[misc]
                evse.power_w, evse.meter_wh = power_w, meter - power_w * ago / 3600
                self._backlog.append(self.meter_message(evse, "Sample.Periodic", offline=True))
        finally:
            self.clock, evse.power_w, evse.meter_wh = clock, power, meter
        return count

    def set_availability(self, evse_id: int | None, available: bool) -> str:
        """Accepted, Scheduled (a session runs: it applies after it), or Rejected (no such EVSE)."""
        targets = list(self.evses.values()) if not evse_id else [self.evses.get(evse_id)]
        if None in targets:
            return "Rejected"
        scheduled = not available and any(e.charging for e in targets if e is not None)
        for evse in targets:
            assert evse is not None
            evse.available = available
            if not evse.charging:
                self.spawn(self.set_status(evse, "Available" if available else "Unavailable"))
        return "Scheduled" if scheduled else "Accepted"

    def set_profile(self, evse_id: int, profile: dict[str, Any]) -> bool:
        """Install a profile (camelCase, either version); a TxProfile needs a running session on its EVSE."""
        if evse_id != 0 and evse_id not in self.evses:
            return False
        parsed = profiles.from_ocpp(profile, self.clock())
        if parsed.purpose == profiles.TX and (evse_id == 0 or not self.evses[evse_id].charging):
            return False
        self.add_profile(evse_id, parsed)
        return True

    def trigger(self, message: str, evse_id: int | None) -> bool:
        """Send a message on request; False for one this charger cannot send."""
        evses = [self.evses[evse_id]] if evse_id in self.evses else list(self.evses.values())
        if message == "BootNotification":
            self.spawn(self.boot())
        elif message == "Heartbeat":
            self.spawn(self.heartbeat())
        elif message == "StatusNotification":
            for evse in evses:
                self.spawn(self.send_status(evse, forced=True))
        elif message in ("MeterValues", "TransactionEvent"):
            for evse in evses:
                self.spawn(self.send_meter_values(evse.id, "Trigger"))
        else:
            return False
        return True

    def add_profile(self, evse_id: int, profile: profiles.Profile) -> None:
        target = self.charger_profiles if evse_id == 0 else self.evses[evse_id].profiles
        # A new profile replaces one with the same id, or the same stack level and purpose.
        target[:] = [p for p in target if p.id != profile.id and
                     (p.stack_level, p.purpose) != (profile.stack_level, profile.purpose)]  # fmt: skip
        target.append(profile)
        self.update_power()
        self.spawn(self.refresh_statuses())

    def clear_profiles(self, profile_id: int | None = None, evse_id: int | None = None,
                       purpose: str | None = None, stack_level: int | None = None) -> int:  # fmt: skip
        removed = 0
        lists = [(0, self.charger_profiles)] + [(n, e.profiles) for n, e in self.evses.items()]
        for n, target in lists:
            if evse_id is not None and n != evse_id:
                continue
            keep = [p for p in target if not (
                (profile_id is None or p.id == profile_id) and (purpose is None or p.purpose == purpose)
                and (stack_level is None or p.stack_level == stack_level))]  # fmt: skip
            removed += len(target) - len(keep)
            target[:] = keep
        self.update_power()
        self.spawn(self.refresh_statuses())
        return removed

    def meter_value(self, evse: SimEvse, context: str) -> dict[str, Any]:
        """One MeterValue of this EVSE, in the version's shape (snake_case: the library turns it to camelCase)."""
        return {
            "timestamp": self.now(),
            "sampled_value": [
                {**self.wire_value(value, unit), "context": context, "measurand": measurand,
                 **({"phase": phase} if phase else {}), **({"location": location} if location else {})}
                for measurand, value, unit, phase, location in self.sampled(evse)
            ],
        }  # fmt: skip

    @staticmethod
    @abc.abstractmethod
    def wire_value(value: float, unit: str) -> dict[str, Any]:
        """A value and its unit as the version writes them."""

    def sampled(self, evse: SimEvse) -> list[tuple[str, float, str, str | None, str | None]]:
        """(measurand, value, unit, phase, location) of one sample of this EVSE."""
        values: list[tuple[str, float, str, str | None, str | None]] = [
            ("Energy.Active.Import.Register", round(evse.meter_wh, 1), "Wh", None, "Outlet"),
            ("Power.Active.Import", round(evse.power_w, 1), "W", None, "Outlet"),
        ]
        phases = min(evse.ev.phases, self.spec.phases) if evse.ev else self.spec.phases
        amps = evse.power_w / (self.spec.voltage_v * phases)
        for n in range(1, 4):
            values.append(("Current.Import", round(amps if n <= phases else 0.0, 2), "A", f"L{n}", "Outlet"))
        if evse.ev is not None:
            values.append(("SoC", round(evse.ev.soc, 1), "Percent", None, "EV"))
        return values

    def now(self) -> str:
        return iso(self.clock())

    # -- autopilot (demo) --------------------------------------------------------------------------------

    async def autopilot(self, arrival_s: tuple[float, float] = (3, 20), dwell_s: tuple[float, float] = (20, 90),
                        tick_s: float = 1.0, visits: bool = True) -> None:  # fmt: skip
        """Cars come and go at random (unless visits is False: a test plugs them in); meter values every
        meter_interval_s; profiles honoured as time passes."""
        await self.connected.wait()
        for evse in self.evses.values():
            if visits:
                self.spawn(self._visits(evse, arrival_s, dwell_s))
        last = loop_time = asyncio.get_running_loop().time()
        next_meter = loop_time + self.spec.meter_interval_s
        next_heartbeat = loop_time + self.heartbeat_interval_s()
        while True:
            await asyncio.sleep(tick_s)
            now = asyncio.get_running_loop().time()
            self.advance(now - last)
            last = now
            await self.refresh_statuses()
            if now >= next_meter:
                next_meter = now + self.spec.meter_interval_s
                for evse in self.evses.values():
                    if evse.charging:
                        await self.send_meter_values(evse.id)
            if now >= next_heartbeat and self.connected.is_set():
                next_heartbeat = now + self.heartbeat_interval_s()
                with contextlib.suppress(Offline):
                    await self.heartbeat()

    async def _visits(self, evse: SimEvse, arrival_s: tuple[float, float], dwell_s: tuple[float, float]) -> None:
        while True:
            await asyncio.sleep(self.rng.uniform(*arrival_s))
            await self.connected.wait()
            if not evse.available or evse.ev is not None:
                continue
            await self.plug_in(evse.id)
            try:
                await self.start_session(evse.id)
            except (Offline, OCPPError) as e:
                log.info("sim %s could not start: %s", self.spec.id, e)
                await self.unplug(evse.id)
                continue
            stay = self.rng.uniform(*dwell_s)
            waited = 0.0
            while waited < stay and evse.charging and not (evse.ev and evse.ev.full):
                await asyncio.sleep(1.0)
                waited += 1.0
            await self.stop_session(evse.id, "EVDisconnected" if evse.ev and evse.ev.full else "Local")
            await asyncio.sleep(self.rng.uniform(1, 4))
            await self.unplug(evse.id)
