"""The central system: ws://HOST:PORT/ocpp/{chargePointId} and wss://HOST:TLS_PORT/ocpp/{chargePointId}, OCPP
1.6J and 2.0.1 side by side on each.

The handshake decides who may talk: an unknown id gets 404 (and is listed for a technician) unless
``ocpp.auto_accept``; under security profile 1 a known id must present its Basic-auth password (401
otherwise). On the TLS listener (its PKI in :mod:`drivers.ocpp.tls`) a client certificate whose CN is the id
logs the charger in (profile 3), one for another id gets 403, and without one the password is needed (profile 2)
unless the site asks for profile 3 (403). Profiles 2 and 3 turn the plain listener off. The subprotocol picks
the version. The same id connecting again replaces its old session.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
import logging
import re
import secrets
import time
from collections import OrderedDict
from typing import Any
from urllib.parse import unquote, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from drivers.ocpp.frames import SUBPROTOCOLS, V16
from drivers.ocpp.steering import Refusals, Steering
from drivers.ocpp.recorder import Recorder
from drivers.ocpp.session import Links, Session
from drivers.ocpp.tls import SitePki, client_certificate, common_name
from drivers.ocpp.v16 import Session16
from drivers.ocpp.v201 import Session201
from gateway.auth import parse_basic_auth, password_forms, same_password, verify_password
from gateway.clock import utcnow
from gateway.commands import (
    CommandError,
    Commands,
    OcppRequest,
    RemoteStart,
    RemoteStop,
    Reset,
    SetAvailability,
    SetChargingLimit,
    Unlock,
)
from gateway.limits import FailureLimiter
from gateway.settings import RESERVED_CHARGER_IDS, ChargerSettings, Settings, split_listen

log = logging.getLogger(__name__)

FAILURES_PER_WINDOW, FAILURE_WINDOW_S, RETRY_AFTER_S = 20, 300.0, 60
LIST_EVERY_S, MAX_LISTED = 60.0, 1024
_PATH = re.compile(r"/ocpp/([^/]+)/?")
_ID = re.compile(r"[A-Za-z0-9_.-]{1,48}")


class OcppServer:
    def __init__(self, settings: Settings, recorder: Recorder) -> None:
        self.settings = settings.ocpp
        self.pki = SitePki(settings.ocpp, settings.gateway.state_dir, settings.gateway.id)
        self.voltage_v = settings.site.voltage_v
        self.chargers: dict[str, ChargerSettings] = {c.id: c for c in settings.chargers}
        self.recorder = recorder
        self.sessions: dict[str, Session] = {}
        self.port: int | None = None  # ws://, None while off (security profiles 2 and 3)
        self.tls_port: int | None = None  # wss://, None while off (tls_listen = "")
        self._locks: dict[str, asyncio.Lock] = {}
        # A stored hash takes tens of ms of scrypt (and 16 MiB) to check: one check at a time, and remember who
        # passed (keyed by a per-run secret) so a charger reconnecting every few seconds does not cost that.
        self._passed: dict[str, bytes] = {}
        self._pepper = secrets.token_bytes(32)
        self._scrypt = asyncio.Semaphore(1)
        # Handshakes that fail (unknown id, wrong credentials) are counted per remote address; past the limit
        # the address gets 429 without any work done for it.
        self._failures = FailureLimiter(FAILURES_PER_WINDOW, FAILURE_WINDOW_S)
        self._listed: OrderedDict[str, float] = OrderedDict()  # refused id -> when it was last written down
        self._closing: set[asyncio.Task[None]] = set()
        self._refusals: dict[tuple[str, str], Refusals] = {}  # what each charger model refused (steering)
        self.links = Links()  # the composition root adds the web port once the web server has bound it

    def register(self, commands: Commands) -> None:
        commands.register(OcppRequest, self._ocpp_request)
        commands.register(RemoteStart, self._typed("remote_start"))
        commands.register(Reset, self._typed("reset"))
        commands.register(Unlock, self._typed("unlock"))
        commands.register(SetAvailability, self._typed("set_availability"))
        commands.register(RemoteStop, self._remote_stop)
        commands.register(SetChargingLimit, self._set_limit)

    async def run(self, started: asyncio.Event | None = None) -> None:
        async with contextlib.AsyncExitStack() as stack:
            servers: list[Server] = []
            if self.settings.security_profile <= 1:
                servers.append(await stack.enter_async_context(self._listen(self.settings.listen)))
                self.port = _port(servers[-1])
            if self.settings.tls_listen:
                context = await self.pki.open()
                self.links.pki = self.pki  # sessions sign their chargers' CSRs with it
                servers.append(await stack.enter_async_context(self._listen(self.settings.tls_listen, context)))
                self.tls_port = _port(servers[-1])
            urls = [f"ws://{self.settings.listen.rpartition(':')[0]}:{self.port}/ocpp/{{id}}"] if self.port else []
            if self.tls_port:
                urls.append(f"wss://{self.settings.tls_listen.rpartition(':')[0]}:{self.tls_port}/ocpp/{{id}}")
            log.info("OCPP central system listening on %s (security profile %d and up)", " and ".join(urls),
                     self.settings.security_profile)  # fmt: skip
            if started is not None:
                started.set()
            renewals = [self.pki.keep_renewed()] if self.tls_port else []
            await asyncio.gather(*(server.serve_forever() for server in servers), *renewals)

    def _listen(self, listen: str, context: Any = None) -> Any:
        """A websocket server at HOST:PORT, over TLS when given a context."""
        host, port = split_listen(listen)
        return serve(
            self._serve_connection,
            host,
            port,
            ssl=context,
            subprotocols=list(SUBPROTOCOLS),  # type: ignore[arg-type]
            select_subprotocol=_select_subprotocol,
            process_request=functools.partial(self._check_handshake, tls=context is not None),
            max_size=self.settings.max_frame_bytes,
            compression=None,  # chargers rarely ask for it; a zlib context per connection costs RAM on a Pi
            server_header="evedge",
        )

    def health(self) -> dict[str, Any]:
        up = self.port is not None or self.tls_port is not None
        return {"status": "ok" if up else "starting", "port": self.port, "tls_port": self.tls_port,
                "connected": len(self.sessions)}  # fmt: skip

    # -- handshake ---------------------------------------------------------------------------------------

    async def _check_handshake(self, connection: ServerConnection, request: Request, tls: bool) -> Response | None:
        charger_id = charger_id_from(request.path)
        remote = _remote(connection)
        address = remote.rpartition(":")[0] if remote else "?"
        if not self._failures.allowed(address):
            return _reject(connection, 429, "Too many failed attempts, try later", {"Retry-After": str(RETRY_AFTER_S)})
        if charger_id is None:
            log.warning("refused: not an OCPP path path=%r remote=%s", request.path[:100], remote)
            return _reject(connection, 404, "Not Found: connect to /ocpp/{chargePointId}")
        certificate = client_certificate(connection) if tls else None  # verified against the CAs by TLS already
        if certificate is not None and common_name(certificate.subject) != charger_id:
            self._failures.failed(address)
            log.warning("refused: a client certificate for another charge point charger=%s certificate_cn=%r "
                        "remote=%s", charger_id, common_name(certificate.subject), remote)  # fmt: skip
            return _reject(connection, 403, "The client certificate is not this charge point's")
        charger = self.chargers.get(charger_id)
        if charger is None:
            if self.settings.auto_accept:
                log.info("accepting unknown charger (ocpp.auto_accept) charger=%s remote=%s", charger_id, remote)
                return None
            self._failures.failed(address)
            await self._list_refused(charger_id, remote)
            return _reject(connection, 404, "Unknown charge point")
        if certificate is not None:
            log.debug("client certificate accepted charger=%s serial=%x", charger_id, certificate.serial_number)
            return None
        if tls and self.settings.security_profile == 3:
            self._failures.failed(address)
            log.warning("refused: no client certificate (security profile 3) charger=%s remote=%s", charger_id, remote)
            return _reject(connection, 403, "A client certificate is required (security profile 3)")
        if self.settings.security_profile == 0:
            return None
        credentials = parse_basic_auth(request.headers.get("Authorization"))
        if credentials is None:
            log.warning("refused: no credentials charger=%s remote=%s", charger_id, remote)
            return _reject(connection, 401, "Authentication required", {"WWW-Authenticate": 'Basic realm="evedge"'})
        user, password = credentials
        if user != charger_id or not await self._password_ok(charger, password):
            self._failures.failed(address)
            log.warning("refused: wrong credentials charger=%s remote=%s", charger_id, remote)
            return _reject(connection, 401, "Wrong credentials", {"WWW-Authenticate": 'Basic realm="evedge"'})
        return None

    async def _list_refused(self, charger_id: str, remote: str | None) -> None:
        """List an unknown id for a technician; written down at most once a minute per id."""
        now = time.monotonic()
        if now - self._listed.get(charger_id, -LIST_EVERY_S) < LIST_EVERY_S:
            return
        self._listed[charger_id] = now
        self._listed.move_to_end(charger_id)
        while len(self._listed) > MAX_LISTED:
            self._listed.popitem(last=False)
        log.warning("refused: unknown charger charger=%s remote=%s", charger_id, remote)
        await self.recorder.store.chargers.refused(charger_id, remote, utcnow())

    async def _password_ok(self, charger: ChargerSettings, password: bytes) -> bool:
        if charger.password is not None:
            return same_password(password, charger.password.get_secret_value())
        if charger.password_hash is None:  # a charger that logs in by certificate only
            return False
        tag = hmac.new(self._pepper, password, hashlib.sha256).digest()
        if hmac.compare_digest(self._passed.get(charger.id, b""), tag):
            return True
        async with self._scrypt:
            for form in password_forms(password):
                if await asyncio.to_thread(verify_password, form, charger.password_hash):
                    self._passed[charger.id] = tag
                    return True
        return False

    # -- sessions ----------------------------------------------------------------------------------------

    async def _serve_connection(self, ws: ServerConnection) -> None:
        charger_id = charger_id_from(ws.request.path)  # type: ignore[union-attr]
        assert charger_id is not None  # the handshake let it through
        version = SUBPROTOCOLS.get(ws.subprotocol or "")
        if version is None:
            # OCPP-J: complete the handshake without a subprotocol, then close at once.
            log.warning("refused: no OCPP subprotocol in common charger=%s offered=%s", charger_id,
                        ws.request.headers.get("Sec-WebSocket-Protocol"))  # type: ignore[union-attr]  # fmt: skip
            await ws.close(1002, "no OCPP subprotocol in common: ocpp1.6, ocpp2.0.1")
            return
        session = (Session16 if version == V16 else Session201)(charger_id, ws, self.recorder, self.settings, self.links)
        session.steering = Steering(session, self.voltage_v, self._refusals, self.chargers.get(charger_id),
                                    self.links.charger_models)  # fmt: skip
        lock = self._locks.setdefault(charger_id, asyncio.Lock())
        async with lock:
            old = self.sessions.get(charger_id)
            if old is not None:
                # The old link is often dead already (that is why the charger came back): it is closed in the
                # background, but it ends here -- its requests fail, and what a departure does is done now.
                log.info("charger reconnected, replacing its old connection charger=%s", charger_id)
                self._close_in_background(old)
                old.lanes.fail_all(CommandError("offline", f"{charger_id} replaced its connection"))
                await self.recorder.disconnected(charger_id)
            self.sessions[charger_id] = session
            for tx in await self.recorder.connected(charger_id, version, _remote(ws)):
                session.started(tx)
        try:
            await session.run()
        finally:
            async with lock:
                if self.sessions.get(charger_id) is session:
                    del self.sessions[charger_id]
                    await self.recorder.disconnected(charger_id)

    def _close_in_background(self, session: Session) -> None:
        task = asyncio.create_task(session.ws.close(1000, "replaced by a new connection"))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def session(self, charger_id: str) -> Session:
        if charger_id not in self.chargers and charger_id not in self.recorder.site.chargers:
            raise CommandError("unknown_target", f"no charger {charger_id!r} on this site")
        session = self.sessions.get(charger_id)
        if session is None:
            raise CommandError("offline", f"{charger_id} is not connected")
        return session

    # -- commands ----------------------------------------------------------------------------------------

    async def _ocpp_request(self, cmd: OcppRequest) -> dict[str, Any]:
        return await self.session(cmd.charger_id).request(cmd.action, cmd.payload)

    def _typed(self, name: str):
        async def handle(cmd: Any) -> dict[str, Any]:
            session = self.session(cmd.charger_id)
            action, payload = getattr(session, name)(cmd)
            return await session.request(action, payload)

        return handle

    async def _set_limit(self, cmd: SetChargingLimit) -> dict[str, Any]:
        """A limit as the charging profile this charger takes (drivers/ocpp/steering.py)."""
        return await self.session(cmd.charger_id).steering.apply(cmd)

    async def _remote_stop(self, cmd: RemoteStop) -> dict[str, Any]:
        session = self.session(cmd.charger_id)
        tx = await self.recorder.store.transactions.get(cmd.transaction_id)
        if tx is None or tx.charger_id != cmd.charger_id:
            raise CommandError("unknown_target", f"no transaction {cmd.transaction_id} on {cmd.charger_id}")
        if not tx.open:
            raise CommandError("invalid", f"transaction {cmd.transaction_id} already stopped")
        action, payload = session.remote_stop(tx)
        return await session.request(action, payload)


def charger_id_from(path: str) -> str | None:
    match = _PATH.fullmatch(urlsplit(path).path)
    if match is None:
        return None
    charger_id = unquote(match[1])
    return charger_id if _ID.fullmatch(charger_id) and charger_id.lower() not in RESERVED_CHARGER_IDS else None


def _select_subprotocol(connection: ServerConnection, offered: Any) -> str | None:
    for ours in SUBPROTOCOLS:
        if ours in offered:
            return ours
    return None


def _reject(connection: ServerConnection, status: int, text: str, headers: dict[str, str] | None = None) -> Response:
    response = connection.respond(status, text + "\n")
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _port(server: Server) -> int:
    return server.sockets[0].getsockname()[1]


def _remote(connection: ServerConnection) -> str | None:
    address = connection.remote_address
    return f"{address[0]}:{address[1]}" if address else None

