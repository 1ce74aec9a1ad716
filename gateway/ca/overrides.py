"""JSON form of :class:`IssueOverrides`, for requests held in the store and the admin API
(whose own field check does not take ``csr_policy``: only a protocol configuration sets it)."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
from typing import Any

from cryptography import x509

from ..errors import BadRequest
from .backend import CsrPolicy, IssueOverrides

_SAN_TYPES = {"dns", "ip", "email", "uri"}


def parse_san(value: str) -> x509.GeneralName:
    """``DNS:host``, ``IP:10.0.0.1``, ``email:a@b``, ``URI:https://...`` to a GeneralName."""
    kind, sep, rest = value.partition(":")
    kind = kind.strip().lower()
    if not sep or kind not in _SAN_TYPES or not rest:
        raise BadRequest(f"SAN {value!r} must be TYPE:value with TYPE one of DNS, IP, email, URI")
    if kind == "dns":
        return x509.DNSName(rest)
    if kind == "ip":
        try:
            return x509.IPAddress(ipaddress.ip_address(rest))
        except ValueError:
            raise BadRequest(f"{rest!r} is not an IP address") from None
    if kind == "email":
        return x509.RFC822Name(rest)
    return x509.UniformResourceIdentifier(rest)


def describe_name(name: x509.GeneralName) -> str:
    """Any GeneralName as ``TYPE:value`` for listings (UPN and other names included)."""
    try:
        return format_san(name)
    except BadRequest:
        if isinstance(name, x509.OtherName):
            return f"otherName:{name.type_id.dotted_string}"
        return f"{type(name).__name__}:{name.value!r}"


def format_san(name: x509.GeneralName) -> str:
    if isinstance(name, x509.DNSName):
        return f"DNS:{name.value}"
    if isinstance(name, x509.IPAddress):
        return f"IP:{name.value}"
    if isinstance(name, x509.RFC822Name):
        return f"email:{name.value}"
    if isinstance(name, x509.UniformResourceIdentifier):
        return f"URI:{name.value}"
    raise BadRequest(f"SAN type {type(name).__name__} cannot be stored")


def parse_subject(value: str) -> x509.Name:
    try:
        return x509.Name.from_rfc4514_string(value)
    except ValueError as exc:
        raise BadRequest(f"subject {value!r} is not an RFC 4514 name") from exc


def _time(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"{value!r} is not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        raise BadRequest(f"time {value!r} needs a UTC offset")
    return parsed.astimezone(dt.timezone.utc)


def overrides_to_json(o: IssueOverrides) -> dict[str, Any]:
    return {
        "subject": o.subject.rfc4514_string() if o.subject is not None else None,
        "sans": [format_san(n) for n in o.sans] if o.sans is not None else None,
        "not_before": o.not_before.isoformat() if o.not_before else None,
        "not_after": o.not_after.isoformat() if o.not_after else None,
        "validity_seconds": o.validity.total_seconds() if o.validity else None,
        "extensions": [
            {
                "oid": e.oid.dotted_string,
                "critical": e.critical,
                "value": base64.b64encode(e.value.public_bytes()).decode(),
            }
            for e in o.extensions
        ],
        "variables": dict(o.variables),
        **({"csr_policy": {"sha1_signatures": o.csr_policy.sha1_signatures,
                           "legacy_strings": o.csr_policy.legacy_strings}}
           if o.csr_policy != CsrPolicy() else {}),
    }


MAX_VALIDITY = dt.timedelta(days=36525)
"""Longest validity override (100 years): certificate dates end in 9999, and a datetime
plus an unbounded period overflows (found by fuzzing the admin API)."""


def overrides_from_json(data: dict[str, Any]) -> IssueOverrides:
    """Inverse of :func:`overrides_to_json`; also the admin API's request-override format."""
    if not isinstance(data, dict):
        raise BadRequest("overrides must be an object")
    unknown = set(data) - {
        "subject", "sans", "not_before", "not_after", "validity_seconds", "extensions", "variables", "csr_policy",
    }
    if unknown:
        raise BadRequest(f"unknown override(s) {sorted(unknown)}")
    sans = data.get("sans")
    exts = []
    for e in data.get("extensions") or []:
        try:
            oid = x509.ObjectIdentifier(e["oid"])
            value = x509.UnrecognizedExtension(oid, base64.b64decode(e["value"], validate=True))
            exts.append(x509.Extension(oid, bool(e.get("critical", False)), value))
        except (KeyError, ValueError, TypeError) as exc:
            raise BadRequest("extension overrides need oid and base64 value") from exc
    validity = data.get("validity_seconds")
    try:
        period = dt.timedelta(seconds=float(validity)) if validity else None
    except (OverflowError, ValueError, TypeError):  # 1e300, 1e400 (inf) or a non-number: not a period
        period = MAX_VALIDITY * 2
    if period is not None and period > MAX_VALIDITY:  # beyond it, not_before + validity overflows
        raise BadRequest(f"validity_seconds must be a number of seconds up to {int(MAX_VALIDITY.total_seconds())}")
    variables = data.get("variables") or {}
    if not isinstance(variables, dict) or not all(isinstance(v, str) for v in variables.values()):
        raise BadRequest("variables must map names to strings")
    policy = data.get("csr_policy") or {}
    if not isinstance(policy, dict) or set(policy) - {"sha1_signatures", "legacy_strings"} \
            or not all(isinstance(v, bool) for v in policy.values()):
        raise BadRequest("csr_policy must map sha1_signatures and legacy_strings to true or false")
    return IssueOverrides(
        subject=parse_subject(data["subject"]) if data.get("subject") else None,
        sans=tuple(parse_san(s) for s in sans) if sans is not None else None,
        not_before=_time(data.get("not_before")),
        not_after=_time(data.get("not_after")),
        validity=period,
        extensions=tuple(exts),
        variables=dict(variables),
        csr_policy=CsrPolicy(**policy),
    )
