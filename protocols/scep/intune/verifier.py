"""The ``intune`` challenge verifier: Intune says whether a request is genuine.

For every PKCSReq and RenewalReq of a configuration with an ``intune`` table, the CSR
(which carries the Intune-issued challenge) goes to ``validateRequest``; only its
"Success" lets the gateway issue. Afterwards Intune hears the outcome:
``successNotification`` with the certificate, or ``failureNotification`` with an HRESULT.

Answers, and why:

- Intune says no (:class:`IntuneRefused`: expired, replayed, unknown challenge ...):
  FAILURE ``badRequest``, the code and activity id logged. A refusal is final.
- Intune cannot be asked (:class:`IntuneUnavailable`, :class:`IntuneAuthError`): the
  error propagates as the seam's "try again later", **HTTP 503 with Retry-After**, not a
  CertRep (RFC 8894 has no transient failInfo and every client treats FAILURE as final:
  see DIVERGENCES.md "Store unavailable"); nothing is issued, one WARNING line.
- Issuance failing after validation: ``failureNotification`` with HRESULT
  :data:`E_FAIL` (0x80004005) and the gateway's reason as description; the library
  leaves the HRESULT to the CA, and E_FAIL is what Microsoft's own NDES connector reports
  for a CA-side failure it cannot name more precisely.
- A request held for approval: no notification (``successNotification`` needs the
  certificate, which CertPoll hands out later); logged.

A notification that cannot be delivered never undoes an issued certificate: it is
logged and audited (``intune_notification`` failure) and the device keeps its
certificate.

The grant's entity attributes name the device and user as the Intune profile put them
into the CSR: ``intune_device`` (the CN, the profile's ``{{DeviceId}}`` or
``{{AAD_Device_ID}}``), ``intune_user`` (the UPN otherName or e-mail SAN) and the
activity id of the validation.
"""

from __future__ import annotations

import logging
from typing import Any

from asn1crypto.core import UTF8String
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway.door import Door
from gateway.errors import ConfigError

from ..challenge import ChallengeGrant, ChallengeRequest, IssuedInfo
from ..settings import ScepSettings
from ..types import FailInfo, ScepFailure
from .client import IntuneAuthError, IntuneClient, IntuneRefused, IntuneUnavailable
from .clients import IntuneClients
from .settings import VERIFIER

log = logging.getLogger("gateway.scep.intune")

E_FAIL = 0x80004005
"""HRESULT of every failure notification (unspecified failure)."""
UPN_OID = x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.3")


def device_attributes(csr: x509.CertificateSigningRequest) -> dict[str, Any]:
    """Device (CN) and user (UPN, else e-mail) as the Intune profile wrote them."""
    out: dict[str, Any] = {}
    cns = csr.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    if cns and isinstance(cns[0].value, str):
        out["intune_device"] = cns[0].value
    try:
        sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return out
    for other in sans.get_values_for_type(x509.OtherName):
        if other.type_id == UPN_OID:
            try:
                out["intune_user"] = str(UTF8String.load(other.value).native)
                return out
            except (ValueError, TypeError):
                continue
    emails = sans.get_values_for_type(x509.RFC822Name)
    if emails:
        out["intune_user"] = emails[0]
    return out


class IntuneChallengeVerifier:
    """One per SCEP service; the clients (one per configuration) are its own."""

    name = VERIFIER

    def __init__(self, door: Door, clients: IntuneClients) -> None:
        self._door = door
        self._clients = clients

    async def _client_of(self, request: ChallengeRequest) -> IntuneClient:
        settings = ScepSettings.of(request.config).intune
        if settings is None:  # challenge_verifiers names intune only with a table (settings.py)
            raise ConfigError(f"SCEP configuration {request.config.id!r} has no settings.intune")
        return await self._clients.client(request.config.id, settings)

    async def verify(self, request: ChallengeRequest) -> ChallengeGrant | None:
        if not request.challenge:
            return None
        client = await self._client_of(request)
        csr_der = request.csr.public_bytes(serialization.Encoding.DER)
        try:
            activity = await client.validate(request.transaction_id, csr_der)
        except IntuneRefused as exc:
            log.info("intune refused tid=%s config=%s: code=%s activity=%s", request.transaction_id,
                     request.config.id, exc.code, exc.activity_id)
            raise ScepFailure(FailInfo.BAD_REQUEST, f"Intune refused the request ({exc.code}, activity "
                              f"{exc.activity_id})") from None
        except (IntuneUnavailable, IntuneAuthError) as exc:
            log.warning("intune: cannot validate tid=%s config=%s: %s; answering 503 (try later), nothing issued",
                        request.transaction_id, request.config.id, exc.detail)
            raise
        return ChallengeGrant(self.name, {**device_attributes(request.csr), "intune_activity_id": activity})

    async def notify_success(self, request: ChallengeRequest, grant: ChallengeGrant, issued: IssuedInfo | None) -> None:
        if issued is None:
            log.info("intune: tid=%s held for approval; no success notification", request.transaction_id)
            return
        cert = issued.certificate
        if cert is None:
            rec = await self._door.find_certificate(issued.serial_hex)
            if rec is None:
                return
            cert = x509.load_der_x509_certificate(rec.der)
        await self._notify(request, "success", lambda client, csr: client.notify_success(
            request.transaction_id, csr, cert, request.config.ca_id), serial=issued.serial_hex)

    async def notify_failure(self, request: ChallengeRequest, grant: ChallengeGrant, reason: str) -> None:
        await self._notify(request, "failure", lambda client, csr: client.notify_failure(
            request.transaction_id, csr, E_FAIL, reason[:1000]), hresult=f"0x{E_FAIL:08X}")

    async def _notify(self, request: ChallengeRequest, kind: str, call: Any, **fields: Any) -> None:
        csr_der = request.csr.public_bytes(serialization.Encoding.DER)
        try:
            client = await self._client_of(request)
            activity = await call(client, csr_der)
        except (IntuneRefused, IntuneUnavailable, IntuneAuthError, ConfigError) as exc:
            log.warning("intune: %s notification for tid=%s config=%s not delivered: %s", kind,
                        request.transaction_id, request.config.id, exc.detail)
            await self._door.record_event("intune_notification", "failure", protocol_config=request.config.id,
                                          transaction_id=request.transaction_id, notification=kind,
                                          detail=exc.detail, **fields)
            return
        await self._door.record_event("intune_notification", "success", protocol_config=request.config.id,
                                      transaction_id=request.transaction_id, notification=kind,
                                      activity_id=activity, **fields)
