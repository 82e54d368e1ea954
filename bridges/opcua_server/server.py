"""The OPC UA server as a part of the gateway: builds the server, follows the process image and the site events
into it, and says how it is."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from asyncua import Server
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.event_generator import EventGenerator
from asyncua.server.internal_server import InternalServer
from asyncua.server.internal_session import InternalSession

from bridges.opcua_server import shelf
from bridges.opcua_server.alarms import Conditions
from bridges.opcua_server.events import emit, event_generators
from bridges.opcua_server.methods import Door
from bridges.opcua_server.security import Security
from bridges.opcua_server.sessions import Session
from bridges.opcua_server.space import Space
from bridges.opcua_server.users import Users
from gateway.alarms import AlarmList
from gateway.commands import Commands
from gateway.model import Site
from gateway.points import Point, ProcessImage
from gateway.settings import Settings, split_listen
from gateway.store import Store
from gateway.tasks import raise_if_cancelled

log = logging.getLogger(__name__)

PATH = "evedge"  # opc.tcp://HOST:PORT/evedge

# Bounds: what a client may ask for is capped.
MAX_CONNECTIONS = 32
MAX_SUBSCRIPTIONS = 64
MAX_ITEM_QUEUE = 100
PENDING_ACTIVATION_S = 10.0
EVENT_BACKLOG = 1000
STOP_TIMEOUT_S = 5.0


class _InternalServer(InternalServer):
    """asyncua's, with the gateway's sessions for clients and the standard nodes from a shelf of any kind."""

    def __init__(self, bridge: OpcuaServer, users: Users) -> None:
        super().__init__(user_manager=users)
        self.bridge = bridge

    def create_session(self, name: str, user: User = User(role=UserRole.Anonymous),  # noqa: B008 -- asyncua's
                       external: bool = False) -> InternalSession:  # fmt: skip
        if not external:
            return super().create_session(name, user, external)
        return Session(self.bridge, self, self.aspace, self.subscription_service, name, user=user, external=True)

    async def load_standard_address_space(self, shelf_file: Path | None = None) -> None:
        if not shelf.load(self.aspace, shelf_file):
            await super().load_standard_address_space(shelf_file)


class OpcuaServer:
    def __init__(self, settings: Settings, site: Site, image: ProcessImage, commands: Commands, store: Store,
                 alarms: AlarmList | None = None) -> None:  # fmt: skip
        assert settings.opcua is not None
        self.settings = settings
        self.cfg = settings.opcua
        self.site = site
        self.image = image
        self.store = store
        self.namespace = f"urn:evedge:{settings.gateway.id}"
        self.folder = settings.gateway.state_dir / "opcua"
        self.security = Security(self.cfg, store, self.folder, settings.gateway.id)
        self.door = Door(commands)
        self.sessions: set[Session] = set()
        self.port: int | None = None
        self._status = "starting"
        self._error: str | None = None
        self._updates_before = self._coalesced_before = 0
        self._coalesced = 0
        self.events = 0
        self.events_dropped = 0
        self.alarms = alarms
        self.conditions: Conditions | None = None

    @property
    def space(self) -> Space | None:
        """The running server's nodes; None while it is stopped."""
        return self.door.space

    # -- running ------------------------------------------------------------------------------------------

    async def run(self) -> None:
        self._status, self._error = "starting", None
        server = Server(iserver=_InternalServer(self, self.security.users))
        started = False
        try:
            space, generators = await self._build(server)
            await server.start()
            started = True
            self.port = server.bserver.port if server.bserver else None
            self._status = "ok"
            log.info("OPC UA server listening endpoint=%s none=%s anonymous=%s nodes=%d", self.endpoint,
                     self.cfg.allow_none, self.cfg.allow_anonymous, len(space.variables))  # fmt: skip
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._follow_points(space), name="opcua-points")
                tasks.create_task(self._follow_events(generators, space), name="opcua-events")
                if self.conditions is not None:
                    tasks.create_task(self.conditions.follow(), name="opcua-alarms")
        except asyncio.CancelledError:
            raise
        except BaseException as e:
            self._status, self._error = "error", f"{type(e).__name__}: {e}"
            raise
        finally:
            self.sessions.clear()
            if self.space is not None:
                self._updates_before += self.space.updates
            self.door.space = None
            if started:
                await self._stop(server)

    async def _stop(self, server: Server) -> None:
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await server.stop()
        except Exception as e:  # noqa: BLE001 -- stopping is best effort; the sockets close with the process
            log.warning("OPC UA server did not stop cleanly: %s", e)
        log.info("OPC UA server stopped")

    async def _build(self, server: Server) -> tuple[Space, list[EventGenerator]]:
        server.iserver.bind_condition_methods = True  # asyncua answers ConditionRefresh with the retained alarms
        await shelf.init(server, self.folder)
        iserver = server.iserver
        iserver.max_connections = MAX_CONNECTIONS
        iserver.max_subscriptions = MAX_SUBSCRIPTIONS
        iserver.max_monitored_item_queue_size = MAX_ITEM_QUEUE
        iserver.max_pending_activation_seconds = PENDING_ACTIVATION_S
        server.set_endpoint(self._url(*split_listen(self.cfg.listen)))
        server.set_server_name(f"evedge {self.settings.gateway.id}")
        server.product_uri = "urn:evedge"
        server.manufacturer_name = "evedge"
        await self.security.apply(server)
        idx = await server.register_namespace(self.namespace)
        charger_type, methods = await self.door.add_charger_type(server, idx)
        space = Space(server, idx, self.image, self.cfg.min_interval_s * 1000, charger_type, methods)
        site = await self.door.add_site(server, idx)
        generators = await event_generators(server, idx, site)
        await space.prepare(self.site)
        if self.alarms is not None:
            self.conditions = Conditions(server, idx, space, self.door, self.alarms)
            await self.conditions.build()
        self.door.space = space
        return space, generators

    def _url(self, host: str, port: int) -> str:
        return f"opc.tcp://{f'[{host}]' if ':' in host else host}:{port}/{PATH}"

    @property
    def endpoint(self) -> str:
        host, port = split_listen(self.cfg.listen)
        return self._url(host, self.port or port)

    async def _follow_points(self, space: Space) -> None:
        feed = self.image.feed()
        try:
            await self._apply(space, dict(self.image.items()))
            while True:
                changes = await feed.get()
                await self._apply(space, changes)
                self._coalesced = self._coalesced_before + feed.coalesced
                raise_if_cancelled()
                await asyncio.sleep(self.cfg.min_interval_s)  # changes meanwhile coalesce in the feed
        finally:
            self._coalesced_before += feed.coalesced
            feed.close()

    async def _apply(self, space: Space, changes: dict[str, Point]) -> None:
        try:
            await space.apply(changes)
        except Exception:  # a bug in one batch must not stop the tags: the next batch tries again
            log.exception("OPC UA update failed points=%d", len(changes))

    async def _follow_events(self, generators: list[EventGenerator], space: Space) -> None:
        listener = self.store.events.listen(EVENT_BACKLOG)
        try:
            while True:
                for event in await listener.get():
                    try:
                        await emit(generators, space, event)
                        self.events += 1
                    except Exception:
                        log.exception("OPC UA event not sent kind=%s", event.kind)
                self.events_dropped = listener.dropped
                raise_if_cancelled()
        finally:
            listener.close()

    # -- health -------------------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        space = self.space
        body: dict[str, Any] = {
            "status": self._status, "endpoint": self.endpoint, "sessions": len(self.sessions),
            "updates": self._updates_before + (space.updates if space is not None else 0),
            "coalesced": self._coalesced, "nodes": len(space.variables) if space is not None else 0,
            "events": self.events, "events_dropped": self.events_dropped,
            "alarm_events": self.conditions.events if self.conditions is not None else 0,
            "refused_logins": self.security.users.refused, "refused_certificates": self.security.trust.rejected,
        }  # fmt: skip
        if self._error is not None:
            body["error"] = self._error
        return body
