"""Turn a CSR (or a server-generated public key) plus a profile into a signed certificate.

Pure policy and crypto: no I/O and no clock beyond the default for ``now``. The caller
(the local CA) picks the serial, holds the issuer key and stores the result; every
refusal here is a typed :mod:`gateway.errors` exception with a client-safe message.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import re
import urllib.parse
from dataclasses import dataclass

from asn1crypto import core as asn1
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificatePublicKeyTypes,
)
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID

from ..errors import BadCSR, BadKey, BadRequest, GatewayError, PolicyViolation, Unavailable
from ..keys import KeyDescription, check_key_strength
from ..profiles.model import (
    KEY_USAGE_FIELDS,
    IGNORED_REQUEST_EXTENSIONS,
    MANAGED_EXTENSIONS,
    NAME_ATTRIBUTES,
    UPN_OID,
    Profile,
    add_period,
)
from .backend import CsrPolicy as CsrPolicy  # re-exported: protocols read CSRs through the builder
from .backend import IssueOverrides
from .pop import check_proof_of_possession as check_proof_of_possession
from .pop import repair_legacy_strings
from .signer import IssuerKey, sign_certificate

MAX_CSR_BYTES = 64 * 1024
MAX_SERIAL = 2**159  # RFC 5280: at most 20 octets, positive
UB_COMMON_NAME = 64

_DNS_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_EMAIL_LOCAL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+$")
_URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*$")
_PRINTABLE = re.compile(r"^[A-Za-z0-9 '()+,\-./:=?]*$")
_PRINTABLE_ATTRS = {NameOID.COUNTRY_NAME, NameOID.SERIAL_NUMBER, NameOID.DN_QUALIFIER}
_IA5_ATTRS = {NameOID.EMAIL_ADDRESS, NameOID.DOMAIN_COMPONENT}
_EC_FORBIDDEN_USAGES = {"key_encipherment", "data_encipherment"}  # RFC 5480 section 3
_ATTRIBUTE_LABELS = {  # for messages: the first (RFC 4514) name of each attribute
    oid: short.upper() if len(short) <= 3 or short == "street" else short
    for short, oid in reversed(NAME_ATTRIBUTES.items())
}


@dataclass(frozen=True)
class IssuerContext:
    """The issuing CA as the builder needs it: certificate, key and published URLs."""

    ca_id: str
    certificate: x509.Certificate
    private_key: IssuerKey
    crl_url: str | None = None
    ocsp_url: str | None = None
    ca_issuers_url: str | None = None


def load_csr(data: bytes, *, legacy_strings: bool = False) -> x509.CertificateSigningRequest:
    """Parse a PEM or DER PKCS#10 request; anything unparseable is :class:`BadCSR`.

    ``legacy_strings`` (:class:`CsrPolicy`): a DER request whose subject PrintableStrings
    hold other characters is read with those strings as UTF8String
    (:func:`gateway.ca.pop.repair_legacy_strings`); its proof of possession then needs
    the same policy."""
    if not data:
        raise BadCSR("empty certificate request")
    if len(data) > MAX_CSR_BYTES:
        raise BadCSR("certificate request too large")
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            csr = x509.load_pem_x509_csr(data.strip())
        else:
            csr = x509.load_der_x509_csr(data)
        _ = (csr.subject, csr.extensions)  # force the lazily parsed parts now
    except Exception as exc:  # parsers raise ValueError and a few library-specific types
        repaired = repair_legacy_strings(data) if legacy_strings else data
        if repaired != data:
            return load_csr(repaired)
        raise BadCSR("not a valid PKCS#10 CSR (expected PEM or DER)") from exc
    return csr


def rfc7093_key_identifier(public_key: CertificatePublicKeyTypes) -> bytes:
    """RFC 7093 method 1: leftmost 160 bits of SHA-256 over the subjectPublicKey bits."""
    if isinstance(public_key, rsa.RSAPublicKey):
        bits = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        bits = public_key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
    elif isinstance(public_key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
        bits = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    else:
        raise BadKey(f"unsupported public key type {type(public_key).__name__}")
    return hashlib.sha256(bits).digest()[:20]


def build_certificate(
    *,
    profile: Profile,
    issuer: IssuerContext,
    serial: int,
    public_key: CertificatePublicKeyTypes | None,
    csr: x509.CertificateSigningRequest | None,
    overrides: IssueOverrides = IssueOverrides(),
    now: dt.datetime | None = None,
) -> x509.Certificate:
    """Apply ``profile`` to a request and sign it with ``issuer``.

    ``public_key`` may be None when a CSR is given (its key is used); with server-side
    key generation pass the new public key and ``csr=None`` and put the subject and
    SANs in ``overrides``.
    """
    if not 0 < serial < MAX_SERIAL:
        raise GatewayError("certificate serial must be positive and at most 159 bits")
    _check_issuer(issuer)

    if csr is not None:
        try:
            csr_key = csr.public_key()
        except (UnsupportedAlgorithm, ValueError):
            raise BadKey("the request's public key type is not supported") from None
        if public_key is None:
            public_key = csr_key
        elif _spki(public_key) != _spki(csr_key):
            raise BadCSR("public key does not match the certificate request")
    if public_key is None:
        raise BadRequest("no public key to certify")
    desc = _check_key(profile, public_key)
    if csr is not None:
        check_proof_of_possession(csr, overrides.csr_policy)

    request_exts = _csr_extensions(csr)
    request_sans = _extension_sans(request_exts)
    source_subject = csr.subject if csr is not None else (overrides.subject or x509.Name([]))
    if csr is None and overrides.sans is not None:
        request_sans = list(overrides.sans)

    subject = _subject(profile, source_subject, request_sans, overrides)
    sans = _sans(profile, subject, request_sans, overrides)
    if len(subject) == 0 and not sans:
        raise PolicyViolation("the certificate would have neither a subject nor a subject alternative name")
    extra = _extra_extensions(profile, request_exts, overrides)
    not_before, not_after = _validity(profile, issuer.certificate, overrides, now)

    builder = (
        x509.CertificateBuilder()
        .serial_number(serial)
        .issuer_name(issuer.certificate.subject)
        .subject_name(subject)
        .public_key(public_key)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    builder = builder.add_extension(
        _basic_constraints(profile, issuer.certificate), critical=profile.basic_constraints.critical
    )
    key_usage = _key_usage(profile, desc)
    if key_usage is not None:
        builder = builder.add_extension(key_usage, critical=profile.key_usage_critical)
    if profile.extended_key_usage:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage(list(profile.extended_key_usage)), critical=False
        )
    if sans:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(sans), critical=profile.san.critical or len(subject) == 0
        )
    ids = profile.identifiers
    if ids.subject_key_identifier == "rfc7093":
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier(rfc7093_key_identifier(public_key)), critical=False
        )
    elif ids.subject_key_identifier == "sha1":
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    if ids.authority_key_identifier:
        builder = builder.add_extension(_authority_key_identifier(issuer.certificate), critical=False)
    if ids.crl_distribution_point and issuer.crl_url:
        point = x509.DistributionPoint(
            full_name=[x509.UniformResourceIdentifier(issuer.crl_url)],
            relative_name=None,
            reasons=None,
            crl_issuer=None,
        )
        builder = builder.add_extension(x509.CRLDistributionPoints([point]), critical=False)
    access = []
    if ids.aia_ocsp and issuer.ocsp_url:
        access.append(
            x509.AccessDescription(
                AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(issuer.ocsp_url)
            )
        )
    if ids.aia_ca_issuers and issuer.ca_issuers_url:
        access.append(
            x509.AccessDescription(
                AuthorityInformationAccessOID.CA_ISSUERS,
                x509.UniformResourceIdentifier(issuer.ca_issuers_url),
            )
        )
    if access:
        builder = builder.add_extension(x509.AuthorityInformationAccess(access), critical=False)
    for ext in extra:
        builder = builder.add_extension(ext.value, critical=ext.critical)

    return sign_certificate(builder, issuer.private_key)


# -- keys and issuer ---------------------------------------------------------------


def _spki(key: CertificatePublicKeyTypes) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _check_issuer(issuer: IssuerContext) -> None:
    """Catch a miswired issuer before signing something no one can verify."""
    cert = issuer.certificate
    if _spki(cert.public_key()) != _spki(issuer.private_key.public_key()):
        raise GatewayError(f"CA {issuer.ca_id}: private key does not match its certificate")
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        bc = None
    if bc is None or not bc.ca:
        raise GatewayError(f"CA {issuer.ca_id}: certificate is not a CA certificate")


def _check_key(profile: Profile, public_key: CertificatePublicKeyTypes) -> KeyDescription:
    desc = check_key_strength(public_key)
    if desc.name not in profile.key_policy.allowed:
        allowed = ", ".join(sorted(profile.key_policy.allowed))
        raise BadKey(f"key {desc.name} is not allowed by profile {profile.name} (allowed: {allowed})")
    return desc


def _key_usage(profile: Profile, desc: KeyDescription) -> x509.KeyUsage | None:
    usages = set(profile.key_usage)
    if not usages:
        return None
    if desc.family == "EC":
        usages -= _EC_FORBIDDEN_USAGES
        if not usages:
            raise BadKey(f"profile {profile.name} key usages do not fit an EC key")
    flags = {name: name in usages for name in KEY_USAGE_FIELDS}
    return x509.KeyUsage(**flags)


def _basic_constraints(profile: Profile, issuer_cert: x509.Certificate) -> x509.BasicConstraints:
    policy = profile.basic_constraints
    if not policy.ca:
        return x509.BasicConstraints(ca=False, path_length=None)
    issuer_bc = issuer_cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    path_length = policy.path_length
    if issuer_bc.path_length is not None:
        if issuer_bc.path_length == 0:
            raise PolicyViolation("the issuing CA may not issue CA certificates (path length 0)")
        ceiling = issuer_bc.path_length - 1
        path_length = ceiling if path_length is None else min(path_length, ceiling)
    return x509.BasicConstraints(ca=True, path_length=path_length)


def _authority_key_identifier(issuer_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    try:
        ski = issuer_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        issuer_key = issuer_cert.public_key()
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key)  # type: ignore[arg-type]
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


# -- request extensions ------------------------------------------------------------


def _csr_extensions(csr: x509.CertificateSigningRequest | None) -> list[x509.Extension[x509.ExtensionType]]:
    if csr is None:
        return []
    try:
        return list(csr.extensions)
    except Exception as exc:  # malformed or duplicate extensions
        raise BadCSR(f"certificate request extensions are malformed: {type(exc).__name__}") from None


def _extension_sans(exts: list[x509.Extension[x509.ExtensionType]]) -> list[x509.GeneralName]:
    for ext in exts:
        if isinstance(ext.value, x509.SubjectAlternativeName):
            return list(ext.value)
    return []


def _extra_extensions(
    profile: Profile,
    request_exts: list[x509.Extension[x509.ExtensionType]],
    overrides: IssueOverrides,
) -> list[x509.Extension[x509.ExtensionType]]:
    """Request extensions the profile lets through; overrides win over the CSR."""
    policy = profile.extensions
    chosen: dict[x509.ObjectIdentifier, x509.Extension[x509.ExtensionType]] = {}

    def consider(ext: x509.Extension[x509.ExtensionType], origin: str) -> None:
        if ext.oid in policy.allowed:
            chosen[ext.oid] = ext
        elif not policy.ignore_unknown_extensions:
            raise PolicyViolation(
                f"{origin} extension {ext.oid.dotted_string} is not allowed by profile {profile.name}"
            )

    for ext in request_exts:
        if isinstance(ext.value, x509.BasicConstraints) and ext.value.ca and not profile.basic_constraints.ca:
            raise PolicyViolation(f"profile {profile.name} does not issue CA certificates")
        if ext.oid in MANAGED_EXTENSIONS or ext.oid in IGNORED_REQUEST_EXTENSIONS:
            continue  # understood: the profile decides these
        consider(ext, "request")
    for ext in overrides.extensions:
        if ext.oid in MANAGED_EXTENSIONS:
            raise PolicyViolation(
                f"extension {ext.oid.dotted_string} is set by the profile and cannot be overridden"
            )
        consider(ext, "override")
    return list(chosen.values())


# -- subject -----------------------------------------------------------------------


def _first(values: list[str]) -> str | None:
    return values[0] if values else None


def _builtin_variables(source: x509.Name, sans: list[x509.GeneralName]) -> dict[str, str]:
    """``<cn>``, ``<csr.ATTR>``, ``<csr.email>``, ``<csr.dns>`` ... from the request (lower-case keys)."""
    found: dict[str, str] = {}
    for attr in source:
        if not isinstance(attr.value, str):
            continue  # x500UniqueIdentifier (a BIT STRING) is no text to substitute
        value = attr.value
        found.setdefault(f"csr.{attr.oid.dotted_string}", value)
        for short, oid in NAME_ATTRIBUTES.items():
            if oid == attr.oid:
                found.setdefault(f"csr.{short}", value)
    if "csr.cn" in found:
        found["cn"] = found["csr.cn"]
    email = _first([n.value for n in sans if isinstance(n, x509.RFC822Name)])
    email = email or found.get("csr.emailaddress")
    for key, san_value in (
        ("csr.email", email),
        ("csr.dns", _first([n.value for n in sans if isinstance(n, x509.DNSName)])),
        ("csr.ip", _first([str(n.value) for n in sans if isinstance(n, x509.IPAddress)])),
        ("csr.uri", _first([n.value for n in sans if isinstance(n, x509.UniformResourceIdentifier)])),
        ("csr.upn", _first([u for u in (_upn(n) for n in sans) if u])),
    ):
        if san_value:
            found[key] = san_value
    return found


def _render_format(
    profile: Profile, source: x509.Name, sans: list[x509.GeneralName], overrides: IssueOverrides
) -> x509.Name:
    builtins = _builtin_variables(source, sans)

    def lookup(name: str) -> str:
        if name in overrides.variables:
            return overrides.variables[name]
        value = builtins.get(name.lower())
        if value is None:
            raise PolicyViolation(
                f"subject format of profile {profile.name} needs <{name}>, which the request lacks"
            )
        return value

    rdns = []
    for rdn in profile.subject.template:
        attrs = []
        for tmpl in rdn:
            value = "".join(lookup(text) if is_var else text for is_var, text in tmpl.parts)
            attrs.append(_name_attribute(tmpl.oid, value))
        rdns.append(x509.RelativeDistinguishedName(attrs))
    return x509.Name(list(reversed(rdns)))  # written most specific first (RFC 4514)


def _name_attribute(oid: x509.ObjectIdentifier, value: str) -> x509.NameAttribute[str]:
    label = _ATTRIBUTE_LABELS.get(oid, oid.dotted_string)
    if not value:
        raise PolicyViolation(f"subject attribute {label} would be empty")
    if oid in _PRINTABLE_ATTRS and not _PRINTABLE.match(value):
        raise PolicyViolation(f"subject attribute {label} has characters outside PrintableString")
    if oid in _IA5_ATTRS and not value.isascii():
        raise PolicyViolation(f"subject attribute {label} must be ASCII")
    try:
        return x509.NameAttribute(oid, value)
    except ValueError as exc:
        raise PolicyViolation(f"subject attribute {label}: {exc}") from None


def _subject(
    profile: Profile, source: x509.Name, request_sans: list[x509.GeneralName], overrides: IssueOverrides
) -> x509.Name:
    mode = profile.subject.mode
    if mode == "csr":
        subject = overrides.subject if overrides.subject is not None else source
    elif mode == "override":
        if overrides.subject is None:
            raise PolicyViolation(f"profile {profile.name} needs the subject supplied by the enrollment")
        subject = overrides.subject
    else:
        subject = _render_format(profile, source, request_sans, overrides)
    cns = subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if profile.subject.require_cn and not cns:
        raise PolicyViolation(f"profile {profile.name} requires a common name")
    for cn in cns:
        if len(cn.value) > UB_COMMON_NAME:
            raise PolicyViolation(f"common name longer than {UB_COMMON_NAME} characters")
    return subject


# -- subject alternative names -------------------------------------------------------


def _upn(name: x509.GeneralName) -> str | None:
    if not isinstance(name, x509.OtherName) or name.type_id != UPN_OID:
        return None
    try:
        value = asn1.UTF8String.load(name.value, strict=True).native
    except ValueError:
        return None
    return value if isinstance(value, str) else None


def _san_type(name: x509.GeneralName) -> str:
    if isinstance(name, x509.DNSName):
        return "dns"
    if isinstance(name, x509.IPAddress):
        return "ip"
    if isinstance(name, x509.RFC822Name):
        return "email"
    if isinstance(name, x509.UniformResourceIdentifier):
        return "uri"
    if isinstance(name, x509.OtherName) and name.type_id == UPN_OID:
        return "upn"
    if isinstance(name, x509.OtherName):
        return f"otherName {name.type_id.dotted_string}"
    if isinstance(name, x509.DirectoryName):
        return "directoryName"
    return "registeredID"


def is_valid_dns_name(name: str, *, allow_wildcard: bool = False) -> bool:
    """LDH host name (A-labels for IDNs); ``*.`` only as the whole leftmost label."""
    if not name or len(name) > 253 or not name.isascii():
        return False
    labels = name.split(".")
    if allow_wildcard and labels[0] == "*":
        labels = labels[1:]
        if len(labels) < 2:
            return False
    if labels[-1].isdigit():
        return False  # looks like an IPv4 address, not a host name
    return all(_DNS_LABEL.match(label) for label in labels)


def _check_general_name(name: x509.GeneralName, profile: Profile) -> None:
    kind = _san_type(name)
    if kind not in profile.san.allowed_types:
        raise PolicyViolation(
            f"subject alternative name type {kind} is not allowed by profile {profile.name}"
        )
    if isinstance(name, x509.DNSName):
        if not is_valid_dns_name(name.value, allow_wildcard=True):
            raise PolicyViolation(f"invalid DNS name {name.value!r}")
    elif isinstance(name, x509.IPAddress):
        if not isinstance(name.value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
            raise PolicyViolation("an IP address SAN must be a single address, not a network")
    elif isinstance(name, x509.RFC822Name):
        local, sep, domain = name.value.rpartition("@")
        if not sep or not _EMAIL_LOCAL.match(local) or not is_valid_dns_name(domain):
            raise PolicyViolation(f"invalid e-mail address {name.value!r}")
    elif isinstance(name, x509.UniformResourceIdentifier):
        value = name.value
        parts = urllib.parse.urlsplit(value) if value.isascii() and value.isprintable() else None
        if parts is None or " " in value or not _URI_SCHEME.match(parts.scheme or ""):
            raise PolicyViolation(f"invalid URI {value!r}")
    elif kind == "upn":
        upn = _upn(name)
        if not upn or "@" not in upn:
            raise PolicyViolation("invalid user principal name")


def _san_key(name: x509.GeneralName) -> tuple[str, str]:
    if isinstance(name, (x509.DNSName, x509.RFC822Name)):
        return (_san_type(name), name.value.lower())
    if isinstance(name, x509.OtherName):
        return (_san_type(name), name.value.hex())
    return (_san_type(name), str(name.value))


def _sans(
    profile: Profile, subject: x509.Name, request_sans: list[x509.GeneralName], overrides: IssueOverrides
) -> list[x509.GeneralName]:
    mode = profile.san.mode
    if mode == "none":
        return []
    override = list(overrides.sans) if overrides.sans is not None else None
    if mode == "csr":
        names = list(override if override is not None else request_sans)
    elif mode == "override":
        names = list(override or [])
    else:
        names = request_sans + (override or [])
    if profile.san.cn_as_dns:
        for cn in subject.get_attributes_for_oid(NameOID.COMMON_NAME):
            value = cn.value
            if isinstance(value, str) and "." in value and is_valid_dns_name(value, allow_wildcard=True):
                names.append(x509.DNSName(value))
    unique: dict[tuple[str, str], x509.GeneralName] = {}
    for name in names:
        _check_general_name(name, profile)
        unique.setdefault(_san_key(name), name)
    if profile.san.required and not unique:
        raise PolicyViolation(f"profile {profile.name} requires at least one subject alternative name")
    return list(unique.values())


# -- validity ----------------------------------------------------------------------


def _utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc).replace(microsecond=0)


def _validity(
    profile: Profile, issuer_cert: x509.Certificate, overrides: IssueOverrides, now: dt.datetime | None
) -> tuple[dt.datetime, dt.datetime]:
    """Requested lifetimes are checked; only the profile default is clamped to the CA."""
    now = _utc(now or dt.datetime.now(dt.timezone.utc))
    ca_start, ca_end = issuer_cert.not_valid_before_utc, issuer_cert.not_valid_after_utc
    if now >= ca_end:
        raise Unavailable("the issuing CA certificate has expired")
    if overrides.not_after is not None and overrides.validity is not None:
        raise BadRequest("ask for either a validity or a not_after, not both")

    if overrides.not_before is not None:
        start = _utc(overrides.not_before)
        not_before = start
    else:
        start = now
        not_before = now - profile.backdate
    not_before = max(not_before, ca_start)
    if start > ca_end:  # refused below anyway; checked first so that start + a period cannot overflow
        raise PolicyViolation("validity beyond the issuing CA")

    requested = True
    if overrides.not_after is not None:
        not_after = _utc(overrides.not_after)
    elif overrides.validity is not None:
        if overrides.validity <= dt.timedelta(0):
            raise BadRequest("requested validity must be positive")
        not_after = _utc(start + overrides.validity)
    else:
        requested = False
        not_after = add_period(start, profile.validity)

    if requested:
        if not_after > add_period(start, profile.max_validity):
            raise PolicyViolation(f"requested validity exceeds the maximum of profile {profile.name}")
        if not_after > ca_end:
            raise PolicyViolation("validity beyond the issuing CA")
        if not_after <= now:
            raise PolicyViolation("requested not_after is in the past")
    else:
        not_after = min(not_after, ca_end)
    if not_after <= not_before:
        raise PolicyViolation("not_after must be later than not_before")
    return not_before, not_after
