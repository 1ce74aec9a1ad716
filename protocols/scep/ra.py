"""The registration authority identity of a SCEP configuration.

Clients encrypt their requests to the RA certificate and verify CertReps against it.
The RA is an RSA key with a certificate issued by the configuration's CA under the
``scep-ra`` profile (digitalSignature + keyEncipherment, no EKU), created at bootstrap
or on first use, renewed by operators; the adapter declares that profile
(``ADAPTER.profiles``) and the core loads it at start. The certificate is issued
through the door (:meth:`gateway.door.Door.issue_internal`: stored and audited like any
issuance); its key is stored encrypted with the door's sealing passphrase, like CA keys.
An operator may instead import an RA (e.g. the CA's own certificate and key when the
CA answers SCEP itself, or a capture's RA for replay).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import uuid
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from gateway import keys
from gateway.ca.pem import certs_to_pem, load_certificate, load_certificates
from gateway.door import Door, IssueOverrides
from gateway.errors import BadKey, BadRequest, Unavailable

from .cms import Signer, issued_by
from .envelope import Recipient
from .repository import RaRecord, ScepRepository

RA_PROFILE = "scep-ra"
RA_KEY_ALGORITHM = "RSA-2048"
RA_PROFILE_TOML = '''# SCEP registration authority (RA) certificates, issued by the SCEP adapter from a
# configuration's CA: the RA signs CertReps and decrypts pkcsPKIEnvelopes, so it needs
# digitalSignature and keyEncipherment (what Windows and macOS clients look for) and
# an RSA key (clients encrypt to it with RSA key transport). No EKU: OpenSSL-based
# clients check CMS signers against the S/MIME purpose, which an EKU would narrow.
name = "scep-ra"
description = "SCEP RA certificates (signs CertReps, decrypts requests)"
validity = "P1Y"
max_validity = "P2Y"
backdate = "PT5M"
key_usage = ["digital_signature", "key_encipherment"]
key_usage_critical = true
extended_key_usage = []

[key_policy]
allowed = ["RSA-2048", "RSA-3072", "RSA-4096"]

[basic_constraints]
ca = false
critical = true

[subject]
mode = "override"
require_cn = true

[san]
mode = "none"
cn_as_dns = false
allowed_types = ["dns", "ip", "email", "uri", "upn"]
required = false
critical = false

[extensions]
allowed = []
ignore_unknown_extensions = true

[identifiers]
authority_key_identifier = true
subject_key_identifier = "sha1"
crl_distribution_point = true
aia_ocsp = true
aia_ca_issuers = true
'''
"""The ``scep-ra`` profile, declared by the adapter (``ADAPTER.profiles``) and loaded by
the core at start (kept here rather than as a data file so that every installation
carries it; a data directory's ``profiles/scep-ra.toml`` overrides it)."""
RA_PURPOSE = "scep-ra"
"""The ``purpose`` of RA certificates in the core's internal-issue audit events."""


@dataclass(frozen=True)
class RaIdentity:
    record_id: str
    role: str
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]  # issuers of the RA certificate, issuer first
    key: rsa.RSAPrivateKey

    @property
    def signer(self) -> Signer:
        return Signer(self.certificate, self.key)

    @property
    def recipient(self) -> Recipient:
        return Recipient(self.certificate, self.key)


@dataclass(frozen=True)
class RaSet:
    """All RA identities of a configuration: ``current`` signs, every one may decrypt."""

    current: RaIdentity
    next: RaIdentity | None
    retired: tuple[RaIdentity, ...]
    refresh_at: dt.datetime | None = None
    """When this set changes by time alone (the current RA is due for renewal, a retired
    one expires): a cached set is looked at again then. None: only a write changes it."""

    def recipients(self) -> list[Recipient]:
        ids = [self.current, *([self.next] if self.next else []), *self.retired]
        return [i.recipient for i in ids]


def ra_subject(config_id: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Enrollment Gateway"),
        x509.NameAttribute(NameOID.COMMON_NAME, f"SCEP RA {config_id}"),
    ])


async def issue_ra(
    door: Door, repo: ScepRepository, config_id: str, ca_id: str, *, role: str = "current",
    actor: str = "system",
) -> RaRecord:
    """A new RA key and certificate from ``ca_id`` (recorded and audited by the core like
    any issuance, then installed as the configuration's ``role`` RA)."""
    key = keys.generate_private_key(RA_KEY_ALGORITHM)
    issued = await door.issue_internal(
        ca_id, RA_PROFILE, key, IssueOverrides(subject=ra_subject(config_id)),
        purpose=RA_PURPOSE, config_id=config_id, actor=actor,
    )
    rec = RaRecord(
        id=uuid.uuid4().hex,
        config_id=config_id,
        role=role,
        certificate_pem=certs_to_pem([issued.certificate]),
        chain_pem=certs_to_pem(list(issued.chain)),
        key_pem_encrypted=keys.encrypt_private_key(key, door.sealing_passphrase()).decode(),
        not_after=issued.certificate.not_valid_after_utc,
    )
    await repo.add_ra(rec)
    await door.record_event(
        "scep_ra_issue", "success", protocol_config=config_id, ca_id=ca_id,
        serial=format(issued.serial, "x"), role=role, actor=actor,
    )
    return rec


RA_MIN_RSA_BITS = 2048
"""Below this an imported RA key is refused (or, forced, warned about): clients encrypt
their requests, challenge password included, to it."""


def ra_import_problems(cert: x509.Certificate, key: rsa.RSAPrivateKey, now: dt.datetime) -> list[str]:
    """Why an RA certificate should not be imported: outside its validity (clients refuse
    an expired RA, or encrypt to it and then fail on its CertReps) or a weak key."""
    problems = []
    if cert.not_valid_after_utc <= now:
        problems.append(f"the RA certificate expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M:%SZ}")
    elif cert.not_valid_before_utc > now:
        problems.append(f"the RA certificate is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M:%SZ}")
    if key.key_size < RA_MIN_RSA_BITS:
        problems.append(f"the RA key is RSA-{key.key_size}, below RSA-{RA_MIN_RSA_BITS}")
    return problems


@dataclass(frozen=True)
class ImportedRa:
    record: RaRecord
    warnings: tuple[str, ...]
    """The problems ``force`` let through (see :func:`ra_import_problems`)."""


async def import_ra(
    door: Door, repo: ScepRepository, config_id: str, certificate_pem: bytes, key_pem: bytes,
    *, key_password: bytes | None = None, chain_pem: bytes = b"", role: str = "current",
    actor: str = "system", force: bool = False,
) -> ImportedRa:
    """Use an existing RSA certificate and key as the RA (re-encrypted at rest). An
    expired or not yet valid certificate or an RSA key below 2048 bits is refused unless
    ``force`` (replaying a capture, a lab): then imported, audited with its warnings."""
    cert = load_certificate(certificate_pem)
    try:
        key = serialization.load_pem_private_key(key_pem, password=key_password)
    except (ValueError, TypeError) as exc:
        raise BadRequest("the RA key does not load (wrong password or not a PEM private key)") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise BadKey("an RA key must be RSA: clients encrypt to it with RSA key transport")
    ours = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    theirs = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if ours != theirs:
        raise BadRequest("the RA key does not belong to the RA certificate")
    problems = ra_import_problems(cert, key, door.clock())
    if problems and not force:
        raise BadRequest("; ".join(problems) + " (force the import to use it anyway)")
    chain = load_certificates(chain_pem) if chain_pem.strip() else []
    rec = RaRecord(
        id=uuid.uuid4().hex, config_id=config_id, role=role,
        certificate_pem=certs_to_pem([cert]), chain_pem=certs_to_pem(chain),
        key_pem_encrypted=keys.encrypt_private_key(key, door.sealing_passphrase()).decode(),
        not_after=cert.not_valid_after_utc,
    )
    await repo.add_ra(rec)
    await door.record_event(
        "scep_ra_import", "success", protocol_config=config_id, serial=format(cert.serial_number, "x"),
        role=role, actor=actor, **({"forced": problems} if problems else {}),
    )
    return ImportedRa(rec, tuple(problems))


class RaKeyring:
    """Decrypted RA identities per configuration, cached until the records change."""

    def __init__(self, door: Door, repo: ScepRepository) -> None:
        self._door = door
        self._repo = repo
        self._cache: dict[str, tuple[tuple[tuple[str, str], ...], RaSet]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def _identity(self, rec: RaRecord) -> RaIdentity:
        key = keys.decrypt_private_key(rec.key_pem_encrypted.encode(), self._door.sealing_passphrase())
        if not isinstance(key, rsa.RSAPrivateKey):
            raise Unavailable("the stored RA key is not RSA")
        chain = tuple(load_certificates(rec.chain_pem)) if rec.chain_pem.strip() else ()
        return RaIdentity(rec.id, rec.role, load_certificate(rec.certificate_pem), chain, key)

    async def ra_set(self, config_id: str, ca_id: str, *, now: dt.datetime | None = None,
                     issue_if_missing: bool = True) -> RaSet:
        """The configuration's RA set. Issues the first RA from the CA when there is none,
        and a successor when a gateway-issued RA enters the last fifth of its lifetime (the
        old one keeps decrypting for clients that cached it, until it expires). Runs on
        the door's clock (the core's time, not a test's message clock)."""
        now = now or self._door.clock()
        lock = self._locks.setdefault(config_id, asyncio.Lock())
        async with lock:
            records = await self._repo.ra_certificates(config_id)
            current = next((r for r in records if r.role == "current"), None)  # newest first
            if current is None:
                if not issue_if_missing:
                    raise Unavailable(f"SCEP configuration {config_id!r} has no RA certificate")
                await issue_ra(self._door, self._repo, config_id, ca_id)
                records = await self._repo.ra_certificates(config_id)
            elif now >= _renewal_due(current) and await self._issued_by(current, ca_id):
                await issue_ra(self._door, self._repo, config_id, ca_id)
                await self._repo.drop_expired_ra(config_id, now)
                records = await self._repo.ra_certificates(config_id)
            current = next(r for r in records if r.role == "current")
            nxt = next((r for r in records if r.role == "next"), None)
            retired = [r for r in records if r.role == "retired" and r.not_after > now]
            changes = [r.not_after for r in retired]
            if now < _renewal_due(current) and await self._issued_by(current, ca_id):
                changes.append(_renewal_due(current))
            refresh_at = min(changes, default=None)
            version = tuple(sorted((r.id, r.role) for r in [current, *([nxt] if nxt else []), *retired]))
            cached = self._cache.get(config_id)
            if cached is not None and cached[0] == version:
                return dataclasses.replace(cached[1], refresh_at=refresh_at)
            ra = RaSet(
                current=self._identity(current),
                next=self._identity(nxt) if nxt else None,
                retired=tuple(self._identity(r) for r in retired),
                refresh_at=refresh_at,
            )
            self._cache[config_id] = (version, ra)
            return ra

    async def _issued_by(self, rec: RaRecord, ca_id: str) -> bool:
        """Was this RA issued by the gateway from ``ca_id`` (not imported)? Only those are
        renewed automatically."""
        ca_cert = self._door.ca_certificate(ca_id)
        if ca_cert is None:
            return False
        cert = load_certificate(rec.certificate_pem)
        return issued_by(cert, ca_cert) and cert != ca_cert

    def forget(self) -> None:
        """Drop every decrypted key (the app is stopping)."""
        self._cache.clear()


def _renewal_due(rec: RaRecord) -> dt.datetime:
    """When an RA enters the last fifth of its lifetime."""
    return rec.not_after - (rec.not_after - rec.created_at) / 5
