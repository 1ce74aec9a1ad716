"""CA lifecycle: roots, issuing CAs under them, externally signed CAs, imported roots.

Every CA key is generated here and stored only encrypted (PKCS#8, passphrase from
config or environment), or generated on a PKCS#11 token and kept there
(:mod:`gateway.ca.pkcs11`). An externally signed CA starts as ``awaiting_certificate``
with an exported CSR; it becomes ``active`` once its signed certificate is imported
and checked against the key it was made for and the chain given with it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from typing import TYPE_CHECKING, Any, Callable, Mapping

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID

from .. import keys
from ..errors import BadRequest, Conflict, NotFound, PolicyViolation, Unavailable
from ..profiles.model import Profile
from ..status.ocsp import build_ocsp_signing_certificate
from ..store import SerialCollision, Store
from ..events import log_committed
from ..store.records import CARecord, EventRecord, serial_hex, utcnow
from .backend import IssueOverrides, Signed, SignRequest
from .builder import rfc7093_key_identifier
from .local import LocalCA, certificate_record
from .pem import cert_to_pem, certs_to_pem, load_certificate, load_certificates
from .serials import new_serial
from .signer import IssuerKey, TokenKey, sign_certificate

if TYPE_CHECKING:
    from ..store.queries import Queries
    from .pkcs11 import Pkcs11Location

CA_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{1,31}$")
SUB_CA_PROFILE = "sub-ca"
OCSP_SIGNER_PROFILE = "ocsp-signer"


def check_ca_id(ca_id: str) -> str:
    if not CA_ID.match(ca_id):
        raise BadRequest("CA id must be 2-32 chars of lowercase letters, digits, '-' and '_'")
    return ca_id


def ca_subject(name: str, organization: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, name)]
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attrs)


def _ca_extensions(builder: x509.CertificateBuilder, key: IssuerKey) -> x509.CertificateBuilder:
    ski = x509.SubjectKeyIdentifier(rfc7093_key_identifier(key.public_key()))
    return (
        builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
    )


def self_signed_root(
    key: IssuerKey, subject: x509.Name, validity: dt.timedelta
) -> x509.Certificate:
    now = utcnow()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(new_serial())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + validity)
    )
    builder = _ca_extensions(builder, key)
    ski = rfc7093_key_identifier(key.public_key())
    builder = builder.add_extension(
        x509.AuthorityKeyIdentifier(ski, None, None), critical=False
    )
    return sign_certificate(builder, key)


class CAHierarchy:
    """Creates and imports CAs; the registry turns active records into backends."""

    def __init__(self, store: Store, passphrase: bytes, profiles: Mapping[str, Profile]) -> None:
        self._store = store
        self._passphrase = passphrase
        self._profiles = profiles

    async def _new_record_id(self, ca_id: str) -> None:
        check_ca_id(ca_id)
        async with self._store.read() as q:
            existing = await q.cas.get(ca_id)
        if existing is not None:
            raise Conflict(f"CA {ca_id} already exists")

    def _encrypt(self, key: CertificateIssuerPrivateKeyTypes) -> str:
        return keys.encrypt_private_key(key, self._passphrase).decode()

    def _new_key(self, key_algorithm: str, token: "Pkcs11Location | None") -> IssuerKey:
        """A software key, or a key generated on a token (which never leaves it)."""
        if token is None:
            return keys.generate_private_key(key_algorithm)
        from .pkcs11 import Pkcs11Key

        return Pkcs11Key.generate(token, key_algorithm)

    def _key_fields(self, key: IssuerKey) -> dict[str, Any]:
        """How a CA record keeps its key: encrypted here, or as the token location."""
        from .pkcs11 import KIND, Pkcs11Key

        if isinstance(key, Pkcs11Key):
            return {"key_pem_encrypted": None, "backend": KIND, "backend_settings": key.location.settings()}
        assert not isinstance(key, TokenKey)
        return {"key_pem_encrypted": self._encrypt(key)}

    async def create_root(
        self, ca_id: str, name: str, key_algorithm: str = "EC-P384",
        validity: dt.timedelta = dt.timedelta(days=3650), organization: str | None = None,
        token: "Pkcs11Location | None" = None,
    ) -> CARecord:
        """A self-signed root; with ``token``, its key is generated on that PKCS#11 token."""
        await self._new_record_id(ca_id)
        key = await asyncio.to_thread(self._new_key, key_algorithm, token)
        cert = await asyncio.to_thread(self_signed_root, key, ca_subject(name, organization), validity)
        rec = CARecord(
            id=ca_id, name=name, kind="root", state="active", parent_id=None,
            certificate_pem=cert_to_pem(cert), chain_pem="",
            key_algorithm=keys.describe_public_key(key.public_key()).name, **self._key_fields(key),
        )
        async with self._store.transaction() as q:
            await q.cas.insert(rec)
        return rec

    async def create_intermediate(
        self, parent: LocalCA, ca_id: str, name: str, key_algorithm: str = "EC-P256",
        validity: dt.timedelta | None = None, organization: str | None = None,
        token: "Pkcs11Location | None" = None,
    ) -> CARecord:
        """An issuing CA signed by a local parent under the ``sub-ca`` profile; with
        ``token``, its key is generated on that PKCS#11 token."""
        await self._new_record_id(ca_id)
        key = await asyncio.to_thread(self._new_key, key_algorithm, token)
        profile = self._profiles.get(SUB_CA_PROFILE)
        if profile is None:
            raise NotFound(f"unknown certificate profile {SUB_CA_PROFILE!r}")
        request = SignRequest(profile=profile, public_key=key.public_key(), csr=None,
                              overrides=IssueOverrides(subject=ca_subject(name, organization), validity=validity))
        cert = await self._record_signed(parent, request, SUB_CA_PROFILE)
        chain = await parent.chain()
        rec = CARecord(
            id=ca_id, name=name, kind="intermediate", state="active", parent_id=parent.id,
            certificate_pem=cert_to_pem(cert), chain_pem=certs_to_pem(chain),
            key_algorithm=keys.describe_public_key(key.public_key()).name, **self._key_fields(key),
        )
        async with self._store.transaction() as q:
            await q.cas.insert(rec)
        return rec

    async def _record_signed(self, parent: LocalCA, request: SignRequest, profile: str) -> x509.Certificate:
        """A CA certificate signed by a local parent, recorded like any issuance (a
        serial collision signs again)."""
        for _ in range(5):
            signed = await parent.sign(request)
            assert isinstance(signed, Signed)  # a local CA signs at once
            try:
                async with self._store.transaction() as q:
                    logged = await _insert_audited(q, signed.certificate, parent.id, profile, purpose=profile)
            except SerialCollision:
                continue
            logged()
            return signed.certificate
        raise Unavailable("could not allocate a unique serial number")

    async def create_external_csr(
        self, ca_id: str, name: str, key_algorithm: str = "EC-P384", organization: str | None = None,
    ) -> tuple[CARecord, bytes]:
        """An issuing CA whose certificate an external root signs: returns the CSR (PEM)."""
        await self._new_record_id(ca_id)
        key = keys.generate_private_key(key_algorithm)
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(ca_subject(name, organization))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, keys.signature_hash_for(key))
        )
        pem = csr.public_bytes(serialization.Encoding.PEM)
        rec = CARecord(
            id=ca_id, name=name, kind="external_signed", state="awaiting_certificate",
            parent_id=None, certificate_pem=None, chain_pem="",
            key_pem_encrypted=self._encrypt(key), csr_pem=pem.decode(),
            key_algorithm=keys.describe_public_key(key.public_key()).name,
        )
        async with self._store.transaction() as q:
            await q.cas.insert(rec)
        return rec, pem

    async def import_signed_certificate(
        self, ca_id: str, certificate_pem: bytes, chain_pem: bytes
    ) -> CARecord:
        """Activate an externally signed CA: the certificate must match our key and chain."""
        async with self._store.read() as q:
            rec = await q.cas.get(ca_id)
        if rec is None:
            raise NotFound(f"unknown CA {ca_id}")
        if rec.state != "awaiting_certificate" or rec.key_pem_encrypted is None:
            raise Conflict(f"CA {ca_id} is not waiting for a certificate")
        cert = load_certificate(certificate_pem)
        chain = load_certificates(chain_pem)
        if not chain:
            raise BadRequest("the issuer chain (up to the external root) is required")
        key = keys.decrypt_private_key(rec.key_pem_encrypted.encode(), self._passphrase)
        if cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ) != key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ):
            raise PolicyViolation("the certificate is not for this CA's key")
        try:
            bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            bc = None
        if bc is None or not bc.ca:
            raise PolicyViolation("the certificate is not a CA certificate (basicConstraints)")
        verify_chain(cert, chain)
        parent_id = None
        async with self._store.transaction() as q:
            for other in await q.cas.list():
                if other.certificate_pem and load_certificate(other.certificate_pem) == chain[0]:
                    parent_id = other.id
            await q.cas.update(
                ca_id, certificate_pem=cert_to_pem(cert), chain_pem=certs_to_pem(chain),
                state="active", parent_id=parent_id,
            )
            updated = await q.cas.get(ca_id)
        assert updated is not None
        return updated

    async def import_external_root(self, ca_id: str, name: str, certificate_pem: bytes) -> CARecord:
        """Trust an external root (no key held): a parent for imported chains and client auth."""
        await self._new_record_id(ca_id)
        cert = load_certificate(certificate_pem)
        if cert.issuer != cert.subject:
            raise PolicyViolation("an imported root must be self-issued")
        try:
            cert.verify_directly_issued_by(cert)
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise PolicyViolation("the root's self-signature does not verify") from exc
        rec = CARecord(
            id=ca_id, name=name, kind="external_root", state="active", parent_id=None,
            certificate_pem=cert_to_pem(cert), chain_pem="", key_pem_encrypted=None,
            key_algorithm=keys.describe_public_key(cert.public_key()).name,
        )
        async with self._store.transaction() as q:
            await q.cas.insert(rec)
        return rec

    async def ensure_ocsp_signer(
        self, ca: LocalCA, validity: dt.timedelta, renew_before: dt.timedelta | None = None
    ) -> tuple[x509.Certificate, CertificateIssuerPrivateKeyTypes]:
        """The CA's delegated OCSP signing certificate, (re)issued when missing or near expiry."""
        async with self._store.read() as q:
            rec = await q.cas.get(ca.id)
        if rec is None:
            raise NotFound(f"unknown CA {ca.id}")
        now = utcnow()
        renew_before = renew_before or validity / 4
        if rec.ocsp_certificate_pem and rec.ocsp_key_pem_encrypted:
            cert = load_certificate(rec.ocsp_certificate_pem)
            if cert.not_valid_after_utc - now > renew_before:
                key = keys.decrypt_private_key(rec.ocsp_key_pem_encrypted.encode(), self._passphrase)
                return cert, key
        key = keys.generate_private_key("EC-P256")
        for _ in range(5):
            cert = build_ocsp_signing_certificate(
                issuer_cert=ca.certificate, issuer_key=ca.private_key, responder_key=key,
                serial=new_serial(), not_before=now - dt.timedelta(minutes=5),
                not_after=min(now + validity, ca.certificate.not_valid_after_utc),
            )
            try:
                async with self._store.transaction() as q:
                    logged = await _insert_audited(q, cert, ca.id, OCSP_SIGNER_PROFILE, purpose="ocsp-signer")
                    await q.cas.update(
                        ca.id, ocsp_certificate_pem=cert_to_pem(cert),
                        ocsp_key_pem_encrypted=self._encrypt(key),
                    )
            except SerialCollision:
                continue
            logged()
            return cert, key
        raise Conflict("could not allocate a serial for the OCSP signer")


async def _insert_audited(q: "Queries", cert: x509.Certificate, ca_id: str, profile: str, *,
                          purpose: str) -> Callable[[], None]:
    """Store a certificate the gateway issued for itself (a sub-CA, an OCSP signer) with its
    ``internal_issue`` event in the same transaction: every stored certificate has its
    audit event, whatever dies when. Returns what logs the event once committed."""
    await q.certificates.insert(certificate_record(cert, ca_id=ca_id, profile=profile, entity_id=None,
                                                   protocol_config=None, request_id=None))
    event = EventRecord(type="internal_issue", status="success", ca_id=ca_id, serial=serial_hex(cert.serial_number),
                        detail={"actor": "gateway", "purpose": purpose, "profile": profile})
    event_id = await q.events.add(event)
    return lambda: log_committed(event, event_id)


def verify_chain(cert: x509.Certificate, chain: list[x509.Certificate]) -> None:
    """Each certificate must be signed by the next; the last must be self-signed."""
    current = cert
    for issuer in chain:
        try:
            current.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise PolicyViolation(
                f"{current.subject.rfc4514_string()} is not signed by {issuer.subject.rfc4514_string()}"
            ) from exc
        current = issuer
    if current.issuer != current.subject:
        raise PolicyViolation("the chain must end with a self-signed root")
