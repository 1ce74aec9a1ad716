"""Negotiate (SPNEGO/Kerberos) on the Kerberos CEP and CES endpoints, against the real Samba
KDC: tickets from kinit and pyspnego/gssapi, curl --negotiate, keytabs exported by Samba.
The gateway runs in this process on real sockets; every refusal leaves nothing issued."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import shutil
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, AsyncIterator
from urllib.parse import urlsplit

import aiohttp
import pytest
import spnego
import spnego.channel_bindings
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from conformance.harness import running_gateway
from conformance.windows.simulator import KERBEROS as sim_kerberos
from conformance.windows.simulator import PKCS10
from conformance.windows.simulator import WindowsClientSimulator
from conformance.windows.simulator import pkcs10 as sim_pkcs10
from gateway.store.records import CertificateFilter
from protocols.windows import negotiate
from protocols.windows.settings import WindowsSettings

from ..windows.helpers import CONTENT_TYPE, XCEP, SoapReply, assert_valid, get_policies_body
from ..windows.wstep_helpers import rst_body, rstr, windows_csr
from .samba import REALM, SambaDC, run

HOST = "gateway.gw.test"
SPN = f"HTTP/{HOST}"
CEP = "/windows/windows/cep/kerberos"
CES = "/windows/windows/ces/kerberos"


@dataclass
class Principals:
    root: Path
    http_keytab: Path
    alice_password: str
    computer_keytab: Path


@pytest.fixture(scope="module")
def principals(samba_dc: SambaDC, tmp_path_factory: pytest.TempPathFactory) -> Principals:
    root = tmp_path_factory.mktemp("negotiate")
    http_keytab = samba_dc.create_service("svc-gateway", SPN, root / "http.keytab")
    samba_dc.create_service("svc-other", "HTTP/other.gw.test", root / "other.keytab")
    password = samba_dc.create_user("neg-alice")
    samba_dc.create_computer("NEGWS1", dns_host_name="negws1.gw.test")
    computer_keytab = samba_dc.export_keytab("NEGWS1$", root / "negws1.keytab")
    return Principals(root, http_keytab, password, computer_keytab)


@pytest.fixture(scope="module")
def negotiate_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An initialized data directory whose TLS certificate names gateway.gw.test."""
    from gateway import bootstrap

    base = tmp_path_factory.mktemp("negotiate-template") / "data"
    asyncio.run(bootstrap.initialize(base, server={"public_host": HOST}))
    return base


@dataclass
class Gateway:
    gw: Any
    info: Any
    dc: SambaDC
    principals: Principals
    tmp: Path

    @property
    def port(self) -> int:
        port: int | None = urlsplit(str(self.info.https)).port
        assert port is not None
        return port

    async def configure(self, **kerberos: Any) -> None:
        door = self.gw.door("windows")
        rec = await door.configuration("windows")
        table = {"keytab": str(self.principals.http_keytab), "service": f"HTTP@{HOST}",
                 "rcache": f"file2:{self.tmp / 'rcache2'}", **kerberos}
        await door.update_configuration("windows", settings={
            **rec.settings, "auth": ["username", "certificate", "kerberos"], "kerberos": table})

    def ccache(self, principal: str) -> Path:
        """kinit ``principal`` (neg-alice by password, a computer by its keytab) into a fresh ccache."""
        ccache = self.tmp / f"cc-{principal.replace('$', '_')}"
        if principal.endswith("$"):
            self.dc.kinit(principal, ccache=ccache, keytab=self.principals.computer_keytab)
        else:
            self.dc.kinit(principal, ccache=ccache, password=self.principals.alice_password)
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

    def server_binding(self) -> bytes:
        return negotiate.tls_server_end_point(x509.load_pem_x509_certificates(
            Path(self.info.data_dir / "tls" / "server.pem").read_bytes())[0])


@pytest.fixture
async def gateway(samba_dc: SambaDC, principals: Principals, negotiate_data_dir: Path, tmp_path: Path,
                  monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Gateway]:
    monkeypatch.setenv("KRB5_CONFIG", str(samba_dc.krb5_conf))  # the realm setup, as deployed
    monkeypatch.delenv("KRB5_KTNAME", raising=False)  # the keytab comes from the configuration only
    target = tmp_path / "data"
    shutil.copytree(negotiate_data_dir, target)
    async with running_gateway(target) as (gw, info):
        g = Gateway(gw, info, samba_dc, principals, tmp_path)
        await g.configure()
        yield g


def client(monkeypatch: pytest.MonkeyPatch, ccache: Path, *, host: str = HOST, binding: bytes | None = None,
           protocol: str = "negotiate") -> Any:
    """A pyspnego initiator with the ccache's ticket, optionally binding ``tls-server-end-point``."""
    monkeypatch.setenv("KRB5CCNAME", f"FILE:{ccache}")
    cb = None if binding is None else spnego.channel_bindings.GssChannelBindings(application_data=binding)
    return spnego.client(hostname=host, service="HTTP", protocol=protocol, channel_bindings=cb)


def negotiate_header(token: bytes | None) -> str:
    assert token
    return "Negotiate " + base64.b64encode(token).decode()


def csr_token(cn: str, oid: str) -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return windows_csr(key, cn, template_oid=oid).public_bytes(serialization.Encoding.DER)


async def template_oid(g: Gateway, name: str) -> str:
    template = WindowsSettings.of(await g.gw.door("windows").configuration("windows")).template(name)
    assert template is not None
    return template.oid


def assert_challenge(rep: SoapReply) -> None:
    assert rep.status == 401, (rep.status, rep.body[:400])
    assert rep.headers.getall("WWW-Authenticate") == ["Negotiate"]


# --- (a) no token ---------------------------------------------------------------------------


async def test_no_authorization_gets_401_negotiate_on_cep_and_ces(gateway: Gateway) -> None:
    oid = await template_oid(gateway, "GatewayUser")
    assert_challenge(await gateway.post(CEP, get_policies_body()))
    assert_challenge(await gateway.post(CES, rst_body(token=csr_token("alice", oid))))
    basic = await gateway.post(CEP, get_policies_body(), authorization="Basic YTpi")
    assert_challenge(basic)
    assert await gateway.issued() == 0

    # without the setting the endpoint is back to the not-configured fault (no challenge)
    door = gateway.gw.door("windows")
    rec = await door.configuration("windows")
    await door.update_configuration("windows", settings={k: v for k, v in rec.settings.items() if k != "kerberos"})
    rep = await gateway.post(CEP, get_policies_body())
    assert rep.status == 500 and rep.is_fault and "not configured" in rep.reason


# --- (b) kinit + curl --negotiate -----------------------------------------------------------


async def curl(g: Gateway, ccache: Path, *args: str) -> tuple[str, str, bytes]:
    """curl POSTing a GetPolicies envelope to the Kerberos CEP by name (--resolve, the gateway's
    TLS CA): (status, response headers, body). Run without blocking the gateway's loop."""
    body = g.tmp / "get-policies.xml"
    body.write_bytes(get_policies_body())
    out, headers = g.tmp / "out.xml", g.tmp / "headers.txt"
    proc = await asyncio.create_subprocess_exec(
        "curl", "-sS", *args, "--resolve", f"{HOST}:{g.port}:127.0.0.1", "--cacert", g.info.tls_ca,
        "-H", f"Content-Type: {CONTENT_TYPE}", "--data-binary", f"@{body}", "-o", str(out), "-D", str(headers),
        "-w", "%{http_code}", f"https://{HOST}:{g.port}{CEP}",
        env=g.dc.krb5_env(ccache), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await proc.communicate()
    assert proc.returncode == 0, stderr.decode()
    return stdout.decode(), headers.read_bytes().decode(), out.read_bytes()


async def test_kinit_and_curl_negotiate_get_policies(gateway: Gateway) -> None:
    ccache = gateway.ccache("neg-alice")
    status, headers, _ = await curl(gateway, ccache)
    assert status == "401" and "WWW-Authenticate: Negotiate\r\n" in headers

    status, headers, body = await curl(gateway, ccache, "--negotiate", "-u", ":")
    assert status == "200", headers
    assert "WWW-Authenticate: Negotiate " in headers  # the AP-REP: curl checked it (mutual auth)
    rep = SoapReply(200, {}, body)
    assert rep.payload.tag == f"{{{XCEP}}}GetPoliciesResponse"
    assert_valid(rep.payload)
    names = [e.text for e in rep.payload.iter(f"{{{XCEP}}}commonName")]
    assert "GatewayUser" in names


# --- (c) pyspnego as a user and as a computer: CES Issue -------------------------------------


@pytest.mark.parametrize(("principal", "template", "kind"),
                         [("neg-alice", "GatewayUser", "user"), ("NEGWS1$", "GatewayComputer", "computer")])
async def test_pyspnego_user_and_computer_enroll_over_kerberos(
        gateway: Gateway, monkeypatch: pytest.MonkeyPatch, principal: str, template: str, kind: str) -> None:
    ctx = client(monkeypatch, gateway.ccache(principal))
    token = ctx.step()
    rep = await gateway.post(CES, rst_body(token=csr_token("neg", await template_oid(gateway, template))),
                             authorization=negotiate_header(token))
    answer = rstr(rep)
    assert answer.certificate is not None
    # mutual authentication: the AP-REP on the answer completes the client's context
    scheme, _, server_token = rep.headers["WWW-Authenticate"].partition(" ")
    assert scheme == "Negotiate" and server_token
    ctx.step(base64.b64decode(server_token))
    assert ctx.complete
    assert await gateway.issued() == 1
    assert negotiate.principal_of(f"{principal}@GW.TEST").kind == kind


@pytest.mark.parametrize(("principal", "template"), [("neg-alice", "GatewayUser"), ("NEGWS1$", "GatewayComputer")])
async def test_the_client_simulator_enrolls_over_kerberos_like_windows(
        gateway: Gateway, monkeypatch: pytest.MonkeyPatch, principal: str, template: str) -> None:
    """GetPolicies on the Kerberos CEP, then Issue on the cAURI it names (clientAuthentication 2):
    each POST first without credentials, then the 401 answered, the AP-REP checked."""
    ccache = gateway.ccache(principal)
    sim = WindowsClientSimulator(
        gateway.info.tls_ca, gateway.tmp, hosts={HOST: "127.0.0.1"},
        negotiate=lambda: client(monkeypatch, ccache, binding=gateway.server_binding()))
    policy = await sim.get_policies(f"https://{HOST}:{gateway.port}{CEP}", sim_kerberos)
    chosen = policy.template(template)
    cauri = policy.cauri(chosen, sim_kerberos)
    assert cauri.uri == f"https://{HOST}:{gateway.port}{CES}"
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, principal.rstrip("$"))])
    csr = sim_pkcs10(chosen, key, subject)
    issued = await sim.request(cauri, csr.public_bytes(serialization.Encoding.DER), PKCS10)
    assert issued.certificate is not None
    assert await gateway.issued() == 1


# --- (d) another service's ticket, a realm not accepted --------------------------------------


async def test_a_ticket_for_another_service_is_refused(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    token = client(monkeypatch, gateway.ccache("neg-alice"), host="other.gw.test").step()
    oid = await template_oid(gateway, "GatewayUser")
    assert_challenge(await gateway.post(CES, rst_body(token=csr_token("x", oid)), authorization=negotiate_header(token)))
    assert await gateway.issued() == 0


async def test_a_realm_not_listed_is_refused(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    await gateway.configure(realms=["OTHER.TEST"])
    token = client(monkeypatch, gateway.ccache("neg-alice")).step()
    oid = await template_oid(gateway, "GatewayUser")
    assert_challenge(await gateway.post(CES, rst_body(token=csr_token("x", oid)), authorization=negotiate_header(token)))
    assert await gateway.issued() == 0


# --- (e) NTLM ---------------------------------------------------------------------------------


@pytest.mark.parametrize("options", [None, spnego.NegotiateOptions.use_ntlm])
async def test_ntlm_tokens_are_refused(gateway: Gateway, options: Any) -> None:
    if options is None:  # raw NTLMSSP NEGOTIATE_MESSAGE
        ctx = spnego.client("GW\\neg-alice", "x", hostname=HOST, service="HTTP", protocol="ntlm")
    else:  # SPNEGO offering NTLM
        ctx = spnego.client("GW\\neg-alice", "x", hostname=HOST, service="HTTP", protocol="negotiate",
                            options=options)
    token = ctx.step()
    assert token is not None and negotiate.is_ntlm(token)
    oid = await template_oid(gateway, "GatewayUser")
    rep = await gateway.post(CES, rst_body(token=csr_token("x", oid)), authorization=negotiate_header(token))
    assert_challenge(rep)
    assert b"NTLM" in rep.body
    assert await gateway.issued() == 0


# --- (f) channel bindings --------------------------------------------------------------------


async def test_channel_bindings_of_the_listener_certificate_are_accepted_others_refused(
        gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    ccache = gateway.ccache("neg-alice")
    oid = await template_oid(gateway, "GatewayUser")
    wrong = b"tls-server-end-point:" + bytes(32)
    token = client(monkeypatch, ccache, binding=wrong).step()
    assert_challenge(await gateway.post(CES, rst_body(token=csr_token("x", oid)), authorization=negotiate_header(token)))
    assert await gateway.issued() == 0

    token = client(monkeypatch, ccache, binding=gateway.server_binding()).step()
    assert rstr(await gateway.post(CES, rst_body(token=csr_token("x", oid)),
                                   authorization=negotiate_header(token))).certificate is not None
    assert await gateway.issued() == 1


# --- (g) replay -------------------------------------------------------------------------------


@pytest.mark.parametrize("rcache", ["configured", "default"])
async def test_a_replayed_ap_req_is_refused(gateway: Gateway, monkeypatch: pytest.MonkeyPatch, rcache: str) -> None:
    if rcache == "default":  # the host's replay cache (KRB5RCACHEDIR, else /var/tmp)
        monkeypatch.setenv("KRB5RCACHEDIR", str(gateway.tmp))
        await gateway.configure(rcache=None)
    token = client(monkeypatch, gateway.ccache("neg-alice")).step()
    oid = await template_oid(gateway, "GatewayUser")
    first = await gateway.post(CES, rst_body(token=csr_token("x", oid)), authorization=negotiate_header(token))
    assert rstr(first).certificate is not None
    again = await gateway.post(CES, rst_body(token=csr_token("y", oid)), authorization=negotiate_header(token))
    assert_challenge(again)
    assert await gateway.issued() == 1


# --- (h) an expired ticket --------------------------------------------------------------------

CLOCKSKEW = 2  # seconds, for the acceptor: MIT allows endtime + clockskew (default 300 s)
SHORT_LIFE = 5  # seconds: the service ticket's lifetime (gss time_req); room for the fresh request


def short_skew_krb5_conf(g: Gateway) -> Path:
    """The DC's krb5.conf with ``clockskew = 2``: MIT reads KRB5_CONFIG per context, so the
    acceptor in this process uses it as soon as the environment names it."""
    conf = g.tmp / "krb5-clockskew.conf"
    text = g.dc.krb5_conf.read_text()
    assert "[libdefaults]\n" in text
    conf.write_text(text.replace("[libdefaults]\n", f"[libdefaults]\n    clockskew = {CLOCKSKEW}\n", 1))
    return conf


def service_ticket_end(env: dict[str, str]) -> float:
    """The HTTP/gateway ticket's end time (epoch seconds) as klist shows it (C locale, local time)."""
    out = run(["klist"], env={**env, "LC_ALL": "C"}).stdout
    for line in out.splitlines():
        fields = line.split()
        if len(fields) == 5 and fields[4] == f"{SPN}@{REALM}":
            start = datetime.strptime(" ".join(fields[0:2]), "%m/%d/%y %H:%M:%S").timestamp()
            end = datetime.strptime(" ".join(fields[2:4]), "%m/%d/%y %H:%M:%S").timestamp()
            assert end - start <= SHORT_LIFE + 1, out  # the KDC really issued a short ticket
            return end
    raise AssertionError(f"no {SPN} ticket in the ccache:\n{out}")


def short_ticket_token(ccache: Path) -> bytes:
    """A Kerberos AP-REQ for the gateway whose service ticket lives SHORT_LIFE seconds.

    Samba's KDC refuses a TGS request made with a TGT of 2 minutes or less ("Ticket expired";
    4 minutes works), so the TGT is the default one and only the service ticket is short: the
    initiator's time_req becomes the TGS request's end time."""
    import gssapi

    assert os.environ["KRB5CCNAME"] == f"FILE:{ccache}"
    name = gssapi.Name(f"HTTP@{HOST}", gssapi.NameType.hostbased_service)
    ctx = gssapi.SecurityContext(name=name, usage="initiate", lifetime=SHORT_LIFE,
                                 mech=gssapi.OID.from_int_seq(negotiate.KRB5_OID))
    token = ctx.step()
    assert token
    return bytes(token)


async def test_an_expired_ticket_is_refused(gateway: Gateway, monkeypatch: pytest.MonkeyPatch,
                                            caplog: pytest.LogCaptureFixture) -> None:
    """Two AP-REQs made from one 5-second ticket: the first, sent at once, is accepted; the second,
    sent once end time + clock skew has passed, is refused as expired and nothing more is issued.
    (The client library would fetch a fresh ticket for a token made after expiry, so the token is
    made while the ticket is valid: the expired-ticket case the acceptor itself must refuse.)"""
    conf = short_skew_krb5_conf(gateway)
    monkeypatch.setenv("KRB5_CONFIG", str(conf))  # the acceptor's, and kinit's and the initiator's
    ccache = gateway.tmp / "cc-short"
    env = {**gateway.dc.krb5_env(ccache), "KRB5_CONFIG": str(conf)}
    monkeypatch.setenv("KRB5CCNAME", env["KRB5CCNAME"])
    run(["kinit", f"neg-alice@{REALM}"], env=env, input=gateway.principals.alice_password + "\n")
    fresh, stale = short_ticket_token(ccache), short_ticket_token(ccache)
    end = service_ticket_end(env)
    oid = await template_oid(gateway, "GatewayUser")

    rep = await gateway.post(CES, rst_body(token=csr_token("x", oid)), authorization=negotiate_header(fresh))
    assert rstr(rep).certificate is not None
    assert await gateway.issued() == 1

    deadline = time.monotonic() + 30
    while time.time() <= end + CLOCKSKEW + 1:  # klist's end time is whole seconds: one more
        assert time.monotonic() < deadline, "the ticket did not expire within 30 s"
        await asyncio.sleep(0.25)
    with caplog.at_level(logging.WARNING, logger=negotiate.log.name):
        rep = await gateway.post(CES, rst_body(token=csr_token("y", oid)), authorization=negotiate_header(stale))
    assert_challenge(rep)
    assert b"Ticket expired" in rep.body, rep.body
    assert any("refused" in r.getMessage() and "Ticket expired" in r.getMessage() for r in caplog.records)
    assert await gateway.issued() == 1


# --- configuration ----------------------------------------------------------------------------


async def test_a_bad_kerberos_setting_or_a_missing_keytab_is_a_fault_not_a_challenge(
        gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    token = client(monkeypatch, gateway.ccache("neg-alice")).step()
    oid = await template_oid(gateway, "GatewayUser")
    await gateway.configure(keytab="relative/http.keytab")
    rep = await gateway.post(CEP, get_policies_body(), authorization=negotiate_header(token))
    assert rep.is_fault and "kerberos: keytab: must be an absolute path" in rep.reason

    await gateway.configure(keytab=str(gateway.tmp / "no-such.keytab"))
    rep = await gateway.post(CES, rst_body(token=csr_token("x", oid)), authorization=negotiate_header(token))
    assert rep.is_fault and "keytab" in rep.reason
    assert await gateway.issued() == 0
