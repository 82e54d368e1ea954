"""The composition root: builds every part from the settings, runs them in one TaskGroup, stops them cleanly.

This is the only module that knows every part. A new protocol or bridge is a module of its own and a line
here. Stopping: the event loop stops the servers (connections close, sessions write their last records),
then the store commits what is queued and closes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import bridges.notify
import drivers.bacnet
import drivers.ocpp.badges
import rules.alarm_definitions
from bridges.mqtt import MqttBridge
from bridges.notify import Notifier
from bridges.opcua_server import OpcuaServer
from bridges.outbox import Outbox
import drivers.modbus
import drivers.opcua_client
from drivers.bacnet import BacnetDriver
from drivers.modbus import ModbusDriver
from drivers.opcua_client import OpcuaDriver
from drivers.ocpp import OcppServer, Recorder, measurands
from gateway.alarms import AlarmList
from gateway.clock import utcnow
from gateway.commands import Commands
from gateway.meters import mirror
from gateway.model import Site
from gateway.points import ProcessImage
from gateway.sdnotify import feed_watchdog, notify, watchdog_interval
from gateway.settings import BacnetMeter, ModbusRtuMeter, ModbusTcpMeter, OpcuaMeter, Settings
from gateway.store import Store
from gateway.web.api import WebContext, create_app
from gateway.web.server import TlsFiles, WebServer
from rules import schedules
from rules.annunciator import Annunciator
from rules.loadcap import LoadCap
from rules.schedules import Schedules

log = logging.getLogger(__name__)

HOUSEKEEPING_INTERVAL_S = 6 * 3600


def config_problems(settings: Settings) -> list[str]:
    """What only the parts can tell about a config: unknown profiles, broken register maps, bad node ids."""
    return (drivers.modbus.check(settings) + drivers.opcua_client.check(settings) + drivers.bacnet.check(settings)
            + schedules.check(settings) + rules.alarm_definitions.check(settings) + bridges.notify.check(settings))


SUPERVISOR_FIRST_DELAY_S, SUPERVISOR_MAX_BACKOFF_S = 1.0, 60.0


async def supervised(name: str, run: Callable[[], Awaitable[None]]) -> None:
    """Run a part until it ends by itself; when it fails, log it and run it again after a doubling wait (back to
    short once it has run well for a minute)."""
    loop = asyncio.get_running_loop()
    delay = SUPERVISOR_FIRST_DELAY_S
    while True:
        began = loop.time()
        try:
            await run()
            return
        except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
            raise
        except BaseException:  # noqa: BLE001 -- bacpypes3's errors derive from BaseException
            log.exception("part failed, starting it again in %g s part=%s", delay, name)
        if loop.time() - began > 60:
            delay = SUPERVISOR_FIRST_DELAY_S
        await asyncio.sleep(delay)
        delay = min(delay * 2, SUPERVISOR_MAX_BACKOFF_S)


class _Stopping(Exception):
    """Raised inside the TaskGroup to wind every part down."""


class App:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.site = Site.from_settings(settings)
        self.image = ProcessImage()
        self.store = Store(settings.gateway.state_dir)
        self.commands = Commands(self.store.audit)
        self.recorder = Recorder(self.site, self.image, self.store, settings.authorization)
        self.ocpp = OcppServer(settings, self.recorder)
        self.ocpp.links.files = settings.files
        self.ocpp.register(self.commands)
        drivers.ocpp.badges.register(self.commands, self.ocpp)
        modbus_meters = [m for m in settings.meters if isinstance(m, ModbusTcpMeter | ModbusRtuMeter)]
        self.modbus = ModbusDriver(modbus_meters, self.image) if modbus_meters else None
        opcua_meters = [m for m in settings.meters if isinstance(m, OpcuaMeter)]
        self.opcua = OpcuaDriver(opcua_meters, self.image, settings.gateway.state_dir) if opcua_meters else None
        bacnet_meters = [m for m in settings.meters if isinstance(m, BacnetMeter)]
        self.bacnet = BacnetDriver(settings.bacnet, bacnet_meters, self.image) if bacnet_meters else None
        self.loadcap = LoadCap(settings, self.site, self.image, self.commands, self.store)
        self.loadcap.register(self.commands)
        self.schedules = Schedules(settings, self.image, self.commands)
        self.alarms = AlarmList()
        self.annunciator = Annunciator(settings, self.image, self.store, self.alarms)
        self.annunciator.register(self.commands)
        self.notifier = Notifier(settings, self.store) if settings.notify else None
        # The outbox fills only when a bridge delivers from it: nobody else would ever empty it.
        self.store.outbox.enabled = settings.mqtt is not None
        self.outbox = Outbox(settings, self.image, self.store, settings.mqtt.telemetry_interval_s) \
            if settings.mqtt else None  # fmt: skip
        self.mqtt = MqttBridge(settings, self.image, self.store, self.commands, self.alarms) if settings.mqtt else None
        self.opcua_server = (OpcuaServer(settings, self.site, self.image, self.commands, self.store, self.alarms)
                             if settings.opcua else None)  # fmt: skip
        self.web: WebServer | None = None
        self.started = asyncio.Event()
        self._stop = asyncio.Event()

    def health(self) -> dict[str, Any]:
        parts = {
            "store": self.store.health(),
            "ocpp": self.ocpp.health(),
            "web": self.web.health() if self.web else {"status": "starting"},
        }
        for name, part in self._field_drivers():
            if part is not None:
                parts[name] = part.health()
        if self.loadcap.active:
            parts["loadcap"] = self.loadcap.health()
        parts["alarms"] = self.annunciator.health()
        for name, bridge in self._bridges():
            if bridge is not None:
                parts[name] = bridge.health()
        return parts

    def _field_drivers(self) -> list[tuple[str, Any]]:
        return [("modbus", self.modbus), ("opcua_client", self.opcua), ("bacnet", self.bacnet)]

    def _bridges(self) -> list[tuple[str, Any]]:
        return [("outbox", self.outbox), ("mqtt", self.mqtt), ("opcua_server", self.opcua_server),
                ("notify", self.notifier)]

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        await self.store.open()
        await self.store.events.record("gateway_started", {"gateway": self.settings.gateway.id})
        try:
            context = WebContext(self.site, self.image, self.store, self.commands, self.health, self.loadcap.state,
                                 self.settings, lambda sampled: measurands.read(sampled).points(),
                                 alarms=self.alarms)  # fmt: skip
            self.web = WebServer(create_app(context), self.settings.web.listen, self._web_tls())
            self.ocpp.links.web_port = self.web.port
            self.ocpp.links.charger_models = self.settings.charger_models
            async with asyncio.TaskGroup() as tasks:
                ocpp_up, web_up = asyncio.Event(), asyncio.Event()
                tasks.create_task(self.ocpp.run(ocpp_up), name="ocpp")
                tasks.create_task(self.web.run(web_up), name="web")
                # What may break at run time is restarted, not allowed to stop the gateway: a meter's odd
                # answer must never take the chargers' central system down with it.
                tasks.create_task(supervised("housekeeping", self._housekeeping), name="housekeeping")
                tasks.create_task(supervised("reservations", self.recorder.expire_reservations), name="reservations")
                tasks.create_task(supervised("attached-meters", lambda: mirror(self.site, self.image)),
                                  name="attached-meters")  # fmt: skip
                for name, part in self._field_drivers() + self._bridges():
                    if part is not None:
                        tasks.create_task(supervised(name, part.run), name=name)
                if self.loadcap.active:
                    tasks.create_task(supervised("loadcap", self.loadcap.run), name="loadcap")
                tasks.create_task(supervised("alarms", self.annunciator.run), name="alarms")
                if self.schedules.needed:
                    tasks.create_task(supervised("schedules", self.schedules.run), name="schedules")
                interval = watchdog_interval()
                if interval:
                    tasks.create_task(feed_watchdog(interval), name="watchdog")
                await ocpp_up.wait()
                await web_up.wait()
                notify("READY=1")
                self.started.set()
                log.info("evedge %s running", self.settings.gateway.id)
                await self._stop.wait()
                log.info("stopping")
                notify("STOPPING=1")
                raise _Stopping
        except* _Stopping:
            await self.store.events.record("gateway_stopped", {"gateway": self.settings.gateway.id})
        finally:
            await self.store.close()

    def _web_tls(self) -> TlsFiles | None:
        """HTTPS for the console: a given certificate, else the one the site CA makes for OCPP over TLS."""
        web = self.settings.web
        if not web.tls:
            return None
        if web.tls_certificate is not None and web.tls_private_key is not None:
            given = (web.tls_certificate, web.tls_private_key)

            async def files() -> tuple[Path, Path]:
                return given

            return files
        return self.ocpp.pki.server_files

    async def _housekeeping(self) -> None:
        keep = self.settings.store
        while True:
            removed = await self.store.prune(keep.meter_values_days, keep.audit_days)
            if self.settings.authorization.cache_days:
                await self.store.badges.prune_cache(utcnow() - timedelta(days=self.settings.authorization.cache_days))
            if removed:
                log.info("pruned meter values older than %d days rows=%d", keep.meter_values_days, removed)
            await asyncio.sleep(HOUSEKEEPING_INTERVAL_S)
