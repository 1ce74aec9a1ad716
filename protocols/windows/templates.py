"""Windows certificate templates, built from a template's settings and its gateway profile.

What Windows reads from an MS-XCEP policy (flags, key attributes, extensions) is derived
here once, from the same profile the CA issues under, so what a client is told to ask
for and what the gateway will issue cannot drift apart. The flag values are MS-CRTD's
(``msPKI-Enrollment-Flag``, ``msPKI-Certificate-Name-Flag``, ``msPKI-Private-Key-Flag``,
``flags``), which MS-XCEP carries unchanged.

API (W2's ces.py uses it): :func:`build_template` -> :class:`Template`;
:func:`template_information` (the v2 template extension a certificate issued under the
template carries, OID :data:`TEMPLATE_INFORMATION`), :func:`template_name_extension`
(the v1 one, :data:`TEMPLATE_NAME`); ``Template.settings.may_enroll(caller_name)``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import isodate
from asn1crypto import core
from cryptography import x509
from cryptography.x509.oid import ExtensionOID

from gateway.errors import ConfigError
from gateway.profiles import Profile

from .settings import TemplateSettings

TEMPLATE_NAME = "1.3.6.1.4.1.311.20.2"  # szOID_ENROLL_CERTTYPE_EXTENSION (v1 templates)
TEMPLATE_INFORMATION = "1.3.6.1.4.1.311.21.7"  # szOID_CERTIFICATE_TEMPLATE (v2 and later)
APPLICATION_POLICIES = "1.3.6.1.4.1.311.21.10"  # szOID_APPLICATION_CERT_POLICIES

# MS-XCEP 3.1.4.1.3.16 OID groups
GROUP_HASH, GROUP_PUBLIC_KEY, GROUP_EXTENSION, GROUP_EKU, GROUP_TEMPLATE = 1, 3, 6, 7, 9

# msPKI-Certificate-Name-Flag
ENROLLEE_SUPPLIES_SUBJECT = 0x00000001
OLD_CERT_SUPPLIES_SUBJECT_AND_ALT_NAME = 0x00000008
ENROLLEE_SUPPLIES_SUBJECT_ALT_NAME = 0x00010000
SUBJECT_ALT_REQUIRE_UPN = 0x02000000
SUBJECT_ALT_REQUIRE_DNS = 0x08000000
SUBJECT_REQUIRE_DNS_AS_CN = 0x10000000
SUBJECT_REQUIRE_COMMON_NAME = 0x40000000
# msPKI-Enrollment-Flag
INCLUDE_SYMMETRIC_ALGORITHMS = 0x00000001
AUTO_ENROLLMENT = 0x00000020
PREVIOUS_APPROVAL_VALIDATE_REENROLLMENT = 0x00000040
ALLOW_PREVIOUS_APPROVAL_KEYBASEDRENEWAL_VALIDATE_REENROLLMENT = 0x00010000
# msPKI-Private-Key-Flag
EXPORTABLE_KEY = 0x00000010
CLIENT_VERSION_MASK = 0x0F000000
SERVER_VERSION_MASK = 0x000F0000
# flags (general)
GENERAL_AUTO_ENROLLMENT = 0x00000020
GENERAL_MACHINE_TYPE = 0x00000040
GENERAL_ADD_TEMPLATE_NAME = 0x00000200
GENERAL_IS_MODIFIED = 0x00020000

AT_KEYEXCHANGE, AT_SIGNATURE = 1, 2

HASH_OIDS = {
    "sha256": ("2.16.840.1.101.3.4.2.1", "sha256"),
    "sha384": ("2.16.840.1.101.3.4.2.2", "sha384"),
    "sha512": ("2.16.840.1.101.3.4.2.3", "sha512"),
}
RSA_OID = ("1.2.840.113549.1.1.1", "RSA")
EC_CURVE_OIDS = {  # CNG algorithm names, keyed by curve size
    256: ("1.2.840.10045.3.1.7", "ECDSA_P256"),
    384: ("1.3.132.0.34", "ECDSA_P384"),
    521: ("1.3.132.0.35", "ECDSA_P521"),
}
LEGACY_PROVIDERS = ("Microsoft Enhanced Cryptographic Provider v1.0", "Microsoft Base Cryptographic Provider v1.0")
KSP_PROVIDERS = ("Microsoft Software Key Storage Provider",)

EXTENSION_NAMES = {
    TEMPLATE_NAME: "Certificate Template Name",
    TEMPLATE_INFORMATION: "Certificate Template Information",
    APPLICATION_POLICIES: "Application Policies",
    ExtensionOID.EXTENDED_KEY_USAGE.dotted_string: "Enhanced Key Usage",
    ExtensionOID.KEY_USAGE.dotted_string: "Key Usage",
}
EKU_NAMES = {
    "1.3.6.1.5.5.7.3.1": "Server Authentication",
    "1.3.6.1.5.5.7.3.2": "Client Authentication",
    "1.3.6.1.5.5.7.3.3": "Code Signing",
    "1.3.6.1.5.5.7.3.4": "Secure Email",
    "1.3.6.1.5.5.7.3.8": "Time Stamping",
    "1.3.6.1.5.5.7.3.9": "OCSP Signing",
    "1.3.6.1.4.1.311.20.2.2": "Smart Card Logon",
    "1.3.6.1.5.2.3.5": "KDC Authentication",
    "1.3.6.1.5.5.7.3.17": "IP security IKE intermediate",
    "2.5.29.37.0": "Any Purpose",
}


@dataclass(frozen=True)
class TemplateExtension:
    oid: str
    critical: bool
    value: bytes


@dataclass(frozen=True)
class Template:
    settings: TemplateSettings
    profile: Profile
    validity_seconds: int
    renewal_seconds: int
    min_key_bits: int
    key_spec: int
    key_algorithm: tuple[str, str]  # (OID, CNG name), referenced by schema 3 templates
    hash_algorithm: tuple[str, str] | None  # schema 3 only
    providers: tuple[str, ...]
    private_key_flags: int
    subject_name_flags: int
    enrollment_flags: int
    general_flags: int
    ekus: tuple[str, ...]
    extensions: tuple[TemplateExtension, ...]

    @property
    def name(self) -> str:
        return self.settings.name


class _TemplateInformation(core.Sequence):  # type: ignore[misc]  # asn1crypto is untyped
    _fields = [
        ("templateID", core.ObjectIdentifier),
        ("templateMajorVersion", core.Integer),
        ("templateMinorVersion", core.Integer, {"optional": True}),
    ]


def template_information(settings: TemplateSettings) -> bytes:
    """DER of the certificate-template extension value (``CertificateTemplate`` in MS-WCCE
    2.2.2.7.7.2): the template OID with its major and minor revision."""
    return bytes(_TemplateInformation({
        "templateID": settings.oid,
        "templateMajorVersion": settings.major_revision,
        "templateMinorVersion": settings.minor_revision,
    }).dump())


def template_name_extension(settings: TemplateSettings) -> bytes:
    """DER of the v1 template-name extension value: the name as a BMPString."""
    return bytes(core.BMPString(settings.name).dump())


def period_seconds(period: object) -> int:
    if isinstance(period, dt.timedelta):
        return int(period.total_seconds())
    if isinstance(period, isodate.Duration):
        days = int(period.years) * 365 + int(period.months) * 30
        return int((dt.timedelta(days=days) + period.tdelta).total_seconds())
    raise TypeError(f"not a period: {period!r}")


def _key(profile: Profile, schema: int, where: str) -> tuple[int, tuple[str, str]]:
    rsa = sorted(int(a[4:]) for a in profile.key_policy.allowed if a.startswith("RSA-"))
    if rsa:
        return rsa[0], RSA_OID
    curves = sorted(int(a[4:]) for a in profile.key_policy.allowed if a.startswith("EC-P"))
    if not curves:
        raise ConfigError(f"{where}: profile {profile.name!r} allows no RSA or EC key")
    if schema < 3:
        raise ConfigError(f"{where}: profile {profile.name!r} allows only EC keys, which need schema 3")
    return curves[0], EC_CURVE_OIDS[curves[0]]


def _key_usage(profile: Profile) -> x509.KeyUsage | None:
    if not profile.key_usage:
        return None
    names = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
             "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")
    return x509.KeyUsage(**{n: n in profile.key_usage for n in names})


def build_template(settings: TemplateSettings, profile: Profile, *, where: str = "template") -> Template:
    where = f"{where} {settings.name!r}"
    min_bits, algorithm = _key(profile, settings.schema, where)
    ekus = tuple(o.dotted_string for o in profile.extended_key_usage)
    key_usage = _key_usage(profile)

    extensions: list[TemplateExtension] = []
    if settings.schema == 1:
        extensions.append(TemplateExtension(TEMPLATE_NAME, False, template_name_extension(settings)))
    else:
        extensions.append(TemplateExtension(TEMPLATE_INFORMATION, False, template_information(settings)))
    if ekus:
        eku = x509.ExtendedKeyUsage([x509.ObjectIdentifier(o) for o in ekus])
        extensions.append(TemplateExtension(ExtensionOID.EXTENDED_KEY_USAGE.dotted_string, False, eku.public_bytes()))
    if key_usage is not None:
        extensions.append(TemplateExtension(ExtensionOID.KEY_USAGE.dotted_string, profile.key_usage_critical,
                                            key_usage.public_bytes()))
    # No application policies extension (1.3.6.1.4.1.311.21.10): the profile does not issue
    # one, and a policy lists only what the certificate will carry; the EKUs say the same.

    subject_flags = 0
    if settings.subject == "request":
        subject_flags |= ENROLLEE_SUPPLIES_SUBJECT
        if profile.san.mode in ("csr", "merge"):
            subject_flags |= ENROLLEE_SUPPLIES_SUBJECT_ALT_NAME
        if settings.key_based_renewal:
            subject_flags |= OLD_CERT_SUPPLIES_SUBJECT_AND_ALT_NAME
    elif settings.machine:
        subject_flags |= SUBJECT_REQUIRE_DNS_AS_CN | SUBJECT_ALT_REQUIRE_DNS
    else:
        subject_flags |= SUBJECT_REQUIRE_COMMON_NAME | SUBJECT_ALT_REQUIRE_UPN

    enrollment_flags = 0
    if "1.3.6.1.5.5.7.3.4" in ekus:
        enrollment_flags |= INCLUDE_SYMMETRIC_ALGORITHMS
    if settings.autoenroll:
        enrollment_flags |= AUTO_ENROLLMENT
    if settings.key_based_renewal:
        enrollment_flags |= (PREVIOUS_APPROVAL_VALIDATE_REENROLLMENT
                             | ALLOW_PREVIOUS_APPROVAL_KEYBASEDRENEWAL_VALIDATE_REENROLLMENT)

    # client/server version nibbles: 1 = Windows XP / Server 2003 (v2), 2 = Vista / 2008 (v3)
    version = {1: 0, 2: 0x01010000, 3: 0x02020000}[settings.schema]
    private_key_flags = version | (EXPORTABLE_KEY if settings.exportable else 0)

    general_flags = GENERAL_IS_MODIFIED if settings.schema >= 2 else GENERAL_ADD_TEMPLATE_NAME
    if settings.machine:
        general_flags |= GENERAL_MACHINE_TYPE
    if settings.autoenroll:
        general_flags |= GENERAL_AUTO_ENROLLMENT

    key_spec = AT_KEYEXCHANGE if key_usage is not None and key_usage.key_encipherment else AT_SIGNATURE
    if algorithm != RSA_OID:
        key_spec = AT_SIGNATURE
    providers = settings.providers or (KSP_PROVIDERS if settings.schema == 3 else LEGACY_PROVIDERS)
    ad = settings.directory
    if ad is not None:  # the directory's own values, as AD CS's CEP serves them
        subject_flags, enrollment_flags, general_flags = ad.name_flag, ad.enrollment_flag, ad.flags
        private_key_flags = ad.private_key_flag
        min_bits = max(min_bits, ad.minimal_key_size)
        if ad.key_spec in (AT_KEYEXCHANGE, AT_SIGNATURE) and algorithm == RSA_OID:
            key_spec = ad.key_spec
    return Template(
        settings=settings, profile=profile,
        validity_seconds=period_seconds(profile.validity),
        renewal_seconds=int(settings.renewal_period.total_seconds()),
        min_key_bits=min_bits, key_spec=key_spec, key_algorithm=algorithm,
        hash_algorithm=HASH_OIDS[settings.hash] if settings.schema == 3 else None,
        providers=tuple(providers), private_key_flags=private_key_flags,
        subject_name_flags=subject_flags, enrollment_flags=enrollment_flags,
        general_flags=general_flags, ekus=ekus, extensions=tuple(extensions),
    )
