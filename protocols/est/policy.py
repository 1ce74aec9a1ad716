"""A label's EST policy, read from its protocol configuration record.

A label (``/.well-known/est/<label>/``) is an EST protocol configuration: its CA
and default profile come from the core record, everything EST-specific from the
record's ``settings`` (plain JSON, editable with ``gateway est`` or the admin
API's ``PATCH /admin/protocol-configs/<id>``):

====================================  =====================================================
``auth``                              ``basic`` | ``certificate`` | ``either`` | ``both``
``accept_issued_certificates``        TLS client certificates from this label's CA count (true)
``client_trust_anchors``              PEM CA certificates whose (directly issued) client
                                      certificates count, e.g. a manufacturer's IDevID CA
``pop_linking``                       ``off`` | ``optional`` | ``required`` (tls-unique, RFC 7030 3.5)
``csrattrs``                          see :mod:`.csrattrs`; absent: ``/csrattrs`` answers 204
``csrattrs_auth``                     ``/csrattrs`` requires the enrollment credentials (false)
``serverkeygen``                      ``/serverkeygen`` offered (true)
``serverkeygen_algorithm``            key made when the CSR's key type is not usable (EC-P256)
``retry_after``                       seconds a client waits on 202 (60)
``default``                           served at ``/.well-known/est/`` without a label
``approval``                          core setting: ``manual`` holds requests (202)
====================================  =====================================================

Basic users are not part of the configuration: they are the label's enrollment
credentials (``door.credentials``, managed with ``gateway est user``), checked with
a lockout after repeated failures. The record's ``credentials`` document is not
read; users it held before (``credentials["basic"]``) were moved by the migration
``est_0002``, and any still found there are reported in the log, not accepted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from gateway.errors import BadRequest, ErrorKind, GatewayError
from gateway.keys import parse_algorithm
from gateway.door import ProtocolConfigRecord

from .csrattrs import build_csrattrs

log = logging.getLogger("gateway.est")

AUTH_MODES = ("basic", "certificate", "either", "both")
POP_LINKING = ("off", "optional", "required")
DEFAULT_LABEL = "est"
MAX_RETRY_AFTER = 86400
SETTINGS = frozenset({
    "auth", "accept_issued_certificates", "client_trust_anchors", "pop_linking", "csrattrs",
    "csrattrs_auth", "serverkeygen", "serverkeygen_algorithm", "retry_after", "default", "approval",
})


class LabelMisconfigured(GatewayError):
    """A label's stored settings are invalid: the operator must fix them, not the client."""

    kind = ErrorKind.UNAVAILABLE


@dataclass(frozen=True)
class LabelPolicy:
    label: str
    ca_id: str
    profile: str
    auth: str
    accept_issued_certificates: bool
    trust_anchors: tuple[x509.Certificate, ...]
    pop_linking: str
    csrattrs: bytes | None
    csrattrs_auth: bool
    serverkeygen: bool
    serverkeygen_algorithm: str
    retry_after: int
    manual_approval: bool

    @property
    def accepts_basic(self) -> bool:
        return self.auth in ("basic", "either", "both")

    @property
    def accepts_certificates(self) -> bool:
        return self.auth in ("certificate", "either", "both")


def _flag(settings: dict[str, Any], name: str, default: bool) -> bool:
    value = settings.get(name, default)
    if not isinstance(value, bool):
        raise BadRequest(f"{name} must be true or false")
    return value


def _choice(settings: dict[str, Any], name: str, choices: tuple[str, ...], default: str) -> str:
    value = settings.get(name, default)
    if value not in choices:
        raise BadRequest(f"{name} must be one of {list(choices)}")
    return str(value)


def load_anchors(pems: Any) -> tuple[x509.Certificate, ...]:
    """CA certificates from a list of PEM texts (each may hold several)."""
    if pems is None:
        return ()
    if not isinstance(pems, list) or not all(isinstance(p, str) for p in pems):
        raise BadRequest("client_trust_anchors must be a list of PEM texts")
    found: list[x509.Certificate] = []
    for text in pems:
        try:
            found.extend(x509.load_pem_x509_certificates(text.encode()))
        except ValueError:
            raise BadRequest("client_trust_anchors holds text that is not a PEM certificate") from None
    for cert in found:
        try:
            ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            ca = False
        if not ca:
            raise BadRequest(f"trust anchor {cert.subject.rfc4514_string()} is not a CA certificate")
    return tuple(found)


def validate_settings(settings: dict[str, Any]) -> None:
    """Refuse settings a label could not run with (used before storing them)."""
    unknown = set(settings) - SETTINGS
    if unknown:
        raise BadRequest(f"unknown EST setting(s) {sorted(unknown)}; known: {sorted(SETTINGS)}")
    _parse(settings)


def _parse(settings: dict[str, Any]) -> dict[str, Any]:
    retry_after = settings.get("retry_after", 60)
    if not isinstance(retry_after, int) or isinstance(retry_after, bool) or not 1 <= retry_after <= MAX_RETRY_AFTER:
        raise BadRequest(f"retry_after must be a whole number of seconds from 1 to {MAX_RETRY_AFTER}")
    algorithm = settings.get("serverkeygen_algorithm", "EC-P256")
    if not isinstance(algorithm, str):
        raise BadRequest("serverkeygen_algorithm must be a key algorithm name")
    csrattrs = settings.get("csrattrs")
    return {
        "auth": _choice(settings, "auth", AUTH_MODES, "either"),
        "accept_issued_certificates": _flag(settings, "accept_issued_certificates", True),
        "trust_anchors": load_anchors(settings.get("client_trust_anchors")),
        "pop_linking": _choice(settings, "pop_linking", POP_LINKING, "optional"),
        "csrattrs": build_csrattrs(csrattrs) if csrattrs is not None else None,
        "csrattrs_auth": _flag(settings, "csrattrs_auth", False),
        "serverkeygen": _flag(settings, "serverkeygen", True),
        "serverkeygen_algorithm": parse_algorithm(algorithm).name,
        "retry_after": retry_after,
        "default": _flag(settings, "default", False),
    }


def policy_for(record: ProtocolConfigRecord) -> LabelPolicy:
    """The label's policy; a record that cannot be read is the operator's problem (503)."""
    try:
        parsed = _parse(record.settings or {})
    except GatewayError as exc:
        raise LabelMisconfigured(f"EST label {record.id!r} is misconfigured: {exc.detail}") from None
    parsed.pop("default")
    if (record.credentials or {}).get("basic"):
        log.warning("EST label %s still lists Basic users in its configuration (credentials.basic); they are "
                    "not accepted: add them with 'gateway est user add %s <name>'", record.id, record.id)
    return LabelPolicy(
        label=record.id, ca_id=record.ca_id, profile=record.default_profile,
        manual_approval=(record.settings or {}).get("approval") == "manual", **parsed,
    )


def is_default(record: ProtocolConfigRecord) -> bool:
    return (record.settings or {}).get("default") is True
