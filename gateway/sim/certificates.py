"""The simulated charger's certificates: a key and CSR of its own, SignCertificate, and the certificate
messages of the central system.

Its wallet holds what a charger keeps: the CA certificates it trusts for wss://, its own certificate chain and
key (used from its next TLS connection on), the key of the CSR it sent last, and the certificates installed by the
central system by type. Hash data are those of OCSP (RFC 6960 CertID), as OCPP defines them: hashes of the issuer's
name (DER) and of its public key, and the serial number in hexadecimal.
"""

from __future__ import annotations

import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID
from ocpp.charge_point import snake_to_camel_case
from ocpp.routing import on
from ocpp.v16 import call as call16, call_result as result16
from ocpp.v16.enums import Action as Action16
from ocpp.v201 import call as call201, call_result as result201
from ocpp.v201.enums import Action as Action201

HASHES = {"SHA256": hashes.SHA256, "SHA384": hashes.SHA384, "SHA512": hashes.SHA512}
# The types under which a central system's root certificate is installed: trusted for wss:// from then on.
CENTRAL_ROOTS = ("CentralSystemRootCertificate", "CSMSRootCertificate")


@dataclass
class SimTls:
    """How a simulated charger connects over wss://: the CA certificate(s) it trusts, and its own certificate chain
    and key if it has one (PEM)."""

    ca: str
    cert: str | None = None
    key: str | None = None


class Wallet:
    def __init__(self, tls: SimTls | None = None) -> None:
        self.trusted = tls.ca if tls else ""
        self.chain = tls.cert if tls else None  # its own certificate, then its CAs
        self.key = tls.key if tls else None
        self.pending: ec.EllipticCurvePrivateKey | None = None  # the key of the CSR sent last
        self.installed: dict[str, list[x509.Certificate]] = {}

    def client_context(self) -> ssl.SSLContext:
        """A TLS client context as the charger has it now."""
        roots = [c.public_bytes(serialization.Encoding.PEM).decode() for t in CENTRAL_ROOTS
                 for c in self.installed.get(t, [])]  # fmt: skip
        context = ssl.create_default_context(cadata=self.trusted + "".join(roots))
        if self.chain and self.key:
            with tempfile.TemporaryDirectory() as folder:  # the ssl module loads a certificate from files only
                chain, key = Path(folder) / "chain.pem", Path(folder) / "key.pem"
                chain.write_text(self.chain)
                key.write_text(self.key)
                context.load_cert_chain(chain, key)
        return context

    def csr(self, common_name: str) -> str:
        """A new key (kept until its certificate comes) and its CSR, PEM."""
        self.pending = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "evedge sim"),
                             x509.NameAttribute(NameOID.COMMON_NAME, common_name)])  # fmt: skip
        request = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(self.pending, hashes.SHA256())
        return request.public_bytes(serialization.Encoding.PEM).decode()

    def signed(self, chain_pem: str, certificate_type: str | None = None) -> bool:
        """CertificateSigned: a chain for the key of the last CSR becomes the charger's own (a V2G one is kept
        with the installed certificates)."""
        try:
            chain = x509.load_pem_x509_certificates(chain_pem.encode())
        except ValueError:
            return False
        if self.pending is None or chain[0].public_key() != self.pending.public_key():
            return False
        if certificate_type == "V2GCertificate":
            self.installed["V2GCertificateChain"] = chain[:1]
        else:
            self.chain = chain_pem
            self.key = self.pending.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()).decode()  # fmt: skip
        self.pending = None
        return True

    def install(self, certificate_type: str, pem: str) -> bool:
        """InstallCertificate: CA certificates only."""
        try:
            cert = x509.load_pem_x509_certificate(pem.encode())
            if not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
                return False
        except (ValueError, x509.ExtensionNotFound):
            return False
        kept = self.installed.setdefault(certificate_type, [])
        if all(c.fingerprint(hashes.SHA256()) != cert.fingerprint(hashes.SHA256()) for c in kept):
            kept.append(cert)
        return True

    def ids(self, types: list[str] | None = None) -> list[tuple[str, dict[str, str]]]:
        """(type, hash data) of every installed certificate of these types (all types when None)."""
        return [(t, hash_data(c, self._issuer(c))) for t, certs in self.installed.items()
                if types is None or t in types for c in certs]  # fmt: skip

    def delete(self, wanted: dict[str, str]) -> bool:
        """DeleteCertificate: the certificate with these hash data (hex compared whatever its case)."""
        wanted = snake_to_camel_case(wanted)  # as the library hands it over: snake_case
        for certs in self.installed.values():
            for cert in certs:
                mine = hash_data(cert, self._issuer(cert), wanted["hashAlgorithm"])
                if all(mine[k].lower() == str(wanted[k]).lower() for k in ("issuerNameHash", "issuerKeyHash",
                                                                           "serialNumber")):  # fmt: skip
                    certs.remove(cert)
                    return True
        return False

    def _issuer(self, cert: x509.Certificate) -> x509.Certificate:
        """The installed certificate that issued this one; a root is its own issuer."""
        found = (c for certs in self.installed.values() for c in certs if c.subject == cert.issuer)
        return cert if cert.issuer == cert.subject else next(found, cert)


def hash_data(cert: x509.Certificate, issuer: x509.Certificate, algorithm: str = "SHA256") -> dict[str, str]:
    """OCPP CertificateHashData of a certificate (camelCase)."""
    request = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, HASHES[algorithm]()).build()
    return {"hashAlgorithm": algorithm, "issuerNameHash": request.issuer_name_hash.hex(),
            "issuerKeyHash": request.issuer_key_hash.hex(),
            "serialNumber": format(request.serial_number, "x")}  # hexadecimal, no leading zeros  # fmt: skip


async def request_certificate(sim: Any, certificate_type: str | None = None, common_name: str | None = None) -> str:
    """A new key, its CSR sent in SignCertificate; the gateway's answer (Accepted or Rejected)."""
    csr = sim.wallet.csr(common_name or sim.spec.id)
    if sim.spec.version == "1.6":
        return (await sim.call(call16.SignCertificate(csr=csr))).status
    return (await sim.call(call201.SignCertificate(csr=csr, certificate_type=certificate_type))).status


class _Certificates:
    """What both versions answer alike (the same action names and fields; each version its own result classes)."""

    sim: Any
    _certificate_results: Any  # the version's call_result module

    @on("CertificateSigned")
    def on_certificate_signed(self, certificate_chain: str, certificate_type: str | None = None, **_: Any) -> Any:
        accepted = self.sim.wallet.signed(certificate_chain, certificate_type)
        return self._certificate_results.CertificateSigned(status="Accepted" if accepted else "Rejected")

    @on("InstallCertificate")
    def on_install_certificate(self, certificate_type: str, certificate: str, **_: Any) -> Any:
        accepted = self.sim.wallet.install(certificate_type, certificate)
        return self._certificate_results.InstallCertificate(status="Accepted" if accepted else "Rejected")

    @on("DeleteCertificate")
    def on_delete_certificate(self, certificate_hash_data: dict, **_: Any) -> Any:
        deleted = self.sim.wallet.delete(certificate_hash_data)
        return self._certificate_results.DeleteCertificate(status="Accepted" if deleted else "NotFound")


class Certificates16(_Certificates):
    """Handlers mixed into the 1.6 simulated charger's protocol; ``self.sim`` is the charger."""

    _certificate_results = result16

    @on(Action16.get_installed_certificate_ids)
    def on_get_installed_certificate_ids(self, certificate_type: str,
                                         **_: Any) -> result16.GetInstalledCertificateIds:  # fmt: skip
        found = [data for _, data in self.sim.wallet.ids([certificate_type])]
        return result16.GetInstalledCertificateIds(status="Accepted" if found else "NotFound",
                                                   certificate_hash_data=found or None)  # fmt: skip


class Certificates201(_Certificates):
    """Handlers mixed into the 2.0.1 simulated charger's protocol; ``self.sim`` is the charger."""

    _certificate_results = result201

    @on(Action201.get_installed_certificate_ids)
    def on_get_installed_certificate_ids(self, certificate_type: list[str] | None = None,
                                         **_: Any) -> result201.GetInstalledCertificateIds:  # fmt: skip
        found = [{"certificate_type": t, "certificate_hash_data": data}
                 for t, data in self.sim.wallet.ids(certificate_type)]  # fmt: skip
        return result201.GetInstalledCertificateIds(status="Accepted" if found else "NotFound",
                                                    certificate_hash_data_chain=found or None)  # fmt: skip
