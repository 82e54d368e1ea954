"""Certificates: SignCertificate answered and signed by the site CA (CertificateSigned sent back), the
ISO 15118 certificate messages of 2.0.1 refused clearly while no upstream CSMS serves them.

A CSR is accepted when it parses, its signature holds and its subject CN is the charger's id; the answer goes
first, then the site CA signs it (in a thread) and CertificateSigned goes through the charger's request queue,
after the answer (an ``@after`` handler starts it). Every CSR is written down as a charger event, and so is the
certificate sent back with the charger's answer to it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ocpp.routing import after, on
from ocpp.v16 import call_result as result16
from ocpp.v16.enums import Action as Action16
from ocpp.v201 import call_result as result201
from ocpp.v201.enums import Action as Action201

from drivers.ocpp.session import Session
from drivers.ocpp.tls import CsrRefused
from gateway.commands import CommandError

log = logging.getLogger(__name__)

NO_UPSTREAM = "NoUpstreamCSMS"  # reasonCode (20 characters at most) of what only an upstream CSMS could answer
NO_UPSTREAM_INFO = ("ISO 15118 certificates come from the V2G PKI through an upstream CSMS; this site's gateway "
                    "has none configured")  # fmt: skip
STATION = "ChargingStationCertificate"


class _Signing(Session):
    """What both versions do with a CSR."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._approved: set[str] = set()  # CSRs accepted, waiting for their answer to be sent
        self._signing: set[asyncio.Task[None]] = set()

    async def review(self, csr: str, certificate_type: str | None = None, refusal: str | None = None) -> str | None:
        """None when the site CA signs this CSR (after the answer), else why not (``refusal``, when the type
        already says); written down either way."""
        pki = self.links.pki
        reason = refusal
        if reason is None and pki is None:
            reason = "the gateway has no site CA: its TLS listener (ocpp.tls_listen) is off"
        elif reason is None:
            try:
                await pki.check(csr, self.id)
            except CsrRefused as e:
                reason = str(e)
        event: dict[str, Any] = {"status": "Rejected" if reason else "Accepted"}
        if certificate_type:
            event["certificateType"] = certificate_type
        if reason:
            event["reason"] = reason
            self.warn("SignCertificate rejected: %s", reason)
        else:
            self._approved.add(csr)
        await self.recorder.event(self.id, "SignCertificate", event)
        return reason

    def sign_after_answer(self, csr: str, certificate_type: str | None) -> None:
        if csr not in self._approved:
            return
        self._approved.discard(csr)
        task = asyncio.create_task(self._send_signed(csr, certificate_type), name=f"ocpp-sign-{self.id}")
        self._signing.add(task)
        task.add_done_callback(self._signing.discard)

    async def _send_signed(self, csr: str, certificate_type: str | None) -> None:
        try:
            chain = await self.links.pki.sign(csr, self.id)
        except Exception:  # it passed the same checks a moment ago: a surprise, never a crashed task
            log.exception("could not sign an accepted CSR charger=%s", self.id)
            return
        payload: dict[str, Any] = {"certificateChain": chain}
        if certificate_type:
            payload["certificateType"] = certificate_type
        try:
            answer = await self.request("CertificateSigned", payload)
        except CommandError as e:
            answer = {"status": "Failed", "error": e.code}
            self.warn("CertificateSigned not delivered: %s", e)
        status = answer.get("status")
        if status != "Accepted":
            self.warn("CertificateSigned answered %r: the charger keeps its old certificate", status)
        await self.recorder.event(self.id, "CertificateSigned", {"status": status, **(
            {"certificateType": certificate_type} if certificate_type else {})})  # fmt: skip


class Certificates16(_Signing):
    """OCPP 1.6J (security extension)."""

    @on(Action16.sign_certificate)
    async def on_sign_certificate(self, csr: str, **_: Any) -> result16.SignCertificate:
        reason = await self.review(csr)
        return result16.SignCertificate(status="Rejected" if reason else "Accepted")

    @after(Action16.sign_certificate)
    def after_sign_certificate(self, csr: str, **_: Any) -> None:
        self.sign_after_answer(csr, None)


class Certificates201(_Signing):
    """OCPP 2.0.1."""

    @on(Action201.sign_certificate)
    async def on_sign_certificate(self, csr: str, certificate_type: str | None = None,
                                  **_: Any) -> result201.SignCertificate:  # fmt: skip
        if certificate_type == "V2GCertificate":
            await self.review(csr, certificate_type, refusal=NO_UPSTREAM_INFO)
            return result201.SignCertificate(status="Rejected", status_info=_no_upstream())
        reason = await self.review(csr, certificate_type)
        if reason is None:
            return result201.SignCertificate(status="Accepted")
        return result201.SignCertificate(status="Rejected", status_info={
            "reasonCode": "InvalidCSR", "additionalInfo": f"CSR refused: {reason}"[:512]})  # fmt: skip

    @after(Action201.sign_certificate)
    def after_sign_certificate(self, csr: str, certificate_type: str | None = None, **_: Any) -> None:
        self.sign_after_answer(csr, certificate_type)

    @on(Action201.get_15118_ev_certificate)
    def on_get_15118_ev_certificate(self, **_: Any) -> result201.Get15118EVCertificate:
        self.warn("Get15118EVCertificate answered Failed: no upstream CSMS")
        return result201.Get15118EVCertificate(status="Failed", exi_response="", status_info=_no_upstream())

    @on(Action201.get_certificate_status)
    def on_get_certificate_status(self, **_: Any) -> result201.GetCertificateStatus:
        self.warn("GetCertificateStatus answered Failed: no upstream CSMS")
        return result201.GetCertificateStatus(status="Failed", status_info=_no_upstream(
            "The OCSP status of V2G certificates comes through an upstream CSMS; this site's gateway has none "
            "configured"))  # fmt: skip


def _no_upstream(info: str = NO_UPSTREAM_INFO) -> dict[str, str]:
    """The statusInfo of what only an upstream CSMS could answer."""
    return {"reasonCode": NO_UPSTREAM, "additionalInfo": info}
