"""Building signals from a real asyncua server on loopback: subscription, a server restart, a server that
hangs, reading instead of subscribing, a secured endpoint with a user."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from asyncua import Server, ua
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.server.user_managers import UserManager
from asyncua.crypto.permission_rules import User, UserRole
from cryptography.x509.oid import ExtendedKeyUsageOID

from drivers.opcua_client import OpcuaDriver, check
from gateway.points import ProcessImage, Quality
from gateway.settings import OpcuaMeter, Settings
from tests.conftest import eventually, free_port, in_background
from tests.integration.test_modbus import site_log_levels

LOAD = "ns=2;s=Building.LoadW"
MODE = "ns=2;s=Building.Mode"


class OneUser(UserManager):
    def get_user(self, iserver, username=None, password=None, certificate=None):
        if username == "evedge" and password == "correct-horse":
            return User(role=UserRole.User)
        return None


@contextlib.asynccontextmanager
async def bms(port: int, load_w: float = 12000.0, secure_dir=None) -> AsyncIterator[dict]:
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/bms")
    if secure_dir is not None:
        key, cert = secure_dir / "server-key.pem", secure_dir / "server-cert.der"
        if not cert.exists():
            await setup_self_signed_certificate(key, cert, "urn:test:bms", socket.gethostname(),
                                                [ExtendedKeyUsageOID.SERVER_AUTH], {"commonName": "bms"})  # fmt: skip
        await server.load_certificate(str(cert))
        await server.load_private_key(str(key))
        server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
        server.iserver.set_user_manager(OneUser())
    idx = await server.register_namespace("urn:test:bms")
    load = await server.nodes.objects.add_variable(ua.NodeId("Building.LoadW", idx), "LoadW", load_w)
    mode = await server.nodes.objects.add_variable(ua.NodeId("Building.Mode", idx), "Mode", "occupied")
    chiller = await server.nodes.objects.add_variable(ua.NodeId("Chiller.PowerW", idx), "ChillerW", 0.0)
    await chiller.write_value(ua.DataValue(StatusCode=ua.StatusCode(ua.StatusCodes.BadCommunicationError)))
    async with server:
        yield {"load": load, "mode": mode, "chiller": chiller}


async def serve(port: int) -> None:
    async with bms(port):
        print("ready", flush=True)
        await asyncio.Event().wait()


@contextlib.asynccontextmanager
async def bms_process(port: int) -> AsyncIterator[asyncio.subprocess.Process]:
    """The BMS in a process of its own, which the test can freeze: under SIGSTOP its socket stays open and
    nothing answers -- a hung server."""
    code = f"import asyncio\nfrom tests.integration.test_opcua_client import serve\nasyncio.run(serve({port}))"
    server = await asyncio.create_subprocess_exec(sys.executable, "-c", code, cwd=Path(__file__).parents[2],
                                                  stdout=asyncio.subprocess.PIPE,
                                                  stderr=asyncio.subprocess.DEVNULL)  # fmt: skip
    try:
        assert await asyncio.wait_for(server.stdout.readline(), 30) == b"ready\n"
        yield server
    finally:
        if server.returncode is None:
            server.send_signal(signal.SIGCONT)
            server.kill()
        await server.wait()


def meter(port: int, **settings) -> OpcuaMeter:
    return OpcuaMeter(**({"id": "building", "driver": "opcua", "endpoint": f"opc.tcp://127.0.0.1:{port}/bms",
                          "points": {"power_w": LOAD, "mode": MODE}, "poll_s": 0.1, "stale_after_s": 1.0,
                          "max_backoff_s": 0.5}
                         | settings))  # fmt: skip


@contextlib.asynccontextmanager
async def following(settings: OpcuaMeter, tmp_path) -> AsyncIterator[tuple[ProcessImage, OpcuaDriver]]:
    image = ProcessImage()
    driver = OpcuaDriver([settings], image, tmp_path)
    async with in_background(driver.run()):
        yield image, driver


async def test_changes_follow_through_a_subscription_and_survive_a_restart(tmp_path, caplog):
    port = free_port()
    caplog.set_level(logging.INFO)
    with site_log_levels():
        await _follow_a_restart(port, tmp_path, caplog)


async def _follow_a_restart(port: int, tmp_path: Path, caplog) -> None:
    async with following(meter(port), tmp_path) as (image, driver):
        async with bms(port) as nodes:
            await eventually(lambda: driver.clients[0].subscribed)
            caplog.clear()
            assert image.value("meters/building/power_w") == 12000.0
            assert image.value("meters/building/mode") == "occupied"
            source_ts = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
            await nodes["load"].write_value(ua.DataValue(ua.Variant(15500.0, ua.VariantType.Double),
                                                         SourceTimestamp=source_ts))  # fmt: skip
            await eventually(lambda: image.value("meters/building/power_w") == 15500.0)
            point = image.get("meters/building/power_w")
            assert point.quality == Quality.good and point.ts == source_ts  # the device's own time
            await nodes["load"].write_value(ua.DataValue(ua.Variant(16000.0, ua.VariantType.Double),
                                                         StatusCode=ua.StatusCode(ua.StatusCodes.UncertainLastUsableValue)))  # fmt: skip
            await eventually(lambda: image.get("meters/building/power_w").quality == Quality.uncertain)

        await eventually(lambda: image.get("meters/building/power_w").quality == Quality.bad)
        assert image.value("meters/building/online") is False and image.value("meters/building/last_error")

        async with bms(port, load_w=17000.0):
            await eventually(lambda: image.value("meters/building/power_w") == 17000.0, timeout=20)
            assert image.get("meters/building/power_w").quality == Quality.good
            await eventually(lambda: driver.clients[0].subscribed)
            assert_one_line_for_one_lost_link(caplog)


@pytest.mark.parametrize("subscribe", [True, False])
async def test_a_hung_server_turns_bad_within_stale_after_s_and_comes_back(tmp_path, caplog, subscribe):
    port, stale = free_port(), 2.0
    caplog.set_level(logging.INFO)
    with site_log_levels():
        async with bms_process(port) as server, following(meter(port, subscribe=subscribe, poll_s=0.2,
                                                                stale_after_s=stale), tmp_path) as (image, driver):  # fmt: skip
            client = driver.clients[0]
            await eventually(lambda: image.value("meters/building/power_w") == 12000.0, timeout=20)
            # A quiet server: nothing changes, and the values stay good past their first deadline, kept fresh by
            # the server's answers.
            changes, first_deadline = client.updates, client.freshness.deadline()
            await eventually(lambda: client.freshness.deadline() > first_deadline + stale, timeout=3 * stale)
            assert image.get("meters/building/power_w").quality == Quality.good
            if subscribe:
                assert client.updates == changes

            os.kill(server.pid, signal.SIGSTOP)
            await eventually(lambda: image.get("meters/building/power_w").quality == Quality.bad, timeout=stale + 1)
            assert image.value("meters/building/online") is False

            os.kill(server.pid, signal.SIGCONT)
            await eventually(lambda: image.get("meters/building/power_w").quality == Quality.good, timeout=20)
            assert image.value("meters/building/online") is True and client.sessions == 2
    assert_one_line_for_one_lost_link(caplog)


def assert_one_line_for_one_lost_link(caplog) -> None:
    """Ours, with the meter's name; none of asyncua's errors and tracebacks."""
    assert len([r for r in caplog.records if "OPC UA link lost meter=building" in r.getMessage()]) == 1
    assert [r.getMessage() for r in caplog.records if r.name.startswith("asyncua") and r.levelno >= logging.ERROR] == []
    assert not any(r.exc_info for r in caplog.records)


async def test_reading_instead_of_subscribing(tmp_path):
    port = free_port()
    async with bms(port) as nodes, following(meter(port, subscribe=False), tmp_path) as (image, driver):
        await eventually(lambda: image.value("meters/building/power_w") == 12000.0)
        await nodes["load"].write_value(21000.0)
        await eventually(lambda: image.value("meters/building/power_w") == 21000.0)
        assert not driver.clients[0].subscribed


async def test_a_secured_endpoint_with_a_user(tmp_path):
    port = free_port()
    secure = {"security_policy": "Basic256Sha256", "security_mode": "SignAndEncrypt", "username": "evedge"}
    async with bms(port, secure_dir=tmp_path) as nodes:
        async with following(meter(port, **secure, password="wrong-password"), tmp_path) as (image, driver):
            await eventually(lambda: image.value("meters/building/last_error"))
            assert not driver.clients[0].connected and image.get("meters/building/power_w") is None
        async with following(meter(port, **secure, password="correct-horse"), tmp_path) as (image, driver):
            await eventually(lambda: image.value("meters/building/power_w") == 12000.0)
            await nodes["load"].write_value(13000.0)
            await eventually(lambda: image.value("meters/building/power_w") == 13000.0)
    assert (tmp_path / "opcua" / "client" / "cert.der").exists()  # the gateway's own certificate, made once


@pytest.mark.parametrize("subscribe", [True, False])
async def test_a_bad_node_is_a_bad_point_not_a_lost_link(tmp_path, subscribe):
    port = free_port()
    points = {"power_w": LOAD, "chiller_w": "ns=2;s=Chiller.PowerW", "ghost_w": "ns=2;s=No.Such.Node"}
    async with bms(port) as nodes, following(meter(port, points=points, subscribe=subscribe), tmp_path) as (image, driver):
        await eventually(lambda: image.value("meters/building/power_w") == 12000.0)
        await eventually(lambda: image.get("meters/building/ghost_w") is not None)
        assert image.get("meters/building/chiller_w").quality == Quality.bad
        assert image.get("meters/building/ghost_w").quality == Quality.bad
        await nodes["load"].write_value(float("nan"))
        await eventually(lambda: image.get("meters/building/power_w").quality == Quality.bad)
        assert image.value("meters/building/power_w") == 12000.0  # the last number, flagged; never NaN
        await nodes["load"].write_value(12500.0)
        await eventually(lambda: image.value("meters/building/power_w") == 12500.0)
        assert driver.clients[0].sessions == 1 and image.value("meters/building/online") is True


def test_bad_node_ids_and_clear_text_passwords_are_config_errors():
    settings = Settings(meters=[meter(4840, points={"power_w": "ns=2;x=Nope", "ok": LOAD}, password="pw")])
    problems = check(settings)
    assert problems[0].startswith("meters.building.points.power_w: 'ns=2;x=Nope' is not a node id")
    assert problems[1] == "meters.building.password: would travel in clear without a security_policy"
    assert len(problems) == 2



