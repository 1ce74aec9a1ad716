"""curl + openssl against the gateway's EST endpoints, exactly as the README tells users to run them.

Each scenario's exchanges are recorded (with GATEWAY_RECORD_FIXTURES=1) into
fixtures/est/curl-*.json, which tests/est/test_fixture_replay.py replays on every run.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from cryptography import x509

from cryptography.hazmat.primitives import serialization

from conformance.harness import require_client
from gateway.ca.backend import RevocationReason
from tests.est.helpers import ClientCredential, EstServer, core, device_certificate, manufacturer_ca, trust_at_listener

from .recorder import Recorder
from .support import credential_meta, label_meta, sh


@pytest.fixture(scope="module")
def curl_version() -> str:
    require_client("curl", "Debian package curl")
    require_client("openssl", "Debian package openssl")
    return subprocess.run(["curl", "--version"], capture_output=True, text=True).stdout.splitlines()[0]


@pytest.fixture
def recorder(curl_version: str) -> Recorder:
    return Recorder("curl", curl_version)


def env(est: EstServer, label: str = "est") -> dict[str, str]:
    dev = est.dev
    return {"EST": f"{est.info.https}/.well-known/est/{label}", "CA": est.info.tls_ca,
            "EST_USER": dev["username"], "EST_PASSWORD": dev["password"]}


async def dev_meta(est: EstServer) -> dict:
    return await label_meta(est, "est", {est.dev["username"]: est.dev["password"]})


NEW_CSR = ('openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout {name}.key '
           '-subj "/CN={name}" -addext "subjectAltName=DNS:{name}.example" -outform DER | openssl base64 -out {name}.b64')


async def test_cacerts_piped_into_openssl(est: EstServer, recorder: Recorder, tmp_path: Path) -> None:
    with recorder.scenario("cacerts", **await dev_meta(est)):
        r = await sh('curl -sS --cacert "$CA" "$EST/cacerts" | openssl base64 -d '
                     '| openssl pkcs7 -inform DER -print_certs -out cacerts.pem', tmp_path, env(est))
    assert r.returncode == 0, r.stderr
    certs = x509.load_pem_x509_certificates((tmp_path / "cacerts.pem").read_bytes())
    assert {c.subject.rfc4514_string() for c in certs} == {"CN=Gateway Dev Issuing CA", "CN=Gateway Dev Root CA"}


async def test_csrattrs_parsed_by_openssl_asn1parse(est: EstServer, recorder: Recorder, tmp_path: Path) -> None:
    with recorder.scenario("csrattrs", **await dev_meta(est)):
        r = await sh('curl -sS --cacert "$CA" "$EST/csrattrs" | openssl base64 -d | openssl asn1parse -inform DER',
                     tmp_path, env(est))
    assert r.returncode == 0, r.stderr
    assert "ecdsa-with-SHA256" in r.stdout and "id-ecPublicKey" in r.stdout and "prime256v1" in r.stdout
    assert "1.2.840.113549.1.9.16.2.61" in r.stdout and "commonName" in r.stdout


async def test_enroll_with_basic_then_reenroll_with_the_certificate(est: EstServer, recorder: Recorder,
                                                                    tmp_path: Path) -> None:
    e = env(est)
    assert (await sh(NEW_CSR.format(name="device"), tmp_path)).returncode == 0
    with recorder.scenario("simpleenroll-basic", **await dev_meta(est)):
        r = await sh('curl -sS --fail-with-body --cacert "$CA" -u "$EST_USER:$EST_PASSWORD" '
                     '-H "Content-Type: application/pkcs10" --data-binary @device.b64 -o device.p7 "$EST/simpleenroll"'
                     ' && openssl base64 -d -in device.p7 | openssl pkcs7 -inform DER -print_certs -out device.pem',
                     tmp_path, e)
    assert r.returncode == 0, r.stderr + r.stdout
    cert = x509.load_pem_x509_certificate((tmp_path / "device.pem").read_bytes())
    assert cert.subject.rfc4514_string() == "CN=device"
    r = await sh(f'openssl verify -CAfile "$CA" -untrusted {est.info.ca("issuing")["certificate"]} device.pem',
                 tmp_path, e)
    assert r.stdout.strip() == "device.pem: OK", r.stderr

    # Renew: same subject and names, a new key, the current certificate as the TLS client certificate.
    assert (await sh('openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout renewed.key '
                     '-subj "/CN=device" -addext "subjectAltName=DNS:device.example" -outform DER '
                     '| openssl base64 -out renew.b64', tmp_path)).returncode == 0
    key = serialization.load_pem_private_key((tmp_path / "device.key").read_bytes(), None)
    meta = {**await dev_meta(est), **credential_meta(
        ClientCredential(cert, key, tmp_path / "device.pem", tmp_path / "device.key"), "issued")}
    with recorder.scenario("simplereenroll-cert", **meta):
        r = await sh('curl -sS --fail-with-body --cacert "$CA" --cert device.pem --key device.key '
                     '-H "Content-Type: application/pkcs10" --data-binary @renew.b64 -o renewed.p7 '
                     '"$EST/simplereenroll" && openssl base64 -d -in renewed.p7 '
                     '| openssl pkcs7 -inform DER -print_certs -out renewed.pem', tmp_path, e)
    assert r.returncode == 0, r.stderr + r.stdout
    renewed = x509.load_pem_x509_certificate((tmp_path / "renewed.pem").read_bytes())
    assert renewed.subject == cert.subject and renewed.serial_number != cert.serial_number

    # Server-side key generation, authenticated by the certificate.
    assert (await sh(NEW_CSR.format(name="kg"), tmp_path)).returncode == 0
    with recorder.scenario("serverkeygen-cert", **meta):
        r = await sh('curl -sS --fail-with-body --cacert "$CA" --cert device.pem --key device.key '
                     '-H "Content-Type: application/pkcs10" --data-binary @kg.b64 -o kg.multipart "$EST/serverkeygen"',
                     tmp_path, e)
    assert r.returncode == 0, r.stderr + r.stdout
    await _split_serverkeygen(tmp_path, "kg")


async def _split_serverkeygen(tmp_path: Path, name: str) -> None:
    """The README's shell recipe: the key part and the certificate part of the multipart reply."""
    r = await sh(
        f"tr -d '\\r' < {name}.multipart | awk '/^Content-Type: application\\/pkcs8/{{p=1;next}} /^--/{{p=0}} "
        f"p && /^[A-Za-z0-9+\\/=]+$/' | openssl base64 -d | openssl pkey -inform DER -out {name}-key.pem && "
        f"tr -d '\\r' < {name}.multipart | awk '/^Content-Type: application\\/pkcs7-mime/{{p=1;next}} /^--/{{p=0}} "
        f"p && /^[A-Za-z0-9+\\/=]+$/' | openssl base64 -d | openssl pkcs7 -inform DER -print_certs -out {name}-cert.pem"
        f" && diff <(openssl pkey -in {name}-key.pem -pubout) <(openssl x509 -in {name}-cert.pem -noout -pubkey)",
        tmp_path)
    assert r.returncode == 0, r.stderr + r.stdout
    cert = x509.load_pem_x509_certificate((tmp_path / f"{name}-cert.pem").read_bytes())
    assert cert.subject.rfc4514_string() == f"CN={name}"


async def test_serverkeygen_with_basic(est: EstServer, recorder: Recorder, tmp_path: Path) -> None:
    assert (await sh(NEW_CSR.format(name="kgb"), tmp_path)).returncode == 0
    with recorder.scenario("serverkeygen-basic", **await dev_meta(est)):
        r = await sh('curl -sS --fail-with-body --cacert "$CA" -u "$EST_USER:$EST_PASSWORD" '
                     '-H "Content-Type: application/pkcs10" --data-binary @kgb.b64 -o kgb.multipart "$EST/serverkeygen"',
                     tmp_path, env(est))
    assert r.returncode == 0, r.stderr
    await _split_serverkeygen(tmp_path, "kgb")


@pytest.fixture
def manufacturer(tmp_path: Path, prepare: list) -> tuple:
    ca, key, path = manufacturer_ca(tmp_path)
    prepare.append(lambda data_dir: trust_at_listener(data_dir, path))
    return ca, key, path


async def test_idevid_enrolls_on_a_certificate_label(manufacturer: tuple, est: EstServer, recorder: Recorder,
                                                     tmp_path: Path) -> None:
    ca, ca_key, ca_path = manufacturer
    await est.label("factory", auth="certificate", client_trust_anchors=[ca_path.read_text()])
    idevid = device_certificate(ca, ca_key, "SN-4711", tmp_path)
    assert (await sh(NEW_CSR.format(name="sn-4711"), tmp_path)).returncode == 0
    meta = {**await label_meta(est, "factory", {}), **credential_meta(idevid, "anchored", ca_path.read_text())}
    with recorder.scenario("simpleenroll-idevid", **meta):
        r = await sh(f'curl -sS --fail-with-body --cacert "$CA" --cert {idevid.cert_path} --key {idevid.key_path} '
                     '-H "Content-Type: application/pkcs10" --data-binary @sn-4711.b64 "$EST/simpleenroll" '
                     '| openssl base64 -d | openssl pkcs7 -inform DER -print_certs', tmp_path, env(est, "factory"))
    assert r.returncode == 0, r.stderr
    assert "subject=CN = sn-4711" in r.stdout


async def test_pending_approval_202_then_the_certificate(est: EstServer, recorder: Recorder, tmp_path: Path) -> None:
    await est.label("held", users={"tech": "s3cret"}, approval="manual", retry_after=1)
    assert (await sh(NEW_CSR.format(name="held"), tmp_path)).returncode == 0
    command = ('curl -sS -i --cacert "$CA" -u tech:s3cret -H "Content-Type: application/pkcs10" '
               '--data-binary @held.b64 "$EST/simpleenroll"')
    meta = await label_meta(est, "held", {"tech": "s3cret"})
    with recorder.scenario("simpleenroll-pending", **meta, operator_approves_before_step=1):
        first = await sh(command, tmp_path, env(est, "held"))
        [pending] = await core(est.gw).requests(status="pending")
        await est.gw.authority.approve(pending.id, "operator")
        second = await sh(command, tmp_path, env(est, "held"))
    assert first.stdout.startswith("HTTP/1.1 202") and "Retry-After: 1" in first.stdout
    assert second.stdout.startswith("HTTP/1.1 200") and "application/pkcs7-mime; smime-type=certs-only" in second.stdout


async def test_refusals_with_the_right_status_and_nothing_issued(est: EstServer, recorder: Recorder,
                                                                 tmp_path: Path) -> None:
    e = env(est)
    code = 'curl -s -o reply.txt -w "%{http_code}" --cacert "$CA" -H "Content-Type: application/pkcs10" '
    assert (await sh(NEW_CSR.format(name="neg"), tmp_path)).returncode == 0
    cases = [
        ("no-credentials", code + '--data-binary @neg.b64 "$EST/simpleenroll"', "401"),
        ("wrong-password", code + '-u "$EST_USER:not-the-password" --data-binary @neg.b64 "$EST/simpleenroll"', "401"),
        ("malformed-base64", 'echo "this is not base64!" | ' + code + '-u "$EST_USER:$EST_PASSWORD" '
                             '--data-binary @- "$EST/simpleenroll"', "400"),
        ("malformed-der", 'printf "MIIBAAAAAAAAAAAAAAAA" | ' + code + '-u "$EST_USER:$EST_PASSWORD" '
                          '--data-binary @- "$EST/simpleenroll"', "400"),
    ]
    for name, command, expected in cases:
        with recorder.scenario(f"refused-{name}", **await dev_meta(est)):
            r = await sh(command, tmp_path, e)
        assert r.stdout == expected, (name, r.stdout, (tmp_path / "reply.txt").read_text())
    assert await est.issued() == 0

    # A certificate from a CA the listener does not trust never gets past the handshake.
    rogue_ca, rogue_key, _ = manufacturer_ca(tmp_path, "Rogue CA")
    rogue = device_certificate(rogue_ca, rogue_key, "SN-ROGUE", tmp_path)
    r = await sh(f'curl -sS --cacert "$CA" --cert {rogue.cert_path} --key {rogue.key_path} '
                 '-u "$EST_USER:$EST_PASSWORD" -H "Content-Type: application/pkcs10" --data-binary @neg.b64 '
                 '"$EST/simpleenroll"', tmp_path, e)
    assert r.returncode in (35, 52, 56), r  # TLS alert: handshake error, empty reply or receive failure
    assert await est.issued() == 0

    # Re-enrollment with another subject, and with a revoked certificate.
    device = await est.client_cert("neg-device", ["neg-device.example"])
    assert (await sh('openssl req -new -key neg.key -subj "/CN=someone-else" -outform DER '
                     '| openssl base64 -out other.b64', tmp_path)).returncode == 0
    with recorder.scenario("refused-reenroll-other-subject", **await dev_meta(est), **credential_meta(device, "issued")):
        r = await sh(code + f'--cert {device.cert_path} --key {device.key_path} --data-binary @other.b64 '
                     '"$EST/simplereenroll"', tmp_path, e)
    assert r.stdout == "403"
    await est.gw.authority.revoke(format(device.certificate.serial_number, "x"), RevocationReason.superseded,
                                  actor="test")
    assert (await sh('openssl req -new -key neg.key -subj "/CN=neg-device" '
                     '-addext "subjectAltName=DNS:neg-device.example" -outform DER | openssl base64 -out same.b64',
                     tmp_path)).returncode == 0
    with recorder.scenario("refused-reenroll-revoked", **await dev_meta(est), **credential_meta(device, "issued"),
                           revoked=True):
        r = await sh(code + f'--cert {device.cert_path} --key {device.key_path} --data-binary @same.b64 '
                     '"$EST/simplereenroll"', tmp_path, e)
    assert r.stdout == "403" and "revoked" in (tmp_path / "reply.txt").read_text()
    assert await est.issued() == 0
