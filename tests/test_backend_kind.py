"""A backend kind added in a test issues through ACME, SCEP and EST, with no change to
the Authority: the proof that the CA backend interface is the seam every CA sits behind.

``MinimalCA`` stands for an upstream CA or an HSM-held key: its key lives only in
this test (never in the gateway's store), it signs with the shared certificate
builder, declares no CRL or OCSP capability, and records what it was asked. Real
clients drive the protocols: hand-made ACME JWS over TLS, micromdm's scepclient, and
curl for EST.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import io
import subprocess
import sys
from pathlib import Path
from typing import AsyncIterator, Iterator

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs7

from conformance.acme.support import RawClient, make_csr
from conformance.harness import GatewayInfo, require_client, running_gateway
from gateway.ca.backend import (
    CABackend,
    PendingUpstream,
    RevocationReason,
    Signed,
    SignRequest,
    SignResult,
)
from gateway.ca.builder import IssuerContext, build_certificate
from gateway.ca.kinds import KINDS, BackendContext
from gateway.cli import main as gateway_cli
from gateway.errors import Unavailable
from gateway.store.records import CARecord

KIND = "test-minimal"
CA_ID = "minimal"


class MinimalCA(CABackend):
    """Signs with a key the gateway never sees; remembers every call."""

    def __init__(self, record: CARecord, key: ec.EllipticCurvePrivateKey, certificate: x509.Certificate,
                 calls: list[str]) -> None:
        self.id = record.id
        self._key, self._certificate, self.calls = key, certificate, calls

    async def sign(self, request: SignRequest) -> SignResult:
        self.calls.append(f"sign {request.profile.name} {request.protocol_config}")
        issuer = IssuerContext(ca_id=self.id, certificate=self._certificate, private_key=self._key,
                               crl_url=None, ocsp_url=None, ca_issuers_url=None)
        serial = x509.random_serial_number()
        return Signed(build_certificate(profile=request.profile, issuer=issuer, serial=serial,
                                        public_key=request.public_key, csr=request.csr,
                                        overrides=request.overrides))

    async def revoke(self, serial: int, reason: RevocationReason,
                     invalidity_date: dt.datetime | None = None) -> None:
        self.calls.append(f"revoke {serial:x} {reason.name}")

    async def chain(self) -> tuple[x509.Certificate, ...]:
        return (self._certificate,)


def _ca() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Minimal Upstream CA")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _cli(*args: str, data_dir: Path, stdin: str | None = None) -> str:
    """The real ``gateway`` CLI, in this process (so it sees the registered kind)."""
    out = io.StringIO()
    old_stdin = sys.stdin
    try:
        if stdin is not None:
            sys.stdin = io.StringIO(stdin)
        with contextlib.redirect_stdout(out):
            code = gateway_cli([*args, "--data-dir", str(data_dir)])
    finally:
        sys.stdin = old_stdin
    assert code == 0, (args, out.getvalue())
    return out.getvalue()


@pytest.fixture
def minimal_kind() -> Iterator[tuple[x509.Certificate, list[str]]]:
    key, cert = _ca()
    calls: list[str] = []

    def factory(record: CARecord, context: BackendContext) -> CABackend:
        return MinimalCA(record, key, cert, calls)

    with KINDS.registered(KIND, factory):
        yield cert, calls


@pytest.fixture
async def served(tmp_path: Path, minimal_kind: tuple[x509.Certificate, list[str]],
                 monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[object, GatewayInfo]]:
    from gateway import bootstrap

    data_dir = tmp_path / "data"
    await bootstrap.initialize(data_dir)
    monkeypatch.setenv("GATEWAY_ACME_UNSAFE_ALWAYS_VALID", "acme-min")
    async with running_gateway(data_dir) as (gw, info):
        cert, _calls = minimal_kind
        await gw.cas.add_backend_ca(CA_ID, "Minimal Upstream CA", KIND, cert, [])  # type: ignore[attr-defined]
        await gw.door("acme").create_configuration(  # type: ignore[attr-defined]
            "acme-min", CA_ID, ["tls-server"], settings={"challenge_validation": "always-valid"})
        await asyncio.to_thread(_cli, "scep", "config", "create", "scep-min", "--ca", CA_ID,
                                "--profile", "device", data_dir=data_dir)
        await asyncio.to_thread(_cli, "scep", "static-challenge", "--config", "scep-min",
                                "--value", "minimal-challenge", data_dir=data_dir)
        await asyncio.to_thread(_cli, "est", "create", "est-min", "--ca", CA_ID, "--profile", "device",
                                data_dir=data_dir)
        await asyncio.to_thread(_cli, "est", "user", "add", "est-min", "device", "--password-stdin",
                                data_dir=data_dir, stdin="minimal-password\n")
        yield gw, info


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> None:
    cert.verify_directly_issued_by(ca)
    assert cert.issuer == ca.subject


async def test_a_new_backend_kind_issues_through_acme_scep_and_est(
    served: tuple[object, GatewayInfo], minimal_kind: tuple[x509.Certificate, list[str]], tmp_path: Path,
) -> None:
    gw, info = served
    ca, calls = minimal_kind

    # ACME: account, order, always-valid authorization, finalize, download
    async with RawClient(info, "acme-min") as client:
        assert (await client.register()).status == 201
        order = await client.order("minimal.example.test")
        assert order.status == 201, order.body
        order_url = order.location
        for authz_url in order.json["authorizations"]:
            authz = (await client.post(authz_url)).json
            challenge = next(c for c in authz["challenges"] if c["type"] == "http-01")
            await client.post(challenge["url"], {})
            await client.poll(authz_url, ("valid",))
        csr, _key = make_csr(["minimal.example.test"])
        finalized = await client.post(order.json["finalize"],
                                      {"csr": base64.urlsafe_b64encode(csr).rstrip(b"=").decode()})
        assert finalized.status == 200, finalized.body
        done = await client.poll(order_url, ("valid", "invalid"))
        assert done.json["status"] == "valid", done.json
        pem = (await client.post(done.json["certificate"])).body
    acme_cert = x509.load_pem_x509_certificates(pem)[0]
    _issued_by(acme_cert, ca)

    # SCEP: micromdm's scepclient with the static challenge
    scepclient = require_client("scepclient", "Debian package scep")
    work = tmp_path / "scep"
    work.mkdir()
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{info.http}/scep/scep-min/pkiclient.exe?operation=GetCACert") as resp:
            assert resp.status == 200
            offered = pkcs7.load_der_pkcs7_certificates(await resp.read())
    ra = next(c for c in offered if isinstance(c.public_key(), rsa.RSAPublicKey))
    _issued_by(ra, ca)  # the SCEP RA certificate came from the new kind too
    result = await asyncio.to_thread(subprocess.run, [
        scepclient, "-server-url", f"{info.http}/scep/scep-min", "-private-key", str(work / "key.pem"),
        "-ca-fingerprint", ra.fingerprint(hashes.SHA256()).hex(),
        "-challenge", "minimal-challenge", "-cn", "minimal-device", "-organization", "Example",
    ], cwd=work, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    scep_cert = x509.load_pem_x509_certificate((work / "client.pem").read_bytes())
    _issued_by(scep_cert, ca)

    # EST: curl simpleenroll with HTTP Basic
    curl = require_client("curl", "Debian package curl")
    device_key = ec.generate_private_key(ec.SECP256R1())
    est_csr = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "est-device")]))
               .sign(device_key, hashes.SHA256()))
    body = base64.encodebytes(est_csr.public_bytes(serialization.Encoding.DER))
    result = await asyncio.to_thread(subprocess.run, [
        curl, "-sS", "--fail-with-body", "--cacert", info.tls_ca, "-u", "device:minimal-password",
        "-H", "Content-Type: application/pkcs10", "--data-binary", "@-",
        f"{info.https}/.well-known/est/est-min/simpleenroll",
    ], input=body, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    est_certs = pkcs7.load_der_pkcs7_certificates(base64.b64decode(result.stdout))
    _issued_by(est_certs[0], ca)

    # every one was signed by the new kind, and recorded and audited by the core
    assert any(c.startswith("sign tls-server acme-min") for c in calls), calls
    assert any(c.startswith("sign device scep-min") for c in calls), calls
    assert any(c.startswith("sign scep-ra scep-min") for c in calls), calls
    assert any(c.startswith("sign device est-min") for c in calls), calls
    for cert in (acme_cert, scep_cert, est_certs[0]):
        rec = await gw.authority.certificate(format(cert.serial_number, "x"))  # type: ignore[attr-defined]
        assert rec.ca_id == CA_ID

    # revocation reaches the backend; it publishes no CRL here, so the core asks for none
    serial = format(acme_cert.serial_number, "x")
    status = await gw.authority.revoke(serial, RevocationReason.key_compromise, actor="test")  # type: ignore[attr-defined]
    assert status.state.value == "revoked"
    assert f"revoke {serial} key_compromise" in calls
    with pytest.raises(Unavailable):
        await gw.authority.crl(CA_ID)  # type: ignore[attr-defined]


def test_a_ca_of_an_uninstalled_kind_is_reported_not_crashed() -> None:
    """A CA whose kind is not installed in this process: a clear error, the others serve."""
    from gateway.ca.kinds import BackendKinds

    kinds = BackendKinds()
    rec = CARecord(id="x", name="x", kind="upstream", state="active", parent_id=None,
                   certificate_pem="", chain_pem="", key_pem_encrypted=None, key_algorithm="EC-P256",
                   backend="not-installed")
    with pytest.raises(Unavailable, match="no backend kind 'not-installed'"):
        kinds.build(rec, None)  # type: ignore[arg-type]


class HoldingCA(MinimalCA):
    """An upstream CA with its own approval queue: it answers with a handle, and signs
    once its operator decides (``approve``)."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.held: dict[str, SignRequest] = {}
        self.approved: set[str] = set()

    async def sign(self, request: SignRequest) -> SignResult:
        handle = f"upstream-{len(self.held) + 1}"
        self.held[handle] = request
        return PendingUpstream(handle)

    async def poll(self, handle: str) -> SignResult:
        if handle not in self.approved:
            return PendingUpstream(handle)
        return await MinimalCA.sign(self, self.held[handle])


async def test_a_request_the_upstream_ca_holds_is_polled_until_it_signs(tmp_path: Path) -> None:
    from gateway import bootstrap
    from gateway.ca.backend import IssuedCertificate, PendingRequest
    from gateway.config import load_config
    from gateway.runtime import Gateway

    from .support import make_csr as support_csr

    key, cert = _ca()
    backends: list[HoldingCA] = []

    def factory(record: CARecord, context: BackendContext) -> CABackend:
        backends.append(HoldingCA(record, key, cert, []))
        return backends[-1]

    data_dir = tmp_path / "data"
    await bootstrap.initialize(data_dir)
    with KINDS.registered("test-holding", factory):
        gw = await Gateway.open(load_config(data_dir))
        try:
            await gw.cas.add_backend_ca("holding", "Holding Upstream CA", "test-holding", cert, [])
            door = gw.door("est")
            await door.create_configuration("held-up", "holding", ["device"])
            csr, _ = support_csr("held.example.test", ("held.example.test",))
            first = await door.enroll("held-up", csr, entity="held-device")
            assert isinstance(first, PendingRequest) and first.status == "pending"
            stored = await door.pending_request(first.request_id)
            assert stored is not None and stored.status == "upstream" and stored.upstream_handle == "upstream-1"

            still = await door.poll(first.request_id)  # the upstream has not decided
            assert isinstance(still, PendingRequest) and still.status == "pending"

            backends[-1].approved.add("upstream-1")
            issued = await door.poll(first.request_id)
            assert isinstance(issued, IssuedCertificate)
            _issued_by(issued.certificate, cert)
            rec = await gw.authority.certificate(format(issued.serial, "x"))
            assert rec.ca_id == "holding" and rec.request_id == first.request_id
            again = await door.poll(first.request_id)  # a later poll returns the same certificate
            assert isinstance(again, IssuedCertificate) and again.serial == issued.serial
            async with gw.store.read() as q:
                events = await q.events.list()
            kinds = [(e.type, e.status) for e in events if e.protocol_config == "held-up"]
            assert ("issue", "pending") in kinds and ("issue", "success") in kinds
        finally:
            await gw.close()
