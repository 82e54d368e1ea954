"""The site PKI without sockets: the CA and server certificate made once and kept, renewed when it is time,
CSRs checked and signed; the TLS settings checked as check-config reports them."""

from __future__ import annotations

import base64
import socket
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from drivers.ocpp.tls import SERVER_DAYS, CsrRefused, SitePki
from gateway.clock import utcnow
from gateway.settings import ConfigError, OcppSettings, load_settings

T0 = datetime(2026, 1, 1, tzinfo=utcnow().tzinfo)


def pki(state: Path, now: datetime = T0, **settings: object) -> SitePki:
    return SitePki(OcppSettings(**settings), state, "site-1", now=lambda: now)  # type: ignore[arg-type]


def csr(common_name: str | None, key: Any = None) -> str:
    key = key or ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)] if common_name else [])
    request = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return request.public_bytes(serialization.Encoding.PEM).decode()


def server_cert(state: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate((state / "pki" / "server.pem").read_bytes())


async def test_the_ca_and_server_certificate_are_made_once_and_kept(tmp_path):
    first = pki(tmp_path, tls_host_names=["evedge.depot.lan", "192.0.2.5"])
    await first.open()
    folder = tmp_path / "pki"
    assert sorted(p.name for p in folder.iterdir()) == ["ca.key", "ca.pem", "server.key", "server.pem"]
    assert [(folder / k).stat().st_mode & 0o777 for k in ("ca.key", "server.key")] == [0o600, 0o600]
    ca = first.ca
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.not_valid_after_utc - ca.not_valid_before_utc > timedelta(days=20 * 365)
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)

    server = server_cert(tmp_path)
    server.verify_directly_issued_by(ca)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName)[:1] == ["evedge.depot.lan"]
    assert {"localhost", socket.gethostname()} <= set(names.get_values_for_type(x509.DNSName))
    assert {str(a) for a in names.get_values_for_type(x509.IPAddress)} == {"192.0.2.5", "127.0.0.1", "::1"}
    assert server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.SERVER_AUTH])

    again = pki(tmp_path, T0 + timedelta(days=100), tls_host_names=["evedge.depot.lan", "192.0.2.5"])
    await again.open()
    assert again.ca == ca and again.server_fingerprint == first.server_fingerprint


async def test_the_server_certificate_is_made_again_when_due(tmp_path):
    names = {"tls_host_names": ["evedge.depot.lan"]}
    await pki(tmp_path, **names).open()
    made = server_cert(tmp_path)
    await pki(tmp_path, T0 + timedelta(days=SERVER_DAYS - 31), **names).open()
    assert server_cert(tmp_path) == made  # more than 30 days left
    late = pki(tmp_path, T0 + timedelta(days=SERVER_DAYS - 29), **names)
    await late.open()
    renewed = server_cert(tmp_path)
    assert renewed != made and renewed.not_valid_after_utc > made.not_valid_after_utc
    await pki(tmp_path, T0 + timedelta(days=SERVER_DAYS - 29), tls_host_names=["other.lan"]).open()
    assert server_cert(tmp_path) != renewed  # its names changed

    running = pki(tmp_path, T0, tls_host_names=["other.lan"])  # while running: the check twice a day
    await running.open()
    before = running.server_fingerprint
    running.now = lambda: T0 + timedelta(days=SERVER_DAYS * 2)
    await running.renew()
    assert running.server_fingerprint != before and running.ca == late.ca


async def test_an_incomplete_site_ca_is_not_replaced(tmp_path):
    await pki(tmp_path).open()
    (tmp_path / "pki" / "ca.key").unlink()
    with pytest.raises(OSError, match="ca.key is missing"):
        await pki(tmp_path).open()


async def test_a_configured_server_certificate_is_used_as_it_is(tmp_path):
    own = pki(tmp_path / "elsewhere")
    await own.open()
    cert, key = tmp_path / "elsewhere" / "pki" / "server.pem", tmp_path / "elsewhere" / "pki" / "server.key"
    configured = pki(tmp_path / "state", tls_certificate=cert, tls_private_key=key)
    await configured.open()
    assert configured.server_fingerprint == own.server_fingerprint
    assert not (tmp_path / "state" / "pki" / "server.pem").exists()


async def test_a_csr_is_signed_into_a_client_certificate(tmp_path):
    site = pki(tmp_path, tls_client_days=365)
    await site.open()
    key = ec.generate_private_key(ec.SECP384R1())
    chain = x509.load_pem_x509_certificates((await site.sign(csr("CP01", key), "CP01")).encode())
    client, ca = chain
    assert ca == site.ca
    client.verify_directly_issued_by(ca)
    assert client.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "CP01"
    assert client.public_key() == key.public_key()
    assert client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.CLIENT_AUTH])
    assert not client.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert client.not_valid_after_utc == (T0 + timedelta(days=365)).replace(microsecond=0)

    rsa_key = rsa.generate_private_key(65537, 2048)
    der = x509.load_pem_x509_csr(csr("CP02", rsa_key).encode()).public_bytes(serialization.Encoding.DER)
    bare = base64.b64encode(der).decode()  # some chargers send the DER in base64 without the PEM lines
    assert "BEGIN CERTIFICATE-----" in await site.sign(bare, "CP02")


async def test_csrs_that_are_refused(tmp_path):
    site = pki(tmp_path)
    await site.open()
    with pytest.raises(CsrRefused, match="subject CN is 'CP02', not the charge point id"):
        await site.check(csr("CP02"), "CP01")
    with pytest.raises(CsrRefused, match="its subject has no CN"):
        await site.check(csr(None), "CP01")
    with pytest.raises(CsrRefused, match="not a PEM certificate signing request"):
        await site.check("-----BEGIN CERTIFICATE REQUEST-----\nnonsense\n-----END CERTIFICATE REQUEST-----\n", "CP01")
    with pytest.raises(CsrRefused, match="RSA key has 1024 bits"):
        await site.check(csr("CP01", rsa.generate_private_key(65537, 1024)), "CP01")
    der = bytearray(x509.load_pem_x509_csr(csr("CP01").encode()).public_bytes(serialization.Encoding.DER))
    der[-3] ^= 0x55  # inside the signature
    tampered = base64.b64encode(bytes(der)).decode()
    with pytest.raises(CsrRefused, match="signature does not match"):
        await site.check(tampered, "CP01")
    with pytest.raises(CsrRefused):
        await site.sign(csr("CP02"), "CP01")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "evedge.toml"
    path.write_text(text)
    return path


def test_tls_settings_name_what_is_wrong(tmp_path):
    (tmp_path / "not-pem.txt").write_text("hello")
    config = write(tmp_path, f'[ocpp]\nsecurity_profile = 0\ntls_certificate = "{tmp_path}/missing.pem"\n'
                             f'tls_private_key = "{tmp_path}/not-pem.txt"\ntls_client_ca = "{tmp_path}"\n')  # fmt: skip
    with pytest.raises(ConfigError) as error:
        load_settings(config, {})
    problems = error.value.problems
    assert any(p.startswith("ocpp.tls_certificate: no such file") for p in problems), problems
    assert "ocpp.tls_private_key: not a PEM file" in problems
    assert any(p.startswith("ocpp.tls_client_ca: cannot be read") for p in problems), problems

    with pytest.raises(ConfigError) as error:
        load_settings(write(tmp_path, '[ocpp]\nsecurity_profile = 0\n'), {"EVEDGE_OCPP__SECURITY_PROFILE": "4"})
    assert "ocpp.security_profile: Input should be less than or equal to 3" in str(error.value)
    with pytest.raises(ConfigError) as error:
        load_settings(write(tmp_path, '[ocpp]\nsecurity_profile = 3\ntls_listen = ""\n'), {})
    assert "security_profile 2 and 3 need tls_listen" in str(error.value)
    with pytest.raises(ConfigError) as error:
        load_settings(write(tmp_path, '[ocpp]\nsecurity_profile = 0\ntls_listen = "9443"\n'), {})
    assert "ocpp.tls_listen: expected HOST:PORT" in str(error.value)
    settings = load_settings(write(tmp_path, '[ocpp]\nsecurity_profile = 0\ntls_listen = ""\n'), {})
    assert settings.ocpp.tls_listen == "" and OcppSettings().tls_listen == "0.0.0.0:9443"
