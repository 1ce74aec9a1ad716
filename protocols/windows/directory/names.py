"""A certificate's names from the directory account, per the template's
``msPKI-Certificate-Name-Flag`` (MS-CRTD 2.28), as AD CS builds them.

Subject: the account's distinguished name (SUBJECT_REQUIRE_DIRECTORY_PATH), else its
``cn`` (SUBJECT_REQUIRE_COMMON_NAME) or ``dNSHostName`` (SUBJECT_REQUIRE_DNS_AS_CN), plus
``mail`` as emailAddress (SUBJECT_REQUIRE_EMAIL). SAN: ``userPrincipalName`` as the UPN
otherName, ``mail``, ``dNSHostName``, the objectGUID. The SID goes into the
szOID_NTDS_CA_SECURITY_EXT extension (KB5014754 "strong mapping") unless the template sets
CT_FLAG_NO_SECURITY_EXTENSION. A name the flags require but the account lacks refuses
the request, with AD CS's code, rather than issuing a certificate without it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from asn1crypto import core
from asn1crypto import x509 as ax509
from cryptography import x509
from cryptography.x509.oid import NameOID
from ldap3.utils.dn import parse_dn

from gateway.errors import ErrorKind, GatewayError

from .ldap import Account

# msPKI-Certificate-Name-Flag
SUBJECT_REQUIRE_DIRECTORY_PATH = 0x80000000
SUBJECT_REQUIRE_COMMON_NAME = 0x40000000
SUBJECT_REQUIRE_EMAIL = 0x20000000
SUBJECT_REQUIRE_DNS_AS_CN = 0x10000000
SUBJECT_ALT_REQUIRE_DNS = 0x08000000
SUBJECT_ALT_REQUIRE_EMAIL = 0x04000000
SUBJECT_ALT_REQUIRE_UPN = 0x02000000
SUBJECT_ALT_REQUIRE_DIRECTORY_GUID = 0x01000000
# msPKI-Enrollment-Flag
NO_SECURITY_EXTENSION = 0x00080000

UPN = x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.3")
DIRECTORY_GUID = x509.ObjectIdentifier("1.3.6.1.4.1.311.25.1")
NTDS_CA_SECURITY_EXT = x509.ObjectIdentifier("1.3.6.1.4.1.311.25.2")
NTDS_OBJECTSID = x509.ObjectIdentifier("1.3.6.1.4.1.311.25.2.1")

SID_RE = re.compile(r"^S-1-[0-9]+(-[0-9]+){1,15}$")
_DN_ATTRIBUTES = {
    "CN": NameOID.COMMON_NAME, "OU": NameOID.ORGANIZATIONAL_UNIT_NAME, "DC": NameOID.DOMAIN_COMPONENT,
    "O": NameOID.ORGANIZATION_NAME, "L": NameOID.LOCALITY_NAME, "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "C": NameOID.COUNTRY_NAME,
}


class NameRequired(GatewayError):
    """The template requires a name the account does not have; ``code`` is AD CS's HRESULT."""

    kind = ErrorKind.POLICY

    def __init__(self, detail: str, code: int) -> None:
        super().__init__(detail)
        self.code = code


@dataclass(frozen=True)
class DirectoryNames:
    subject: x509.Name
    sans: tuple[x509.GeneralName, ...]
    extensions: tuple[x509.Extension[x509.ExtensionType], ...]


def distinguished_name(dn: str) -> x509.Name:
    """An LDAP DN (most specific first) as an X.509 Name (most general first)."""
    rdns = []
    for attribute, value, _sep in reversed(parse_dn(dn, escape=False, strip=True)):
        oid = _DN_ATTRIBUTES.get(attribute.upper())
        if oid is None:
            raise GatewayError(f"the account's distinguished name has an attribute {attribute!r} "
                               "the gateway cannot put into a certificate", kind=ErrorKind.POLICY)
        rdns.append(x509.RelativeDistinguishedName([x509.NameAttribute(oid, value)]))
    return x509.Name(rdns)


def sid_extension(sid: str) -> x509.Extension[x509.ExtensionType]:
    """szOID_NTDS_CA_SECURITY_EXT: GeneralNames holding one otherName (szOID_NTDS_OBJECTSID,
    the SID string as an OCTET STRING), as AD CS writes it since KB5014754."""
    names = x509.SubjectAlternativeName([x509.OtherName(NTDS_OBJECTSID, core.OctetString(sid.encode()).dump())])
    return x509.Extension(NTDS_CA_SECURITY_EXT, False, x509.UnrecognizedExtension(NTDS_CA_SECURITY_EXT,
                                                                                   names.public_bytes()))


def sid_of_certificate(cert: x509.Certificate) -> str | None:
    """The SID a certificate's security extension carries (for mapping a certificate caller)."""
    try:
        ext = cert.extensions.get_extension_for_oid(NTDS_CA_SECURITY_EXT).value
    except (x509.ExtensionNotFound, ValueError):
        return None
    if not isinstance(ext, x509.UnrecognizedExtension):
        return None
    try:
        for name in ax509.GeneralNames.load(ext.value):
            if name.name == "other_name" and name.chosen["type_id"].dotted == NTDS_OBJECTSID.dotted_string:
                value = name.chosen["value"].parsed
                if isinstance(value, core.OctetString):
                    text = bytes(value.native).decode("ascii")
                    return text if SID_RE.match(text) else None
    except (ValueError, TypeError, KeyError, UnicodeDecodeError):
        return None
    return None


def directory_names(account: Account, name_flag: int, enrollment_flag: int) -> DirectoryNames:
    rdns: list[x509.RelativeDistinguishedName] = []
    who = f"account {account.sam_account_name!r}"
    if name_flag & SUBJECT_REQUIRE_DIRECTORY_PATH:
        rdns.extend(distinguished_name(account.dn).rdns)
    elif name_flag & SUBJECT_REQUIRE_DNS_AS_CN:
        if not account.dns_host_name:
            raise NameRequired(f"{who} has no dNSHostName, which the template requires", 0x8009480F)
        rdns.append(x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, account.dns_host_name)]))
    else:  # SUBJECT_REQUIRE_COMMON_NAME, and what AD CS falls back to
        rdns.append(x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, account.common_name)]))
    if name_flag & SUBJECT_REQUIRE_EMAIL:
        if not account.mail:
            raise NameRequired(f"{who} has no mail attribute, which the template requires", 0x80094812)
        rdns.append(x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.EMAIL_ADDRESS, account.mail)]))

    sans: list[x509.GeneralName] = []
    if name_flag & SUBJECT_ALT_REQUIRE_UPN:
        if not account.user_principal_name:
            raise NameRequired(f"{who} has no userPrincipalName, which the template requires", 0x8009480D)
        sans.append(x509.OtherName(UPN, core.UTF8String(account.user_principal_name).dump()))
    if name_flag & SUBJECT_ALT_REQUIRE_EMAIL:
        if not account.mail:
            raise NameRequired(f"{who} has no mail attribute, which the template requires", 0x80094812)
        sans.append(x509.RFC822Name(account.mail))
    if name_flag & SUBJECT_ALT_REQUIRE_DNS:
        if not account.dns_host_name:
            raise NameRequired(f"{who} has no dNSHostName, which the template requires", 0x8009480F)
        sans.append(x509.DNSName(account.dns_host_name))
    if name_flag & SUBJECT_ALT_REQUIRE_DIRECTORY_GUID:
        sans.append(x509.OtherName(DIRECTORY_GUID, core.OctetString(account.object_guid.bytes_le).dump()))
    extensions = () if enrollment_flag & NO_SECURITY_EXTENSION else (sid_extension(account.sid),)
    return DirectoryNames(x509.Name(rdns), tuple(sans), extensions)
