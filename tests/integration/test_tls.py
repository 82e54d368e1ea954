"""OCPP over TLS (security profiles 2 and 3) against simulated chargers on real wss:// connections: who gets in,
certificates signed by the site CA from a charger's CSR, the certificate messages both ways."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import ssl
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from ocpp.v16 import call as call16
from ocpp.v201 import call as call201
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidMessage, InvalidStatus

from drivers.ocpp.tls import SitePki, client_certificate
from gateway.settings import load_settings
from gateway.sim.certificates import SimTls, Wallet
from gateway.sim.charger import SimCharger, SimSpec
from gateway.sim.site import make_charger
from tests.conftest import PASSWORDS, Gateway, connected, eventually, free_port, running_gateway, write_config


@contextlib.asynccontextmanager
async def tls_gateway(tmp_path: Path, profile: int = 3, ocpp_port: int = 0, **env: str) -> AsyncIterator[Gateway]:
    environ = {"EVEDGE_OCPP__SECURITY_PROFILE": str(profile), **env}
    async with running_gateway(load_settings(write_config(tmp_path, ocpp_port=ocpp_port), environ=environ)) as gw:
        yield gw


def wss(gw: Gateway) -> str:
    return f"wss://127.0.0.1:{gw.app.ocpp.tls_port}/ocpp"


async def issued(pki: SitePki, charger_id: str, common_name: str | None = None) -> SimTls:
    """A key and a client certificate for it, as a charger that went through SignCertificate holds them."""
    wallet = Wallet()
    chain = await pki.sign(wallet.csr(common_name or charger_id), common_name or charger_id)
    assert wallet.signed(chain)
    return SimTls(pki.ca_pem, wallet.chain, wallet.key)


def tls_charger(gw: Gateway, charger_id: str, version: str, tls: SimTls, password: str | None = None,
                **spec: Any) -> SimCharger:  # fmt: skip
    return make_charger(SimSpec(charger_id, version, wss(gw), password, tls=tls, **spec),
                        reconnect_min_s=0.05, reconnect_max_s=0.5)  # fmt: skip


async def handshake(url: str, tls: SimTls, headers: dict[str, str] | None = None) -> int | str:
    """101 when the websocket opened, the HTTP status it was refused with, or "tls" when TLS failed."""
    try:
        async with connect(url, subprotocols=["ocpp1.6"], ssl=Wallet(tls).client_context(),  # type: ignore[list-item]
                           additional_headers=headers or {}, open_timeout=5):  # fmt: skip
            return 101
    except InvalidStatus as e:
        return e.response.status_code
    except (InvalidMessage, ssl.SSLError, ConnectionError):  # TLS 1.3: the alert comes after the client's Finished
        return "tls"


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def certificate_actions(sim: SimCharger) -> list[str]:
    """What the charger heard of the certificate messages (other concerns may talk to it at connect)."""
    return [action for action in sim.heard if "Certificate" in action]


def leaf(chain_pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificates(chain_pem.encode())[0]


def peer_of(gw: Gateway, charger_id: str) -> x509.Certificate | None:
    return client_certificate(gw.app.ocpp.sessions[charger_id].ws)


async def test_chargers_with_a_site_certificate_connect_under_profile_3(tmp_path):
    async with tls_gateway(tmp_path) as gw:
        pki = gw.app.ocpp.pki
        cp16 = tls_charger(gw, "CP16", "1.6", await issued(pki, "CP16"), evses=2)
        cp201 = tls_charger(gw, "CP201", "2.0.1", await issued(pki, "CP201"))
        async with connected(cp16, cp201), gw.client() as api:
            assert cp16.boots == 1 and cp201.boots == 1  # no password given: the certificate is the login
            assert peer_of(gw, "CP16") == leaf(cp16.wallet.chain) and peer_of(gw, "CP201") == leaf(cp201.wallet.chain)
            ocpp = (await api.get("/api/v1/health")).json()["parts"]["ocpp"]
            assert ocpp["tls_port"] == gw.app.ocpp.tls_port and ocpp["port"] is None and ocpp["connected"] == 2
            chargers = {c["id"]: c for c in (await api.get("/api/v1/chargers")).json()}
            assert chargers["CP16"]["online"] is True and chargers["CP201"]["online"] is True


async def test_refused_at_the_handshake_under_profile_3(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="drivers.ocpp.tls")
    async with tls_gateway(tmp_path) as gw:
        pki = gw.app.ocpp.pki
        url = f"{wss(gw)}/CP16"
        stranger_ca = SitePki(gw.app.settings.ocpp, tmp_path / "elsewhere", "elsewhere")
        await stranger_ca.open()
        assert await handshake(url, SimTls(pki.ca_pem)) == 403  # no certificate
        assert await handshake(url, SimTls(pki.ca_pem), basic("CP16", PASSWORDS["CP16"])) == 403  # not enough
        unknown_ca = await issued(stranger_ca, "CP16")
        assert await handshake(url, SimTls(pki.ca_pem, unknown_ca.cert, unknown_ca.key)) == "tls"
        # "self-signed certificate in certificate chain": the stranger's CA is not ours
        await eventually(lambda: any("refused at the TLS handshake: self-signed certificate" in r.getMessage()
                                     for r in caplog.records))  # fmt: skip
        assert await handshake(url, await issued(pki, "CP201")) == 403  # another charger's certificate
        assert await handshake(f"{wss(gw)}/STRANGER", SimTls(pki.ca_pem)) == 404  # unknown ids: as over ws://
        assert gw.app.ocpp.sessions == {}
        assert await handshake(url, await issued(pki, "CP16")) == 101
        async with gw.client() as api:
            assert [p["id"] for p in (await api.get("/api/v1/pending-chargers")).json()] == ["STRANGER"]

        sim = tls_charger(gw, "CP201", "2.0.1", await issued(pki, "CP16"))  # a stolen certificate
        task = asyncio.create_task(sim.run())
        try:
            await eventually(lambda: sim.refused == 403)
            assert not sim.connected.is_set()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def test_profile_2_takes_basic_auth_over_tls_and_closes_the_plain_port(tmp_path):
    plain = free_port()
    async with tls_gateway(tmp_path, profile=2, ocpp_port=plain) as gw:
        pki = gw.app.ocpp.pki
        assert gw.app.ocpp.port is None
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", plain)
        url = f"{wss(gw)}/CP16"
        assert await handshake(url, SimTls(pki.ca_pem)) == 401
        assert await handshake(url, SimTls(pki.ca_pem), basic("CP16", "wrong-password-of-CP16")) == 401
        sim = tls_charger(gw, "CP16", "1.6", SimTls(pki.ca_pem), PASSWORDS["CP16"], evses=2)
        with_cert = tls_charger(gw, "CP201", "2.0.1", await issued(pki, "CP201"))  # profile 3 is above 2: welcome
        async with connected(sim, with_cert):
            assert peer_of(gw, "CP16") is None and peer_of(gw, "CP201") is not None


async def test_profile_1_keeps_the_plain_port_next_to_tls(gateway):
    assert gateway.app.ocpp.port and gateway.app.ocpp.tls_port
    pki = gateway.app.ocpp.pki
    plain = gateway.charger("CP16", "1.6", evses=2)
    secure = tls_charger(gateway, "CP201", "2.0.1", SimTls(pki.ca_pem), PASSWORDS["CP201"])
    async with connected(plain, secure):
        assert set(gateway.app.ocpp.sessions) == {"CP16", "CP201"}


@pytest.mark.parametrize("charger_id, version", [("CP16", "1.6"), ("CP201", "2.0.1")])
async def test_sign_certificate_then_reconnect_with_the_new_one(tmp_path, charger_id, version):
    async with tls_gateway(tmp_path, EVEDGE_OCPP__TLS_CLIENT_DAYS="90") as gw:
        first = await issued(gw.app.ocpp.pki, charger_id)
        sim = tls_charger(gw, charger_id, version, first)
        async with connected(sim):
            assert await sim.request_certificate() == "Accepted"
            await eventually(lambda: sim.wallet.chain != first.cert)
            assert certificate_actions(sim) == ["CertificateSigned"]
            new = leaf(sim.wallet.chain)
            assert x509.load_pem_x509_certificates(sim.wallet.chain.encode())[1] == gw.app.ocpp.pki.ca
            assert new.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.CLIENT_AUTH])
            assert new.not_valid_after_utc - new.not_valid_before_utc == timedelta(days=90, minutes=5)
            events = await eventually(lambda: _events(gw, charger_id, "CertificateSigned"))
            assert events[0]["payload"]["status"] == "Accepted"
            assert (await _events(gw, charger_id, "SignCertificate"))[0]["payload"]["status"] == "Accepted"

            sim.drop_link()  # a charger takes its new certificate at its next connection
            await eventually(lambda: sim.boots == 2 and charger_id in gw.app.ocpp.sessions)
            assert peer_of(gw, charger_id) == new


async def test_a_csr_for_another_id_or_a_v2g_certificate_is_rejected(tmp_path):
    async with tls_gateway(tmp_path) as gw:
        pki = gw.app.ocpp.pki
        cp16 = tls_charger(gw, "CP16", "1.6", await issued(pki, "CP16"), evses=2)
        cp201 = tls_charger(gw, "CP201", "2.0.1", await issued(pki, "CP201"))
        async with connected(cp16, cp201):
            assert await cp16.request_certificate(common_name="CP201") == "Rejected"
            answer = await cp201.call(call201.SignCertificate(csr=cp201.wallet.csr("CP16")))
            assert answer.status == "Rejected" and answer.status_info["reason_code"] == "InvalidCSR"
            assert "CN is 'CP16'" in answer.status_info["additional_info"]
            v2g = await cp201.call(call201.SignCertificate(csr=cp201.wallet.csr("CP201"),
                                                           certificate_type="V2GCertificate"))  # fmt: skip
            assert v2g.status == "Rejected" and v2g.status_info["reason_code"] == "NoUpstreamCSMS"
            garbage = await cp16.call(call16.SignCertificate(csr="-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n"))
            assert garbage.status == "Rejected"
            events = await _events(gw, "CP16", "SignCertificate")
            assert [e["payload"]["status"] for e in events] == ["Rejected", "Rejected"]
            assert "not the charge point id" in events[0]["payload"]["reason"]
            assert "not a PEM certificate signing request" in events[1]["payload"]["reason"]
            assert not await _events(gw, "CP16", "CertificateSigned")
        assert certificate_actions(cp16) == certificate_actions(cp201) == []


async def test_the_15118_certificate_messages_are_answered_with_a_clear_refusal(gateway):
    sim = gateway.charger("CP201", "2.0.1")
    async with connected(sim):
        ev = await sim.call(call201.Get15118EVCertificate(iso15118_schema_version="urn:iso:15118:2:2013:MsgDef",
                                                          action="Install", exi_request="AAEC"))  # fmt: skip
        assert ev.status == "Failed" and ev.exi_response == ""
        assert ev.status_info["reason_code"] == "NoUpstreamCSMS"
        assert "upstream CSMS" in ev.status_info["additional_info"]
        status = await sim.call(call201.GetCertificateStatus(ocsp_request_data={
            "hashAlgorithm": "SHA256", "issuerNameHash": "00", "issuerKeyHash": "00", "serialNumber": "1",
            "responderURL": "http://ocsp.example.com"}))  # fmt: skip
        assert status.status == "Failed" and status.status_info["reason_code"] == "NoUpstreamCSMS"


INSTALL_TYPES = {"1.6": "CentralSystemRootCertificate", "2.0.1": "CSMSRootCertificate"}


@pytest.mark.parametrize("charger_id, version", [("CP16", "1.6"), ("CP201", "2.0.1")])
async def test_certificate_requests_through_the_api(gateway, charger_id, version):
    pki = gateway.app.ocpp.pki
    ca = pki.ca
    kind = INSTALL_TYPES[version]
    # The hash data a charger must report for the site CA, computed here from the certificate's own bytes.
    expected = {"hashAlgorithm": "SHA256", "issuerNameHash": hashlib.sha256(ca.issuer.public_bytes()).hexdigest(),
                "issuerKeyHash": hashlib.sha256(ca.public_key().public_bytes(
                    serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)).hexdigest(),
                "serialNumber": format(ca.serial_number, "x")}  # fmt: skip
    ids_payload: dict[str, Any] = {"certificateType": kind if version == "1.6" else [kind]}
    sim = gateway.charger(charger_id, version)
    async with connected(sim), gateway.client() as api:

        async def send(action: str, payload: dict[str, Any]) -> dict[str, Any]:
            response = await api.post(f"/api/v1/chargers/{charger_id}/ocpp/{action}", json=payload)
            assert response.status_code == 200, response.text
            return response.json()

        assert (await send("GetInstalledCertificateIds", ids_payload))["status"] == "NotFound"
        assert await send("InstallCertificate", {"certificateType": kind, "certificate": pki.ca_pem}) == {
            "status": "Accepted"}
        installed = await send("GetInstalledCertificateIds", ids_payload)
        if version == "1.6":
            assert installed == {"status": "Accepted", "certificateHashData": [expected]}
        else:
            assert installed == {"status": "Accepted", "certificateHashDataChain": [
                {"certificateType": kind, "certificateHashData": expected}]}  # fmt: skip
        assert sim.wallet.client_context().get_ca_certs()  # the charger now trusts the site CA for wss://
        assert await send("DeleteCertificate", {"certificateHashData": expected}) == {"status": "Accepted"}
        assert await send("DeleteCertificate", {"certificateHashData": expected}) == {"status": "NotFound"}
        assert (await send("GetInstalledCertificateIds", ids_payload))["status"] == "NotFound"

        chain = await pki.sign(sim.wallet.csr(charger_id), charger_id)
        stranger = await pki.sign(Wallet().csr(charger_id), charger_id)  # not for the key the charger holds
        assert await send("CertificateSigned", {"certificateChain": stranger}) == {"status": "Rejected"}
        assert await send("CertificateSigned", {"certificateChain": chain}) == {"status": "Accepted"}
        assert sim.wallet.chain == chain
        assert certificate_actions(sim) == [
            "GetInstalledCertificateIds", "InstallCertificate", "GetInstalledCertificateIds", "DeleteCertificate",
            "DeleteCertificate", "GetInstalledCertificateIds", "CertificateSigned", "CertificateSigned"]  # fmt: skip


async def test_the_server_certificate_survives_a_restart(tmp_path):
    seen = []
    for _ in range(2):
        async with tls_gateway(tmp_path) as gw:
            context = Wallet(SimTls(gw.app.ocpp.pki.ca_pem)).client_context()  # checks the names: 127.0.0.1
            _, writer = await asyncio.open_connection("127.0.0.1", gw.app.ocpp.tls_port, ssl=context)
            der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
            writer.close()
            await writer.wait_closed()
            seen.append((hashlib.sha256(der).hexdigest(), gw.app.ocpp.pki.server_fingerprint,
                         gw.app.ocpp.pki.ca_fingerprint))  # fmt: skip
    assert seen[0] == seen[1] and seen[0][0] == seen[0][1]
    assert (tmp_path / "state" / "pki" / "ca.key").stat().st_mode & 0o777 == 0o600


async def test_technicians_fetch_the_site_ca(gateway):
    async with gateway.client() as api, gateway.client("") as anonymous:
        pem = (await api.get("/api/v1/site-ca.pem")).text
        assert pem == gateway.app.ocpp.pki.ca_pem and "PRIVATE KEY" not in pem  # the key never leaves the box
        assert (await anonymous.get("/api/v1/site-ca.pem")).status_code == 401


async def _events(gw: Gateway, charger_id: str, action: str) -> list[dict[str, Any]]:
    """The charger's events of one action, oldest first."""
    return [e for e in reversed(await gw.app.store.chargers.events(charger_id)) if e["action"] == action]
