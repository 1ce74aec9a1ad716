"""A second gateway (its own process, data directory and CAs) as the EST upstream of the
one under test: ``gateway ca create --backend est`` discovers its issuing CA from /cacerts,
and certbot, scepclient and curl EST then get certificates the upstream signed, over
HTTP Basic and over a TLS client certificate; a wrong upstream password is a clear,
audited refusal with nothing stored; a revocation here is audited as not told upstream."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from urllib.parse import quote
from typing import Any, Awaitable, Callable, Iterator

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from conformance.harness import GatewayInfo, GatewayProcess, run_cli, running_gateway
from gateway import bootstrap
from gateway.ca.backend import RevocationReason
from gateway.store.records import CertificateFilter, EventFilter, serial_hex

from .clients import allow_inserts, curl_est_through, issue_with_every_client, refuse_inserts

PASSWORD = "upstream-secret-1"


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayInfo]:
    """The upstream gateway: an EST label per authentication kind for the front gateway."""
    data_dir = tmp_path_factory.mktemp("upstream") / "data"
    run_cli("init", data_dir=data_dir)
    run_cli("est", "create", "front-basic", "--auth", "basic", data_dir=data_dir)
    run_cli("est", "user", "add", "front-basic", "front", "--password-stdin", data_dir=data_dir,
            input=PASSWORD.encode())
    run_cli("est", "create", "front-cert", "--auth", "certificate", data_dir=data_dir)
    # a label whose policy is stricter than the front's: EC keys only
    profile = (data_dir / "profiles" / "tls-client.toml").read_text()
    assert 'allowed = ["RSA-2048"' in profile
    (data_dir / "profiles" / "ec-only.toml").write_text(
        profile.replace('name = "tls-client"', 'name = "ec-only"').replace(
            'allowed = ["RSA-2048", "RSA-3072", "RSA-4096", "EC-P256", "EC-P384", "EC-P521"]', 'allowed = ["EC-P256"]'))
    run_cli("est", "create", "front-ec", "--auth", "basic", "--profile", "ec-only", data_dir=data_dir)
    run_cli("est", "user", "add", "front-ec", "front", "--password-stdin", data_dir=data_dir,
            input=PASSWORD.encode())
    proc = GatewayProcess(data_dir)
    try:
        yield proc.start()
    finally:
        proc.stop()


async def _events(gw: object, flt: EventFilter) -> list[object]:
    async with gw.store.read() as q:  # type: ignore[attr-defined]
        return list(await q.events.list(flt, limit=50))


def _upstream_issuing(up: GatewayInfo) -> x509.Certificate:
    return x509.load_pem_x509_certificate(Path(up.ca("issuing")["certificate"]).read_bytes())


def _upstream_store_has(up: GatewayInfo, cert: x509.Certificate) -> bool:
    out = run_cli("cert", "list", "--json", data_dir=up.data_dir).stdout
    return serial_hex(cert.serial_number) in {row["serial"] for row in json.loads(out)}


async def test_every_client_issues_through_an_est_upstream_with_basic(upstream: GatewayInfo, tmp_path: Path) -> None:
    front = tmp_path / "front"
    await bootstrap.initialize(front)
    created = run_cli("ca", "create", "up-est", "--backend", "est",
                      "--upstream-url", f"{upstream.https}/.well-known/est/front-basic",
                      "--upstream-trust", upstream.tls_ca, "--upstream-user", "front",
                      "--upstream-password-env", "UP_PASSWORD", data_dir=front, env={"UP_PASSWORD": PASSWORD})
    assert "signed for by the EST server" in created.stderr
    listed = {r["id"]: r for r in json.loads(run_cli("ca", "list", "--json", data_dir=front).stdout)}
    assert listed["up-est"]["backend"] == "est" and listed["up-est"]["kind"] == "upstream"
    assert listed["up-est"]["name"] == "Gateway Dev Issuing CA"  # the upstream's, from /cacerts
    issuing = _upstream_issuing(upstream)

    async with running_gateway(front) as (gw, info):
        async with gw.store.read() as q:
            settings = (await q.cas.get("up-est")).backend_settings
        assert PASSWORD not in json.dumps(settings) and settings["password"].startswith("v1.")

        issued = await issue_with_every_client(gw, info, "up-est", tmp_path)
        for client, cert in issued.all().items():
            cert.verify_directly_issued_by(issuing)  # the upstream signed it
            assert _upstream_store_has(upstream, cert), client
            local = await gw.authority.certificate(serial_hex(cert.serial_number))
            assert local.ca_id == "up-est"  # and the front gateway recorded it under the upstream CA
        # the SCEP configuration's RA certificate came from the upstream too (a CSR the core made)
        ra = [e for e in await _events(gw, EventFilter(type="internal_issue"))
              if e.ca_id == "up-est" and e.status == "success"]
        assert ra, "the SCEP RA certificate was not issued through the upstream"

        # CRL and OCSP are the upstream's: the front redirects to what its certificates name
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{info.http}/crl/up-est.crl", allow_redirects=False) as resp:
                assert resp.status == 302
                assert resp.headers["Location"] == f"{upstream.http}/crl/issuing.crl"
            async with session.get(f"{info.http}/crl/up-est.crl") as resp:
                crl = x509.load_der_x509_crl(await resp.read())
            assert crl.is_signature_valid(issuing.public_key())  # type: ignore[arg-type]
            request = (ocsp.OCSPRequestBuilder()
                       .add_certificate(issued.curl_est, issuing, hashes.SHA256()).build())
            encoded = quote(base64.b64encode(request.public_bytes(serialization.Encoding.DER)).decode(), safe="")
            async with session.get(f"{info.http}/ocsp/up-est/{encoded}", allow_redirects=False) as resp:
                assert resp.status == 302 and resp.headers["Location"].startswith(f"{upstream.http}/ocsp/issuing/")
            async with session.get(f"{info.http}/ocsp/up-est/{encoded}") as resp:
                answer = ocsp.load_der_ocsp_response(await resp.read())
            assert answer.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
            assert answer.certificate_status == ocsp.OCSPCertStatus.GOOD
            async with session.post(f"{info.http}/ocsp/up-est", data=request.public_bytes(serialization.Encoding.DER),
                                    headers={"Content-Type": "application/ocsp-request"}) as resp:
                refused = ocsp.load_der_ocsp_response(await resp.read())
            assert refused.response_status == ocsp.OCSPResponseStatus.UNAUTHORIZED  # not this responder's CA

        # EST has no revocation: revoked here, and an audited warning that the upstream was not told
        serial = serial_hex(issued.scep.serial_number)
        await gw.authority.revoke(serial, RevocationReason.key_compromise, actor="test")
        assert (await gw.authority.certificate(serial)).status == "revoked"
        warned = [e for e in await _events(gw, EventFilter(type="revoke_not_upstream")) if e.serial == serial]
        assert len(warned) == 1 and warned[0].status == "warning" and warned[0].ca_id == "up-est"
        assert "the upstream was not told (EST has no revocation)" in warned[0].detail["detail"], warned[0].detail


async def test_client_certificate_authentication_and_a_wrong_password(upstream: GatewayInfo, tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "front-gateway")]))
           .sign(key, hashes.SHA256()))
    (tmp_path / "front.csr").write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    cert_pem = run_cli("cert", "issue", "--csr", str(tmp_path / "front.csr"), "--profile", "tls-client",
                       data_dir=upstream.data_dir).stdout
    (tmp_path / "front.pem").write_text(cert_pem)
    (tmp_path / "front.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption()))
    front = tmp_path / "front"
    await bootstrap.initialize(front)
    run_cli("ca", "create", "up-cert", "--backend", "est", "--upstream-url", f"{upstream.https}/.well-known/est/front-cert",
            "--upstream-trust", upstream.tls_ca, "--upstream-client-cert", str(tmp_path / "front.pem"),
            "--upstream-client-key", str(tmp_path / "front.key"), data_dir=front)
    run_cli("ca", "create", "up-wrong", "--backend", "est", "--upstream-url",
            f"{upstream.https}/.well-known/est/front-basic", "--upstream-trust", upstream.tls_ca,
            "--upstream-user", "front", "--upstream-password-stdin", data_dir=front, input=b"not-the-password\n")
    async with running_gateway(front) as (gw, info):
        async with gw.store.read() as q:
            assert "BEGIN" not in (await q.cas.get("up-cert")).backend_settings["client_key"]
        cert = await curl_est_through(info, "up-cert", tmp_path / "c")
        cert.verify_directly_issued_by(_upstream_issuing(upstream))

        with pytest.raises(AssertionError) as refused:
            await curl_est_through(info, "up-wrong", tmp_path / "w")
        assert "503" in str(refused.value) or "refused" in str(refused.value), refused.value
        failures = await _events(gw, EventFilter(status="failure"))
        assert any("refused the gateway's credentials (HTTP 401)" in (e.detail.get("detail") or "")
                   for e in failures if e.ca_id == "up-wrong"), [e.detail for e in failures]
        async with gw.store.read() as q:
            assert not [c for c in await q.certificates.list(CertificateFilter(ca_id="up-wrong")) if c]


async def test_an_upstream_refusal_is_a_scep_failinfo_and_an_acme_problem(upstream: GatewayInfo,
                                                                          tmp_path: Path) -> None:
    """The upstream refuses what the front accepted (its label takes EC keys only; scepclient
    and certbot here send RSA): scepclient gets a SCEP FAILURE with failInfo badRequest,
    certbot an ACME badCSR problem, each with the upstream's answer, and each refusal is a
    failure event; nothing is stored."""
    from conformance.acme.test_certbot import Certbot

    from .clients import scepclient_run

    front = tmp_path / "front"
    await bootstrap.initialize(front)
    run_cli("ca", "create", "up-ec", "--backend", "est", "--upstream-url", f"{upstream.https}/.well-known/est/front-ec",
            "--upstream-trust", upstream.tls_ca, "--upstream-user", "front", "--upstream-password-stdin",
            data_dir=front, input=PASSWORD.encode() + b"\n")
    async with running_gateway(front) as (gw, info):
        result, _ = await scepclient_run(gw, info, "up-ec", tmp_path, ra_ca="issuing")
        assert result.returncode != 0, result.stdout + result.stderr
        said = result.stdout + result.stderr
        assert "badRequest" in said or "BadRequest" in said or "bad request" in said.lower(), said
        scep = [e for e in await _events(gw, EventFilter(type="scep_request", status="failure"))]
        assert len(scep) == 1 and scep[0].detail["fail_info"] == "BAD_REQUEST", [e.detail for e in scep]
        assert "the upstream EST server refused the request" in scep[0].detail["detail"], scep[0].detail

        certbot = Certbot(info, tmp_path / "certbot")
        await gw.authority.create_config("up-ec-acme", "acme", "up-ec", ["tls-server"],
                                         settings={"validation_address": "127.0.0.1", "http01_port": certbot.port})
        certbot.use("up-ec-acme")
        out = await certbot.certonly("up-ec.example.test", extra=("--key-type", "rsa"), check=False)
        assert out.returncode != 0
        assert "the upstream EST server refused the request" in out.stdout + out.stderr, out.stdout + out.stderr
        problem = (tmp_path / "certbot" / "logs" / "letsencrypt.log").read_text()  # the finalize answer
        assert '"type": "urn:ietf:params:acme:error:badCSR"' in problem, problem[-3000:]
        acme = [e for e in await _events(gw, EventFilter(status="failure", protocol_config="up-ec-acme"))]
        assert any("the upstream EST server refused the request" in (e.detail.get("detail") or "") for e in acme), \
            [e.detail for e in acme]
        async with gw.store.read() as q:
            assert not list(await q.certificates.list(CertificateFilter(ca_id="up-ec")))


async def test_a_renewal_goes_upstream_as_simpleenroll(upstream: GatewayInfo, tmp_path: Path) -> None:
    """curl renews at the front with simplereenroll (its current certificate as the TLS client
    certificate); the front, an RA without the device's key, sends it upstream as
    simpleenroll (gateway/DIVERGENCES.md): a renewal here, an enrollment there."""
    from conformance.est.support import sh

    from .clients import curl_est_enroll, est_label

    front = tmp_path / "front"
    await bootstrap.initialize(front)
    run_cli("ca", "create", "up-renew", "--backend", "est", "--upstream-url",
            f"{upstream.https}/.well-known/est/front-basic", "--upstream-trust", upstream.tls_ca,
            "--upstream-user", "front", "--upstream-password-stdin", data_dir=front, input=PASSWORD.encode() + b"\n")
    # the upstream's root, so that the front's TLS listener verifies the device's certificate
    # up to it (the front knows only the issuing CA as a CA of its own)
    from gateway.config import load_config

    root = Path(upstream.ca("root")["certificate"])
    config = load_config(front)
    config.tls.client_trust_anchors = [str(root)]
    config.save()
    async with running_gateway(front) as (gw, info):
        label, password = est_label(info, "up-renew")
        work = tmp_path / "renew"
        first = await curl_est_enroll(info, label, password, work, "renew-device.example.test")
        (work / "client.pem").write_bytes(first.public_bytes(serialization.Encoding.PEM))
        env = {"EST": f"{info.https}/.well-known/est/{label}", "CA": info.tls_ca}
        renewed = await sh(
            'openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout new.key '
            '-subj "/CN=renew-device.example.test" -addext "subjectAltName=DNS:renew-device.example.test" '
            '-outform DER | openssl base64 -out renew.b64 && '
            'curl -sS --fail-with-body --cacert "$CA" --cert client.pem --key device.key '
            '-H "Content-Type: application/pkcs10" --data-binary @renew.b64 -o renewed.p7 "$EST/simplereenroll" && '
            'openssl base64 -d -in renewed.p7 | openssl pkcs7 -inform DER -print_certs -out renewed.pem', work, env)
        assert renewed.returncode == 0, renewed.stdout + renewed.stderr
        second = x509.load_pem_x509_certificate((work / "renewed.pem").read_bytes())
        second.verify_directly_issued_by(_upstream_issuing(upstream))
        assert second.serial_number != first.serial_number and _upstream_store_has(upstream, second)
        here = [e for e in await _events(gw, EventFilter(serial=serial_hex(second.serial_number)))]
        assert [e.type for e in here] == ["renew"], [(e.type, e.status) for e in here]
        there = await _upstream_admin(upstream, "GET", f"/events?serial={serial_hex(second.serial_number)}")
        assert [e["type"] for e in there["items"]] == ["issue"], there  # type: ignore[index]


def test_creation_refusals(upstream: GatewayInfo, tmp_path: Path) -> None:
    front = tmp_path / "front"
    run_cli("init", data_dir=front)

    def refused(*args: str, **kw: object) -> str:
        out = run_cli("ca", "create", "bad", "--backend", "est", *args, data_dir=front, check=False, **kw)  # type: ignore[arg-type]
        assert out.returncode != 0 and "Traceback" not in out.stderr, out.stderr
        return out.stderr

    url = f"{upstream.https}/.well-known/est/front-basic"
    assert "needs --upstream-url" in refused()
    assert "needs credentials" in refused("--upstream-url", url, "--upstream-trust", upstream.tls_ca)
    assert "must be https://" in refused("--upstream-url", url.replace("https", "http"), "--upstream-user", "u",
                                         "--upstream-password-stdin", input=b"p\n")
    # the upstream's TLS certificate does not chain to the system's roots
    assert "not trusted" in refused("--upstream-url", url, "--upstream-user", "front",
                                    "--upstream-password-stdin", input=PASSWORD.encode() + b"\n")
    assert '"bad"' not in run_cli("ca", "list", "--json", data_dir=front).stdout


async def _upstream_admin(up: GatewayInfo, method: str, path: str, body: object = None) -> object:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with session.request(method, f"{up.https}/admin{path}", json=body, ssl=up.ssl_context(),
                                   headers={"Authorization": f"Bearer {up.api_key}"}) as resp:
            assert resp.status < 300, (resp.status, await resp.text())
            return await resp.json()


async def _wait_for(what: str, check: "Callable[[], Awaitable[bool]]", timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.25)


async def test_requests_the_upstream_holds_are_polled_until_decided(tmp_path: Path) -> None:
    """The upstream holds requests for its operator (EST 202): the front gateway answers its
    own client 202 too, and the cluster-wide poll job of the running front (two gateways on
    one store: one of them holds the job's lease at a time) asks again by itself; an
    upstream that refuses the gateway meanwhile is one audited ``upstream_poll`` failure, not
    one per request per tick; an approval there becomes a certificate here (a rejection
    there, a rejection here); curl retries with the same CSR, as RFC 7030 4.2.3 says, and
    gets the outcome. The job honours the upstream's Retry-After: a request whose upstream
    said "an hour" is not asked about again meanwhile (an explicit poll still asks)."""
    from conformance.est.support import sh
    from gateway.config import load_config
    from gateway.runtime import UPSTREAM_POLL_JOB

    up_dir = tmp_path / "up"
    run_cli("init", data_dir=up_dir)
    for label, wait in (("held", "1"), ("slow", "3600")):
        run_cli("est", "create", label, "--auth", "basic", "--approval", "manual", "--retry-after", wait,
                data_dir=up_dir)
        run_cli("est", "user", "add", label, "front", "--password-stdin", data_dir=up_dir, input=PASSWORD.encode())
    proc = GatewayProcess(up_dir)
    up = proc.start()
    try:
        front = tmp_path / "front"
        await bootstrap.initialize(front)
        config = load_config(front)
        config.ca.upstream_poll_interval, config.ca.lease_margin = 0.5, 1.0
        config.save()
        for ca_id, label, devices in (("up-held", "held", "devices"), ("up-slow", "slow", "slow-devices")):
            run_cli("ca", "create", ca_id, "--backend", "est", "--upstream-url", f"{up.https}/.well-known/est/{label}",
                    "--upstream-trust", up.tls_ca, "--upstream-user", "front", "--upstream-password-stdin",
                    data_dir=front, input=PASSWORD.encode() + b"\n")
            run_cli("est", "create", devices, "--ca", ca_id, "--auth", "basic", data_dir=front)
            run_cli("est", "user", "add", devices, "dev1", "--password-stdin", data_dir=front,
                    input=b"device-pass-1\n")
        async with running_gateway(front) as (gw, info), running_gateway(front) as (gw2, _):
            for each in (gw, gw2):
                each.start_background()  # as `gateway serve` does: the CRL, upstream poll and outbox jobs
            env = {"EST": f"{info.https}/.well-known/est/devices", "CA": info.tls_ca}
            enroll = ('curl -sS --cacert "$CA" -u "dev1:device-pass-1" -H "Content-Type: application/pkcs10" '
                      '--data-binary @{name}.b64 -o {name}.p7 -w "%{{http_code}}" "$EST/simpleenroll"')
            for name in ("patient", "approved", "rejected"):
                made = await sh(f'openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout {name}.key '
                                f'-subj "/CN={name}" -outform DER | openssl base64 -out {name}.b64', tmp_path)
                assert made.returncode == 0, made.stderr
                first = await sh(enroll.format(name=name), tmp_path,
                                 {**env, "EST": env["EST"].replace("/devices", "/slow-devices")}
                                 if name == "patient" else env)
                assert first.stdout == "202", first.stdout + first.stderr
            async with gw.store.read() as q:
                held_here = list(await q.requests.list(status="upstream"))
            assert len(held_here) == 3
            patient = next(r.id for r in held_here if r.ca_id == "up-slow")

            # one of the two gateways runs the job, never both
            holders = set()
            for _ in range(8):
                running = [g for g in (gw, gw2) if UPSTREAM_POLL_JOB in g._held]
                assert len(running) <= 1, "both gateways hold the upstream poll lease"
                holders.update(g.holder for g in running)
                await asyncio.sleep(0.25)
            assert len(holders) == 1, holders

            # the upstream refuses the gateway for a while: one audited failure for the CA
            async def poll_failures() -> list[Any]:
                return [e for e in await _events(gw, EventFilter(type="upstream_poll")) if e.ca_id == "up-held"]

            run_cli("est", "user", "disable", "held", "front", data_dir=up_dir)
            await _wait_for("an upstream_poll failure event", lambda: _nonempty(poll_failures()))
            await asyncio.sleep(2.5)  # five more ticks over two held requests
            failures = await poll_failures()
            assert len(failures) == 1 and failures[0].status == "failure", [e.detail for e in failures]
            assert "refused the gateway's credentials (HTTP 401)" in failures[0].detail["detail"], failures[0].detail
            run_cli("est", "user", "enable", "held", "front", data_dir=up_dir)

            waiting = await _upstream_admin(up, "GET", "/requests?status=pending")
            items = {i["subject"]: i["id"] for i in waiting["items"]}  # type: ignore[index]
            await _upstream_admin(up, "POST", f"/requests/{items['CN=approved']}/approve", {})
            await _upstream_admin(up, "POST", f"/requests/{items['CN=rejected']}/reject", {"reason": "not ours"})
            await _upstream_admin(up, "POST", f"/requests/{items['CN=patient']}/approve", {})

            async def decided() -> bool:
                async with gw.store.read() as q:
                    return [r.id for r in await q.requests.list(status="upstream")] == [patient]

            await _wait_for("the poll job to decide both requests", decided)  # nobody called poll_upstream
            await asyncio.sleep(2)  # four more ticks: the slow upstream's hour has not passed
            assert await decided(), "the poll job asked before the upstream's Retry-After"
            assert await gw.poll_upstream() == 1  # asked now, it is approved there

            again = await sh(enroll.format(name="approved"), tmp_path, env)
            assert again.stdout == "200", again.stdout + again.stderr
            done = await sh("openssl base64 -d -in approved.p7 | openssl pkcs7 -inform DER -print_certs", tmp_path)
            cert = x509.load_pem_x509_certificate(done.stdout.encode())
            assert cert.subject.rfc4514_string() == "CN=approved"
            cert.verify_directly_issued_by(_upstream_issuing(up))
            refused = await sh(enroll.format(name="rejected"), tmp_path, env)
            assert refused.stdout not in ("200", "202"), refused.stdout
            async with gw.store.read() as q:
                rejected = [r for r in await q.requests.list(status="rejected")]
            assert len(rejected) == 1 and rejected[0].decided_by == "upstream"
            assert "not ours" in (rejected[0].reason or "") or "refused" in (rejected[0].reason or "")
            assert len(await poll_failures()) == 1  # the recovery is not another failure
    finally:
        proc.stop()


async def _nonempty(items: "Awaitable[list[Any]]") -> bool:
    return bool(await items)


async def test_a_request_the_upstream_holds_commits_with_its_pending_event(tmp_path: Path) -> None:
    """A storage fault on the front's ``pending`` event (a SQLite trigger refuses it) keeps no
    upstream-held request here: a request stored without its event would never reach the
    approvers' notifications. Without the fault both commit, the event naming the request."""
    from conformance.est.support import sh

    up_dir = tmp_path / "up"
    run_cli("init", data_dir=up_dir)
    run_cli("est", "create", "held", "--auth", "basic", "--approval", "manual", data_dir=up_dir)
    run_cli("est", "user", "add", "held", "front", "--password-stdin", data_dir=up_dir, input=PASSWORD.encode())
    proc = GatewayProcess(up_dir)
    up = proc.start()
    try:
        front = tmp_path / "front"
        await bootstrap.initialize(front)
        run_cli("ca", "create", "up-held", "--backend", "est", "--upstream-url", f"{up.https}/.well-known/est/held",
                "--upstream-trust", up.tls_ca, "--upstream-user", "front", "--upstream-password-stdin",
                data_dir=front, input=PASSWORD.encode() + b"\n")
        run_cli("est", "create", "devices", "--ca", "up-held", "--auth", "basic", data_dir=front)
        run_cli("est", "user", "add", "devices", "dev1", "--password-stdin", data_dir=front, input=b"device-pass-1\n")
        async with running_gateway(front) as (gw, info):
            env = {"EST": f"{info.https}/.well-known/est/devices", "CA": info.tls_ca}

            async def enroll(name: str) -> str:
                made = await sh(f'openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes '
                                f'-keyout {name}.key -subj "/CN={name}" -outform DER | openssl base64 -out {name}.b64 '
                                f'&& curl -sS --cacert "$CA" -u "dev1:device-pass-1" -H "Content-Type: '
                                f'application/pkcs10" --data-binary @{name}.b64 -o {name}.p7 -w "%{{http_code}}" '
                                f'"$EST/simpleenroll"', tmp_path, env)
                return made.stdout

            await refuse_inserts(gw, "events", "NEW.status = 'pending'")
            assert await enroll("faulted") != "202"
            async with gw.store.read() as q:
                assert not list(await q.requests.list())
            await allow_inserts(gw)
            assert await enroll("kept") == "202"
            async with gw.store.read() as q:
                [held] = list(await q.requests.list(status="upstream"))
                [event] = list(await q.events.list(EventFilter(status="pending", protocol_config="devices")))
            assert event.request_id == held.id and event.detail.get("held_by") == "upstream", event
    finally:
        proc.stop()
