"""Certificate names built from a directory account per msPKI-Certificate-Name-Flag
(protocols/windows/directory/names.py), and the SID extension read back."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

import pytest
from asn1crypto import core
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from protocols.windows.directory import names
from protocols.windows.directory.ldap import Account

ALICE = Account(dn="CN=Alice Smith,OU=Staff,DC=corp,DC=example", sam_account_name="alice",
                sid="S-1-5-21-1-2-3-1104", kind="user", disabled=False, user_principal_name="alice@corp.example",
                mail="alice@corp.example", dns_host_name=None, common_name="Alice Smith",
                object_guid=uuid.UUID("6f1c5f4e-7c71-4d51-9d1e-1b2c3d4e5f60"), group_sids=())


def test_user_names_upn_mail_and_the_sid_extension() -> None:
    flags = names.SUBJECT_REQUIRE_COMMON_NAME | names.SUBJECT_ALT_REQUIRE_UPN | names.SUBJECT_ALT_REQUIRE_EMAIL
    built = names.directory_names(ALICE, flags, 0)
    assert built.subject.rfc4514_string() == "CN=Alice Smith"
    upn = x509.OtherName(names.UPN, core.UTF8String("alice@corp.example").dump())
    assert built.sans == (upn, x509.RFC822Name("alice@corp.example"))
    (ext,) = built.extensions
    assert ext.oid == names.NTDS_CA_SECURITY_EXT and not ext.critical


def test_directory_path_email_in_subject_and_guid() -> None:
    flags = names.SUBJECT_REQUIRE_DIRECTORY_PATH | names.SUBJECT_REQUIRE_EMAIL | names.SUBJECT_ALT_REQUIRE_DIRECTORY_GUID
    built = names.directory_names(ALICE, flags, names.NO_SECURITY_EXTENSION)
    oids = [rdn.get_attributes_for_oid(oid) for rdn in built.subject.rdns
            for oid in (NameOID.DOMAIN_COMPONENT, NameOID.ORGANIZATIONAL_UNIT_NAME, NameOID.COMMON_NAME)]
    assert [a[0].value for a in oids if a] == ["example", "corp", "Staff", "Alice Smith"]  # most general first
    assert built.subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS)[0].value == "alice@corp.example"
    assert built.sans == (x509.OtherName(names.DIRECTORY_GUID, core.OctetString(ALICE.object_guid.bytes_le).dump()),)
    assert built.extensions == ()  # CT_FLAG_NO_SECURITY_EXTENSION


@pytest.mark.parametrize(("flag", "missing", "code"), [
    (names.SUBJECT_ALT_REQUIRE_UPN, {"user_principal_name": None}, 0x8009480D),
    (names.SUBJECT_ALT_REQUIRE_DNS, {"dns_host_name": None}, 0x8009480F),
    (names.SUBJECT_REQUIRE_DNS_AS_CN, {"dns_host_name": None}, 0x8009480F),
    (names.SUBJECT_ALT_REQUIRE_EMAIL, {"mail": None}, 0x80094812),
    (names.SUBJECT_REQUIRE_EMAIL, {"mail": None}, 0x80094812),
])
def test_a_required_name_the_account_lacks_refuses(flag: int, missing: dict[str, None], code: int) -> None:
    with pytest.raises(names.NameRequired) as caught:
        names.directory_names(dataclasses.replace(ALICE, **missing), flag, 0)
    assert caught.value.code == code


def _cert_with(extension: x509.ExtensionType | None) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "t")])
    now = dt.datetime.now(dt.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1)))
    if extension is not None:
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(key, hashes.SHA256())


def test_the_sid_reads_back_from_a_certificate_and_garbage_reads_as_none() -> None:
    ext = names.sid_extension(ALICE.sid).value
    assert names.sid_of_certificate(_cert_with(ext)) == ALICE.sid
    assert names.sid_of_certificate(_cert_with(None)) is None
    garbage = x509.UnrecognizedExtension(names.NTDS_CA_SECURITY_EXT, b"\x30\x03\x02\x01\x01")
    assert names.sid_of_certificate(_cert_with(garbage)) is None
    not_a_sid = x509.UnrecognizedExtension(names.NTDS_CA_SECURITY_EXT, x509.SubjectAlternativeName([
        x509.OtherName(names.NTDS_OBJECTSID, core.OctetString(b"(objectSid=*)").dump())]).public_bytes())
    assert names.sid_of_certificate(_cert_with(not_a_sid)) is None
