"""Operator server-side key generation: ``POST /admin/protocol-configs/{id}/keygen`` and
``gateway cert keygen``.

The key is made here and issued under a protocol configuration like any enrollment
(certificate record, end entity, ``keygen`` event with the actor, counted in
``gateway_enrollments_total`` under protocol ``admin`` or ``cli``), then handed back
once as a password-protected PKCS#12. The gateway keeps neither the key nor the
password: the password is checked before anything is issued and is never logged.

The PKCS#12 encryptions (``modern``, ``legacy``) are :mod:`gateway.ca.pkcs12`'s.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.x509.oid import NameOID

from .authority import Authority
from .ca.backend import IssuedCertificate
from .ca.overrides import parse_san, parse_subject
from .ca.pkcs12 import ENCRYPTIONS, common_name_of
from .errors import BadRequest, ErrorKind, GatewayError
from .metrics import count_enrollment

MIN_PASSWORD = 8
MAX_PASSWORD = 1024
PASSWORD_PATTERN = r"^[^\x00-\x1f\x7f]+$"
"""No control characters: OpenSSL reads the password as a C string, so a NUL would cut it."""
_PASSWORD = re.compile(PASSWORD_PATTERN)
DEFAULT_ALGORITHM = {"modern": "EC-P256", "legacy": "RSA-2048"}
"""Key made when none is asked for: devices that need legacy PKCS#12 rarely take EC keys."""


def check_password(value: str) -> bytes:
    """The PKCS#12 password as UTF-8, or BadRequest (never echoing it)."""
    if not MIN_PASSWORD <= len(value) <= MAX_PASSWORD:
        raise BadRequest(f"password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    if not _PASSWORD.match(value):
        raise BadRequest("password must not contain control characters")
    return value.encode()


def check_encryption(value: str) -> str:
    if value not in ENCRYPTIONS:
        raise BadRequest(f"encryption must be one of {list(ENCRYPTIONS)}")
    return value


def subject_from(common_name: str | None, subject: str | None) -> x509.Name:
    """Exactly one of a bare commonName or an RFC 4514 subject."""
    if (common_name is None) == (subject is None):
        raise BadRequest("give exactly one of common_name or subject")
    if subject is not None:
        name = parse_subject(subject)
        if not name.rdns:
            raise BadRequest("subject must not be empty")
        return name
    assert common_name is not None
    if not common_name.strip():
        raise BadRequest("common_name must not be empty")
    try:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    except ValueError as exc:
        raise BadRequest(f"common_name: {exc}") from None


@dataclass(frozen=True)
class KeygenOrder:
    """One operator key generation, checked (see :func:`order`)."""

    config_id: str
    subject: x509.Name
    password: bytes = field(repr=False)
    encryption: str = "modern"
    sans: tuple[x509.GeneralName, ...] = ()
    profile: str | None = None
    key_algorithm: str | None = None
    entity: str | None = None


def order(config_id: str, *, password: str, common_name: str | None = None, subject: str | None = None,
          sans: list[str] | tuple[str, ...] = (), profile: str | None = None,
          key_algorithm: str | None = None, encryption: str = "modern",
          entity: str | None = None) -> KeygenOrder:
    """Every input checked before anything is issued (BadRequest otherwise)."""
    if entity is not None and not entity.strip():
        raise BadRequest("entity must not be empty")
    return KeygenOrder(
        config_id=config_id, subject=subject_from(common_name, subject), password=check_password(password),
        encryption=check_encryption(encryption), sans=tuple(parse_san(s) for s in sans),
        profile=profile, key_algorithm=key_algorithm, entity=entity,
    )


@dataclass(frozen=True)
class KeygenResult:
    issued: IssuedCertificate
    pkcs12: bytes = field(repr=False)


async def keygen_pkcs12(authority: Authority, req: KeygenOrder, *, actor: str, source: str) -> KeygenResult:
    """Issue for a fresh key under ``req.config_id`` (any protocol's configuration: its CA,
    profiles and end entities) and wrap it as PKCS#12; counted under protocol ``source``."""
    config = await authority.config(req.config_id)
    entity = req.entity or common_name_of(req.subject) or req.subject.rfc4514_string()
    try:
        generated = await authority.keygen(
            config.id, config.protocol, entity=entity,
            key_algorithm=req.key_algorithm or DEFAULT_ALGORITHM[req.encryption],
            subject=req.subject, sans=req.sans, profile=req.profile, actor=actor,
            pkcs12_password=req.password, pkcs12_encryption=req.encryption,
        )
    except GatewayError as exc:
        outcome = "error" if exc.kind in (ErrorKind.UNAVAILABLE, ErrorKind.INTERNAL) else "refused"
        count_enrollment(source, config.id, outcome, exc.kind.value)
        raise
    except Exception:
        count_enrollment(source, config.id, "error", ErrorKind.INTERNAL.value)
        raise
    count_enrollment(source, config.id, "issued")
    issued = generated.issued
    assert generated.pkcs12 is not None  # a password was given
    return KeygenResult(issued, generated.pkcs12)
