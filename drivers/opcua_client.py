"""OPC UA client: building signals from a BMS or SCADA server, one connection per ``[[meters]]`` entry.

The gateway subscribes to the configured node ids (or reads them every ``poll_s`` when ``subscribe = false``,
or when the server offers no subscriptions), keeps the server's source timestamps and status codes, and
watches the connection. Every answer proves the server alive: a read, a change, and while nothing changes a
read of the server's state every ``stale_after_s / 3``. The values turn bad ``stale_after_s`` after the last
proof, on a timer of their own (a hung server keeps its socket open and answers nothing), or at once when the
link is lost; then the client reconnects with a doubling wait and subscribes again.

Security: Basic256Sha256 or Aes256Sha256RsaPss (Sign or SignAndEncrypt) with the gateway's own client
certificate, made at first start under ``{state_dir}/opcua/client/``, and a user and password when configured.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asyncua import Client, Node, ua
from asyncua.crypto import security_policies
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from cryptography.x509.oid import ExtendedKeyUsageOID

from gateway.clock import utcnow
from gateway.freshness import Freshness
from gateway.points import ProcessImage, Quality
from gateway.settings import OpcuaMeter, Settings
from gateway.tasks import first_to_end, raise_if_cancelled

log = logging.getLogger(__name__)

APP_URI = "urn:evedge:client"
HEALTHY_SESSION_S = 10.0
_POLICIES = {
    "Basic256Sha256": security_policies.SecurityPolicyBasic256Sha256,
    "Aes256Sha256RsaPss": security_policies.SecurityPolicyAes256Sha256RsaPss,
}
# Servers that cannot subscribe say so with one of these; then the client reads instead.
_NO_SUBSCRIPTIONS = (ua.StatusCodes.BadServiceUnsupported, ua.StatusCodes.BadTooManySubscriptions,
                     ua.StatusCodes.BadNotSupported)  # fmt: skip


def check(settings: Settings) -> list[str]:
    """Node ids that do not parse, for check-config."""
    problems = []
    for meter in settings.meters:
        if isinstance(meter, OpcuaMeter):
            for name, node_id in meter.points.items():
                try:
                    ua.NodeId.from_string(node_id)
                except (ValueError, ua.UaStringParsingError) as e:
                    problems.append(f"meters.{meter.id}.points.{name}: {node_id!r} is not a node id ({e})")
            if meter.security_policy == "None" and meter.password is not None:
                problems.append(f"meters.{meter.id}.password: would travel in clear without a security_policy")
    return problems


class OpcuaMeterClient:
    def __init__(self, meter: OpcuaMeter, image: ProcessImage, state_dir: Path) -> None:
        self.meter = meter
        self.image = image
        self.certificates = state_dir / "opcua" / "client"
        self.connected = False
        self.subscribed = False
        self.updates = 0
        self.sessions = 0  # connections made, for tests and health
        self.freshness = Freshness(meter.stale_after_s)
        self._broken: str | None = None  # why the server gave up our subscription

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        delay = min(self.meter.poll_s, 1.0)
        while True:
            began = loop.time()
            await self._session()
            # The wait grows until a session has held for a while: a server that accepts and then fails at
            # once must not be hammered with a new session every second.
            if loop.time() - began > max(self.meter.stale_after_s, HEALTHY_SESSION_S):
                delay = min(self.meter.poll_s, 1.0)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.meter.max_backoff_s)

    async def _session(self) -> None:
        """One connection, until it is lost. Its values turn bad before the goodbye: a CloseSession to a hung
        server waits a full request timeout, so on a lost link the socket is closed first."""
        client = Client(self.meter.endpoint, timeout=min(self.meter.stale_after_s, 10))
        try:
            await self._connect(client)
            await first_to_end(self._follow(client), self._until_stale())
        except Exception as e:  # noqa: BLE001 -- asyncua raises many kinds; every one means: connect again later
            raise_if_cancelled()
            self._lost(e)
            client.disconnect_socket()
        finally:
            if self.connected:
                self.connected = self.subscribed = False
                with contextlib.suppress(Exception):
                    await client.disconnect()  # asyncua's own tasks end here

    async def _connect(self, client: Client) -> None:
        client.application_uri = APP_URI
        if self.meter.security_policy != "None":
            key, cert = await self._certificate()
            mode = getattr(ua.MessageSecurityMode, self.meter.security_mode)
            await client.set_security(_POLICIES[self.meter.security_policy], str(cert), str(key), mode=mode)
        if self.meter.username:
            client.set_user(self.meter.username)
        if self.meter.password is not None:
            client.set_password(self.meter.password.get_secret_value())
        await client.connect()
        self.freshness.alive()
        self._broken = None
        self.connected = True
        self.sessions += 1
        log.info("OPC UA connected meter=%s endpoint=%s", self.meter.id, self.meter.endpoint)
        self.image.update({self._point("online"): True})

    async def _follow(self, client: Client) -> None:
        nodes = {name: client.get_node(node_id) for name, node_id in self.meter.points.items()}
        await self._read_all(nodes)  # values now, even those that never change
        if self.meter.subscribe and await self._subscribe(client, nodes):
            # Changes arrive through the subscription. A quiet server sends none, so its state is read now and
            # then: a value that does not change stays fresh as long as the server answers.
            while True:
                await asyncio.sleep(min(self.meter.stale_after_s / 3, 5.0))
                if self._broken:
                    raise ConnectionError(self._broken)
                await client.nodes.server_state.read_value()
                self.freshness.alive()
                raise_if_cancelled()
        while True:
            await asyncio.sleep(self.meter.poll_s)
            await self._read_all(nodes)
            raise_if_cancelled()

    async def _until_stale(self) -> None:
        await self.freshness.expired()
        raise TimeoutError(f"no answer for {self.meter.stale_after_s:g} s")

    async def _subscribe(self, client: Client, nodes: dict[str, Node]) -> bool:
        names = {node.nodeid: name for name, node in nodes.items()}
        try:
            subscription = await client.create_subscription(self.meter.poll_s * 1000, _Changes(self, names))
            handles = await subscription.subscribe_data_change(list(nodes.values()),
                                                               sampling_interval=self.meter.poll_s * 1000)  # fmt: skip
        except ua.UaStatusCodeError as e:
            if e.code not in _NO_SUBSCRIPTIONS:
                raise
            log.info("OPC UA server offers no subscription, reading every %g s meter=%s", self.meter.poll_s,
                     self.meter.id)  # fmt: skip
            return False
        for name, handle in zip(nodes, handles if isinstance(handles, list) else [handles], strict=True):
            if isinstance(handle, ua.StatusCode):  # this node cannot be followed (unknown, not readable)
                self.show(name, ua.DataValue(StatusCode=handle))
        self.subscribed = True
        return True

    async def _read_all(self, nodes: dict[str, Node]) -> None:
        # A node with a bad status is a bad point, not a lost link (a BMS whose field device is offline).
        values = await asyncio.gather(*(node.read_data_value(raise_on_bad_status=False) for node in nodes.values()))
        self.freshness.alive()
        for name, data in zip(nodes, values, strict=True):
            self.show(name, data)

    def show(self, name: str, data: ua.DataValue) -> None:
        status = data.StatusCode or ua.StatusCode(ua.StatusCodes.Good)
        quality = Quality.good if status.is_good() else Quality.uncertain if status.is_uncertain() else Quality.bad
        value = _plain(data.Value.Value if data.Value else None)
        if isinstance(value, float) and not math.isfinite(value):
            value, quality = None, Quality.bad  # NaN or infinity: no number anyone should compute with
        point = self._point(name)
        if quality == Quality.bad:
            self.image.update({self._point("last_error"): f"{name}: {status.name}"})
            if value is None:  # keep the last value, flagged
                previous = self.image.get(point)
                value = previous.value if previous else None
        ts = data.SourceTimestamp or data.ServerTimestamp
        self.image.set(point, value, _aware(ts), quality)
        self.updates += 1

    def subscription_ended(self, status: ua.StatusCode) -> None:
        """The server gave up our subscription, or asyncua found the link dead: values bad now, and the
        session ends at its next look."""
        self._broken = f"subscription ended: {status.name}"
        self._lost(self._broken)

    def _lost(self, error: BaseException | str) -> None:
        """The link is gone: said once, with the meter's name; its values bad at once."""
        reason = error if isinstance(error, str) else _reason(error)
        if self.image.value(self._point("online")) is not False:
            log.warning("OPC UA link lost meter=%s endpoint=%s: %s", self.meter.id, self.meter.endpoint, reason)
        self.image.update({self._point("online"): False, self._point("last_error"): reason})
        self.image.mark_points([self._point(name) for name in self.meter.points], Quality.bad)

    def _point(self, leaf: str) -> str:
        return f"meters/{self.meter.id}/{leaf}"

    async def _certificate(self) -> tuple[Path, Path]:
        key, cert = self.certificates / "key.pem", self.certificates / "cert.der"
        if not (key.exists() and cert.exists()):
            self.certificates.mkdir(parents=True, exist_ok=True)
            await setup_self_signed_certificate(
                key, cert, APP_URI, socket.gethostname(), [ExtendedKeyUsageOID.CLIENT_AUTH],
                {"commonName": "evedge OPC UA client", "organizationName": "evedge"},
            )  # fmt: skip
            log.info("OPC UA client certificate made: %s", cert)
        return key, cert

    def health(self) -> dict[str, Any]:
        return {"connected": self.connected, "subscribed": self.subscribed, "sessions": self.sessions}


class _Changes:
    """asyncua's subscription handler: every change becomes a point and proves the server alive."""

    def __init__(self, client: OpcuaMeterClient, names: dict[ua.NodeId, str]) -> None:
        self.client = client
        self.names = names

    def datachange_notification(self, node: Node, value: Any, data: Any) -> None:
        name = self.names.get(node.nodeid)
        if name is not None:
            self.client.freshness.alive()
            self.client.show(name, data.monitored_item.Value)

    def status_change_notification(self, status: ua.StatusChangeNotification) -> None:
        if not status.Status.is_good():
            self.client.subscription_ended(status.Status)


class OpcuaDriver:
    def __init__(self, meters: list[OpcuaMeter], image: ProcessImage, state_dir: Path) -> None:
        self.clients = [OpcuaMeterClient(m, image, state_dir) for m in meters]

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            for client in self.clients:
                tasks.create_task(client.run(), name=f"opcua-{client.meter.id}")

    def health(self) -> dict[str, Any]:
        return {"status": "ok", "meters": {c.meter.id: c.health() for c in self.clients}}


def _reason(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def _plain(value: Any) -> Any:
    """A value the process image (and JSON) can carry."""
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    return str(value)


def _aware(ts: datetime | None) -> datetime:
    if ts is None:
        return utcnow()
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)
