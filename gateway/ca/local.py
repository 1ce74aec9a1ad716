"""The local CA backend: a key the gateway holds (encrypted at rest), signing in process.

It only signs: certificates (each with a fresh random serial; the Authority stores
the record and asks again on the rare serial collision), CRLs over the entries the
core gathers, and its delegated OCSP signer. Nothing here writes issuance records.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from .. import keys
from ..errors import Unavailable
from ..status.crl import build_crl
from ..store.records import CARecord, CertificateRecord, serial_hex, serial_int
from .backend import (
    CABackend,
    Capabilities,
    CertificateStatus,
    CertState,
    RevocationReason,
    RevokedEntry,
    Signed,
    SignRequest,
    SignResult,
)
from .builder import IssuerContext, build_certificate
from .overrides import describe_name
from .pem import load_certificate, load_certificates
from .serials import new_serial
from .signer import IssuerKey, TokenKey

if TYPE_CHECKING:
    from .hierarchy import CAHierarchy

log = logging.getLogger(__name__)


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
        key_algorithm=keys.describe_public_key(cert.public_key()).name,
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

    kind = "local"
    capabilities = Capabilities(crl=True, ocsp=True, hold=True)

    def __init__(self, record: CARecord, settings: LocalCASettings,
                 hierarchy: "CAHierarchy | None" = None) -> None:
        if record.certificate_pem is None:
            raise Unavailable(f"CA {record.id} cannot issue: no certificate or key yet")
        self.id = record.id
        self.record = record
        self._settings = settings
        self._hierarchy = hierarchy
        self.certificate = load_certificate(record.certificate_pem)
        self._key: IssuerKey = self._load_key(record, settings)
        self._issuers = tuple(load_certificates(record.chain_pem))

    def _load_key(self, record: CARecord, settings: LocalCASettings) -> IssuerKey:
        """The CA key, decrypted with the gateway's passphrase (a token-backed kind overrides this)."""
        if record.key_pem_encrypted is None:
            raise Unavailable(f"CA {record.id} cannot issue: no key")
        return keys.decrypt_private_key(record.key_pem_encrypted.encode(), settings.passphrase)

    # --- helpers ------------------------------------------------------------
    @property
    def private_key(self) -> IssuerKey:
        """For the CA tooling (sub-CA and OCSP signer issuance) inside the core only."""
        return self._key

    @property
    def _slow_signer(self) -> bool:
        """Whether one signature with this CA's key costs enough to leave the event loop
        for: RSA (about 0.7 ms at 2048 bits) and EC beyond P-256; P-256 and EdDSA
        sign in tens of microseconds, less than a thread hand-off. A token key always leaves
        the loop: the token is a device (or a library) that may take milliseconds."""
        key = self._key
        if isinstance(key, TokenKey):
            return True
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

    def _build(self, request: SignRequest, serial: int) -> x509.Certificate:
        return build_certificate(
            profile=request.profile,
            issuer=self.issuer_context(),
            serial=serial,
            public_key=request.public_key,
            csr=request.csr,
            overrides=request.overrides,
        )

    # --- CABackend ----------------------------------------------------------
    async def sign(self, request: SignRequest) -> SignResult:
        if self._slow_signer:  # OpenSSL releases the GIL: the signature runs on another core
            cert = await asyncio.to_thread(self._build, request, new_serial())
        else:
            cert = self._build(request, new_serial())
        return Signed(cert)

    async def check(self, request: SignRequest) -> None:
        """A dry run: policy errors surface when a request is held, not when approved."""
        if self._slow_signer:
            await asyncio.to_thread(self._build, request, new_serial())
        else:
            self._build(request, new_serial())

    async def revoke(self, serial: int, reason: RevocationReason,
                     invalidity_date: dt.datetime | None = None) -> None:
        """Nothing to tell: this CA publishes what the core's records say (CRL, OCSP)."""

    async def release_hold(self, serial: int) -> None:
        """As :meth:`revoke`: the next CRL leaves the certificate out."""

    async def chain(self) -> tuple[x509.Certificate, ...]:
        return (self.certificate, *self._issuers)

    async def sign_crl(self, entries: list[RevokedEntry], number: int,
                       this_update: dt.datetime, next_update: dt.datetime) -> bytes:
        def build() -> bytes:
            return build_crl(
                issuer_cert=self.certificate,
                issuer_key=self._key,
                entries=entries,
                crl_number=number,
                this_update=this_update,
                next_update=next_update,
                # Expired certificates are never dropped from this CA's CRL.
                expired_certs_on_crl=self.certificate.not_valid_before_utc,
            )

        return await asyncio.to_thread(build) if self._slow_signer else build()

    async def ocsp_signer(self, validity: dt.timedelta) -> tuple[x509.Certificate, IssuerKey]:
        if self._hierarchy is None:
            raise Unavailable(f"CA {self.id} has no OCSP signer")
        return await self._hierarchy.ensure_ocsp_signer(self, validity)
