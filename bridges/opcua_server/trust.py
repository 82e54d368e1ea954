"""Which client certificates are trusted: the technician's approvals in trusted/, unknown ones kept in rejected/."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from asyncua import ua
from asyncua.common.utils import ServiceError
from asyncua.crypto import uacrypto
from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

log = logging.getLogger(__name__)

MAX_TRUSTED_FILES = 500
MAX_REJECTED_FILES = 100


class TrustList:
    """Client certificates a technician approved: files in trusted/ (DER or PEM), or issued by a CA there."""

    def __init__(self, folder: Path) -> None:
        self.trusted_dir = folder / "trusted"
        self.rejected_dir = folder / "rejected"
        self._files: dict[str, tuple[tuple[int, int], x509.Certificate | None]] = {}
        self._fingerprints: set[bytes] = set()
        self._cas: list[x509.Certificate] = []
        self._basic = CertificateValidator(CertificateValidatorOptions.BASIC_VALIDATION)
        self.rejected = 0

    def prepare(self) -> None:
        self.trusted_dir.mkdir(parents=True, exist_ok=True)
        self.rejected_dir.mkdir(parents=True, exist_ok=True)

    def reload(self) -> None:
        """Read the trusted folder again; only files that changed are parsed."""
        files = {}
        try:
            entries = sorted(os.scandir(self.trusted_dir), key=lambda e: e.name)[:MAX_TRUSTED_FILES]
        except FileNotFoundError:
            entries = []
        for entry in entries:
            if not entry.is_file() or Path(entry.name).suffix.lower() not in (".der", ".pem", ".crt", ".cer"):
                continue
            stat = entry.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
            known = self._files.get(entry.path)
            files[entry.path] = known if known is not None and known[0] == stamp else (stamp, _read_cert(entry.path))
        self._files = files
        certs = [cert for _, cert in files.values() if cert is not None]
        self._fingerprints = {cert.fingerprint(hashes.SHA256()) for cert in certs}
        self._cas = [cert for cert in certs if _is_ca(cert)]

    def trusts(self, cert: x509.Certificate) -> bool:
        if cert.fingerprint(hashes.SHA256()) in self._fingerprints:
            return True
        return any(_issued_by(cert, ca) for ca in self._cas)

    async def validate(self, cert: x509.Certificate, app: ua.ApplicationDescription) -> None:
        """asyncua's certificate validator, asked at CreateSession: valid now, for this client, and approved."""
        self.reload()
        await self._basic.validate(cert, app)
        self.check(cert)

    def check(self, cert: x509.Certificate) -> None:
        if not self.trusts(cert):
            self.keep_rejected(cert)
            raise ServiceError(ua.StatusCodes.BadCertificateUntrusted)

    def keep_rejected(self, cert: x509.Certificate) -> None:
        """A copy for the technician to approve (move it to trusted/); the folder is bounded."""
        self.rejected += 1
        name = f"{_slug(_common_name(cert))}-{cert.fingerprint(hashes.SHA256()).hex()[:16]}.der"
        path = self.rejected_dir / name
        if path.exists():
            log.warning("OPC UA client certificate refused, waiting for approval: %s", path)
            return
        try:
            if sum(1 for _ in self.rejected_dir.iterdir()) >= MAX_REJECTED_FILES:
                log.warning("OPC UA client certificate refused; rejected/ is full, not kept subject=%s",
                            cert.subject.rfc4514_string())  # fmt: skip
                return
            temporary = path.with_suffix(".tmp")
            temporary.write_bytes(uacrypto.der_from_x509(cert))
            temporary.replace(path)
        except OSError as e:
            log.warning("OPC UA could not keep a refused certificate path=%s: %s", path, e)
            return
        log.warning("OPC UA client certificate refused and kept for approval: move %s to %s", path,
                    self.trusted_dir)  # fmt: skip


def _read_cert(path: str) -> x509.Certificate | None:
    try:
        data = Path(path).read_bytes()
        return x509.load_pem_x509_certificate(data) if b"-----BEGIN" in data else x509.load_der_x509_certificate(data)
    except (OSError, ValueError) as e:
        log.warning("OPC UA trusted certificate unreadable path=%s: %s", path, e)
        return None


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    if cert.issuer != ca.subject:
        return False
    try:
        cert.verify_directly_issued_by(ca)
        return True
    except Exception:  # noqa: BLE001 -- InvalidSignature, ValueError, TypeError: not issued by this one
        return False


def _common_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else "client"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:40] or "client"
