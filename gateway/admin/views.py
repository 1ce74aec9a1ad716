"""JSON views of store records and profiles, as the admin API shows them.

Views never carry private keys (CA or OCSP signer) or protocol credentials; a
protocol configuration shows only the names of its credentials.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from cryptography import x509

from ..ca.backend import IssuedCertificate, RevocationReason
from ..ca.pem import cert_to_pem, load_certificate
from ..profiles.model import EKU_NAMES, Profile, format_period
from ..sealing import is_sealed
from ..store.records import (
    CARecord,
    CertificateRecord,
    EndEntityRecord,
    EventRecord,
    ProtocolConfigRecord,
    RequestRecord,
    serial_hex,
    utcnow,
)

_EKU_BY_OID = {oid: name for name, oid in EKU_NAMES.items()}


def iso(value: dt.datetime | None) -> str | None:
    """RFC 3339 text; naive datetimes from a store are UTC by convention."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def _reason(code: int | None) -> str | None:
    if code is None:
        return None
    try:
        return RevocationReason(code).name
    except ValueError:
        return str(code)


def ca_view(rec: CARecord, *, detail: bool = False) -> dict[str, Any]:
    cert = load_certificate(rec.certificate_pem) if rec.certificate_pem else None
    view: dict[str, Any] = {
        "id": rec.id,
        "name": rec.name,
        "kind": rec.kind,
        "state": rec.state,
        "parent": rec.parent_id,
        "key_algorithm": rec.key_algorithm,
        "can_issue": rec.state == "active" and rec.key_pem_encrypted is not None and cert is not None,
        "subject": cert.subject.rfc4514_string() if cert else None,
        "serial": serial_hex(cert.serial_number) if cert else None,
        "not_before": iso(cert.not_valid_before_utc) if cert else None,
        "not_after": iso(cert.not_valid_after_utc) if cert else None,
        "crl_number": rec.crl_number,
        "crl_this_update": iso(rec.crl_this_update),
        "crl_next_update": iso(rec.crl_next_update),
        "created_at": iso(rec.created_at),
    }
    if detail:
        view["certificate_pem"] = rec.certificate_pem
        view["chain_pem"] = rec.chain_pem
        view["csr_pem"] = rec.csr_pem
    return view


def certificate_view(rec: CertificateRecord, *, detail: bool = False) -> dict[str, Any]:
    view: dict[str, Any] = {
        "serial": rec.serial,
        "ca": rec.ca_id,
        "profile": rec.profile,
        "subject": rec.subject,
        "sans": list(rec.sans),
        "not_before": iso(rec.not_before),
        "not_after": iso(rec.not_after),
        "expired": _aware(rec.not_after) < utcnow(),
        "status": rec.status,
        "revocation_reason": _reason(rec.revocation_reason),
        "revoked_at": iso(rec.revoked_at),
        "invalidity_date": iso(rec.invalidity_date),
        "key_algorithm": rec.key_algorithm,
        "fingerprint_sha256": rec.fingerprint_sha256,
        "entity": rec.entity_id,
        "protocol_config": rec.protocol_config,
        "request": rec.request_id,
        "created_at": iso(rec.created_at),
    }
    if detail:
        view["pem"] = certificate_pem(rec)
    return view


def certificate_pem(rec: CertificateRecord) -> str:
    return cert_to_pem(x509.load_der_x509_certificate(rec.der))


def issued_view(rec: CertificateRecord, issued: IssuedCertificate) -> dict[str, Any]:
    """A fresh certificate with the chain a client needs to install it."""
    view = certificate_view(rec, detail=True)
    view["chain"] = [cert_to_pem(c) for c in issued.chain]
    return view


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.timezone.utc)


def profile_view(profile: Profile) -> dict[str, Any]:
    bc = profile.basic_constraints
    ids = profile.identifiers
    return {
        "name": profile.name,
        "description": profile.description,
        "validity": format_period(profile.validity),
        "max_validity": format_period(profile.max_validity),
        "backdate": format_period(profile.backdate),
        "key_usage": sorted(profile.key_usage),
        "key_usage_critical": profile.key_usage_critical,
        "extended_key_usage": [_EKU_BY_OID.get(oid, oid.dotted_string) for oid in profile.extended_key_usage],
        "key_algorithms": sorted(profile.key_policy.allowed),
        "basic_constraints": {"ca": bc.ca, "path_length": bc.path_length, "critical": bc.critical},
        "subject": {
            "mode": profile.subject.mode,
            "format": profile.subject.format,
            "require_cn": profile.subject.require_cn,
        },
        "san": {
            "mode": profile.san.mode,
            "cn_as_dns": profile.san.cn_as_dns,
            "allowed_types": sorted(profile.san.allowed_types),
            "required": profile.san.required,
            "critical": profile.san.critical,
        },
        "extensions": {
            "allowed": sorted(oid.dotted_string for oid in profile.extensions.allowed),
            "ignore_unknown_extensions": profile.extensions.ignore_unknown_extensions,
        },
        "identifiers": {
            "authority_key_identifier": ids.authority_key_identifier,
            "subject_key_identifier": ids.subject_key_identifier,
            "crl_distribution_point": ids.crl_distribution_point,
            "aia_ocsp": ids.aia_ocsp,
            "aia_ca_issuers": ids.aia_ca_issuers,
        },
    }


SEALED = "(sealed)"


def redacted(value: Any) -> Any:
    """Settings as the admin API shows them: a sealed secret (a directory password, an Intune
    client secret) is shown as ``(sealed)``, never its ciphertext; a PATCH that leaves the key
    out keeps it."""
    if isinstance(value, dict):
        return {k: redacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redacted(v) for v in value]
    if isinstance(value, str) and is_sealed(value):
        return SEALED
    return value


def config_view(rec: ProtocolConfigRecord) -> dict[str, Any]:
    return {
        "id": rec.id,
        "protocol": rec.protocol,
        "ca": rec.ca_id,
        "profiles": list(rec.profiles),
        "default_profile": rec.default_profile,
        "settings": redacted(dict(rec.settings)),
        "credentials": sorted(rec.credentials),  # names only; values are secrets
        "enabled": rec.enabled,
        "created_at": iso(rec.created_at),
    }


def entity_view(rec: EndEntityRecord) -> dict[str, Any]:
    return {
        "id": rec.id,
        "name": rec.name,
        "kind": rec.kind,
        "status": rec.status,
        "protocol_config": rec.protocol_config,
        "attributes": dict(rec.attributes),
        "created_at": iso(rec.created_at),
        "updated_at": iso(rec.updated_at),
    }


def event_view(rec: EventRecord) -> dict[str, Any]:
    return {
        "id": rec.id,
        "type": rec.type,
        "status": rec.status,
        "entity": rec.entity_id,
        "protocol_config": rec.protocol_config,
        "ca": rec.ca_id,
        "serial": rec.serial,
        "request": rec.request_id,
        "detail": dict(rec.detail),
        "created_at": iso(rec.created_at),
    }


def _csr_subject(csr_pem: str) -> str | None:
    try:
        return x509.load_pem_x509_csr(csr_pem.encode()).subject.rfc4514_string()
    except ValueError:
        return None


def request_view(rec: RequestRecord) -> dict[str, Any]:
    return {
        "id": rec.id,
        "ca": rec.ca_id,
        "profile": rec.profile,
        "status": rec.status,
        "subject": _csr_subject(rec.csr_pem),
        "entity": rec.entity_id,
        "protocol_config": rec.protocol_config,
        "serial": rec.serial,
        "decided_by": rec.decided_by,
        "reason": rec.reason,
        "overrides": dict(rec.overrides),
        "csr_pem": rec.csr_pem,
        "created_at": iso(rec.created_at),
        "decided_at": iso(rec.decided_at),
    }
