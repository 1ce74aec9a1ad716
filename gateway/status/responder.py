"""The OCSP responder service: look up each asked certificate and sign one answer.

Responses are signed by the CA's delegated OCSP signing certificate (issued and
rotated by :meth:`CAHierarchy.ensure_ocsp_signer`), which is included in the
response so clients can verify it against the CA; or, for a CA whose key is in a token
(:mod:`gateway.ca.pkcs11`), by the CA key itself, the response then carrying no
certificate (RFC 6960 4.2.2.2: the CA's own signature needs none).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

from cryptography import x509

from ..ca.backend import RevocationReason
from ..ca.backend import CABackend
from ..ca.registry import CARegistry
from ..ca.signer import IssuerKey, TokenKey
from ..errors import BadRequest, GatewayError
from ..metrics import count_ocsp
from ..store import Store
from ..store.queries import CertificateQueries
from ..clock import Clock, system_clock
from ..store.records import serial_hex
from .ocsp import (
    ResponderIdentity,
    SingleStatus,
    build_response,
    error_response,
    matches_issuer,
    parse_request,
)

log = logging.getLogger(__name__)


class OCSPResponder:
    def __init__(
        self, store: Store, cas: CARegistry, response_validity: dt.timedelta,
        signer_validity: dt.timedelta, clock: Clock = system_clock,
    ) -> None:
        self._clock = clock
        self._store = store
        self._cas = cas
        self._response_validity = response_validity
        self._signer_validity = signer_validity
        self._signers: dict[str, tuple[x509.Certificate, IssuerKey]] = {}
        self._lock = asyncio.Lock()

    async def signer(self, ca: CABackend) -> ResponderIdentity:
        cached = self._signers.get(ca.id)
        if cached is None or cached[0].not_valid_after_utc - self._clock() < self._signer_validity / 4:
            async with self._lock:
                cached = await ca.ocsp_signer(self._signer_validity)
                self._signers[ca.id] = cached
        cert, key = cached
        by_ca = cert == (await ca.chain())[0]  # the CA signs its own responses: no certificate to add
        return ResponderIdentity(certificate=cert, private_key=key, extra_certs=() if by_ca else (cert,))

    async def respond(self, ca_id: str, request_der: bytes) -> bytes:
        """DER OCSPResponse for a DER OCSPRequest; failures become OCSP error statuses.
        Counted in ``gateway_ocsp_responses_total`` (the CA label only for a known CA)."""
        try:
            request = parse_request(request_der)
        except BadRequest:
            return self._refused(ca_id, "malformed_request")
        if request.signed and not request.signature_valid:
            return self._refused(ca_id, "unauthorized")
        try:
            ca = await self._cas.backend(ca_id)
            if not ca.capabilities.ocsp:  # the CA answers OCSP elsewhere (or not at all)
                return self._refused(ca_id, "unauthorized")
            identity = await self.signer(ca)
            issuer = (await ca.chain())[0]
        except GatewayError:
            return self._refused(ca_id, "unauthorized")
        now = self._clock().replace(microsecond=0)
        statuses = []
        async with self._store.read() as q:  # one connection for every certificate asked about
            for cert_id in request.cert_ids:
                statuses.append(await self._status(q.certificates, ca.id, issuer, cert_id, now))
        if isinstance(identity.private_key, TokenKey):  # the token is a device: off the event loop
            try:
                der = await asyncio.to_thread(build_response, responder=identity, statuses=statuses,
                                              nonce=request.nonce, produced_at=now)
            except GatewayError as exc:  # the token refused or is gone: try again later
                log.warning("OCSP for CA %s: %s", ca.id, exc.detail)
                return self._refused(ca_id, "try_later")
        else:
            der = build_response(responder=identity, statuses=statuses, nonce=request.nonce, produced_at=now)
        for single in statuses:
            count_ocsp(ca.id, single.status)
        return der

    def _refused(self, ca_id: str, status: str) -> bytes:
        """An unsuccessful response, counted (under the CA only if there is one of that id)."""
        count_ocsp(ca_id if any(r.id == ca_id for r in self._cas.records()) else None, status)
        return error_response(status)

    async def _status(self, certificates: CertificateQueries, ca_id: str, issuer: x509.Certificate,  # type: ignore[no-untyped-def]
                      cert_id, now: dt.datetime) -> SingleStatus:
        next_update = now + self._response_validity
        if not matches_issuer(cert_id, issuer):
            return SingleStatus(cert_id, "unknown", None, None, now, next_update)
        rec = await certificates.get(serial_hex(cert_id.serial))
        if rec is None or rec.ca_id != ca_id:
            return SingleStatus(cert_id, "unknown", None, None, now, next_update)
        if rec.status in ("revoked", "hold"):
            reason = RevocationReason(rec.revocation_reason or 0)
            return SingleStatus(cert_id, "revoked", rec.revoked_at or now, reason, now, next_update)
        return SingleStatus(cert_id, "good", None, None, now, next_update)
