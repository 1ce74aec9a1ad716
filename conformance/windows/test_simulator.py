"""The Windows client simulator (``simulator.py``, written from the specifications) against the
real gateway: autoenrollment as certenroll does it, for the UsernameToken and the client
certificate endpoints, on the gateway's paths and AD CS's, with a PKCS#10, a CMC request and
a key-based PKCS#7 renewal. Every certificate is installed only after ``openssl verify``
against the gateway's CA, and carries the extensions its template announced; every answer
the simulator reads is first validated against the MS-XCEP / MS-WSTEP schemas (``schema_valid``)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import pytest
import xmlschema
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from conformance.harness import GatewayInfo, require_client, running_gateway

from .simulator import (
    CERTIFICATE,
    ENROLL,
    SOAP12,
    WST,
    XCEP,
    _oid_body,
    integer,
    seq,
    tlv,
    PKCS10,
    TEMPLATE_INFORMATION,
    USERNAME,
    Issued,
    Policy,
    PolicyTemplate,
    SoapFaultError,
    WindowsClientSimulator,
    cmc_request,
    pkcs7_renewal,
    pkcs10,
    rsa_key,
)


XSD = Path(__file__).resolve().parents[2] / "protocols" / "windows" / "xsd"  # from the specs' appendices
ANSWER_SCHEMAS = {f"{{{XCEP}}}GetPoliciesResponse": "xcep.xsd",
                  f"{{{WST}}}RequestSecurityTokenResponseCollection": "wstep-wstrust.xsd"}
_schemas: dict[str, xmlschema.XMLSchema] = {}


def schema_valid(payload: Any) -> None:
    """Every answer the simulator reads: a GetPoliciesResponse against MS-XCEP's schema, an
    RSTRC against MS-WSTEP's, a fault's CertificateEnrollmentWSDetail against MS-WSTEP's."""
    if payload.tag == f"{{{SOAP12}}}Fault":
        payload = payload.find(f"{{{SOAP12}}}Detail/{{{ENROLL}}}CertificateEnrollmentWSDetail")
        if payload is None:
            return  # a CEP fault: MS-XCEP defines no detail
        name = "wstep.xsd"
    else:
        name = ANSWER_SCHEMAS[payload.tag]
    if name not in _schemas:
        _schemas[name] = xmlschema.XMLSchema(str(XSD / name))
    errors = [str(e.reason) for e in _schemas[name].iter_errors(payload)]
    assert errors == [], (payload.tag, errors)


def simulator(info: GatewayInfo, work: Path, **kw: Any) -> WindowsClientSimulator:
    return WindowsClientSimulator(info.tls_ca, work, validate=schema_valid, **kw)


@pytest.fixture(scope="module")
def initialized(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import asyncio

    from gateway import bootstrap

    base = tmp_path_factory.mktemp("windows-sim") / "data"
    asyncio.run(bootstrap.initialize(base))
    return base


@pytest.fixture
async def gateway(initialized: Path, tmp_path: Path) -> AsyncIterator[GatewayInfo]:
    require_client("openssl")
    data = tmp_path / "data"
    shutil.copytree(initialized, data)
    async with running_gateway(data) as (_, info):
        yield info


def dev(info: GatewayInfo) -> dict[str, Any]:
    return next(e for e in info.data["protocols"]["xcep"] if e["config"] == "windows")


def ca_file(info: GatewayInfo) -> Path:
    return Path(info.ca("root")["certificate"])


def subject(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def assert_carries_template(cert: x509.Certificate, t: PolicyTemplate) -> None:
    """The template's announced extensions are in the certificate, byte for byte, and so is
    the template-information extension naming the template with its revision."""
    by_oid = {e.oid.dotted_string: e for e in cert.extensions}
    for ext in t.extensions:
        assert ext.oid in by_oid, ext.oid
        assert by_oid[ext.oid].value.public_bytes() == ext.value, ext.oid
        assert by_oid[ext.oid].critical == ext.critical, ext.oid
    info = by_oid[TEMPLATE_INFORMATION].value.public_bytes()
    assert info == seq(tlv(0x06, _oid_body(t.oid)), integer(t.major), integer(t.minor))


async def enroll_user(sim: WindowsClientSimulator, cep: str, info: GatewayInfo, cn: str) -> tuple[Policy, Issued]:
    policy = await sim.get_policies(cep, USERNAME)
    template = policy.template("GatewayUser")
    assert template.enroll and template.auto_enroll and template.enrollment_flags & 0x20
    cauri = policy.cauri(template, USERNAME)
    key = rsa_key(template.min_key_bits)
    issued = await sim.request(cauri, pkcs10(template, key, subject(cn)).public_bytes(Encoding.DER), PKCS10)
    assert issued.disposition == "Issued" and issued.request_id
    sim.install(cn, issued, key, ca_file(info))
    assert_carries_template(issued.certificate, template)
    return policy, issued


@pytest.mark.parametrize("paths", ["gateway", "adcs"])
async def test_username_token_autoenrollment(gateway: GatewayInfo, tmp_path: Path, paths: str) -> None:
    entry = dev(gateway)
    urls = entry if paths == "gateway" else entry["adcs"]
    sim = simulator(gateway, tmp_path, username=entry["username"], password=entry["password"])
    policy, issued = await enroll_user(sim, urls["cep"]["username"], gateway, "alice")
    assert policy.cauri(policy.template("GatewayUser"), USERNAME).uri == urls["ces"]["username"]
    assert issued.certificate.subject == subject("alice")
    assert policy.cas[0].certificate in issued.chain


async def test_computer_enrolls_then_uses_its_certificate_and_renews_by_key(gateway: GatewayInfo, tmp_path: Path) -> None:
    entry = dev(gateway)
    # first certificate: a CMC request over the UsernameToken endpoint
    sim = simulator(gateway, tmp_path, username=entry["username"], password=entry["password"])
    policy = await sim.get_policies(entry["cep"]["username"], USERNAME)
    computer = policy.template("GatewayComputer")
    assert computer.general_flags & 0x40  # a machine template
    key = rsa_key(computer.min_key_bits)
    csr = pkcs10(computer, key, subject("pc-1.example.net"), [x509.DNSName("pc-1.example.net")])
    first = await sim.request(policy.cauri(computer, USERNAME), cmc_request(csr, key, tmp_path))
    cert_path, key_path = sim.install("pc-1", first, key, ca_file(gateway))
    assert_carries_template(first.certificate, computer)

    # then as the computer: the Certificate endpoints, with that certificate over TLS
    machine = simulator(gateway, tmp_path, client_cert=(cert_path, key_path))
    policy = await machine.get_policies(entry["cep"]["certificate"], CERTIFICATE)
    assert {t.name for t in policy.templates} == {"GatewayUser", "GatewayComputer"}

    # key-based renewal: the KeyBasedRenewal policy, a renewal-only cAURI, PKCS#7 signed by the old key
    renewal_policy = await machine.get_policies(entry["cep"]["keybasedrenewal"], CERTIFICATE)
    template = renewal_policy.template("GatewayComputer")
    assert template.enrollment_flags & 0x00010000
    cauri = renewal_policy.cauri(template, CERTIFICATE, renewal=True)
    assert cauri.renewal_only and cauri.uri == entry["ces"]["certificate"]
    new_key = rsa_key(template.min_key_bits)
    new_csr = pkcs10(template, new_key, subject("pc-1.example.net"), [x509.DNSName("pc-1.example.net")])
    renewed = await machine.request(cauri, pkcs7_renewal(new_csr, first.certificate, key, tmp_path))
    machine.install("pc-1-renewed", renewed, new_key, ca_file(gateway))
    assert renewed.certificate.subject == first.certificate.subject
    assert renewed.certificate.serial_number != first.certificate.serial_number
    spki = Encoding.DER, PublicFormat.SubjectPublicKeyInfo
    assert renewed.certificate.public_key().public_bytes(*spki) == new_key.public_key().public_bytes(*spki)
    assert_carries_template(renewed.certificate, template)


async def test_a_held_request_is_pending_until_an_operator_approves(gateway: GatewayInfo, tmp_path: Path) -> None:
    entry = dev(gateway)
    admin = {"Authorization": f"Bearer {gateway.api_key}"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=gateway.ssl_context())) as http:
        async with http.patch(f"{gateway.https}/admin/protocol-configs/windows", headers=admin,
                              json={"settings": {"approval": "manual"}}) as r:
            assert r.status == 200, await r.text()
        sim = simulator(gateway, tmp_path, username=entry["username"], password=entry["password"])
        policy = await sim.get_policies(entry["cep"]["username"], USERNAME)
        template = policy.template("GatewayUser")
        cauri = policy.cauri(template, USERNAME)
        key = rsa_key(template.min_key_bits)
        held = await sim.request(cauri, pkcs10(template, key, subject("erin")).public_bytes(Encoding.DER), PKCS10)
        assert held.certificate is None and held.disposition == "Taken Under Submission" and held.request_id
        still = await sim.query_status(cauri, held.request_id)
        assert still.certificate is None
        async with http.get(f"{gateway.https}/admin/requests?status=pending", headers=admin) as r:
            pending = (await r.json())["items"]
        assert len(pending) == 1
        async with http.post(f"{gateway.https}/admin/requests/{pending[0]['id']}/approve", headers=admin, json={}) as r:
            assert r.status == 200, await r.text()
        done = await sim.query_status(cauri, held.request_id)
        assert done.disposition == "Issued" and done.request_id == held.request_id
        sim.install("erin", done, key, ca_file(gateway))
        assert_carries_template(done.certificate, template)  # type: ignore[arg-type]


async def test_a_wrong_password_gets_no_policy_and_no_certificate(gateway: GatewayInfo, tmp_path: Path) -> None:
    entry = dev(gateway)
    sim = simulator(gateway, tmp_path, username=entry["username"], password="wrong-password")
    with pytest.raises(SoapFaultError) as info:
        await sim.get_policies(entry["cep"]["username"], USERNAME)
    assert info.value.status == 500


async def test_a_computer_enrolls_over_the_certificate_endpoints_with_pkcs10_cmc_and_a_held_request(
        gateway: GatewayInfo, tmp_path: Path) -> None:
    """New enrollments (not renewals) authenticated by the TLS client certificate alone: the
    Certificate CEP, its cAURI, a PKCS#10 and a CMC request, then a request held for approval
    and polled with QueryTokenStatus on that same endpoint."""
    entry = dev(gateway)
    sim = simulator(gateway, tmp_path, username=entry["username"], password=entry["password"])
    policy = await sim.get_policies(entry["cep"]["username"], USERNAME)
    computer = policy.template("GatewayComputer")
    key = rsa_key(computer.min_key_bits)
    first = await sim.request(policy.cauri(computer, USERNAME),
                              pkcs10(computer, key, subject("pc-2.example.net")).public_bytes(Encoding.DER), PKCS10)
    cert_path, key_path = sim.install("pc-2", first, key, ca_file(gateway))

    machine = simulator(gateway, tmp_path, client_cert=(cert_path, key_path))
    policy = await machine.get_policies(entry["cep"]["certificate"], CERTIFICATE)
    template = policy.template("GatewayComputer")
    cauri = policy.cauri(template, CERTIFICATE)
    assert cauri.uri == entry["ces"]["certificate"] and not cauri.renewal_only
    for n, form in enumerate(("pkcs10", "cmc")):
        name = f"pc-3{n}.example.net"
        new_key = rsa_key(template.min_key_bits)
        csr = pkcs10(template, new_key, subject(name), [x509.DNSName(name)])
        token = csr.public_bytes(Encoding.DER) if form == "pkcs10" else cmc_request(csr, new_key, tmp_path)
        got = await machine.request(cauri, token)
        assert got.disposition == "Issued" and got.request_id, form
        machine.install(name, got, new_key, ca_file(gateway))
        assert got.certificate is not None and got.certificate.subject == subject(name)
        assert_carries_template(got.certificate, template)

    admin = {"Authorization": f"Bearer {gateway.api_key}"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=gateway.ssl_context())) as http:
        async with http.patch(f"{gateway.https}/admin/protocol-configs/windows", headers=admin,
                              json={"settings": {"approval": "manual"}}) as r:
            assert r.status == 200, await r.text()
        held_key = rsa_key(template.min_key_bits)
        held = await machine.request(cauri, pkcs10(template, held_key, subject("pc-4.example.net")).public_bytes(Encoding.DER))
        assert held.certificate is None and held.disposition == "Taken Under Submission" and held.request_id
        assert (await machine.query_status(cauri, held.request_id)).certificate is None
        async with http.get(f"{gateway.https}/admin/requests?status=pending", headers=admin) as r:
            (pending,) = (await r.json())["items"]
        async with http.post(f"{gateway.https}/admin/requests/{pending['id']}/approve", headers=admin, json={}) as r:
            assert r.status == 200, await r.text()
    done = await machine.query_status(cauri, held.request_id)
    assert done.disposition == "Issued" and done.request_id == held.request_id
    machine.install("pc-4", done, held_key, ca_file(gateway))
    assert_carries_template(done.certificate, template)  # type: ignore[arg-type]


async def test_an_enrollment_fault_carries_a_schema_valid_detail(gateway: GatewayInfo, tmp_path: Path) -> None:
    """A CES refusal as the simulator meets it: HTTP 500 with a schema-valid
    CertificateEnrollmentWSDetail (a PKCS#10 naming no template the policy offers)."""
    entry = dev(gateway)
    sim = simulator(gateway, tmp_path, username=entry["username"], password=entry["password"])
    policy = await sim.get_policies(entry["cep"]["username"], USERNAME)
    template = policy.template("GatewayUser")
    key = rsa_key(template.min_key_bits)
    bare = x509.CertificateSigningRequestBuilder().subject_name(subject("nobody")).sign(key, hashes.SHA256())
    with pytest.raises(SoapFaultError) as info:
        await sim.request(policy.cauri(template, USERNAME), bare.public_bytes(Encoding.DER), PKCS10)
    assert info.value.status == 500
    assert b"CertificateEnrollmentWSDetail" in info.value.body
