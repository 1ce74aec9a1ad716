"""Windows enrollment with Active Directory as the source of templates, rights and names,
against the real Samba AD DC: the directory configured with the real `gateway windows ad`
CLI, templates and the enrollment service as AD CS publishes them, callers with Kerberos
tickets (pyspnego/gssapi, kinit + curl --negotiate, the Windows client simulator) and
UsernameTokens checked by an LDAP bind. Every refusal leaves nothing issued."""

from __future__ import annotations

import asyncio
import json
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator
from urllib.parse import urlsplit

import aiohttp
import pytest
import spnego
from asn1crypto import core
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtensionOID, NameOID

from conformance.harness import run_cli, running_gateway
from conformance.windows.simulator import KERBEROS as sim_kerberos
from conformance.windows.simulator import PKCS10, WindowsClientSimulator
from conformance.windows.simulator import pkcs10 as sim_pkcs10
from gateway.store.records import CertificateFilter
from protocols.windows import wstep
from protocols.windows.directory.names import NTDS_CA_SECURITY_EXT, UPN, sid_of_certificate

from ..windows.helpers import CONTENT_TYPE, XCEP, SoapReply, assert_valid, get_policies_body
from ..windows.wstep_helpers import enrollment_fault, error_code, rst_body, rstr, username_token, windows_csr
from .samba import AUTOENROLL_RIGHT, ENROLL_RIGHT, ENROLLMENT_SERVICES_DN, SambaDC

HOST = "adgw.gw.test"
CEP = "/windows/windows/cep/kerberos"
CES = "/windows/windows/ces/kerberos"
CEP_USERNAME = "/windows/windows/cep/username"
CES_USERNAME = "/windows/windows/ces/username"
SERVICE = "adgw-ca"
USER_OID = "1.3.6.1.4.1.311.21.8.7001.1"
COMPUTER_OID = "1.3.6.1.4.1.311.21.8.7001.2"
# msPKI-Certificate-Name-Flag: SUBJECT_REQUIRE_COMMON_NAME | SUBJECT_ALT_REQUIRE_UPN | SUBJECT_ALT_REQUIRE_EMAIL
USER_NAME_FLAG = 0x40000000 | 0x02000000 | 0x04000000
# SUBJECT_REQUIRE_DNS_AS_CN | SUBJECT_ALT_REQUIRE_DNS
COMPUTER_NAME_FLAG = 0x10000000 | 0x08000000


def _signed(value: int) -> int:
    """AD's INTEGER syntax is signed 32-bit: how AD CS stores flags with the top bit set."""
    return value - (1 << 32) if value >= 1 << 31 else value


def _period(seconds: int) -> bytes:
    return struct.pack("<q", -seconds * 10**7)


def _template(dc: SambaDC, name: str, oid: str, *, machine: bool, name_flag: int, sddl: str) -> None:
    dc.add_certificate_template(name, {
        "flags": 0x20 | (0x40 if machine else 0) | 0x20000, "revision": 100, "pKIDefaultKeySpec": 1,
        "pKIKeyUsage": b"\xa0\x00", "pKIMaxIssuingDepth": 0, "pKICriticalExtensions": ["2.5.29.15"],
        "pKIExpirationPeriod": _period(365 * 86400), "pKIOverlapPeriod": _period(42 * 86400),
        "pKIExtendedKeyUsage": ["1.3.6.1.5.5.7.3.2"], "msPKI-RA-Signature": 0,
        "msPKI-Enrollment-Flag": 0x20 | 0x1, "msPKI-Private-Key-Flag": 0x01010000,
        "msPKI-Certificate-Name-Flag": _signed(name_flag), "msPKI-Minimal-Key-Size": 2048,
        "msPKI-Template-Schema-Version": 2, "msPKI-Template-Minor-Revision": 3,
        "msPKI-Cert-Template-OID": oid,
    }, sddl)


def _grants(*sids: str, autoenroll: bool = True) -> str:
    aces = "".join(f"(OA;;CR;{ENROLL_RIGHT};;{sid})" + (f"(OA;;CR;{AUTOENROLL_RIGHT};;{sid})" if autoenroll else "")
                   for sid in sids)
    return f"O:DAG:DAD:PAI(A;;RPLCLORC;;;AU){aces}(A;;CCDCLCSWRPWPDTLOSDRCWDWO;;;DA)"


@dataclass
class Directory:
    root: Path
    data_dir: Path
    http_keytab: Path
    computer_keytab: Path
    passwords: dict[str, str]
    sids: dict[str, str]


@pytest.fixture(scope="module")
def directory(samba_dc: SambaDC, tmp_path_factory: pytest.TempPathFactory) -> Directory:
    """AD objects for this module (names prefixed ad-), and a data directory whose windows
    configuration reads them (set with the real CLI)."""
    from gateway import bootstrap

    root = tmp_path_factory.mktemp("ad-directory")
    http_keytab = samba_dc.create_service("svc-adgw", f"HTTP/{HOST}", root / "http.keytab")
    passwords = {
        "bind": samba_dc.create_user("ad-gwbind"),
        "ad-alice": samba_dc.create_user("ad-alice", mail="alice@gw.test"),
        "ad-bob": samba_dc.create_user("ad-bob", mail="bob@gw.test"),
        "ad-carol": samba_dc.create_user("ad-carol", mail="carol@gw.test"),
        "ad-nomail": samba_dc.create_user("ad-nomail"),
    }
    samba_dc.create_computer("ADWS1", dns_host_name="adws1.gw.test")
    computer_keytab = samba_dc.export_keytab("ADWS1$", root / "adws1.keytab")
    enrollers = samba_dc.create_group("ad-enrollers", ("ad-alice", "ad-carol", "ad-nomail"))
    samba_dc.create_group("ad-outsiders", ("ad-bob",))
    machines = samba_dc.create_group("ad-machines", ("ADWS1$",))
    _template(samba_dc, "ADUser", USER_OID, machine=False, name_flag=USER_NAME_FLAG, sddl=_grants(enrollers))
    _template(samba_dc, "ADComputer", COMPUTER_OID, machine=True, name_flag=COMPUTER_NAME_FLAG,
              sddl=_grants(machines, autoenroll=False))
    _template(samba_dc, "ADUnmapped", "1.3.6.1.4.1.311.21.8.7001.3", machine=False, name_flag=USER_NAME_FLAG,
              sddl=_grants(enrollers))
    _template(samba_dc, "ADNotPublished", "1.3.6.1.4.1.311.21.8.7001.4", machine=False,
              name_flag=USER_NAME_FLAG, sddl=_grants(enrollers))
    conn = samba_dc.ldap()
    conn.add(f"CN={SERVICE},{ENROLLMENT_SERVICES_DN}", "pKIEnrollmentService", {
        "dNSHostName": HOST, "certificateTemplates": ["ADUser", "ADComputer", "ADUnmapped", "ADGone"], "flags": 10})

    data_dir = root / "data"
    asyncio.run(bootstrap.initialize(data_dir, server={"public_host": HOST}))
    run_cli("windows", "ad", "set", "--config", "windows", "--domain", "gw.test",
            "--server", f"ldaps://{samba_dc.address}", "--bind-user", "ad-gwbind@gw.test", "--password-stdin",
            "--ca-file", str(samba_dc.ca_file), "--tls-name", samba_dc.hostname,
            "--enrollment-service", SERVICE, "--profile", "ADUser=windows-user",
            "--profile", "ADComputer=windows-computer", "--keytab", str(http_keytab), "--service", f"HTTP@{HOST}",
            data_dir=data_dir, input=(passwords["bind"] + "\n").encode())
    sids = {name: samba_dc.sid_of(name) for name in ("ad-alice", "ad-bob", "ADWS1$")}
    return Directory(root, data_dir, http_keytab, computer_keytab, passwords, sids)


@dataclass
class Gateway:
    gw: Any
    info: Any
    dc: SambaDC
    d: Directory
    tmp: Path

    @property
    def port(self) -> int:
        port = urlsplit(self.info.https).port
        assert port is not None
        return port

    def ccache(self, principal: str) -> Path:
        ccache = self.tmp / f"cc-{principal.replace('$', '_')}"
        if principal.endswith("$"):
            self.dc.kinit(principal, ccache=ccache, keytab=self.d.computer_keytab)
        else:
            self.dc.kinit(principal, ccache=ccache, password=self.d.passwords[principal])
        return ccache

    async def post(self, path: str, body: bytes, authorization: str | None = None) -> SoapReply:
        headers = {"Content-Type": CONTENT_TYPE}
        if authorization is not None:
            headers["Authorization"] = authorization
        connector = aiohttp.TCPConnector(ssl=self.info.ssl_context(), force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            async with session.post(f"https://127.0.0.1:{self.port}{path}", data=body, headers=headers,
                                    server_hostname=HOST) as resp:
                return SoapReply(resp.status, resp.headers, await resp.read())

    async def issued(self) -> int:
        async with self.gw.store.read() as q:
            return int(await q.certificates.count(CertificateFilter(protocol_config="windows")))

    async def directory_settings(self, **changes: Any) -> None:
        door = self.gw.door("windows")
        rec = await door.configuration("windows")
        await door.update_configuration("windows", settings={
            **rec.settings, "directory": {**rec.settings["directory"], **changes}})


@pytest.fixture
async def gateway(samba_dc: SambaDC, directory: Directory, tmp_path: Path,
                  monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Gateway]:
    monkeypatch.setenv("KRB5_CONFIG", str(samba_dc.krb5_conf))
    monkeypatch.delenv("KRB5_KTNAME", raising=False)
    target = tmp_path / "data"
    shutil.copytree(directory.data_dir, target)
    async with running_gateway(target) as (gw, info):
        yield Gateway(gw, info, samba_dc, directory, tmp_path)


def negotiate(monkeypatch: pytest.MonkeyPatch, ccache: Path) -> str:
    monkeypatch.setenv("KRB5CCNAME", f"FILE:{ccache}")
    token = spnego.client(hostname=HOST, service="HTTP", protocol="negotiate").step()
    assert token
    import base64

    return "Negotiate " + base64.b64encode(token).decode()


def csr_token(cn: str, oid: str) -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return windows_csr(key, cn, template_oid=oid).public_bytes(serialization.Encoding.DER)


def policies(rep: SoapReply) -> dict[str, dict[str, str]]:
    """commonName -> {enroll, autoEnroll} of a GetPoliciesResponse."""
    assert rep.status == 200, (rep.status, rep.body[:600])
    assert_valid(rep.payload)
    out = {}
    for policy in rep.payload.iter(f"{{{XCEP}}}policy"):
        name = policy.find(f"{{{XCEP}}}attributes/{{{XCEP}}}commonName").text
        perm = policy.find(f"{{{XCEP}}}attributes/{{{XCEP}}}permission")
        out[name] = {child.tag.split("}")[1]: child.text for child in perm}
    return out


def issued_cert(rep: SoapReply) -> x509.Certificate:
    der = rstr(rep).certificate
    assert der is not None
    return x509.load_der_x509_certificate(der)


def names_of(cert: x509.Certificate) -> tuple[str, list[Any]]:
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    sans = list(cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value)
    return str(cn), sans


# --- the check command -------------------------------------------------------------------------


def test_ad_check_reports_templates_and_a_principals_rights(directory: Directory, samba_dc: SambaDC,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    out = run_cli("windows", "ad", "check", "--config", "windows", "--principal", "ad-alice", "--json",
                  data_dir=directory.data_dir)
    report = json.loads(out.stdout)
    assert report["ok"] and report["enrollment_service"] == SERVICE
    by_name = {t["name"]: t for t in report["templates"]}
    assert by_name["ADUser"]["offered"] and by_name["ADUser"]["profile"] == "windows-user"
    assert by_name["ADComputer"]["offered"] and by_name["ADComputer"]["kind"] == "computer"
    assert not by_name["ADUnmapped"]["offered"] and "no gateway profile" in by_name["ADUnmapped"]["reason"]
    assert not by_name["ADGone"]["offered"] and "not found" in by_name["ADGone"]["reason"]
    assert "ADNotPublished" not in by_name
    rights = {t["name"]: t for t in report["principal"]["templates"]}
    assert report["principal"]["sid"] == directory.sids["ad-alice"]
    assert rights["ADUser"] == {"name": "ADUser", "enroll": True, "autoenroll": True}
    assert rights["ADComputer"]["enroll"] is False

    bob = json.loads(run_cli("windows", "ad", "check", "--config", "windows", "--principal", "ad-bob", "--json",
                             data_dir=directory.data_dir).stdout)
    assert not any(t["enroll"] for t in bob["principal"]["templates"])
    text = run_cli("windows", "ad", "check", "--config", "windows", "--principal", "ADWS1$",
                   data_dir=directory.data_dir).stdout
    assert "ADComputer: enroll yes, autoenroll no" in text
    # the sealed password never appears, and the stored value is not the password
    settings = run_cli("windows", "config", "show", "windows", "--json", data_dir=directory.data_dir).stdout
    assert directory.passwords["bind"] not in settings + text + out.stdout + out.stderr


def test_ad_check_fails_clearly_when_the_directory_is_unreachable(directory: Directory, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(directory.data_dir, data)
    run_cli("windows", "ad", "set", "--config", "windows", "--server", "ldaps://127.0.0.1:1", "--timeout", "2",
            data_dir=data)
    out = run_cli("windows", "ad", "check", "--config", "windows", data_dir=data, check=False)
    assert out.returncode == 1 and "NOT OK" in out.stdout and "127.0.0.1:1" in out.stdout


# --- Kerberos callers ---------------------------------------------------------------------------


async def test_a_user_gets_the_templates_it_may_enroll_in_and_a_certificate_named_from_ad(
        gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    ccache = gateway.ccache("ad-alice")
    offered = policies(await gateway.post(CEP, get_policies_body(), negotiate(monkeypatch, ccache)))
    assert offered["ADUser"] == {"enroll": "true", "autoEnroll": "true"}
    assert "ADComputer" not in offered and "ADUnmapped" not in offered
    assert "GatewayUser" in offered  # the configuration's own templates stay

    rep = await gateway.post(CES, rst_body(token=csr_token("whatever-the-client-says", USER_OID)),
                             negotiate(monkeypatch, ccache))
    cert = issued_cert(rep)
    cn, sans = names_of(cert)
    assert cn == "ad-alice"  # the account's cn, not the request's
    upns = [core.UTF8String.load(n.value).native for n in sans if isinstance(n, x509.OtherName) and n.type_id == UPN]
    assert upns == ["ad-alice@gw.test"]
    assert x509.RFC822Name("alice@gw.test") in sans
    assert cert.extensions.get_extension_for_oid(NTDS_CA_SECURITY_EXT) is not None
    assert sid_of_certificate(cert) == gateway.d.sids["ad-alice"]
    assert await gateway.issued() == 1


async def test_a_computer_gets_its_dns_name_and_sid(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    ccache = gateway.ccache("ADWS1$")
    offered = policies(await gateway.post(CEP, get_policies_body(), negotiate(monkeypatch, ccache)))
    assert offered["ADComputer"] == {"enroll": "true", "autoEnroll": "false"}
    assert "ADUser" not in offered
    cert = issued_cert(await gateway.post(CES, rst_body(token=csr_token("ws", COMPUTER_OID)),
                                          negotiate(monkeypatch, ccache)))
    cn, sans = names_of(cert)
    assert cn == "adws1.gw.test" and x509.DNSName("adws1.gw.test") in sans
    assert sid_of_certificate(cert) == gateway.d.sids["ADWS1$"]


async def test_a_member_of_a_group_without_enroll_sees_no_template_and_is_refused(
        gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    ccache = gateway.ccache("ad-bob")
    offered = policies(await gateway.post(CEP, get_policies_body(), negotiate(monkeypatch, ccache)))
    assert "ADUser" not in offered and "ADComputer" not in offered
    rep = await gateway.post(CES, rst_body(token=csr_token("bob", USER_OID)), negotiate(monkeypatch, ccache))
    assert enrollment_fault(rep)["ErrorCode"] == error_code(wstep.CERTSRV_E_TEMPLATE_DENIED)
    assert await gateway.issued() == 0


async def test_a_disabled_account_is_refused_even_with_a_valid_ticket(
        gateway: Gateway, samba_dc: SambaDC, monkeypatch: pytest.MonkeyPatch) -> None:
    ccache = gateway.ccache("ad-carol")
    # the service ticket is issued while the account is enabled (the KDC refuses one after)
    first, second = negotiate(monkeypatch, ccache), negotiate(monkeypatch, ccache)
    samba_dc.samba_tool("user", "disable", "ad-carol")
    try:
        rep = await gateway.post(CEP, get_policies_body(), first)
        assert rep.is_fault and "disabled" in rep.reason
        rep = await gateway.post(CES, rst_body(token=csr_token("carol", USER_OID)), second)
        assert enrollment_fault(rep)["ErrorCode"] == error_code(wstep.E_ACCESSDENIED)
        assert await gateway.issued() == 0
    finally:
        samba_dc.samba_tool("user", "enable", "ad-carol")


async def test_a_name_the_template_requires_but_the_account_lacks_refuses(
        gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    ccache = gateway.ccache("ad-nomail")
    rep = await gateway.post(CES, rst_body(token=csr_token("x", USER_OID)), negotiate(monkeypatch, ccache))
    assert enrollment_fault(rep)["ErrorCode"] == error_code(wstep.CERTSRV_E_SUBJECT_EMAIL_REQUIRED)
    assert await gateway.issued() == 0


async def test_the_directory_down_is_a_soap_fault_not_a_hang(gateway: Gateway,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    ccache = gateway.ccache("ad-alice")
    await gateway.directory_settings(servers=["ldaps://127.0.0.1:1"], timeout_seconds=2)
    rep = await gateway.post(CEP, get_policies_body(), negotiate(monkeypatch, ccache))
    assert rep.status == 500 and rep.is_fault and "127.0.0.1:1" in rep.reason
    rep = await gateway.post(CES, rst_body(token=csr_token("x", USER_OID)), negotiate(monkeypatch, ccache))
    assert enrollment_fault(rep)["ErrorCode"] == error_code(wstep.RPC_S_SERVER_UNAVAILABLE)
    assert await gateway.issued() == 0


async def test_kinit_and_curl_negotiate_see_only_their_templates(gateway: Gateway) -> None:
    body = gateway.tmp / "gp.xml"
    body.write_bytes(get_policies_body())
    seen = {}
    for user in ("ad-alice", "ad-bob"):
        ccache = gateway.ccache(user)
        out = gateway.tmp / f"{user}.xml"
        proc = await asyncio.create_subprocess_exec(
            "curl", "-sS", "--negotiate", "-u", ":", "--resolve", f"{HOST}:{gateway.port}:127.0.0.1",
            "--cacert", gateway.info.tls_ca, "-H", f"Content-Type: {CONTENT_TYPE}", "--data-binary", f"@{body}",
            "-o", str(out), "-w", "%{http_code}", f"https://{HOST}:{gateway.port}{CEP}",
            env=gateway.dc.krb5_env(ccache), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        stdout, stderr = await proc.communicate()
        assert proc.returncode == 0 and stdout == b"200", stderr
        seen[user] = policies(SoapReply(200, {}, out.read_bytes()))
    assert "ADUser" in seen["ad-alice"] and "ADUser" not in seen["ad-bob"]


async def test_the_client_simulator_autoenrolls_from_the_directory_policy(
        gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    ccache = gateway.ccache("ad-alice")

    def kerberos() -> Any:
        monkeypatch.setenv("KRB5CCNAME", f"FILE:{ccache}")
        return spnego.client(hostname=HOST, service="HTTP", protocol="negotiate")

    sim = WindowsClientSimulator(gateway.info.tls_ca, gateway.tmp, hosts={HOST: "127.0.0.1"}, negotiate=kerberos)
    policy = await sim.get_policies(f"https://{HOST}:{gateway.port}{CEP}", sim_kerberos)
    chosen = policy.template("ADUser")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    csr = sim_pkcs10(chosen, key, x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ad-alice")]))
    issued = await sim.request(policy.cauri(chosen, sim_kerberos), csr.public_bytes(serialization.Encoding.DER),
                               PKCS10)
    assert issued.certificate is not None and sid_of_certificate(issued.certificate) == gateway.d.sids["ad-alice"]


# --- UsernameToken by LDAP bind -----------------------------------------------------------------


async def test_username_tokens_are_checked_by_an_ldap_bind(gateway: Gateway) -> None:
    await gateway.directory_settings(password_logon=True)
    good = username_token("ad-alice@gw.test", gateway.d.passwords["ad-alice"])
    offered = policies(await gateway.post(CEP_USERNAME, get_policies_body(security=good)))
    assert "ADUser" in offered
    cert = issued_cert(await gateway.post(CES_USERNAME, rst_body(token=csr_token("x", USER_OID), security=good)))
    assert sid_of_certificate(cert) == gateway.d.sids["ad-alice"]

    wrong = username_token("ad-alice", gateway.d.passwords["ad-alice"] + "x")
    rep = await gateway.post(CEP_USERNAME, get_policies_body(security=wrong))
    assert rep.is_fault and rep.fault_subcode is not None and "FailedAuthentication" in rep.fault_subcode
    rep = await gateway.post(CES_USERNAME, rst_body(token=csr_token("x", USER_OID), security=wrong))
    assert enrollment_fault(rep)["ErrorCode"] == error_code(wstep.E_ACCESSDENIED)
    other_domain = username_token("ad-alice@elsewhere.test", gateway.d.passwords["ad-alice"])
    assert (await gateway.post(CEP_USERNAME, get_policies_body(security=other_domain))).is_fault
    assert await gateway.issued() == 1
