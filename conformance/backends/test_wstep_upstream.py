"""A second gateway (its own process, data directory and CAs) as the AD CS upstream of the
one under test, spoken to over MS-WSTEP: the front gateway's ``adcs`` connector
(:mod:`gateway.ca.upstream.wstep`) sends a CSR to the upstream's CES with a WS-Security
UsernameToken and the template name, and records the certificate the upstream's RSA
issuing CA signed; a wrong password is a clear refusal with nothing stored; a request the
upstream holds for approval is polled with QueryTokenStatus until its operator approves.

Most tests make the CA record with ``add_backend_ca`` (to reach settings the CLI does not
offer in one call, e.g. several CAs with different passwords);
``test_every_client_issues_through_ces_set_up_with_the_cli`` makes it with
``gateway ca create --backend adcs`` as the README shows."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from conformance.harness import GatewayInfo, GatewayProcess, run_cli, running_gateway
from gateway import bootstrap
from gateway.ca.upstream import wstep as adcs
from gateway.errors import GatewayError, Unavailable
from gateway.ca.backend import RevocationReason
from gateway.store.records import CertificateFilter, EventFilter, serial_hex

TEMPLATE = "GatewayUser"


def _dev(up: GatewayInfo) -> dict[str, Any]:
    return next(e for e in up.data["protocols"]["xcep"] if e["config"] == "windows")


def _upstream_ca(up: GatewayInfo) -> tuple[x509.Certificate, list[x509.Certificate], str]:
    """The upstream Windows configuration's issuing CA and chain, as the operator would export
    them (certutil -ca.cert): one PEM file."""
    issuing = Path(up.ca("issuing-rsa")["certificate"]).read_text()
    root = Path(up.ca("root")["certificate"]).read_text()
    cert, chain = adcs.discover(_dev(up)["adcs"]["ces"]["username"], root + issuing, Path(up.tls_ca).read_text())
    return cert, chain, issuing


def _upstream_store_has(up: GatewayInfo, cert: x509.Certificate) -> bool:
    out = run_cli("cert", "list", "--json", data_dir=up.data_dir).stdout
    return serial_hex(cert.serial_number) in {row["serial"] for row in json.loads(out)}


def _csr(cn: str) -> x509.CertificateSigningRequest:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return (x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .sign(key, hashes.SHA256()))


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayInfo]:
    """The upstream gateway: its dev Windows configuration (CES with a UsernameToken user)."""
    data_dir = tmp_path_factory.mktemp("upstream") / "data"
    run_cli("init", data_dir=data_dir)
    proc = GatewayProcess(data_dir)
    try:
        yield proc.start()
    finally:
        proc.stop()


@contextlib.asynccontextmanager
async def _front(tmp_path: Path, up: GatewayInfo, cas: dict[str, str],
                 client: tuple[str, bytes] | None = None) -> AsyncIterator[Any]:
    """The front gateway with one ``adcs`` CA per (id -> password) in ``cas`` (UsernameToken),
    and ``up-cert`` on the Certificate endpoint when ``client`` (certificate PEM, key PEM) is given."""
    front = tmp_path / "front"
    await bootstrap.initialize(front)
    issuing, chain, _ = _upstream_ca(up)
    entry = _dev(up)
    trust = Path(up.tls_ca).read_text()
    async with running_gateway(front) as (gw, _info):
        sealer = gw.cas.sealer(adcs.KIND)
        made = {ca_id: adcs.settings_for(
            ca_id, sealer, url=entry["adcs"]["ces"]["username"], username=entry["username"], password=password,
            client_certificate_pem=None, client_key_pem=None, trust_pem=trust, template=TEMPLATE)
            for ca_id, password in cas.items()}
        if client is not None:
            made["up-cert"] = adcs.settings_for(
                "up-cert", sealer, url=entry["adcs"]["ces"]["certificate"], username=None, password=None,
                client_certificate_pem=client[0], client_key_pem=client[1], trust_pem=trust, template=TEMPLATE)
        for ca_id, settings in made.items():
            await gw.cas.add_backend_ca(ca_id, issuing.subject.rfc4514_string(), adcs.KIND, issuing, chain,
                                        settings)
        yield gw


async def _upstream_admin(up: GatewayInfo, method: str, path: str, body: object = None) -> Any:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with session.request(method, f"{up.https}/admin{path}", json=body, ssl=up.ssl_context(),
                                   headers={"Authorization": f"Bearer {up.api_key}"}) as resp:
            assert resp.status < 300, (resp.status, await resp.text())
            return await resp.json()


async def test_a_csr_is_signed_by_the_upstream_ces(upstream: GatewayInfo, tmp_path: Path) -> None:
    issuing, _, _ = _upstream_ca(upstream)
    async with _front(tmp_path, upstream, {"up-adcs": _dev(upstream)["password"]}) as gw:
        async with gw.store.read() as q:
            settings = (await q.cas.get("up-adcs")).backend_settings
        assert _dev(upstream)["password"] not in json.dumps(settings) and settings["password"].startswith("v1.")
        csr = _csr("front-device-1")
        issued = await gw.authority.issue_direct("up-adcs", csr, "tls-client", actor="test")
        cert = issued.certificate
        cert.verify_directly_issued_by(issuing)  # the upstream's RSA issuing CA signed it
        assert cert.public_key().public_numbers() == csr.public_key().public_numbers()  # type: ignore[union-attr]
        assert _upstream_store_has(upstream, cert)
        local = await gw.authority.certificate(serial_hex(cert.serial_number))
        assert local.ca_id == "up-adcs"
        assert issued.chain[0].subject == issuing.subject
        # the upstream named the template it was asked for (certificate template information)
        assert any(e.oid.dotted_string == "1.3.6.1.4.1.311.21.7" for e in cert.extensions)

        # MS-WSTEP has no revocation: revoked here, audited as not told upstream (still valid there)
        await gw.authority.revoke(local.serial, RevocationReason.superseded, actor="test")
        async with gw.store.read() as q:
            warned = [e for e in await q.events.list(EventFilter(type="revoke_not_upstream"), limit=5)
                      if e.serial == local.serial]
        assert len(warned) == 1 and warned[0].status == "warning", warned
        assert "MS-WSTEP has no revocation" in warned[0].detail["detail"], warned[0].detail


async def test_tls_client_certificate_authentication(upstream: GatewayInfo, tmp_path: Path) -> None:
    """The Certificate endpoint: the front gateway's TLS client certificate, one the upstream's
    RSA issuing CA issued (as AD CS wants a certificate from its own CA), is the caller."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "front-gateway")]))
           .sign(key, hashes.SHA256()))
    (tmp_path / "front.csr").write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    cert_pem = run_cli("cert", "issue", "--csr", str(tmp_path / "front.csr"), "--profile", "tls-client",
                       "--ca", "issuing-rsa", data_dir=upstream.data_dir).stdout
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    issuing, _, _ = _upstream_ca(upstream)
    async with _front(tmp_path, upstream, {}, client=(cert_pem, key_pem)) as gw:
        async with gw.store.read() as q:
            settings = (await q.cas.get("up-cert")).backend_settings
        assert "BEGIN" not in settings["client_key"] and settings["auth"] == "certificate"
        issued = await gw.authority.issue_direct("up-cert", _csr("front-device-3"), "tls-client", actor="test")
        issued.certificate.verify_directly_issued_by(issuing)
        assert _upstream_store_has(upstream, issued.certificate)


async def test_a_wrong_password_is_a_clear_failure_and_nothing_is_stored(upstream: GatewayInfo,
                                                                         tmp_path: Path) -> None:
    async with _front(tmp_path, upstream, {"up-wrong": "not-the-password"}) as gw:
        with pytest.raises(Unavailable) as refused:
            await gw.authority.issue_direct("up-wrong", _csr("front-device-2"), "tls-client", actor="test")
        assert "refused the gateway's credentials" in refused.value.detail, refused.value.detail
        async with gw.store.read() as q:
            assert not list(await q.certificates.list(CertificateFilter(ca_id="up-wrong")))


async def test_a_held_request_is_polled_until_the_upstream_decides(upstream: GatewayInfo, tmp_path: Path) -> None:
    """The upstream's Windows configuration holds requests for approval ("Taken Under
    Submission" with a RequestID); the front gateway keeps the RequestID and asks with
    QueryTokenStatus: an approval there is a certificate here, a denial there a rejection here."""
    await _upstream_admin(upstream, "PATCH", "/protocol-configs/windows", {"settings": {"approval": "manual"}})
    try:
        issuing, _, _ = _upstream_ca(upstream)
        async with _front(tmp_path, upstream, {"up-held": _dev(upstream)["password"]}) as gw:
            for cn in ("held-approved", "held-denied"):
                with pytest.raises(GatewayError) as held:
                    await gw.authority.issue_direct("up-held", _csr(cn), "tls-client", actor="test")
                assert "holds the request" in held.value.detail, held.value.detail
            async with gw.store.read() as q:
                held_here = list(await q.requests.list(status="upstream"))
            assert len(held_here) == 2
            assert all((r.upstream_handle or "").split(":")[0].isdigit() for r in held_here)  # the CES RequestIDs
            assert await gw.poll_upstream() == 0  # not decided yet: still Taken Under Submission

            waiting = (await _upstream_admin(upstream, "GET", "/requests?status=pending"))["items"]
            ours = {i["subject"]: i["id"] for i in waiting if i["subject"].startswith("CN=held-")}
            assert set(ours) == {"CN=held-approved", "CN=held-denied"}, waiting
            await _upstream_admin(upstream, "POST", f"/requests/{ours['CN=held-approved']}/approve", {})
            await _upstream_admin(upstream, "POST", f"/requests/{ours['CN=held-denied']}/reject",
                                  {"reason": "not ours"})
            assert await gw.poll_upstream() == 2

            async with gw.store.read() as q:
                certs = list(await q.certificates.list(CertificateFilter(ca_id="up-held")))
                rejected = list(await q.requests.list(status="rejected"))
            assert len(certs) == 1
            cert = x509.load_der_x509_certificate(certs[0].der)
            cert.verify_directly_issued_by(issuing)
            assert cert.subject.rfc4514_string() == "CN=held-approved"
            assert _upstream_store_has(upstream, cert)
            assert len(rejected) == 1 and rejected[0].decided_by == "upstream"
            assert "refused the request" in (rejected[0].reason or ""), rejected[0].reason
    finally:
        await _upstream_admin(upstream, "PATCH", "/protocol-configs/windows", {"settings": {"approval": None}})


async def test_every_client_issues_through_ces_set_up_with_the_cli(upstream: GatewayInfo, tmp_path: Path) -> None:
    """``gateway ca create --backend adcs`` as the README shows it, then certbot, scepclient
    and curl EST get certificates the upstream's CES issued under the template."""
    from conformance.harness import running_gateway as served

    from .clients import issue_with_every_client

    front = tmp_path / "front"
    await bootstrap.initialize(front)
    issuing, _, issuing_pem = _upstream_ca(up := upstream)
    ca_file = tmp_path / "adcs-ca.pem"
    ca_file.write_text(Path(up.ca("root")["certificate"]).read_text() + issuing_pem)
    entry = _dev(up)
    created = run_cli("ca", "create", "corp-adcs", "--backend", "adcs", "--upstream-url", entry["adcs"]["ces"]["username"],
                      "--upstream-ca-cert", str(ca_file), "--upstream-trust", up.tls_ca,
                      "--upstream-template", "GatewayComputer", "--upstream-user", entry["username"],
                      "--upstream-password-stdin", data_dir=front, input=entry["password"].encode() + b"\n")
    assert "signed for by the AD CS enrollment service" in created.stderr
    async with served(front) as (gw, info):
        issued = await issue_with_every_client(gw, info, "corp-adcs", tmp_path, key="rsa")  # the template: RSA
        for client, cert in issued.all().items():
            cert.verify_directly_issued_by(issuing)
            assert _upstream_store_has(up, cert), client
