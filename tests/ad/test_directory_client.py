"""The Active Directory client (protocols/windows/directory/ldap.py) against the real Samba DC:
accounts and their groups, certificate templates, the enrollment service, password checks,
TLS (LDAPS and StartTLS, verified), failover, timeouts and the cache. Every object here is
made by this module with a ``dcl-`` name (the DC is shared by the session)."""

from __future__ import annotations

import asyncio
import datetime
import logging
import socket
import struct
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conformance.harness import free_port
from protocols.windows.directory.ldap import (
    Directory,
    DirectoryConfig,
    DirectoryUnavailable,
    period_seconds,
)

from .samba import ENROLL_RIGHT, ENROLLMENT_SERVICES_DN, SambaDC, _samba_python, run

SD_FLAGS = ("1.2.840.113556.1.4.801", True, b"\x30\x03\x02\x01\x07")  # owner, group, DACL
YEAR = struct.pack("<q", -365 * 86400 * 10**7)
SIX_WEEKS = struct.pack("<q", -42 * 86400 * 10**7)
TEMPLATE_OID = "1.3.6.1.4.1.311.21.8.7654321.1.2.3.4.5.99"


def test_period_seconds_reads_negative_filetime_intervals() -> None:
    assert period_seconds(YEAR) == 31536000
    assert period_seconds(SIX_WEEKS) == 42 * 86400
    assert period_seconds(struct.pack("<q", -(2 * 3600 * 10**7 + 5_000_000))) == 7200  # whole seconds
    assert period_seconds(bytes(8)) == 0
    with pytest.raises(ValueError):
        period_seconds(YEAR[:7])


# --- the directory's objects ---------------------------------------------------------------


@dataclass
class Objects:
    service_password: str
    alice_password: str
    bob_password: str
    group_sid: str
    ca_der: bytes
    template_dn: str


def _self_signed(name: str) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))


@pytest.fixture(scope="module")
def ad(samba_dc: SambaDC) -> Objects:
    service_password = samba_dc.create_user("dcl-svc")
    alice_password = samba_dc.create_user("dcl-alice", mail="alice@dcl.gw.test", upn="dcl-alice.upn@gw.test")
    bob_password = samba_dc.create_user("dcl-bob")
    samba_dc.samba_tool("user", "disable", "dcl-bob")
    samba_dc.create_user("dcl-carol", mail="carol@dcl.gw.test")
    samba_dc.create_user("dcl-dan", mail="dan@dcl.gw.test")
    samba_dc.create_computer("DCL-WS1", dns_host_name="dcl-ws1.gw.test")
    group_sid = samba_dc.create_group("dcl-enrollers", members=("dcl-alice",))

    sddl = f"O:DAG:DAD:PAI(A;;RPLCLORC;;;AU)(OA;;CR;{ENROLL_RIGHT};;{group_sid})(A;;CCDCLCSWRPWPDTLOSDRCWDWO;;;DA)"
    template_dn = samba_dc.add_certificate_template("DCL-User", {
        "displayName": "DCL User", "flags": 131642, "revision": 100, "pKIDefaultKeySpec": 2,
        "pKIKeyUsage": b"\xa0\x00", "pKIMaxIssuingDepth": 0, "pKICriticalExtensions": ["2.5.29.15"],
        "pKIExpirationPeriod": YEAR, "pKIOverlapPeriod": SIX_WEEKS,
        "pKIExtendedKeyUsage": ["1.3.6.1.5.5.7.3.2", "1.3.6.1.4.1.311.10.3.4"],
        "pKIDefaultCSPs": ["2,Microsoft Base Cryptographic Provider v1.0",
                           "1,Microsoft Enhanced Cryptographic Provider v1.0"],
        "msPKI-RA-Signature": 1, "msPKI-Enrollment-Flag": 41, "msPKI-Private-Key-Flag": 16842768,
        "msPKI-Certificate-Name-Flag": -1509949440, "msPKI-Minimal-Key-Size": 2048,
        "msPKI-Template-Schema-Version": 2, "msPKI-Template-Minor-Revision": 4,
        "msPKI-Cert-Template-OID": TEMPLATE_OID,
        "msPKI-Certificate-Application-Policy": ["1.3.6.1.5.5.7.3.2"],
        "msPKI-Supersede-Templates": ["DCL-Old", "DCL-Older"],
    }, sddl)
    samba_dc.add_certificate_template("DCL-NoOid", {"flags": 0, "revision": 1}, sddl)

    ca_der = _self_signed("DCL Issuing CA").public_bytes(serialization.Encoding.DER)
    conn = samba_dc.ldap()
    conn.add(f"CN=DCL Issuing CA,{ENROLLMENT_SERVICES_DN}", "pKIEnrollmentService", {
        "dNSHostName": "dcl-ca.gw.test", "certificateTemplates": ["DCL-User", "DCL-Machine"],
        "cACertificate": ca_der, "cACertificateDN": "CN=DCL Issuing CA", "flags": 10,
    })
    conn.unbind()
    return Objects(service_password, alice_password, bob_password, group_sid, ca_der, template_dn)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _config(dc: SambaDC, ad: Objects, **changes: Any) -> DirectoryConfig:
    values: dict[str, Any] = dict(
        servers=(f"ldaps://{dc.address}:636",), bind_user="dcl-svc@gw.test", password=ad.service_password,
        base_dn=dc.base_dn, ca_file=dc.ca_file, tls_names=(dc.hostname,), timeout=5.0, cache_seconds=300.0)
    values.update(changes)
    return DirectoryConfig(**values)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def directory(samba_dc: SambaDC, ad: Objects, clock: Clock) -> AsyncIterator[Directory]:
    d = Directory(_config(samba_dc, ad), clock=clock)
    yield d
    await d.close()


@pytest.fixture
def hanging_server() -> Iterator[int]:
    """A port on 127.0.0.1 that accepts TCP connections (the kernel's backlog) and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield int(s.getsockname()[1])


def _guid_of(dc: SambaDC, name: str) -> uuid.UUID:
    shown = dc.samba_tool("user", "show", name, "--attributes=objectGUID").stdout
    return uuid.UUID(next(line.split(":", 1)[1].strip() for line in shown.splitlines()
                          if line.startswith("objectGUID:")))


def _sddl_of(descriptor: bytes) -> str:
    script = ("import sys\nfrom samba.dcerpc import security\nfrom samba.ndr import ndr_unpack\n"
              "print(ndr_unpack(security.descriptor, bytes.fromhex(sys.argv[1])).as_sddl())\n")
    return run([_samba_python(), "-c", script, descriptor.hex()]).stdout


# --- accounts ------------------------------------------------------------------------------


async def test_account_fields_and_groups(samba_dc: SambaDC, ad: Objects, directory: Directory) -> None:
    alice = await directory.account("dcl-alice")
    assert alice is not None
    assert alice.dn == samba_dc.dn_of("dcl-alice")
    assert alice.sam_account_name == "dcl-alice" and alice.common_name == "dcl-alice"
    assert alice.sid == samba_dc.sid_of("dcl-alice")
    assert alice.kind == "user" and alice.disabled is False
    assert alice.user_principal_name == "dcl-alice.upn@gw.test"
    assert alice.mail == "alice@dcl.gw.test"
    assert alice.dns_host_name is None
    assert alice.object_guid == _guid_of(samba_dc, "dcl-alice")
    assert ad.group_sid in alice.group_sids
    assert f"{samba_dc.domain_sid}-513" in alice.group_sids  # Domain Users, the primary group
    assert alice.sid not in alice.group_sids

    computer = await directory.account("DCL-WS1$")
    assert computer is not None
    assert computer.kind == "computer"
    assert computer.dns_host_name == "dcl-ws1.gw.test"
    assert computer.sid == samba_dc.sid_of("DCL-WS1$")
    assert f"{samba_dc.domain_sid}-515" in computer.group_sids  # Domain Computers

    bob = await directory.account("dcl-bob")
    assert bob is not None and bob.disabled is True and bob.kind == "user"


async def test_account_by_sid(samba_dc: SambaDC, directory: Directory) -> None:
    alice = await directory.account_by_sid(samba_dc.sid_of("dcl-alice"))
    assert alice is not None and alice.sam_account_name == "dcl-alice"
    assert alice.dn == samba_dc.dn_of("dcl-alice")
    assert await directory.account_by_sid(f"{samba_dc.domain_sid}-987654") is None
    assert await directory.account_by_sid("S-1-5-x") is None


async def test_unknown_accounts_and_filter_escaping(directory: Directory) -> None:
    assert await directory.account("dcl-nobody") is None
    assert await directory.account("dcl-*") is None  # a literal "*", not a wildcard
    assert await directory.account("dcl-alice)(sAMAccountName=*") is None
    # A group has a sAMAccountName too, but it is not an account.
    assert await directory.account("dcl-enrollers") is None


# --- templates and the enrollment service --------------------------------------------------


async def test_templates_every_field(samba_dc: SambaDC, ad: Objects, directory: Directory,
                                     caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="protocols.windows.directory.ldap"):
        templates = {t.name: t for t in await directory.templates()}
    t = templates["DCL-User"]
    assert t.display_name == "DCL User"
    assert t.oid == TEMPLATE_OID
    assert (t.schema_version, t.major_revision, t.minor_revision) == (2, 100, 4)
    assert t.flags == 131642
    assert t.enrollment_flag == 41
    assert t.name_flag == 0xA6000000  # -1509949440 as stored, read as the unsigned flag word
    assert t.private_key_flag == 0x01010010
    assert t.ra_signature == 1
    assert t.minimal_key_size == 2048
    assert t.key_spec == 2
    assert t.ekus == ("1.3.6.1.5.5.7.3.2", "1.3.6.1.4.1.311.10.3.4")
    assert t.application_policies == ("1.3.6.1.5.5.7.3.2",)
    assert t.key_usage == b"\xa0\x00"
    assert t.validity_seconds == 31536000
    assert t.renewal_seconds == 42 * 86400
    assert t.csps == ("Microsoft Enhanced Cryptographic Provider v1.0", "Microsoft Base Cryptographic Provider v1.0")
    assert set(t.superseded) == {"DCL-Old", "DCL-Older"}

    conn = samba_dc.ldap()
    conn.search(ad.template_dn, "(objectClass=*)", search_scope="BASE", attributes=["nTSecurityDescriptor"],
                controls=[SD_FLAGS])
    assert t.security_descriptor == conn.entries[0]["nTSecurityDescriptor"].raw_values[0]
    conn.unbind()
    sddl = _sddl_of(t.security_descriptor)
    admins = f"{samba_dc.domain_sid}-512"  # Domain Admins: owner and group (O:DAG:DA)
    assert sddl.startswith(f"O:{admins}G:{admins}D:") and f"(OA;;CR;{ENROLL_RIGHT};;{ad.group_sid})" in sddl

    assert "DCL-NoOid" not in templates
    skipped = [r for r in caplog.records if "CN=DCL-NoOid" in r.getMessage()]
    assert len(skipped) == 1 and skipped[0].levelno == logging.WARNING and skipped[0].exc_info is None
    assert "msPKI-Cert-Template-OID" in skipped[0].getMessage()


async def test_enrollment_service(ad: Objects, directory: Directory) -> None:
    service = await directory.enrollment_service("DCL Issuing CA")
    assert service is not None
    assert service.name == "DCL Issuing CA"
    assert service.dns_host_name == "dcl-ca.gw.test"
    assert set(service.templates) == {"DCL-User", "DCL-Machine"}
    assert service.ca_certificate == ad.ca_der
    assert await directory.enrollment_service("DCL No Such CA") is None
    assert await directory.enrollment_service("DCL Issuing CA,CN=Enrollment Services") is None  # escaped


# --- passwords -----------------------------------------------------------------------------


async def test_check_password(ad: Objects, directory: Directory, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="protocols.windows.directory.ldap"):
        assert await directory.check_password("dcl-alice", ad.alice_password) is True
        assert await directory.check_password("dcl-alice.upn@gw.test", ad.alice_password) is True
        assert await directory.check_password("GW\\dcl-alice", ad.alice_password) is True
        assert await directory.check_password("dcl-alice", ad.alice_password + "x") is False
        assert await directory.check_password("dcl-alice", "") is False
        assert await directory.check_password("dcl-bob", ad.bob_password) is False  # disabled
        assert await directory.check_password("dcl-nobody", ad.alice_password) is False
    assert ad.alice_password not in caplog.text and ad.bob_password not in caplog.text
    refusals = [r for r in caplog.records if r.levelno == logging.INFO and "refused" in r.getMessage()]
    assert any("dcl-bob" in r.getMessage() for r in refusals)
    # The service connection still works after those binds (they had their own connections).
    assert await directory.account("dcl-alice") is not None


async def test_check_password_with_the_directory_down(samba_dc: SambaDC, ad: Objects) -> None:
    d = Directory(_config(samba_dc, ad, servers=(f"ldaps://127.0.0.1:{free_port()}",), timeout=2))
    with pytest.raises(DirectoryUnavailable):
        await d.check_password("dcl-alice@gw.test", ad.alice_password)
    await d.close()


async def test_bad_service_password(samba_dc: SambaDC, ad: Objects, caplog: pytest.LogCaptureFixture) -> None:
    wrong = ad.service_password + "-wrong"
    config = _config(samba_dc, ad, password=wrong)
    assert wrong not in repr(config)
    d = Directory(config)
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(DirectoryUnavailable) as caught:
            await d.account("dcl-alice")
    assert "service account bind refused by" in caught.value.detail
    assert f"ldaps://{samba_dc.address}:636" in caught.value.detail
    assert wrong not in str(caught.value) and wrong not in repr(caught.value) and wrong not in caplog.text
    await d.close()


# --- transport -----------------------------------------------------------------------------


async def test_starttls_on_389(samba_dc: SambaDC, ad: Objects) -> None:
    d = Directory(_config(samba_dc, ad, servers=(f"ldap://{samba_dc.address}:389",)))
    alice = await d.account("dcl-alice")
    assert alice is not None and alice.sid == samba_dc.sid_of("dcl-alice")
    assert await d.check_password("dcl-alice", ad.alice_password) is True
    await d.close()


@pytest.mark.parametrize("scheme,port", [("ldaps", 636), ("ldap", 389)])
async def test_certificate_not_verified_is_unavailable(samba_dc: SambaDC, ad: Objects, tmp_path: Path,
                                                        scheme: str, port: int) -> None:
    other_ca = tmp_path / "other-ca.pem"
    other_ca.write_bytes(_self_signed("Not the DC's CA").public_bytes(serialization.Encoding.PEM))
    server = f"{scheme}://{samba_dc.address}:{port}"
    d = Directory(_config(samba_dc, ad, servers=(server,), ca_file=other_ca))
    with pytest.raises(DirectoryUnavailable) as caught:
        await d.account("dcl-alice")
    assert server in caught.value.detail
    await d.close()
    # The right CA, but the certificate (CN=DC.gw.test) does not name the address we dial.
    d = Directory(_config(samba_dc, ad, servers=(server,), tls_names=()))
    with pytest.raises(DirectoryUnavailable):
        await d.account("dcl-alice")
    await d.close()


async def test_failover_to_the_next_server(samba_dc: SambaDC, ad: Objects, caplog: pytest.LogCaptureFixture) -> None:
    closed = f"ldaps://127.0.0.1:{free_port()}"
    real = f"ldaps://{samba_dc.address}:636"
    d = Directory(_config(samba_dc, ad, servers=(closed, real)))
    with caplog.at_level(logging.INFO, logger="protocols.windows.directory.ldap"):
        alice = await d.account("dcl-alice")
    assert alice is not None
    assert any(r.levelno == logging.WARNING and closed in r.getMessage() for r in caplog.records)
    assert any(r.levelno == logging.INFO and real in r.getMessage() for r in caplog.records)
    await d.close()


async def test_all_servers_unreachable(samba_dc: SambaDC, ad: Objects, hanging_server: int) -> None:
    closed = f"ldaps://127.0.0.1:{free_port()}"
    hanging = f"ldaps://127.0.0.1:{hanging_server}"
    hanging_starttls = f"ldap://127.0.0.1:{hanging_server}"
    d = Directory(_config(samba_dc, ad, servers=(closed, hanging, hanging_starttls), timeout=1))
    with pytest.raises(DirectoryUnavailable) as caught:
        await d.account("dcl-alice")
    for server in (closed, hanging, hanging_starttls):
        assert server in caught.value.detail
    await d.close()


async def test_lost_connection_is_opened_again(samba_dc: SambaDC, directory: Directory,
                                               caplog: pytest.LogCaptureFixture) -> None:
    assert await directory.account("dcl-alice") is not None
    # What a DC dropping an idle connection looks like from here: the socket is gone.
    directory._conn.socket.shutdown(socket.SHUT_RDWR)
    with caplog.at_level(logging.INFO, logger="protocols.windows.directory.ldap"):
        computer = await directory.account("DCL-WS1$")  # not cached: needs the directory
    assert computer is not None and computer.kind == "computer"
    assert any("connected to" in r.getMessage() for r in caplog.records)


# --- the cache -----------------------------------------------------------------------------


async def test_cache_expires_with_the_clock(samba_dc: SambaDC, directory: Directory, clock: Clock) -> None:
    first = await directory.account("dcl-carol")
    assert first is not None and first.mail == "carol@dcl.gw.test"
    samba_dc.modify(first.dn, {"mail": ["carol.new@dcl.gw.test"]})
    cached = await directory.account("dcl-carol")
    assert cached is first  # no LDAP read: the directory already says otherwise
    clock.now += 299
    assert (await directory.account("dcl-carol")) is first
    clock.now += 2
    fresh = await directory.account("dcl-carol")
    assert fresh is not None and fresh.mail == "carol.new@dcl.gw.test"


async def test_cache_invalidate(samba_dc: SambaDC, directory: Directory) -> None:
    first = await directory.account("dcl-dan")
    assert first is not None and first.mail == "dan@dcl.gw.test"
    samba_dc.modify(first.dn, {"mail": ["dan.new@dcl.gw.test"]})
    assert (await directory.account("dcl-dan")) is first
    directory.invalidate()
    fresh = await directory.account("dcl-dan")
    assert fresh is not None and fresh.mail == "dan.new@dcl.gw.test"


async def test_negative_answers_are_cached_for_30_seconds(samba_dc: SambaDC, directory: Directory,
                                                          clock: Clock) -> None:
    assert await directory.account("dcl-late") is None
    samba_dc.create_user("dcl-late")
    assert await directory.account("dcl-late") is None  # still believed
    clock.now += 31  # far less than cache_seconds (300)
    late = await directory.account("dcl-late")
    assert late is not None and late.sid == samba_dc.sid_of("dcl-late")


async def test_concurrent_misses_share_one_lookup(directory: Directory) -> None:
    found = await asyncio.gather(*(directory.account("dcl-alice") for _ in range(5)))
    assert found[0] is not None
    assert all(a is found[0] for a in found)
