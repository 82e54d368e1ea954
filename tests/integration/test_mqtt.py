"""The MQTT bridge against a real Mosquitto: retained state, durable streams through outages and SIGKILL,
commands and their replies, the disk budget."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import json
import os
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.auth import Role
from gateway.settings import load_settings
from gateway.sim.charger import SimSpec
from gateway.sim.ev import Ev
from gateway.sim.site import make_charger
from gateway.store import Store
from tests.conftest import (
    REFUSED_MINUS_5,
    PASSWORDS,
    Broker,
    connected,
    eventually,
    free_port,
    running_gateway,
    wait_http,
    write_config,
)

BASE = "evedge/test"


def mqtt_section(port: int, **keys: Any) -> str:
    keys = {"host": "127.0.0.1", "port": port, "reconnect_max_s": 0.5, "telemetry_interval_s": 0.2,
            "state_interval_s": 0.1, **keys}  # fmt: skip
    return "\n[mqtt]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in keys.items())


class Subscriber:
    """A cloud client: a persistent MQTT 3.1.1 session (the broker keeps its QoS 1 messages while it is away),
    reconnecting by itself; every message kept in arrival order."""

    def __init__(self, port: int, topic: str = f"{BASE}/#") -> None:
        self.port = port
        self.topic = topic
        self.client_id = f"cloud-{uuid.uuid4().hex[:8]}"
        self.messages: list[aiomqtt.Message] = []
        self.subscribed = asyncio.Event()

    async def run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client("127.0.0.1", self.port, identifier=self.client_id, clean_session=False,
                                          protocol=aiomqtt.ProtocolVersion.V311) as client:  # fmt: skip
                    await client.subscribe(self.topic, qos=1)
                    self.subscribed.set()
                    async for message in client.messages:
                        self.messages.append(message)
            except aiomqtt.MqttError:
                await asyncio.sleep(0.1)

    def on(self, topic: str) -> list[dict[str, Any]]:
        return [json.loads(m.payload) for m in self.messages if m.topic.value == f"{BASE}/{topic}"]

    def durable(self) -> list[dict[str, Any]]:
        return self.on("events") + self.on("telemetry") + self.on("alarms")

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.on("events") if e["kind"] == kind]


@contextlib.asynccontextmanager
async def subscribed(port: int, topic: str = f"{BASE}/#") -> AsyncIterator[Subscriber]:
    sub = Subscriber(port, topic)
    task = asyncio.create_task(sub.run())
    try:
        await asyncio.wait_for(sub.subscribed.wait(), 10)
        yield sub
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def retained(port: int, topic: str, timeout: float = 10.0) -> dict[str, Any]:
    """What a newcomer gets at once on subscribing: the retained message (asked again until there is one)."""
    async def once() -> dict[str, Any] | None:
        async with aiomqtt.Client("127.0.0.1", port) as client:
            await client.subscribe(topic, qos=1)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1):
                    async for message in client.messages:
                        if message.retain:  # not one published live since we subscribed
                            return json.loads(message.payload)
        return None

    return await eventually(once, timeout, interval=0.1)


def assert_gap_free(messages: list[dict[str, Any]]) -> list[int]:
    seqs = sorted({m["seq"] for m in messages})
    missing = sorted(set(range(seqs[0], seqs[-1] + 1)) - set(seqs))
    assert not missing, f"gaps in seq: {missing}"
    for m in messages:
        assert m["id"] and m["ts"].endswith("Z") and "kind" in m and "data" in m
    return seqs


async def charge(sim, evse: int, id_tag: str, seconds: int = 900) -> None:
    await sim.plug_in(evse, Ev(capacity_wh=60000, soc=20.0, max_w=11000, id_tag=id_tag))
    await sim.start_session(evse)
    sim.advance(seconds)
    await sim.send_meter_values(evse)
    await sim.stop_session(evse, "Local")
    await sim.unplug(evse)


async def test_state_status_telemetry_and_events(tmp_path, broker: Broker):
    settings = load_settings(write_config(tmp_path, mqtt_section(broker.port)), environ={})
    async with subscribed(broker.port) as cloud, running_gateway(settings) as gw:
        sim = gw.charger("CP16", "1.6")
        async with connected(sim):
            await charge(sim, 1, "BADGE-1")
            await eventually(lambda: cloud.events("transaction_stopped"), timeout=10)
        assert (await retained(broker.port, f"{BASE}/status")) == {"state": "online"}
        charger = await retained(broker.port, f"{BASE}/chargers/CP16/state")
        assert charger["ocpp_version"]["value"] == "1.6" and charger["online"]["quality"] == "good"
        evse = await retained(broker.port, f"{BASE}/chargers/CP16/evse/1/state")
        assert evse["transaction_id"]["value"] == 0 and "status" in evse
        outbox = await retained(broker.port, f"{BASE}/outbox/state")
        assert set(outbox) == {"queued", "queued_bytes", "dropped", "oldest_age_s"}

        started, stopped = cloud.events("transaction_started")[0], cloud.events("transaction_stopped")[0]
        assert started["data"]["charger"] == "CP16" and started["data"]["id_tag"] == "BADGE-1"
        assert stopped["data"]["id"] == started["data"]["id"] and stopped["data"]["energy_wh"] > 0
        statuses = [e["data"]["status"] for e in cloud.events("status") if e["data"]["evse"] == 1]
        assert statuses.index("Preparing") < statuses.index("Charging") < statuses.index("Finishing")
        assert cloud.events("gateway_started") and cloud.events("charger_online")
        points = {name for t in cloud.on("telemetry") for name in t["data"]["points"]}
        assert "chargers/CP16/evse/1/power_w" in points and not any(p.startswith("outbox/") for p in points)
        assert_gap_free(cloud.durable())
        # Acknowledged messages leave the outbox.
        await eventually(lambda: gw.app.image.value("outbox/queued") == 0, timeout=10)
    # A clean stop says offline itself (the broker's last will is for a lost link).
    assert (await retained(broker.port, f"{BASE}/status")) == {"state": "offline"}


async def test_outage_and_sigkill_lose_no_durable_message(tmp_path, broker: Broker, gateway_process):
    ocpp_port, web_port = free_port(), free_port()
    config = write_config(tmp_path, mqtt_section(broker.port, keepalive_s=5), ocpp_port=ocpp_port, web_port=web_port)
    async with Store(load_settings(config, environ={}).gateway.state_dir) as store:
        token = await store.accounts.create_token(Role.admin, "test")
    process = gateway_process(config)
    web = f"http://127.0.0.1:{web_port}"

    async def start() -> None:
        process.start()
        await wait_http(f"{web}/api/v1/health")

    async def transactions() -> list[dict[str, Any]]:
        async with httpx.AsyncClient(base_url=web, headers={"Authorization": f"Bearer {token}"}) as api:
            return (await api.get("/api/v1/transactions")).json()

    async with subscribed(broker.port) as cloud:  # the cloud listens from the start
        await start()
        sim = make_charger(SimSpec("CP201", "2.0.1", f"ws://127.0.0.1:{ocpp_port}/ocpp", PASSWORDS["CP201"]),
                           reconnect_min_s=0.05, reconnect_max_s=0.3)  # fmt: skip
        async with connected(sim):
            await charge(sim, 1, "BEFORE")
            await eventually(lambda: cloud.events("transaction_stopped"), timeout=10)

            broker.stop()  # the cloud link goes down; the chargers go on charging
            await charge(sim, 1, "DURING-1")
            assert len(await transactions()) == 2
            process.kill()  # and the gateway dies while the broker is still away
            await eventually(lambda: not sim.connected.is_set())
            await start()
            await eventually(lambda: sim.connected.is_set() and sim.backlog == 0, timeout=20)
            await charge(sim, 1, "DURING-2")
            assert len(await transactions()) == 3

            await broker.start()  # the broker returns: everything queued arrives, in order, gap-free
            await eventually(lambda: len(cloud.events("transaction_stopped")) >= 3, timeout=20)
        tags = [e["data"]["id_tag"] for e in cloud.events("transaction_started")]
        assert tags[:1] == ["BEFORE"] and "DURING-1" in tags and "DURING-2" in tags
        seqs = assert_gap_free(cloud.durable())
        assert seqs[0] == 1  # from the gateway's very first message
        assert len(cloud.events("gateway_started")) == 2  # both lives of the gateway
        assert (await retained(broker.port, f"{BASE}/status")) == {"state": "online"}
        assert (await retained(broker.port, f"{BASE}/chargers/CP201/state"))["online"]["value"] is True
    # A gateway that dies with the broker up leaves its last will.
    process.kill()

    async def offline() -> bool:
        return (await retained(broker.port, f"{BASE}/status")) == {"state": "offline"}

    await eventually(offline, timeout=20, interval=0.5)


async def test_tiny_budget_drops_old_telemetry_never_events(tmp_path, broker: Broker):
    broker.stop()  # nobody takes the messages: the outbox fills
    extra = mqtt_section(broker.port, telemetry_interval_s=0.05) + "\n[outbox]\nmax_mb = 0.002\n"
    settings = load_settings(write_config(tmp_path, extra), environ={})
    async with running_gateway(settings) as gw:
        sim = gw.charger("CP16", "1.6")
        async with connected(sim):
            for n in range(3):
                await sim.plug_in(1, Ev(capacity_wh=60000, soc=20.0, max_w=11000, id_tag=f"TAG-{n}"))
                await sim.start_session(1)
                for _ in range(10):  # a stream of telemetry
                    sim.advance(60)
                    await sim.send_meter_values(1)
                    await asyncio.sleep(0.06)
                await sim.stop_session(1, "Local")
                await sim.unplug(1)
            image = gw.app.image
            await eventually(lambda: (image.value("outbox/dropped") or 0) > 0, timeout=15)
            totals = await gw.app.store.outbox.totals()
            assert totals.dropped == image.value("outbox/dropped") or totals.dropped > 0
            assert gw.app.health()["outbox"]["dropped"] > 0

            await broker.start()
            async with subscribed(broker.port) as cloud:
                await eventually(lambda: len(cloud.events("transaction_stopped")) == 3, timeout=20)
                assert [e["data"]["id_tag"] for e in cloud.events("transaction_started")] == ["TAG-0", "TAG-1",
                                                                                           "TAG-2"]
                events = cloud.on("events")
                seqs = [e["seq"] for e in events]
                assert seqs == sorted(seqs)  # in order; the gaps are the dropped telemetry
                telemetry = cloud.on("telemetry")
                first = sorted(m["seq"] for m in events + telemetry)
                missing = set(range(first[0], first[-1] + 1)) - set(first)
                assert missing and all(m["kind"] == "telemetry" for m in telemetry)


def with_response(topic: str, correlation: bytes) -> Properties:
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = topic
    props.CorrelationData = correlation
    return props


async def ask(port: int, topic: str, payload: bytes, v5: bool = True) -> tuple[dict, dict | None, bytes | None]:
    """Publish a command; return the reply at topic/reply and, with MQTT 5, at the response topic with its
    correlation data."""
    response_topic = f"app/{uuid.uuid4().hex[:6]}/answer"
    protocol = aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311
    async with aiomqtt.Client("127.0.0.1", port, protocol=protocol) as client:
        await client.subscribe(f"{topic}/reply", qos=1)
        if v5:
            await client.subscribe(response_topic, qos=1)
        props = with_response(response_topic, b"req-42") if v5 else None
        await client.publish(topic, payload, qos=1, properties=props)
        reply = response = correlation = None
        async with asyncio.timeout(15):
            async for message in client.messages:
                if message.topic.value == f"{topic}/reply":
                    reply = json.loads(message.payload)
                else:
                    response = json.loads(message.payload)
                    correlation = message.properties.CorrelationData
                if reply is not None and (response is not None or not v5):
                    return reply, response, correlation
    raise AssertionError("unreachable")


async def test_commands_are_answered_with_the_chargers_reply(tmp_path, broker: Broker):
    settings = load_settings(write_config(tmp_path, mqtt_section(broker.port)), environ={})
    async with running_gateway(settings) as gw:
        await eventually(lambda: gw.app.mqtt.connected)
        sim = gw.charger("CP16", "1.6")
        async with connected(sim):
            topic = f"{BASE}/cmd/CP16/GetConfiguration"
            reply, response, correlation = await ask(broker.port, topic, b'{"key": ["HeartbeatInterval"]}')
            assert reply["ok"] is True and reply["result"]["configurationKey"][0]["key"] == "HeartbeatInterval"
            assert response == reply and correlation == b"req-42"
            assert "GetConfiguration" in sim.heard

            reply, _, _ = await ask(broker.port, topic, b'{"key": [', v5=False)
            assert (reply["ok"], reply["error"]) == (False, "invalid") and "JSON" in reply["message"]
            reply, _, _ = await ask(broker.port, f"{BASE}/cmd/NOPE/Reset", b'{"type": "Soft"}', v5=False)
            assert reply["ok"] is False and reply["error"] == "unknown_target"
            reply, _, _ = await ask(broker.port, f"{BASE}/cmd/CP16/ChangeConfiguration",
                                    b'{"key": "HeartbeatInterval", "value": "10"}', v5=False)  # fmt: skip
            assert reply["ok"] is False and reply["error"] == "forbidden" and "admin" in reply["message"]
            reply, _, _ = await ask(broker.port, f"{BASE}/cmd/site/limit", b'{"limit_w": -5}', v5=False)
            assert reply == {"ok": False, "error": "invalid", "message": REFUSED_MINUS_5}  # as from every door
        audit = await gw.app.store.audit.query(limit=20)
        assert any(a["actor"] == "mqtt:broker" and a["command"] == "OcppRequest" for a in audit)


async def test_a_role_that_may_not_act_is_refused_with_the_reason(tmp_path, broker: Broker):
    extra = mqtt_section(broker.port, command_role="guest")
    async with running_gateway(load_settings(write_config(tmp_path, extra, loadcap=True), environ={})) as gw:
        await eventually(lambda: gw.app.mqtt.connected)
        reply, _, _ = await ask(broker.port, f"{BASE}/cmd/site/limit", b'{"limit_w": 50000}')
        assert reply["ok"] is False and reply["error"] == "forbidden" and "operator" in reply["message"]
        assert gw.app.loadcap.state()["limit_w"] == 100000


async def test_the_site_limit_from_mqtt(tmp_path, broker: Broker):
    async with running_gateway(load_settings(write_config(tmp_path, mqtt_section(broker.port), loadcap=True),
                                             environ={})) as gw:  # fmt: skip
        await eventually(lambda: gw.app.mqtt.connected)
        reply, _, _ = await ask(broker.port, f"{BASE}/cmd/site/limit", b"42000")
        assert reply["ok"] is True
        assert gw.app.loadcap.state()["limit_w"] == 42000
        reply, _, _ = await ask(broker.port, f"{BASE}/cmd/site/limit", b'{"limit_w": null}')
        assert reply["ok"] is True
        assert gw.app.loadcap.state()["limit_w"] == 100000


@pytest.mark.parametrize("version", ["5", "3.1.1"])
async def test_both_protocol_versions_deliver(tmp_path, broker: Broker, version):
    settings = load_settings(write_config(tmp_path, mqtt_section(broker.port, version=version)), environ={})
    async with subscribed(broker.port) as cloud, running_gateway(settings):
        await eventually(lambda: cloud.events("gateway_started"), timeout=10)
    assert (await retained(broker.port, f"{BASE}/status")) == {"state": "offline"}


async def test_the_bridge_reconnects_when_the_broker_returns(tmp_path, broker: Broker):
    settings = load_settings(write_config(tmp_path, mqtt_section(broker.port, keepalive_s=5)), environ={})
    async with running_gateway(settings) as gw:
        await eventually(lambda: gw.app.mqtt.connected)
        assert (await retained(broker.port, f"{BASE}/status")) == {"state": "online"}
        broker.stop()
        await eventually(lambda: not gw.app.mqtt.connected, timeout=10)
        assert gw.app.health()["mqtt"]["status"] == "down"
        await broker.start()
        await eventually(lambda: gw.app.mqtt.connected, timeout=10)
        assert gw.app.mqtt.connections == 2


async def test_a_stalled_broker_never_slows_the_chargers(tmp_path, broker: Broker):
    """The broker hangs (SIGSTOP: the socket stays open, nothing is acknowledged): the chargers are answered as
    ever, the state feed coalesces (counted), and once the broker wakes up every durable message arrives."""
    settings = load_settings(write_config(tmp_path, mqtt_section(broker.port, keepalive_s=120)), environ={})
    async with subscribed(broker.port) as cloud, running_gateway(settings) as gw:
        await eventually(lambda: gw.app.mqtt.connected)
        sim = gw.charger("CP16", "1.6")
        async with connected(sim):
            await sim.plug_in(1, Ev(capacity_wh=200000, soc=5.0, max_w=11000, id_tag="STALL"))
            await sim.start_session(1)
            assert broker.process is not None
            os.kill(broker.process.pid, signal.SIGSTOP)
            try:
                for _ in range(150):  # each one waits for the gateway's answer (a 5 s call timeout)
                    sim.advance(10)
                    await sim.send_meter_values(1)
                energy = sim.evses[1].meter_wh
                await eventually(lambda: abs(gw.app.image.value("chargers/CP16/evse/1/energy_wh") - energy) < 1)
                assert gw.app.health()["mqtt"]["state_coalesced"] > 0
                await sim.stop_session(1, "Local")
            finally:
                os.kill(broker.process.pid, signal.SIGCONT)
            await eventually(lambda: cloud.events("transaction_stopped"), timeout=20)
            await eventually(lambda: gw.app.image.value("outbox/queued") == 0, timeout=20)
        assert_gap_free(cloud.durable())


def make_pki(directory: Path) -> dict[str, Path]:
    """A site CA, the broker's certificate (for 127.0.0.1) and a client certificate, as PEM files."""
    now = dt.datetime.now(dt.UTC)
    files: dict[str, Path] = {}

    def issue(name: str, issuer_key=None, issuer_name=None, ca: bool = False, san=None):
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name or subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))  # fmt: skip
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        cert = builder.sign(issuer_key or key, hashes.SHA256())
        files[f"{name}.pem"] = directory / f"{name}.pem"
        files[f"{name}.pem"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        files[f"{name}.key"] = directory / f"{name}.key"
        files[f"{name}.key"].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                           serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption()))  # fmt: skip
        return key, subject

    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_name = issue("site-ca", ca=True)
    issue("broker", ca_key, ca_name, san=[x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    issue("evedge-test", ca_key, ca_name)
    return files


async def test_tls_with_a_client_certificate(tmp_path):
    pki = make_pki(tmp_path / "pki")
    broker = Broker(tmp_path / "broker", f"cafile {pki['site-ca.pem']}\ncertfile {pki['broker.pem']}\n"
                    f"keyfile {pki['broker.key']}\nrequire_certificate true\nuse_identity_as_username true")  # fmt: skip
    await broker.start()
    try:
        tls = {"tls": True, "ca_file": str(pki["site-ca.pem"])}
        good = mqtt_section(broker.port, **tls, cert_file=str(pki["evedge-test.pem"]),
                            key_file=str(pki["evedge-test.key"]))  # fmt: skip
        async with running_gateway(load_settings(write_config(tmp_path, good), environ={})) as gw:
            await eventually(lambda: gw.app.mqtt.connected, timeout=10)
            await eventually(lambda: gw.app.image.value("outbox/queued") == 0, timeout=10)  # delivered over TLS
            assert gw.app.mqtt.published > 0
        (tmp_path / "state").rename(tmp_path / "first")
        # Without its certificate the broker will not have it; the reason is in the health.
        async with running_gateway(load_settings(write_config(tmp_path, mqtt_section(broker.port, **tls)),
                                                 environ={})) as gw:  # fmt: skip
            await eventually(lambda: gw.app.mqtt.last_error, timeout=10)
            assert not gw.app.mqtt.connected and gw.app.health()["mqtt"]["status"] == "down"
    finally:
        broker.stop()


async def test_user_and_password(tmp_path):
    passwords = tmp_path / "passwords"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "evedge", "broker-secret-1"], check=True)
    broker = Broker(tmp_path / "broker", f"allow_anonymous false\npassword_file {passwords}")
    await broker.start()
    try:
        right = mqtt_section(broker.port, username="evedge", password="broker-secret-1")
        async with running_gateway(load_settings(write_config(tmp_path, right), environ={})) as gw:
            await eventually(lambda: gw.app.mqtt.connected, timeout=10)
        (tmp_path / "state").rename(tmp_path / "first")
        wrong = mqtt_section(broker.port, username="evedge", password="not-the-secret")
        async with running_gateway(load_settings(write_config(tmp_path, wrong), environ={})) as gw:
            error = await eventually(lambda: gw.app.mqtt.last_error, timeout=10)
            assert not gw.app.mqtt.connected and "not-the-secret" not in error
    finally:
        broker.stop()
