"""The site's PKI and the security of the TLS listener (OCPP security profiles 2 and 3).

``{state_dir}/pki/`` holds the site CA (``ca.pem`` + ``ca.key``, EC P-256, made at first start, valid 20 years)
and the gateway's server certificate (``server.pem`` + ``server.key``, signed by the site CA, made at first start
and made again when it has less than 30 days left, when its host names changed or when it is not the CA's), unless
``ocpp.tls_certificate`` / ``ocpp.tls_private_key`` name one. Chargers trust ``ca.pem`` (installed with
InstallCertificate as their CentralSystemRootCertificate / CSMSRootCertificate); a charger's client certificate is
signed by the site CA from the CSR of its SignCertificate and carries its charge point id as subject CN, which is
what authenticates it at the handshake (profile 3).

Key generation and signing are CPU work: they run in a thread, never in the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import logging
import os
import socket
import ssl
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.clock import utcnow
from gateway.limits import TokenBucket
from gateway.settings import OcppSettings

log = logging.getLogger(__name__)

CA_DAYS = 20 * 365 + 5
SERVER_DAYS = 397
RENEW_BEFORE = timedelta(days=30)
CHECK_EVERY_S = 12 * 3600.0
BACKDATE = timedelta(minutes=5)  # a charger whose clock runs a little behind still accepts a fresh certificate
MIN_RSA_BITS = 2048
EC_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)
# TLS 1.2 suites: the four OCPP names (ECDHE-ECDSA and RSA with AES-GCM), and ECDHE-RSA for a configured RSA
# certificate; TLS 1.3 suites are OpenSSL's own.
CIPHERS = ("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256:"
           "ECDHE-RSA-AES256-GCM-SHA384:AES128-GCM-SHA256:AES256-GCM-SHA384")
LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")


class _LoggedHandshake(ssl.SSLObject):
    """asyncio drops a failed TLS handshake without a word outside debug mode; a technician needs to see why a
    charger is refused there (a certificate from another CA, plain ws:// on the TLS port). Throttled: anyone can
    knock on the port."""

    refusals = TokenBucket(rate=0.2, burst=10)
    suppressed = 0

    def do_handshake(self) -> None:
        try:
            super().do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise
        except ssl.SSLError as e:
            cls = _LoggedHandshake
            if cls.refusals.try_take():
                more = f" ({cls.suppressed} more since the last one)" if cls.suppressed else ""
                cls.suppressed = 0
                reason = e.verify_message if isinstance(e, ssl.SSLCertVerificationError) else e.reason
                log.warning("refused at the TLS handshake: %s%s", reason or e, more)
            else:
                cls.suppressed += 1
            raise


class CsrRefused(ValueError):
    """A certificate signing request the site CA will not sign; the text says why ("its subject CN is ...")."""


class SitePki:
    """The site CA, the server certificate and the TLS context of the listener; signs chargers' CSRs."""

    def __init__(self, settings: OcppSettings, state_dir: Path, gateway_id: str,
                 now: Callable[[], datetime] = utcnow) -> None:  # fmt: skip
        self.settings = settings
        self.folder = state_dir / "pki"
        self.gateway_id = gateway_id
        self.now = now
        self.context: ssl.SSLContext | None = None
        self.ca: x509.Certificate | None = None
        self._ca_key: Any = None
        self._server: x509.Certificate | None = None
        self._making = threading.Lock()  # the OCPP listener and the web server may ask for the files at once

    @property
    def ca_pem(self) -> str:
        assert self.ca is not None
        return self.ca.public_bytes(serialization.Encoding.PEM).decode()

    @property
    def server_fingerprint(self) -> str | None:
        """SHA-256 of the server certificate in use (hex)."""
        return fingerprint(self._server) if self._server is not None else None

    @property
    def ca_fingerprint(self) -> str | None:
        return fingerprint(self.ca) if self.ca is not None else None

    # -- at start, and while running -------------------------------------------------------------------------

    async def open(self) -> ssl.SSLContext:
        """The site CA and the server certificate, made if needed; the listener's TLS context."""
        await asyncio.to_thread(self._open)
        assert self.context is not None
        return self.context

    def _open(self) -> None:
        cert, key = self._files()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(CIPHERS)
        context.load_cert_chain(cert, key)
        context.load_verify_locations(cadata=self.ca_pem)
        if self.settings.tls_client_ca is not None:
            context.load_verify_locations(cafile=self.settings.tls_client_ca)
        # A certificate offered is verified (one from an unknown CA fails the TLS handshake); a charger without one
        # reaches the HTTP handshake, which asks for its password (profile 2) or refuses it with a reason and a
        # log line (profile 3) -- clearer to a technician than a TLS alert.
        context.verify_mode = ssl.CERT_OPTIONAL
        context.sslobject_class = _LoggedHandshake
        self.context = context

    async def server_files(self) -> tuple[Path, Path]:
        """The server certificate chain and its key, made (with the site CA) or renewed when due: the web
        console's HTTPS shows browsers the certificate the chargers see."""
        return await asyncio.to_thread(self._files)

    def _files(self) -> tuple[Path, Path]:
        with self._making:
            if self.ca is None:
                self.folder.mkdir(parents=True, exist_ok=True)
                self.ca, self._ca_key = self._site_ca()
            return self._server_files()

    async def keep_renewed(self) -> None:
        """Check the server certificate twice a day: made again before it expires (running for years)."""
        while True:
            await asyncio.sleep(CHECK_EVERY_S)
            try:
                await self.renew()
            except (OSError, ValueError):  # ssl.SSLError is an OSError
                log.exception("could not renew the OCPP server certificate; the one in use stays")

    async def renew(self) -> None:
        """New handshakes get a renewed (or, when configured, re-read) server certificate."""
        assert self.context is not None
        files = await asyncio.to_thread(self._files)
        self.context.load_cert_chain(*files)  # in the loop: the context is not changed under a handshake

    def _site_ca(self) -> tuple[x509.Certificate, Any]:
        cert_path, key_path = self.folder / "ca.pem", self.folder / "ca.key"
        if cert_path.exists() != key_path.exists():
            missing = key_path if cert_path.exists() else cert_path
            # A new CA would silently end the chargers' trust: a technician decides.
            raise OSError(f"the site CA is incomplete, {missing} is missing: restore it, or remove {self.folder}/ca.* "
                          "to make a new site CA (chargers must then be given its ca.pem again)")  # fmt: skip
        if cert_path.exists():
            return x509.load_pem_x509_certificate(cert_path.read_bytes()), _load_key(key_path)
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "evedge"),
                          x509.NameAttribute(NameOID.COMMON_NAME, f"evedge site CA {self.gateway_id}")])  # fmt: skip
        now = self.now()
        cert = (
            _builder(name, name, key.public_key(), now - BACKDATE, now + timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )  # fmt: skip
        _write(key_path, _key_pem(key), 0o600)
        _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        log.info("site CA made: %s (give it to chargers as their central system root certificate) sha256=%s",
                 cert_path, fingerprint(cert))  # fmt: skip
        return cert, key

    def _server_files(self) -> tuple[Path, Path]:
        """The server certificate and key to use: configured ones, else ours (made again when it is time)."""
        if self.settings.tls_certificate is not None and self.settings.tls_private_key is not None:
            self._server = _first_certificate(self.settings.tls_certificate.read_bytes())
            if self._server.not_valid_after_utc - self.now() < RENEW_BEFORE:
                log.warning("the configured OCPP server certificate expires soon, renew it: %s not_after=%s",
                            self.settings.tls_certificate, self._server.not_valid_after_utc)  # fmt: skip
            return self.settings.tls_certificate, self.settings.tls_private_key
        cert_path, key_path = self.folder / "server.pem", self.folder / "server.key"
        names = self.host_names()
        current = x509.load_pem_x509_certificate(cert_path.read_bytes()) if cert_path.exists() else None
        why = self._remake_reason(current, names) if key_path.exists() else "made"
        if why is None:
            self._server = current
            return cert_path, key_path
        self._server = self._make_server(key_path, cert_path, names)
        log.info("OCPP server certificate %s: %s names=%s sha256=%s", why, cert_path, ",".join(names),
                 self.server_fingerprint)  # fmt: skip
        return cert_path, key_path

    def _remake_reason(self, cert: x509.Certificate | None, names: list[str]) -> str | None:
        if cert is None:
            return "made"
        if cert.not_valid_after_utc - self.now() < RENEW_BEFORE:
            return "renewed (it expires within 30 days)"
        if sorted(_san_names(cert)) != sorted(names):
            return "made again (the host names changed)"
        try:
            assert self.ca is not None
            cert.verify_directly_issued_by(self.ca)
        except (ValueError, TypeError, InvalidSignature):  # another CA's
            return "made again (not signed by the site CA)"
        return None

    def _make_server(self, key_path: Path, cert_path: Path, names: list[str]) -> x509.Certificate:
        assert self.ca is not None
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "evedge"),
                             x509.NameAttribute(NameOID.COMMON_NAME, names[0])])  # fmt: skip
        now = self.now()
        not_after = min(now + timedelta(days=SERVER_DAYS), self.ca.not_valid_after_utc)
        cert = self._leaf(
            _builder(subject, self.ca.subject, key.public_key(), now - BACKDATE, not_after)
            .add_extension(x509.SubjectAlternativeName([_general_name(n) for n in names]), critical=False),
            key.public_key(),
            ExtendedKeyUsageOID.SERVER_AUTH,
        )
        _write(key_path, _key_pem(key), 0o600)
        _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        return cert

    def _leaf(self, builder: x509.CertificateBuilder, key: Any, purpose: x509.ObjectIdentifier) -> x509.Certificate:
        """An end-entity certificate of this public key for one purpose (server or client authentication), signed
        by the site CA."""
        return (
            builder.add_extension(x509.ExtendedKeyUsage([purpose]), critical=False)
            .add_extension(_leaf_usage(key), critical=True)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._ca_key.public_key()),
                           critical=False)  # fmt: skip
            .sign(self._ca_key, hashes.SHA256())
        )

    def host_names(self) -> list[str]:
        """The server certificate's names: the configured ones first, then this machine's and loopback."""
        names: list[str] = []
        for name in [*self.settings.tls_host_names, socket.gethostname(), *LOCAL_NAMES]:
            if name and name.lower() not in (n.lower() for n in names):
                names.append(name)
        return names

    # -- chargers' certificates --------------------------------------------------------------------------------

    async def check(self, csr_pem: str, charger_id: str) -> None:
        """Raise CsrRefused (saying why) unless the site CA would sign this CSR for this charger."""
        await asyncio.to_thread(_checked_csr, csr_pem, charger_id)

    async def sign(self, csr_pem: str, charger_id: str) -> str:
        """The charger's certificate, then the site CA's, as PEM (the certificateChain of CertificateSigned)."""
        return await asyncio.to_thread(self._sign, csr_pem, charger_id)

    def _sign(self, csr_pem: str, charger_id: str) -> str:
        assert self.ca is not None
        csr = _checked_csr(csr_pem, charger_id)
        now = self.now()
        not_after = min(now + timedelta(days=self.settings.tls_client_days), self.ca.not_valid_after_utc)
        key = csr.public_key()
        cert = self._leaf(_builder(csr.subject, self.ca.subject, key, now - BACKDATE, not_after), key,
                          ExtendedKeyUsageOID.CLIENT_AUTH)  # fmt: skip
        log.info("client certificate signed charger=%s serial=%x not_after=%s", charger_id, cert.serial_number,
                 not_after.date())  # fmt: skip
        return cert.public_bytes(serialization.Encoding.PEM).decode() + self.ca_pem


# -- the handshake --------------------------------------------------------------------------------------------


def client_certificate(connection: Any) -> x509.Certificate | None:
    """The certificate a charger showed at the TLS handshake (already verified by it), or None."""
    transport = getattr(connection, "transport", None)
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    return x509.load_der_x509_certificate(der) if der else None


def common_name(name: x509.Name) -> str | None:
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = values[0].value if values else None
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the certificate (hex), as `openssl x509 -fingerprint -sha256` shows it without colons."""
    return cert.fingerprint(hashes.SHA256()).hex()


# -- helpers ---------------------------------------------------------------------------------------------------


def _checked_csr(csr_pem: str, charger_id: str) -> x509.CertificateSigningRequest:
    csr = _parse_csr(csr_pem)
    if not csr.is_signature_valid:
        raise CsrRefused("its signature does not match its public key")
    key = csr.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise CsrRefused(f"its RSA key has {key.key_size} bits ({MIN_RSA_BITS} at least)")
    elif not (isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, EC_CURVES)):
        raise CsrRefused("its key is neither RSA (2048 bits and more) nor EC P-256, P-384 or P-521")
    cn = common_name(csr.subject)
    if cn is None:
        raise CsrRefused("its subject has no CN (it must be the charge point id)")
    if cn != charger_id:
        raise CsrRefused(f"its subject CN is {str(cn)[:60]!r}, not the charge point id")
    return csr


def _parse_csr(text: str) -> x509.CertificateSigningRequest:
    """PEM as the spec says; some chargers send the bare base64 DER."""
    try:
        if "-----BEGIN" in text:
            return x509.load_pem_x509_csr(text.strip().encode())
        return x509.load_der_x509_csr(base64.b64decode("".join(text.split()), validate=True))
    except (ValueError, binascii.Error, UnicodeEncodeError):
        raise CsrRefused("it is not a PEM certificate signing request (PKCS #10)") from None


def _builder(subject: x509.Name, issuer: x509.Name, key: Any, not_before: datetime,
             not_after: datetime) -> x509.CertificateBuilder:  # fmt: skip
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key), critical=False)
    )


def _leaf_usage(key: Any) -> x509.KeyUsage:
    rsa_key = isinstance(key, rsa.RSAPublicKey)
    return x509.KeyUsage(digital_signature=True, key_encipherment=rsa_key, key_agreement=not rsa_key,
                         content_commitment=False, data_encipherment=False, key_cert_sign=False, crl_sign=False,
                         encipher_only=False, decipher_only=False)  # fmt: skip


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _san_names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(n.value) for n in san]


def _first_certificate(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificates(pem)[0]


def _load_key(path: Path) -> Any:
    return serialization.load_pem_private_key(path.read_bytes(), password=None)


def _key_pem(key: Any) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())  # fmt: skip


def _write(path: Path, data: bytes, mode: int) -> None:
    """Atomically, with its mode from the start (a key is never readable by others, even for a moment)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), "wb") as f:
        os.fchmod(f.fileno(), mode)  # whatever the umask
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)

