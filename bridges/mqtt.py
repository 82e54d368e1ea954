"""The MQTT bridge: the site's state and its durable streams to the cloud, commands from it.

Topics under ``evedge/{gatewayId}/`` (PRODUCT.md §9):

- ``status``: retained ``{"state": "online"}``; the broker publishes the retained last will ``offline``.
- ``{path}/state``: retained JSON of the points directly under a path of the process image -- ``site/state``,
  ``chargers/{id}/state``, ``chargers/{id}/evse/{n}/state``, ``meters/{id}/state``, ``outbox/state`` --
  derived from the point names, never listed by hand; ``{leaf: {"value", "ts", "quality"}}``. All of them
  are published at each connection, then the changed ones at most every ``state_interval_s``.
- ``telemetry`` and ``events``: the durable outbox, QoS 1, in order, each message deleted only on its PUBACK.
  ``{"id", "seq", "ts", "kind", "data"}``; telemetry ``data`` is ``{"points": {name: [value, ts, quality]}}``.
- ``cmd/{chargerId}/{Action}`` (the OCPP request payload) and ``cmd/site/limit`` (``{"limit_w": W}``, a
  number, or null to lift): executed through the command door as the configured role, answered at the same
  topic + ``/reply`` and, with MQTT 5, on the request's response topic with its correlation data:
  ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": code, "message": why}``.
- Alarms: the durable stream ``alarms`` (every transition, ``data`` = ``{"alarm": record, "transition": {"kind",
  "before", "after", "actor", "comment"}}``), the retained ``alarms/active`` (the records of every alarm not in the
  normal state, most severe first; ``[]`` when there is none), and the commands ``cmd/alarms/{id}/ack``
  (``{"comment": "..."}``) and ``cmd/alarms/{id}/shelve`` (``{"minutes": 60, "comment": "..."}``), answered like
  the others.

The link is one task with reconnect and a doubling wait. Nothing here slows the chargers: the state comes
from a coalescing feed, the durable streams from SQLite, and commands run in tasks of their own (bounded).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import ssl
from collections import defaultdict
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bridges.outbox import Delivery
from gateway.alarms import AcknowledgeAlarm, AlarmList, ShelveAlarm
from gateway.auth import Actor, Role
from gateway.commands import Command, CommandError, Commands, OcppRequest, SetSiteLimit
from gateway.points import Point, ProcessImage
from gateway.settings import MqttSettings, Settings
from gateway.store import Store
from gateway.store.outbox import Message
from gateway.tasks import first_to_end, raise_if_cancelled

log = logging.getLogger(__name__)

FIRST_DELAY_S = 1.0
HEALTHY_SESSION_S = 30.0
PUBLISH_TIMEOUT_S = 60.0  # a PUBACK that long overdue means the link is dead: reconnect and send again
ACK_FLUSH_S = 0.2
MAX_COMMANDS = 32  # commands running at once; more are answered "busy"
MAX_COMMAND_BYTES = 64 * 1024
ONLINE, OFFLINE = b'{"state":"online"}', b'{"state":"offline"}'


def state_topic(point: str) -> tuple[str, str]:
    """(state topic path, leaf) of a point: chargers/CP01/evse/1/power_w -> (chargers/CP01/evse/1, power_w)."""
    parent, _, leaf = point.rpartition("/")
    return parent, leaf


class MqttBridge:
    def __init__(self, settings: Settings, image: ProcessImage, store: Store, commands: Commands,
                 alarms: AlarmList | None = None) -> None:  # fmt: skip
        assert settings.mqtt is not None
        self.settings: MqttSettings = settings.mqtt
        self.base = f"evedge/{settings.gateway.id}"
        self.client_id = self.settings.client_id or f"evedge-{settings.gateway.id}"
        self.image = image
        self.store = store
        self.commands = commands
        self.actor = Actor(self.settings.username or "broker", Role[self.settings.command_role], "mqtt")
        self.connected = False
        self.connections = 0
        self.published = 0  # durable messages acknowledged by the broker
        self.last_error: str | None = None
        self._states: dict[str, dict[str, Point]] = defaultdict(dict)  # state path -> leaf -> point
        self._feed = image.feed("")
        self._commands: set[asyncio.Task[None]] = set()
        self.alarms = alarms

    # -- the link ----------------------------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        delay = FIRST_DELAY_S
        try:
            while True:
                began = loop.time()
                try:
                    async with self._client() as client:
                        await self._session(client)
                except Exception as e:
                    raise_if_cancelled()
                    error = _first_error(e)
                    self.last_error = f"{type(error).__name__}: {error}"
                    if isinstance(error, aiomqtt.MqttError | OSError | TimeoutError):
                        log.warning("mqtt link down broker=%s:%s error=%s retry_in_s=%g", self.settings.host,
                                    self.settings.port, self.last_error, delay)  # fmt: skip
                    else:
                        log.error("mqtt session failed broker=%s:%s", self.settings.host, self.settings.port,
                                  exc_info=error)  # fmt: skip
                finally:
                    self.connected = False
                if loop.time() - began > HEALTHY_SESSION_S:
                    delay = FIRST_DELAY_S
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.reconnect_max_s)
        finally:
            self._feed.close()
            for task in self._commands:
                task.cancel()

    def _client(self) -> aiomqtt.Client:
        s = self.settings
        v5 = s.version == "5"
        return aiomqtt.Client(
            s.host, s.port, identifier=self.client_id,
            username=s.username, password=s.password.get_secret_value() if s.password else None,
            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
            will=aiomqtt.Will(f"{self.base}/status", OFFLINE, qos=1, retain=True),
            clean_session=None if v5 else True, keepalive=s.keepalive_s, timeout=10,
            max_inflight_messages=s.max_inflight + 10, tls_context=self._tls() if s.tls else None,
        )  # fmt: skip

    def _tls(self) -> ssl.SSLContext:
        s = self.settings
        context = ssl.create_default_context(cafile=str(s.ca_file) if s.ca_file else None)
        if s.cert_file and s.key_file:
            context.load_cert_chain(str(s.cert_file), str(s.key_file))
        return context

    async def _session(self, client: aiomqtt.Client) -> None:
        self.connected = True
        self.connections += 1
        self.last_error = None
        log.info("mqtt connected broker=%s:%s client_id=%s", self.settings.host, self.settings.port, self.client_id)
        await client.subscribe(f"{self.base}/cmd/+/+", qos=1)
        if self.alarms is not None:
            await client.subscribe(f"{self.base}/cmd/alarms/+/+", qos=1)
        await client.publish(f"{self.base}/status", ONLINE, qos=1, retain=True, timeout=math.inf)
        try:  # _receive ends with an error when the link is lost
            parts = [self._deliver(client), self._publish_states(client), self._receive(client)]
            if self.alarms is not None:
                parts.append(self._publish_alarms(client, self.alarms))
            await first_to_end(*parts)
        except asyncio.CancelledError:  # the gateway stops: say goodbye ourselves rather than by the last will
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await client.publish(f"{self.base}/status", OFFLINE, qos=1, retain=True, timeout=math.inf)
            raise

    # -- durable streams ---------------------------------------------------------------------------------

    async def _deliver(self, client: aiomqtt.Client) -> None:
        """The outbox in order, `max_inflight` ahead of the PUBACKs; each message deleted once acknowledged."""
        delivery = Delivery(self.store, self.settings.max_inflight)
        flusher = asyncio.create_task(self._flush_acks(delivery))
        try:
            async with asyncio.TaskGroup() as sending:
                while True:
                    for message in await delivery.next():
                        sending.create_task(self._send(client, delivery, message))
        finally:
            flusher.cancel()
            await asyncio.gather(flusher, return_exceptions=True)
            await delivery.flush()  # what the broker has is deleted now, not sent again

    async def _send(self, client: aiomqtt.Client, delivery: Delivery, message: Message) -> None:
        async with asyncio.timeout(PUBLISH_TIMEOUT_S):
            await client.publish(f"{self.base}/{message.stream}", message.envelope(), qos=1, timeout=math.inf)
        delivery.acknowledged(message)
        self.published += 1

    async def _flush_acks(self, delivery: Delivery) -> None:
        while True:
            await asyncio.sleep(ACK_FLUSH_S)
            await delivery.flush()

    # -- retained state ----------------------------------------------------------------------------------

    async def _publish_states(self, client: aiomqtt.Client) -> None:
        self._feed.get_nowait()  # the snapshot below covers it
        self._states.clear()
        for name, point in self.image.items():
            parent, leaf = state_topic(name)
            self._states[parent][leaf] = point
        changed = set(self._states)
        while True:
            for parent in sorted(changed):
                await client.publish(f"{self.base}/{parent}/state", self._state_payload(parent), qos=1, retain=True,
                                     timeout=math.inf)  # fmt: skip
            await asyncio.sleep(self.settings.state_interval_s)
            changed = set()
            for name, point in (await self._feed.get()).items():
                parent, leaf = state_topic(name)
                self._states[parent][leaf] = point
                changed.add(parent)

    def _state_payload(self, parent: str) -> bytes:
        leaves = self._states[parent]
        body = {leaf: point.as_json() for leaf, point in sorted(leaves.items())}
        return json.dumps(body, separators=(",", ":"), default=str).encode()

    async def _publish_alarms(self, client: aiomqtt.Client, alarms: AlarmList) -> None:
        """Retained alarms/active: at each connection, then at most every state_interval_s when the list changed."""
        feed = alarms.feed()
        try:
            await alarms.ready.wait()
            while True:
                payload = json.dumps(alarms.active(), separators=(",", ":"), default=str).encode()
                await client.publish(f"{self.base}/alarms/active", payload, qos=1, retain=True, timeout=math.inf)
                await asyncio.sleep(self.settings.state_interval_s)
                await feed.get()
        finally:
            feed.close()

    # -- commands ----------------------------------------------------------------------------------------

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            if len(self._commands) >= MAX_COMMANDS:
                await self._reply(client, message, _refusal("busy", f"{MAX_COMMANDS} commands are running"))
                continue
            task = asyncio.create_task(self._command(client, message))
            self._commands.add(task)
            task.add_done_callback(self._commands.discard)

    async def _command(self, client: aiomqtt.Client, message: aiomqtt.Message) -> None:
        topic = message.topic.value
        try:
            answer = {"ok": True, "result": await self.commands.execute(self._parse(topic, message.payload),
                                                                        self.actor)}  # fmt: skip
        except CommandError as e:
            answer = {"ok": False, **e.as_json()}
        except Exception as e:
            raise_if_cancelled()
            log.exception("mqtt command failed topic=%s", topic)
            answer = _refusal("error", f"{type(e).__name__}: the gateway could not run it")
        with contextlib.suppress(aiomqtt.MqttError):
            await self._reply(client, message, answer)

    def _parse(self, topic: str, payload: Any) -> Command:
        path = topic.removeprefix(f"{self.base}/cmd/").split("/")
        if not isinstance(payload, bytes | bytearray) or len(payload) > MAX_COMMAND_BYTES:
            raise CommandError("invalid", f"the payload must be JSON of at most {MAX_COMMAND_BYTES} bytes")
        try:
            body = json.loads(payload) if payload else {}
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CommandError("invalid", f"the payload is not JSON: {e}") from None
        if len(path) == 3 and path[0] == "alarms":  # cmd/alarms/{id}/{action}
            return _alarm_command(path[1], path[2], body)
        if len(path) != 2:
            raise CommandError("invalid", "commands are cmd/{chargerId}/{Action}, cmd/site/limit, cmd/alarms/{id}/ack")
        target, action = path
        if target == "site":
            if action != "limit":
                raise CommandError("invalid", f"the site takes cmd/site/limit, not {action!r}")
            if isinstance(body, dict):  # the command checks the values, as for every door
                return SetSiteLimit(body.get("limit_w"), source="mqtt", valid_s=body.get("valid_s"))
            return SetSiteLimit(body, source="mqtt")
        if not isinstance(body, dict):
            raise CommandError("invalid", "an OCPP request payload is a JSON object")
        return OcppRequest(target, action, body)

    async def _reply(self, client: aiomqtt.Client, request: aiomqtt.Message, answer: dict[str, Any]) -> None:
        payload = json.dumps(answer, separators=(",", ":"), default=str).encode()
        await client.publish(f"{request.topic.value}/reply", payload, qos=1, timeout=math.inf)
        props = request.properties
        response_topic = getattr(props, "ResponseTopic", None) if props is not None else None
        if response_topic:
            out = Properties(PacketTypes.PUBLISH)
            correlation = getattr(props, "CorrelationData", None)
            if correlation is not None:
                out.CorrelationData = correlation
            await client.publish(response_topic, payload, qos=1, properties=out, timeout=math.inf)

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok" if self.connected else "down",
            "connected": self.connected,
            "broker": f"{self.settings.host}:{self.settings.port}",
            "connections": self.connections,
            "published": self.published,
            "state_coalesced": self._feed.coalesced,
            "last_error": self.last_error,
        }


def _alarm_command(alarm_id: str, action: str, body: Any) -> Command:
    if not isinstance(body, dict):
        raise CommandError("invalid", "an alarm command's payload is a JSON object (or empty)")
    unknown = set(body) - {"comment", "minutes"}
    if unknown:
        raise CommandError("invalid", f"unknown fields: {', '.join(sorted(unknown))}")
    if action == "ack":
        return AcknowledgeAlarm(alarm_id, body.get("comment"))
    if action == "shelve":
        return ShelveAlarm(alarm_id, body.get("comment"), body.get("minutes", 60))
    raise CommandError("invalid", f"an alarm takes cmd/alarms/{{id}}/ack or /shelve, not {action!r}")


def _first_error(error: BaseException) -> BaseException:
    """The first real error inside the exception groups of the session's tasks."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error


def _refusal(code: str, message: str) -> dict[str, Any]:
    return {"ok": False, "error": code, "message": message}
