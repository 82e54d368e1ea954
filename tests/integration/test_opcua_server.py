"""The OPC UA server against real asyncua clients on loopback: tags with units, quality and the device's time,
subscriptions, methods and writes through the command door, events, and the security a SCADA network needs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import shutil
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from asyncua import Client, Server, ua
from asyncua.common.utils import create_nonce
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.crypto.security_policies import SecurityPolicyAes256Sha256RsaPss, SecurityPolicyBasic256Sha256
from cryptography.x509.oid import ExtendedKeyUsageOID

from bridges.opcua_server import shelf
from bridges.opcua_server.names import camel, eu_information, node_path
from gateway.auth import Role
from gateway.clock import utcnow
from gateway.settings import load_settings
from gateway.sim.charger import SimCharger, SimSpec
from gateway.sim.ev import Ev
from gateway.sim.site import make_charger
from tests.conftest import PASSWORDS, REFUSED_MINUS_5, Gateway, connected, eventually, free_port, running_gateway, write_config

PASSWORD = "a-good-password"
NAMESPACE = "urn:evedge:test"
SIGN_AND_ENCRYPT, SIGN = ua.MessageSecurityMode.SignAndEncrypt, ua.MessageSecurityMode.Sign
WAITING = ua.StatusCodes.BadWaitingForInitialData


@dataclass
class ClientCert:
    key: Path
    cert: Path
    uri: str


@pytest.fixture(scope="session")
def standard_nodes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """asyncua's standard nodes, shelved once as a gateway's first start shelves them."""
    folder = tmp_path_factory.mktemp("opcua")

    async def make() -> None:
        await shelf.init(Server(), folder)

    asyncio.run(make())
    return shelf.shelf_folder(folder)


@pytest.fixture(autouse=True)
def started_before(tmp_path: Path, standard_nodes: Path) -> None:
    """Each gateway here has started before: its standard nodes are read from the shelf, as at every start but the
    first (test_the_standard_nodes_are_shelved_at_the_first_start_and_read_from_the_shelf_after)."""
    shutil.copytree(standard_nodes, shelf.shelf_folder(tmp_path / "state" / "opcua"))


@contextlib.asynccontextmanager
async def opcua_gateway(tmp_path: Path, loadcap: bool = False, **options: Any) -> AsyncIterator[Gateway]:
    """The base site with the OPC UA server on a free port, an operator 'op' and a guest 'visitor'."""
    lines = [f'listen = "127.0.0.1:{free_port()}"', "min_interval_s = 0.1"]
    lines += [f"{name} = {json.dumps(value)}" for name, value in options.items()]
    settings = load_settings(write_config(tmp_path, extra="\n[opcua]\n" + "\n".join(lines) + "\n", loadcap=loadcap),
                             environ={})  # fmt: skip
    async with running_gateway(settings) as gw:
        await eventually(lambda: gw.app.opcua_server.health()["status"] == "ok")
        await gw.app.store.accounts.add_user("op", PASSWORD, Role.operator)
        await gw.app.store.accounts.add_user("visitor", PASSWORD, Role.guest)
        yield gw


async def client_cert(tmp_path: Path, name: str = "scada") -> ClientCert:
    uri = f"urn:test:{name}"
    key, cert = tmp_path / f"{name}-key.pem", tmp_path / f"{name}-cert.der"
    await setup_self_signed_certificate(key, cert, uri, socket.gethostname(), [ExtendedKeyUsageOID.CLIENT_AUTH],
                                        {"commonName": name})  # fmt: skip
    return ClientCert(key, cert, uri)


def opcua_dir(gw: Gateway) -> Path:
    return gw.app.settings.gateway.state_dir / "opcua"


def trust(gw: Gateway, cert: ClientCert) -> None:
    shutil.copy(cert.cert, opcua_dir(gw) / "trusted" / cert.cert.name)


@contextlib.asynccontextmanager
async def scada_gateway(tmp_path: Path, loadcap: bool = False,
                        **options: Any) -> AsyncIterator[tuple[Gateway, ClientCert]]:  # fmt: skip
    """The OPC UA gateway and the SCADA's client certificate, which the technician has approved."""
    async with opcua_gateway(tmp_path, loadcap, **options) as gw:
        cert = await client_cert(tmp_path)
        trust(gw, cert)
        yield gw, cert


def make_client(gw: Gateway, user: str | None = "op", password: str = PASSWORD) -> Client:
    client = Client(gw.app.opcua_server.endpoint, timeout=15)
    if user is not None:
        client.set_user(user)
        client.set_password(password)
    return client


@contextlib.asynccontextmanager
async def session(gw: Gateway, cert: ClientCert, user: str | None = "op", password: str = PASSWORD,
                  policy: Any = SecurityPolicyBasic256Sha256, mode: Any = SIGN_AND_ENCRYPT) -> AsyncIterator[Client]:
    client = make_client(gw, user, password)
    client.application_uri = cert.uri
    await client.set_security(policy, str(cert.cert), str(cert.key), mode=mode)
    async with client:
        yield client


async def tag(client: Client, path: str) -> Any:
    idx = await client.get_namespace_index(NAMESPACE)
    return client.get_node(f"ns={idx};s={path}")


def sim_at(gw: Gateway, charger_id: str, version: str, clock: Any = utcnow, **spec: Any) -> SimCharger:
    """A simulated charger whose messages carry the time of its own clock."""
    return make_charger(SimSpec(charger_id, version, gw.ocpp_url, PASSWORDS[charger_id], **spec), clock=clock,
                        reconnect_min_s=0.05, reconnect_max_s=0.5)  # fmt: skip


class Collector:
    """asyncua's subscription handler: keeps what arrives."""

    def __init__(self) -> None:
        self.values: list[ua.DataValue] = []
        self.events: list[Any] = []

    def datachange_notification(self, node: Any, value: Any, data: Any) -> None:
        self.values.append(data.monitored_item.Value)

    def event_notification(self, event: Any) -> None:
        self.events.append(event)


def double(value: float) -> ua.Variant:
    return ua.Variant(value, ua.VariantType.Double)


def uint32(value: int) -> ua.Variant:
    return ua.Variant(value, ua.VariantType.UInt32)


def text(value: str) -> ua.Variant:
    return ua.Variant(value, ua.VariantType.String)


def boolean(value: bool) -> ua.Variant:
    return ua.Variant(value, ua.VariantType.Boolean)


async def status_of(node: Any) -> ua.DataValue:
    return await node.read_data_value(raise_on_bad_status=False)


# -- names ---------------------------------------------------------------------------------------------------


def test_node_ids_come_from_point_names_by_one_rule():
    assert node_path("site/limit_w") == "Site.LimitW"
    assert node_path("site/grid_power_w") == "Site.GridPowerW"
    assert node_path("chargers/CP01/online") == "Site.Chargers.CP01.Online"
    for leaf, name in [("status", "Status"), ("power_w", "PowerW"), ("current_a", "CurrentA"),
                       ("energy_wh", "EnergyWh"), ("soc", "SoC"), ("limit_w", "LimitW"),
                       ("transaction_id", "TransactionId")]:  # fmt: skip
        assert node_path(f"chargers/CP01/evse/1/{leaf}") == f"Site.Chargers.CP01.Evse.1.{name}"
    assert node_path("meters/grid/power_w") == "Site.Meters.grid.PowerW"
    assert camel("current_a_l1") == "CurrentAL1" and camel("energy_import_wh") == "EnergyImportWh"
    assert eu_information("W").UnitId == 5723220  # 'WTT', UNECE as OPC UA Part 8 encodes it
    assert eu_information("Wh").UnitId == 5720146 and eu_information("%").UnitId == 20529


# -- reading, following, acting ------------------------------------------------------------------------------


async def test_an_operator_reads_follows_and_starts_a_session_over_basic256sha256(tmp_path):
    # The charger's clock, not the gateway's: a minute behind (within LIVE_WINDOW_S, or its values are history).
    sent_at = utcnow().replace(microsecond=0) - timedelta(minutes=1)
    async with scada_gateway(tmp_path) as (gw, cert):
        sim = sim_at(gw, "CP16", "1.6", clock=lambda: sent_at, evses=2)
        async with connected(sim), session(gw, cert) as client:
            power = await tag(client, "Site.Chargers.CP16.Evse.1.PowerW")
            waiting = await status_of(power)  # made from the site model, before any value
            assert waiting.StatusCode.value == WAITING
            units = await (await power.get_child("0:EngineeringUnits")).read_value()
            assert units.DisplayName.Text == "W" and units.UnitId == 5723220
            assert await power.read_type_definition() == ua.NodeId(ua.ObjectIds.AnalogItemType)

            await sim.plug_in(1, Ev(soc=50.0, max_w=7400, phases=1, id_tag="BADGE-1"))
            await sim.start_session(1)
            await sim.send_meter_values(1)
            value = await eventually(lambda: _good(power))
            assert value.Value.Value == pytest.approx(7400.0)
            assert value.SourceTimestamp == sent_at  # the device's time, not when the gateway heard it
            assert value.ServerTimestamp > sent_at + timedelta(seconds=45)
            soc = await (await tag(client, "Site.Chargers.CP16.Evse.1.SoC")).read_value()
            assert soc == pytest.approx(50.0)
            assert await (await tag(client, "Site.Chargers.CP16.Online")).read_value() is True

            changes = Collector()
            subscription = await client.create_subscription(50, changes)
            await subscription.subscribe_data_change(power)
            await sim.stop_session(1)
            await eventually(lambda: any(v.Value.Value == 0.0 for v in changes.values))

            charger = await tag(client, "Site.Chargers.CP16")
            answer = await charger.call_method(await _method(client, "RemoteStart"),
                                               text("REMOTE-7"),
                                               uint32(2))  # fmt: skip
            assert json.loads(answer) == {"status": "Accepted"}
            assert "RemoteStartTransaction" in sim.heard
            rows = await eventually(lambda: gw.app.store.transactions.query(id_tag="REMOTE-7"))
            assert rows[0].charger_id == "CP16" and rows[0].evse == 2 and rows[0].open
            transaction = await tag(client, "Site.Chargers.CP16.Evse.2.TransactionId")
            await eventually(lambda: _value_is(transaction, rows[0].id))
        [audited] = await gw.app.store.audit.query(target="CP16")
        assert (audited["actor"], audited["command"], audited["outcome"]) == ("opcua:op", "RemoteStart", "ok")


async def _good(node: Any) -> ua.DataValue | None:
    value = await status_of(node)
    return value if value.StatusCode.is_good() else None


async def _value_is(node: Any, expected: Any) -> bool:
    value = await status_of(node)
    return value.StatusCode.is_good() and value.Value.Value == expected


async def _refusal(client: Client, obj: Any, method: ua.NodeId, *args: ua.Variant) -> Any:
    """A method call the server refuses: the JSON reason in its output (asyncua's call_method drops it)."""
    request = ua.CallMethodRequest(ObjectId=obj.nodeid, MethodId=method, InputArguments=list(args))
    [result] = await client.uaclient.call([request])
    assert not result.StatusCode.is_good(), result
    return json.loads(result.OutputArguments[0].Value)


async def _method(client: Client, name: str) -> ua.NodeId:
    """The charger methods are shared by every charger (ChargerType), called with the charger as the object."""
    idx = await client.get_namespace_index(NAMESPACE)
    return ua.NodeId(f"ChargerType.{name}", idx)


async def test_refused_commands_become_bad_status_codes(tmp_path):
    async with scada_gateway(tmp_path) as (gw, cert):
        async with session(gw, cert) as client:
            cp201 = await tag(client, "Site.Chargers.CP201")
            start = await _method(client, "RemoteStart")
            with pytest.raises(ua.uaerrors.BadNoCommunication):  # offline
                await cp201.call_method(start, text("T"), uint32(0))
            with pytest.raises(ua.uaerrors.BadInvalidArgument):  # EVSE 0 has no connector to unlock
                await cp201.call_method(await _method(client, "Unlock"), uint32(0),
                                        uint32(1))  # fmt: skip
            with pytest.raises(ua.uaerrors.BadArgumentsMissing):
                await cp201.call_method(start, text("T"))
            with pytest.raises(ua.uaerrors.BadMethodInvalid):  # a charger method on the site object
                await (await tag(client, "Site")).call_method(start, text("T"),
                                                              uint32(0))  # fmt: skip
        async with session(gw, cert, user="visitor") as guest:
            cp16 = await tag(guest, "Site.Chargers.CP16")
            with pytest.raises(ua.uaerrors.BadUserAccessDenied):
                await cp16.call_method(await _method(guest, "Reset"), boolean(False))
            assert await _status_is(await tag(guest, "Site.Chargers.CP16.Online"), WAITING)  # a guest reads


async def test_a_dropped_charger_shows_uncertain_values_with_their_last_number(tmp_path):
    async with scada_gateway(tmp_path) as (gw, cert):
        sim = sim_at(gw, "CP201", "2.0.1")
        async with session(gw, cert) as client:
            power = await tag(client, "Site.Chargers.CP201.Evse.1.PowerW")
            online = await tag(client, "Site.Chargers.CP201.Online")
            async with connected(sim):
                await sim.plug_in(1, Ev(soc=30.0, max_w=11000, phases=3))
                await sim.start_session(1)
                await sim.send_meter_values(1)
                await eventually(lambda: _value_is(power, 11000.0))
            value = await eventually(lambda: _uncertain(power))
            assert value.StatusCode.value == ua.StatusCodes.UncertainLastUsableValue
            assert value.Value.Value == pytest.approx(11000.0)
            await eventually(lambda: _value_is(online, False))


async def _status_is(node: Any, code: int) -> bool:
    return (await status_of(node)).StatusCode.value == code


async def _uncertain(node: Any) -> ua.DataValue | None:
    value = await status_of(node)
    return value if value.StatusCode.is_uncertain() else None


async def test_points_that_appear_later_get_their_nodes_and_the_objects_on_the_way(tmp_path):
    async with scada_gateway(tmp_path) as (gw, cert), session(gw, cert) as client:
        gw.app.image.set("meters/hall/power_w_l1", 1234.5)
        gw.app.image.set("chargers/CP201/evse/3/status", "Available")  # an EVSE the config did not list
        phase = await tag(client, "Site.Meters.hall.PowerWL1")
        await eventually(lambda: _value_is(phase, 1234.5))
        units = await (await phase.get_child("0:EngineeringUnits")).read_value()
        assert units.DisplayName.Text == "W"
        status = await tag(client, "Site.Chargers.CP201.Evse.3.Status")
        await eventually(lambda: _value_is(status, "Available"))
        # The new EVSE's usual tags exist at once, waiting for their first value.
        limit = await status_of(await tag(client, "Site.Chargers.CP201.Evse.3.LimitW"))
        assert limit.StatusCode.value == WAITING
        evses = await (await tag(client, "Site.Chargers.CP201.Evse")).get_children()
        assert sorted([(await n.read_browse_name()).Name for n in evses]) == ["1", "3"]

        # A value the node cannot hold is shown as such, and the tags go on.
        gw.app.image.update({"meters/hall/power_w_l1": "n/a", "site/grid_power_w": None})
        await eventually(lambda: _status_is(phase, ua.StatusCodes.BadTypeMismatch))
        grid = await tag(client, "Site.GridPowerW")
        await eventually(lambda: _status_is(grid, ua.StatusCodes.BadNoData))  # no value (fail-safe, ...)
        gw.app.image.set("meters/hall/power_w_l1", 1300.0)
        await eventually(lambda: _value_is(phase, 1300.0))


# -- writing the site limit ----------------------------------------------------------------------------------


async def test_an_operator_writes_the_site_limit_and_the_node_shows_what_holds(tmp_path):
    async with scada_gateway(tmp_path, loadcap=True) as (gw, cert):
        async with session(gw, cert) as client:
            limit = await tag(client, "Site.LimitW")
            await eventually(lambda: _value_is(limit, 100000.0))
            await limit.write_value(ua.DataValue(double(60000.0)))
            assert gw.app.image.value("site/limit_w") == 60000
            assert await limit.read_value() == 60000.0  # at once: what is in force
            async with gw.client() as api:
                view = (await api.get("/api/v1/site")).json()
            assert view["limit_w"] == 60000 and view["sources"]["external"] == {"opcua": 60000}

            await limit.write_value(ua.DataValue(double(150000.0)))  # looser
            assert await limit.read_value() == 100000.0  # the configured limit is the strictest now
            site = await tag(client, "Site")
            idx = await client.get_namespace_index(NAMESPACE)
            for bad in (-5.0, math.nan):  # a sign error in a BMS must never lift the cap
                with pytest.raises(ua.uaerrors.BadInvalidArgument):
                    await limit.write_value(ua.DataValue(double(bad)))
            refusal = await _refusal(client, site, ua.NodeId("Site.SetLimit", idx), double(-5.0))
            assert refusal == {"error": "invalid", "message": REFUSED_MINUS_5}  # as from every door
            assert await limit.read_value() == 100000.0
            answer = await site.call_method(ua.NodeId("Site.LiftLimit", idx))
            assert json.loads(answer) == {"limit_w": 100000, "external": {}, "external_expires_at": {}}
            answer = await site.call_method(ua.NodeId("Site.SetLimitFor", idx), double(70000.0), double(60.0))
            answer = json.loads(answer)
            assert answer["external"] == {"opcua": 70000} and answer["external_expires_at"]["opcua"]  # it lapses
        async with session(gw, cert, user="visitor") as guest:
            with pytest.raises(ua.uaerrors.BadUserAccessDenied):
                await (await tag(guest, "Site.LimitW")).write_value(ua.DataValue(double(1000.0)))
            with pytest.raises(ua.uaerrors.BadUserAccessDenied):  # any other tag is read-only
                await (await tag(guest, "Site.Chargers.CP16.Online")).write_value(True)
        assert gw.app.image.value("site/limit_w") == 70000


async def test_with_the_load_cap_off_a_limit_write_is_refused_with_a_reason(tmp_path):
    async with scada_gateway(tmp_path) as (gw, cert), session(gw, cert) as client:
        limit = await tag(client, "Site.LimitW")
        with pytest.raises(ua.uaerrors.BadConfigurationError):
            await limit.write_value(ua.DataValue(double(60000.0)))
        with pytest.raises(ua.uaerrors.BadTypeMismatch):
            await limit.write_value(ua.DataValue(text("60 kW")))


# -- events --------------------------------------------------------------------------------------------------


async def test_a_transaction_start_arrives_as_an_event(tmp_path):
    async with scada_gateway(tmp_path) as (gw, cert):
        sim = sim_at(gw, "CP16", "1.6", evses=2)
        async with session(gw, cert) as client:
            idx = await client.get_namespace_index(NAMESPACE)
            event_type = client.get_node(ua.NodeId("EvedgeEventType", idx))
            on_site, on_server = Collector(), Collector()
            site = await tag(client, "Site")
            await (await client.create_subscription(50, on_site)).subscribe_events(site, event_type)
            await (await client.create_subscription(50, on_server)).subscribe_events(client.nodes.server, event_type)
            async with connected(sim):
                await sim.start_session(1, "BADGE-9")
                started = await eventually(lambda: _kind(on_site, "transaction_started"))
                assert await eventually(lambda: _kind(on_server, "transaction_started"))
                offline_before = _kind(on_site, "charger_offline")
            data = json.loads(started.Data)
            assert data["charger"] == "CP16" and data["evse"] == 1 and data["id_tag"] == "BADGE-9"
            assert started.SourceName == "CP16" and started.Severity == 100
            assert "BADGE-9" in started.Message.Text
            offline = await eventually(lambda: _kind(on_site, "charger_offline"))
            assert offline_before is None and offline.Severity > started.Severity


def _kind(collector: Collector, kind: str) -> Any:
    return next((e for e in collector.events if getattr(e, "Kind", None) == kind), None)


# -- security ------------------------------------------------------------------------------------------------


async def test_no_security_a_wrong_password_and_an_unknown_certificate_are_refused(tmp_path):
    async with scada_gateway(tmp_path) as (gw, cert):
        endpoints = await Client(gw.app.opcua_server.endpoint).connect_and_get_server_endpoints()
        offered = {(e.SecurityPolicyUri.rsplit("#", 1)[-1], e.SecurityMode.name) for e in endpoints}
        policies, modes = ("Basic256Sha256", "Aes256_Sha256_RsaPss"), ("Sign", "SignAndEncrypt")
        assert offered == {(policy, mode) for policy in policies for mode in modes}
        with pytest.raises(ua.uaerrors.BadSecurityModeRejected):  # a client that ignores the endpoints
            await activate_without_security(gw.app.opcua_server.endpoint)

        with pytest.raises(ua.uaerrors.BadUserAccessDenied):
            async with session(gw, cert, password="not-the-password"):
                pass
        with pytest.raises(ua.uaerrors.BadUserAccessDenied):
            async with session(gw, cert, user="nobody"):
                pass
        with pytest.raises(ua.uaerrors.BadIdentityTokenRejected):  # anonymous is off
            async with session(gw, cert, user=None):
                pass

        stranger = await client_cert(tmp_path, "stranger")
        with pytest.raises(ua.uaerrors.BadCertificateUntrusted):
            async with session(gw, stranger):
                pass
        [kept] = list((opcua_dir(gw) / "rejected").iterdir())
        assert kept.read_bytes() == stranger.cert.read_bytes()
        kept.rename(opcua_dir(gw) / "trusted" / kept.name)  # the technician approves it: no restart
        async with session(gw, stranger) as client:
            assert await _status_is(await tag(client, "Site.Chargers.CP16.Online"), WAITING)
        assert gw.app.opcua_server.health()["refused_certificates"] == 1


async def activate_without_security(url: str, token: Any = None) -> None:
    """CreateSession and ActivateSession on a channel without security, whatever the server offers."""
    client = Client(url, timeout=10)
    await client.connect_socket()
    try:
        await client.send_hello()
        await client.open_secure_channel()
        description = ua.ApplicationDescription(ApplicationUri="urn:test:rogue",
                                                ApplicationType=ua.ApplicationType.Client)  # fmt: skip
        await client.uaclient.create_session(ua.CreateSessionParameters(
            ClientDescription=description, EndpointUrl=url, SessionName="rogue", ClientNonce=create_nonce(32),
            RequestedSessionTimeout=60000))  # fmt: skip
        await client.uaclient.activate_session(ua.ActivateSessionParameters(
            UserIdentityToken=token or ua.AnonymousIdentityToken(PolicyId="anonymous")))  # fmt: skip
    finally:
        client.disconnect_socket()


async def test_aes256_sha256_rsapss_sign_works_too(tmp_path):
    async with scada_gateway(tmp_path) as (gw, cert):
        async with session(gw, cert, policy=SecurityPolicyAes256Sha256RsaPss, mode=SIGN) as client:
            online = await tag(client, "Site.Chargers.CP16.Online")
            assert await _status_is(online, WAITING)
            assert gw.app.opcua_server.health()["sessions"] == 1
    assert (tmp_path / "state" / "opcua" / "server-cert.der").exists()  # made at first start


async def test_a_configured_server_certificate_is_used_with_its_application_uri(tmp_path):
    key, cert = tmp_path / "bms-gateway.key", tmp_path / "bms-gateway.crt"  # names that do not say PEM or DER
    await setup_self_signed_certificate(key, cert, "urn:example:bms-gateway", socket.gethostname(),
                                        [ExtendedKeyUsageOID.SERVER_AUTH], {"commonName": "bms-gateway"})  # fmt: skip
    async with scada_gateway(tmp_path, certificate=str(cert), private_key=str(key)) as (gw, client_side):
        async with session(gw, client_side) as client:
            assert client.security_policy.peer_certificate == cert.read_bytes()
            assert (await client.get_namespace_array())[1:3] == ["urn:example:bms-gateway", NAMESPACE]
        assert not (opcua_dir(gw) / "server-cert.der").exists()


async def test_the_none_policy_and_anonymous_guests_only_when_enabled(tmp_path):
    async with opcua_gateway(tmp_path, allow_none=True, allow_anonymous=True) as gw:
        async with make_client(gw, user=None) as anonymous:
            cp16 = await tag(anonymous, "Site.Chargers.CP16")
            assert await _status_is(await tag(anonymous, "Site.Chargers.CP16.Online"), WAITING)
            with pytest.raises(ua.uaerrors.BadUserAccessDenied):  # a guest reads, never acts
                await cp16.call_method(await _method(anonymous, "Reset"), boolean(True))
        async with make_client(gw) as operator:  # no channel security, but the password travels encrypted
            cp201 = await tag(operator, "Site.Chargers.CP201")
            with pytest.raises(ua.uaerrors.BadNoCommunication):  # an operator may act: CP201 is just not there
                await cp201.call_method(await _method(operator, "Reset"), boolean(True))
        in_clear = ua.UserNameIdentityToken(PolicyId="username", UserName="op", Password=PASSWORD.encode())
        with pytest.raises(ua.uaerrors.BadIdentityTokenRejected):  # a password never travels in clear
            await activate_without_security(gw.app.opcua_server.endpoint, in_clear)


# -- start-up ------------------------------------------------------------------------------------------------


async def test_the_standard_nodes_are_shelved_at_the_first_start_and_read_from_the_shelf_after(tmp_path):
    folder = tmp_path / "state" / "opcua"
    shutil.rmtree(folder)  # a first start, after an older asyncua's
    (folder / "aspace-0.9.0").mkdir(parents=True)
    async with opcua_gateway(tmp_path):
        pass
    kept = shelf.shelf_folder(folder)
    assert [p.name for p in folder.glob("aspace-*")] == [kept.name]
    made = {p.name: p.stat().st_mtime_ns for p in kept.iterdir()}
    async with scada_gateway(tmp_path) as (gw, cert), session(gw, cert) as client:
        assert {p.name: p.stat().st_mtime_ns for p in kept.iterdir()} == made  # read, not made again
        power = await tag(client, "Site.Chargers.CP16.Evse.1.PowerW")
        assert await power.read_type_definition() == ua.NodeId(ua.ObjectIds.AnalogItemType)
        analog = client.get_node(ua.ObjectIds.AnalogItemType)
        assert (await analog.read_browse_name()).Name == "AnalogItemType"
        state = await client.get_node(ua.ObjectIds.Server_ServerStatus_State).read_value()
        assert state == ua.ServerState.Running
