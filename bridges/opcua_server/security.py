"""The server's security: its certificate, the policies and identity tokens it offers, the checks on a session.

Who logs in is in users.py, which client certificates are trusted in trust.py; the rules are in the package's
docstring.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Any

from asyncua import Server, ua
from asyncua.common.utils import ServiceError
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from bridges.opcua_server.trust import TrustList
from bridges.opcua_server.users import Users
from gateway.settings import OpcuaServerSettings
from gateway.store import Store

log = logging.getLogger(__name__)

_S = ua.StatusCodes


class Security:
    """What a client must show: the server's certificate and policies, a trusted certificate, a known user."""

    def __init__(self, cfg: OpcuaServerSettings, store: Store, folder: Path, gateway_id: str) -> None:
        self.cfg = cfg
        self.folder = folder
        self.gateway_id = gateway_id
        self.application_uri = f"urn:evedge:{gateway_id}:server"
        self.users = Users(store, cfg.allow_anonymous)
        self.trust = TrustList(folder)

    async def apply(self, server: Server) -> None:
        """The certificate, the policies, the identity tokens and the client certificates' validator."""
        await self._load_certificate(server)
        server.set_security_policy(self._policies())
        tokens: list[type] = [ua.UserNameIdentityToken]
        if self.cfg.allow_anonymous:
            tokens.append(ua.AnonymousIdentityToken)
        server.set_identity_tokens(tokens)
        self.trust.prepare()
        server.set_certificate_validator(self.trust.validate)

    def _policies(self) -> list[ua.SecurityPolicyType]:
        policies = [ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt, ua.SecurityPolicyType.Basic256Sha256_Sign,
                    ua.SecurityPolicyType.Aes256Sha256RsaPss_SignAndEncrypt,
                    ua.SecurityPolicyType.Aes256Sha256RsaPss_Sign]  # fmt: skip
        return policies + ([ua.SecurityPolicyType.NoSecurity] if self.cfg.allow_none else [])

    async def _load_certificate(self, server: Server) -> None:
        cert, key = self.cfg.certificate, self.cfg.private_key
        if cert is None or key is None:
            key, cert = self.folder / "server-key.pem", self.folder / "server-cert.der"
            self.folder.mkdir(parents=True, exist_ok=True)
            before = cert.read_bytes() if cert.exists() else None
            # Made, or made again when missing, expired, or for another host name or gateway id.
            await setup_self_signed_certificate(
                key, cert, self.application_uri, socket.gethostname(), [ExtendedKeyUsageOID.SERVER_AUTH],
                {"commonName": f"evedge {self.gateway_id}", "organizationName": "evedge"},
            )  # fmt: skip
            os.chmod(key, 0o600)
            if before is None:
                log.info("OPC UA server certificate made: %s", cert)
            elif cert.read_bytes() != before:
                log.warning("OPC UA server certificate renewed (expired, or another host name): %s -- clients that "
                            "trusted the old one must trust this one", cert)  # fmt: skip
        await server.load_certificate(str(cert), _format(cert))
        await server.load_private_key(str(key), format=_format(key))
        await server.set_application_uri(self._uri_of(server.iserver.certificate))

    def _uri_of(self, cert: x509.Certificate) -> str:
        """The application URI must be the certificate's: a configured certificate says what it is."""
        try:
            names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            uris = names.get_values_for_type(x509.UniformResourceIdentifier)
        except x509.ExtensionNotFound:
            uris = []
        if self.application_uri in uris or not uris:
            return self.application_uri
        log.info("OPC UA application URI taken from the certificate uri=%s", uris[0])
        return uris[0]

    async def before_session(self) -> None:
        """At every CreateSession: the store's users and the technician's approvals, as they are now."""
        self.trust.reload()
        await self.users.refresh()

    def check_channel(self, peer_certificate: bytes | None, token: Any) -> None:
        """At ActivateSession: the secure channel's own certificate must be trusted; no channel security only when
        allowed (asyncua lets a client open one even when no None endpoint is offered), and no clear passwords."""
        if not peer_certificate:  # None or b'': a channel without security
            if not self.cfg.allow_none:
                log.warning("OPC UA session refused: no security on the channel (allow_none is off)")
                raise ServiceError(_S.BadSecurityModeRejected)
            if isinstance(token, ua.UserNameIdentityToken) and not token.EncryptionAlgorithm:
                log.warning("OPC UA session refused: a password in clear user=%s", token.UserName)
                raise ServiceError(_S.BadIdentityTokenRejected)
            return
        try:
            cert = x509.load_der_x509_certificate(_first_cert(peer_certificate))
        except ValueError:
            raise ServiceError(_S.BadCertificateInvalid) from None
        self.trust.check(cert)


def _format(path: Path) -> str:
    """PEM or DER by what the file holds, whatever its name ends with."""
    return "pem" if b"-----BEGIN" in path.read_bytes() else "der"


def _first_cert(der: bytes) -> bytes:
    """The leading certificate of a DER chain (a peer may send its chain)."""
    if len(der) > 4 and der[0] == 0x30 and der[1] == 0x82:
        return der[: int.from_bytes(der[2:4], "big") + 4]
    return der
