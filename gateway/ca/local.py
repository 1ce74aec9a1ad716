"""The local CA backend: keys held by the gateway (encrypted at rest), signing in process.

Issuance order matters: build and sign with a fresh random serial, then insert the
record; only a committed record is returned. A serial collision (astronomically
unlikely, but enforced by a UNIQUE constraint) re-signs with a new serial, so no
serial is ever reused and no half record is left if the process dies in between.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import uuid
from dataclasses import dataclass
from typing import Awaitable, Callable, Mapping

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs12

from .. import keys
from ..metrics import CERTIFICATES_ISSUED
from ..errors import BadRequest, Conflict, NotFound, PolicyViolation, Unavailable
from ..profiles.model import Profile
from ..status.crl import RevokedEntry, build_crl
from ..store import SerialCollision, Store
from ..store.store import Tx
from ..store.records import CARecord, CertificateRecord, RequestRecord, serial_hex, serial_int, utcnow
from .backend import (
    CABackend,
    CertificateStatus,
    CertState,
    GeneratedKeyCertificate,
    IssuedCertificate,
    IssueOverrides,
    IssueRequest,
    KeygenRequest,
    PendingRequest,
    RevocationReason,
)
from .builder import IssuerContext, build_certificate, check_proof_of_possession, load_csr
from .overrides import describe_name, overrides_from_json, overrides_to_json
from .pem import cert_to_pem, load_certificate, load_certificates
from .serials import new_serial

log = logging.getLogger(__name__)

MAX_SERIAL_ATTEMPTS = 5

# Work that must commit in the certificate's own transaction (audit event, protocol state).
InTransaction = Callable[[Tx, x509.Certificate], Awaitable[None]]


@dataclass(frozen=True)
class LocalCASettings:
    """What a local CA needs from configuration (kept narrow so tests build it directly)."""

    passphrase: bytes
    crl_validity: dt.timedelta
    crl_overlap: dt.timedelta
    crl_url: Callable[[str], str | None]
    ocsp_url: Callable[[str], str | None]
    ca_issuers_url: Callable[[str], str | None]


def describe_names(cert: x509.Certificate) -> list[str]:
    """SANs as ``TYPE:value`` strings for listing and filtering."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [describe_name(name) for name in san]


def certificate_record(
    cert: x509.Certificate,
    *,
    ca_id: str,
    profile: str,
    entity_id: str | None,
    protocol_config: str | None,
    request_id: str | None,
) -> CertificateRecord:
    der = cert.public_bytes(serialization.Encoding.DER)
    return CertificateRecord(
        serial=serial_hex(cert.serial_number),
        ca_id=ca_id,
        profile=profile,
        subject=cert.subject.rfc4514_string(),
        sans=describe_names(cert),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        der=der,
        fingerprint_sha256=hashlib.sha256(der).hexdigest(),
        key_algorithm=keys.describe_public_key(cert.public_key()).name,  # type: ignore[arg-type]
        entity_id=entity_id,
        protocol_config=protocol_config,
        request_id=request_id,
    )


def status_from_record(rec: CertificateRecord) -> CertificateStatus:
    return CertificateStatus(
        serial=serial_int(rec.serial),
        ca_id=rec.ca_id,
        state=CertState(rec.status),
        not_after=rec.not_after,
        revoked_at=rec.revoked_at,
        reason=RevocationReason(rec.revocation_reason) if rec.revocation_reason is not None else None,
        invalidity_date=rec.invalidity_date,
    )


class LocalCA(CABackend):
    """An issuing CA whose key the gateway holds."""

    def __init__(
        self,
        record: CARecord,
        store: Store,
        profiles: Mapping[str, Profile],
        settings: LocalCASettings,
    ) -> None:
        if record.certificate_pem is None or record.key_pem_encrypted is None:
            raise Unavailable(f"CA {record.id} cannot issue: no certificate or key yet")
        self.id = record.id
        self.record = record
        self._store = store
        self._profiles = profiles
        self._settings = settings
        self.certificate = load_certificate(record.certificate_pem)
        self._key: CertificateIssuerPrivateKeyTypes = keys.decrypt_private_key(
            record.key_pem_encrypted.encode(), settings.passphrase
        )
        self._issuers = tuple(load_certificates(record.chain_pem))
        self._crl_lock = asyncio.Lock()

    # --- helpers ------------------------------------------------------------
    @property
    def private_key(self) -> CertificateIssuerPrivateKeyTypes:
        """For the status services (CRL/OCSP signer issuance) inside the core only."""
        return self._key

    @property
    def _slow_signer(self) -> bool:
        """Whether one signature with this CA's key costs enough to leave the event loop
        for: RSA (about 0.7 ms at 2048 bits) and EC beyond P-256; P-256 and EdDSA
        sign in tens of microseconds, less than a thread hand-off."""
        key = self._key
        if isinstance(key, ec.EllipticCurvePrivateKey):
            return key.curve.name != "secp256r1"
        return isinstance(key, rsa.RSAPrivateKey)

    def issuer_context(self) -> IssuerContext:
        return IssuerContext(
            ca_id=self.id,
            certificate=self.certificate,
            private_key=self._key,
            crl_url=self._settings.crl_url(self.id),
            ocsp_url=self._settings.ocsp_url(self.id),
            ca_issuers_url=self._settings.ca_issuers_url(self.id),
        )

    def profile(self, name: str) -> Profile:
        try:
            return self._profiles[name]
        except KeyError:
            raise NotFound(f"unknown certificate profile {name!r}") from None

    def _build(
        self, profile: Profile, public_key: object, csr: x509.CertificateSigningRequest | None,
        overrides: IssueOverrides, serial: int,
    ) -> x509.Certificate:
        return build_certificate(
            profile=profile,
            issuer=self.issuer_context(),
            serial=serial,
            public_key=public_key,
            csr=csr,
            overrides=overrides,
        )

    async def _sign_and_commit(
        self,
        profile: Profile,
        public_key: object,
        csr: x509.CertificateSigningRequest | None,
        overrides: IssueOverrides,
        *,
        entity_id: str | None,
        protocol_config: str | None,
        request_id: str | None,
        approve_request: str | None = None,
        within: InTransaction | None = None,
    ) -> IssuedCertificate:
        for _ in range(MAX_SERIAL_ATTEMPTS):
            if self._slow_signer:  # OpenSSL releases the GIL: the signature runs on another core
                cert = await asyncio.to_thread(self._build, profile, public_key, csr, overrides, new_serial())
            else:
                cert = self._build(profile, public_key, csr, overrides, new_serial())
            rec = certificate_record(
                cert, ca_id=self.id, profile=profile.name, entity_id=entity_id,
                protocol_config=protocol_config, request_id=request_id,
            )
            try:
                async with self._store.transaction() as tx:
                    await tx.insert_certificate(rec)
                    if approve_request is not None:
                        ok = await tx.update_request(
                            approve_request, expect="approved", status="issued", serial=rec.serial
                        )
                        if not ok:
                            raise Conflict(f"request {approve_request} is no longer approved")
                    if within is not None:
                        await within(tx, cert)
            except SerialCollision:
                log.warning("serial collision on CA %s; re-signing with a new serial", self.id)
                continue
            CERTIFICATES_ISSUED.labels(ca=self.id).inc()
            log.info("issued serial=%s ca=%s profile=%s", rec.serial, self.id, profile.name)
            return IssuedCertificate(self.id, cert.serial_number, cert, await self.chain())
        raise Unavailable("could not allocate a unique serial number")

    # --- CABackend ----------------------------------------------------------
    async def issue(self, request: IssueRequest, *, within: InTransaction | None = None) -> IssuedCertificate:
        """``within`` runs inside the transaction that stores the certificate (its
        audit event, the protocol's own state), so they commit together or not at all."""
        profile = self.profile(request.profile)
        check_proof_of_possession(request.csr)
        return await self._sign_and_commit(
            profile, request.csr.public_key(), request.csr, request.overrides,
            entity_id=request.entity_id, protocol_config=request.protocol_config,
            request_id=request.request_id, within=within,
        )

    async def sign_public_key(
        self, profile: str, public_key: object, overrides: IssueOverrides,
        *, entity_id: str | None = None, protocol_config: str | None = None,
    ) -> IssuedCertificate:
        """Issue for a key the gateway itself generated (subordinate CAs, server keygen)."""
        return await self._sign_and_commit(
            self.profile(profile), public_key, None, overrides,
            entity_id=entity_id, protocol_config=protocol_config, request_id=None,
        )

    async def generate_and_issue(self, request: KeygenRequest) -> GeneratedKeyCertificate:
        profile = self.profile(request.profile)
        desc = keys.parse_algorithm(request.key_algorithm)
        if desc.name not in profile.key_policy.allowed:
            raise PolicyViolation(f"key algorithm {desc.name} is not allowed by profile {profile.name}")
        key = keys.generate_private_key(desc)
        base = request.overrides
        overrides = IssueOverrides(
            subject=request.subject,
            sans=request.sans or base.sans,
            not_before=base.not_before,
            not_after=base.not_after,
            validity=base.validity,
            extensions=base.extensions,
            variables=base.variables,
        )
        issued = await self.sign_public_key(
            profile.name, key.public_key(), overrides,
            entity_id=request.entity_id, protocol_config=request.protocol_config,
        )
        p12 = None
        if request.pkcs12_password:
            encryption = (
                serialization.PrivateFormat.PKCS12.encryption_builder()
                .kdf_rounds(100_000)
                .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
                .hmac_hash(keys.hashes.SHA256())
                .build(request.pkcs12_password)
            )
            p12 = pkcs12.serialize_key_and_certificates(
                name=None, key=key, cert=issued.certificate,  # type: ignore[arg-type]
                cas=list(issued.chain), encryption_algorithm=encryption,
            )
        return GeneratedKeyCertificate(issued=issued, private_key=key, pkcs12=p12)

    async def submit_pending(self, request: IssueRequest) -> PendingRequest:
        profile = self.profile(request.profile)
        check_proof_of_possession(request.csr)
        # Dry run: policy errors surface now, not when an operator approves.
        self._build(profile, request.csr.public_key(), request.csr, request.overrides, new_serial())
        rec = RequestRecord(
            id=request.request_id or uuid.uuid4().hex,
            ca_id=self.id,
            profile=profile.name,
            csr_pem=request.csr.public_bytes(serialization.Encoding.PEM).decode(),
            overrides=overrides_to_json(request.overrides),
            entity_id=request.entity_id,
            protocol_config=request.protocol_config,
        )
        await self._store.insert_request(rec)
        return PendingRequest(rec.id, self.id, "pending")

    async def _request(self, request_id: str) -> RequestRecord:
        rec = await self._store.get_request(request_id)
        if rec is None or rec.ca_id != self.id:
            raise NotFound(f"no pending request {request_id}")
        return rec

    async def pending_status(self, request_id: str) -> PendingRequest:
        rec = await self._request(request_id)
        return PendingRequest(
            rec.id, rec.ca_id, rec.status,
            serial=serial_int(rec.serial) if rec.serial else None, reason=rec.reason,
        )

    async def approve(self, request_id: str, operator: str) -> IssuedCertificate:
        rec = await self._request(request_id)
        if not await self._store.update_request(
            request_id, expect="pending", status="approved", decided_by=operator, decided_at=utcnow()
        ):
            raise Conflict(f"request {request_id} is {rec.status}, not pending")
        csr = load_csr(rec.csr_pem.encode())
        try:
            return await self._sign_and_commit(
                self.profile(rec.profile), csr.public_key(), csr, overrides_from_json(rec.overrides),
                entity_id=rec.entity_id, protocol_config=rec.protocol_config,
                request_id=rec.id, approve_request=rec.id,
            )
        except Exception:
            # Signing failed (e.g. the CA expired meanwhile): hand the request back to the queue.
            await self._store.update_request(request_id, expect="approved", status="pending")
            raise

    async def reject(self, request_id: str, operator: str, reason: str) -> PendingRequest:
        rec = await self._request(request_id)
        if not await self._store.update_request(
            request_id, expect="pending", status="rejected", decided_by=operator,
            decided_at=utcnow(), reason=reason,
        ):
            raise Conflict(f"request {request_id} is {rec.status}, not pending")
        return PendingRequest(rec.id, self.id, "rejected", reason=reason)

    async def _certificate(self, serial: int) -> CertificateRecord:
        rec = await self._store.get_certificate(serial_hex(serial))
        if rec is None or rec.ca_id != self.id:
            raise NotFound(f"no certificate with serial {serial_hex(serial)} from CA {self.id}")
        return rec

    async def _transition(
        self, serial: int, *, expect: set[str], status: str, reason: RevocationReason | None,
        invalidity_date: dt.datetime | None, verb: str,
    ) -> CertificateStatus:
        rec = await self._certificate(serial)
        updated = await self._store.update_certificate_status(
            rec.serial, expect=expect, status=status,
            reason=int(reason) if reason is not None else None,
            revoked_at=utcnow() if status != "valid" else None,
            invalidity_date=invalidity_date,
        )
        if updated is None:
            raise Conflict(f"certificate {rec.serial} is {rec.status}; cannot {verb}")
        await self.crl(force=True)  # CRLs are regenerated on every status change
        return status_from_record(updated)

    async def revoke(
        self, serial: int, reason: RevocationReason, invalidity_date: dt.datetime | None = None
    ) -> CertificateStatus:
        if reason == RevocationReason.certificate_hold:
            return await self.suspend(serial)
        if reason == RevocationReason.remove_from_crl:
            raise BadRequest("removeFromCRL is not a revocation reason; unsuspend instead")
        if invalidity_date is not None and invalidity_date > utcnow() + dt.timedelta(minutes=5):
            raise BadRequest("invalidity date lies in the future")
        return await self._transition(
            serial, expect={"valid", "hold"}, status="revoked", reason=reason,
            invalidity_date=invalidity_date, verb="revoke",
        )

    async def suspend(self, serial: int) -> CertificateStatus:
        return await self._transition(
            serial, expect={"valid"}, status="hold", reason=RevocationReason.certificate_hold,
            invalidity_date=None, verb="suspend",
        )

    async def unsuspend(self, serial: int) -> CertificateStatus:
        return await self._transition(
            serial, expect={"hold"}, status="valid", reason=None, invalidity_date=None, verb="unsuspend",
        )

    async def status(self, serial: int) -> CertificateStatus:
        return status_from_record(await self._certificate(serial))

    async def chain(self) -> tuple[x509.Certificate, ...]:
        return (self.certificate, *self._issuers)

    # --- CRL -------------------------------------------------------------------
    def crl_due(self, record: CARecord, now: dt.datetime) -> bool:
        if record.crl_der is None or record.crl_next_update is None:
            return True
        return record.crl_next_update - now <= self._settings.crl_overlap

    async def crl(self, force: bool = False) -> bytes:
        async with self._crl_lock:
            record = await self._store.get_ca(self.id)
            if record is None:
                raise NotFound(f"unknown CA {self.id}")
            now = utcnow()
            if not force and not self.crl_due(record, now) and record.crl_der is not None:
                return record.crl_der
            entries = [
                RevokedEntry(
                    serial=serial_int(r.serial),
                    revoked_at=r.revoked_at or now,
                    reason=RevocationReason(r.revocation_reason or 0),
                    invalidity_date=r.invalidity_date,
                )
                for r in await self._store.revoked_certificates(self.id, include_expired=True)
            ]
            number = await self._store.next_crl_number(self.id)
            next_update = min(now + self._settings.crl_validity, self.certificate.not_valid_after_utc)
            der = build_crl(
                issuer_cert=self.certificate,
                issuer_key=self._key,
                entries=entries,
                crl_number=number,
                this_update=now,
                next_update=next_update,
                # Expired certificates are never dropped from this CA's CRL.
                expired_certs_on_crl=self.certificate.not_valid_before_utc,
            )
            await self._store.update_ca(
                self.id, crl_der=der, crl_this_update=now, crl_next_update=next_update
            )
            log.info("CRL %d issued for CA %s with %d entries", number, self.id, len(entries))
            return der
