"""What chargers say, version-blind: records in the store first, then points in the process image.

The 1.6 and 2.0.1 sessions translate their messages into these calls, so everything above the driver sees
one model. Every call returns only after the store committed, so a session answers a charger only for what
is on disk.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ocpp.exceptions import PropertyConstraintViolationError

from drivers.ocpp import measurands
from gateway.authorization import Decision
from gateway.clock import iso, utcnow
from gateway.model import Site
from gateway.points import FLOW, ProcessImage, Quality, charger_point, evse_point
from gateway.settings import AuthorizationSettings
from gateway.store import Sample, Store, Transaction

log = logging.getLogger(__name__)

RESERVATION_CHECK_S = 2.0  # how late the gateway may notice that a reservation expired
LIVE_WINDOW_S = 120.0  # a meter value older than this when it arrives is history: recorded, not shown live
_registrations = itertools.count(1)


def _check(evse: int, connector: int | None, charger_level: bool = True) -> None:
    try:
        Site.check_connector(evse, connector, charger_level=charger_level)
    except ValueError as e:
        raise PropertyConstraintViolationError(description=str(e)) from None


@dataclass(frozen=True)
class MeterValue:
    """One timestamped MeterValue as received: its sampled values, camelCase as on the wire."""

    ts: datetime
    sampled_value: list[dict[str, Any]]


class Recorder:
    def __init__(self, site: Site, image: ProcessImage, store: Store,
                 authorization: AuthorizationSettings | None = None) -> None:  # fmt: skip
        self.site = site
        self.image = image
        self.store = store
        self._shown: dict[tuple[Any, ...], datetime] = {}  # the source time of what is shown, per EVSE and kind
        self._late: set[tuple[Any, ...]] = set()  # EVSEs whose last samples were too old to show (said once)
        policy = authorization or AuthorizationSettings()
        self.accept_unknown_badges = policy.unknown_badges == "accept"
        self.cache_badges = policy.cache_days > 0

    async def connected(self, charger_id: str, version: str, remote: str | None) -> list[Transaction]:
        """A charger is online; returns its sessions still running, as the store has them."""
        now = utcnow()
        await self.store.chargers.connected(charger_id, version, now)
        if charger_id not in self.site.chargers:
            self.site.add_charger(charger_id)
        self.image.set(charger_point(charger_id, "online"), True, now)
        self.image.set(charger_point(charger_id, "ocpp_version"), version, now)
        running = await self.store.transactions.open_for(charger_id)
        for tx in running:
            self._show_open(tx)
        log.info("charger connected charger=%s version=%s remote=%s", charger_id, version, remote)
        return running

    def registered(self, charger_id: str) -> None:
        """The charger may be sent requests now (its boot accepted, or it spoke first on a reconnect): a new
        registration number, which tells the load cap to prepare it afresh."""
        self.image.set(charger_point(charger_id, "registration"), next(_registrations))
        log.info("charger registered charger=%s", charger_id)

    async def disconnected(self, charger_id: str) -> None:
        now = utcnow()
        self.image.update({charger_point(charger_id, "online"): False, charger_point(charger_id, "registration"): 0},
                          now)  # fmt: skip
        # The last values stay visible, but nobody vouches for them any more -- except what a meter measures.
        prefix = f"chargers/{charger_id}/evse/"
        self.image.mark_points([n for n, _ in self.image.items(prefix) if not self._metered(charger_id, n)],
                               Quality.uncertain)  # fmt: skip
        await self.store.chargers.disconnected(charger_id, now)
        log.info("charger disconnected charger=%s", charger_id)

    async def booted(self, charger_id: str, vendor: str, model: str, serial: str | None, firmware: str | None) -> None:
        await self.store.chargers.booted(charger_id, utcnow(), vendor, model, serial, firmware)
        log.info("charger booted charger=%s vendor=%s model=%s firmware=%s", charger_id, vendor, model, firmware)

    async def status(self, charger_id: str, evse: int, connector: int, status: str, error_code: str | None = None,
                     info: str | None = None, ts: datetime | None = None,
                     vendor_error_code: str | None = None) -> None:  # fmt: skip
        """Status of an EVSE's connector in the 1.6 vocabulary; EVSE 0 is the charger as a whole."""
        ts = ts or utcnow()
        _check(evse, connector)
        await self.store.chargers.status(charger_id, evse, connector, status, error_code, info, ts, vendor_error_code)
        if not self._newest(("status", charger_id, evse, connector), ts):
            log.info("a status older than the one shown is recorded only charger=%s evse=%d status=%s ts=%s",
                     charger_id, evse, status, iso(ts))  # fmt: skip
            return
        # The error's details before the status: whoever reacts to a Faulted status finds them there.
        details = {"error_code": error_code or "NoError", "error_info": info or "",
                   "vendor_error_code": vendor_error_code or ""}  # fmt: skip
        if evse == 0:
            self.image.update({charger_point(charger_id, k): v for k, v in details.items()}, ts)
            self.image.set(charger_point(charger_id, "status"), status, ts)
            return
        if self.site.see_connector(charger_id, evse, connector) and self.site.chargers[charger_id].configured:
            log.warning("charger reports EVSE %d connector %d, more than its config says charger=%s", evse,
                        connector, charger_id)  # fmt: skip
        self.image.update({evse_point(charger_id, evse, k): v for k, v in details.items()}, ts)
        self.image.set(evse_point(charger_id, evse, "status"), status, ts)

    async def authorize(self, charger_id: str, id_tag: str) -> Decision:
        """Accepted, Invalid, Expired or Blocked, with the badge's expiry and group (gateway/authorization.py)."""
        decision = await self.store.badges.authorize(charger_id, id_tag, utcnow(), self.accept_unknown_badges,
                                                     remember=self.cache_badges)  # fmt: skip
        if decision.status != "Accepted":
            log.info("badge refused charger=%s id_tag=%s status=%s source=%s", charger_id, id_tag, decision.status,
                     decision.source)  # fmt: skip
        return decision

    async def reserved(self, charger_id: str, reservation_id: int, evse: int | None, id_tag: str,
                       parent: str | None, expiry: datetime) -> None:  # fmt: skip
        """A reservation the charger accepted; EVSE 0 / None reserves the charger as a whole."""
        await self.store.badges.reserved(charger_id, reservation_id, evse, id_tag, parent, expiry, utcnow())
        if evse:
            self.image.set(evse_point(charger_id, evse, "reservation_id"), reservation_id)
        log.info("reservation made charger=%s evse=%s reservation=%s expiry=%s", charger_id, evse, reservation_id,
                 iso(expiry))  # fmt: skip

    async def reservation_ended(self, charger_id: str, reservation_id: int, status: str,
                                transaction_id: int | None = None) -> None:  # fmt: skip
        ended = await self.store.badges.reservation_ended(charger_id, reservation_id, status, utcnow(), transaction_id)
        if ended is None:
            return
        evse = ended["evse"]
        if evse and self.image.value(evse_point(charger_id, evse, "reservation_id")) == reservation_id:
            self.image.set(evse_point(charger_id, evse, "reservation_id"), 0)
        log.info("reservation ended charger=%s reservation=%s status=%s", charger_id, reservation_id, status)

    async def reservation_for(self, charger_id: str, evse: int, id_tag: str | None, parent: str | None,
                              reservation_id: int | None) -> tuple[str, int | None]:  # fmt: skip
        """Whether a session may start here, and the reservation it uses: the one it names, or the one on its EVSE
        that its badge or group holds. On an EVSE reserved for another badge the answer is Invalid: the
        reservation is honoured. Reads only; :meth:`start` marks the reservation used."""
        if reservation_id is not None:
            return "Accepted", reservation_id
        for r in await self.store.badges.reservations(charger_id, active_at=utcnow()):
            if r["evse"] not in (None, evse):
                continue
            if id_tag == r["id_tag"] or (parent is not None and parent == r["parent_id_tag"]):
                return "Accepted", r["reservation_id"]
            if r["evse"] == evse:
                log.warning("session on an EVSE reserved for another badge charger=%s evse=%s reservation=%s",
                            charger_id, evse, r["reservation_id"])  # fmt: skip
                return "Invalid", None
        return "Accepted", None

    async def expire_reservations(self) -> None:
        """Reservations past their expiry end (the charger drops them itself; this keeps the gateway's view)."""
        while True:
            for ended in await self.store.badges.expire_reservations(utcnow()):
                evse, charger_id = ended["evse"], ended["charger"]
                if evse and self.image.value(evse_point(charger_id, evse, "reservation_id")) == ended["reservation_id"]:
                    self.image.set(evse_point(charger_id, evse, "reservation_id"), 0)
                log.info("reservation expired charger=%s reservation=%s", charger_id, ended["reservation_id"])
            await asyncio.sleep(RESERVATION_CHECK_S)

    async def start(self, charger_id: str, evse: int, connector: int | None, id_tag: str | None, ts: datetime,
                    meter_start_wh: float | None, *, ocpp_id: str | None = None, soc: float | None = None,
                    reservation_id: int | None = None) -> Transaction:  # fmt: skip
        _check(evse, connector, charger_level=False)
        tx = await self.store.transactions.start(
            charger_id, evse, connector, id_tag, ts, meter_start_wh, ocpp_id=ocpp_id, soc=soc
        )
        if reservation_id is not None:
            await self.reservation_ended(charger_id, reservation_id, "used", tx.id)
        # Shown last: the load cap acts on a new session, and its profile must not overtake our answer.
        self._show_open(tx)
        log.info("transaction started charger=%s evse=%s id=%s id_tag=%s", charger_id, evse, tx.id, id_tag)
        return tx

    async def meter_values(self, charger_id: str, evse: int, tx: Transaction | None, values: list[MeterValue],
                           live: bool = True) -> None:  # fmt: skip
        """Samples go to the records; the newest is shown live unless it is history: taken while the charger was
        offline (`live` False: 2.0.1 says so), older than LIVE_WINDOW_S (a 1.6 charger replaying its buffer), or
        older than what is shown already."""
        if not values:
            return
        _check(evse, None)
        readings = [measurands.read(mv.sampled_value) for mv in values]
        samples = [
            Sample(mv.ts, mv.sampled_value, r.energy_wh, r.soc) for mv, r in zip(values, readings, strict=True)
        ]
        await self.store.transactions.record_meter_values(charger_id, evse, tx.id if tx else None, samples)
        latest = max(zip(values, readings, strict=True), key=lambda pair: pair[0].ts)
        if live and self._newest(("meter", charger_id, evse), latest[0].ts, window=True):
            self._show_reading(charger_id, evse, latest[1], latest[0].ts, tx)

    def _newest(self, key: tuple[Any, ...], ts: datetime, window: bool = False) -> bool:
        """Whether a value of this time may replace what is shown for `key`: not older than it (by the source's
        clock, capped at ours: a clock running ahead must not hold back what comes after) and, with `window`,
        not older than LIVE_WINDOW_S by ours."""
        now = utcnow()
        if window and ts < now - timedelta(seconds=LIVE_WINDOW_S):
            if key not in self._late:
                self._late.add(key)
                log.info("meter values older than %g s are recorded, not shown live (history, or a clock behind) "
                         "charger=%s evse=%s ts=%s", LIVE_WINDOW_S, key[1], key[2], iso(ts))  # fmt: skip
            return False
        self._late.discard(key)
        ts = min(ts, now)
        if ts < self._shown.get(key, ts):
            return False
        self._shown[key] = ts
        return True

    async def identified(self, tx: Transaction, id_tag: str) -> None:
        """The badge of a session became known after it started (2.0.1: plug in first, badge later)."""
        await self.store.transactions.identify(tx.id, id_tag)

    async def stop(self, tx: Transaction, ts: datetime, meter_stop_wh: float | None, reason: str | None, *,
                   soc: float | None = None, id_tag: str | None = None) -> Transaction | None:  # fmt: skip
        closed = await self.store.transactions.stop(tx.id, ts, meter_stop_wh, reason, soc=soc, id_tag=id_tag)
        if closed is not None and tx.evse is not None:
            self.image.update({evse_point(tx.charger_id, tx.evse, "transaction_id"): 0}, ts)
            charger = self.site.chargers.get(tx.charger_id)
            if charger is None or not charger.metered(tx.evse):  # a meter says itself what flows now
                self.image.update({evse_point(tx.charger_id, tx.evse, leaf): 0.0 for leaf in FLOW
                                   if self.image.get(evse_point(tx.charger_id, tx.evse, leaf)) is not None}, ts)  # fmt: skip
        log.info("transaction stopped charger=%s id=%s energy_wh=%s reason=%s", tx.charger_id, tx.id,
                 closed.energy_wh if closed else None, reason)  # fmt: skip
        return closed

    async def event(self, charger_id: str, action: str, payload: dict[str, Any]) -> None:
        await self.store.chargers.event(charger_id, action, payload, utcnow())

    def _metered(self, charger_id: str, point: str) -> bool:
        """A flow point of an EVSE that a meter measures (chargers/CP01/evse/1/power_w with a meter on it)."""
        _, _, _, evse, leaf = point.split("/", 4)
        charger = self.site.chargers.get(charger_id)
        return leaf in FLOW and evse.isdigit() and charger is not None and charger.metered(int(evse))

    def _show_open(self, tx: Transaction) -> None:
        if tx.evse is None or not tx.open:
            return
        values: dict[str, Any] = {"transaction_id": tx.id}
        if tx.energy_so_far_wh is not None:
            values["session_energy_wh"] = tx.energy_so_far_wh
        if tx.soc_end is not None:
            values["soc"] = tx.soc_end
        self.image.update({evse_point(tx.charger_id, tx.evse, k): v for k, v in values.items()})

    def _show_reading(self, charger_id: str, evse: int, reading: measurands.Reading, ts: datetime,
                      tx: Transaction | None) -> None:  # fmt: skip
        values: dict[str, Any] = reading.points()
        charger = self.site.chargers.get(charger_id)
        if charger is not None and charger.metered(evse):  # a meter says what flows here, not the charger
            values = {k: v for k, v in values.items() if k not in FLOW}
        if tx is not None and tx.open and tx.meter_start_wh is not None and reading.energy_wh is not None:
            values["session_energy_wh"] = round(reading.energy_wh - tx.meter_start_wh, 3)
        if evse == 0:  # the charger's own main meter
            self.image.update({charger_point(charger_id, k): v for k, v in values.items()}, ts)
        else:
            self.image.update({evse_point(charger_id, evse, k): v for k, v in values.items()}, ts)
