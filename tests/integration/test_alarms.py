"""Alarms end to end against real peers: simulated chargers over websockets, an SMTP server (aiosmtpd), an HTTP
server for webhooks, Mosquitto, an asyncua client subscribed to events, the gateway killed with SIGKILL."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import threading
from collections.abc import AsyncIterator
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import pytest
from aiosmtpd.controller import Controller
from asyncua import ua
from fastapi import FastAPI, Request
from ocpp.v16 import call as call16
from ocpp.v201 import call as call201

from gateway.auth import Role
from gateway.settings import load_settings
from gateway.sim.charger import SimSpec
from gateway.sim.site import make_charger
from gateway.store import Store
from gateway.web.server import WebServer
from tests.conftest import (
    Broker,
    connected,
    eventually,
    free_port,
    in_background,
    running_gateway,
    wait_http,
    write_config,
)
from tests.integration.test_mqtt import mqtt_section, retained, subscribed
from tests.integration.test_opcua_server import (  # noqa: F401 -- fixtures
    Collector,
    client_cert,
    session,
    standard_nodes,
    started_before,
    trust,
)

SECRET = "hook-secret"
FAULT = dict(connector_id=1, error_code="GroundFailure", status="Faulted", info="RCD tripped", vendor_error_code="E42")


class Mailbox:
    """A real SMTP server on loopback (aiosmtpd, in its own thread); every message kept. Stop and start it again on
    the same port to play an outage."""

    def __init__(self) -> None:
        self.port = free_port()
        self.messages: list[Any] = []
        self._lock = threading.Lock()
        self._controller: Controller | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 -- aiosmtpd's name
        with self._lock:
            self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"

    def start(self) -> None:
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def subjects(self) -> list[str]:
        with self._lock:
            return [str(m["Subject"]).strip() for m in self.messages]

    def bodies(self) -> list[str]:
        with self._lock:
            return [m.get_content() for m in self.messages]


@pytest.fixture
def mailbox() -> Any:
    box = Mailbox()
    box.start()
    yield box
    box.stop()


class Hooks:
    """An HTTP server that takes webhooks: every request's headers and body kept."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        app = FastAPI()

        @app.post("/hook")
        async def hook(request: Request) -> dict[str, bool]:
            self.received.append((dict(request.headers), await request.body()))
            return {"ok": True}

        self.server = WebServer(app, "127.0.0.1:0")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}/hook"

    def documents(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.received]


@contextlib.asynccontextmanager
async def hooks() -> AsyncIterator[Hooks]:
    h = Hooks()
    up = asyncio.Event()
    async with in_background(h.server.run(up)):
        await up.wait()
        yield h


def notify_config(mailbox: Mailbox | None, hook: Hooks | None = None, **route: Any) -> str:
    lines = []
    if mailbox is not None:
        lines.append(f'\n[smtp]\nhost = "127.0.0.1"\nport = {mailbox.port}\nsecurity = "none"\nfrom = "evedge <evedge@test>"\n')
    keys = {"gather_s": 0.2, "retry_max_s": 0.5, **route}
    if mailbox is not None:
        keys["email"] = ["oncall@test"]
    if hook is not None:
        keys |= {"webhook": hook.url, "webhook_secret": SECRET}
    lines.append("\n[[notify]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in keys.items()))
    return "".join(lines)


FAST = """
[[alarms]]
id = "connector-faulted"
delay_s = 0.3

[[alarms]]
id = "charger-offline"
delay_s = 0.3
"""


async def faulted(sim: Any, connector: int = 1) -> None:
    await sim.call(call16.StatusNotification(**(FAULT | {"connector_id": connector})))


async def alarm(gw: Any, alarm_id: str, state: str | None = None) -> dict[str, Any] | None:
    async with gw.client() as client:
        answer = await client.get(f"/api/v1/alarms/{alarm_id}")
    if answer.status_code != 200:
        return None
    record = answer.json()
    return record if state is None or record["state"] == state else None


# -- one fault, told everywhere, acknowledged from two sides --------------------------------------------------------


async def test_a_faulted_connector_is_told_everywhere_and_acknowledged_the_same_everywhere(tmp_path, mailbox, broker):
    async with hooks() as hook:
        extra = FAST + notify_config(mailbox, hook) + mqtt_section(broker.port)
        extra += f'\n[opcua]\nlisten = "127.0.0.1:{free_port()}"\nmin_interval_s = 0.1\n'
        settings = load_settings(write_config(tmp_path, extra), environ={})
        async with subscribed(broker.port) as cloud, running_gateway(settings) as gw:
            await eventually(lambda: gw.app.opcua_server.health()["status"] == "ok")
            await gw.app.store.accounts.add_user("op", "a-good-password", Role.operator)
            cert = await client_cert(tmp_path)
            trust(gw, cert)
            async with session(gw, cert, password="a-good-password") as scada:
                events = Collector()
                alarm_type = scada.get_node(ua.ObjectIds.AlarmConditionType)
                subscription = await scada.create_subscription(50, events)
                await subscription.subscribe_events(scada.nodes.server, alarm_type)
                sim = gw.charger("CP16", "1.6")
                async with connected(sim):
                    await faulted(sim)
                    record = await eventually(lambda: alarm(gw, "connector-faulted:CP16:1", "active_unacknowledged"))
                    assert record["context"] == {"error_code": "GroundFailure", "error_info": "RCD tripped",
                                                 "vendor_error_code": "E42"}  # fmt: skip
                    assert record["level"] == 15 and record["severity"] == 500

                    # e-mail, rendered from the default template
                    await eventually(lambda: mailbox.subjects(), timeout=10)
                    subject, body = mailbox.subjects()[0], mailbox.bodies()[0]
                    assert "Alarm L15" in subject and "Charger CP16 EVSE 1 is faulted" in subject
                    assert "GroundFailure" in body and "RCD tripped" in body and "E42" in body
                    assert "/alarms/connector-faulted:CP16:1" in body

                    # webhook, signed
                    await eventually(lambda: hook.received)
                    headers, raw = hook.received[0]
                    expected = hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
                    assert headers["x-evedge-signature"] == f"sha256={expected}"
                    document = json.loads(raw)
                    assert document["notifications"][0]["alarm"]["id"] == "connector-faulted:CP16:1"
                    assert document["late"] is False

                    # MQTT: the durable stream and the retained list
                    raised = await eventually(lambda: [m for m in cloud.on("alarms") if m["kind"] == "raised"])
                    assert raised[0]["data"]["alarm"]["id"] == "connector-faulted:CP16:1"
                    assert raised[0]["seq"] and raised[0]["id"]
                    active = await retained(broker.port, "evedge/test/alarms/active")
                    assert [a["id"] for a in active] == ["connector-faulted:CP16:1"]

                    # OPC UA: an AlarmConditionType event, then Acknowledge with its EventId
                    event = await eventually(lambda: _condition(events, "connector-faulted:CP16:1", acked=False))
                    assert event.Severity == 500 and "faulted" in event.Message.Text
                    condition = scada.get_node(event.NodeId)
                    with pytest.raises(ua.UaStatusCodeError):  # an EventId that is not the latest is refused
                        await condition.call_method(ua.NodeId(ua.ObjectIds.AcknowledgeableConditionType_Acknowledge),
                                                    ua.Variant(b"not-it", ua.VariantType.ByteString),
                                                    ua.LocalizedText("no"))  # fmt: skip
                    await condition.call_method(ua.NodeId(ua.ObjectIds.AcknowledgeableConditionType_Acknowledge),
                                                ua.Variant(event.EventId, ua.VariantType.ByteString),
                                                ua.LocalizedText("seen from the SCADA"))  # fmt: skip

                    # the same state everywhere
                    acked = await eventually(lambda: alarm(gw, "connector-faulted:CP16:1", "active_acknowledged"))
                    assert acked["comment"] == "seen from the SCADA"
                    await eventually(lambda: _condition(events, "connector-faulted:CP16:1", acked=True))
                    transition = await eventually(lambda: [m for m in cloud.on("alarms") if m["kind"] == "acknowledged"])
                    assert transition[0]["data"]["transition"]["actor"] == "opcua:op"
                    active = await eventually(lambda: _retained_acked(broker.port))
                    assert active[0]["state"] == "active_acknowledged"
                    history = await (await _get(gw, "/api/v1/alarms/history?alarm=connector-faulted:CP16:1"))
                    assert [h["kind"] for h in history] == ["acknowledged", "raised"]

                    # the second connector acknowledged over the API: OPC UA sees it too
                    await faulted(sim, 2)
                    await eventually(lambda: _condition(events, "connector-faulted:CP16:2", acked=False))
                    async with gw.client() as client:
                        answer = await client.post("/api/v1/alarms/connector-faulted:CP16:2/ack",
                                                   json={"comment": "on my way"})  # fmt: skip
                        assert answer.status_code == 200 and answer.json()["state"] == "active_acknowledged"
                    await eventually(lambda: _condition(events, "connector-faulted:CP16:2", acked=True))

                    # ConditionRefresh: the retained (not normal) conditions again
                    before = len(events.events)
                    await scada.nodes.server.call_method(ua.NodeId(ua.ObjectIds.ConditionType_ConditionRefresh),
                                                         ua.Variant(subscription.subscription_id, ua.VariantType.UInt32))
                    refreshed = await eventually(lambda: {e.ConditionName for e in events.events[before:]
                                                          if getattr(e, "ConditionName", None)})  # fmt: skip
                    assert refreshed == {"connector-faulted:CP16:1", "connector-faulted:CP16:2"}


async def _get(gw: Any, path: str) -> Any:
    async def get() -> Any:
        async with gw.client() as client:
            return (await client.get(path)).json()

    return get()


async def _retained_acked(port: int) -> list[dict[str, Any]] | None:
    active = await retained(port, "evedge/test/alarms/active")
    return active if active and active[0]["acknowledged"] else None


def _condition(collector: Any, alarm_id: str, acked: bool) -> Any:
    found = [e for e in collector.events if getattr(e, "ConditionName", None) == alarm_id]
    return found[-1] if found and getattr(found[-1], "AckedState/Id") is acked and getattr(found[-1], "Retain") else None


# -- outages, restarts, cascades, floods --------------------------------------------------------------------------


async def test_three_alarms_raised_while_the_mail_server_is_down_are_all_delivered_when_it_is_back(tmp_path, mailbox):
    mailbox.stop()
    settings = load_settings(write_config(tmp_path, FAST + notify_config(mailbox, digest_after=10)), environ={})
    async with running_gateway(settings) as gw:
        sim16, sim201 = gw.charger("CP16", "1.6"), gw.charger("CP201", "2.0.1")
        async with connected(sim16, sim201):
            await faulted(sim16, 1)
            await faulted(sim16, 2)
            await sim201.call(call201.StatusNotification(timestamp=sim201.now(), connector_status="Faulted",
                                                         evse_id=1, connector_id=1))  # fmt: skip
            ids = {"connector-faulted:CP16:1", "connector-faulted:CP16:2", "connector-faulted:CP201:1"}
            await eventually(lambda: {a["id"] for a in gw.app.alarms.active()} == ids)
            failing = await eventually(lambda: _notifications(gw, attempted=True), timeout=10)
            assert {n["state"] for n in failing} == {"queued"} and all(n["last_error"] for n in failing)
            mailbox.start()
            await eventually(lambda: len(mailbox.subjects()) == 3, timeout=15)
            assert all(s.startswith("[late]") for s in mailbox.subjects()), mailbox.subjects()
            assert {next(i for i in ids if i.replace("connector-faulted:", "").replace(":", " EVSE ") in s)
                    for s in mailbox.subjects()} == ids  # fmt: skip
            delivered = await _notifications(gw)
            assert [(n["state"], n["late"]) for n in delivered] == [("sent", True)] * 3


async def _notifications(gw: Any, attempted: bool = False) -> list[dict[str, Any]] | None:
    rows = await gw.app.store.alarms.notifications()
    if attempted and (len(rows) < 3 or not all(r["attempts"] for r in rows)):
        return None
    return rows


async def test_an_unacknowledged_alarm_is_still_unacknowledged_after_a_sigkill_and_an_acknowledged_one_not_raised_again(
        tmp_path, gateway_process):  # fmt: skip
    web, ocpp = free_port(), free_port()
    config = write_config(tmp_path, FAST, web_port=web, ocpp_port=ocpp)
    process = gateway_process(config)
    process.start()
    await wait_http(f"http://127.0.0.1:{web}/api/v1/health")
    async with Store(tmp_path / "state") as store:
        token = await store.accounts.create_token(Role.admin, "test")

    def sim() -> Any:
        return make_charger(SimSpec("CP16", "1.6", f"ws://127.0.0.1:{ocpp}/ocpp", "password-of-CP16"), reconnect_min_s=0.05,
                    reconnect_max_s=0.5)  # fmt: skip

    api = httpx.AsyncClient(base_url=f"http://127.0.0.1:{web}", headers={"Authorization": f"Bearer {token}"})

    async def state(alarm_id: str) -> str | None:
        try:
            answer = await api.get(f"/api/v1/alarms/{alarm_id}")
        except httpx.HTTPError:
            return None
        return answer.json()["state"] if answer.status_code == 200 else None

    async with api:
        charger = sim()
        async with connected(charger):
            await faulted(charger, 1)
            await faulted(charger, 2)
            await eventually(lambda: _is(state("connector-faulted:CP16:1"), "active_unacknowledged"))
            await eventually(lambda: _is(state("connector-faulted:CP16:2"), "active_unacknowledged"))
            assert (await api.post("/api/v1/alarms/connector-faulted:CP16:2/ack", json={})).status_code == 200
            process.kill()
        process.start()
        await wait_http(f"http://127.0.0.1:{web}/api/v1/health")
        assert await state("connector-faulted:CP16:1") == "active_unacknowledged"
        assert await state("connector-faulted:CP16:2") == "active_acknowledged"
        charger = sim()
        async with connected(charger):  # it reconnects and tells its statuses again: still faulted
            await faulted(charger, 1)
            await faulted(charger, 2)
            await eventually(lambda: _logged(process.log, "charger connected charger=CP16", 2))
            history = (await api.get("/api/v1/alarms/history?alarm=connector-faulted:CP16:2")).json()
            assert [h["kind"] for h in history] == ["acknowledged", "raised"]
            assert await state("connector-faulted:CP16:2") == "active_acknowledged"
    process.stop()


async def _is(value: Any, expected: Any) -> bool:
    return (await value) == expected


def _logged(log: Path, text: str, times: int) -> bool:
    return log.read_text(errors="replace").count(text) >= times


async def test_a_charger_offline_masks_its_connectors_alarms(tmp_path, mailbox):
    settings = load_settings(write_config(tmp_path, FAST + notify_config(mailbox)), environ={})
    async with running_gateway(settings) as gw:
        sim = gw.charger("CP16", "1.6")
        async with connected(sim):
            await faulted(sim)
            await eventually(lambda: alarm(gw, "connector-faulted:CP16:1", "active_unacknowledged"))
            await eventually(lambda: len(mailbox.subjects()) == 1)
        offline = await eventually(lambda: alarm(gw, "charger-offline:CP16", "active_unacknowledged"))
        assert offline["message"] == "Charger CP16 is offline"
        masked = await alarm(gw, "connector-faulted:CP16:1")
        assert masked["state"] == "suppressed" and masked["masked_by"] == ["charger-offline:CP16"]
        await eventually(lambda: len(mailbox.subjects()) == 2)
        assert "offline" in mailbox.subjects()[1]
        history = await (await _get(gw, "/api/v1/alarms/history?alarm=connector-faulted:CP16:1"))
        assert [h["kind"] for h in history] == ["suppressed", "raised"]
        async with gw.client() as client:
            listed = (await client.get("/api/v1/alarms?state=suppressed")).json()
        # every alarm of the charger is masked while it is offline (charger-uncontrollable too, once its point is
        # there), the faulted connector among them
        assert "connector-faulted:CP16:1" in [a["id"] for a in listed]
        assert all(a["masked_by"] == ["charger-offline:CP16"] for a in listed)


async def test_two_hundred_chargers_going_offline_at_once_make_one_digest_email(tmp_path, mailbox):
    extra = FAST + notify_config(mailbox, gather_s=1.0)
    settings = load_settings(write_config(tmp_path, extra), environ={})
    async with running_gateway(settings) as gw:
        ids = [f"EV{n:03d}" for n in range(200)]
        for charger_id in ids:  # the OCPP driver's own calls, without 200 websockets
            await gw.app.recorder.connected(charger_id, "1.6", None)
        await eventually(lambda: len([a for a in gw.app.alarms.records if a.startswith("charger-offline:EV")]) == 200)
        await asyncio.gather(*(gw.app.recorder.disconnected(charger_id) for charger_id in ids))  # the network cut
        await eventually(lambda: sum(a["id"].startswith("charger-offline:EV") for a in gw.app.alarms.active()) == 200)
        sent = await eventually(lambda: _all_sent(gw, 200))
        assert len({n["batch"] for n in sent}) == 1
        assert len(mailbox.subjects()) == 1 and "200 alarms" in mailbox.subjects()[0]
        body = mailbox.bodies()[0]
        assert all(f"Charger {charger_id} is offline" in body for charger_id in ids)


async def _all_sent(gw: Any, count: int) -> list[dict[str, Any]] | None:
    rows = await gw.app.store.alarms.notifications()
    return rows if len(rows) == count and all(r["state"] == "sent" for r in rows) else None


# -- operators' actions: rights, refusals, MQTT commands -------------------------------------------------------------


async def test_actions_need_their_role_and_say_why_they_are_refused(tmp_path, broker):
    settings = load_settings(write_config(tmp_path, FAST + mqtt_section(broker.port)), environ={})
    async with running_gateway(settings) as gw:
        sim = gw.charger("CP16", "1.6")
        async with connected(sim):
            await faulted(sim)
            await eventually(lambda: alarm(gw, "connector-faulted:CP16:1", "active_unacknowledged"))
        guest, operator = await gw.token(Role.guest), await gw.token(Role.operator)
        target = "/api/v1/alarms/connector-faulted:CP16:1"
        async with gw.client(guest) as client:
            assert (await client.post(f"{target}/ack", json={})).status_code == 403
            assert (await client.get("/api/v1/alarms")).status_code == 200
        async with gw.client(operator) as client:
            assert (await client.post("/api/v1/alarms/nothing:here/ack", json={})).status_code == 404
            assert (await client.post(f"{target}/shelve", json={"minutes": 0})).status_code == 422
            assert (await client.post(f"{target}/shelve", json={"minutes": 99999})).status_code == 422
            assert (await client.post(f"{target}/out-of-service", json={})).status_code == 403
            shelved = await client.post(f"{target}/shelve", json={"minutes": 5, "comment": "known"})
            assert shelved.status_code == 200 and shelved.json()["state"] == "shelved"
            assert shelved.json()["by"] == "api:test-operator"
            assert (await client.post(f"{target}/ack", json={})).status_code == 409  # nothing to acknowledge
            unshelved = await client.post(f"{target}/unshelve", json={})
            assert unshelved.json()["state"] == "suppressed"  # its charger went offline meanwhile
        async with gw.client() as client:
            out = await client.post(f"{target}/out-of-service", json={"comment": "replacing the RCD"})
            assert out.status_code == 200 and out.json()["state"] == "out_of_service"
            back = await client.post(f"{target}/return-to-service", json={})
            assert back.json()["state"] == "suppressed"
            definitions = (await client.get("/api/v1/alarms/definitions")).json()
            faulted_def = next(d for d in definitions if d["id"] == "connector-faulted")
            assert faulted_def["source"] == "builtin" and faulted_def["conditions"][0]["delay_s"] == 0.3
        audit = await gw.app.store.audit.query(target="alarm:connector-faulted:CP16:1")
        assert {a["command"] for a in audit} >= {"ShelveAlarm", "UnshelveAlarm", "SetAlarmInService"}

        # MQTT: cmd/alarms/{id}/ack with its reply
        async with subscribed(broker.port, "evedge/test/cmd/#") as cloud:
            async with aiomqtt.Client("127.0.0.1", broker.port) as client:
                await client.publish("evedge/test/cmd/alarms/charger-offline:CP16/ack", b'{"comment": "mqtt"}', qos=1)
                await client.publish("evedge/test/cmd/alarms/charger-offline:CP16/shelve", b'{"minutes": "x"}', qos=1)
            replies = await eventually(lambda: len(cloud.on("cmd/alarms/charger-offline:CP16/ack/reply")) == 1
                                       and cloud.on("cmd/alarms/charger-offline:CP16/shelve/reply"))  # fmt: skip
            assert replies[0]["ok"] is False and replies[0]["error"] == "invalid"
            ack = cloud.on("cmd/alarms/charger-offline:CP16/ack/reply")[0]
            assert ack["ok"] is True and ack["result"]["acknowledged"] is True
