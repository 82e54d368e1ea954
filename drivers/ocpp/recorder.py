"""What chargers say, version-blind: records in the store first, then points in the process image.

The 1.6 and 2.0.1 sessions translate their messages into these calls, so everything above the driver sees
one model. Every call returns only after the store committed, so a session answers a charger only for what
is on disk.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ocpp.exceptions import PropertyConstraintViolationError

from drivers.ocpp import measurands
from gateway.clock import utcnow
from gateway.model import Site
from gateway.points import FLOW, ProcessImage, Quality, charger_point, evse_point
from gateway.store import Sample, Store, Transaction

log = logging.getLogger(__name__)


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
    def __init__(self, site: Site, image: ProcessImage, store: Store) -> None:
        self.site = site
        self.image = image
        self.store = store

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

    async def disconnected(self, charger_id: str) -> None:
        now = utcnow()
        self.image.set(charger_point(charger_id, "online"), False, now)
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
                     info: str | None = None, ts: datetime | None = None) -> None:  # fmt: skip
        """Status of an EVSE's connector in the 1.6 vocabulary; EVSE 0 is the charger as a whole."""
        ts = ts or utcnow()
        _check(evse, connector)
        await self.store.chargers.status(charger_id, evse, connector, status, error_code, info, ts)
        if evse == 0:
            self.image.set(charger_point(charger_id, "status"), status, ts)
            self.image.set(charger_point(charger_id, "error_code"), error_code or "NoError", ts)
            return
        if self.site.see_connector(charger_id, evse, connector) and self.site.chargers[charger_id].configured:
            log.warning("charger reports EVSE %d connector %d, more than its config says charger=%s", evse,
                        connector, charger_id)  # fmt: skip
        self.image.set(evse_point(charger_id, evse, "status"), status, ts)
        self.image.set(evse_point(charger_id, evse, "error_code"), error_code or "NoError", ts)

    def authorize(self, charger_id: str, id_tag: str) -> str:
        """Accepted, Invalid, Expired or Blocked. Every badge is accepted until badge lists exist."""
        return "Accepted"

    async def start(self, charger_id: str, evse: int, connector: int | None, id_tag: str | None, ts: datetime,
                    meter_start_wh: float | None, *, ocpp_id: str | None = None,
                    soc: float | None = None) -> Transaction:  # fmt: skip
        _check(evse, connector, charger_level=False)
        tx = await self.store.transactions.start(
            charger_id, evse, connector, id_tag, ts, meter_start_wh, ocpp_id=ocpp_id, soc=soc
        )
        self._show_open(tx)
        log.info("transaction started charger=%s evse=%s id=%s id_tag=%s", charger_id, evse, tx.id, id_tag)
        return tx

    async def meter_values(self, charger_id: str, evse: int, tx: Transaction | None,
                           values: list[MeterValue]) -> None:  # fmt: skip
        if not values:
            return
        _check(evse, None)
        readings = [measurands.read(mv.sampled_value) for mv in values]
        samples = [
            Sample(mv.ts, mv.sampled_value, r.energy_wh, r.soc) for mv, r in zip(values, readings, strict=True)
        ]
        await self.store.transactions.record_meter_values(charger_id, evse, tx.id if tx else None, samples)
        latest = max(zip(values, readings, strict=True), key=lambda pair: pair[0].ts)
        self._show_reading(charger_id, evse, latest[1], latest[0].ts, tx)

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
