"""Certificate profiles: what a certificate issued under a name may contain.

A profile is data, one TOML file per profile, validated completely when loaded
(:mod:`gateway.profiles.loader`) so that a typo fails at start-up rather than on the
first request. Unknown keys are errors. The schema, with defaults::

    name = "tls-server"           # required; equals the file stem; [a-z0-9][a-z0-9_-]{1,40}
    description = ""              # free text
    validity = "P90D"             # required; ISO 8601 duration, the default lifetime
    max_validity = "P397D"        # longest lifetime a request may ask for (default: validity)
    backdate = "PT1M"             # not_before = now - backdate (days/hours/minutes only)
    key_usage = []                # KeyUsage field names: digital_signature,
                                  # content_commitment (alias non_repudiation),
                                  # key_encipherment, data_encipherment, key_agreement,
                                  # key_cert_sign, crl_sign, encipher_only, decipher_only
    key_usage_critical = true
    extended_key_usage = []       # server_auth, client_auth, code_signing,
                                  # email_protection, time_stamping, ocsp_signing,
                                  # smartcard_logon, kdc_auth, ipsec_ike, any,
                                  # or dotted OIDs

    [key_policy]
    allowed = [...all of gateway.keys.KEY_ALGORITHMS...]   # RSA below 2048 never allowed

    [basic_constraints]
    ca = false
    path_length = 0               # only with ca = true; omitted = unlimited
    critical = true

    [subject]
    mode = "csr"                  # csr | override | format
    format = "CN=<cn>,OU=Devices" # only (and required) with mode = "format"
    require_cn = false

    [san]
    mode = "csr"                  # csr | override | merge | none
    cn_as_dns = false             # add the CN as a DNS SAN when it looks like a hostname
    allowed_types = ["dns", "ip", "email", "uri", "upn"]
    required = false              # at least one SAN after policy
    critical = false              # forced true when the subject ends up empty

    [extensions]
    allowed = []                  # dotted OIDs of extra request extensions to copy
    ignore_unknown_extensions = false   # drop (true) or refuse (false) the others

    [identifiers]
    authority_key_identifier = true
    subject_key_identifier = "rfc7093"  # rfc7093 | sha1 | none
    crl_distribution_point = true
    aia_ocsp = true
    aia_ca_issuers = true

Subject modes: ``csr`` takes the request's subject (an explicit ``overrides.subject``
from the protocol layer wins); ``override`` requires ``overrides.subject``; ``format``
builds the subject from an RFC 4514 style string, most specific RDN first, whose
``<variables>`` come from ``overrides.variables`` or the built-ins ``<cn>``,
``<csr.ATTR>`` (any attribute short name such as ``csr.O`` or ``csr.serialNumber``),
``<csr.email>``, ``<csr.dns>``, ``<csr.ip>``, ``<csr.uri>`` and ``<csr.upn>``.

SAN modes: ``csr`` takes the request's SANs (``overrides.sans`` wins when given);
``override`` takes only ``overrides.sans``; ``merge`` takes both; ``none`` issues no SAN.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Union

import isodate
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID

Period = Union[dt.timedelta, isodate.Duration]
"""An ISO 8601 duration: a timedelta, or an isodate Duration when it has years/months."""

PROFILE_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{1,40}$")

KEY_USAGE_FIELDS: tuple[str, ...] = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
    "encipher_only",
    "decipher_only",
)
KEY_USAGE_ALIASES = {"non_repudiation": "content_commitment"}

EKU_NAMES: dict[str, x509.ObjectIdentifier] = {
    "server_auth": ExtendedKeyUsageOID.SERVER_AUTH,
    "client_auth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "code_signing": ExtendedKeyUsageOID.CODE_SIGNING,
    "email_protection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "time_stamping": ExtendedKeyUsageOID.TIME_STAMPING,
    "ocsp_signing": ExtendedKeyUsageOID.OCSP_SIGNING,
    "smartcard_logon": ExtendedKeyUsageOID.SMARTCARD_LOGON,
    "kdc_auth": ExtendedKeyUsageOID.KERBEROS_PKINIT_KDC,
    "ipsec_ike": ExtendedKeyUsageOID.IPSEC_IKE,
    "any": ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
}

SAN_TYPES: tuple[str, ...] = ("dns", "ip", "email", "uri", "upn")
SUBJECT_MODES: tuple[str, ...] = ("csr", "override", "format")
SAN_MODES: tuple[str, ...] = ("csr", "override", "merge", "none")
SKI_METHODS: tuple[str, ...] = ("rfc7093", "sha1", "none")

UPN_OID = x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.3")
"""Microsoft User Principal Name, carried as an otherName SAN."""

# RFC 4514 short names (and a few common long ones) accepted in subject formats,
# keyed by lower case. Dotted OIDs are accepted too.
NAME_ATTRIBUTES: dict[str, x509.ObjectIdentifier] = {
    "cn": NameOID.COMMON_NAME,
    "c": NameOID.COUNTRY_NAME,
    "l": NameOID.LOCALITY_NAME,
    "st": NameOID.STATE_OR_PROVINCE_NAME,
    "street": NameOID.STREET_ADDRESS,
    "o": NameOID.ORGANIZATION_NAME,
    "ou": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "dc": NameOID.DOMAIN_COMPONENT,
    "uid": NameOID.USER_ID,
    "serialnumber": NameOID.SERIAL_NUMBER,
    "emailaddress": NameOID.EMAIL_ADDRESS,
    "e": NameOID.EMAIL_ADDRESS,
    "sn": NameOID.SURNAME,
    "surname": NameOID.SURNAME,
    "gn": NameOID.GIVEN_NAME,
    "givenname": NameOID.GIVEN_NAME,
    "title": NameOID.TITLE,
    "initials": NameOID.INITIALS,
    "pseudonym": NameOID.PSEUDONYM,
    "generationqualifier": NameOID.GENERATION_QUALIFIER,
    "dnqualifier": NameOID.DN_QUALIFIER,
    "postalcode": NameOID.POSTAL_CODE,
    "businesscategory": NameOID.BUSINESS_CATEGORY,
    "organizationidentifier": NameOID.ORGANIZATION_IDENTIFIER,
}


def add_period(when: dt.datetime, period: Period) -> dt.datetime:
    """``when + period``, calendar-aware for years and months."""
    result = when + period
    assert isinstance(result, dt.datetime)
    return result


def format_period(period: Period) -> str:
    """Back to ISO 8601 text, for display and error messages."""
    return str(isodate.duration_isoformat(period))


@dataclass(frozen=True)
class KeyPolicy:
    allowed: frozenset[str]
    """Canonical algorithm names from :data:`gateway.keys.KEY_ALGORITHMS`."""


@dataclass(frozen=True)
class BasicConstraintsPolicy:
    ca: bool = False
    path_length: int | None = None
    critical: bool = True


@dataclass(frozen=True)
class AttributeTemplate:
    """One ``TYPE=value`` of a subject format; ``parts`` alternate literals and variables."""

    oid: x509.ObjectIdentifier
    parts: tuple[tuple[bool, str], ...]  # (is_variable, text)

    @property
    def variables(self) -> tuple[str, ...]:
        return tuple(text for is_var, text in self.parts if is_var)


SubjectTemplate = tuple[tuple[AttributeTemplate, ...], ...]
"""RDNs in written order (most specific first, as in RFC 4514); each may be multi-valued."""

_VARIABLE_RE = re.compile(r"[A-Za-z0-9_.-]+")


def _split_unescaped(text: str, sep: str) -> list[str]:
    """Split on ``sep`` unless backslash-escaped; escapes are kept for the next pass."""
    pieces, current, i = [], [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            current.append(text[i : i + 2])
            i += 2
            continue
        if ch == sep:
            pieces.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    pieces.append("".join(current))
    return pieces


def _parse_value(raw: str) -> tuple[tuple[bool, str], ...]:
    parts: list[tuple[bool, str]] = []
    literal: list[str] = []
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch == "\\":
            if i + 1 >= len(raw):
                raise ValueError("dangling backslash")
            literal.append(raw[i + 1])
            i += 2
        elif ch == "<":
            end = raw.find(">", i)
            if end < 0:
                raise ValueError("unclosed '<' in value")
            name = raw[i + 1 : end]
            if not _VARIABLE_RE.fullmatch(name):
                raise ValueError(f"bad variable name <{name}>")
            if literal:
                parts.append((False, "".join(literal)))
                literal = []
            parts.append((True, name))
            i = end + 1
        elif ch == ">":
            raise ValueError("unmatched '>' in value")
        else:
            literal.append(ch)
            i += 1
    if literal:
        parts.append((False, "".join(literal)))
    return tuple(parts)


def parse_subject_format(text: str) -> SubjectTemplate:
    """Parse ``CN=<cn>,OU=Devices,O=Example``; raises ValueError saying what is wrong."""
    rdns: list[tuple[AttributeTemplate, ...]] = []
    for rdn_text in _split_unescaped(text, ","):
        attrs: list[AttributeTemplate] = []
        for attr_text in _split_unescaped(rdn_text, "+"):
            kv = _split_unescaped(attr_text, "=")
            if len(kv) < 2:
                raise ValueError(f"{attr_text.strip()!r} is not TYPE=value")
            attr_type, raw_value = kv[0].strip(), "=".join(kv[1:]).strip()
            oid = NAME_ATTRIBUTES.get(attr_type.lower())
            if oid is None:
                if not re.fullmatch(r"[0-2](\.[0-9]+)+", attr_type):
                    raise ValueError(f"unknown attribute type {attr_type!r}")
                oid = x509.ObjectIdentifier(attr_type)
            parts = _parse_value(raw_value)
            if not parts:
                raise ValueError(f"empty value for {attr_type}")
            attrs.append(AttributeTemplate(oid, parts))
        rdns.append(tuple(attrs))
    return tuple(rdns)


@dataclass(frozen=True)
class SubjectPolicy:
    mode: str = "csr"
    format: str | None = None
    require_cn: bool = False
    template: SubjectTemplate = ()
    """``format`` parsed at load time (empty unless mode is ``format``)."""


@dataclass(frozen=True)
class SanPolicy:
    mode: str = "csr"
    cn_as_dns: bool = False
    allowed_types: frozenset[str] = frozenset(SAN_TYPES)
    required: bool = False
    critical: bool = False


@dataclass(frozen=True)
class ExtensionPolicy:
    allowed: frozenset[x509.ObjectIdentifier] = frozenset()
    ignore_unknown_extensions: bool = False


@dataclass(frozen=True)
class IdentifierPolicy:
    authority_key_identifier: bool = True
    subject_key_identifier: str = "rfc7093"
    crl_distribution_point: bool = True
    aia_ocsp: bool = True
    aia_ca_issuers: bool = True


@dataclass(frozen=True)
class Profile:
    """One validated certificate profile; build it with :mod:`gateway.profiles.loader`."""

    name: str
    description: str
    validity: Period
    max_validity: Period
    backdate: dt.timedelta
    key_usage: frozenset[str]
    key_usage_critical: bool
    extended_key_usage: tuple[x509.ObjectIdentifier, ...]
    key_policy: KeyPolicy
    basic_constraints: BasicConstraintsPolicy
    subject: SubjectPolicy
    san: SanPolicy
    extensions: ExtensionPolicy
    identifiers: IdentifierPolicy


MANAGED_EXTENSIONS: frozenset[x509.ObjectIdentifier] = frozenset(
    {
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.EXTENDED_KEY_USAGE,
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.SUBJECT_KEY_IDENTIFIER,
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
        ExtensionOID.CRL_DISTRIBUTION_POINTS,
        ExtensionOID.AUTHORITY_INFORMATION_ACCESS,
    }
)
"""Extensions the profile itself decides; a request can never supply them verbatim."""

IGNORED_REQUEST_EXTENSIONS: frozenset[x509.ObjectIdentifier] = frozenset(
    {
        x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2"),  # Microsoft certificate template name
        x509.ObjectIdentifier("1.3.6.1.4.1.311.21.7"),  # Microsoft certificate template (v2)
    }
)
"""Request extensions that are understood and deliberately dropped (Windows clients send them)."""
