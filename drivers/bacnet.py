"""BACnet/IP: present values of analog and binary objects of the building's devices.

One BACnet stack for the gateway (its own device, on ``[bacnet] address``); per configured device one task
that reads every point (``poll_s``, and always as the check that the device still answers), and one COV
subscription per point where the device offers it, renewed before its lifetime ends and made again when the
device comes back (devices keep subscriptions in memory only). A device that does not answer turns its
values bad after ``stale_after_s`` and is retried with a doubling wait. A point whose name the schema gives no
unit (``setpoint_c``, ``chiller_kw``) takes its object's engineering unit, asked once.

Why bacpypes3 directly and not BAC0 (which is built on it), measured on BAC0 2026.7.25:
- ``BAC0.start()`` loads a ``.env`` from the working directory, writes ``~/.BAC0`` log files, installs its
  own log handlers, and leaves a task polling every 10 ms (1.5-2 % of a core while idle): not for a daemon
  on a Pi;
- its ``read()`` ignores its timeout and first sends Who-Is up to seven times: 27 s against a silent device;
- its ``cov()`` runs fire-and-forget and never subscribes again after the device restarts.
bacpypes3's ``Application`` does each of these right, inside our own event loop. (The tests' simulated
device is built with BAC0, where it shines.)

Beware: bacpypes3's protocol errors (AbortPDU, ErrorPDU, RejectPDU) derive from BaseException, not Exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from typing import Any

from bacpypes3.apdu import AbortPDU, AbortReason, ErrorRejectAbortNack
from bacpypes3.app import Application
from bacpypes3.local.device import DeviceObject
from bacpypes3.local.networkport import NetworkPortObject
from bacpypes3.pdu import Address
from bacpypes3.primitivedata import ObjectIdentifier

from gateway.clock import utcnow
from gateway.freshness import Freshness
from gateway.points import ProcessImage, Quality
from gateway.settings import BacnetMeter, BacnetSettings, Settings
from gateway.tasks import raise_if_cancelled

log = logging.getLogger(__name__)

COV_RETRY_MAX_S = 60.0  # a device that answers reads but refuses a subscription is asked again at most this often

# Failures of a read or a subscription: the device's own refusals, and no answer at all.
FAILURES = (ErrorRejectAbortNack, TimeoutError, OSError)
# BACnet engineering units as a site writes them; the others keep their BACnet name (cubic-feet-per-minute).
_SYMBOLS = {
    "watts": "W", "kilowatts": "kW", "megawatts": "MW", "watt-hours": "Wh", "kilowatt-hours": "kWh",
    "megawatt-hours": "MWh", "volt-amperes": "VA", "kilovolt-amperes": "kVA", "volt-amperes-reactive": "var",
    "kilovolt-amperes-reactive": "kvar", "volts": "V", "kilovolts": "kV", "amperes": "A", "milliamperes": "mA",
    "hertz": "Hz", "degrees-celsius": "°C", "degrees-fahrenheit": "°F", "degrees-kelvin": "K", "percent": "%",
    "percent-relative-humidity": "%RH", "pascals": "Pa", "kilopascals": "kPa", "bars": "bar",
    "cubic-meters-per-hour": "m³/h", "liters-per-second": "l/s", "parts-per-million": "ppm", "seconds": "s",
    "minutes": "min", "hours": "h",
}  # fmt: skip


def check(settings: Settings) -> list[str]:
    """Object ids that do not parse, and a missing [bacnet] address, for check-config."""
    meters = [m for m in settings.meters if isinstance(m, BacnetMeter)]
    problems = []
    if meters and settings.bacnet.address is None:
        problems.append(f"bacnet.address: needed for the bacnet meters ({', '.join(m.id for m in meters)})")
    for meter in meters:
        for name, object_id in meter.points.items():
            try:
                ObjectIdentifier(object_id)
            except (ValueError, TypeError, KeyError) as e:
                problems.append(f"meters.{meter.id}.points.{name}: {object_id!r} is not an object id ({e})")
    return problems


def unit_of(units: Any) -> str | None:
    """An object's engineering unit as the process image carries it: kilowatts is kW."""
    name = str(units)
    return None if name == "no-units" else _SYMBOLS.get(name, name)


def value_of(value: Any) -> Any:
    """A present value as the process image carries it: a number, or a bool for binary objects."""
    text = str(value)
    if text in ("active", "inactive"):  # a BinaryPV: an enumeration, so an int too -- ask it first
        return text == "active"
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return float(value)
    return text


class BacnetDevice:
    """One configured device: its points read, followed by COV, and judged alive or silent."""

    def __init__(self, meter: BacnetMeter, app: Application, image: ProcessImage) -> None:
        self.meter = meter
        self.app = app
        self.image = image
        self.address = Address(meter.address)
        self.objects = {name: ObjectIdentifier(oid) for name, oid in meter.points.items()}
        self.answering = False
        self.failures = 0
        self.freshness = Freshness(meter.stale_after_s)
        self.following: set[str] = set()  # points with a live COV subscription
        # Points the schema gives no unit: their objects' units are asked with the first reads (binary and
        # multi-state objects have none).
        self.unitless = {n for n, oid in self.objects.items() if image.unit(self._point(n)) is None
                         and not str(oid[0]).startswith(("binary", "multi-state"))}  # fmt: skip
        self._back = asyncio.Event()  # set when the device answers after silence (or for the first time)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._poll(), name=f"bacnet-poll-{self.meter.id}")
            tasks.create_task(self.freshness.watch(self._went_stale), name=f"bacnet-stale-{self.meter.id}")
            if self.meter.cov:
                for name in self.objects:
                    tasks.create_task(self._follow(name), name=f"bacnet-cov-{self.meter.id}-{name}")

    async def _poll(self) -> None:
        while True:
            raise_if_cancelled()
            if await self.read_all():
                if self.failures:
                    log.info("BACnet device answers again meter=%s after %d failures", self.meter.id,
                             self.failures)  # fmt: skip
                self.failures = 0
                self.freshness.alive()
            else:
                self.failures += 1
            await asyncio.sleep(self._interval())

    def _went_stale(self) -> None:
        self.image.mark_points([self._point(n) for n in self.objects], Quality.bad)

    def _interval(self) -> float:
        if self.failures:
            longest = max(self.meter.max_backoff_s, self.meter.poll_s)
            return min(self.meter.poll_s * 2 ** (self.failures - 1), longest)
        if self.following == set(self.objects):
            # Every point is followed by COV: reading only checks the device is still there.
            return max(self.meter.poll_s, self.meter.stale_after_s / 2)
        return self.meter.poll_s

    async def read_all(self) -> bool:
        """Read every point that COV does not bring; True when the device answered at all."""
        wanted = {n: o for n, o in self.objects.items() if n not in self.following} or dict(
            list(self.objects.items())[:1]  # all followed: one read tells whether the device is there
        )
        asking = sorted(self.unitless)
        results = await asyncio.gather(
            *(self.app.read_property(self.address, oid, "present-value") for oid in wanted.values()),
            *(self.app.read_property(self.address, self.objects[n], "units") for n in asking),
            return_exceptions=True,
        )
        ts = utcnow()
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, FAILURES):
                raise result  # cancellation, or a bug: not the device's doing
        results, units = results[: len(wanted)], results[len(wanted) :]
        answered = any(not isinstance(r, FAILURES) or _is_answer(r) for r in results)
        if answered:  # units first: the north bridges make a point's node with its first value
            self._learn_units(dict(zip(asking, units, strict=True)))
        for name, result in zip(wanted, results, strict=True):
            if isinstance(result, FAILURES):
                if answered:  # the device is there: this point alone is refused or lost
                    self._point_error(name, result)
            else:
                self.show(name, result, ts)
        if not answered:
            self._silent(next(r for r in results if isinstance(r, FAILURES)))
        if answered:
            self.image.update({self._point("online"): True}, ts)
            if not self.answering:
                self._back.set()  # reachable (again): subscriptions may be made (again)
            self.answering = True
        return answered

    def _learn_units(self, answers: dict[str, Any]) -> None:
        for name, answer in answers.items():
            if isinstance(answer, FAILURES) and not _is_answer(answer):
                continue  # lost on the way: asked again with the next read
            self.unitless.discard(name)  # answered, or refused by an object that has no units
            unit = None if isinstance(answer, FAILURES) else unit_of(answer)
            if unit is not None:
                self.image.declare_unit(self._point(name), unit)

    async def _follow(self, name: str) -> None:
        """Keep a COV subscription on one point; when the device cannot, leave the point to reading."""
        delay = self.meter.poll_s
        subscribed_before = False
        while True:
            raise_if_cancelled()
            if not self.answering:
                await self._wait_back()
            try:
                # Process id None: bacpypes3 keys subscriptions by (device, process id) and picks a free one.
                async with self.app.change_of_value(self.address, self.objects[name], None, False,
                                                    self.meter.cov_lifetime_s) as subscription:  # fmt: skip
                    self.following.add(name)
                    subscribed_before = True
                    self._back.clear()
                    delay = self.meter.poll_s
                    await self._changes(name, subscription)
            except FAILURES as e:
                if not subscribed_before and self.answering and _is_answer(e):
                    # The device reads fine but refuses to subscribe: it offers no COV here, read the point.
                    log.info("BACnet device will not subscribe meter=%s point=%s (%s): reading it instead",
                             self.meter.id, name, _reason(e))  # fmt: skip
                    return
                # No answer, or a renewal refused: try again later (once the device is back, if it is silent).
            finally:
                self.following.discard(name)
            await asyncio.sleep(delay)
            delay = min(delay * 2, COV_RETRY_MAX_S)

    async def _changes(self, name: str, subscription: Any) -> None:
        """Notifications until the subscription fails to renew or the device comes back from silence (its
        subscriptions died with it)."""
        while True:
            getting = asyncio.ensure_future(subscription.get_value())
            back = asyncio.ensure_future(self._back.wait())
            try:
                await asyncio.wait({getting, back}, timeout=self.meter.stale_after_s,
                                   return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
            finally:
                back.cancel()
                if not getting.done():
                    getting.cancel()
            if getting.done() and not getting.cancelled():
                prop, value = getting.result()
                if str(prop) == "present-value":
                    self.show(name, value, utcnow())
            renewal = subscription.refresh_subscription_task
            if renewal is not None and renewal.done() and not renewal.cancelled() and renewal.exception():
                raise renewal.exception()  # bacpypes3 renews once, in the background, and never retries
            if self._back.is_set():
                return  # subscribe again: the device lost it while it was down

    async def _wait_back(self) -> None:
        while not self.answering:
            await self._back.wait()
            self._back.clear()

    def show(self, name: str, value: Any, ts: Any) -> None:
        found = value_of(value)
        if isinstance(found, float) and not math.isfinite(found):  # NaN or infinity: flag the last number
            previous = self.image.get(self._point(name))
            self.image.set(self._point(name), previous.value if previous else None, ts, Quality.bad)
        else:
            self.image.set(self._point(name), found, ts)

    def _silent(self, error: BaseException) -> None:
        if self.answering:
            log.warning("BACnet device does not answer meter=%s address=%s: %s", self.meter.id, self.meter.address,
                        _reason(error))  # fmt: skip
        self.answering = False
        self.image.update({self._point("online"): False, self._point("last_error"): _reason(error)})

    def _point_error(self, name: str, error: BaseException) -> None:
        self.image.update({self._point("last_error"): f"{name}: {_reason(error)}"})
        point = self.image.get(self._point(name))
        self.image.set(self._point(name), point.value if point else None, utcnow(), Quality.bad)

    def _point(self, leaf: str) -> str:
        return f"meters/{self.meter.id}/{leaf}"

    def health(self) -> dict[str, Any]:
        return {"answering": self.answering, "cov": sorted(self.following)}


class BacnetDriver:
    def __init__(self, settings: BacnetSettings, meters: list[BacnetMeter], image: ProcessImage) -> None:
        self.settings = settings
        self.meters = meters
        self.image = image
        self.devices: list[BacnetDevice] = []

    async def run(self) -> None:
        assert self.settings.address is not None  # check() made sure
        app = Application.from_object_list([
            DeviceObject(objectIdentifier=("device", self.settings.device_id), objectName="evedge",
                         vendorIdentifier=999, apduTimeout=int(self.settings.apdu_timeout_s * 1000),
                         numberOfApduRetries=self.settings.retries),
            NetworkPortObject(self.settings.address, objectIdentifier=("network-port", 1), objectName="port-1"),
        ])  # fmt: skip
        self.devices = [BacnetDevice(m, app, self.image) for m in self.meters]
        log.info("BACnet/IP stack on %s device=%d", self.settings.address, self.settings.device_id)
        try:
            async with asyncio.TaskGroup() as tasks:
                for device in self.devices:
                    tasks.create_task(device.run(), name=f"bacnet-{device.meter.id}")
        finally:
            with contextlib.suppress(Exception):
                app.close()

    def health(self) -> dict[str, Any]:
        return {"status": "ok", "meters": {d.meter.id: d.health() for d in self.devices}}


def _is_answer(error: BaseException) -> bool:
    """An error the device itself sent (it is alive), as against no answer at all."""
    if not isinstance(error, ErrorRejectAbortNack):
        return False
    return not (isinstance(error, AbortPDU) and error.apduAbortRejectReason == AbortReason.noResponse)


def _reason(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
