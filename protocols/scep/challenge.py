"""Challenge passwords: one pluggable verifier interface, and the one-time challenges.

A :class:`ChallengeVerifier` decides whether a PKCSReq's challengePassword authorizes
it, and hears afterwards whether the enrollment succeeded or failed. That is the shape
of Microsoft Intune's SCEP validation service (validate, then success/failure
notifications), so an Intune verifier can be registered in :data:`VERIFIERS` beside the
built-in ones without touching the protocol code. Built in:

- ``static``: the configuration's static challenge (scrypt hashes in ``scep_secrets``);
- ``dynamic``: one-time challenges (single use, time-limited, optionally bound to an
  expected subject) issued by the NDES ``mscep_admin`` page, the admin API, the CLI
  and the Jamf webhook; stored as SHA-256 of the value. They are tokens, not
  credentials: they stay SCEP's own. Who may obtain them (challenge admins) is in
  :mod:`.admins`.

What a binding binds (:func:`subject_matches`): a subject given to the admin API or
the CLI binds the CSR's whole subject: the same RDNs in the same order, each with the
same attribute types, values equal after trimming, collapsing inner white space and
ignoring case (RFC 5280 section 7.1 compares names so; the string type is not
compared). ``CN=kiosk-12`` therefore refuses ``CN=kiosk-12,O=Other``. Only the Jamf
webhook's binding (``settings.webhook_bind_cn``, source ``webhook``) binds the CN
alone: the gateway knows the device's UDID, not the rest of the profile's subject.
A CSR that does not match is refused (badRequest) before the challenge is taken, so
the challenge stays usable by the device it was issued for.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from cryptography import x509
from cryptography.x509.oid import AttributeOID

from gateway.ca.overrides import parse_subject
from gateway.door import ProtocolConfigRecord, utcnow
from gateway.errors import BadRequest
from gateway.secrets import hash_secret, verify_secret

from .repository import ChallengeRecord, ScepRepository, SecretRecord
from .types import FailInfo, ScepFailure

WEBHOOK = "webhook"
END_ENTITY = "end_entity"
"""The challenge attribute naming the end entity (set only by the handoff to another
protocol, :mod:`.handoff`): the certificate joins that entity instead of one named by
the CSR's CN, and the key is not copied into the entity's attributes."""
"""The source of challenges from the Jamf webhook, whose binding is the CN alone."""
STATIC = "static_challenge"
"""The ``scep_secrets`` kind of the static challenge (challenge admins are enrollment
credentials: :mod:`.admins`)."""


def challenge_password(csr: x509.CertificateSigningRequest) -> str | None:
    """The CSR's challengePassword attribute (any string type), if present."""
    try:
        value = csr.attributes.get_attribute_for_oid(AttributeOID.CHALLENGE_PASSWORD).value
    except x509.AttributeNotFound:
        return None
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def new_dynamic_challenge() -> str:
    """16 upper-case hex digits, the NDES format that scrapers of mscep_admin expect."""
    return secrets.token_hex(8).upper()


def challenge_digest(challenge: str) -> str:
    return hashlib.sha256(challenge.strip().encode()).hexdigest()


@dataclass(frozen=True)
class ChallengeRequest:
    """What a verifier sees: the configuration, the request and its challenge."""

    config: ProtocolConfigRecord
    transaction_id: str
    csr: x509.CertificateSigningRequest
    challenge: str | None
    now: dt.datetime


@dataclass(frozen=True)
class ChallengeGrant:
    """A verified challenge: who vouched for it and what it tells about the device."""

    verifier: str
    entity_attributes: dict[str, Any] = field(default_factory=dict)
    token: str | None = None  # verifier-private handle (the dynamic challenge's digest)
    profile: str | None = None  # the profile the challenge fixes (None: the configuration's default)
    entity: str | None = None  # the end entity the challenge names (None: the CSR's CN)


@dataclass(frozen=True)
class IssuedInfo:
    """What a success notification reports (Intune wants serial, thumbprint, expiry, CA)."""

    serial_hex: str
    sha1_thumbprint: str
    not_after: dt.datetime
    issuer: str
    certificate: x509.Certificate | None = None


class ChallengeVerifier(Protocol):
    name: str

    async def verify(self, request: ChallengeRequest) -> ChallengeGrant | None:
        """A grant, or None when this verifier does not know the challenge; raise
        :class:`ScepFailure` (badRequest) to refuse outright."""

    async def notify_success(
        self, request: ChallengeRequest, grant: ChallengeGrant, issued: IssuedInfo | None
    ) -> None:
        """The certificate was issued (or held for approval: ``issued`` is then None)."""

    async def notify_failure(self, request: ChallengeRequest, grant: ChallengeGrant, reason: str) -> None:
        """The enrollment this grant authorized failed afterwards."""


class StaticChallengeVerifier:
    """The configuration's static challenge password(s), compared against scrypt hashes."""

    name = "static"

    def __init__(self, repo: ScepRepository) -> None:
        self._repo = repo

    async def verify(self, request: ChallengeRequest) -> ChallengeGrant | None:
        if not request.challenge:
            return None
        for rec in await self._repo.cached_secrets(request.config.id, STATIC):
            if await asyncio.to_thread(verify_secret, request.challenge, rec.secret_hash):
                return ChallengeGrant(self.name)
        return None

    async def notify_success(self, request: ChallengeRequest, grant: ChallengeGrant, issued: IssuedInfo | None) -> None:
        return None

    async def notify_failure(self, request: ChallengeRequest, grant: ChallengeGrant, reason: str) -> None:
        return None


class DynamicChallengeVerifier:
    """One-time challenges: used once (compare-and-set), expired ones refused, and a
    challenge bound to a subject only authorizes a CSR with that subject."""

    name = "dynamic"

    def __init__(self, repo: ScepRepository) -> None:
        self._repo = repo

    async def verify(self, request: ChallengeRequest) -> ChallengeGrant | None:
        if not request.challenge:
            return None
        digest = challenge_digest(request.challenge)
        rec = await self._repo.challenge(request.config.id, digest)
        if rec is None:
            return None
        if rec.used_at is not None:
            raise ScepFailure(FailInfo.BAD_REQUEST, "the challenge password was already used")
        if rec.expires_at <= request.now:
            raise ScepFailure(FailInfo.BAD_REQUEST, "the challenge password has expired")
        if rec.bound_subject is not None and not subject_matches(
                rec.bound_subject, request.csr.subject, cn_only=rec.source == WEBHOOK):
            raise ScepFailure(FailInfo.BAD_REQUEST, "the challenge password was issued for another subject")
        if not await self._repo.use_challenge(request.config.id, digest, now=request.now,
                                              used_by=request.transaction_id):
            raise ScepFailure(FailInfo.BAD_REQUEST, "the challenge password was already used")
        attributes = dict(rec.attributes)
        entity = attributes.pop(END_ENTITY, None)
        return ChallengeGrant(self.name, attributes, token=digest, profile=rec.profile,
                              entity=entity if isinstance(entity, str) and entity else None)

    async def notify_success(self, request: ChallengeRequest, grant: ChallengeGrant, issued: IssuedInfo | None) -> None:
        return None

    async def notify_failure(self, request: ChallengeRequest, grant: ChallengeGrant, reason: str) -> None:
        # The request was refused after the challenge was taken: hand it back, so a
        # corrected request from the same device can still use it (nothing changed).
        if grant.token is not None:
            await self._repo.release_challenge(request.config.id, grant.token, request.transaction_id)


def subject_matches(bound: str, subject: x509.Name, *, cn_only: bool = False) -> bool:
    """Does the CSR's subject match the bound one? The whole name (rules in the module
    docstring), or with ``cn_only`` (the Jamf webhook) a single CN equal to the bound CN."""
    try:
        expected = parse_subject(bound)
    except BadRequest:
        return False
    if cn_only:
        want = [_norm(a.value) for a in expected.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]
        got = [_norm(a.value) for a in subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]
        return len(want) == 1 and got == want
    return normalized_name(expected) == normalized_name(subject)


def normalized_name(name: x509.Name) -> tuple[tuple[tuple[str, str | bytes], ...], ...]:
    """The RDN sequence in order; in each RDN its (type OID, value) pairs, sorted (an RDN
    is a set), values trimmed, inner white space collapsed and case folded."""
    return tuple(
        tuple(sorted(((a.oid.dotted_string, _norm(a.value)) for a in rdn), key=repr))
        for rdn in name.rdns
    )


def _norm(value: str | bytes) -> str | bytes:
    return " ".join(value.split()).casefold() if isinstance(value, str) else value


VerifierFactory = Callable[[ScepRepository], ChallengeVerifier]
VERIFIERS: dict[str, VerifierFactory] = {
    "static": StaticChallengeVerifier,
    "dynamic": DynamicChallengeVerifier,
}
"""Verifier factories by name; settings ``challenge_verifiers`` picks and orders them."""


def verifiers_for(names: Sequence[str], repo: ScepRepository,
                  services: Mapping[str, ChallengeVerifier] | None = None) -> list[ChallengeVerifier]:
    """The verifiers ``names`` asks for: built from :data:`VERIFIERS`, or one the service
    keeps itself (``services``: the Intune verifier, whose clients outlive a request)."""
    out = []
    for name in names:
        if services is not None and name in services:
            out.append(services[name])
            continue
        factory = VERIFIERS.get(name)
        if factory is None:
            raise ScepFailure(FailInfo.BAD_REQUEST, f"challenge verifier {name!r} is not available")
        out.append(factory(repo))
    return out


# --- issuing and managing secrets ----------------------------------------------------


@dataclass(frozen=True)
class IssuedChallenge:
    challenge: str
    expires_at: dt.datetime
    bound_subject: str | None


async def issue_dynamic_challenge(
    repo: ScepRepository, config_id: str, *, ttl: dt.timedelta, limit: int, source: str,
    issued_by: str | None, bound_subject: str | None = None, attributes: dict[str, Any] | None = None,
    profile: str | None = None, now: dt.datetime | None = None,
) -> IssuedChallenge:
    """A new one-time challenge (the value is returned once and stored only hashed)."""
    now = now or utcnow()
    if bound_subject is not None:
        parse_subject(bound_subject)  # refuse a malformed DN now, not at enrollment
    challenge = new_dynamic_challenge()
    rec = ChallengeRecord(
        challenge_sha256=challenge_digest(challenge), config_id=config_id, source=source,
        expires_at=now + ttl, issued_by=issued_by, bound_subject=bound_subject,
        attributes=attributes or {}, profile=profile, created_at=now,
    )
    await repo.add_challenge(rec, limit=limit, now=now)
    return IssuedChallenge(challenge, rec.expires_at, bound_subject)


async def set_static_challenge(repo: ScepRepository, config_id: str, challenge: str | None = None) -> str:
    """Set (or generate) the configuration's static challenge; returns the plaintext once.

    It stays in ``scep_secrets`` rather than among the enrollment credentials: every
    device sends it unauthenticated, and the credentials' shared-secret lockout would let
    wrong guesses lock out every device that knows it (reasons in :mod:`.admins`)."""
    value = challenge if challenge is not None else secrets.token_urlsafe(18)
    if len(value) < 8:
        raise BadRequest("a static challenge needs at least 8 characters")
    await repo.set_secret(SecretRecord(config_id, STATIC, "static", await asyncio.to_thread(hash_secret, value)))
    return value
